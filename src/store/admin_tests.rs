//! Namespaces, forget, protection, notes, manifest rewrite, reader locks.

use super::*;
use crate::format::{ArchiveName, Authid, BackupType};
use crate::store::BackupTxn;
use crate::store::backup::tests::{snap, test_store, tree};
use std::sync::Arc;

fn backup(ds: &Arc<Datastore>, ns: &Namespace, s: &SnapshotRef) {
    let txn = BackupTxn::begin(Arc::clone(ds), ns.clone(), s.clone(), &Authid::parse("u@pbs").unwrap(), true).unwrap();
    let m = Manifest {
        backup_type: s.group.ty.to_string(),
        backup_id: s.group.id.to_string(),
        backup_time: s.time.epoch(),
        files: vec![],
        unprotected: Default::default(),
        signature: None,
    };
    txn.write_file(&ArchiveName::parse(MANIFEST_NAME).unwrap(), &m.to_blob()).unwrap();
    txn.commit();
}

#[test]
fn namespace_create_and_remove() {
    let (dir, ds) = test_store();
    let root = Namespace::root();
    let a = ds.create_namespace(&root, "a").unwrap();
    let ab = ds.create_namespace(&a, "b").unwrap();
    assert_eq!(ab.to_string(), "a/b");
    assert!(dir.path().join("ns/a/ns/b").is_dir());
    assert!(ds.create_namespace(&Namespace::parse("x").unwrap(), "y").is_err(), "parent must exist");
    assert!(ds.create_namespace(&root, "..").is_err());
    assert!(ds.create_namespace(&root, "a/b").is_err());
    backup(&ds, &ab, &snap(BackupType::Host, "h", 1_700_000_000));
    let err = ds.remove_namespace(&a, false).unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
    assert!(dir.path().join("ns/a/ns/b/host/h").is_dir());
    ds.remove_namespace(&a, true).unwrap();
    assert!(tree(dir.path()).is_empty(), "{:?}", tree(dir.path()));
    assert!(ds.remove_namespace(&root, true).is_err());
}

#[test]
fn forget_respects_protection_and_locks() {
    let (dir, ds) = test_store();
    let root = Namespace::root();
    let s1 = snap(BackupType::Vm, "1", 1_700_000_000);
    let s2 = snap(BackupType::Vm, "1", 1_700_000_100);
    backup(&ds, &root, &s1);
    backup(&ds, &root, &s2);
    ds.set_protected(&root, &s1, true).unwrap();
    assert!(ds.is_protected(&root, &s1));
    let err = ds.remove_snapshot(&root, &s1).unwrap_err();
    assert_eq!(err.to_string(), "cannot remove protected snapshot");
    {
        let _reader = ds.open_snapshot(&root, &s2).unwrap();
        let err = ds.remove_snapshot(&root, &s2).unwrap_err();
        assert!(err.to_string().ends_with("possibly running or in use"), "{err}");
    }
    // Group removal takes the unprotected ones and keeps the group.
    assert!(!ds.remove_group(&root, &s1.group).unwrap());
    assert_eq!(ds.snapshots(&root, &s1.group).unwrap().len(), 1);
    ds.set_protected(&root, &s1, false).unwrap();
    ds.set_protected(&root, &s1, false).unwrap();
    assert!(ds.remove_group(&root, &s1.group).unwrap());
    assert!(tree(dir.path()).is_empty(), "{:?}", tree(dir.path()));
    assert!(matches!(ds.remove_snapshot(&root, &s1), Err(StoreError::NotFound(_))));
}

#[test]
fn reader_needs_existing_snapshot_and_shares() {
    let (_dir, ds) = test_store();
    let root = Namespace::root();
    let s = snap(BackupType::Host, "h", 1_700_000_000);
    let err = ds.open_snapshot(&root, &s).unwrap_err();
    assert_eq!(err.to_string(), "snapshot host/h/2023-11-14T22:13:20Z does not exist.");
    backup(&ds, &root, &s);
    let r1 = ds.open_snapshot(&root, &s).unwrap();
    let _r2 = ds.open_snapshot(&root, &s).unwrap();
    assert_eq!(r1.manifest().unwrap().backup_id, "h");
}

#[test]
fn notes_and_manifest_rewrite() {
    let (dir, ds) = test_store();
    let root = Namespace::root();
    let s = snap(BackupType::Ct, "7", 1_700_000_000);
    backup(&ds, &root, &s);
    assert_eq!(ds.group_notes(&root, &s.group).unwrap(), "");
    ds.set_group_notes(&root, &s.group, "line1\nline2").unwrap();
    assert_eq!(ds.group_notes(&root, &s.group).unwrap(), "line1\nline2");
    assert_eq!(std::fs::read_to_string(dir.path().join("ct/7/notes")).unwrap(), "line1\nline2");
    let other = snap(BackupType::Ct, "8", 1).group;
    assert!(matches!(ds.set_group_notes(&root, &other, "x"), Err(StoreError::NotFound(_))));
    ds.update_manifest(&root, &s, |m| {
        m.unprotected.insert("verify_state".into(), serde_json::json!({"state": "failed", "upid": "U"}));
    })
    .unwrap();
    let m = ds.open_snapshot(&root, &s).unwrap().manifest().unwrap();
    assert!(crate::store::backup::verify_failed(&m));
    let files = std::fs::read_dir(dir.path().join("ct/7/2023-11-14T22:13:20Z")).unwrap().count();
    assert_eq!(files, 1, "no temp file left beside the manifest");
}
