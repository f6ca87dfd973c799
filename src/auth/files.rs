//! Durable, private writes of the server's own files under `<data-dir>/etc` (certificate, key,
//! token store, bootstrap token): temp file, fsync, rename, fsync the directory, so a crash
//! leaves either the old or the new file and never a torn one. It lives with auth, whose
//! files are most of them; the server's certificate and key are written through it too.

use std::path::Path;

use crate::store::StoreError;
use crate::store::durable::write_atomic_mode;

/// Why one of these files could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The durable write (the store's words for the step that failed).
    #[error("{0}")]
    Write(#[from] StoreError),
    /// The login ticket key file has the wrong length.
    #[error("{} is not 32 bytes", .0.display())]
    NotAKey(std::path::PathBuf),
    /// No randomness for a new key.
    #[error("{0}")]
    Random(getrandom::Error),
}

/// Writes `bytes` to `path` atomically with exactly the permission bits `mode`, creating the
/// parent directory first. The durable write itself is the store's one helper.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FileError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    Ok(write_atomic_mode(path, bytes, mode, true)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_with_mode_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("etc/secret.json");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read_dir(p.parent().unwrap()).unwrap().count(), 1, "no temp file left");
    }
}
