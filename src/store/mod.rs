//! The datastore: PBS's directory layout, the chunk store, locks, snapshot lifecycle, listing.
//!
//! Everything that decides where a byte goes on disk and how it gets there durably lives here;
//! the byte layouts themselves are `format/`. Paths are built only from validated names.
//!
//! INTERFACE STUB: signatures are the contract the actors code against; the store helper fills
//! in bodies and submodules (and may refine signatures with care).

pub mod backup;
pub mod chunk_store;

use std::path::{Path, PathBuf};

use crate::format::{DatastoreName, GroupRef, NameError, Namespace, SnapshotRef};

pub use backup::{BackupTxn, BaseSnapshot};
pub use chunk_store::{ChunkStore, InsertOutcome, InsertPlan};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Name(#[from] NameError),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    /// A request the datastore's state refuses; the text is the API's message.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Locked(String),
    #[error("{0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One datastore on disk. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Datastore {
    name: DatastoreName,
    root: PathBuf,
    chunks: ChunkStore,
}

impl Datastore {
    /// Creates the layout (`.chunks/0000..ffff`, `.lock`) if absent and opens it.
    pub fn create(name: DatastoreName, root: &Path) -> Result<Self> {
        let _ = (name, root);
        todo!()
    }
    /// Opens an existing datastore (refuses a directory without `.chunks`).
    pub fn open(name: DatastoreName, root: &Path) -> Result<Self> {
        let _ = (name, root);
        todo!()
    }
    pub fn name(&self) -> &DatastoreName {
        &self.name
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn chunks(&self) -> &ChunkStore {
        &self.chunks
    }
    pub fn namespace_path(&self, ns: &Namespace) -> PathBuf {
        self.root.join(ns.rel_path())
    }
    pub fn group_path(&self, ns: &Namespace, group: &GroupRef) -> PathBuf {
        self.namespace_path(ns).join(group.rel_path())
    }
    pub fn snapshot_path(&self, ns: &Namespace, snap: &SnapshotRef) -> PathBuf {
        self.namespace_path(ns).join(snap.rel_path())
    }
}
