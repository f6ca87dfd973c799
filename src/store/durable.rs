//! Durable file replacement: the one way the store puts a whole file on disk.
//!
//! Readers must never see a half-written file, and a crash must leave either the old or the new
//! content. So every file goes to a temp name in the same directory (so the rename cannot cross
//! a file system), is fsynced, renamed over its final name, and the directory is fsynced so the
//! rename itself survives a crash (formats.md 10, pitfall 12). Temp names follow PBS
//! (`<name minus last extension>.tmp_XXXXXX`) so tools that know PBS's leftovers know ours.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::failpoint;
use crate::store::{Result, StoreError};

/// Mode of every file the store writes by replacement (chunks, blobs, indexes, manifest, notes).
pub const FILE_MODE: u32 = 0o644;

const TMP_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Wraps an I/O error with what was being done and to which path.
pub(crate) fn io_err(what: &str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let context = format!("{what} {path:?}");
    move |source| StoreError::Io { context, source }
}

/// A fresh temp name beside `target`: the last extension replaced by `tmp_XXXXXX`
/// (`index.json.blob` -> `index.json.tmp_Ab3xYz`, `<digest>` -> `<digest>.tmp_Ab3xYz`).
pub fn tmp_path(target: &Path) -> PathBuf {
    let mut random = [0u8; 6];
    getrandom::fill(&mut random).expect("the OS random source is available");
    let suffix: String = random.iter().map(|b| TMP_ALPHABET[*b as usize % TMP_ALPHABET.len()] as char).collect();
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = match name.rfind('.') {
        Some(dot) if dot > 0 => &name[..dot],
        _ => name.as_str(),
    };
    target.with_file_name(format!("{stem}.tmp_{suffix}"))
}

/// Whether `name` is one of [`tmp_path`]'s temp names (`<stem>.tmp_XXXXXX`, the suffix from
/// its alphabet). Such a file is never a finished file: a crash left it, or a write is in flight.
pub fn is_tmp_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() > TMP_SUFFIX_LEN
        && b[b.len() - TMP_SUFFIX_LEN..].starts_with(b".tmp_")
        && b[b.len() - 6..].iter().all(|c| TMP_ALPHABET.contains(c))
}

/// `.tmp_` plus six random characters.
const TMP_SUFFIX_LEN: usize = 11;

/// fsyncs a directory, making renames and creations inside it durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err("fsync directory", dir))
}

/// Creates `path` exclusively with `mode` (exact, whatever the umask), writes `bytes`,
/// optionally fsyncs. On error the file is removed again.
pub fn write_new_file(path: &Path, bytes: &[u8], mode: u32, sync: bool) -> Result<()> {
    write_new_file_checked(path, bytes, mode, sync, None)
}

/// [`write_new_file`] with a failpoint (name, context) between writing and fsyncing, so tests
/// can fail the write as a full disk would (leaving a partial file for the cleanup to remove).
pub(crate) fn write_new_file_checked(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    sync: bool,
    failpoint: Option<(&str, &str)>,
) -> Result<()> {
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(mode).open(path)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        if let Some((point, context)) = failpoint {
            failpoint::check(point, context)?;
        }
        if sync {
            f.sync_all()?;
        }
        Ok(())
    })();
    result.map_err(|e: io::Error| {
        if e.kind() != io::ErrorKind::AlreadyExists {
            let _ = std::fs::remove_file(path);
        }
        io_err("write", path)(e)
    })
}

/// Replaces `target` with `bytes` durably: temp file in the same directory (mode 0644), fsync,
/// rename, fsync the directory. Nothing but the old or the new file is ever visible.
pub fn write_atomic(target: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(target, bytes, true)
}

/// [`write_atomic`] with the fsyncs optional (sync level `none`, benchmarks).
pub fn write_atomic_with(target: &Path, bytes: &[u8], sync: bool) -> Result<()> {
    write_atomic_mode(target, bytes, FILE_MODE, sync)
}

/// [`write_atomic`] with exact permission bits `mode` (e.g. 0600 for secrets; the umask does
/// not apply) and optional fsyncs.
pub fn write_atomic_mode(target: &Path, bytes: &[u8], mode: u32, sync: bool) -> Result<()> {
    let dir = target.parent().ok_or_else(|| StoreError::Refused(format!("no parent directory for {target:?}")))?;
    replace(tmp_path(target), target, dir, bytes, mode, sync, &FILE)
}

/// The failpoints a durable write passes and the words its errors use. Chunk files have their
/// own set so crash tests can strike chunk writes apart from snapshot and config files; both
/// chunk writers (plain and io_uring) strike the same names.
#[derive(Debug)]
pub(crate) struct Steps {
    /// Data written to the temp file, not yet fsynced.
    pub write: &'static str,
    /// Temp file complete (and fsynced), not yet renamed.
    pub rename: &'static str,
    /// Renamed into place (and the directory fsynced).
    pub stored: &'static str,
    rename_failed: &'static str,
    stored_failed: &'static str,
}

/// Every file but a chunk: indexes, blobs, manifests, owners, notes, config files.
pub(crate) const FILE: Steps = Steps {
    write: "file.write",
    rename: "file.rename",
    stored: "file.stored",
    rename_failed: "rename to",
    stored_failed: "write",
};

/// A chunk file (failpoint context: the digest, which is the file name).
pub(crate) const CHUNK: Steps = Steps {
    write: "chunk.write",
    rename: "chunk.rename",
    stored: "chunk.stored",
    rename_failed: "rename chunk to",
    stored_failed: "write chunk",
};

impl Steps {
    /// The error of a write that failed at or after its rename, naming the final file.
    pub(crate) fn failed(&self, target: &Path, source: io::Error) -> StoreError {
        io_err(self.stored_failed, target)(source)
    }
}

/// The one durable replacement: `bytes` to the temp file `tmp` (a fresh [`tmp_path`] name,
/// created exclusively with exactly `mode`; another is drawn if it is taken), fsync if `sync`,
/// rename over `target`, fsync `dir` (the target's directory) if `sync`. A failure at any step
/// removes the temp file again.
pub(crate) fn replace(
    mut tmp: PathBuf,
    target: &Path,
    dir: &Path,
    bytes: &[u8],
    mode: u32,
    sync: bool,
    steps: &Steps,
) -> Result<()> {
    let name = target.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    loop {
        match write_new_file_checked(&tmp, bytes, mode, sync, Some((steps.write, &name))) {
            Ok(()) => break,
            Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => {
                tmp = tmp_path(target)
            }
            Err(e) => return Err(e),
        }
    }
    if let Err(e) = failpoint::check(steps.rename, &name).and_then(|()| std::fs::rename(&tmp, target)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err(steps.rename_failed, target)(e));
    }
    if sync {
        fsync_dir(dir)?;
    }
    failpoint::check(steps.stored, &name).map_err(|e| steps.failed(target, e))
}

/// One `syncfs(2)` of the file system holding `path` (PBS's `filesystem` sync level).
#[allow(unsafe_code)]
pub fn syncfs(path: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let dir = File::open(path).map_err(io_err("syncfs", path))?;
    // SAFETY: plain syscall on a descriptor we own for the duration of the call.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(io_err("syncfs", path)(io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_in(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn tmp_names_follow_pbs() {
        let t = tmp_path(Path::new("/x/index.json.blob"));
        let n = t.file_name().unwrap().to_str().unwrap();
        assert!(n.starts_with("index.json.tmp_") && n.len() == "index.json.tmp_".len() + 6, "{n}");
        let d = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        let t = tmp_path(&Path::new("/c").join(d));
        assert_eq!(t.file_name().unwrap().len(), 75, "PBS's chunk temp names are 75 characters");
        assert_ne!(tmp_path(Path::new("/x/a.blob")), tmp_path(Path::new("/x/a.blob")));
    }

    #[test]
    fn tmp_names_are_recognised() {
        for target in ["/x/index.json.blob", "/x/owner", "/x/.gc-status", "/x/a.didx"] {
            let t = tmp_path(Path::new(target));
            assert!(is_tmp_name(t.file_name().unwrap().to_str().unwrap()), "{t:?}");
        }
        for name in
            ["index.json.blob", "owner", ".tmp_abcdef", "a.tmp_abcde", "a.tmp_abc-ef", "a.tmp_abcdefg", "c.tmp_didx"]
        {
            assert!(!is_tmp_name(name), "{name}");
        }
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("notes");
        write_atomic(&target, b"one").unwrap();
        write_atomic(&target, b"two").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"two");
        assert_eq!(names_in(dir.path()), ["notes"]);
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, FILE_MODE);
        write_atomic_mode(&target, b"secret", 0o600, true).unwrap();
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(names_in(dir.path()), ["notes"]);
    }

    #[test]
    fn failed_write_leaves_old_content() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f.blob");
        write_atomic(&target, b"old").unwrap();
        // A directory where the file should be: the rename fails, the temp must go away.
        let blocked = dir.path().join("sub.blob");
        std::fs::create_dir(&blocked).unwrap();
        std::fs::write(blocked.join("x"), b"keep").unwrap();
        assert!(write_atomic(&blocked, b"new").is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
        assert_eq!(names_in(dir.path()), ["f.blob", "sub.blob"]);
        assert!(write_atomic(&dir.path().join("missing/x"), b"new").is_err());
    }
}
