//! Small per-snapshot and per-group facts the management API needs beyond `admin.rs`: the
//! snapshot's file list with sizes, the client log (stored once), and changing a group's owner.

use crate::format::{ArchiveName, Authid, GroupRef, Namespace, SnapshotRef};
use crate::store::durable::io_err;
use crate::store::list::OWNER_NAME;
use crate::store::{Datastore, Result, StoreError};

/// Name of the log `upload-backup-log` stores.
pub const CLIENT_LOG_NAME: &str = "client.log.blob";

/// A file of a snapshot directory as `files` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    pub name: String,
    pub size: u64,
}

impl Datastore {
    fn existing_snapshot(&self, ns: &Namespace, snap: &SnapshotRef) -> Result<std::path::PathBuf> {
        self.check_snapshot(ns, snap)?;
        Ok(self.snapshot_path(ns, snap))
    }

    /// Regular files of a snapshot named like archives (`*.blob|*.didx|*.fidx`), with sizes,
    /// sorted by name.
    pub fn snapshot_files(&self, ns: &Namespace, snap: &SnapshotRef) -> Result<Vec<SnapshotFile>> {
        let dir = self.existing_snapshot(ns, snap)?;
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io_err("list directory", &dir))? {
            let entry = entry.map_err(io_err("list directory", &dir))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
            let meta = entry.metadata().map_err(io_err("stat", &dir.join(&name)))?;
            if meta.is_file() && ArchiveName::parse(&name).is_ok() {
                out.push(SnapshotFile { name, size: meta.len() });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Stores the client's log once; a second upload is refused with the reference's text.
    pub fn store_client_log(&self, ns: &Namespace, snap: &SnapshotRef, blob: &[u8]) -> Result<()> {
        let path = self.existing_snapshot(ns, snap)?.join(CLIENT_LOG_NAME);
        if path.exists() {
            return Err(StoreError::Refused("backup already contains a log.".into()));
        }
        self.write_file(&path, blob)
    }

    /// Replaces the group's owner file (atomically, unlike PBS's in-place write).
    pub fn set_owner(&self, ns: &Namespace, group: &GroupRef, owner: &Authid) -> Result<()> {
        self.check_group(ns, group)?;
        self.write_file(&self.group_path(ns, group).join(OWNER_NAME), format!("{owner}\n").as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use crate::format::{Authid, BackupType, Namespace};
    use crate::store::backup::tests::{snap, test_store};

    #[test]
    fn files_log_and_owner() {
        let (dir, ds) = test_store();
        let root = Namespace::root();
        let s = snap(BackupType::Host, "h", 1_700_000_000);
        let sdir = dir.path().join(s.rel_path());
        std::fs::create_dir_all(&sdir).unwrap();
        std::fs::write(sdir.join("x.blob"), b"data").unwrap();
        std::fs::write(sdir.join("junk.txt"), b"no").unwrap();
        std::fs::write(sdir.join(".protected"), b"").unwrap();
        let files = ds.snapshot_files(&root, &s).unwrap();
        assert_eq!(files, vec![super::SnapshotFile { name: "x.blob".into(), size: 4 }]);
        ds.store_client_log(&root, &s, b"log").unwrap();
        assert_eq!(ds.store_client_log(&root, &s, b"again").unwrap_err().to_string(), "backup already contains a log.");
        assert_eq!(std::fs::read(sdir.join("client.log.blob")).unwrap(), b"log");
        let other = snap(BackupType::Host, "h", 1_700_000_001);
        assert!(ds.snapshot_files(&root, &other).is_err());
        let owner = Authid::parse("u@pbs!t").unwrap();
        ds.set_owner(&root, &s.group, &owner).unwrap();
        assert_eq!(ds.group_owner(&root, &s.group).unwrap(), owner);
        assert!(ds.set_owner(&root, &snap(BackupType::Vm, "9", 1).group, &owner).is_err());
    }
}
