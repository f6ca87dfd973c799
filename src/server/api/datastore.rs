//! `GET /admin/datastore` (the stores the caller may see) and `GET /admin/datastore/{store}/status`
//! (file-system usage as integers, `total` > 0: the client divides by it, pitfall 28), and
//! `POST .../gc`, which starts garbage collection as a task and answers its UPID.

use serde_json::{Value, json};

use crate::auth::Privilege::{DatastoreAudit, DatastoreBackup, DatastoreModify};
use crate::format::{DatastoreName, Namespace};
use crate::http::ReplyResult;
use crate::server::api::tasks;
use crate::server::api::{Call, CallError, blocking, data};
use crate::store::gc::GcOptions;

pub async fn list(call: &Call) -> ReplyResult {
    let root = Namespace::root();
    let mut out = Vec::new();
    for name in call.ctx.state.config.datastores.keys() {
        let Ok(store) = DatastoreName::parse(name) else { continue };
        if call.has(&store, &root, DatastoreAudit) || call.has(&store, &root, DatastoreBackup) {
            out.push(json!({ "store": name }));
        }
    }
    data(Value::Array(out))
}

pub async fn status(call: &Call, name: &DatastoreName) -> ReplyResult {
    let root = Namespace::root();
    let store = call.store(name)?;
    if !call.has(name, &root, DatastoreAudit) && !call.has(name, &root, DatastoreBackup) {
        // The reference answers zeros rather than an error (protocol.md 6).
        return data(json!({ "total": 0, "used": 0, "avail": 0 }));
    }
    let root_path = store.root().to_path_buf();
    let (total, used, avail) = blocking(move || {
        let st =
            nix::sys::statvfs::statvfs(&root_path).map_err(|source| CallError::Usage { path: root_path, source })?;
        let frag = st.fragment_size() as u64;
        let total = st.blocks() as u64 * frag;
        let avail = st.blocks_available() as u64 * frag;
        let used = total.saturating_sub(st.blocks_free() as u64 * frag);
        Ok((total, used, avail))
    })
    .await?;
    data(json!({ "total": total.max(1), "used": used, "avail": avail }))
}

/// Needs `Datastore.Modify`; the sweep's numbers go to the task log and `.gc-status`.
pub fn garbage_collect(call: &Call, name: &DatastoreName) -> ReplyResult {
    call.require(name, &Namespace::root(), DatastoreModify)?;
    let store = call.store(name)?;
    let upid = tasks::spawn("garbage_collection", name.as_str(), &call.authid, move |log, upid| {
        let opts = GcOptions { upid: Some(upid.to_string()), ..GcOptions::default() };
        // jobs::gc logs the figures and records the job metrics, the same as `chunkyard gc`.
        crate::jobs::gc(&store, &opts, &mut |line| log.log(line)).map(drop)
    });
    data(json!(upid))
}
