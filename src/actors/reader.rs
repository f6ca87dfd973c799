//! One snapshot opened for the reader protocol (protocol.md 3): its files and the chunks its
//! indexes reference, read on the `files` stage so that no connection thread waits for the
//! disk.
//!
//! Chunk access is session-scoped on purpose: a reader may fetch only digests listed by an index
//! it downloaded in this session (pitfall 23), so holding read rights on one snapshot never
//! turns into reading arbitrary chunks of the store. The snapshot's shared lock lives as long as
//! the [`SnapshotFiles`], so prune/forget cannot pull the snapshot away meanwhile.

use std::cell::RefCell;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use crate::actors::stage::{Blocking, Stage, Stopped};
use crate::actors::{Pipeline, StoreHandle};
use crate::format::dynamic_index::DynamicIndex;
use crate::format::fixed_index::FixedIndex;
use crate::format::{ArchiveKind, ArchiveName, Authid, Digest, Namespace, SnapshotRef};
use crate::store::{Datastore, SnapshotReader, StoreError};

/// Why a reader request failed, with the reference server's texts.
#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    #[error("backup owner check failed!")]
    OwnerCheck,
    #[error("unable to open index {shown:?} - {reason}")]
    Index { shown: PathBuf, reason: String },
    #[error("open file {0:?} failed - not found")]
    FileMissing(PathBuf),
    #[error("open file {shown:?} failed: {source}")]
    File { shown: PathBuf, source: std::io::Error },
    #[error("reading file {shown:?} failed: {source}")]
    Chunk { shown: String, source: std::io::Error },
    #[error("download chunk {0} not allowed")]
    ChunkNotAllowed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reader task failed - {0}")]
    Stopped(#[from] Stopped),
}

/// A snapshot open for reading, for the length of one reader session.
pub struct SnapshotFiles {
    store: Arc<Datastore>,
    /// Holds the shared lock.
    snapshot: SnapshotReader,
    /// `type/id/time`, used in error texts instead of the server's absolute paths.
    label: PathBuf,
    allowed: RefCell<HashSet<Digest>>,
    files: Stage<Blocking>,
}

impl SnapshotFiles {
    /// Opens `snapshot` (it must exist) and locks it shared. With `only_owner`, the group must
    /// belong to that user (a reader with Backup but not Read privilege).
    pub async fn open(
        pipeline: &Pipeline,
        store: StoreHandle,
        ns: Namespace,
        snapshot: SnapshotRef,
        only_owner: Option<Authid>,
    ) -> Result<SnapshotFiles, ReaderError> {
        let store = store.0;
        let opened = pipeline
            .files
            .run({
                let store = Arc::clone(&store);
                move || {
                    if let Some(auth) = only_owner {
                        let owner = store.group_owner(&ns, &snapshot.group)?;
                        if !auth.matches_owner(&owner) {
                            return Err(ReaderError::OwnerCheck);
                        }
                    }
                    Ok(store.open_snapshot(&ns, &snapshot)?)
                }
            })
            .await??;
        Ok(SnapshotFiles {
            label: opened.snapshot.rel_path(),
            store,
            snapshot: opened,
            allowed: RefCell::new(HashSet::new()),
            files: pipeline.files.clone(),
        })
    }

    pub fn snapshot(&self) -> &SnapshotRef {
        &self.snapshot.snapshot
    }

    /// A file of the snapshot exactly as stored. An index is parsed first, and the chunks it
    /// lists become downloadable.
    pub async fn download(&self, name: ArchiveName) -> Result<Bytes, ReaderError> {
        let path = self.snapshot.file_path(&name);
        let shown = self.label.join(name.as_str());
        let kind = name.kind();
        let (bytes, digests) = self.files.run(move || read_file(&path, shown, kind)).await??;
        self.allowed.borrow_mut().extend(digests);
        Ok(Bytes::from(bytes))
    }

    /// A chunk file unchanged, only for digests a downloaded index listed.
    pub async fn chunk(&self, digest: Digest) -> Result<Bytes, ReaderError> {
        if !self.allowed.borrow().contains(&digest) {
            return Err(ReaderError::ChunkNotAllowed(digest.to_hex()));
        }
        let store = Arc::clone(&self.store);
        let bytes = self
            .files
            .run(move || {
                store.chunks().read(&digest).map_err(|e| match e {
                    StoreError::Io { source, .. } => {
                        let shown = format!(".chunks/{}/{}", digest.prefix_dir(), digest.to_hex());
                        ReaderError::Chunk { shown, source }
                    }
                    other => other.into(),
                })
            })
            .await??;
        Ok(Bytes::from(bytes))
    }
}

/// Reads a snapshot file and, for an index, the digests it lists.
fn read_file(path: &std::path::Path, shown: PathBuf, kind: ArchiveKind) -> Result<(Vec<u8>, Vec<Digest>), ReaderError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if kind != ArchiveKind::Blob => return Err(ReaderError::Index { shown, reason: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ReaderError::FileMissing(shown)),
        Err(source) => return Err(ReaderError::File { shown, source }),
    };
    let bad = |e: &dyn std::fmt::Display| ReaderError::Index { shown: shown.clone(), reason: e.to_string() };
    let digests = match kind {
        ArchiveKind::Blob => Vec::new(),
        ArchiveKind::Fixed => FixedIndex::parse(&bytes).map_err(|e| bad(&e))?.digests,
        ArchiveKind::Dynamic => {
            DynamicIndex::parse(&bytes).map_err(|e| bad(&e))?.entries.into_iter().map(|e| e.digest).collect()
        }
    };
    Ok((bytes, digests))
}
