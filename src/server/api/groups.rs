//! `GET /admin/datastore/{store}/groups` and `POST .../change-owner`.
//!
//! Listing needs `Datastore.Audit` (every group) or `Datastore.Backup` (only the caller's own
//! groups, protocol.md 1.3 owner rules); groups without snapshots are left out.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::auth::Privilege::{DatastoreAudit, DatastoreBackup, DatastoreModify};
use crate::format::{Authid, DatastoreName};
use crate::http::ReplyResult;
use crate::server::api::{Access, Call, CallError, blocking, data};

pub async fn list(call: &Call, name: &DatastoreName) -> ReplyResult {
    let ns = call.ns()?;
    let access = call.access(name, &ns, &[DatastoreAudit], DatastoreBackup)?;
    let store = call.store(name)?;
    let authid = call.authid.clone();
    let groups = blocking(move || {
        store.check_namespace(&ns)?;
        let mut out = Vec::new();
        for group in store.groups(&ns)? {
            let Ok(owner) = store.group_owner(&ns, &group) else { continue };
            if access == Access::Limited && !authid.matches_owner(&owner) {
                continue;
            }
            let snapshots = store.snapshots(&ns, &group)?;
            let Some(last) = snapshots.iter().rev().find(|s| s.finished).or(snapshots.last()) else { continue };
            let files: Vec<String> = store
                .snapshot_files(&ns, &last.snapshot)
                .map(|f| f.into_iter().map(|f| f.name).collect())
                .unwrap_or_default();
            let mut entry = json!({
                "backup-type": group.ty.as_str(),
                "backup-id": group.id.as_str(),
                "last-backup": last.snapshot.time.epoch(),
                "backup-count": snapshots.len(),
                "files": files,
                "owner": owner.to_string(),
            });
            if let Some(comment) = store.group_notes(&ns, &group).ok().and_then(|n| n.lines().next().map(str::to_owned))
            {
                entry["comment"] = Value::String(comment);
            }
            out.push(entry);
        }
        Ok(out)
    })
    .await?;
    data(Value::Array(groups))
}

/// Changes a group's owner; needs `Datastore.Modify`, and the new owner must exist.
pub async fn change_owner(call: &Call, name: &DatastoreName) -> ReplyResult {
    let ns = call.ns()?;
    let group = call.group()?;
    let new_owner = Authid::parse(call.params.str("new-owner")?)?;
    call.require(name, &ns, DatastoreModify)?;
    if !call.ctx.state.auth.knows(&new_owner) {
        return Err(CallError::UnknownUser(new_owner).into());
    }
    let store = call.store(name)?;
    let s = Arc::clone(&store);
    blocking(move || Ok(s.set_owner(&ns, &group, &new_owner)?)).await?;
    data(Value::Null)
}
