//! A backup transaction on disk: group creation and ownership, the group lock, the base
//! snapshot, the new snapshot directory, and its commit or removal (formats.md 5.5,
//! protocol.md 1.4 steps 6 and 8-12, stricter-than-pbs item 3).
//!
//! The checks run in the reference's order with its texts, because the real client shows them
//! to users. Everything `begin` creates is recorded in a cleanup guard, so a failed `begin` and
//! a transaction dropped without `commit` both leave the tree as they found it.

use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::FsyncPolicy;
use crate::format::manifest::Manifest;
use crate::format::{ArchiveName, Authid, GroupRef, Namespace, SnapshotRef};
use crate::store::durable::{self, io_err};
use crate::store::list::{self, OWNER_NAME};
use crate::store::lock::{DirLock, SharedGuard};
use crate::store::{Datastore, Result, StoreError, client_io};

/// Mode for group, type and snapshot directories (PBS: plain mkdir, 0777 minus umask 022).
const DIR_MODE: u32 = 0o755;

/// The newest finished, not-failed snapshot of the group, locked shared for the session.
#[derive(Debug)]
pub struct BaseSnapshot {
    pub snapshot: SnapshotRef,
    pub path: PathBuf,
    pub manifest: Manifest,
}

/// An open backup of one snapshot. Holds the group lock and the snapshot lock. Dropped without
/// `commit`, it removes the snapshot directory (and a group directory it created).
#[derive(Debug)]
pub struct BackupTxn {
    pub store: Arc<Datastore>,
    pub ns: Namespace,
    pub snapshot: SnapshotRef,
    pub owner: Authid,
    pub base: Option<BaseSnapshot>,
    pub path: PathBuf,
    cleanup: Cleanup,
}

/// What `begin` created and the locks it holds. Removal happens in `drop` while the locks are
/// still held (fields drop after the body), so no other session sees a half-removed tree.
#[derive(Debug, Default)]
struct Cleanup {
    committed: bool,
    snapshot_dir: Option<PathBuf>,
    /// Group directory `begin` created (with its `owner`).
    group_dir: Option<PathBuf>,
    /// `<type>` directory `begin` created.
    type_dir: Option<PathBuf>,
    writer: Option<SharedGuard>,
    snapshot_lock: Option<DirLock>,
    base_lock: Option<DirLock>,
    group_lock: Option<DirLock>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        if let Some(Err(e)) = self.snapshot_dir.as_ref().map(std::fs::remove_dir_all) {
            tracing::warn!(dir = ?self.snapshot_dir, %e, "unable to remove unfinished snapshot");
        }
        if let Some(dir) = &self.group_dir {
            remove_created_group(dir);
        }
        if let Some(dir) = &self.type_dir {
            // Fails harmlessly if another group appeared meanwhile.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Removes a group directory this transaction created, if it holds nothing but `owner`.
fn remove_created_group(dir: &Path) {
    let only_owner = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).all(|e| e.file_name() == OWNER_NAME))
        .unwrap_or(false);
    if only_owner {
        let _ = std::fs::remove_file(dir.join(OWNER_NAME));
        if let Err(e) = std::fs::remove_dir(dir) {
            tracing::warn!(?dir, %e, "unable to remove group directory of a failed backup");
        }
    }
}

/// `mkdir` that reports whether it created the directory.
fn make_dir(path: &Path) -> io::Result<bool> {
    match std::fs::DirBuilder::new().mode(DIR_MODE).create(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether a manifest says the snapshot failed verification. Only a well-formed
/// `verify_state` with state "failed" counts; anything else is treated as fine (protocol.md 1.4
/// step 10).
pub fn verify_failed(manifest: &Manifest) -> bool {
    manifest.unprotected.get("verify_state").is_some_and(|v| {
        v.get("state").and_then(|s| s.as_str()) == Some("failed") && v.get("upid").is_some_and(|u| u.is_string())
    })
}

impl BackupTxn {
    /// Runs the reference's checks in order (namespace exists, group create/lock, owner,
    /// base snapshot, time ordering, snapshot dir) and returns the open transaction. Errors
    /// carry the reference's texts. `check_owner` is false for benchmark sessions.
    pub fn begin(
        store: Arc<Datastore>,
        ns: Namespace,
        snapshot: SnapshotRef,
        auth: &Authid,
        check_owner: bool,
    ) -> Result<Self> {
        store.check_namespace(&ns)?;
        let mut cleanup = Cleanup::default();
        let (owner, created_group) = lock_or_create_group(&store, &ns, &snapshot.group, auth, &mut cleanup)?;
        if check_owner {
            list::check_owner(auth, &owner)?;
        }
        let base = find_base(&store, &ns, &snapshot.group)?;
        if let Some(base) = &base {
            if snapshot.time <= base.snapshot.time {
                return Err(StoreError::Refused("backup timestamp is older than last backup.".into()));
            }
            cleanup.base_lock = Some(DirLock::try_lock(
                &base.path,
                false,
                "snapshot",
                "base snapshot is already locked by another operation",
            )?);
        }
        let path = store.snapshot_path(&ns, &snapshot);
        match make_dir(&path) {
            Ok(true) => cleanup.snapshot_dir = Some(path.clone()),
            Ok(false) => return Err(StoreError::Refused("backup directory already exists.".into())),
            Err(e) => return Err(io_err("create snapshot directory", &path)(e)),
        }
        cleanup.snapshot_lock =
            Some(DirLock::try_lock(&path, true, "snapshot", "snapshot is already in use by another operation")?);
        if created_group {
            // Only now, so that a crash at any point of creating a group leaves either a group
            // without `owner` or one with an unfinished snapshot: start-up recovery removes both
            // (store/recover.rs), where a lone `owner` would look like a group kept on purpose.
            let group = &snapshot.group;
            store
                .write_file(&store.group_path(&ns, group).join(OWNER_NAME), format!("{auth}\n").as_bytes())
                .map_err(|e| client_io(e, format!("creating backup group {group} failed - writing {OWNER_NAME}")))?;
        }
        cleanup.writer = Some(store.locker().try_shared()?);
        Ok(BackupTxn { store, ns, snapshot, owner, base, path, cleanup })
    }

    /// Writes a file of the snapshot atomically (temp, fsync, rename, fsync dir).
    /// An I/O error names the file, not the temp path (the log keeps the full context).
    pub fn write_file(&self, name: &ArchiveName, bytes: &[u8]) -> Result<()> {
        self.store.write_file(&self.file_path(name), bytes).map_err(|e| client_io(e, format!("writing {name} failed")))
    }
    /// Makes the committed snapshot durable as the datastore's sync level asks: `filesystem`
    /// syncs the datastore's file system once here; `file` synced every file as it was written.
    pub fn sync_commit(&self) -> Result<()> {
        if self.store.fsync_policy() == FsyncPolicy::Filesystem {
            durable::syncfs(self.store.root())?;
        }
        Ok(())
    }
    /// Path of a file in the snapshot directory.
    pub fn file_path(&self, name: &ArchiveName) -> PathBuf {
        self.path.join(name.as_str())
    }
    /// Whether the base snapshot directory still exists (checked at finish).
    pub fn base_still_exists(&self) -> bool {
        self.base.as_ref().is_none_or(|b| Path::new(&b.path).is_dir())
    }
    /// Marks the snapshot finished: after this, drop keeps the directory. Call after the
    /// manifest has been committed.
    pub fn commit(mut self) {
        self.cleanup.committed = true;
    }
}

/// Step 8: create the group if missing (owner := `auth`, written by the caller) and lock it
/// exclusively; returns the owner and whether the group is new. Retries when a concurrent
/// failed backup removes the directory under us.
fn lock_or_create_group(
    store: &Datastore,
    ns: &Namespace,
    group: &GroupRef,
    auth: &Authid,
    cleanup: &mut Cleanup,
) -> Result<(Authid, bool)> {
    let group_dir = store.group_path(ns, group);
    let type_dir = group_dir.parent().expect("group path has a type directory").to_path_buf();
    for _ in 0..8 {
        if make_dir(&type_dir).map_err(io_err("create directory", &type_dir))? {
            cleanup.type_dir = Some(type_dir.clone());
        }
        let created = match make_dir(&group_dir) {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("create group directory", &group_dir)(e)),
        };
        if created {
            cleanup.group_dir = Some(group_dir.clone());
        }
        let lock = match DirLock::try_lock(&group_dir, true, "backup group", "another backup is already running") {
            Err(StoreError::NotFound(_)) => continue,
            other => other?,
        };
        if !lock.still_at_path() {
            continue;
        }
        cleanup.group_lock = Some(lock);
        if created {
            return Ok((auth.clone(), true));
        }
        return Ok((store.group_owner(ns, group)?, false));
    }
    Err(StoreError::Locked(format!("unable to create backup group {group_dir:?} - it keeps disappearing")))
}

/// Step 10: the newest finished snapshot, unless its verification failed.
fn find_base(store: &Datastore, ns: &Namespace, group: &GroupRef) -> Result<Option<BaseSnapshot>> {
    let Some(last) = store.last_finished(ns, group)? else { return Ok(None) };
    let path = store.snapshot_path(ns, &last.snapshot);
    let manifest = crate::store::admin::load_manifest(&path)?;
    if verify_failed(&manifest) {
        return Ok(None);
    }
    Ok(Some(BaseSnapshot { snapshot: last.snapshot, path, manifest }))
}

#[cfg(test)]
#[path = "backup_tests.rs"]
pub(crate) mod tests;
