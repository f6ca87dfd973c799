//! Where the golden datastore lives: `tests/data/golden/`, written by the real PBS 3.2.4 and
//! kept in the repository so a plain clone runs every test (its README records how it was made
//! and the SHA-256 of each archive). Included with `#[path]` by every test that reads it, the
//! crate's own unit tests too, so the location is written once.
#![allow(dead_code)] // each includer uses only some of these

use std::path::{Path, PathBuf};

/// The folder: the store, the encryption key and the README with the archive hashes.
pub const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/golden");

/// The datastore itself (read-only: copy it with [`copy_store`] before writing to it).
pub fn store() -> PathBuf {
    Path::new(DIR).join("pbs-3.2.4-store")
}

/// The key the encrypted snapshot was made with (kdf none).
pub fn enc_key() -> PathBuf {
    Path::new(DIR).join("golden-enc.key")
}

/// The README with the archive hashes.
pub fn readme() -> PathBuf {
    Path::new(DIR).join("README.md")
}

/// Copies the store into `dst`, which may be missing, empty or an existing store: every file
/// copied is writable whatever the checkout's permissions, folders that already exist keep
/// their mode. Git keeps no empty folders, so of the `.chunks/XXXX/` prefixes only those that
/// hold a chunk are copied; the chunk store creates a missing prefix when it writes there.
pub fn copy_store(dst: &Path) {
    copy_tree(&store(), dst);
}

fn copy_tree(src: &Path, dst: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if !dst.is_dir() {
        std::fs::create_dir_all(dst).unwrap();
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
}
