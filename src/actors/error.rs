//! `SessionError`: every way a backup session request can fail inside the pipeline, with the
//! reference server's texts (protocol.md 2.3) so the protocol layer only picks a status code.

use crate::format::blob::BlobError;
use crate::format::fixed_index::IndexError;
use crate::format::manifest::ManifestError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("backup already marked as finished.")]
    Finished,
    #[error("dynamic writer '{0}' not registered")]
    DynamicNotRegistered(u64),
    #[error("fixed writer '{0}' not registered")]
    FixedNotRegistered(u64),
    #[error("wid {0} is out of range (1..=256): too many index writers in this session")]
    TooManyWriters(u64),
    #[error("archive '{0}' was already opened in this session")]
    ArchiveTwice(String),
    #[error("wrong blob file extension: '{0}'")]
    BlobExtension(String),
    #[error("wrong archive extension: '{0}'")]
    ArchiveExtension(String),
    #[error("unknown archive type: {0}")]
    UnknownArchiveType(String),
    #[error("got blob with unexpected length ({expected} != {got})")]
    BlobLength { expected: u64, got: u64 },
    #[error("uploaded chunk is larger than announced.")]
    ChunkLarger,
    #[error("uploaded chunk has unexpected size.")]
    ChunkSize,
    #[error("fixed writer '{name}' - got large chunk ({size} > {max}")]
    FixedLargeChunk { name: String, size: u64, max: u64 },
    #[error("fixed index size {size} is larger than the supported {max} bytes")]
    FixedTooLarge { size: u64, max: u64 },
    #[error("index memory limit exceeded - '{name}' needs {need} bytes, {used} of the {scope}'s {limit} are in use")]
    IndexMemory { name: String, need: u64, used: u64, scope: &'static str, limit: u64 },
    #[error("fixed writer '{0}' - detected multiple end chunks (chunk size too small)")]
    FixedMultipleEnd(u64),
    #[error("no such chunk {0}")]
    NoSuchChunk(String),
    #[error("offset list has wrong length ({offsets} != {digests})")]
    OffsetListLength { offsets: usize, digests: usize },
    #[error("dynamic writer '{name}' append chunk failed - got strange chunk offset ({expected} != {got})")]
    StrangeOffset { name: String, expected: u64, got: u64 },
    /// The reference's fixed-slot checks (`check_chunk_alignment`), text without a prefix.
    #[error("{0}")]
    FixedAppend(String),
    #[error("{kind} writer '{name}' close failed - {reason}")]
    CloseFailed { kind: &'static str, name: String, reason: String },
    #[error("cannot reuse index - {0}")]
    CannotReuse(String),
    #[error("expected csum ({given}) doesn't match last backup's ({actual}), cannot do incremental backup")]
    ReuseCsumMismatch { given: String, actual: String },
    #[error("clone_data_from failed - index sizes not equal")]
    CloneSizes,
    #[error("no valid previous backup")]
    NoPreviousBackup,
    #[error("open file \"{0}\" failed - not found")]
    PreviousBlobMissing(String),
    #[error("Unable to open {kind} index \"{path}\" - {reason}")]
    PreviousIndex { kind: &'static str, path: String, reason: String },
    #[error("found open index writer - unable to finish backup")]
    OpenWriters,
    #[error("backup does not contain valid files (file count == 0)")]
    NoFiles,
    #[error("unable to update manifest blob - {0}")]
    Manifest(String),
    #[error("base snapshot {0} was removed during backup, cannot finish as chunks might be missing")]
    BaseRemoved(String),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A pipeline stage went away (shutdown) or a task panicked: the server's fault, 500.
    #[error("internal error - {0}")]
    Internal(String),
}

impl From<ManifestError> for SessionError {
    fn from(e: ManifestError) -> Self {
        SessionError::Manifest(e.to_string())
    }
}

impl From<actix::MailboxError> for SessionError {
    fn from(e: actix::MailboxError) -> Self {
        SessionError::Internal(format!("pipeline stage unavailable: {e}"))
    }
}

impl From<crate::actors::stage::Stopped> for SessionError {
    fn from(e: crate::actors::stage::Stopped) -> Self {
        SessionError::Internal(e.to_string())
    }
}
