//! The datastore: PBS's directory layout, the chunk store, locks, snapshot lifecycle, listing.
//!
//! Everything that decides where a byte goes on disk and how it gets there durably lives here;
//! the byte layouts themselves are `format/`. Paths are built only from validated names.
//!
//! Files: `durable.rs` (the one temp-fsync-rename helper), `io/` (the backend every chunk and
//! snapshot file goes through: plain file I/O or io_uring), `chunk_store.rs` (the dedup rules),
//! `lock.rs` (flock and `.lock`), `backup.rs` (a backup's lifecycle), `list.rs` (reading the
//! tree), `admin.rs` (namespaces, forget, protection, notes), `recover.rs` (crash leftovers at
//! start-up), `registry.rs` (adding to the datastore registry).

pub mod admin;
pub mod backup;
pub mod chunk_store;
pub mod durable;
pub mod gc;
pub mod io;
pub mod list;
pub mod lock;
pub mod prune;
pub mod recover;
pub mod registry;
pub mod snapshot_meta;
pub mod verify;

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::FsyncPolicy;
use crate::format::{DatastoreName, GroupRef, NameError, Namespace, SnapshotRef};

pub use admin::{SnapshotReader, load_manifest};
pub use backup::{BackupTxn, BaseSnapshot};
pub use chunk_store::{ChunkStore, InsertOutcome, InsertPlan};
pub use durable::{fsync_dir, write_atomic};
pub use io::{Backend, DatastoreOptions, WriteMethod};
pub use list::SnapshotInfo;
pub use lock::{DirLock, ProcessLocker, SharedGuard};

/// Mode of the datastore's base directory.
pub const BASE_DIR_MODE: u32 = 0o755;
/// Mode of `<root>/.lock`.
pub const LOCK_FILE_MODE: u32 = 0o644;

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

/// Rewords a disk error for the client: `what` failed, then the OS error. The temp path and
/// step the store's text names mean nothing to a client, so they go to the log instead.
pub(crate) fn client_io(e: StoreError, what: String) -> StoreError {
    match e {
        StoreError::Io { context, source } => {
            tracing::warn!("{what}: {context}: {source}");
            StoreError::Io { context: what, source }
        }
        other => other,
    }
}

/// One datastore on disk. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Datastore {
    name: DatastoreName,
    root: PathBuf,
    /// Every chunk and snapshot file goes through it.
    io: Arc<dyn Backend>,
    chunks: ChunkStore,
    fsync: FsyncPolicy,
    locker: Arc<ProcessLocker>,
    /// Serialises manifest rewrites (verify state, notes) within this process; PBS's lock
    /// file under /run is not shared with it.
    manifest_lock: parking_lot::Mutex<()>,
}

impl Datastore {
    /// Creates the layout (`.chunks/0000..ffff` 0750, `.lock` 0644, base 0755) where absent
    /// and opens it. Safe on an existing datastore: nothing present is changed.
    pub fn create(name: DatastoreName, root: &Path) -> Result<Self> {
        Self::create_with(name, root, &DatastoreOptions::default())
    }

    /// [`create`](Self::create), then open with `options`.
    pub fn create_with(name: DatastoreName, root: &Path, options: &DatastoreOptions) -> Result<Self> {
        match std::fs::DirBuilder::new().mode(BASE_DIR_MODE).create(root) {
            Ok(()) => set_mode(root, BASE_DIR_MODE)?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && root.is_dir() => {}
            Err(e) => return Err(durable::io_err("create datastore directory", root)(e)),
        }
        let chunks = root.join(".chunks");
        io::files::create_chunk_dir(&chunks)?;
        io::files::create_all_dirs(&chunks)?;
        ensure_lock_file(root)?;
        durable::fsync_dir(root)?;
        Self::open_with(name, root, options)
    }

    /// Opens an existing datastore (refuses a directory without `.chunks`). Missing chunk
    /// directories are created when first needed and a missing `.lock` now, so a copy of a
    /// store without its empty directories works.
    pub fn open(name: DatastoreName, root: &Path) -> Result<Self> {
        Self::open_with(name, root, &DatastoreOptions::default())
    }

    /// [`open`](Self::open) with the sync level and chunk write method of `options`.
    pub fn open_with(name: DatastoreName, root: &Path, options: &DatastoreOptions) -> Result<Self> {
        let chunks_dir = root.join(".chunks");
        if !chunks_dir.is_dir() {
            return Err(StoreError::NotFound(format!("datastore '{name}' at {root:?} has no chunk store (.chunks)")));
        }
        ensure_lock_file(root)?;
        // Fixes "this process's start" before it writes anything here (GC's temp-file rule).
        recover::process_start();
        let locker = Arc::new(ProcessLocker::open(&root.join(".lock"))?);
        let io = io::open(&chunks_dir, options);
        Ok(Datastore {
            name,
            root: root.to_path_buf(),
            chunks: ChunkStore::with_backend(chunks_dir, io.clone()),
            io,
            fsync: options.fsync,
            locker,
            manifest_lock: Default::default(),
        })
    }

    /// The `.lock` file's in-process lock bookkeeping (writers hold it shared, GC exclusive).
    pub fn locker(&self) -> &Arc<ProcessLocker> {
        &self.locker
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
    /// The sync level this datastore was opened with.
    pub fn fsync_policy(&self) -> FsyncPolicy {
        self.fsync
    }
    /// Replaces a file of the datastore (`path` below its root) durably, through its backend.
    pub fn write_file(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        self.io.write_file(path, bytes)
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

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(durable::io_err("chmod", path))
}

fn ensure_lock_file(root: &Path) -> Result<()> {
    match durable::write_new_file(&root.join(".lock"), b"", LOCK_FILE_MODE, false) {
        Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn create_lays_out_like_pbs_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store1");
        let name = DatastoreName::parse("store1").unwrap();
        let ds = Datastore::create(name.clone(), &root).unwrap();
        assert_eq!(mode(&root), 0o755);
        assert_eq!(mode(&root.join(".chunks")), 0o750);
        assert_eq!(mode(&root.join(".lock")), 0o644);
        assert_eq!(std::fs::read_dir(root.join(".chunks")).unwrap().count(), 65536);
        for sub in ["0000", "abcd", "ffff"] {
            assert_eq!(mode(&root.join(".chunks").join(sub)), 0o750);
        }
        let d = crate::format::Digest::of(b"x");
        let raw = [&[66u8, 171, 56, 7, 190, 131, 112, 161][..], &[0; 4], b"x"].concat();
        ds.chunks().insert(&d, &raw).unwrap();
        drop(ds);
        let ds = Datastore::create(name.clone(), &root).unwrap();
        assert_eq!(ds.chunks().read(&d).unwrap(), raw, "re-create keeps existing chunks");
        assert_eq!(ds.name(), &name);
    }

    #[test]
    fn open_refuses_non_store_and_fills_in_lock() {
        let dir = tempfile::tempdir().unwrap();
        let name = DatastoreName::parse("store1").unwrap();
        assert!(matches!(Datastore::open(name.clone(), dir.path()), Err(StoreError::NotFound(_))));
        std::fs::create_dir(dir.path().join(".chunks")).unwrap();
        let ds = Datastore::open(name, dir.path()).unwrap();
        assert!(dir.path().join(".lock").is_file());
        let _w = ds.locker().try_shared().unwrap();
    }
}
