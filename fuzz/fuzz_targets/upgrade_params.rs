//! Any query of the backup/reader upgrade (`GET /api2/json/backup?...`): no panic; refusals
//! are 400s; what is accepted names a snapshot whose paths stay inside the datastore, and
//! writing the parameters back into a query parses to the same thing.
#![no_main]

use std::path::{Component, Path};

use chunkyard::server::upgrade::{BackupParams, check_benchmark};
use http::StatusCode;
use libfuzzer_sys::fuzz_target;

fn inside(path: &Path, components: usize) {
    assert_eq!(path.components().count(), components, "{path:?}");
    assert!(path.components().all(|c| matches!(c, Component::Normal(_))), "{path:?}");
}

fuzz_target!(|query: &str| {
    let p = match BackupParams::parse(Some(query)) {
        Ok(p) => p,
        Err(e) => return assert_eq!(e.status, StatusCode::BAD_REQUEST, "{}", e.message),
    };
    inside(&p.snapshot.rel_path(), 3);
    inside(&p.ns.rel_path(), 2 * p.ns.depth());
    inside(Path::new(p.store.as_str()), 1);
    let mut acl = format!("/datastore/{}", p.store);
    for c in p.ns.components() {
        acl = format!("{acl}/{c}");
    }
    assert_eq!(p.acl_path(), acl);
    let _ = check_benchmark(&p.snapshot.group, p.benchmark);

    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("store", p.store.as_str())
        .append_pair("backup-type", p.snapshot.group.ty.as_str())
        .append_pair("backup-id", p.snapshot.group.id.as_str())
        .append_pair("backup-time", &p.snapshot.time.epoch().to_string())
        .append_pair("debug", if p.debug { "1" } else { "0" })
        .append_pair("benchmark", if p.benchmark { "true" } else { "false" });
    if !p.ns.is_root() {
        q.append_pair("ns", &p.ns.to_string());
    }
    let again = BackupParams::parse(Some(&q.finish())).unwrap();
    assert_eq!(
        (again.store, again.ns, again.snapshot, again.debug, again.benchmark),
        (p.store, p.ns, p.snapshot, p.debug, p.benchmark)
    );
});
