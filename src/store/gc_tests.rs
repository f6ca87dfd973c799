//! Mark and sweep against hand-set atimes; locks; abort on a broken index.

use super::*;
use crate::format::dynamic_index::DynamicEntry;
use crate::format::{ArchiveName, Authid, BackupType, Namespace};
use crate::store::BackupTxn;
use crate::store::backup::tests::{finished, snap, test_store};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

const OLD: i64 = 1_000_000;

#[allow(unsafe_code)]
fn set_atime(path: &Path, t: i64) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let times = [libc::timespec { tv_sec: t, tv_nsec: 0 }, libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT }];
    // SAFETY: a NUL-terminated path and a two-element timespec array, as utimensat wants.
    assert_eq!(unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) }, 0);
}

fn chunk(ds: &Datastore, name: &str, atime: i64) -> Digest {
    let d = Digest::of(name.as_bytes());
    let raw = crate::format::blob::encode(name.as_bytes(), false).unwrap();
    ds.chunks().insert(&d, &raw).unwrap();
    set_atime(&ds.chunks().chunk_path(&d), atime);
    d
}

fn didx(digests: &[Digest]) -> Vec<u8> {
    let entries =
        digests.iter().enumerate().map(|(i, d)| DynamicEntry { end: (i as u64 + 1) * 10, digest: *d }).collect();
    DynamicIndex { uuid: [0; 16], ctime: 0, entries }.encode()
}

fn exists(ds: &Datastore, d: &Digest) -> bool {
    ds.chunks().chunk_path(d).exists()
}

#[test]
fn mark_and_sweep() {
    let (dir, ds) = test_store();
    let root = Namespace::root();
    let now = now_epoch();
    let a = chunk(&ds, "in finished snapshot", OLD);
    let b = chunk(&ds, "in unfinished snapshot", OLD);
    let c = chunk(&ds, "only in a tmp index", OLD);
    let d = chunk(&ds, "unreferenced", OLD);
    let e = chunk(&ds, "unreferenced but young", now - 1000);
    let bad = ds.chunks().chunk_path(&Digest::of(b"bad")).with_extension("0.bad");
    std::fs::create_dir_all(bad.parent().unwrap()).unwrap();
    std::fs::write(&bad, b"12345").unwrap();
    set_atime(&bad, OLD);
    // Chunk temp files: one a crashed earlier process left (written before this process
    // opened the store, though not a day ago), one a write of this process may still be using.
    let crashed_tmp = ds.chunks().chunk_path(&d).with_extension("tmp_abcdef");
    std::fs::write(&crashed_tmp, b"left by a crash").unwrap();
    let before_start = crate::store::recover::process_start() - std::time::Duration::from_secs(60);
    std::fs::File::options().write(true).open(&crashed_tmp).unwrap().set_modified(before_start).unwrap();
    let tmp = ds.chunks().chunk_path(&e).with_extension("tmp_ghijkl");
    std::fs::write(&tmp, b"in flight").unwrap();
    set_atime(&tmp, OLD);

    let s1 = snap(BackupType::Host, "h", 1_700_000_000);
    finished(&ds, &s1, None);
    std::fs::write(ds.snapshot_path(&root, &s1).join("a.didx"), didx(&[a, a])).unwrap();
    let s2 = snap(BackupType::Vm, "1", 1_700_000_000);
    let txn = BackupTxn::begin(Arc::clone(&ds), root.clone(), s2, &Authid::parse("u@pbs").unwrap(), true).unwrap();
    std::fs::write(txn.path.join("b.didx"), didx(&[b])).unwrap();
    std::fs::write(txn.path.join("c.tmp_didx"), didx(&[c])).unwrap();
    txn.commit(); // left unfinished, as after a crash

    let st = ds.garbage_collect(&GcOptions { upid: Some("UPID:test".into()), ..Default::default() }).unwrap();
    assert!(exists(&ds, &a) && exists(&ds, &b), "referenced chunks survive");
    assert!(!exists(&ds, &c) && !exists(&ds, &d), "unreferenced old chunks go");
    assert!(exists(&ds, &e), "young unreferenced chunks are pending");
    assert!(!bad.exists());
    // GC reads every chunk directory anyway, so it is where crash leftovers there go (start-up
    // recovery does not read 65536 directories); a temp file this process may be writing stays.
    assert!(!crashed_tmp.exists(), "a temp file older than this process is a crash leftover");
    assert!(tmp.exists(), "a temp file younger than this process may belong to a running write");
    assert_eq!(st.removed_temp_files, 1);
    assert_eq!(st.index_file_count, 2);
    assert_eq!(st.index_data_bytes, 30);
    assert_eq!((st.removed_chunks, st.removed_bad, st.pending_chunks, st.disk_chunks), (2, 1, 1, 2));
    let len = |x: &Digest| ds.chunks().len_of(x).unwrap().unwrap();
    assert_eq!(st.disk_bytes, len(&a) + len(&b));
    assert_eq!(st.pending_bytes, len(&e));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(".gc-status")).unwrap()).unwrap();
    assert_eq!(json["removed-chunks"], 2);
    assert_eq!(json["upid"], "UPID:test");
    assert_eq!(json["still-bad"], 0);
    assert!(json.get("removed-temp-files").is_none(), ".gc-status keeps PBS's keys: {json}");

    // With no cutoff, the young one goes too.
    let st = ds.garbage_collect(&GcOptions { atime_cutoff: -SAFETY_MARGIN - 2000, upid: None }).unwrap();
    assert!(!exists(&ds, &e) && exists(&ds, &a));
    assert_eq!(st.removed_chunks, 1);
}

#[test]
fn missing_chunk_keeps_its_bad_copies() {
    let (_dir, ds) = test_store();
    let root = Namespace::root();
    let g = chunk(&ds, "quarantined", OLD);
    let path = ds.chunks().chunk_path(&g);
    let bad = path.with_file_name(format!("{g}.0.bad"));
    std::fs::rename(&path, &bad).unwrap();
    let s = snap(BackupType::Host, "h", 1_700_000_000);
    finished(&ds, &s, None);
    std::fs::write(ds.snapshot_path(&root, &s).join("x.didx"), didx(&[g])).unwrap();
    ds.garbage_collect(&GcOptions::default()).unwrap();
    assert!(bad.exists());
}

#[test]
fn broken_index_aborts_before_sweeping() {
    let (_dir, ds) = test_store();
    let root = Namespace::root();
    let d = chunk(&ds, "old", OLD);
    let s = snap(BackupType::Host, "h", 1_700_000_000);
    finished(&ds, &s, None);
    std::fs::write(ds.snapshot_path(&root, &s).join("x.fidx"), b"garbage").unwrap();
    let err = ds.garbage_collect(&GcOptions::default()).unwrap_err();
    assert!(err.to_string().contains("unable to parse index"), "{err}");
    assert!(exists(&ds, &d));
}

#[test]
#[allow(unsafe_code)]
fn foreign_writer_blocks_gc_own_writers_do_not() {
    let (dir, ds) = test_store();
    let foreign = std::fs::File::options().read(true).write(true).open(dir.path().join(".lock")).unwrap();
    // SAFETY: a zeroed flock (plain integers) is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_RDLCK as _;
    // SAFETY: F_OFD_SETLK with a pointer to a live flock whose l_pid is 0, as OFD locks require.
    assert_eq!(unsafe { libc::fcntl(foreign.as_raw_fd(), libc::F_OFD_SETLK, &fl) }, 0);
    assert!(ds.garbage_collect(&GcOptions::default()).is_err());
    drop(foreign);

    let txn = BackupTxn::begin(
        Arc::clone(&ds),
        Namespace::root(),
        snap(BackupType::Host, "h", 1_700_000_000),
        &Authid::parse("u@pbs").unwrap(),
        true,
    )
    .unwrap();
    // A chunk the running backup just uploaded, not yet in any index, must survive any cutoff.
    let fresh = chunk(&ds, "fresh", now_epoch());
    let st = ds.garbage_collect(&GcOptions { atime_cutoff: -SAFETY_MARGIN - 2000, upid: None }).unwrap();
    assert!(exists(&ds, &fresh), "{st:?}");
    txn.write_file(&ArchiveName::parse("x.blob").unwrap(), b"").unwrap();
}

#[test]
fn name_filter() {
    let d = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
    assert_eq!(chunk_file_kind(d), Some(false));
    assert_eq!(chunk_file_kind(&format!("{d}.3.bad")), Some(true));
    assert_eq!(chunk_file_kind(&format!("{d}.tmp_abcdef")), None);
    assert_eq!(chunk_file_kind(&format!("{d}.10.bad")), None);
    assert_eq!(chunk_file_kind("x"), None);
    assert!(is_chunk_tmp(&format!("{d}.tmp_abcdef")));
    assert!(!is_chunk_tmp(&format!("{d}.tmp_abc")) && !is_chunk_tmp(&format!("{}.tmp_abcdef", &d[1..])));
}
