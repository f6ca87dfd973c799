//! The chunk store `.chunks/XXXX/<digest>`: insert with PBS's dedup-by-size rules
//! (formats.md 5.3), read, atime touch for GC, and the plan the io_uring writer executes.
//!
//! Chunk I/O that the rest of the crate needs (insert, read, touch, stat) is also offered
//! through the [`ChunkBackend`] trait, so an object-store backend can later sit behind the same
//! calls; only the io_uring fast path (`plan_insert`) is specific to a local directory.

use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::format::Digest;
use crate::format::blob::{self, BlobKind};
use crate::store::durable::{self, io_err};
use crate::store::{Result, StoreError};

/// Mode of `.chunks` and each of its 65536 subdirectories.
pub const CHUNK_DIR_MODE: u32 = 0o750;

/// Chunk operations independent of where chunks live.
pub trait ChunkBackend: Send + Sync + std::fmt::Debug {
    /// Stores `raw` (final blob bytes) under `digest` following formats.md 5.3.
    fn insert_chunk(&self, digest: &Digest, raw: &[u8]) -> Result<InsertOutcome>;
    /// The chunk's stored bytes.
    fn read_chunk(&self, digest: &Digest) -> Result<Vec<u8>>;
    /// Marks the chunk as used now for GC; false if it does not exist.
    fn touch_chunk(&self, digest: &Digest) -> Result<bool>;
    /// Stored length of the chunk, if present.
    fn chunk_len(&self, digest: &Digest) -> Result<Option<u64>>;
}

#[derive(Debug)]
pub struct ChunkStore {
    base: PathBuf,
    /// One bit per `XXXX` directory known to exist: a store copied without its empty
    /// directories (git drops them) gets them created on the first insert, without a stat
    /// per chunk.
    dirs_present: Box<[AtomicU64]>,
    fsync: AtomicBool,
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

/// What must happen on disk to insert a chunk, decided from the existing file (if any); the
/// `ChunkWriter` actor carries out `Write` with io_uring, or with plain I/O as a fallback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertPlan {
    /// Keep the existing file; it has already been touched for GC.
    Keep,
    /// Write the blob to `tmp` (fresh name in the same directory, create exclusively with mode
    /// 0644), fsync, rename to `dest`, fsync `dir`. `dir` exists.
    Write { tmp: PathBuf, dest: PathBuf, dir: PathBuf },
}

/// Sets atime to now and leaves mtime alone, without following symlinks; `Ok(false)` if the
/// file does not exist. This is GC's mark (formats.md 6.2), and works on noatime mounts.
pub fn touch_atime(path: &Path) -> Result<bool> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| StoreError::Refused(format!("path with NUL byte {path:?}")))?;
    let times = [
        libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_NOW },
        libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT },
    ];
    // SAFETY: valid NUL-terminated path and a two-element timespec array, as utimensat wants.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.kind() == io::ErrorKind::NotFound { Ok(false) } else { Err(io_err("update atime of", path)(e)) }
}

/// Kind of an existing chunk file from its header; `None` if the header is not a blob's.
fn existing_kind(path: &Path) -> Result<Option<BlobKind>> {
    let mut header = Vec::with_capacity(44);
    std::fs::File::open(path)
        .and_then(|f| f.take(44).read_to_end(&mut header))
        .map_err(io_err("read header of chunk", path))?;
    Ok(blob::kind_of(&header).ok())
}

impl ChunkStore {
    pub fn new(base: PathBuf) -> Self {
        let dirs_present = (0..1024).map(|_| AtomicU64::new(0)).collect();
        ChunkStore { base, dirs_present, fsync: AtomicBool::new(true), sweep_lock: Mutex::new(()) }
    }
    pub fn base(&self) -> &Path {
        &self.base
    }
    pub fn chunk_path(&self, digest: &Digest) -> PathBuf {
        self.base.join(digest.prefix_dir()).join(digest.to_hex())
    }
    /// Whether `insert` fsyncs chunk files and their directory (sync level `file`, default).
    pub fn set_fsync(&self, on: bool) {
        self.fsync.store(on, Ordering::Relaxed);
    }
    pub fn fsync(&self) -> bool {
        self.fsync.load(Ordering::Relaxed)
    }

    /// Makes sure `.chunks/XXXX` exists (mode 0750), remembering it for next time.
    fn ensure_dir(&self, digest: &Digest) -> Result<PathBuf> {
        let idx = u16::from_be_bytes([digest.0[0], digest.0[1]]) as usize;
        let (word, bit) = (idx / 64, 1u64 << (idx % 64));
        let dir = self.base.join(digest.prefix_dir());
        if self.dirs_present[word].load(Ordering::Relaxed) & bit == 0 {
            create_chunk_dir(&dir)?;
            self.dirs_present[word].fetch_or(bit, Ordering::Relaxed);
        }
        Ok(dir)
    }

    /// Decides how to insert `raw` (the final blob bytes) under `digest`, applying the
    /// dedup-by-size and encrypted/plain replacement rules. Touches a kept chunk's atime.
    pub fn plan_insert(&self, digest: &Digest, raw: &[u8]) -> Result<InsertPlan> {
        let _sweep = self.lock_sweep();
        let dest = self.chunk_path(digest);
        let write = |dest: PathBuf| -> Result<InsertPlan> {
            let dir = self.ensure_dir(digest)?;
            Ok(InsertPlan::Write { tmp: durable::tmp_path(&dest), dest, dir })
        };
        let meta = match std::fs::symlink_metadata(&dest) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return write(dest),
            Err(e) => return Err(io_err("stat chunk", &dest)(e)),
        };
        if !meta.file_type().is_file() {
            return Err(StoreError::Corrupt(format!("chunk {digest} is not a regular file ({:?})", file_kind(&meta))));
        }
        let old_len = meta.len();
        let new_len = raw.len() as u64;
        let keep = || -> Result<InsertPlan> {
            touch_atime(&dest)?;
            Ok(InsertPlan::Keep)
        };
        if old_len == new_len {
            return keep();
        }
        if old_len == 0 {
            tracing::warn!(%digest, "found empty chunk file, overwriting");
            return write(dest);
        }
        let new_kind = blob::kind_of(raw).map_err(|e| StoreError::Corrupt(format!("chunk {digest}: {e}")))?;
        if new_kind.is_encrypted() {
            let old_kind = existing_kind(&dest)?;
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
        if old_len < new_len { keep() } else { write(dest) }
    }

    /// Excludes inserts' dedup decisions; GC holds it around each stat + unlink.
    pub(crate) fn lock_sweep(&self) -> MutexGuard<'_, ()> {
        self.sweep_lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Carries out a `Write` plan with plain file I/O: the store's one durable write.
    pub fn execute_write(&self, tmp: &Path, dest: &Path, dir: &Path, raw: &[u8]) -> Result<()> {
        durable::replace(tmp.to_path_buf(), dest, dir, raw, durable::FILE_MODE, self.fsync(), &durable::CHUNK)
    }

    /// Plain synchronous insert: plan, then temp file, write, fsync, rename, fsync dir.
    pub fn insert(&self, digest: &Digest, raw: &[u8]) -> Result<InsertOutcome> {
        match self.plan_insert(digest, raw)? {
            InsertPlan::Keep => Ok(InsertOutcome::Duplicate),
            InsertPlan::Write { tmp, dest, dir } => {
                self.execute_write(&tmp, &dest, &dir, raw)?;
                Ok(InsertOutcome::Written)
            }
        }
    }

    /// Reads a chunk file's raw bytes.
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.chunk_path(digest);
        std::fs::read(&path)
            .map_err(|source| StoreError::Io { context: format!("reading file {path:?} failed"), source })
    }

    /// Sets the chunk's atime to now (GC mark); false if the chunk is missing.
    pub fn touch(&self, digest: &Digest) -> Result<bool> {
        touch_atime(&self.chunk_path(digest))
    }

    /// Stored length of a chunk, `None` if absent.
    pub fn len_of(&self, digest: &Digest) -> Result<Option<u64>> {
        let path = self.chunk_path(digest);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_file() => Ok(Some(m.len())),
            Ok(_) => Err(StoreError::Corrupt(format!("chunk {digest} is not a regular file"))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("stat chunk", &path)(e)),
        }
    }

    /// Creates every `XXXX` directory that is missing (datastore creation).
    pub(crate) fn create_all_dirs(&self) -> Result<()> {
        // One chmod per directory doubles the cost of creating 65536 of them; it is only
        // needed when the umask strips bits from 0750, which the first new directory tells.
        let mut need_chmod: Option<bool> = None;
        for idx in 0..=u16::MAX {
            let dir = self.base.join(format!("{idx:04x}"));
            let created = create_dir_with_mode(&dir, need_chmod == Some(true))?;
            if created && need_chmod.is_none() {
                let mode = std::fs::metadata(&dir).map_err(io_err("stat", &dir))?.mode() & 0o7777;
                need_chmod = Some(mode != CHUNK_DIR_MODE);
                if mode != CHUNK_DIR_MODE {
                    set_dir_mode(&dir)?;
                }
            }
            self.dirs_present[idx as usize / 64].fetch_or(1 << (idx % 64), Ordering::Relaxed);
        }
        Ok(())
    }
}

fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    let ft = meta.file_type();
    if ft.is_dir() {
        "directory"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_fifo() || ft.is_socket() || ft.is_block_device() || ft.is_char_device() {
        "special file"
    } else {
        "unknown"
    }
}

/// `mkdir` with mode 0750 exactly (the umask could strip bits); an existing directory is fine.
pub(crate) fn create_chunk_dir(dir: &Path) -> Result<()> {
    if create_dir_with_mode(dir, false)? {
        set_dir_mode(dir)?;
    }
    Ok(())
}

fn set_dir_mode(dir: &Path) -> Result<()> {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(CHUNK_DIR_MODE)).map_err(io_err("chmod", dir))
}

/// `mkdir` with 0750 (subject to the umask); true if it created the directory.
fn create_dir_with_mode(dir: &Path, chmod: bool) -> Result<bool> {
    match std::fs::DirBuilder::new().mode(CHUNK_DIR_MODE).create(dir) {
        Ok(()) => {
            if chmod {
                set_dir_mode(dir)?;
            }
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io_err("create chunk directory", dir)(e)),
    }
}

impl ChunkBackend for ChunkStore {
    fn insert_chunk(&self, digest: &Digest, raw: &[u8]) -> Result<InsertOutcome> {
        self.insert(digest, raw)
    }
    fn read_chunk(&self, digest: &Digest) -> Result<Vec<u8>> {
        self.read(digest)
    }
    fn touch_chunk(&self, digest: &Digest) -> Result<bool> {
        self.touch(digest)
    }
    fn chunk_len(&self, digest: &Digest) -> Result<Option<u64>> {
        self.len_of(digest)
    }
}

#[cfg(test)]
#[path = "chunk_store_tests.rs"]
mod tests;
