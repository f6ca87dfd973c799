//! Changing the tree outside a backup: namespaces, forget (snapshot and group), protection,
//! group notes, locked manifest rewrites, and opening a snapshot for reading.
//!
//! These are the store halves of the management API (#4), prune (#7) and the reader protocol;
//! they take the same locks as PBS (formats.md 5.5, 8) so they cannot remove a snapshot that a
//! backup uses as its base or that a reader has open.

use std::io;
use std::path::{Path, PathBuf};

use crate::format::manifest::Manifest;
use crate::format::{GroupRef, Namespace, SnapshotRef};
use crate::store::durable::{self, io_err};
use crate::store::list::{MANIFEST_NAME, NOTES_NAME, PROTECTED_NAME};
use crate::store::lock::DirLock;
use crate::store::{Datastore, Result, StoreError};

const IN_USE: &str = "possibly running or in use";

/// A snapshot opened for reading: holds a shared lock so it cannot be forgotten meanwhile.
#[derive(Debug)]
pub struct SnapshotReader {
    pub ns: Namespace,
    pub snapshot: SnapshotRef,
    pub path: PathBuf,
    _lock: DirLock,
}

impl SnapshotReader {
    /// Path of a file in the snapshot (the name must already be validated).
    pub fn file_path(&self, name: &crate::format::ArchiveName) -> PathBuf {
        self.path.join(name.as_str())
    }
    /// Loads the snapshot's manifest.
    pub fn manifest(&self) -> Result<Manifest> {
        load_manifest(&self.path)
    }
}

/// The parent of a namespace that may be removed: any but the root.
pub fn removable_parent(ns: &Namespace) -> Result<Namespace> {
    ns.parent().ok_or_else(|| StoreError::Refused("cannot delete root namespace".into()))
}

/// Reads and decodes `<dir>/index.json.blob`.
pub fn load_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST_NAME);
    let raw = std::fs::read(&path).map_err(io_err("unable to load manifest", &path))?;
    Manifest::from_blob(&raw).map_err(|e| StoreError::Corrupt(format!("unable to load manifest {path:?} - {e}")))
}

fn remove_if_empty(dir: &Path) {
    // ENOTEMPTY and ENOENT are both fine: the directory is still needed or already gone.
    let _ = std::fs::remove_dir(dir);
}

impl Datastore {
    /// Opens a snapshot for reading (reader protocol upgrade): it must exist, and is locked
    /// shared.
    pub fn open_snapshot(&self, ns: &Namespace, snap: &SnapshotRef) -> Result<SnapshotReader> {
        let path = self.snapshot_path(ns, snap);
        // The reader upgrade answers a missing snapshot with 400, as the reference does.
        self.check_snapshot(ns, snap).map_err(|e| StoreError::Refused(e.to_string()))?;
        let lock = DirLock::try_lock(&path, false, "snapshot", "locked by another operation")?;
        Ok(SnapshotReader { ns: ns.clone(), snapshot: snap.clone(), path, _lock: lock })
    }

    /// Creates the namespace `parent/name`; the parent must exist. An existing one is fine.
    pub fn create_namespace(&self, parent: &Namespace, name: &str) -> Result<Namespace> {
        if !self.namespace_exists(parent) {
            return Err(StoreError::NotFound(format!("cannot create new namespace, parent '{parent}' does not exist")));
        }
        // `child` joins and re-parses, so "a/b" would pass as two levels: one component only.
        if name.contains('/') || name.is_empty() {
            return Err(crate::format::NameError::Namespace(name.to_string()).into());
        }
        let ns = parent.child(name)?;
        let path = self.namespace_path(&ns);
        std::fs::create_dir_all(&path).map_err(io_err("create namespace directory", &path))?;
        durable::fsync_dir(path.parent().expect("namespace path has a parent"))?;
        Ok(ns)
    }

    /// Removes a namespace and its children. Without `delete_groups`, refuses if any group is
    /// left anywhere below; with it, forgets every group first and fails (keeping what is
    /// protected) if protected snapshots remain.
    pub fn remove_namespace(&self, ns: &Namespace, delete_groups: bool) -> Result<()> {
        removable_parent(ns)?;
        let all = self.namespaces(ns, None)?;
        let mut complete = true;
        for sub in &all {
            for group in self.groups(sub)? {
                if !delete_groups {
                    return Err(StoreError::Refused(format!(
                        "namespace '{ns}' is not empty: it contains backup group '{group}'"
                    )));
                }
                complete &= self.remove_group(sub, &group)?;
            }
        }
        // Children before parents, so each `ns/` level is empty when its turn comes.
        for sub in all.iter().rev() {
            let path = self.namespace_path(sub);
            for ty in crate::format::BackupType::ALL {
                remove_if_empty(&path.join(ty.as_str()));
            }
            remove_if_empty(&path.join("ns"));
            remove_if_empty(&path);
        }
        if let Some(parent) = ns.parent() {
            remove_if_empty(&self.namespace_path(&parent).join("ns"));
        }
        if !complete {
            return Err(StoreError::Refused(format!(
                "namespace '{ns}' only partially removed: protected snapshots remain"
            )));
        }
        Ok(())
    }

    /// Forgets one snapshot: exclusive lock, refuse if protected, remove the directory.
    pub fn remove_snapshot(&self, ns: &Namespace, snap: &SnapshotRef) -> Result<()> {
        let path = self.snapshot_path(ns, snap);
        self.check_snapshot(ns, snap)?;
        let _lock = DirLock::try_lock(&path, true, "snapshot", IN_USE)?;
        if path.join(PROTECTED_NAME).exists() {
            return Err(StoreError::Refused("cannot remove protected snapshot".into()));
        }
        // The manifest goes first, durably: a crash part-way through then leaves an unfinished
        // snapshot, which start-up recovery removes, never a finished one missing files.
        match std::fs::remove_file(path.join(MANIFEST_NAME)) {
            Ok(()) => durable::fsync_dir(&path)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("removing manifest of", &path)(e)),
        }
        crate::failpoint::check("snapshot.remove", &snap.to_string())
            .map_err(io_err("removing backup snapshot", &path))?;
        std::fs::remove_dir_all(&path).map_err(io_err("removing backup snapshot", &path))?;
        Ok(())
    }

    /// Forgets a group: every unprotected snapshot, then the group directory (with `owner` and
    /// `notes`) if nothing protected is left. Returns whether the group is gone.
    pub fn remove_group(&self, ns: &Namespace, group: &GroupRef) -> Result<bool> {
        let path = self.group_path(ns, group);
        self.check_group(ns, group)?;
        let _lock = DirLock::try_lock(&path, true, "backup group", IN_USE)?;
        let mut protected = false;
        for info in self.snapshots(ns, group)? {
            if info.protected {
                protected = true;
                continue;
            }
            self.remove_snapshot(ns, &info.snapshot)?;
        }
        if protected {
            return Ok(false);
        }
        std::fs::remove_dir_all(&path).map_err(io_err("removing backup group", &path))?;
        if let Some(type_dir) = path.parent() {
            remove_if_empty(type_dir);
        }
        Ok(true)
    }

    pub fn is_protected(&self, ns: &Namespace, snap: &SnapshotRef) -> bool {
        self.snapshot_path(ns, snap).join(PROTECTED_NAME).exists()
    }

    /// Sets or clears `.protected` under an exclusive snapshot lock.
    pub fn set_protected(&self, ns: &Namespace, snap: &SnapshotRef, protected: bool) -> Result<()> {
        let path = self.snapshot_path(ns, snap);
        self.check_snapshot(ns, snap)?;
        let _lock = DirLock::try_lock(&path, true, "snapshot", IN_USE)?;
        let marker = path.join(PROTECTED_NAME);
        if protected {
            match durable::write_new_file(&marker, b"", durable::FILE_MODE, true) {
                Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => {}
                other => other?,
            }
        } else {
            match std::fs::remove_file(&marker) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err("remove", &marker)(e)),
                _ => {}
            }
        }
        durable::fsync_dir(&path)
    }

    /// The group's notes ("" when there are none).
    pub fn group_notes(&self, ns: &Namespace, group: &GroupRef) -> Result<String> {
        let path = self.group_path(ns, group).join(NOTES_NAME);
        match std::fs::read_to_string(&path) {
            Ok(s) => Ok(s),
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.check_group(ns, group).map(|()| String::new()),
            Err(e) => Err(io_err("read", &path)(e)),
        }
    }

    pub fn set_group_notes(&self, ns: &Namespace, group: &GroupRef, notes: &str) -> Result<()> {
        self.check_group(ns, group)?;
        self.write_file(&self.group_path(ns, group).join(NOTES_NAME), notes.as_bytes())
    }

    /// Locked load-modify-rewrite of a snapshot's manifest (formats.md 4.5): verify state,
    /// snapshot notes. Only `unprotected` should change, so a signature stays valid.
    pub fn update_manifest(&self, ns: &Namespace, snap: &SnapshotRef, edit: impl FnOnce(&mut Manifest)) -> Result<()> {
        let _guard = self.manifest_lock.lock();
        let dir = self.snapshot_path(ns, snap);
        let mut manifest = load_manifest(&dir)?;
        edit(&mut manifest);
        self.write_file(&dir.join(MANIFEST_NAME), &manifest.to_blob())
    }
}

#[cfg(test)]
#[path = "admin_tests.rs"]
mod tests;
