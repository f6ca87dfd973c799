//! Start-up recovery against trees laid out the way a crash at each step leaves them.

use super::*;
use crate::format::{Authid, BackupType, Digest};
use crate::store::BackupTxn;
use crate::store::backup::tests::{finished, snap, test_store, tree};
use std::sync::Arc;

fn begin(ds: &Arc<Datastore>, s: &crate::format::SnapshotRef) -> BackupTxn {
    BackupTxn::begin(Arc::clone(ds), Namespace::root(), s.clone(), &Authid::parse("u@pbs").unwrap(), true).unwrap()
}

/// A backup that got as far as writing `files` and then died: its directory stays.
fn crashed(ds: &Arc<Datastore>, s: &crate::format::SnapshotRef, files: &[&str]) {
    let txn = begin(ds, s);
    for f in files {
        std::fs::write(txn.path.join(f), b"partial").unwrap();
    }
    txn.commit(); // what a SIGKILL does: no cleanup runs
}

#[test]
fn removes_what_a_crash_left_and_nothing_else() {
    let (dir, ds) = test_store();
    let root = dir.path();
    // An incremental backup died after an index, with a manifest rewrite of its base half done.
    let base = snap(BackupType::Host, "h", 1_700_000_000);
    finished(&ds, &base, None);
    std::fs::write(root.join("host/h/2023-11-14T22:13:20Z/index.json.tmp_Ab3xYz"), b"half").unwrap();
    crashed(&ds, &snap(BackupType::Host, "h", 1_700_000_100), &["a.didx", "b.tmp_q1w2e3"]);
    std::fs::write(root.join("host/h/notes.tmp_zzzzzz"), b"half").unwrap();
    // The first backup of a group died: the group exists only for it.
    crashed(&ds, &snap(BackupType::Vm, "100", 1_700_000_000), &["drive-scsi0.img.tmp_ABCDEF"]);
    // Died between creating a group and writing its owner.
    std::fs::create_dir_all(root.join("ct/7")).unwrap();
    std::fs::write(root.join("ct/7/owner.tmp_0a1b2c"), b"u@pbs\n").unwrap();
    // Kept: a group whose snapshots were all forgotten (it keeps its owner, as in PBS), and one
    // with something recovery does not know.
    std::fs::create_dir_all(root.join("ct/8")).unwrap();
    std::fs::write(root.join("ct/8/owner"), b"u@pbs\n").unwrap();
    crashed(&ds, &snap(BackupType::Ct, "9", 1_700_000_000), &[]);
    std::fs::write(root.join("ct/9/README"), b"operator's").unwrap();
    // A backup that is running now (another process's, as far as the locks tell).
    let live = begin(&ds, &snap(BackupType::Host, "live", 1_700_000_000));
    std::fs::write(live.path.join("x.tmp_AAAAAA"), b"in flight").unwrap();
    // A GC status write that died, and a chunk temp file (GC's business, not start-up's).
    std::fs::write(root.join(".gc-status.tmp_gc0000"), b"{").unwrap();
    let chunk_tmp = ds.chunks().chunk_path(&Digest::of(b"c")).with_extension("tmp_cccccc");
    std::fs::create_dir_all(chunk_tmp.parent().unwrap()).unwrap();
    std::fs::write(&chunk_tmp, b"x").unwrap();

    let r = ds.recover().unwrap();
    let rel = |v: &[PathBuf]| {
        let mut v: Vec<String> =
            v.iter().map(|p| p.strip_prefix(root).unwrap().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    };
    assert_eq!(
        rel(&r.snapshots),
        ["ct/9/2023-11-14T22:13:20Z", "host/h/2023-11-14T22:15:00Z", "vm/100/2023-11-14T22:13:20Z"]
    );
    assert_eq!(rel(&r.groups), ["ct/7", "vm/100"]);
    assert_eq!(
        rel(&r.temp_files),
        [
            ".gc-status.tmp_gc0000",
            "ct/7/owner.tmp_0a1b2c",
            "host/h/2023-11-14T22:13:20Z/index.json.tmp_Ab3xYz",
            "host/h/notes.tmp_zzzzzz"
        ]
    );
    assert_eq!(rel(&r.busy), ["host/live"]);
    assert_eq!(
        tree(root),
        [
            "ct",
            "ct/8",
            "ct/8/owner",
            "ct/9",
            "ct/9/README",
            "ct/9/owner",
            "host",
            "host/h",
            "host/h/2023-11-14T22:13:20Z",
            "host/h/2023-11-14T22:13:20Z/index.json.blob",
            "host/h/owner",
            "host/live",
            "host/live/2023-11-14T22:13:20Z",
            "host/live/2023-11-14T22:13:20Z/x.tmp_AAAAAA",
            "host/live/owner",
        ]
    );
    assert!(chunk_tmp.exists());

    // Nothing left to do the second time; the live backup still finishes.
    drop(live);
    assert!(ds.recover().unwrap().is_empty());
    // The group whose owner never got written takes backups again (its owner is the new one).
    let again = begin(&ds, &snap(BackupType::Ct, "7", 1_700_000_000));
    assert_eq!(again.owner, Authid::parse("u@pbs").unwrap());
    // The next backup of `h` is incremental on the last finished one.
    drop(again);
    let next = begin(&ds, &snap(BackupType::Host, "h", 1_700_000_200));
    assert_eq!(next.base.as_ref().map(|b| b.snapshot.clone()), Some(base));
}

#[test]
fn namespaces_are_recovered_too() {
    let (dir, ds) = test_store();
    let ns = ds.create_namespace(&Namespace::root(), "site-a").unwrap();
    let child = ds.create_namespace(&ns, "rack1").unwrap();
    let s = snap(BackupType::Vm, "100", 1_700_000_000);
    let txn =
        BackupTxn::begin(Arc::clone(&ds), child.clone(), s.clone(), &Authid::parse("u@pbs").unwrap(), true).unwrap();
    std::fs::write(txn.path.join("x.fidx"), b"partial").unwrap();
    txn.commit();
    let r = ds.recover().unwrap();
    assert_eq!(r.snapshots, [ds.snapshot_path(&child, &s)]);
    assert_eq!(r.groups, [ds.group_path(&child, &s.group)]);
    assert_eq!(tree(dir.path()), ["ns", "ns/site-a", "ns/site-a/ns", "ns/site-a/ns/rack1"], "namespaces stay");
}

#[test]
fn unfinished_snapshot_of_a_live_backup_is_kept_even_without_its_group_lock() {
    // PBS's verify or reader might hold the group briefly; the snapshot lock alone must protect.
    let (_dir, ds) = test_store();
    let s = snap(BackupType::Host, "h", 1_700_000_000);
    crashed(&ds, &s, &[]);
    let path = ds.snapshot_path(&Namespace::root(), &s);
    let held = DirLock::try_lock(&path, false, "snapshot", "busy").unwrap();
    let r = ds.recover().unwrap();
    assert_eq!(r.busy, std::slice::from_ref(&path));
    assert!(path.is_dir() && r.snapshots.is_empty() && r.groups.is_empty());
    drop(held);
    assert_eq!(ds.recover().unwrap().snapshots, std::slice::from_ref(&path));
    assert!(!path.exists());
}
