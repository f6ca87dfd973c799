//! The reader protocol end to end (TLS, upgrade, HTTP/2): restores of our own backups and of
//! the datastore the real PBS 3.2.4 wrote, checked like the real client checks them, plus the
//! session's refusals (unregistered chunk, missing/corrupt files, missing snapshot).

mod backup_support;
#[path = "common/golden.rs"]
mod golden;

use backup_support::*;
use bytes::Bytes;
use chunkyard::client::{BackupOptions, ReaderParams, ReaderSession};
use chunkyard::format::Digest;
use chunkyard::format::dynamic_index::DynamicIndex;
use chunkyard::testing::TestServer;
use http::{Method, StatusCode};
use sha2::Digest as _;

fn reader_params(server: &TestServer, ty: &str, id: &str, time: i64) -> ReaderParams {
    ReaderParams {
        store: server.store.clone(),
        ns: None,
        backup_type: ty.into(),
        backup_id: id.into(),
        backup_time: time,
    }
}

async fn reader(server: &TestServer, ty: &str, id: &str, time: i64) -> ReaderSession {
    client(server).start_reader(&reader_params(server, ty, id, time)).await.expect("reader session starts")
}

/// Backs up a dynamic archive, an image and a blob; returns their contents.
async fn backup_three(server: &TestServer, id: &str, time: i64) -> (Bytes, Bytes, Vec<u8>) {
    let mut tree = data(3 * 1024 * 1024 + 777, 11);
    tree.extend_from_within(..512 * 1024);
    let tree = Bytes::from(tree);
    let mut image = data(4 * 1024 * 1024, 12);
    image.extend(vec![0u8; 4 * 1024 * 1024]);
    image.extend(data(100_000, 13));
    let image = Bytes::from(image);
    let conf = b"name: test\nvalue: 42\n".repeat(50);
    let s = session(server, id, time).await;
    let mut up = s.uploader(BackupOptions { dynamic_avg: 256 * 1024, ..BackupOptions::default() }).await.unwrap();
    up.dynamic("root.pxar.didx", tree.clone()).await.unwrap();
    up.fixed("disk.img.fidx", image.clone()).await.unwrap();
    up.blob("conf.blob", &conf).await.unwrap();
    up.finish().await.unwrap();
    (tree, image, conf)
}

#[tokio::test]
async fn restore_is_byte_identical() {
    let server = server();
    let (tree, image, conf) = backup_three(&server, "r1", T0).await;
    let r = reader(&server, "host", "r1", T0).await;
    let manifest = r.manifest().await.unwrap();
    assert_eq!(manifest.files.len(), 3);
    assert_eq!(r.restore(&manifest, "root.pxar.didx").await.unwrap(), tree);
    assert_eq!(r.restore(&manifest, "disk.img.fidx").await.unwrap(), image);
    assert_eq!(&r.restore(&manifest, "conf.blob").await.unwrap()[..], &conf[..]);
    // The blob goes out exactly as stored.
    let stored = std::fs::read(snapshot_dir(&server, "r1", T0).join("conf.blob")).unwrap();
    assert_eq!(&r.download("conf.blob").await.unwrap()[..], &stored[..]);

    let index = r.request(Method::GET, "/", "").await.unwrap().data().unwrap();
    assert_eq!(index, serde_json::json!([{"subdir": "chunk"}, {"subdir": "download"}, {"subdir": "speedtest"}]));
    let speed = r.request(Method::GET, "/speedtest", "").await.unwrap().raw().unwrap();
    assert!(speed.len() == 1024 * 1024 && speed.iter().all(|b| *b == b'A'));
    let unknown = r.request(Method::GET, "/nope", "").await.unwrap();
    assert_eq!((unknown.status, unknown.text().as_str()), (StatusCode::NOT_FOUND, "Path '/nope' not found."));
}

#[tokio::test]
async fn chunks_only_after_their_index_and_file_errors() {
    let server = server();
    backup_three(&server, "r2", T0).await;
    let dir = snapshot_dir(&server, "r2", T0);
    let index = DynamicIndex::parse(&std::fs::read(dir.join("root.pxar.didx")).unwrap()).unwrap();
    let first = index.entries[0].digest;

    let r = reader(&server, "host", "r2", T0).await;
    let refused = r.chunk(&first).await;
    assert_refused(refused, StatusCode::UNAUTHORIZED, &format!("download chunk {} not allowed", first.to_hex()));
    // A blob download registers nothing.
    r.download("conf.blob").await.unwrap();
    assert_refused(
        r.chunk(&first).await,
        StatusCode::UNAUTHORIZED,
        &format!("download chunk {} not allowed", first.to_hex()),
    );
    r.download("root.pxar.didx").await.unwrap();
    let raw = r.chunk(&first).await.unwrap();
    assert_eq!(
        &raw[..],
        &std::fs::read(server.store_path().join(".chunks").join(first.prefix_dir()).join(first.to_hex())).unwrap()[..]
    );
    // Registered digests are per session.
    let other = reader(&server, "host", "r2", T0).await;
    assert_eq!(other.chunk(&first).await.unwrap_err().status(), Some(StatusCode::UNAUTHORIZED));
    assert_eq!(r.chunk(&Digest::of(b"never stored")).await.unwrap_err().status(), Some(StatusCode::UNAUTHORIZED));

    assert_refused_prefix(r.download("missing.blob").await, StatusCode::NOT_FOUND, "open file \"host/r2/");
    assert_refused_prefix(r.download("missing.didx").await, StatusCode::BAD_REQUEST, "unable to open index");
    std::fs::write(dir.join("bad.fidx"), b"not an index").unwrap();
    assert_refused_prefix(r.download("bad.fidx").await, StatusCode::BAD_REQUEST, "unable to open index");
    assert_eq!(r.download("../etc.blob").await.unwrap_err().status(), Some(StatusCode::BAD_REQUEST));
    assert_eq!(r.download("x.txt").await.unwrap_err().status(), Some(StatusCode::BAD_REQUEST));
    let missing = r.request(Method::GET, "/chunk", "").await.unwrap();
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn upgrade_checks_and_lock() {
    let server = server();
    backup_three(&server, "r3", T0).await;
    let c = client(&server);
    let missing = c.start_reader(&reader_params(&server, "host", "r3", T0 + 1)).await.map(|_| ());
    assert_refused(missing, StatusCode::BAD_REQUEST, "snapshot host/r3/2024-06-10T06:13:21Z does not exist.");
    let target = "//api2/json/reader?backup-id=r3&backup-time=1718000000&backup-type=host&store=store";
    let wrong = c.upgrade(target, "proxmox-backup-protocol-v1").await.map(|_| ());
    assert_refused(wrong, StatusCode::BAD_REQUEST, "invalid protocol name");
    let no_store = c
        .upgrade(&target.replace("store=store", "store=nostore"), "proxmox-backup-reader-protocol-v1")
        .await
        .map(|_| ());
    assert_refused(no_store, StatusCode::BAD_REQUEST, "datastore 'nostore' does not exist");

    // A reader holds a shared lock: forget is refused while it is open, fine after.
    let r = reader(&server, "host", "r3", T0).await;
    let snap = chunkyard::client::admin::snapshot_params("host", "r3", T0);
    let path = format!("admin/datastore/{}/snapshots", server.store);
    let busy = c.call(Method::DELETE, &path, &snap, None).await;
    assert_refused_prefix(busy, StatusCode::BAD_REQUEST, "unable to acquire lock on snapshot directory");
    drop(r);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while c.call(Method::DELETE, &path, &snap, None).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "forget still refused after the reader left");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!snapshot_dir(&server, "r3", T0).exists());
}

#[tokio::test]
async fn golden_pbs_store_restores_to_the_readme_hashes() {
    let server = TestServer::start();
    golden::copy_store(&server.store_path());
    let cases = [
        (
            "host",
            "golden",
            1_763_683_200,
            "tree.pxar.didx",
            "1ee89fe9c0781f886a691abcdd8e99ce01a64d9f223be83ffaecaa4f56945ccd",
        ),
        (
            "host",
            "golden",
            1_763_686_800,
            "tree.pxar.didx",
            "722c40280e50fd95482ce63f579b53a7f67f1c0a1a8482e499c37d6822369ddf",
        ),
        (
            "vm",
            "golden-img",
            1_763_683_200,
            "disk.img.fidx",
            "6380e5c991659d1eb93e5c08d8375c3d73431d67a8e16f1872d1ab1e06d697ce",
        ),
    ];
    for (ty, id, time, archive, sha) in cases {
        let r = reader(&server, ty, id, time).await;
        let manifest = r.manifest().await.unwrap();
        let bytes = r.restore(&manifest, archive).await.unwrap();
        assert_eq!(hex::encode(sha2::Sha256::digest(&bytes)), sha, "{ty}/{id}/{time} {archive}");
        // The catalog restores too (its index csum is checked against the manifest).
        if archive.ends_with(".didx") {
            r.restore(&manifest, "catalog.pcat1.didx").await.unwrap();
        }
    }
    // The encrypted snapshot serves its manifest and raw indexes; chunks stay encrypted.
    let r = reader(&server, "host", "golden-encrypted", 1_763_683_200).await;
    let manifest = r.manifest().await.unwrap();
    assert!(manifest.signature.is_some());
    let index = DynamicIndex::parse(&r.download("tree.pxar.didx").await.unwrap()).unwrap();
    let raw = r.chunk(&index.entries[0].digest).await.unwrap();
    assert!(chunkyard::format::blob::check_crc(&raw).unwrap().is_encrypted());
}
