//! `POST /admin/datastore/{store}/prune`: keep-* selection of one group (`store::prune`),
//! optionally a dry run. Needs `Datastore.Modify`, or `Datastore.Prune` on an owned group.

use serde_json::{Value, json};

use crate::auth::Privilege::{DatastoreModify, DatastorePrune};
use crate::format::DatastoreName;
use crate::http::ReplyResult;
use crate::server::api::{Call, blocking, data};
use crate::store::prune::KeepOptions;

pub async fn prune(call: &Call, name: &DatastoreName) -> ReplyResult {
    let ns = call.ns()?;
    let group = call.group()?;
    let p = &call.params;
    let keep = |k: &str| p.opt_int(k, 1, u64::MAX);
    let options = KeepOptions {
        keep_last: keep("keep-last")?,
        keep_hourly: keep("keep-hourly")?,
        keep_daily: keep("keep-daily")?,
        keep_weekly: keep("keep-weekly")?,
        keep_monthly: keep("keep-monthly")?,
        keep_yearly: keep("keep-yearly")?,
    };
    let dry_run = p.opt_bool("dry-run")?.unwrap_or(false);
    let store = call.store(name)?;
    call.group_access(&store, &ns, &group, &[DatastoreModify], DatastorePrune).await?;
    let ns_text = (!ns.is_root()).then(|| ns.to_string());
    let marks = blocking(move || Ok(store.prune_group(&ns, &group, &options, dry_run)?)).await?;
    let out: Vec<Value> = marks
        .into_iter()
        .map(|(info, mark)| {
            let mut v = json!({
                "backup-type": info.snapshot.group.ty.as_str(),
                "backup-id": info.snapshot.group.id.as_str(),
                "backup-time": info.snapshot.time.epoch(),
                "keep": mark.keep(),
                "protected": info.protected,
            });
            if let Some(ns) = &ns_text {
                v["ns"] = json!(ns);
            }
            v
        })
        .collect();
    data(Value::Array(out))
}
