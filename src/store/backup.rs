//! A backup transaction on disk: group creation and ownership, the group lock, the base
//! snapshot, the new snapshot directory, and its commit or removal (formats.md 5.5,
//! protocol.md 1.4 steps 6-12).
//!
//! INTERFACE STUB: the store helper fills in the bodies.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::format::manifest::Manifest;
use crate::format::{ArchiveName, Authid, Namespace, SnapshotRef};
use crate::store::{Datastore, Result};

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
        let _ = (store, ns, snapshot, auth, check_owner);
        todo!()
    }
    /// Writes a file of the snapshot atomically (temp, fsync, rename, fsync dir).
    pub fn write_file(&self, name: &ArchiveName, bytes: &[u8]) -> Result<()> {
        let _ = (name, bytes);
        todo!()
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
    pub fn commit(self) {
        todo!()
    }
}
