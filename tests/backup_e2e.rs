//! Backups end to end through TLS, the upgrade and HTTP/2: fixed and dynamic archives land in
//! PBS's format (parsed back with `format`), every chunk file exists and verifies, the data
//! reassembles, the manifest carries `chunk_upload_stats`; an incremental run reuses chunks
//! through `previous`; a benchmark session leaves nothing behind.

mod backup_support;

use std::path::Path;

use backup_support::*;
use bytes::Bytes;
use chunkyard::client::{BackupOptions, BackupParams};
use chunkyard::format::Digest;
use chunkyard::format::blob;
use chunkyard::format::dynamic_index::DynamicIndex;
use chunkyard::format::fixed_index::FixedIndex;
use chunkyard::format::manifest::Manifest;
use chunkyard::testing::TestServer;

fn read_chunk(store: &Path, digest: &Digest) -> Vec<u8> {
    let path = store.join(".chunks").join(digest.prefix_dir()).join(digest.to_hex());
    std::fs::read(&path).unwrap_or_else(|e| panic!("chunk {}: {e}", path.display()))
}

/// Reassembles an archive from its chunk files, verifying each one.
fn reassemble(store: &Path, chunks: impl Iterator<Item = (Digest, u64)>) -> Vec<u8> {
    let mut out = Vec::new();
    for (digest, len) in chunks {
        let raw = read_chunk(store, &digest);
        blob::check_crc(&raw).expect("stored chunk has a correct CRC");
        blob::verify_chunk(&raw, &digest, len).expect("stored chunk verifies");
        out.extend(blob::decode(&raw).unwrap());
    }
    out
}

fn manifest_of(server: &TestServer, id: &str, time: i64) -> Manifest {
    let raw = std::fs::read(snapshot_dir(server, id, time).join("index.json.blob")).unwrap();
    Manifest::from_blob(&raw).unwrap()
}

fn upload_stats(m: &Manifest) -> [u64; 4] {
    let s = &m.unprotected["chunk_upload_stats"];
    ["count", "size", "compressed_size", "duplicates"].map(|k| s[k].as_u64().unwrap_or_else(|| panic!("{k} in {s}")))
}

#[tokio::test]
async fn fixed_and_dynamic_archives_round_trip_and_dedup_incrementally() {
    let server = server();
    let store = server.store_path();
    // 2 full fixed chunks + a short one; a dynamic archive with a repeated region.
    let image = Bytes::from(data(2 * 4 * 1024 * 1024 + 12345, 1));
    let mut tree = data(3 * 1024 * 1024, 2);
    tree.extend_from_within(..1024 * 1024);
    let tree = Bytes::from(tree);
    let options = BackupOptions { dynamic_avg: 256 * 1024, ..BackupOptions::default() };

    let s = session(&server, "e2e", T0).await;
    let mut up = s.uploader(options).await.unwrap();
    assert!(up.previous_manifest().is_none());
    let img = up.fixed("disk.img.fidx", image.clone()).await.unwrap();
    let pxar = up.dynamic("root.pxar.didx", tree.clone()).await.unwrap();
    up.blob("qemu-server.conf.blob", b"memory: 512\n").await.unwrap();
    let sent = up.finish().await.unwrap();
    drop(s);

    let dir = snapshot_dir(&server, "e2e", T0);
    let fidx = FixedIndex::parse(&std::fs::read(dir.join("disk.img.fidx")).unwrap()).unwrap();
    assert_eq!((fidx.size, fidx.digests.len()), (image.len() as u64, 3));
    assert_eq!(fidx.csum(), img.csum);
    let fixed_chunks = (0..fidx.digests.len()).map(|i| (fidx.digests[i], fidx.chunk_len(i)));
    assert_eq!(reassemble(&store, fixed_chunks), image.to_vec());

    let didx = DynamicIndex::parse(&std::fs::read(dir.join("root.pxar.didx")).unwrap()).unwrap();
    assert_eq!((didx.size(), didx.csum()), (tree.len() as u64, pxar.csum));
    let dyn_chunks = (0..didx.entries.len()).map(|i| (didx.entries[i].digest, didx.chunk_len(i)));
    assert_eq!(reassemble(&store, dyn_chunks), tree.to_vec());

    let conf = std::fs::read(dir.join("qemu-server.conf.blob")).unwrap();
    assert_eq!(blob::decode(&conf).unwrap(), b"memory: 512\n");

    // The manifest is the client's, plus the server's statistics.
    let m = manifest_of(&server, "e2e", T0);
    assert_eq!((m.files.clone(), m.backup_time), (sent.files.clone(), T0));
    let uploaded = (img.uploaded + pxar.uploaded) as u64;
    let [count, size, compressed, duplicates] = upload_stats(&m);
    assert_eq!(count, uploaded);
    assert_eq!(size, image.len() as u64 + tree.len() as u64 - repeated_bytes(&didx, pxar.reused));
    assert!(compressed > 0 && duplicates == 0, "{:?}", upload_stats(&m));
    assert_eq!(temp_files(&store), Vec::<std::path::PathBuf>::new());

    // Incremental: same data, one changed fixed chunk; everything else only appended.
    let mut image2 = image.to_vec();
    image2[5] ^= 0xff;
    let s = session(&server, "e2e", T0 + 60).await;
    assert_eq!(s.previous_backup_time().await.unwrap(), Some(T0));
    let mut up = s.uploader(options).await.unwrap();
    assert!(up.previous_manifest().is_some());
    let img2 = up.fixed("disk.img.fidx", Bytes::from(image2.clone())).await.unwrap();
    let pxar2 = up.dynamic("root.pxar.didx", tree.clone()).await.unwrap();
    up.finish().await.unwrap();
    drop(s);
    assert_eq!((img2.uploaded, img2.reused), (1, 2));
    assert_eq!((pxar2.uploaded, pxar2.reused), (0, pxar2.chunks));
    let m2 = manifest_of(&server, "e2e", T0 + 60);
    assert_eq!(upload_stats(&m2)[0], 1);
    let dir2 = snapshot_dir(&server, "e2e", T0 + 60);
    let fidx2 = FixedIndex::parse(&std::fs::read(dir2.join("disk.img.fidx")).unwrap()).unwrap();
    let chunks2 = (0..fidx2.digests.len()).map(|i| (fidx2.digests[i], fidx2.chunk_len(i)));
    assert_eq!(reassemble(&store, chunks2), image2);
    // The first snapshot is untouched.
    assert_eq!(manifest_of(&server, "e2e", T0), m);
}

/// Bytes of dynamic chunks the client appended without uploading (repeats inside one archive).
fn repeated_bytes(didx: &DynamicIndex, reused: usize) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let mut repeated = 0;
    for i in 0..didx.entries.len() {
        if !seen.insert(didx.entries[i].digest) {
            repeated += didx.chunk_len(i);
        }
    }
    assert_eq!(didx.entries.len() - seen.len(), reused);
    repeated
}

#[tokio::test]
async fn a_second_upload_of_a_stored_chunk_counts_as_duplicate() {
    let server = server();
    let (digest, raw) = chunk(&data(100_000, 7));
    for (i, id) in ["dup-a", "dup-b"].into_iter().enumerate() {
        let s = session(&server, id, T0).await;
        let wid = s.create_dynamic_index("a.didx").await.unwrap();
        s.upload_chunk(chunkyard::client::IndexKind::Dynamic, wid, &digest, 100_000, raw.clone()).await.unwrap();
        s.append(chunkyard::client::IndexKind::Dynamic, wid, &[digest], &[0]).await.unwrap();
        let csum = DynamicIndex {
            uuid: [0; 16],
            ctime: 0,
            entries: vec![chunkyard::format::dynamic_index::DynamicEntry { end: 100_000, digest }],
        }
        .csum();
        s.close(chunkyard::client::IndexKind::Dynamic, wid, 1, 100_000, &csum).await.unwrap();
        let m = Manifest {
            backup_type: "host".into(),
            backup_id: id.into(),
            backup_time: T0,
            files: vec![],
            unprotected: Default::default(),
            signature: None,
        };
        s.upload_blob("index.json.blob", Bytes::from(m.to_blob())).await.unwrap();
        s.finish().await.unwrap();
        drop(s);
        assert_eq!(upload_stats(&manifest_of(&server, id, T0)), [1, 100_000, raw.len() as u64, i as u64]);
    }
}

#[tokio::test]
async fn benchmark_sessions_never_persist() {
    let server = server();
    let s = client(&server).start_backup(&BackupParams::benchmark(&server.store, T0)).await.unwrap();
    for _ in 0..3 {
        assert_eq!(s.speedtest(Bytes::from(vec![0x5a; 4 * 1024 * 1024])).await.unwrap(), serde_json::Value::Null);
    }
    drop(s);
    assert_removed(&group_dir(&server, "benchmark")).await;
}

#[tokio::test]
async fn reuse_csum_clones_the_previous_fixed_index() {
    use chunkyard::client::IndexKind;
    let server = server();
    let image = Bytes::from(data(2 * 4 * 1024 * 1024, 5));
    let s = session(&server, "vm", T0).await;
    assert_refused(
        s.create_fixed_index("disk.img.fidx", image.len() as u64, Some("00")).await,
        http::StatusCode::BAD_REQUEST,
        "cannot reuse index - no valid previous backup exists",
    );
    let mut up = s.uploader(BackupOptions::default()).await.unwrap();
    let first = up.fixed("disk.img.fidx", image.clone()).await.unwrap();
    up.finish().await.unwrap();
    drop(s);

    let s = session(&server, "vm", T0 + 1).await;
    let csum = hex::encode(first.csum);
    let size = image.len() as u64;
    assert_refused(
        s.create_fixed_index("disk.img.fidx", size, Some(&"ab".repeat(32))).await,
        http::StatusCode::BAD_REQUEST,
        &format!(
            "expected csum ({}) doesn't match last backup's ({csum}), cannot do incremental backup",
            "ab".repeat(32)
        ),
    );
    assert_refused(
        s.create_fixed_index("other.img.fidx", size, Some(&csum)).await,
        http::StatusCode::BAD_REQUEST,
        "cannot reuse index - no previous backup exists for archive",
    );
    let wid = s.create_fixed_index("disk.img.fidx", size, Some(&csum)).await.unwrap();
    // Only the second chunk changes; the first is cloned from the base index.
    let mut second = image[4 * 1024 * 1024..].to_vec();
    second[0] ^= 1;
    let (d2, raw2) = chunk(&second);
    s.upload_chunk(IndexKind::Fixed, wid, &d2, second.len() as u64, raw2).await.unwrap();
    s.append(IndexKind::Fixed, wid, &[d2], &[4 * 1024 * 1024]).await.unwrap();
    let d1 = Digest::of(&image[..4 * 1024 * 1024]);
    let merged = FixedIndex { uuid: [0; 16], ctime: 0, size, chunk_size: 4 * 1024 * 1024, digests: vec![d1, d2] };
    s.close(IndexKind::Fixed, wid, 1, 0, &merged.csum()).await.unwrap();
    let m = Manifest {
        backup_type: "host".into(),
        backup_id: "vm".into(),
        backup_time: T0 + 1,
        files: vec![],
        unprotected: Default::default(),
        signature: None,
    };
    s.upload_blob("index.json.blob", Bytes::from(m.to_blob())).await.unwrap();
    s.finish().await.unwrap();
    drop(s);
    let raw = std::fs::read(snapshot_dir(&server, "vm", T0 + 1).join("disk.img.fidx")).unwrap();
    assert_eq!(FixedIndex::parse(&raw).unwrap().digests, vec![d1, d2]);
}

#[tokio::test]
async fn listing_unknown_paths_and_previous_without_base() {
    use http::{Method, StatusCode};
    let server = server();
    let s = session(&server, "misc", T0).await;
    let listing = s.request(Method::GET, "/", "", Bytes::new(), "application/x-www-form-urlencoded").await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&listing.body).unwrap();
    let names: Vec<&str> = v["data"].as_array().unwrap().iter().map(|e| e["subdir"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "blob",
            "dynamic_chunk",
            "dynamic_close",
            "dynamic_index",
            "finish",
            "fixed_chunk",
            "fixed_close",
            "fixed_index",
            "previous",
            "previous_backup_time",
            "speedtest"
        ]
    );
    let r = s.request(Method::GET, "/nonsense", "", Bytes::new(), "application/x-www-form-urlencoded").await.unwrap();
    assert_eq!((r.status, r.text()), (StatusCode::NOT_FOUND, "Path '/nonsense' not found.".to_string()));
    assert_eq!(s.previous_backup_time().await.unwrap(), None);
    assert_refused(s.previous("index.json.blob").await, StatusCode::BAD_REQUEST, "no valid previous backup");
    assert_refused(s.previous("x.txt").await, StatusCode::BAD_REQUEST, "unknown archive type: x.txt");
    drop(s);
    assert_removed(&group_dir(&server, "misc")).await;

    // With a base: a missing blob is 404, a missing index 400.
    let s = session(&server, "misc", T0).await;
    let mut up = s.uploader(BackupOptions::default()).await.unwrap();
    up.blob("a.conf.blob", b"a").await.unwrap();
    up.finish().await.unwrap();
    drop(s);
    let s = session(&server, "misc", T0 + 1).await;
    let base = snapshot_dir(&server, "misc", T0);
    assert_refused(
        s.previous("b.conf.blob").await,
        StatusCode::NOT_FOUND,
        &format!("open file \"{}\" failed - not found", base.join("b.conf.blob").display()),
    );
    assert_refused_prefix(s.previous("x.didx").await, StatusCode::BAD_REQUEST, "Unable to open dynamic index");
    assert_eq!(s.previous("a.conf.blob").await.unwrap(), std::fs::read(base.join("a.conf.blob")).unwrap());
}

#[tokio::test]
async fn concurrent_sessions_share_the_pipeline() {
    let server = server();
    let jobs = (0..4u64).map(|i| {
        let server = &server;
        async move {
            let image = Bytes::from(data(3 * 1024 * 1024 + i as usize, 100 + i));
            let id = format!("par{i}");
            let s = session(server, &id, T0).await;
            let mut up =
                s.uploader(BackupOptions { dynamic_avg: 128 * 1024, ..BackupOptions::default() }).await.unwrap();
            let a = up.dynamic("a.pxar.didx", image.clone()).await.unwrap();
            let b = up.fixed("b.img.fidx", image.clone()).await.unwrap();
            up.finish().await.unwrap();
            drop(s);
            (id, image, a.csum, b.csum)
        }
    });
    for (id, image, a, b) in futures_util::future::join_all(jobs).await {
        let dir = snapshot_dir(&server, &id, T0);
        let didx = DynamicIndex::parse(&std::fs::read(dir.join("a.pxar.didx")).unwrap()).unwrap();
        let fidx = FixedIndex::parse(&std::fs::read(dir.join("b.img.fidx")).unwrap()).unwrap();
        assert_eq!((didx.csum(), fidx.csum()), (a, b));
        let chunks = (0..didx.entries.len()).map(|i| (didx.entries[i].digest, didx.chunk_len(i)));
        assert_eq!(reassemble(&server.store_path(), chunks), image.to_vec());
    }
}
