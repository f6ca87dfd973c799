//! The chunk store: PBS's dedup-by-size rules (formats.md 5.3) decided in one place for every
//! chunk insert, whichever backend (`store::io`) then writes the chunks, and the text a client
//! sees when storing one fails.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use crate::format::Digest;
use crate::format::blob::{self, BlobKind};
use crate::store::io::files::{FileBackend, chunk_path};
use crate::store::io::{Backend, ChunkWrite, WriteMethod};
use crate::store::{Result, StoreError, client_io};

pub use crate::store::io::files::CHUNK_DIR_MODE;

#[derive(Debug)]
pub struct ChunkStore {
    base: PathBuf,
    io: Arc<dyn Backend>,
    /// Held while deciding an insert and while GC stats and unlinks one file: without it, GC
    /// could see an old atime, an insert then touch the chunk as a duplicate, and GC unlink it.
    sweep_lock: Mutex<()>,
}

/// What inserting a chunk did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Written as a new file (or replaced a larger/empty one).
    Written,
    /// An existing chunk was kept (and its atime touched).
    Duplicate,
}

/// What must happen to insert a chunk, decided from the existing chunk (if any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertPlan {
    /// Keep the existing chunk; it has already been touched for GC.
    Keep,
    /// Write the chunk; `replace` if one was there (empty, or larger).
    Write { replace: bool },
}

impl ChunkStore {
    /// A chunk store on the local directory `base` with plain, fully synced file I/O.
    pub fn new(base: PathBuf) -> Self {
        let io = Arc::new(FileBackend::new(base.clone(), true));
        Self::with_backend(base, io)
    }
    /// A chunk store whose chunks `io` reads and writes; `base` is their local directory.
    pub fn with_backend(base: PathBuf, io: Arc<dyn Backend>) -> Self {
        ChunkStore { base, io, sweep_lock: Mutex::new(()) }
    }
    pub fn base(&self) -> &Path {
        &self.base
    }
    pub fn chunk_path(&self, digest: &Digest) -> PathBuf {
        chunk_path(&self.base, digest)
    }
    /// How chunks are written (the `method` label of the write metrics).
    pub fn write_method(&self) -> WriteMethod {
        self.io.method()
    }

    /// Decides how to insert `raw` (the final blob bytes) under `digest`, applying the
    /// dedup-by-size and encrypted/plain replacement rules. Touches a kept chunk's atime.
    pub fn plan_insert(&self, digest: &Digest, raw: &[u8]) -> Result<InsertPlan> {
        let _sweep = self.lock_sweep();
        let Some(old_len) = self.io.chunk_len(digest)? else { return Ok(InsertPlan::Write { replace: false }) };
        let new_len = raw.len() as u64;
        let keep = || -> Result<InsertPlan> {
            self.io.touch_chunk(digest)?;
            Ok(InsertPlan::Keep)
        };
        let replace = Ok(InsertPlan::Write { replace: true });
        if old_len == new_len {
            return keep();
        }
        if old_len == 0 {
            tracing::warn!(%digest, "found empty chunk file, overwriting");
            return replace;
        }
        let new_kind = blob::kind_of(raw).map_err(|e| StoreError::Corrupt(format!("chunk {digest}: {e}")))?;
        if new_kind.is_encrypted() {
            let old_kind = self.io.chunk_kind(digest)?;
            if old_kind.is_some_and(|k| !k.is_encrypted()) {
                // A keyed digest can never equal a plain one: this upload is an attack or junk.
                return Err(StoreError::Refused(format!(
                    "refusing to replace unencrypted chunk {digest} with an encrypted chunk of the same digest"
                )));
            }
            if old_kind == Some(BlobKind::Encrypted) && !new_kind.is_compressed() {
                // Two uncompressed ciphertexts of one plaintext have one length; one is broken.
                return Err(StoreError::Refused(format!(
                    "refusing to replace encrypted chunk {digest} with one of a different length"
                )));
            }
            // Compressed sizes differ between zstd versions: keep the first, verify judges it.
            return keep();
        }
        if old_len < new_len { keep() } else { replace }
    }

    /// Inserts every chunk of `chunks` (digest, final blob bytes): each decided by
    /// [`plan_insert`](Self::plan_insert), those to write handed to the backend in one batch.
    /// `done(index, outcome)` reports each chunk as soon as it is settled; a failure carries the
    /// client's text (`storing chunk <digest> failed: <OS error>`). A digest twice in the batch
    /// is decided again once the first is settled, exactly as if it had come later.
    pub fn insert_batch(&self, chunks: &[(&Digest, &[u8])], mut done: impl FnMut(usize, Result<InsertOutcome>)) {
        let mut report = |i: usize, r: Result<InsertOutcome>| {
            done(i, r.map_err(|e| client_io(e, format!("storing chunk {} failed", chunks[i].0))))
        };
        let mut pending: Vec<usize> = (0..chunks.len()).collect();
        while !pending.is_empty() {
            let mut seen = HashSet::new();
            let mut later = Vec::new();
            let (mut writes, mut origin) = (Vec::new(), Vec::new());
            for i in pending {
                let (digest, data) = chunks[i];
                if !seen.insert(digest) {
                    later.push(i);
                    continue;
                }
                match self.plan_insert(digest, data) {
                    Ok(InsertPlan::Keep) => report(i, Ok(InsertOutcome::Duplicate)),
                    Ok(InsertPlan::Write { replace }) => {
                        writes.push(ChunkWrite { digest, data, replace });
                        origin.push(i);
                    }
                    Err(e) => report(i, Err(e)),
                }
            }
            if !writes.is_empty() {
                self.io.write_chunks(&writes, &mut |w, r| report(origin[w], r.map(|()| InsertOutcome::Written)));
            }
            pending = later;
        }
    }

    /// Inserts one chunk (a batch of one).
    pub fn insert(&self, digest: &Digest, raw: &[u8]) -> Result<InsertOutcome> {
        let mut outcome = None;
        self.insert_batch(&[(digest, raw)], |_, r| outcome = Some(r));
        outcome.expect("the batch reports every chunk")
    }

    /// Excludes inserts' dedup decisions; GC holds it around each stat + unlink.
    pub(crate) fn lock_sweep(&self) -> MutexGuard<'_, ()> {
        self.sweep_lock.lock()
    }

    /// A chunk's stored bytes.
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>> {
        self.io.read_chunk(digest)
    }

    /// Marks the chunk as used now (GC mark); false if the chunk is missing.
    pub fn touch(&self, digest: &Digest) -> Result<bool> {
        self.io.touch_chunk(digest)
    }

    /// Stored length of a chunk, `None` if absent.
    pub fn len_of(&self, digest: &Digest) -> Result<Option<u64>> {
        self.io.chunk_len(digest)
    }
}

#[cfg(test)]
#[path = "chunk_store_tests.rs"]
mod tests;
