//! The messages a backup session's router sends to its `SessionActor`, one per request kind
//! of protocol.md 2.2, named for what they ask.

use actix::Message;
use bytes::Bytes;

use crate::actors::SessionError;
use crate::format::{ArchiveKind, ArchiveName, Digest};

/// Which kind of index an endpoint addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexKind {
    Dynamic,
    Fixed,
}

/// `POST *_index`: open a writer; answers its wid.
#[derive(Debug, Message)]
#[rtype(result = "Result<u64, SessionError>")]
pub struct OpenIndex {
    pub name: ArchiveName,
    /// `Some((size, reuse_csum))` for a fixed index.
    pub fixed: Option<(u64, Option<String>)>,
}

/// `POST *_chunk`: verify, store and register one chunk; answers its digest.
#[derive(Debug, Message)]
#[rtype(result = "Result<Digest, SessionError>")]
pub struct UploadChunk {
    pub kind: IndexKind,
    pub wid: u64,
    pub digest: Digest,
    pub size: u64,
    pub blob: Bytes,
}

/// `PUT *_index`: append known chunks at start offsets.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), SessionError>")]
pub struct AppendIndex {
    pub kind: IndexKind,
    pub wid: u64,
    pub digests: Vec<Digest>,
    pub offsets: Vec<u64>,
}

/// `POST *_close`.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), SessionError>")]
pub struct CloseWriter {
    pub kind: IndexKind,
    pub wid: u64,
    pub chunk_count: u64,
    pub size: u64,
    pub csum: String,
}

/// `POST /blob`: the CRC is checked here (off-thread), the length by the router.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), SessionError>")]
pub struct UploadBlob {
    pub name: ArchiveName,
    pub blob: Bytes,
}

/// `GET /previous`: a file of the base snapshot; an index's chunks become known.
#[derive(Debug, Message)]
#[rtype(result = "Result<Bytes, SessionError>")]
pub struct DownloadPrevious {
    pub name: ArchiveName,
}

/// `GET /previous_backup_time`.
#[derive(Debug, Message)]
#[rtype(result = "Option<i64>")]
pub struct PreviousBackupTime;

/// `POST /finish`.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), SessionError>")]
pub struct FinishBackup;

/// The connection is gone: keep the snapshot if finished (and not a benchmark), else remove it.
/// Answers whether the snapshot was kept.
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub struct EndSession;

/// Kind of index an archive name's extension asks for (blob names have none).
pub fn index_kind(name: &ArchiveName) -> Option<IndexKind> {
    match name.kind() {
        ArchiveKind::Fixed => Some(IndexKind::Fixed),
        ArchiveKind::Dynamic => Some(IndexKind::Dynamic),
        ArchiveKind::Blob => None,
    }
}
