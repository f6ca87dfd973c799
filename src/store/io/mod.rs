//! The datastore's I/O backend: the one interface through which chunk files and snapshot files
//! reach storage. Deciding what to write (PBS's dedup rules, `chunk_store.rs`) and when a write
//! counts as done stays above it; a backend only carries the bytes.
//!
//! Two backends share the local `.chunks/XXXX/<digest>` layout: [`files::FileBackend`] (plain
//! system calls, one chunk at a time) and [`uring::UringBackend`] (many chunks' files on one
//! io_uring in a handful of `io_uring_enter` calls). An object-store backend implements the same
//! trait: every call is synchronous and made from a blocking thread, a chunk write says whether a
//! chunk already existed when it was decided (so a conditional "create if absent" fits), and
//! files are named by their path inside the datastore.

pub mod files;
pub mod uring;

use std::path::Path;
use std::sync::Arc;

use crate::config::{FsyncPolicy, PipelineConfig};
use crate::format::Digest;
use crate::format::blob::BlobKind;
use crate::metrics as m;
use crate::store::Result;

/// Chunk and file operations of one datastore, whatever holds its bytes.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// How this backend writes chunks (the `method` label of the chunk write metrics).
    fn method(&self) -> WriteMethod;
    /// Stored length of a chunk, `None` if absent; a chunk slot holding something that is not a
    /// chunk (a directory, a symlink) is an error.
    fn chunk_len(&self, digest: &Digest) -> Result<Option<u64>>;
    /// Kind of a stored chunk from its header; `None` if the header is not a blob's.
    fn chunk_kind(&self, digest: &Digest) -> Result<Option<BlobKind>>;
    /// Marks the chunk as used now for GC; false if it does not exist.
    fn touch_chunk(&self, digest: &Digest) -> Result<bool>;
    /// The chunk's stored bytes.
    fn read_chunk(&self, digest: &Digest) -> Result<Vec<u8>>;
    /// Stores every chunk of `batch` durably (per the datastore's sync level), reporting each
    /// one through `done(index in batch, result)` as soon as it is known, in any order.
    fn write_chunks(&self, batch: &[ChunkWrite<'_>], done: &mut dyn FnMut(usize, Result<()>));
    /// Replaces the file at `path` (inside the datastore) with `bytes` durably: a reader sees
    /// the old file or the new one, and a crash leaves one of them. Always synced: a committed
    /// snapshot must never name a lost file.
    fn write_file(&self, path: &Path, bytes: &[u8]) -> Result<()>;
}

/// One chunk the store decided to write.
#[derive(Debug, Clone, Copy)]
pub struct ChunkWrite<'a> {
    pub digest: &'a Digest,
    /// The final blob bytes.
    pub data: &'a [u8],
    /// A chunk was there when the write was decided (an empty one, or a larger one); false
    /// means "create if absent".
    pub replace: bool,
}

/// How a backend writes chunk files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMethod {
    IoUring,
    /// Plain file I/O: configured, or io_uring refused by the kernel.
    Fallback,
}

impl WriteMethod {
    pub fn label(self) -> &'static str {
        match self {
            WriteMethod::IoUring => m::METHOD_IO_URING,
            WriteMethod::Fallback => m::METHOD_FALLBACK,
        }
    }
}

/// How a datastore is opened: its sync level and how its chunks are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatastoreOptions {
    pub fsync: FsyncPolicy,
    /// Write chunks with io_uring where the kernel allows it.
    pub io_uring: bool,
    /// Submission queue depth of the io_uring.
    pub uring_depth: u32,
}

impl Default for DatastoreOptions {
    /// Every file synced, plain file I/O: what tools and tests that open a store get.
    fn default() -> Self {
        DatastoreOptions { fsync: FsyncPolicy::File, io_uring: false, uring_depth: 32 }
    }
}

impl DatastoreOptions {
    /// The server's options (`[pipeline]` keys of the config file).
    pub fn from_config(cfg: &PipelineConfig) -> Self {
        DatastoreOptions { fsync: cfg.fsync, io_uring: cfg.io_uring, uring_depth: cfg.uring_depth }
    }
}

/// The backend `options` ask for on the chunk directory `chunks`: io_uring if configured and the
/// kernel allows it (else plain file I/O, logged), plain file I/O otherwise.
pub fn open(chunks: &Path, options: &DatastoreOptions) -> Arc<dyn Backend> {
    let files = files::FileBackend::new(chunks.to_path_buf(), options.fsync == FsyncPolicy::File);
    if !options.io_uring {
        tracing::debug!(chunks = ?chunks, "io_uring not asked for; chunks are written with plain file I/O");
        return Arc::new(files);
    }
    match uring::UringWriter::new(options.uring_depth) {
        Ok(ring) => Arc::new(uring::UringBackend::new(files, ring)),
        Err(e) => {
            tracing::warn!(chunks = ?chunks, "io_uring unavailable ({e}); chunks are written with plain file I/O");
            Arc::new(files)
        }
    }
}
