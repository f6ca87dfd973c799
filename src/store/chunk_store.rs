//! The chunk store `.chunks/XXXX/<digest>`: insert with PBS's dedup-by-size rules
//! (formats.md 5.3), read, and the plan the io_uring writer executes.
//!
//! INTERFACE STUB: the store helper fills in the bodies.

use std::path::{Path, PathBuf};

use crate::format::Digest;
use crate::store::Result;

#[derive(Debug)]
pub struct ChunkStore {
    base: PathBuf,
}

/// What inserting a chunk did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Written as a new file (or replaced a larger/empty one).
    Written,
    /// An existing chunk was kept (and its atime touched).
    Duplicate,
}

/// What must happen on disk to insert a chunk, decided from the existing file (if any); the
/// `ChunkWriter` actor carries out `Write` with io_uring, or with plain I/O as a fallback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertPlan {
    /// Keep the existing file; it has already been touched for GC.
    Keep,
    /// Write the blob to `tmp` (fresh name in the same directory), fsync, rename to `dest`,
    /// fsync `dir`.
    Write { tmp: PathBuf, dest: PathBuf, dir: PathBuf },
}

impl ChunkStore {
    pub fn new(base: PathBuf) -> Self {
        ChunkStore { base }
    }
    pub fn base(&self) -> &Path {
        &self.base
    }
    pub fn chunk_path(&self, digest: &Digest) -> PathBuf {
        self.base.join(digest.prefix_dir()).join(digest.to_hex())
    }
    /// Decides how to insert `raw` (the final blob bytes) under `digest`, applying the
    /// dedup-by-size and encrypted/plain replacement rules. Touches a kept chunk's atime.
    pub fn plan_insert(&self, digest: &Digest, raw: &[u8]) -> Result<InsertPlan> {
        let _ = (digest, raw);
        todo!()
    }
    /// Plain synchronous insert: plan, then temp file, write, fsync, rename, fsync dir.
    pub fn insert(&self, digest: &Digest, raw: &[u8]) -> Result<InsertOutcome> {
        let _ = (digest, raw);
        todo!()
    }
    /// Reads a chunk file's raw bytes.
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>> {
        let _ = digest;
        todo!()
    }
}
