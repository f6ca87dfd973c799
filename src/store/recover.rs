//! Start-up recovery: what a crash or power cut leaves in the snapshot tree, removed before the
//! server serves again.
//!
//! A backup's files appear one by one (temp name, fsync, rename), and the snapshot only counts
//! once `index.json.blob` exists, so a crash never leaves a half-written file under a final name.
//! It does leave litter: the unfinished snapshot directory, temp files (`*.tmp_XXXXXX`) of
//! writes that never got renamed, and sometimes the group directory the crashed backup had just
//! created. Listing and the next backup already ignore all of it; removing it keeps the
//! datastore looking like the crash never happened and stops `list` from showing a phantom
//! in-progress snapshot forever.
//!
//! Only what nobody holds is touched: every group and snapshot is locked non-blocking first
//! (a PBS process on the same datastore keeps its backup's locks), and files at the datastore
//! root only under the exclusive `.lock`. Chunk temp files are not looked for here (that would
//! read 65536 directories at every start); GC, which reads them anyway, removes them.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::SystemTime;

use crate::format::{GroupRef, Namespace};
use crate::store::durable::is_tmp_name;
use crate::store::list::OWNER_NAME;
use crate::store::lock::DirLock;
use crate::store::{Datastore, Result, StoreError};

/// What [`Datastore::recover`] removed, and what it left because someone held it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Snapshot directories without `index.json.blob`.
    pub snapshots: Vec<PathBuf>,
    /// Group directories the crashed backup created (see [`Datastore::recover`]).
    pub groups: Vec<PathBuf>,
    pub temp_files: Vec<PathBuf>,
    /// Groups or snapshots locked by a live process, left alone.
    pub busy: Vec<PathBuf>,
}

impl Recovery {
    pub fn is_empty(&self) -> bool {
        self.snapshots.is_empty() && self.groups.is_empty() && self.temp_files.is_empty()
    }
}

static PROCESS_START: OnceLock<SystemTime> = OnceLock::new();

/// When this process first opened a datastore. Every file it writes into one is younger, so a
/// temp file older than this belongs to a process that is gone (GC's rule for chunk temps).
pub fn process_start() -> SystemTime {
    *PROCESS_START.get_or_init(SystemTime::now)
}

/// Names in `dir` (files and directories), empty if it cannot be read.
fn entries(dir: &Path) -> Vec<(String, bool)> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| {
            let is_dir = e.file_type().ok()?.is_dir();
            Some((e.file_name().into_string().ok()?, is_dir))
        })
        .collect()
}

impl Datastore {
    /// Removes abandoned snapshots (no manifest, nobody holding the lock), temp files in the
    /// snapshot tree, and a group directory left with nothing but its `owner` after its
    /// abandoned snapshot went (or without even an `owner`: the crash hit between `mkdir` and
    /// writing it, and such a group refuses every backup). That mirrors what a backup that
    /// fails while the server runs does (`BackupTxn` removes a group it created), so a crashed
    /// first backup leaves no trace. A group that was already empty but for `owner` (all its
    /// snapshots forgotten) is kept with its owner, as PBS keeps it.
    pub fn recover(&self) -> Result<Recovery> {
        let mut out = Recovery::default();
        if let Ok(_exclusive) = self.locker().try_exclusive() {
            self.remove_temps(self.root(), &mut out);
        }
        for ns in self.namespaces(&Namespace::root(), None)? {
            for group in self.groups(&ns)? {
                self.recover_group(&ns, &group, &mut out)?;
            }
        }
        for path in &out.snapshots {
            tracing::info!(path = %path.display(), "removed abandoned snapshot");
        }
        for path in &out.groups {
            tracing::info!(path = %path.display(), "removed group directory of an abandoned first backup");
        }
        for path in &out.temp_files {
            tracing::info!(path = %path.display(), "removed leftover temp file");
        }
        for path in &out.busy {
            tracing::info!(path = %path.display(), "left alone: locked by a running process");
        }
        Ok(out)
    }

    fn recover_group(&self, ns: &Namespace, group: &GroupRef, out: &mut Recovery) -> Result<()> {
        let dir = self.group_path(ns, group);
        let _group_lock = match DirLock::try_lock(&dir, true, "backup group", "in use") {
            Ok(l) => l,
            Err(StoreError::Locked(_)) => {
                out.busy.push(dir);
                return Ok(());
            }
            Err(StoreError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut removed_snapshot = false;
        for info in self.snapshots(ns, group)? {
            let snap_dir = self.snapshot_path(ns, &info.snapshot);
            let _lock = match DirLock::try_lock(&snap_dir, true, "snapshot", "in use") {
                Ok(l) => l,
                Err(StoreError::Locked(_)) => {
                    out.busy.push(snap_dir);
                    continue;
                }
                Err(StoreError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            if info.finished {
                self.remove_temps(&snap_dir, out);
                continue;
            }
            std::fs::remove_dir_all(&snap_dir)
                .map_err(crate::store::durable::io_err("remove abandoned snapshot", &snap_dir))?;
            out.snapshots.push(snap_dir);
            removed_snapshot = true;
        }
        self.remove_temps(&dir, out);
        let left = entries(&dir);
        let has_owner = left.iter().any(|(n, d)| n == OWNER_NAME && !d);
        if left.len() == usize::from(has_owner) && (removed_snapshot || !has_owner) {
            if has_owner {
                let _ = std::fs::remove_file(dir.join(OWNER_NAME));
            }
            std::fs::remove_dir(&dir).map_err(crate::store::durable::io_err("remove group directory", &dir))?;
            // The type directory goes too if this was its last group; otherwise this fails.
            if let Some(type_dir) = dir.parent() {
                let _ = std::fs::remove_dir(type_dir);
            }
            out.groups.push(dir);
        }
        Ok(())
    }

    /// Removes temp-named regular files directly in `dir`.
    fn remove_temps(&self, dir: &Path, out: &mut Recovery) {
        for (name, is_dir) in entries(dir) {
            if is_dir || !is_tmp_name(&name) {
                continue;
            }
            let path = dir.join(&name);
            match std::fs::remove_file(&path) {
                Ok(()) => out.temp_files.push(path),
                Err(e) => tracing::warn!(path = %path.display(), %e, "unable to remove leftover temp file"),
            }
        }
    }
}

#[cfg(test)]
#[path = "recover_tests.rs"]
mod tests;
