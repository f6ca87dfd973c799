//! The management API through TLS + HTTP/1.1 as the real CLI calls it: list, snapshot
//! list/files/forget, notes, protected, status, prune (dry run and real), log upload,
//! namespaces, version; login with tickets and CSRF; privilege and owner refusals.

mod backup_support;

use backup_support::*;
use bytes::Bytes;
use chunkyard::auth::{AuthStore, Role};
use chunkyard::client::admin::{Auth, snapshot_params};
use chunkyard::client::{BackupOptions, ClientConfig, HttpClient, ReaderParams};
use chunkyard::format::Authid;
use chunkyard::testing::TestServer;
use http::{Method, StatusCode};
use serde_json::{Value, json};

async fn backup_blob(server: &TestServer, c: &HttpClient, id: &str, time: i64) {
    let s = c.start_backup(&params(server, id, time)).await.expect("backup starts");
    let mut up = s.uploader(BackupOptions::default()).await.unwrap();
    up.blob("conf.blob", format!("config of {id} at {time}").as_bytes()).await.unwrap();
    up.finish().await.unwrap();
}

fn path(server: &TestServer, what: &str) -> String {
    format!("admin/datastore/{}/{what}", server.store)
}

#[tokio::test]
async fn lists_notes_protection_prune_forget_status() {
    let server = server();
    let c = client(&server);
    for i in 0..3 {
        backup_blob(&server, &c, "m1", T0 + i * 3600).await;
    }
    let v = c.version().await.unwrap();
    assert!(v["version"].is_string() && v["release"].is_string() && v["repoid"].is_string());

    let groups = c.groups(&server.store).await.unwrap();
    assert_eq!(groups.as_array().unwrap().len(), 1);
    let g = &groups[0];
    assert_eq!((g["backup-type"].as_str(), g["backup-id"].as_str()), (Some("host"), Some("m1")));
    assert_eq!((g["backup-count"].as_u64(), g["last-backup"].as_i64()), (Some(3), Some(T0 + 7200)));
    assert_eq!(g["files"], json!(["conf.blob", "index.json.blob"]));
    assert_eq!(g["owner"], json!(server.authid));

    let snaps = c.snapshots(&server.store, Some(("host", "m1"))).await.unwrap();
    let times: Vec<i64> = snaps.as_array().unwrap().iter().map(|s| s["backup-time"].as_i64().unwrap()).collect();
    assert_eq!(times, vec![T0, T0 + 3600, T0 + 7200]);
    assert!(
        snaps.as_array().unwrap().iter().all(|s| s["protected"] == json!(false) && s["size"].as_u64().unwrap() > 0)
    );
    let files = c.call(Method::GET, &path(&server, "files"), &snapshot_params("host", "m1", T0), None).await.unwrap();
    let names: Vec<&str> = files.as_array().unwrap().iter().map(|f| f["filename"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["conf.blob", "index.json.blob"]);
    assert_eq!(files[0]["crypt-mode"], json!("none"));

    // notes show the first line as the snapshot's comment
    let mut q = snapshot_params("host", "m1", T0 + 3600);
    q.push(("notes", "first line\nsecond".into()));
    c.call(Method::PUT, &path(&server, "notes"), &q, None).await.unwrap();
    let notes =
        c.call(Method::GET, &path(&server, "notes"), &snapshot_params("host", "m1", T0 + 3600), None).await.unwrap();
    assert_eq!(notes, json!("first line\nsecond"));
    let snaps = c.snapshots(&server.store, None).await.unwrap();
    assert_eq!(snaps[1]["comment"], json!("first line"));

    // protected: forget refused, prune keeps it
    let mut q = snapshot_params("host", "m1", T0);
    q.push(("protected", "true".into()));
    c.call(Method::PUT, &path(&server, "protected"), &q, None).await.unwrap();
    let p = c.call(Method::GET, &path(&server, "protected"), &snapshot_params("host", "m1", T0), None).await.unwrap();
    assert_eq!(p, json!(true));
    let refused = c.call(Method::DELETE, &path(&server, "snapshots"), &snapshot_params("host", "m1", T0), None).await;
    assert_refused(refused, StatusCode::BAD_REQUEST, "cannot remove protected snapshot");

    let prune = |dry: bool| json!({"backup-type": "host", "backup-id": "m1", "keep-last": 1, "dry-run": dry});
    let dry = c.call(Method::POST, &path(&server, "prune"), &[], Some(prune(true))).await.unwrap();
    let marks: Vec<(i64, bool, bool)> = dry
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["backup-time"].as_i64().unwrap(), e["keep"].as_bool().unwrap(), e["protected"].as_bool().unwrap()))
        .collect();
    assert_eq!(marks, vec![(T0 + 7200, true, false), (T0 + 3600, false, false), (T0, true, true)]);
    assert!(snapshot_dir(&server, "m1", T0 + 3600).exists(), "dry run removes nothing");
    c.call(Method::POST, &path(&server, "prune"), &[], Some(prune(false))).await.unwrap();
    assert!(!snapshot_dir(&server, "m1", T0 + 3600).exists());
    assert!(snapshot_dir(&server, "m1", T0).exists() && snapshot_dir(&server, "m1", T0 + 7200).exists());

    c.call(Method::DELETE, &path(&server, "snapshots"), &snapshot_params("host", "m1", T0 + 7200), None).await.unwrap();
    assert!(!snapshot_dir(&server, "m1", T0 + 7200).exists());
    let gone =
        c.call(Method::DELETE, &path(&server, "snapshots"), &snapshot_params("host", "m1", T0 + 7200), None).await;
    assert_eq!(gone.unwrap_err().status(), Some(StatusCode::NOT_FOUND));

    // the client log, once
    let log = Bytes::from(chunkyard::format::blob::encode(b"client log", true).unwrap());
    let target = format!(
        "/api2/json/{}?{}",
        path(&server, "upload-backup-log"),
        chunkyard::client::encode_query(&snapshot_params("host", "m1", T0))
    );
    let octets = [("content-type", "application/octet-stream")];
    let r = c.raw(Method::POST, &target, &octets, log.clone(), true).await.unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = c.raw(Method::POST, &target, &octets, log, true).await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (StatusCode::BAD_REQUEST, "backup already contains a log."));

    let status = c.status(&server.store).await.unwrap();
    assert!(status["total"].as_u64().unwrap() > 0 && status["used"].is_u64() && status["avail"].is_u64());

    // namespaces
    c.call(Method::POST, &path(&server, "namespace"), &[], Some(json!({"name": "dev"}))).await.unwrap();
    c.call(Method::POST, &path(&server, "namespace"), &[], Some(json!({"parent": "dev", "name": "team"})))
        .await
        .unwrap();
    let ns = c.call(Method::GET, &path(&server, "namespace"), &[], None).await.unwrap();
    assert_eq!(ns, json!([{"ns": ""}, {"ns": "dev"}, {"ns": "dev/team"}]));
    c.call(Method::DELETE, &path(&server, "namespace"), &[("ns", "dev".into())], None).await.unwrap();
    assert_eq!(c.call(Method::GET, &path(&server, "namespace"), &[], None).await.unwrap(), json!([{"ns": ""}]));

    let r = c.call_raw(Method::GET, "admin/nothing", &[], None, Auth::Token).await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (StatusCode::NOT_FOUND, "Path '/api2/json/admin/nothing' not found."));
}

fn access(server: &TestServer) -> std::sync::Arc<AuthStore> {
    AuthStore::open(&server.config.etc_dir()).unwrap()
}

fn token_client(server: &TestServer, store: &AuthStore, tokenid: &str) -> HttpClient {
    let secret = store.create_token(&Authid::parse(tokenid).unwrap()).unwrap();
    HttpClient::new(ClientConfig { authid: tokenid.into(), secret, ..server.client_config() }).unwrap()
}

#[tokio::test]
async fn login_tickets_and_csrf() {
    let server = server();
    let store = access(&server);
    store.create_user("alice@pbs", Some("correct horse")).unwrap();
    let c = client(&server);
    assert_refused(c.login("alice@pbs", "wrong").await, StatusCode::UNAUTHORIZED, "permission check failed.");
    assert_refused(c.login("nobody@pbs", "x").await, StatusCode::UNAUTHORIZED, "permission check failed.");
    let t = c.login("alice@pbs", "correct horse").await.unwrap();
    assert_eq!(t.username, "alice@pbs");
    assert!(t.ticket.starts_with("PBS:alice@pbs:"), "{}", t.ticket);

    // GET needs only the cookie.
    let r = c.call_raw(Method::GET, "version", &[], None, Auth::TicketNoCsrf(&t)).await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    // Non-GET needs the CSRF token.
    let body = Some(json!({"name": "x"}));
    let r =
        c.call_raw(Method::POST, &path(&server, "namespace"), &[], body.clone(), Auth::TicketNoCsrf(&t)).await.unwrap();
    assert_eq!(
        (r.status, r.text().as_str()),
        (StatusCode::UNAUTHORIZED, "authentication failed - missing CSRF prevention token")
    );
    // With it, alice is authenticated but holds no privilege yet.
    let r = c.call_raw(Method::POST, &path(&server, "namespace"), &[], body.clone(), Auth::Ticket(&t)).await.unwrap();
    assert_eq!(
        (r.status, r.text().as_str()),
        (StatusCode::FORBIDDEN, "missing permissions 'Datastore.Modify' on '/datastore/store'")
    );
    store.set_acl("/datastore/store", Role::DatastoreAdmin, &Authid::parse("alice@pbs").unwrap(), true).unwrap();
    let r = c.call_raw(Method::POST, &path(&server, "namespace"), &[], body, Auth::Ticket(&t)).await.unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    // Renewal: the ticket as password gives a fresh ticket of the same user.
    let renewed = c.login("alice@pbs", &t.ticket).await.unwrap();
    assert_eq!(renewed.username, "alice@pbs");
    assert_refused(c.login("admin@pbs", &t.ticket).await, StatusCode::UNAUTHORIZED, "permission check failed.");
    let forged = t.ticket.replace("alice@pbs", "admin@pbs");
    let r = c
        .call_raw(
            Method::GET,
            "version",
            &[],
            None,
            Auth::TicketNoCsrf(&chunkyard::client::admin::Ticket { ticket: forged, ..t.clone() }),
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = c.call_raw(Method::GET, "version", &[], None, Auth::None).await.unwrap();
    assert_eq!(
        (r.status, r.text().as_str()),
        (StatusCode::UNAUTHORIZED, "authentication failed - no authentication credentials provided.")
    );
}

#[tokio::test]
async fn owners_and_privileges() {
    let server = server();
    let admin = client(&server);
    backup_blob(&server, &admin, "admins", T0).await;
    let store = access(&server);
    store.create_user("bob@pbs", None).unwrap();
    store.create_user("carol@pbs", None).unwrap();
    let acl_path = "/datastore/store";
    let bob = Authid::parse("bob@pbs").unwrap();
    store.set_acl(acl_path, Role::DatastoreBackup, &bob, true).unwrap();
    let bob_t = token_client(&server, &store, "bob@pbs!t");
    store.set_acl(acl_path, Role::DatastoreBackup, &Authid::parse("bob@pbs!t").unwrap(), true).unwrap();
    let carol_t = token_client(&server, &store, "carol@pbs!t");

    backup_blob(&server, &bob_t, "bobs", T0).await;
    // A token with Backup only sees its own groups.
    let groups = bob_t.groups(&server.store).await.unwrap();
    assert_eq!(groups.as_array().unwrap().len(), 1);
    assert_eq!((groups[0]["backup-id"].as_str(), groups[0]["owner"].as_str()), (Some("bobs"), Some("bob@pbs!t")));
    assert_eq!(bob_t.snapshots(&server.store, Some(("host", "admins"))).await.unwrap(), json!([]));
    assert_eq!(admin.groups(&server.store).await.unwrap().as_array().unwrap().len(), 2, "the admin token sees all");
    let foreign = bob_t.call(Method::GET, &path(&server, "files"), &snapshot_params("host", "admins", T0), None).await;
    assert_refused(foreign, StatusCode::BAD_REQUEST, "backup owner check failed (bob@pbs!t != admin@pbs!default)");
    // A foreign group can't be written or read either.
    let write = bob_t.start_backup(&params(&server, "admins", T0 + 1)).await.map(|_| ());
    assert_refused(write, StatusCode::BAD_REQUEST, "backup owner check failed (bob@pbs!t != admin@pbs!default)");
    let rp = |id: &str| ReaderParams {
        store: server.store.clone(),
        ns: None,
        backup_type: "host".into(),
        backup_id: id.into(),
        backup_time: T0,
    };
    assert_refused(
        bob_t.start_reader(&rp("admins")).await.map(|_| ()),
        StatusCode::BAD_REQUEST,
        "backup owner check failed!",
    );
    let own = bob_t.start_reader(&rp("bobs")).await.unwrap();
    own.manifest().await.unwrap();
    // Backup alone does not allow forgetting, even one's own snapshot.
    let forget =
        bob_t.call(Method::DELETE, &path(&server, "snapshots"), &snapshot_params("host", "bobs", T0), None).await;
    assert_refused(
        forget,
        StatusCode::FORBIDDEN,
        "permission check failed - missing Datastore.Modify|Datastore.Prune on /datastore/store",
    );

    // No grant at all.
    let up = carol_t.start_backup(&params(&server, "carols", T0)).await.map(|_| ());
    assert_refused(up, StatusCode::FORBIDDEN, "missing permissions 'Datastore.Backup' on '/datastore/store'");
    assert!(!group_dir(&server, "carols").exists());
    assert_refused(
        carol_t.groups(&server.store).await,
        StatusCode::FORBIDDEN,
        "permission check failed - missing Datastore.Audit|Datastore.Backup on /datastore/store",
    );
    assert_refused(
        carol_t.start_reader(&rp("bobs")).await.map(|_| ()),
        StatusCode::BAD_REQUEST,
        "no permissions on /datastore/store",
    );
    assert_eq!(carol_t.status(&server.store).await.unwrap(), json!({"total": 0, "used": 0, "avail": 0}));
    // Audit shows every group; a token is capped by its user.
    let carol = Authid::parse("carol@pbs").unwrap();
    store.set_acl(acl_path, Role::DatastoreAudit, &Authid::parse("carol@pbs!t").unwrap(), true).unwrap();
    assert_refused(
        carol_t.groups(&server.store).await,
        StatusCode::FORBIDDEN,
        "permission check failed - missing Datastore.Audit|Datastore.Backup on /datastore/store",
    );
    store.set_acl(acl_path, Role::DatastoreReader, &carol, true).unwrap();
    let all = carol_t.groups(&server.store).await.unwrap();
    assert_eq!(all.as_array().unwrap().len(), 2);
    let _ = Value::Null;
}

#[tokio::test]
async fn garbage_collection_runs_as_a_task_the_cli_can_follow() {
    let server = server();
    let c = client(&server);
    backup_blob(&server, &c, "gc", T0).await;
    let upid = c.call(Method::POST, &path(&server, "gc"), &[], None).await.unwrap();
    let upid = upid.as_str().expect("gc answers a UPID string").to_string();
    assert!(upid.starts_with("UPID:localhost:") && upid.contains(":garbage_collection:store:"), "{upid}");
    let encoded = percent_encoding::utf8_percent_encode(&upid, percent_encoding::NON_ALPHANUMERIC).to_string();
    // Follow the log as the CLI does: numbered lines from 1, `total` and `active` beside `data`.
    let mut start = 1u64;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut text = Vec::new();
    loop {
        let q = [("start", start.to_string()), ("limit", "500".to_string()), ("test-status", "true".to_string())];
        let r = c
            .call_raw(Method::GET, &format!("nodes/localhost/tasks/{encoded}/log"), &q, None, Auth::Token)
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        for line in v["data"].as_array().unwrap() {
            assert_eq!(line["n"].as_u64(), Some(start));
            text.push(line["t"].as_str().unwrap().to_string());
            start += 1;
        }
        if start > v["total"].as_u64().unwrap() && !v["active"].as_bool().unwrap() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "gc task never ended");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(text.iter().any(|t| t.contains("On-Disk usage")), "{text:?}");
    let st = c.call(Method::GET, &format!("nodes/localhost/tasks/{encoded}/status"), &[], None).await.unwrap();
    assert_eq!((st["status"].as_str(), st["exitstatus"].as_str()), (Some("stopped"), Some("OK")));
    let gc_status = std::fs::read_to_string(server.store_path().join(".gc-status")).unwrap();
    assert!(gc_status.contains(&upid), "{gc_status}");
    // An unknown task is 404.
    let missing = c.call(Method::GET, "nodes/localhost/tasks/UPID:x/status", &[], None).await;
    assert_eq!(missing.unwrap_err().status(), Some(StatusCode::NOT_FOUND));
}
