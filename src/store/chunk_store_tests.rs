//! Each branch of formats.md 5.3, plus lazy directory creation and reads.

use super::*;
use crate::store::io::files::WriteTarget;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

const PLAIN: [u8; 8] = [66, 171, 56, 7, 190, 131, 112, 161];
const ZSTD: [u8; 8] = [49, 185, 88, 66, 111, 182, 163, 127];
const ENC: [u8; 8] = [123, 103, 133, 190, 34, 45, 76, 240];
const ENC_ZSTD: [u8; 8] = [230, 89, 27, 191, 11, 191, 216, 11];

/// A structurally valid blob of `payload` bytes (CRC not set: the store doesn't check it).
fn blob(magic: [u8; 8], payload: usize, fill: u8) -> Vec<u8> {
    let header = if magic == ENC || magic == ENC_ZSTD { 44 } else { 12 };
    let mut v = magic.to_vec();
    v.resize(header, 0);
    v.resize(header + payload, fill);
    v
}

fn store() -> (tempfile::TempDir, ChunkStore) {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join(".chunks");
    std::fs::create_dir(&base).unwrap();
    (dir, ChunkStore::new(base))
}

fn digest() -> Digest {
    Digest::of(b"hello")
}

#[allow(unsafe_code)]
fn set_old_atime(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let times =
        [libc::timespec { tv_sec: 1_000_000, tv_nsec: 0 }, libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT }];
    // SAFETY: a NUL-terminated path and a two-element timespec array, as utimensat wants.
    assert_eq!(unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) }, 0);
}

fn atime(path: &Path) -> i64 {
    std::fs::metadata(path).unwrap().atime()
}

/// Puts `existing` in place, inserts `new`, returns the outcome and the file's content after.
fn insert_over(existing: &[u8], new: &[u8]) -> (Result<InsertOutcome>, Vec<u8>, bool) {
    let (_d, cs) = store();
    let d = digest();
    assert_eq!(cs.insert(&d, existing).unwrap(), InsertOutcome::Written);
    let path = cs.chunk_path(&d);
    set_old_atime(&path);
    let r = cs.insert(&d, new);
    let touched = atime(&path) > 1_000_000;
    let after = std::fs::read(&path).unwrap();
    let entries = std::fs::read_dir(path.parent().unwrap()).unwrap().count();
    assert_eq!(entries, 1, "no temp file may be left");
    (r, after, touched)
}

#[test]
fn new_chunk_is_written_with_pbs_layout() {
    let (_d, cs) = store();
    let d = digest();
    let raw = blob(PLAIN, 5, b'h');
    assert_eq!(cs.len_of(&d).unwrap(), None);
    assert_eq!(cs.insert(&d, &raw).unwrap(), InsertOutcome::Written);
    let path = cs.chunk_path(&d);
    assert!(path.ends_with(".chunks/2cf2/2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"));
    assert_eq!(std::fs::read(&path).unwrap(), raw);
    assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o644);
    assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o7777, 0o750);
    assert_eq!(cs.read(&d).unwrap(), raw);
    assert_eq!(cs.len_of(&d).unwrap(), Some(raw.len() as u64));
}

#[test]
fn same_length_is_kept_even_if_different_and_touched() {
    let old = blob(PLAIN, 5, b'a');
    let new = blob(PLAIN, 5, b'b');
    let (r, after, touched) = insert_over(&old, &new);
    assert_eq!(r.unwrap(), InsertOutcome::Duplicate);
    assert_eq!(after, old);
    assert!(touched);
}

#[test]
fn empty_file_is_overwritten() {
    let (_d, cs) = store();
    let d = digest();
    let path = cs.chunk_path(&d);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"").unwrap();
    let raw = blob(ENC, 5, 1);
    assert_eq!(cs.insert(&d, &raw).unwrap(), InsertOutcome::Written);
    assert_eq!(std::fs::read(&path).unwrap(), raw);
}

#[test]
fn plain_smaller_existing_is_kept() {
    let old = blob(ZSTD, 3, 1);
    let new = blob(PLAIN, 9, 1);
    let (r, after, touched) = insert_over(&old, &new);
    assert_eq!(r.unwrap(), InsertOutcome::Duplicate);
    assert_eq!(after, old);
    assert!(touched);
}

#[test]
fn plain_smaller_new_replaces_larger() {
    let old = blob(PLAIN, 9, 1);
    let new = blob(ZSTD, 3, 1);
    let (r, after, _) = insert_over(&old, &new);
    assert_eq!(r.unwrap(), InsertOutcome::Written);
    assert_eq!(after, new);
}

#[test]
fn encrypted_never_replaces_plain() {
    for old_magic in [PLAIN, ZSTD] {
        let old = blob(old_magic, 20, 1);
        let (r, after, _) = insert_over(&old, &blob(ENC_ZSTD, 3, 1));
        assert!(matches!(r, Err(StoreError::Refused(_))), "{r:?}");
        assert_eq!(after, old);
    }
}

#[test]
fn encrypted_uncompressed_pair_of_other_length_is_refused() {
    let old = blob(ENC, 20, 1);
    let (r, after, _) = insert_over(&old, &blob(ENC, 3, 1));
    assert!(matches!(r, Err(StoreError::Refused(_))), "{r:?}");
    assert_eq!(after, old);
}

#[test]
fn encrypted_with_compression_involved_keeps_first() {
    for (old_magic, new_magic) in [(ENC, ENC_ZSTD), (ENC_ZSTD, ENC), (ENC_ZSTD, ENC_ZSTD)] {
        let old = blob(old_magic, 20, 1);
        let (r, after, touched) = insert_over(&old, &blob(new_magic, 3, 1));
        assert_eq!(r.unwrap(), InsertOutcome::Duplicate);
        assert_eq!(after, old);
        assert!(touched);
    }
}

#[test]
fn non_regular_file_is_an_error() {
    let (_d, cs) = store();
    let d = digest();
    std::fs::create_dir_all(cs.chunk_path(&d)).unwrap();
    assert!(matches!(cs.insert(&d, &blob(PLAIN, 5, 1)), Err(StoreError::Corrupt(_))));
}

#[test]
fn plan_names_a_pbs_style_temp_in_the_same_dir() {
    let (_d, cs) = store();
    let d = digest();
    let InsertPlan::Write { replace: false } = cs.plan_insert(&d, &blob(PLAIN, 5, 1)).unwrap() else {
        panic!("new chunk must be written")
    };
    // Both local backends write where the chunk directory says.
    let WriteTarget { tmp, dest, dir } = FileBackend::new(cs.base().to_path_buf(), true).dir().target(&d).unwrap();
    assert_eq!(tmp.parent(), Some(dir.as_path()));
    assert_eq!(dest.parent(), Some(dir.as_path()));
    assert!(dir.is_dir(), "the writer must find the directory");
    let name = tmp.file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with(&format!("{d}.tmp_")) && name.len() == 75, "{name}");
}

#[test]
fn missing_chunk_read_names_the_file() {
    let (_d, cs) = store();
    let err = cs.read(&digest()).unwrap_err().to_string();
    assert!(err.starts_with("reading file ") && err.contains("2cf24dba"), "{err}");
    assert!(!cs.touch(&digest()).unwrap());
}

#[test]
fn a_digest_twice_in_one_batch_is_decided_after_the_first_write_settles() {
    let (_d, cs) = store();
    let d = Digest::of(b"uploaded twice at once");
    let raw = blob(PLAIN, 5, 1);
    // The first write fails; the second upload must not be answered "already stored".
    crate::failpoint::set(&format!("chunk.write:{}=eio@1", d.to_hex())).unwrap();
    let mut outcomes: Vec<(usize, Result<InsertOutcome>)> = Vec::new();
    cs.insert_batch(&[(&d, &raw), (&d, &raw)], |i, r| outcomes.push((i, r)));
    crate::failpoint::clear();
    outcomes.sort_by_key(|(i, _)| *i);
    let err = outcomes[0].1.as_ref().unwrap_err().to_string();
    assert!(err.starts_with(&format!("storing chunk {d} failed: ")), "{err}");
    assert_eq!(outcomes[1].1.as_ref().unwrap(), &InsertOutcome::Written);
    assert_eq!(cs.read(&d).unwrap(), raw);
}
