//! Listing: order, the finished flag, and that only valid names are listed.

use super::*;
use crate::format::BackupType;
use crate::store::backup::tests::{snap, test_store};

fn mkdirs(root: &Path, rels: &[&str]) {
    for r in rels {
        std::fs::create_dir_all(root.join(r)).unwrap();
    }
}

#[test]
fn groups_sorted_and_filtered() {
    let (dir, ds) = test_store();
    mkdirs(dir.path(), &["vm/100", "host/b", "host/a", "ct/200", "host/.hidden", "host/-x", "other/x", "vm/1"]);
    std::fs::write(dir.path().join("host/notadir"), b"").unwrap();
    std::os::unix::fs::symlink(dir.path().join("vm/100"), dir.path().join("vm/link")).unwrap();
    let names: Vec<String> = ds.groups(&Namespace::root()).unwrap().iter().map(|g| g.to_string()).collect();
    assert_eq!(names, ["ct/200", "host/a", "host/b", "vm/1", "vm/100"]);
}

#[test]
fn snapshots_sorted_with_finished_and_protected() {
    let (dir, ds) = test_store();
    let g = "host/h";
    mkdirs(
        dir.path(),
        &[
            "host/h/2024-01-02T00:00:00Z",
            "host/h/2024-01-01T00:00:00Z",
            "host/h/2024-01-03T00:00:00Z",
            "host/h/2024-01-03T00:00:00+00:00",
            "host/h/junk",
        ],
    );
    std::fs::write(dir.path().join(g).join("2024-01-01T00:00:00Z/index.json.blob"), b"").unwrap();
    std::fs::write(dir.path().join(g).join("2024-01-02T00:00:00Z/.protected"), b"").unwrap();
    std::fs::write(dir.path().join(g).join("2024-01-02T00:00:00Z/index.json.blob"), b"").unwrap();
    let group = snap(BackupType::Host, "h", 1).group;
    let list = ds.snapshots(&Namespace::root(), &group).unwrap();
    let got: Vec<(String, bool, bool)> =
        list.iter().map(|s| (s.snapshot.time.to_string(), s.finished, s.protected)).collect();
    assert_eq!(
        got,
        [
            ("2024-01-01T00:00:00Z".to_string(), true, false),
            ("2024-01-02T00:00:00Z".to_string(), true, true),
            ("2024-01-03T00:00:00Z".to_string(), false, false),
        ]
    );
    let last = ds.last_finished(&Namespace::root(), &group).unwrap().unwrap();
    assert_eq!(last.snapshot.time.to_string(), "2024-01-02T00:00:00Z");
}

#[test]
fn namespaces_walk() {
    let (dir, ds) = test_store();
    mkdirs(dir.path(), &["ns/b/ns/x", "ns/a", "ns/.bad", "ns/a/ns/y/ns/z"]);
    let all: Vec<String> = ds.namespaces(&Namespace::root(), None).unwrap().iter().map(|n| n.to_string()).collect();
    assert_eq!(all, ["", "a", "b", "a/y", "b/x", "a/y/z"]);
    let one: Vec<String> =
        ds.namespaces(&Namespace::parse("a").unwrap(), Some(1)).unwrap().iter().map(|n| n.to_string()).collect();
    assert_eq!(one, ["a", "a/y"]);
    assert!(ds.namespaces(&Namespace::parse("nope").unwrap(), None).is_err());
}

#[test]
fn owner_first_line_trimmed() {
    let (dir, ds) = test_store();
    mkdirs(dir.path(), &["host/h"]);
    let group = snap(BackupType::Host, "h", 1).group;
    assert!(matches!(ds.group_owner(&Namespace::root(), &group), Err(StoreError::NotFound(_))));
    std::fs::write(dir.path().join("host/h/owner"), "root@pam \nrest\n").unwrap();
    assert_eq!(ds.group_owner(&Namespace::root(), &group).unwrap().to_string(), "root@pam");
    std::fs::write(dir.path().join("host/h/owner"), "../../etc\n").unwrap();
    assert!(matches!(ds.group_owner(&Namespace::root(), &group), Err(StoreError::Corrupt(_))));
}
