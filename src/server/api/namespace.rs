//! Namespaces: `GET/POST/DELETE /admin/datastore/{store}/namespace`.
//!
//! Listing shows the namespaces (the start one included, root as "") on which the caller
//! holds `Datastore.Audit` or `Datastore.Backup`; creating and deleting need
//! `Datastore.Modify` on the parent.

use serde_json::{Value, json};

use crate::auth::Privilege::{DatastoreAudit, DatastoreBackup, DatastoreModify};
use crate::format::DatastoreName;
use crate::http::ReplyResult;
use crate::server::api::{Call, CallError, blocking, data};
use crate::store::admin::removable_parent;

/// Deepest namespace nesting (protocol.md 7).
const MAX_DEPTH: u64 = 7;

pub async fn list(call: &Call, name: &DatastoreName) -> ReplyResult {
    let parent = call.ns_param("parent")?;
    let max_depth = call.params.opt_int("max-depth", 0, MAX_DEPTH)?;
    let store = call.store(name)?;
    let all = blocking(move || Ok(store.namespaces(&parent, max_depth.map(|d| d as usize))?)).await?;
    let visible: Vec<Value> = all
        .into_iter()
        .filter(|ns| call.has(name, ns, DatastoreAudit) || call.has(name, ns, DatastoreBackup))
        .map(|ns| json!({ "ns": ns.to_string() }))
        .collect();
    data(Value::Array(visible))
}

pub async fn create(call: &Call, name: &DatastoreName) -> ReplyResult {
    let parent = call.ns_param("parent")?;
    let child = call.params.str("name")?.to_string();
    call.require(name, &parent, DatastoreModify)?;
    if parent.depth() as u64 >= MAX_DEPTH {
        return Err(CallError::TooDeep { parent, max: MAX_DEPTH }.into());
    }
    let store = call.store(name)?;
    let ns = blocking(move || Ok(store.create_namespace(&parent, &child)?)).await?;
    data(json!(ns.to_string()))
}

pub async fn delete(call: &Call, name: &DatastoreName) -> ReplyResult {
    let ns = call.ns()?;
    let parent = removable_parent(&ns)?;
    call.require(name, &parent, DatastoreModify)?;
    let delete_groups = call.params.opt_bool("delete-groups")?.unwrap_or(false);
    let store = call.store(name)?;
    blocking(move || Ok(store.remove_namespace(&ns, delete_groups)?)).await?;
    data(Value::Null)
}
