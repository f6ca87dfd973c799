//! Verify (formats.md 7): re-check a snapshot's files and chunks against its manifest, move
//! corrupt chunks aside as `<digest>.<n>.bad` so the next backup uploads them again, and record
//! the verdict in the manifest's `unprotected.verify_state`.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use sha2::Digest as _;

use crate::format::blob::BlobError;
use crate::format::dynamic_index::DynamicIndex;
use crate::format::fixed_index::{FixedIndex, IndexError};
use crate::format::manifest::{CryptMode, FileEntry};
use crate::format::{ArchiveKind, ArchiveName, Digest, NameError, Namespace, SnapshotRef, blob};
use crate::store::admin::load_manifest;
use crate::store::lock::DirLock;
use crate::store::{Datastore, Result, StoreError};

/// Reader threads per verify; more than the cores so reads wait on the disk in parallel.
pub const VERIFY_THREADS: usize = 4;

/// Chunks already judged within one verify task, so each is read once.
#[derive(Debug, Default)]
pub struct VerifyCache {
    ok: HashSet<Digest>,
    corrupt: HashSet<Digest>,
    bytes_read: u64,
}

impl VerifyCache {
    /// Chunks found good, chunks found corrupt or missing, and chunk bytes read so far.
    pub fn counts(&self) -> (u64, u64, u64) {
        (self.ok.len() as u64, self.corrupt.len() as u64, self.bytes_read)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyResult {
    Ok,
    /// What was wrong, one line each (`<file>: <fault>`), as the task log and `--json` show it.
    Failed(Vec<String>),
    /// The snapshot was locked exclusively (being removed or written).
    Skipped,
}

/// What is wrong with one file of a snapshot.
#[derive(Debug, thiserror::Error)]
enum FileFault {
    #[error("{0}")]
    Name(#[from] NameError),
    #[error("unable to read file - {0}")]
    Read(io::Error),
    #[error("wrong size ({got} != {expected})")]
    Size { got: usize, expected: u64 },
    #[error("wrong checksum")]
    Checksum,
    #[error("{0}")]
    Blob(#[from] BlobError),
    #[error("{0}")]
    Index(#[from] IndexError),
    #[error("index checksum/size mismatch (manifest {csum} / {size}, index {index_csum} / {index_size})")]
    IndexSum { csum: String, size: u64, index_csum: String, index_size: u64 },
    /// Chunks the file references that are missing, damaged or of the other crypt mode.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Chunks(Vec<ChunkFault>),
}

/// What is wrong with one chunk an index references.
#[derive(Debug, thiserror::Error)]
enum ChunkFault {
    /// Found damaged earlier in this verify run.
    #[error("chunk {0} is corrupt")]
    KnownCorrupt(Digest),
    #[error("chunk {0} is missing")]
    Missing(Digest),
    #[error("chunk {0}: {1}")]
    Stat(Digest, io::Error),
    /// A valid chunk in the wrong kind of index: reported, but the chunk may serve others.
    #[error("chunk {0}: crypt mode of chunk and index don't match")]
    CryptMode(Digest),
    /// Broken bytes, moved aside so the next backup uploads the chunk again.
    #[error("chunk {digest}: {damage}; moved to {moved:?}")]
    Quarantined { digest: Digest, damage: Damage, moved: PathBuf },
    #[error("chunk {digest}: {damage}; {error}")]
    NotQuarantined { digest: Digest, damage: Damage, error: StoreError },
}

/// Why a chunk's bytes are bad.
#[derive(Debug, thiserror::Error)]
enum Damage {
    #[error("{0}")]
    Read(StoreError),
    #[error("{0}")]
    Blob(#[from] BlobError),
}

/// The outcome of checking one chunk file.
enum ChunkCheck {
    Damaged(Damage),
    CryptMode,
}

impl Datastore {
    /// Moves a chunk file to `<digest>.<n>.bad`, `n` the first free of 0..=8, else 9.
    pub fn quarantine_chunk(&self, digest: &Digest) -> Result<PathBuf> {
        let path = self.chunks().chunk_path(digest);
        let target = (0..9)
            .map(|n| path.with_file_name(format!("{digest}.{n}.bad")))
            .find(|p| std::fs::symlink_metadata(p).is_err())
            .unwrap_or_else(|| path.with_file_name(format!("{digest}.9.bad")));
        std::fs::rename(&path, &target).map_err(crate::store::durable::io_err("rename corrupt chunk", &path))?;
        Ok(target)
    }

    /// Verifies one snapshot and writes its `verify_state` (`upid` names the task).
    pub fn verify_snapshot(
        &self,
        ns: &Namespace,
        snap: &SnapshotRef,
        upid: &str,
        cache: &mut VerifyCache,
    ) -> Result<VerifyResult> {
        let dir = self.snapshot_path(ns, snap);
        let _lock = match DirLock::try_lock(&dir, false, "snapshot", "locked by another operation") {
            Ok(l) => l,
            Err(StoreError::Locked(_)) => return Ok(VerifyResult::Skipped),
            Err(e) => return Err(e),
        };
        let manifest = match load_manifest(&dir) {
            Ok(m) => m,
            Err(e) => return Ok(VerifyResult::Failed(vec![e.to_string()])),
        };
        let mut errors = Vec::new();
        for entry in &manifest.files {
            if let Err(e) = self.verify_file(&dir, entry, cache) {
                errors.push(format!("{}: {e}", entry.filename));
            }
        }
        let state = if errors.is_empty() { "ok" } else { "failed" };
        self.update_manifest(ns, snap, |m| {
            m.unprotected.insert("verify_state".into(), serde_json::json!({"state": state, "upid": upid}));
        })?;
        Ok(if errors.is_empty() { VerifyResult::Ok } else { VerifyResult::Failed(errors) })
    }

    /// Verifies every finished snapshot of the datastore, sharing one chunk cache.
    pub fn verify_all(&self, upid: &str) -> Result<Vec<(Namespace, SnapshotRef, VerifyResult)>> {
        let mut cache = VerifyCache::default();
        let mut out = Vec::new();
        for ns in self.namespaces(&Namespace::root(), None)? {
            for group in self.groups(&ns)? {
                for info in self.snapshots(&ns, &group)?.into_iter().filter(|s| s.finished) {
                    let r = self.verify_snapshot(&ns, &info.snapshot, upid, &mut cache)?;
                    out.push((ns.clone(), info.snapshot, r));
                }
            }
        }
        Ok(out)
    }

    fn verify_file(&self, dir: &std::path::Path, entry: &FileEntry, cache: &mut VerifyCache) -> Result<(), FileFault> {
        let name = ArchiveName::parse(&entry.filename)?;
        let raw = std::fs::read(dir.join(name.as_str())).map_err(FileFault::Read)?;
        let chunks: Vec<(Digest, u64)> = match name.kind() {
            ArchiveKind::Blob => {
                if raw.len() as u64 != entry.size {
                    return Err(FileFault::Size { got: raw.len(), expected: entry.size });
                }
                if hex::encode(sha2::Sha256::digest(&raw)) != entry.csum {
                    return Err(FileFault::Checksum);
                }
                if !blob::check_crc(&raw)?.is_encrypted() {
                    blob::decode(&raw)?;
                }
                return Ok(());
            }
            ArchiveKind::Fixed => {
                let idx = FixedIndex::parse(&raw)?;
                check_index_sum(entry, idx.csum(), idx.size)?;
                idx.digests.iter().enumerate().map(|(i, d)| (*d, idx.chunk_len(i))).collect()
            }
            ArchiveKind::Dynamic => {
                let idx = DynamicIndex::parse(&raw)?;
                check_index_sum(entry, idx.csum(), idx.size())?;
                idx.entries.iter().enumerate().map(|(i, e)| (e.digest, idx.chunk_len(i))).collect()
            }
        };
        self.verify_chunks(chunks, entry.crypt_mode, cache)
    }

    fn verify_chunks(
        &self,
        chunks: Vec<(Digest, u64)>,
        mode: CryptMode,
        cache: &mut VerifyCache,
    ) -> Result<(), FileFault> {
        let mut seen = HashSet::new();
        let mut todo: Vec<(u64, Digest, u64)> = Vec::new();
        let mut errors = Vec::new();
        for (d, len) in chunks {
            if !seen.insert(d) || cache.ok.contains(&d) {
                continue;
            }
            if cache.corrupt.contains(&d) {
                errors.push(ChunkFault::KnownCorrupt(d));
                continue;
            }
            // Reading in inode order keeps a spinning disk's head moving one way.
            match std::fs::symlink_metadata(self.chunks().chunk_path(&d)) {
                Ok(m) => todo.push((m.ino(), d, len)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    cache.corrupt.insert(d);
                    errors.push(ChunkFault::Missing(d));
                }
                Err(e) => errors.push(ChunkFault::Stat(d, e)),
            }
        }
        todo.sort_unstable();
        let results = self.check_chunks_parallel(&todo, mode);
        for ((_, d, _), result) in todo.into_iter().zip(results) {
            match result {
                Ok(read) => {
                    cache.bytes_read += read;
                    cache.ok.insert(d);
                }
                Err(ChunkCheck::CryptMode) => errors.push(ChunkFault::CryptMode(d)),
                Err(ChunkCheck::Damaged(damage)) => {
                    cache.corrupt.insert(d);
                    errors.push(match self.quarantine_chunk(&d) {
                        Ok(moved) => ChunkFault::Quarantined { digest: d, damage, moved },
                        Err(error) => ChunkFault::NotQuarantined { digest: d, damage, error },
                    });
                }
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(FileFault::Chunks(errors)) }
    }

    /// Checks `todo` with [`VERIFY_THREADS`] readers, each taking the next chunk in the given
    /// (inode) order, so reads overlap with hashing and the disk queue stays full. Results come
    /// back in `todo`'s order; the caller alone touches the cache and quarantines.
    fn check_chunks_parallel(&self, todo: &[(u64, Digest, u64)], mode: CryptMode) -> Vec<Result<u64, ChunkCheck>> {
        let threads = VERIFY_THREADS.min(todo.len());
        if threads <= 1 {
            return todo.iter().map(|(_, d, len)| self.check_chunk(d, *len, mode)).collect();
        }
        let next = AtomicUsize::new(0);
        let mut out: Vec<Option<Result<u64, ChunkCheck>>> = (0..todo.len()).map(|_| None).collect();
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some((_, d, len)) = todo.get(i) else { break };
                            done.push((i, self.check_chunk(d, *len, mode)));
                        }
                        done
                    })
                })
                .collect();
            for w in workers {
                for (i, r) in w.join().expect("verify reader panicked") {
                    out[i] = Some(r);
                }
            }
        });
        out.into_iter().map(|r| r.expect("every chunk checked")).collect()
    }

    /// Returns the bytes read for a good chunk.
    fn check_chunk(&self, d: &Digest, len: u64, mode: CryptMode) -> Result<u64, ChunkCheck> {
        let damaged = |e: BlobError| ChunkCheck::Damaged(e.into());
        let raw = self.chunks().read(d).map_err(|e| ChunkCheck::Damaged(Damage::Read(e)))?;
        let kind = blob::check_crc(&raw).map_err(damaged)?;
        if kind.is_encrypted() != (mode == CryptMode::Encrypt) {
            return Err(ChunkCheck::CryptMode);
        }
        blob::verify_chunk(&raw, d, len).map_err(damaged)?;
        Ok(raw.len() as u64)
    }
}

fn check_index_sum(entry: &FileEntry, csum: [u8; 32], size: u64) -> Result<(), FileFault> {
    if hex::encode(csum) != entry.csum || size != entry.size {
        return Err(FileFault::IndexSum {
            csum: entry.csum.clone(),
            size: entry.size,
            index_csum: hex::encode(csum),
            index_size: size,
        });
    }
    Ok(())
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
