//! Access control lists: roles granted to auth-ids on ACL paths (`/`, `/datastore`,
//! `/datastore/<store>[/<ns>...]`), and the privileges they add up to (protocol.md 1.3, 6).
//!
//! Semantics follow PBS: walking from `/` to the requested path, the roles an auth-id holds on a
//! deeper node replace those of the shallower ones (entries on ancestors count only when they
//! propagate). A token gets what its own entries grant, capped by what its user may do, so a
//! token can never exceed its owner.

use serde::{Deserialize, Serialize};

/// One privilege bit; names as in PBS ACLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    DatastoreAudit,
    DatastoreBackup,
    DatastoreRead,
    DatastoreModify,
    DatastorePrune,
}

impl Privilege {
    pub fn name(self) -> &'static str {
        match self {
            Privilege::DatastoreAudit => "Datastore.Audit",
            Privilege::DatastoreBackup => "Datastore.Backup",
            Privilege::DatastoreRead => "Datastore.Read",
            Privilege::DatastoreModify => "Datastore.Modify",
            Privilege::DatastorePrune => "Datastore.Prune",
        }
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// A set of privileges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Privs(u32);

impl Privs {
    pub const NONE: Privs = Privs(0);
    pub const ALL: Privs = Privs(0b11111);

    pub fn of(list: &[Privilege]) -> Privs {
        Privs(list.iter().fold(0, |acc, p| acc | p.bit()))
    }
    pub fn has(self, p: Privilege) -> bool {
        self.0 & p.bit() != 0
    }
    pub fn intersect(self, other: Privs) -> Privs {
        Privs(self.0 & other.0)
    }
    fn union(self, other: Privs) -> Privs {
        Privs(self.0 | other.0)
    }
}

/// The roles `chunkyard acl set` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Admin,
    DatastoreAdmin,
    DatastorePowerUser,
    DatastoreBackup,
    DatastoreReader,
    DatastoreAudit,
    NoAccess,
}

impl Role {
    pub const ALL: [Role; 7] = [
        Role::Admin,
        Role::DatastoreAdmin,
        Role::DatastorePowerUser,
        Role::DatastoreBackup,
        Role::DatastoreReader,
        Role::DatastoreAudit,
        Role::NoAccess,
    ];

    pub fn privs(self) -> Privs {
        use Privilege::*;
        match self {
            Role::Admin | Role::DatastoreAdmin => Privs::ALL,
            Role::DatastorePowerUser => Privs::of(&[DatastoreBackup, DatastorePrune]),
            Role::DatastoreBackup => Privs::of(&[DatastoreBackup]),
            Role::DatastoreReader => Privs::of(&[DatastoreAudit, DatastoreRead]),
            Role::DatastoreAudit => Privs::of(&[DatastoreAudit]),
            Role::NoAccess => Privs::NONE,
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| format!("{r:?}") == s)
    }
}

fn yes() -> bool {
    true
}

/// One line of `acl.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclEntry {
    pub path: String,
    pub role: Role,
    pub authid: String,
    #[serde(default = "yes")]
    pub propagate: bool,
}

/// Splits an ACL path into components; `/` is the empty list. Refuses empty or dot components.
pub fn path_components(path: &str) -> Option<Vec<&str>> {
    let rest = path.strip_prefix('/')?;
    if rest.is_empty() {
        return Some(Vec::new());
    }
    let parts: Vec<&str> = rest.split('/').collect();
    let ok = parts.iter().all(|p| {
        !p.is_empty() && *p != "." && *p != ".." && p.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    });
    ok.then_some(parts)
}

/// Privileges `authid` (exactly this id, user or token) holds on `path` by its own entries.
pub fn own_privs(entries: &[AclEntry], authid: &str, path: &str) -> Privs {
    let Some(target) = path_components(path) else { return Privs::NONE };
    let mut privs = Privs::NONE;
    for depth in 0..=target.len() {
        let mut here: Option<Privs> = None;
        for e in entries.iter().filter(|e| e.authid == authid) {
            let Some(p) = path_components(&e.path) else { continue };
            if p.len() == depth && p[..] == target[..depth] && (e.propagate || depth == target.len()) {
                here = Some(here.unwrap_or(Privs::NONE).union(e.role.privs()));
            }
        }
        if let Some(h) = here {
            privs = h;
        }
    }
    privs
}

#[cfg(test)]
mod tests {
    use super::*;
    use Privilege::*;

    fn e(path: &str, role: Role, authid: &str, propagate: bool) -> AclEntry {
        AclEntry { path: path.into(), role, authid: authid.into(), propagate }
    }

    #[test]
    fn deeper_entries_replace_and_propagation_is_honoured() {
        let acl = vec![
            e("/datastore", Role::DatastoreAudit, "u@pbs", true),
            e("/datastore/s1", Role::DatastoreBackup, "u@pbs", true),
            e("/datastore/s2", Role::DatastoreReader, "u@pbs", false),
            e("/datastore/s1/secret", Role::NoAccess, "u@pbs", true),
        ];
        let p = |path| own_privs(&acl, "u@pbs", path);
        assert!(p("/datastore/s3").has(DatastoreAudit));
        assert!(p("/datastore/s1").has(DatastoreBackup) && !p("/datastore/s1").has(DatastoreAudit));
        assert!(p("/datastore/s1/a/b").has(DatastoreBackup));
        assert_eq!(p("/datastore/s1/secret/x"), Privs::NONE);
        assert!(p("/datastore/s2").has(DatastoreRead));
        // not propagated below s2: the /datastore audit grant applies there
        assert_eq!(p("/datastore/s2/ns"), Privs::of(&[DatastoreAudit]));
        assert_eq!(own_privs(&acl, "other@pbs", "/datastore/s1"), Privs::NONE);
        assert_eq!(p("relative"), Privs::NONE);
    }

    #[test]
    fn roles_parse_by_name() {
        assert_eq!(Role::parse("DatastoreBackup"), Some(Role::DatastoreBackup));
        assert_eq!(Role::parse("Datastore.Backup"), None);
        assert!(Role::DatastoreAdmin.privs().has(DatastorePrune));
        assert!(!Role::DatastoreBackup.privs().has(DatastoreRead));
        assert!(path_components("/datastore/../x").is_none());
        assert_eq!(path_components("/").unwrap().len(), 0);
    }
}
