//! The local chunk directory (`.chunks/XXXX/<digest>`, formats.md 5.3) and the backend that
//! reads and writes it with plain system calls. The io_uring backend shares the directory, its
//! temp names and everything but the batched chunk write.

use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::format::Digest;
use crate::format::blob::{self, BlobKind};
use crate::store::durable::{self, io_err};
use crate::store::io::{Backend, ChunkWrite, WriteMethod};
use crate::store::{Result, StoreError};

/// Mode of `.chunks` and each of its 65536 subdirectories.
pub const CHUNK_DIR_MODE: u32 = 0o750;

/// Where chunk `digest` lives below the chunk directory `base`.
pub fn chunk_path(base: &Path, digest: &Digest) -> PathBuf {
    base.join(digest.prefix_dir()).join(digest.to_hex())
}

/// A chunk directory being written to.
#[derive(Debug)]
pub struct ChunkDir {
    base: PathBuf,
    /// One bit per `XXXX` directory known to exist: a store copied without its empty
    /// directories (git drops them) gets them created on the first insert, without a stat
    /// per chunk.
    dirs_present: Box<[AtomicU64]>,
}

/// Where one chunk write goes: `tmp` (a fresh temp name beside `dest`), renamed to `dest` in
/// `dir`, which exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteTarget {
    pub tmp: PathBuf,
    pub dest: PathBuf,
    pub dir: PathBuf,
}

impl ChunkDir {
    pub fn new(base: PathBuf) -> Self {
        ChunkDir { base, dirs_present: (0..1024).map(|_| AtomicU64::new(0)).collect() }
    }
    pub fn base(&self) -> &Path {
        &self.base
    }
    pub fn path(&self, digest: &Digest) -> PathBuf {
        chunk_path(&self.base, digest)
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

    /// The temp name, final name and (created if missing) directory of a write of `digest`.
    /// Temp names follow PBS (`<digest>.tmp_XXXXXX`), whichever backend writes.
    pub fn target(&self, digest: &Digest) -> Result<WriteTarget> {
        let dir = self.ensure_dir(digest)?;
        let dest = dir.join(digest.to_hex());
        Ok(WriteTarget { tmp: durable::tmp_path(&dest), dest, dir })
    }
}

/// Plain file I/O on a local chunk directory.
#[derive(Debug)]
pub struct FileBackend {
    dir: ChunkDir,
    /// Sync level `file`: fsync each chunk file and its directory.
    sync: bool,
}

impl FileBackend {
    pub fn new(base: PathBuf, sync: bool) -> Self {
        FileBackend { dir: ChunkDir::new(base), sync }
    }
    pub fn dir(&self) -> &ChunkDir {
        &self.dir
    }
    /// Whether chunk files and their directories are fsynced.
    pub fn sync(&self) -> bool {
        self.sync
    }
}

impl Backend for FileBackend {
    fn method(&self) -> WriteMethod {
        WriteMethod::Fallback
    }

    fn chunk_len(&self, digest: &Digest) -> Result<Option<u64>> {
        let path = self.dir.path(digest);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_file() => Ok(Some(m.len())),
            Ok(m) => {
                Err(StoreError::Corrupt(format!("chunk {digest} is not a regular file ({})", file_kind(m.file_type()))))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("stat chunk", &path)(e)),
        }
    }

    fn chunk_kind(&self, digest: &Digest) -> Result<Option<BlobKind>> {
        let path = self.dir.path(digest);
        let mut header = Vec::with_capacity(44);
        std::fs::File::open(&path)
            .and_then(|f| f.take(44).read_to_end(&mut header))
            .map_err(io_err("read header of chunk", &path))?;
        Ok(blob::kind_of(&header).ok())
    }

    fn touch_chunk(&self, digest: &Digest) -> Result<bool> {
        touch_atime(&self.dir.path(digest))
    }

    fn read_chunk(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.dir.path(digest);
        std::fs::read(&path)
            .map_err(|source| StoreError::Io { context: format!("reading file {path:?} failed"), source })
    }

    /// One chunk after the other, each through the store's one durable write.
    fn write_chunks(&self, batch: &[ChunkWrite<'_>], done: &mut dyn FnMut(usize, Result<()>)) {
        for (i, chunk) in batch.iter().enumerate() {
            let written = self.dir.target(chunk.digest).and_then(|t| {
                durable::replace(t.tmp, &t.dest, &t.dir, chunk.data, durable::FILE_MODE, self.sync, &durable::CHUNK)
            });
            done(i, written);
        }
    }

    fn write_file(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        durable::write_atomic(path, bytes)
    }
}

/// Sets atime to now and leaves mtime alone, without following symlinks; `Ok(false)` if the
/// file does not exist. This is GC's mark (formats.md 6.2), and works on noatime mounts.
#[allow(unsafe_code)]
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

fn file_kind(ft: std::fs::FileType) -> &'static str {
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

/// Creates every `XXXX` directory below `base` that is missing (datastore creation).
pub(crate) fn create_all_dirs(base: &Path) -> Result<()> {
    // One chmod per directory doubles the cost of creating 65536 of them; it is only
    // needed when the umask strips bits from 0750, which the first new directory tells.
    let mut need_chmod: Option<bool> = None;
    for idx in 0..=u16::MAX {
        let dir = base.join(format!("{idx:04x}"));
        let created = create_dir_with_mode(&dir, need_chmod == Some(true))?;
        if created && need_chmod.is_none() {
            let mode = std::fs::metadata(&dir).map_err(io_err("stat", &dir))?.mode() & 0o7777;
            need_chmod = Some(mode != CHUNK_DIR_MODE);
            if mode != CHUNK_DIR_MODE {
                set_dir_mode(&dir)?;
            }
        }
    }
    Ok(())
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
