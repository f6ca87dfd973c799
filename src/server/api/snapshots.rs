//! Snapshot endpoints: list, files, forget (DELETE), notes and protected (GET/PUT), and the
//! client log upload.
//!
//! Access follows PBS: a full privilege reaches every group, `Datastore.Backup` (or
//! `Datastore.Prune` for forget) only the caller's own groups; a foreign group is refused with
//! "backup owner check failed".

use std::sync::Arc;

use serde_json::{Value, json};

use crate::auth::Privilege::{DatastoreAudit, DatastoreBackup, DatastoreModify, DatastorePrune, DatastoreRead};
use crate::format::manifest::Manifest;
use crate::format::{DatastoreName, Namespace, SnapshotRef};
use crate::http::ApiError;
use crate::http::ReplyResult;
use crate::server::api::{Access, Call, blocking, check_owner, data};
use crate::store::Datastore;
use crate::store::list::MANIFEST_NAME;

/// The `files` array of a snapshot: the manifest's entries, the manifest itself (`sign-only`
/// when signed), then any other archive-named file in the directory (e.g. the client log).
fn contents(store: &Datastore, ns: &Namespace, snap: &SnapshotRef) -> Result<(Option<Manifest>, Vec<Value>), ApiError> {
    let on_disk = store.snapshot_files(ns, snap)?;
    let manifest = crate::store::load_manifest(&store.snapshot_path(ns, snap)).ok();
    let mut files = Vec::new();
    if let Some(m) = &manifest {
        for f in &m.files {
            files.push(json!({ "filename": f.filename, "crypt-mode": f.crypt_mode.as_str(), "size": f.size }));
        }
        let size = on_disk.iter().find(|f| f.name == MANIFEST_NAME).map(|f| f.size);
        let mode = if m.signature.is_some() { "sign-only" } else { "none" };
        files.push(json!({ "filename": MANIFEST_NAME, "crypt-mode": mode, "size": size }));
    }
    for f in on_disk {
        if !files.iter().any(|v| v["filename"] == f.name.as_str()) {
            files.push(json!({ "filename": f.name }));
        }
    }
    Ok((manifest, files))
}

fn snapshot_entry(
    store: &Datastore,
    ns: &Namespace,
    snap: &SnapshotRef,
    owner: &str,
    protected: bool,
) -> Result<Value, ApiError> {
    let (manifest, files) = contents(store, ns, snap)?;
    let mut v = json!({
        "backup-type": snap.group.ty.as_str(),
        "backup-id": snap.group.id.as_str(),
        "backup-time": snap.time.epoch(),
        "owner": owner,
        "protected": protected,
    });
    if let Some(m) = manifest {
        let size: u64 = files.iter().filter_map(|f| f["size"].as_u64()).sum();
        v["size"] = json!(size);
        if let Some(c) = m.unprotected.get("notes").and_then(Value::as_str).and_then(|n| n.lines().next()) {
            v["comment"] = json!(c);
        }
        if let Some(state) =
            m.unprotected.get("verify_state").filter(|s| s["state"].is_string() && s["upid"].is_string())
        {
            v["verification"] = json!({ "state": state["state"], "upid": state["upid"] });
        }
        if let Some(fp) = m.unprotected.get("key-fingerprint").filter(|f| f.is_string()) {
            v["fingerprint"] = fp.clone();
        }
    }
    v["files"] = Value::Array(files);
    Ok(v)
}

/// `GET snapshots[?backup-type&backup-id][&ns]`.
pub async fn list(call: &Call, name: &DatastoreName) -> ReplyResult {
    let ns = call.ns()?;
    let only = call.opt_group()?;
    let access = call.access(name, &ns, &[DatastoreAudit], DatastoreBackup)?;
    let store = call.store(name)?;
    let authid = call.authid.clone();
    let out = blocking(move || {
        store.check_namespace(&ns)?;
        let groups = match only {
            Some(g) => vec![g],
            None => store.groups(&ns)?,
        };
        let mut out = Vec::new();
        for group in groups {
            let Ok(owner) = store.group_owner(&ns, &group) else { continue };
            // A foreign group is simply not listed, as in PBS.
            if access == Access::Limited && !authid.matches_owner(&owner) {
                continue;
            }
            for info in store.snapshots(&ns, &group)? {
                out.push(snapshot_entry(&store, &ns, &info.snapshot, &owner.to_string(), info.protected)?);
            }
        }
        Ok(out)
    })
    .await?;
    data(Value::Array(out))
}

/// Opens the store and checks access to the snapshot's group; returns what the handlers need.
async fn snapshot_call(
    call: &Call,
    name: &DatastoreName,
    full: &[crate::auth::Privilege],
    partial: crate::auth::Privilege,
) -> Result<(Arc<Datastore>, Namespace, SnapshotRef), ApiError> {
    let ns = call.ns()?;
    let snap = call.snapshot()?;
    let store = call.store(name)?;
    call.group_access(&store, &ns, &snap.group, full, partial).await?;
    store.check_snapshot(&ns, &snap)?;
    Ok((store, ns, snap))
}

/// `GET files?backup-type&backup-id&backup-time[&ns]`.
pub async fn files(call: &Call, name: &DatastoreName) -> ReplyResult {
    let (store, ns, snap) = snapshot_call(call, name, &[DatastoreAudit, DatastoreRead], DatastoreBackup).await?;
    let (_, files) = blocking(move || contents(&store, &ns, &snap)).await?;
    data(Value::Array(files))
}

/// `DELETE snapshots?...`: forget; refused while protected or in use.
pub async fn forget(call: &Call, name: &DatastoreName) -> ReplyResult {
    let (store, ns, snap) = snapshot_call(call, name, &[DatastoreModify], DatastorePrune).await?;
    blocking(move || Ok(store.remove_snapshot(&ns, &snap)?)).await?;
    data(Value::Null)
}

pub async fn notes(call: &Call, name: &DatastoreName) -> ReplyResult {
    let (store, ns, snap) = snapshot_call(call, name, &[DatastoreAudit], DatastoreBackup).await?;
    let m = blocking(move || Ok(crate::store::load_manifest(&store.snapshot_path(&ns, &snap))?)).await?;
    data(json!(m.unprotected.get("notes").and_then(Value::as_str).unwrap_or("")))
}

pub async fn set_notes(call: &Call, name: &DatastoreName) -> ReplyResult {
    let notes = call.params.str("notes")?.to_string();
    let (store, ns, snap) = snapshot_call(call, name, &[DatastoreModify], DatastoreBackup).await?;
    blocking(move || {
        Ok(store.update_manifest(&ns, &snap, |m| {
            m.unprotected.insert("notes".into(), Value::String(notes));
        })?)
    })
    .await?;
    data(Value::Null)
}

pub async fn protected(call: &Call, name: &DatastoreName) -> ReplyResult {
    let (store, ns, snap) = snapshot_call(call, name, &[DatastoreAudit], DatastoreBackup).await?;
    data(json!(store.is_protected(&ns, &snap)))
}

pub async fn set_protected(call: &Call, name: &DatastoreName) -> ReplyResult {
    let protected = call.params.bool("protected")?;
    let (store, ns, snap) = snapshot_call(call, name, &[DatastoreModify], DatastoreBackup).await?;
    blocking(move || Ok(store.set_protected(&ns, &snap, protected)?)).await?;
    data(Value::Null)
}

/// `POST upload-backup-log?...` with the log as a DataBlob body; only the group's owner may
/// upload (as in PBS, even an admin), once.
pub async fn upload_log(call: &Call, name: &DatastoreName) -> ReplyResult {
    let ns = call.ns()?;
    let snap = call.snapshot()?;
    call.require(name, &ns, DatastoreBackup)?;
    let store = call.store(name)?;
    check_owner(&store, &ns, &snap.group, &call.authid).await?;
    crate::format::blob::check_crc(&call.body)?;
    let body = call.body.clone();
    blocking(move || Ok(store.store_client_log(&ns, &snap, &body)?)).await?;
    data(Value::Null)
}
