//! Reading the datastore tree: namespaces, groups, snapshots and group owners.
//!
//! Only directory names that pass the `names` rules are listed (formats.md 5.4): anything else
//! in the tree (temp files, stray directories, names a hostile peer planted) is invisible, and
//! the directory name, not a manifest, says which group and time a snapshot is.

use std::io;
use std::path::Path;

use crate::format::{Authid, BackupId, BackupTime, BackupType, GroupRef, Namespace, SnapshotRef};
use crate::store::durable::io_err;
use crate::store::{Datastore, Result, StoreError};

/// File whose presence makes a snapshot finished (formats.md 5.5).
pub const MANIFEST_NAME: &str = "index.json.blob";
/// File whose presence protects a snapshot from prune and forget.
pub const PROTECTED_NAME: &str = ".protected";
pub const OWNER_NAME: &str = "owner";
pub const NOTES_NAME: &str = "notes";

/// One snapshot directory as found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub snapshot: SnapshotRef,
    /// Has `index.json.blob`.
    pub finished: bool,
    /// Has `.protected`.
    pub protected: bool,
}

/// Names of the subdirectories of `dir` (empty if `dir` does not exist). Not following
/// symlinks: a link planted in the tree must not lead listing elsewhere.
fn sub_dirs(dir: &Path) -> Result<Vec<String>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("list directory", dir)(e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(io_err("list directory", dir))?;
        let is_dir = entry.file_type().map_err(io_err("stat entry in", dir))?.is_dir();
        if let (true, Some(name)) = (is_dir, entry.file_name().to_str()) {
            out.push(name.to_string());
        }
    }
    Ok(out)
}

fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

impl Datastore {
    pub fn namespace_exists(&self, ns: &Namespace) -> bool {
        std::fs::symlink_metadata(self.namespace_path(ns)).is_ok_and(|m| m.is_dir())
    }

    /// Not found (404, the reference's text) unless the namespace exists.
    pub fn check_namespace(&self, ns: &Namespace) -> Result<()> {
        if self.namespace_exists(ns) { Ok(()) } else { Err(StoreError::NotFound("namespace not found".into())) }
    }

    /// Direct children of `ns`, sorted by name.
    pub fn child_namespaces(&self, ns: &Namespace) -> Result<Vec<Namespace>> {
        let mut out: Vec<Namespace> =
            sub_dirs(&self.namespace_path(ns).join("ns"))?.iter().filter_map(|n| ns.child(n).ok()).collect();
        out.sort();
        Ok(out)
    }

    /// `ns` and its descendants up to `max_depth` levels below it (None = all), parents first.
    pub fn namespaces(&self, ns: &Namespace, max_depth: Option<usize>) -> Result<Vec<Namespace>> {
        self.check_namespace(ns)?;
        let mut out = vec![ns.clone()];
        let mut level = vec![ns.clone()];
        let mut depth = 0;
        while !level.is_empty() && max_depth.is_none_or(|m| depth < m) {
            let mut next = Vec::new();
            for parent in &level {
                next.extend(self.child_namespaces(parent)?);
            }
            out.extend(next.iter().cloned());
            level = next;
            depth += 1;
        }
        Ok(out)
    }

    /// Groups of a namespace, sorted by type (ct < host < vm) then id.
    pub fn groups(&self, ns: &Namespace) -> Result<Vec<GroupRef>> {
        let base = self.namespace_path(ns);
        let mut out = Vec::new();
        for ty in BackupType::ALL {
            for id in sub_dirs(&base.join(ty.as_str()))? {
                if let Ok(id) = BackupId::parse(&id) {
                    out.push(GroupRef { ty, id });
                }
            }
        }
        out.sort();
        Ok(out)
    }

    pub fn group_exists(&self, ns: &Namespace, group: &GroupRef) -> bool {
        std::fs::symlink_metadata(self.group_path(ns, group)).is_ok_and(|m| m.is_dir())
    }

    /// Not found unless the group exists.
    pub fn check_group(&self, ns: &Namespace, group: &GroupRef) -> Result<()> {
        if self.group_exists(ns, group) {
            Ok(())
        } else {
            Err(StoreError::NotFound(format!("group {group} does not exist.")))
        }
    }

    /// Snapshots of a group, oldest first.
    pub fn snapshots(&self, ns: &Namespace, group: &GroupRef) -> Result<Vec<SnapshotInfo>> {
        let gpath = self.group_path(ns, group);
        let mut out = Vec::new();
        for name in sub_dirs(&gpath)? {
            let Ok(time) = BackupTime::parse_dir_name(&name) else { continue };
            let dir = gpath.join(&name);
            out.push(SnapshotInfo {
                snapshot: SnapshotRef { group: group.clone(), time },
                finished: exists(&dir.join(MANIFEST_NAME)),
                protected: exists(&dir.join(PROTECTED_NAME)),
            });
        }
        out.sort_by_key(|s| s.snapshot.time);
        Ok(out)
    }

    /// The newest finished snapshot of a group.
    pub fn last_finished(&self, ns: &Namespace, group: &GroupRef) -> Result<Option<SnapshotInfo>> {
        Ok(self.snapshots(ns, group)?.into_iter().rev().find(|s| s.finished))
    }

    pub fn snapshot_exists(&self, ns: &Namespace, snap: &SnapshotRef) -> bool {
        std::fs::symlink_metadata(self.snapshot_path(ns, snap)).is_ok_and(|m| m.is_dir())
    }

    /// Not found unless the snapshot exists.
    pub fn check_snapshot(&self, ns: &Namespace, snap: &SnapshotRef) -> Result<()> {
        if self.snapshot_exists(ns, snap) {
            Ok(())
        } else {
            Err(StoreError::NotFound(format!("snapshot {snap} does not exist.")))
        }
    }

    /// The group's owner: first line of `owner`, trailing whitespace stripped (formats.md 4.4).
    pub fn group_owner(&self, ns: &Namespace, group: &GroupRef) -> Result<Authid> {
        let path = self.group_path(ns, group).join(OWNER_NAME);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            let msg = format!("unable to read owner file {path:?} - {e}");
            if e.kind() == io::ErrorKind::NotFound { StoreError::NotFound(msg) } else { StoreError::Corrupt(msg) }
        })?;
        let line = text.lines().next().unwrap_or("").trim_end();
        Authid::parse(line).map_err(|e| StoreError::Corrupt(format!("bad owner in {path:?} - {e}")))
    }
}

/// Refused (the reference's 400) unless `auth` owns a group owned by `owner` (protocol.md 1.3).
pub fn check_owner(auth: &Authid, owner: &Authid) -> Result<()> {
    if auth.matches_owner(owner) {
        Ok(())
    } else {
        Err(StoreError::Refused(format!("backup owner check failed ({auth} != {owner})")))
    }
}

#[cfg(test)]
#[path = "list_tests.rs"]
mod tests;
