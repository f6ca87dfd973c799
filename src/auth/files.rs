//! Durable, private writes of the server's own files under `<data-dir>/etc` (certificate, key,
//! token store, bootstrap token): temp file, fsync, rename, fsync the directory, so a crash
//! leaves either the old or the new file and never a torn one. It lives with auth, whose
//! files are most of them; the server's certificate and key are written through it too.

use std::path::Path;

use crate::store::durable::write_atomic_mode;

/// Writes `bytes` to `path` atomically with exactly the permission bits `mode`, creating the
/// parent directory first. The durable write itself is the store's one helper.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    write_atomic_mode(path, bytes, mode, true).map_err(|e| std::io::Error::other(e.to_string()))
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
