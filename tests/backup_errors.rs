//! Every refusal of the backup protocol, through a real server: status code and exact text,
//! and afterwards no snapshot, no new group and no temp file left on disk.

mod backup_support;

use backup_support::*;
use bytes::Bytes;
use chunkyard::client::{BackupSession, ClientConfig, HttpClient, IndexKind};
use chunkyard::format::Digest;
use chunkyard::format::dynamic_index::{DynamicEntry, DynamicIndex};
use chunkyard::format::fixed_index::FixedIndex;
use chunkyard::format::manifest::Manifest;
use chunkyard::testing::TestServer;
use http::{Method, StatusCode};

const BAD: StatusCode = StatusCode::BAD_REQUEST;
const MIB4: u64 = 4 * 1024 * 1024;

fn manifest(id: &str, time: i64) -> Bytes {
    let m = Manifest {
        backup_type: "host".into(),
        backup_id: id.into(),
        backup_time: time,
        files: vec![],
        unprotected: Default::default(),
        signature: None,
    };
    Bytes::from(m.to_blob())
}

fn didx_csum(entries: &[(u64, Digest)]) -> [u8; 32] {
    let entries = entries.iter().map(|&(end, digest)| DynamicEntry { end, digest }).collect();
    DynamicIndex { uuid: [0; 16], ctime: 0, entries }.csum()
}

/// A session with one dynamic writer holding one uploaded chunk of 1000 bytes.
async fn with_chunk(server: &TestServer, id: &str) -> (BackupSession, u64, Digest) {
    let s = session(server, id, T0).await;
    let wid = s.create_dynamic_index("a.didx").await.unwrap();
    let (digest, raw) = chunk(&data(1000, 1));
    assert_eq!(s.upload_chunk(IndexKind::Dynamic, wid, &digest, 1000, raw).await.unwrap(), digest.to_hex());
    (s, wid, digest)
}

async fn raw_post(
    s: &BackupSession,
    path: &str,
    query: &str,
    body: Bytes,
) -> Result<serde_json::Value, chunkyard::client::ClientError> {
    s.request(Method::POST, path, query, body, "application/octet-stream").await?.data()
}

#[tokio::test]
async fn chunk_uploads_are_verified() {
    let server = server();
    let s = session(&server, "chunks", T0).await;
    let wid = s.create_dynamic_index("a.didx").await.unwrap();
    let plain = data(5000, 3);
    let (digest, raw) = chunk(&plain);
    let other = Digest::of(b"something else");
    assert_refused(
        s.upload_chunk(IndexKind::Dynamic, wid, &other, 5000, raw.clone()).await,
        BAD,
        "detected chunk with wrong digest.",
    );
    assert_refused(
        s.upload_chunk(IndexKind::Dynamic, wid, &digest, 4999, raw.clone()).await,
        BAD,
        "detected chunk with wrong length (4999 != 5000)",
    );
    assert_refused(
        s.upload_chunk(IndexKind::Dynamic, wid + 1, &digest, 5000, raw.clone()).await,
        BAD,
        &format!("dynamic writer '{}' not registered", wid + 1),
    );
    assert_refused(
        s.upload_chunk(IndexKind::Fixed, wid, &digest, 5000, raw.clone()).await,
        BAD,
        &format!("fixed writer '{wid}' not registered"),
    );
    let mut garbage = raw.to_vec();
    garbage[0] ^= 1;
    assert_refused(
        s.upload_chunk(IndexKind::Dynamic, wid, &digest, 5000, garbage.into()).await,
        BAD,
        "unable to parse raw blob - wrong magic",
    );
    // The body must match encoded-size exactly.
    let q = |enc: usize| format!("digest={}&encoded-size={enc}&size=5000&wid={wid}", digest.to_hex());
    assert_refused(
        raw_post(&s, "/dynamic_chunk", &q(raw.len() + 1), raw.clone()).await,
        BAD,
        "uploaded chunk has unexpected size.",
    );
    assert_refused(
        raw_post(&s, "/dynamic_chunk", &q(raw.len() - 1), raw.clone()).await,
        BAD,
        "uploaded chunk is larger than announced.",
    );
    assert_refused(
        raw_post(&s, "/dynamic_chunk", &q(raw.len()).replace("wid=1", "wid=257"), raw.clone()).await,
        BAD,
        "parameter verification failed - 'wid': value must have a maximum value of 256",
    );
    // A corrupt client CRC is ignored (and replaced): the upload succeeds.
    let mut bad_crc = raw.to_vec();
    bad_crc[8] ^= 0xff;
    s.upload_chunk(IndexKind::Dynamic, wid, &digest, 5000, bad_crc.into()).await.unwrap();
    let stored =
        std::fs::read(server.store_path().join(".chunks").join(digest.prefix_dir()).join(digest.to_hex())).unwrap();
    chunkyard::format::blob::check_crc(&stored).unwrap();
    abandon_and_check(&server, s, "chunks", T0, true).await;
}

/// Large chunk bodies take two paths: kept as the one HTTP/2 frame they came in, or joined from
/// many frames (a server announcing the smallest frame size). Both store the exact bytes with
/// the CRC recomputed, and both hold uploads to their announced size.
#[tokio::test]
async fn large_chunk_bodies_in_one_frame_or_many() {
    for max_frame in [16_384, chunkyard::config::LimitsConfig::default().h2_max_frame] {
        let server = TestServer::start_with(|c| c.limits.h2_max_frame = max_frame);
        std::fs::create_dir_all(server.store_path().join(".chunks")).unwrap();
        let s = session(&server, "frames", T0).await;
        let wid = s.create_dynamic_index("a.didx").await.unwrap();
        let (digest, raw) = chunk(&data(300_000, 7));
        assert!(raw.len() > 200_000, "test data must stay large when encoded");
        let q = |enc: usize| format!("digest={}&encoded-size={enc}&size=300000&wid={wid}", digest.to_hex());
        assert_refused(
            raw_post(&s, "/dynamic_chunk", &q(raw.len() + 1), raw.clone()).await,
            BAD,
            "uploaded chunk has unexpected size.",
        );
        assert_refused(
            raw_post(&s, "/dynamic_chunk", &q(raw.len() - 1), raw.clone()).await,
            BAD,
            "uploaded chunk is larger than announced.",
        );
        let mut bad_crc = raw.to_vec();
        bad_crc[9] ^= 0x5a;
        s.upload_chunk(IndexKind::Dynamic, wid, &digest, 300_000, bad_crc.into()).await.unwrap();
        let path = server.store_path().join(".chunks").join(digest.prefix_dir()).join(digest.to_hex());
        assert_eq!(std::fs::read(&path).unwrap(), raw, "max frame {max_frame}: stored bytes differ");
        // A correct CRC arrives untouched too.
        let (digest2, raw2) = chunk(&data(250_000, 8));
        s.upload_chunk(IndexKind::Dynamic, wid, &digest2, 250_000, raw2.clone()).await.unwrap();
        let path2 = server.store_path().join(".chunks").join(digest2.prefix_dir()).join(digest2.to_hex());
        assert_eq!(std::fs::read(&path2).unwrap(), raw2, "max frame {max_frame}: stored bytes differ");
        abandon_and_check(&server, s, "frames", T0, true).await;
    }
}

#[tokio::test]
async fn blobs_need_a_correct_crc_and_length() {
    let server = server();
    let s = session(&server, "blobs", T0).await;
    let blob = Bytes::from(chunkyard::format::blob::encode(b"hello", false).unwrap());
    let mut bad = blob.to_vec();
    bad[8] ^= 0xff;
    assert_refused(s.upload_blob("a.conf.blob", bad.into()).await, BAD, "Data blob has wrong CRC checksum.");
    let q = |n: usize| format!("encoded-size={n}&file-name=a.conf.blob");
    assert_refused(
        raw_post(&s, "/blob", &q(blob.len() + 3), blob.clone()).await,
        BAD,
        &format!("got blob with unexpected length ({} != {})", blob.len() + 3, blob.len()),
    );
    assert_refused(
        raw_post(&s, "/blob", &q(blob.len() - 2), blob.clone()).await,
        BAD,
        &format!("got blob with unexpected length ({} != {})", blob.len() - 2, blob.len()),
    );
    assert_refused(s.upload_blob("a.conf", blob.clone()).await, BAD, "wrong blob file extension: 'a.conf'");
    assert_refused_prefix(
        s.upload_blob("../a.blob", blob.clone()).await,
        BAD,
        "parameter verification failed - 'file-name'",
    );
    abandon_and_check(&server, s, "blobs", T0, true).await;
}

#[tokio::test]
async fn appends_need_known_chunks_valid_offsets_and_a_writer() {
    let server = server();
    let (s, wid, digest) = with_chunk(&server, "append").await;
    let unknown = Digest::of(b"never uploaded");
    assert_refused(
        s.append(IndexKind::Dynamic, wid, &[digest, unknown], &[0, 1000]).await,
        BAD,
        &format!("no such chunk {}", unknown.to_hex()),
    );
    assert_refused(s.append(IndexKind::Dynamic, 9, &[], &[]).await, BAD, "dynamic writer '9' not registered");
    assert_refused(
        s.append(IndexKind::Dynamic, wid, &[digest], &[0, 1]).await,
        BAD,
        "offset list has wrong length (2 != 1)",
    );
    assert_refused(
        s.append(IndexKind::Dynamic, wid, &[digest, digest], &[0, 999]).await,
        BAD,
        "dynamic writer 'a.didx' append chunk failed - got strange chunk offset (1000 != 999)",
    );
    // Nothing of the refused PUTs was applied: one clean append closes with count 1.
    s.append(IndexKind::Dynamic, wid, &[digest], &[0]).await.unwrap();
    s.close(IndexKind::Dynamic, wid, 1, 1000, &didx_csum(&[(1000, digest)])).await.unwrap();
    abandon_and_check(&server, s, "append", T0, true).await;
}

#[tokio::test]
async fn close_checks_count_size_and_csum() {
    let server = server();
    let (s, wid, digest) = with_chunk(&server, "close").await;
    s.append(IndexKind::Dynamic, wid, &[digest], &[0]).await.unwrap();
    let csum = didx_csum(&[(1000, digest)]);
    assert_refused(
        s.close(IndexKind::Dynamic, wid, 2, 1000, &csum).await,
        BAD,
        "dynamic writer 'a.didx' close failed - unexpected chunk count (1 != 2)",
    );
    // The writer is gone after a failed close, as in the reference.
    assert_refused(
        s.close(IndexKind::Dynamic, wid, 1, 1000, &csum).await,
        BAD,
        &format!("dynamic writer '{wid}' not registered"),
    );
    for (count, size, sum, msg) in [
        (1, 999, csum, "dynamic writer 'b.didx' close failed - unexpected file size (1000 != 999)"),
        (1, 1000, [7u8; 32], "dynamic writer 'b.didx' close failed - got unexpected checksum"),
    ] {
        let w = s.create_dynamic_index("b.didx").await;
        let w = match w {
            Ok(w) => w,
            Err(_) => s.create_dynamic_index(&format!("b{size}.didx")).await.unwrap(),
        };
        s.append(IndexKind::Dynamic, w, &[digest], &[0]).await.unwrap();
        let r = s.close(IndexKind::Dynamic, w, count, size, &sum).await;
        let msg = if size == 1000 { msg.replace("'b.didx'", "'b1000.didx'") } else { msg.to_string() };
        assert_refused(r, BAD, &msg);
    }
    assert!(!snapshot_dir(&server, "close", T0).join("a.didx").exists());
    abandon_and_check(&server, s, "close", T0, true).await;
}

#[tokio::test]
async fn fixed_index_rules_and_holes() {
    let server = server();
    let s = session(&server, "fixed", T0).await;
    // An image whose slot table could not be held (up to 2^64 - 1 bytes announced) is refused
    // before anything is allocated; the session goes on.
    for huge in [(64u64 << 40) + 1, u64::MAX] {
        let text = format!("fixed index size {huge} is larger than the supported 70368744177664 bytes");
        assert_refused(s.create_fixed_index("huge.img.fidx", huge, None).await, BAD, &text);
    }
    let size = 2 * MIB4;
    let wid = s.create_fixed_index("disk.img.fidx", size, None).await.unwrap();
    let full = data(MIB4 as usize, 9);
    let (d_full, raw_full) = chunk(&full);
    s.upload_chunk(IndexKind::Fixed, wid, &d_full, MIB4, raw_full).await.unwrap();
    let (d_small, raw_small) = chunk(&full[..100]);
    let (d_small2, raw_small2) = chunk(&full[..200]);
    s.upload_chunk(IndexKind::Fixed, wid, &d_small, 100, raw_small).await.unwrap();
    assert_refused(
        s.upload_chunk(IndexKind::Fixed, wid, &d_small2, 200, raw_small2).await,
        BAD,
        &format!("fixed writer '{wid}' - detected multiple end chunks (chunk size too small)"),
    );
    assert_refused(s.append(IndexKind::Fixed, wid, &[d_full], &[1]).await, BAD, "got unaligned chunk (pos = 1)");
    assert_refused(
        s.append(IndexKind::Fixed, wid, &[d_full], &[size]).await,
        BAD,
        &format!("chunk data exceeds size ({} >= {size})", size + MIB4),
    );
    // The same slot twice: the count matches the slot count, but slot 1 was never written.
    s.append(IndexKind::Fixed, wid, &[d_full, d_full], &[0, 0]).await.unwrap();
    let holes = FixedIndex { uuid: [0; 16], ctime: 0, size, chunk_size: MIB4, digests: vec![d_full, Digest([0; 32])] };
    assert_refused(
        s.close(IndexKind::Fixed, wid, 2, size, &holes.csum()).await,
        BAD,
        "fixed writer 'disk.img.fidx' close failed - 1 of 2 slots were never written (index has holes)",
    );
    assert!(!snapshot_dir(&server, "fixed", T0).join("disk.img.fidx").exists());
    abandon_and_check(&server, s, "fixed", T0, true).await;
}

#[tokio::test]
async fn writers_are_limited_unique_and_finish_needs_everything_closed() {
    let server = server();
    let (s, wid, digest) = with_chunk(&server, "finish").await;
    assert_refused(s.create_dynamic_index("a.didx").await, BAD, "archive 'a.didx' was already opened in this session");
    assert_refused(
        s.create_fixed_index("../a.fidx", 1, None).await.map(drop),
        BAD,
        "parameter verification failed - 'archive-name': value does not match the regex pattern",
    );
    assert_refused(s.create_fixed_index("a.didx", 1, None).await, BAD, "wrong archive extension: 'a.didx'");
    for i in 2..=256 {
        assert_eq!(s.create_dynamic_index(&format!("w{i}.didx")).await.unwrap(), i);
    }
    assert_refused(
        s.create_dynamic_index("w257.didx").await,
        BAD,
        "wid 257 is out of range (1..=256): too many index writers in this session",
    );
    assert_refused(s.finish().await, BAD, "found open index writer - unable to finish backup");
    drop(s);
    assert_removed(&group_dir(&server, "finish")).await;

    // Closed writers but no manifest.
    let (s, wid2, digest2) = with_chunk(&server, "finish").await;
    let _ = (wid, digest);
    s.append(IndexKind::Dynamic, wid2, &[digest2], &[0]).await.unwrap();
    s.close(IndexKind::Dynamic, wid2, 1, 1000, &didx_csum(&[(1000, digest2)])).await.unwrap();
    assert_refused_prefix(s.finish().await, BAD, "unable to update manifest blob - ");
    // An undecodable manifest is refused at finish too; a good one then finishes.
    let garbage = Bytes::from(chunkyard::format::blob::encode(b"not json", false).unwrap());
    s.upload_blob("index.json.blob", garbage).await.unwrap();
    assert_refused_prefix(s.finish().await, BAD, "unable to update manifest blob - ");
    assert!(!snapshot_dir(&server, "finish", T0).join("index.json.blob").exists());
    s.upload_blob("index.json.blob", manifest("finish", T0)).await.unwrap();
    s.finish().await.unwrap();
    // After finish every write is refused.
    let blob = Bytes::from(chunkyard::format::blob::encode(b"late", false).unwrap());
    assert_refused(s.upload_blob("index.json.blob", blob.clone()).await, BAD, "backup already marked as finished.");
    assert_refused(s.upload_blob("late.blob", blob).await, BAD, "backup already marked as finished.");
    assert_refused(s.create_dynamic_index("late.didx").await, BAD, "backup already marked as finished.");
    assert_refused(s.finish().await, BAD, "backup already marked as finished.");
    drop(s);
    // Kept after the connection is gone, and the manifest is the one finish wrote.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let m = Manifest::from_blob(&std::fs::read(snapshot_dir(&server, "finish", T0).join("index.json.blob")).unwrap())
        .unwrap();
    assert!(m.unprotected.contains_key("chunk_upload_stats"));
    assert!(!snapshot_dir(&server, "finish", T0).join("late.blob").exists());
    assert_eq!(temp_files(&server.store_path()), Vec::<std::path::PathBuf>::new());
}

#[tokio::test]
async fn finish_without_files_is_refused() {
    let server = server();
    let s = session(&server, "empty", T0).await;
    assert_refused(s.finish().await, BAD, "backup does not contain valid files (file count == 0)");
    abandon_and_check(&server, s, "empty", T0, true).await;
}

#[tokio::test]
async fn group_lock_time_order_names_and_tokens_are_checked_at_upgrade() {
    let server = server();
    let c = client(&server);
    // One writer per group.
    let first = session(&server, "locked", T0).await;
    let second = c.start_backup(&params(&server, "locked", T0 + 1)).await;
    match second {
        Err(chunkyard::client::ClientError::Status { status, message }) => {
            assert_eq!(status, BAD);
            assert!(message.contains("another backup is already running"), "{message}");
        }
        other => panic!("second writer accepted: {:?}", other.map(|_| ())),
    }
    let mut up = first.uploader(Default::default()).await.unwrap();
    up.blob("a.conf.blob", b"x").await.unwrap();
    up.finish().await.unwrap();
    drop(first);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // backup-time must be newer than the last finished backup.
    for t in [T0, T0 - 1] {
        let r = c.start_backup(&params(&server, "locked", t)).await.map(drop);
        assert_refused(r, BAD, "backup timestamp is older than last backup.");
    }
    // Names that would escape the datastore never reach the disk.
    let mut p = params(&server, "../escape", T0);
    assert_eq!(c.start_backup(&p).await.map(drop).unwrap_err().status(), Some(BAD));
    p.backup_id = "ok".into();
    p.ns = Some("a/../../b".into());
    assert_eq!(c.start_backup(&p).await.map(drop).unwrap_err().status(), Some(BAD));
    assert!(!server.store_path().join("host/ok").exists());
    assert!(!server.store_path().parent().unwrap().join("escape").exists());
    // Tokens.
    let wrong = HttpClient::new(ClientConfig { secret: "wrong".into(), ..server.client_config() }).unwrap();
    assert_eq!(
        wrong.start_backup(&params(&server, "tok", T0)).await.map(drop).unwrap_err().status(),
        Some(StatusCode::UNAUTHORIZED)
    );
    let target = format!(
        "//api2/json/backup?backup-id=tok&backup-time={T0}&backup-type=host&benchmark=false&debug=true&store={}",
        server.store
    );
    let headers = [("connection", "upgrade"), ("upgrade", "proxmox-backup-protocol-v1")];
    let r = c.raw(Method::GET, &target, &headers, Bytes::new(), false).await.unwrap();
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(!group_dir(&server, "tok").exists());
    assert_eq!(temp_files(&server.store_path()), Vec::<std::path::PathBuf>::new());
}
