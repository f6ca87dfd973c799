//! Transaction lifecycle: what begin creates, refuses and cleans up.

use super::*;
use crate::format::{BackupTime, BackupType, DatastoreName};
use std::os::fd::AsRawFd;

pub(crate) fn test_store() -> (tempfile::TempDir, Arc<Datastore>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".chunks")).unwrap();
    let ds = Datastore::open(DatastoreName::parse("store1").unwrap(), dir.path()).unwrap();
    (dir, Arc::new(ds))
}

pub(crate) fn snap(ty: BackupType, id: &str, t: i64) -> SnapshotRef {
    SnapshotRef {
        group: GroupRef { ty, id: crate::format::BackupId::parse(id).unwrap() },
        time: BackupTime::from_epoch(t).unwrap(),
    }
}

fn auth(s: &str) -> Authid {
    Authid::parse(s).unwrap()
}

/// Everything under `root` except the datastore's own `.chunks` and `.lock`.
pub(crate) fn tree(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if rel == ".chunks" || rel == ".lock" {
                continue;
            }
            out.push(rel);
            if p.is_dir() {
                walk(&p, root, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn begin(ds: &Arc<Datastore>, s: &SnapshotRef, who: &str) -> Result<BackupTxn> {
    BackupTxn::begin(Arc::clone(ds), Namespace::root(), s.clone(), &auth(who), true)
}

#[test]
fn begin_creates_group_owner_and_snapshot_and_drop_removes_all() {
    let (dir, ds) = test_store();
    let s = snap(BackupType::Host, "h1", 1_700_000_000);
    let txn = begin(&ds, &s, "user@pbs!tok").unwrap();
    assert_eq!(txn.path, dir.path().join("host/h1/2023-11-14T22:13:20Z"));
    assert!(txn.path.is_dir());
    assert_eq!(std::fs::read_to_string(dir.path().join("host/h1/owner")).unwrap(), "user@pbs!tok\n");
    assert_eq!(txn.owner, auth("user@pbs!tok"));
    assert!(txn.base.is_none());
    txn.write_file(&ArchiveName::parse("x.blob").unwrap(), b"data").unwrap();
    drop(txn);
    assert!(tree(dir.path()).is_empty(), "left behind: {:?}", tree(dir.path()));
}

#[test]
fn commit_keeps_and_releases_locks() {
    let (dir, ds) = test_store();
    let s = snap(BackupType::Vm, "100", 1_700_000_000);
    let txn = begin(&ds, &s, "user@pbs").unwrap();
    txn.write_file(&ArchiveName::parse("x.blob").unwrap(), b"data").unwrap();
    txn.commit();
    assert_eq!(
        tree(dir.path()),
        ["vm", "vm/100", "vm/100/2023-11-14T22:13:20Z", "vm/100/2023-11-14T22:13:20Z/x.blob", "vm/100/owner"]
    );
    assert_eq!(ds.locker().oldest_shared(), None, "writer lock released");
    // The group lock is free again: a new (unfinished-base) backup may start.
    let t2 = begin(&ds, &snap(BackupType::Vm, "100", 1_700_000_100), "user@pbs").unwrap();
    drop(t2);
    assert_eq!(tree(dir.path()).len(), 5, "drop of the second keeps the first");
}

#[test]
fn second_backup_of_a_group_is_refused_while_first_runs() {
    let (dir, ds) = test_store();
    let t1 = begin(&ds, &snap(BackupType::Host, "h1", 1_700_000_000), "user@pbs").unwrap();
    assert!(ds.locker().oldest_shared().is_some(), "txn holds the writer lock");
    let err = begin(&ds, &snap(BackupType::Host, "h1", 1_700_000_100), "user@pbs").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "unable to acquire lock on backup group directory {:?} - another backup is already running",
            dir.path().join("host/h1")
        )
    );
    // The refused one must not have removed the running one's group.
    assert!(t1.path.is_dir());
    assert!(dir.path().join("host/h1/owner").is_file());
    // Other groups are independent.
    let _t3 = begin(&ds, &snap(BackupType::Host, "h2", 1_700_000_000), "user@pbs").unwrap();
}

#[test]
fn missing_namespace_is_not_found() {
    let (dir, ds) = test_store();
    let ns = Namespace::parse("a/b").unwrap();
    let err = BackupTxn::begin(ds, ns, snap(BackupType::Host, "h", 1_700_000_000), &auth("u@pbs"), true).unwrap_err();
    assert!(matches!(&err, StoreError::NotFound(m) if m == "namespace not found"), "{err:?}");
    assert!(tree(dir.path()).is_empty());
}

#[test]
fn backup_in_a_namespace() {
    let (dir, ds) = test_store();
    std::fs::create_dir_all(dir.path().join("ns/a")).unwrap();
    let ns = Namespace::parse("a").unwrap();
    let txn = BackupTxn::begin(ds, ns, snap(BackupType::Ct, "1", 1_700_000_000), &auth("u@pbs"), true).unwrap();
    assert_eq!(txn.path, dir.path().join("ns/a/ct/1/2023-11-14T22:13:20Z"));
    drop(txn);
    assert_eq!(tree(dir.path()), ["ns", "ns/a"]);
}

#[test]
fn owner_rules() {
    let (dir, ds) = test_store();
    begin(&ds, &snap(BackupType::Host, "h", 1_700_000_000), "alice@pbs!t1").unwrap().commit();
    let later = snap(BackupType::Host, "h", 1_700_000_100);
    let err = begin(&ds, &later, "bob@pbs").unwrap_err();
    assert_eq!(err.to_string(), "backup owner check failed (bob@pbs != alice@pbs!t1)");
    let err = begin(&ds, &later, "alice@pbs!t2").unwrap_err();
    assert_eq!(err.to_string(), "backup owner check failed (alice@pbs!t2 != alice@pbs!t1)");
    // The user owns its tokens' groups.
    drop(begin(&ds, &later, "alice@pbs").unwrap());
    // Benchmark sessions skip the check.
    drop(BackupTxn::begin(Arc::clone(&ds), Namespace::root(), later, &auth("bob@pbs"), false).unwrap());
    assert_eq!(std::fs::read_to_string(dir.path().join("host/h/owner")).unwrap(), "alice@pbs!t1\n");
    assert_eq!(tree(dir.path()).len(), 4, "refused begins leave the group as it was");
}

#[test]
fn existing_snapshot_dir_is_refused_and_kept() {
    let (dir, ds) = test_store();
    let s = snap(BackupType::Host, "h", 1_700_000_000);
    let txn = begin(&ds, &s, "u@pbs").unwrap();
    txn.write_file(&ArchiveName::parse("a.blob").unwrap(), b"x").unwrap();
    txn.commit();
    let err = begin(&ds, &s, "u@pbs").unwrap_err();
    assert_eq!(err.to_string(), "backup directory already exists.");
    assert!(dir.path().join("host/h/2023-11-14T22:13:20Z/a.blob").is_file());
}

#[test]
#[allow(unsafe_code)]
fn failure_after_creating_the_group_leaves_nothing() {
    // A foreign GC holding the write lock on .lock makes the last step of begin fail.
    let (dir, ds) = test_store();
    let foreign = std::fs::File::options().read(true).write(true).open(dir.path().join(".lock")).unwrap();
    // SAFETY: a zeroed flock (plain integers) is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as _;
    // SAFETY: F_OFD_SETLK with a pointer to a live flock whose l_pid is 0, as OFD locks require.
    assert_eq!(unsafe { libc::fcntl(foreign.as_raw_fd(), libc::F_OFD_SETLK, &fl) }, 0);
    let err = begin(&ds, &snap(BackupType::Host, "h", 1_700_000_000), "u@pbs").unwrap_err();
    assert!(err.to_string().starts_with("unable to get shared lock"), "{err}");
    assert!(tree(dir.path()).is_empty(), "left behind: {:?}", tree(dir.path()));
}

#[test]
fn dropped_txn_keeps_a_group_it_did_not_create() {
    let (dir, ds) = test_store();
    begin(&ds, &snap(BackupType::Host, "h", 1_700_000_000), "u@pbs").unwrap().commit();
    drop(begin(&ds, &snap(BackupType::Host, "h", 1_700_000_100), "u@pbs").unwrap());
    assert_eq!(tree(dir.path()), ["host", "host/h", "host/h/2023-11-14T22:13:20Z", "host/h/owner"]);
}

/// Commits a finished snapshot (manifest with an optional verify state).
pub(crate) fn finished(ds: &Arc<Datastore>, s: &SnapshotRef, verify: Option<&str>) {
    let txn = begin(ds, s, "u@pbs").unwrap();
    let mut unprotected = serde_json::Map::new();
    if let Some(state) = verify {
        unprotected.insert("verify_state".into(), serde_json::json!({"state": state, "upid": "UPID:x"}));
    }
    let m = Manifest {
        backup_type: s.group.ty.to_string(),
        backup_id: s.group.id.to_string(),
        backup_time: s.time.epoch(),
        files: vec![],
        unprotected,
        signature: None,
    };
    txn.write_file(&ArchiveName::parse("index.json.blob").unwrap(), &m.to_blob()).unwrap();
    txn.commit();
}

#[test]
fn base_is_newest_finished_and_orders_time() {
    let (_dir, ds) = test_store();
    let s1 = snap(BackupType::Host, "h", 1_700_000_000);
    finished(&ds, &s1, None);
    // An unfinished newer one does not count as base.
    begin(&ds, &snap(BackupType::Host, "h", 1_700_000_050), "u@pbs").unwrap().commit();
    for t in [1_700_000_000 - 1, 1_700_000_000] {
        let err = begin(&ds, &snap(BackupType::Host, "h", t), "u@pbs").unwrap_err();
        assert_eq!(err.to_string(), "backup timestamp is older than last backup.");
    }
    let txn = begin(&ds, &snap(BackupType::Host, "h", 1_700_000_100), "u@pbs").unwrap();
    let base = txn.base.as_ref().unwrap();
    assert_eq!(base.snapshot, s1);
    assert_eq!(base.manifest.backup_time, 1_700_000_000);
    assert!(txn.base_still_exists());
    // The base is locked shared: forget (exclusive) must fail while the backup runs.
    assert!(DirLock::try_lock(&base.path, true, "snapshot", "busy").is_err());
    assert!(DirLock::try_lock(&base.path, false, "snapshot", "busy").is_ok(), "readers may share");
    drop(txn);
    assert!(DirLock::try_lock(&ds.snapshot_path(&Namespace::root(), &s1), true, "snapshot", "busy").is_ok());
}

#[test]
fn failed_verify_means_no_base() {
    let (_dir, ds) = test_store();
    finished(&ds, &snap(BackupType::Host, "h", 1_700_000_000), None);
    finished(&ds, &snap(BackupType::Host, "h", 1_700_000_100), Some("failed"));
    // No base at all, not the older good one: an older time is accepted.
    let txn = begin(&ds, &snap(BackupType::Host, "h", 1_700_000_050), "u@pbs").unwrap();
    assert!(txn.base.is_none());
    drop(txn);
    finished(&ds, &snap(BackupType::Host, "h", 1_700_000_200), Some("ok"));
    let txn = begin(&ds, &snap(BackupType::Host, "h", 1_700_000_300), "u@pbs").unwrap();
    assert_eq!(txn.base.as_ref().unwrap().snapshot.time.epoch(), 1_700_000_200);
}

#[test]
fn locked_base_is_refused() {
    let (_dir, ds) = test_store();
    let s1 = snap(BackupType::Host, "h", 1_700_000_000);
    finished(&ds, &s1, None);
    let _forget = DirLock::try_lock(&ds.snapshot_path(&Namespace::root(), &s1), true, "snapshot", "x").unwrap();
    let err = begin(&ds, &snap(BackupType::Host, "h", 1_700_000_100), "u@pbs").unwrap_err();
    assert!(err.to_string().ends_with("base snapshot is already locked by another operation"), "{err}");
    assert!(!ds.snapshot_exists(&Namespace::root(), &snap(BackupType::Host, "h", 1_700_000_100)));
}
