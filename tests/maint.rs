//! Maintenance jobs end to end: GC as an API worker task polled like the real client
//! (`garbage-collect`) while a backup is running, and the `chunkyard verify|gc|prune` commands
//! with `--json` on a store a real server wrote (corrupt chunk found and renamed, the next
//! backup then gets no previous snapshot).

mod backup_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use backup_support::*;
use bytes::Bytes;
use chunkyard::client::BackupOptions;
use chunkyard::client::admin::snapshot_params;
use chunkyard::format::dynamic_index::DynamicIndex;
use chunkyard::testing::TestServer;
use http::Method;
use serde_json::{Value, json};

/// How long the GC task may take before the test gives up on it.
const POLL_BOUND: Duration = Duration::from_secs(300);

const UPID_RE: &str = r"^UPID:([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):([0-9A-Fa-f]{8,16}):([0-9A-Fa-f]{8}):([^:\s]+):([^:\s]*):([^:\s]+):$";

fn opts() -> BackupOptions {
    BackupOptions { dynamic_avg: 64 * 1024, ..BackupOptions::default() }
}

/// Every chunk file name (64 hex digits) in the store.
fn chunk_files(server: &TestServer) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let base = server.store_path().join(".chunks");
    for dir in std::fs::read_dir(&base).unwrap() {
        for f in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            out.insert(f.unwrap().file_name().to_string_lossy().into_owned());
        }
    }
    out
}

fn chunk_path(server: &TestServer, hex: &str) -> PathBuf {
    server.store_path().join(".chunks").join(&hex[..4]).join(hex)
}

fn index_digests(path: &Path) -> BTreeSet<String> {
    let idx = DynamicIndex::parse(&std::fs::read(path).unwrap()).unwrap();
    idx.entries.iter().map(|e| e.digest.to_hex()).collect()
}

/// Makes every chunk file look untouched for two days (past GC's one-day cutoff).
fn age_all_chunks(server: &TestServer) {
    let old = SystemTime::now() - Duration::from_secs(2 * 86_400);
    for name in chunk_files(server) {
        let f = std::fs::File::options().write(true).open(chunk_path(server, &name)).unwrap();
        f.set_times(std::fs::FileTimes::new().set_accessed(old).set_modified(old)).unwrap();
    }
}

#[tokio::test]
async fn gc_task_during_a_backup_keeps_its_chunks_and_removes_old_garbage() {
    let server = server();
    let c = client(&server);
    let (d_kept, d_reused, d_garbage) = (data(300_000, 1), data(300_000, 2), data(300_000, 3));

    let s = c.start_backup(&params(&server, "kept", T0)).await.unwrap();
    let mut up = s.uploader(opts()).await.unwrap();
    up.dynamic("a.didx", Bytes::from(d_kept)).await.unwrap();
    up.finish().await.unwrap();
    let s = c.start_backup(&params(&server, "gone", T0)).await.unwrap();
    let mut up = s.uploader(opts()).await.unwrap();
    up.dynamic("r.didx", Bytes::from(d_reused.clone())).await.unwrap();
    up.dynamic("g.didx", Bytes::from(d_garbage)).await.unwrap();
    up.finish().await.unwrap();

    let kept = index_digests(&snapshot_dir(&server, "kept", T0).join("a.didx"));
    let reused = index_digests(&snapshot_dir(&server, "gone", T0).join("r.didx"));
    let garbage: BTreeSet<String> =
        index_digests(&snapshot_dir(&server, "gone", T0).join("g.didx")).difference(&reused).cloned().collect();
    assert!(!garbage.is_empty() && kept.len() > 1 && reused.len() > 1);
    c.call(
        Method::DELETE,
        &format!("admin/datastore/{}/snapshots", server.store),
        &snapshot_params("host", "gone", T0),
        None,
    )
    .await
    .unwrap();
    age_all_chunks(&server);

    // A backup that re-uploads the orphaned chunks is open while GC runs.
    let running = c.start_backup(&params(&server, "running", T0)).await.unwrap();
    let mut up = running.uploader(opts()).await.unwrap();
    up.dynamic("r.didx", Bytes::from(d_reused)).await.unwrap();

    let upid =
        c.call(Method::POST, &format!("admin/datastore/{}/gc", server.store), &[], Some(json!({}))).await.unwrap();
    let upid = upid.as_str().expect("UPID string").to_string();
    assert!(regex::Regex::new(UPID_RE).unwrap().is_match(&upid), "{upid}");

    // Poll the log exactly like proxmox-backup-client's display_task_log. The bound is only
    // there to end a hung run with a message; GC of this store takes milliseconds.
    let enc = percent_encoding::utf8_percent_encode(&upid, percent_encoding::NON_ALPHANUMERIC).to_string();
    let (mut start, mut text) = (1u64, Vec::new());
    let deadline = std::time::Instant::now() + POLL_BOUND;
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "GC task still active after {POLL_BOUND:?}; log so far: {text:?}"
        );
        let q = [("start", start.to_string()), ("limit", "500".into()), ("test-status", "true".into())];
        let page = c
            .call_raw(
                Method::GET,
                &format!("nodes/localhost/tasks/{enc}/log"),
                &q,
                None,
                chunkyard::client::admin::Auth::Token,
            )
            .await
            .unwrap();
        assert_eq!(page.status, http::StatusCode::OK);
        let page: Value = serde_json::from_slice(&page.body).unwrap();
        for line in page["data"].as_array().unwrap() {
            assert_eq!(line["n"].as_u64(), Some(start), "{page}");
            text.push(line["t"].as_str().unwrap().to_string());
            start += 1;
        }
        if start > page["total"].as_u64().unwrap() && page["active"] == json!(false) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = c.call(Method::GET, &format!("nodes/localhost/tasks/{enc}/status"), &[], None).await.unwrap();
    assert_eq!(
        (status["status"].as_str(), status["exitstatus"].as_str()),
        (Some("stopped"), Some("OK")),
        "{status} {text:?}"
    );
    assert!(text[0].ends_with("starting garbage collection on store store"), "{text:?}");
    assert!(
        text.iter().any(|l| l.contains("Removed garbage: ") && l.contains(&format!("in {} chunks", garbage.len()))),
        "{text:?}"
    );

    up.finish().await.unwrap();
    let on_disk = chunk_files(&server);
    let gc_status: Value =
        serde_json::from_slice(&std::fs::read(server.store_path().join(".gc-status")).unwrap()).unwrap();
    let why =
        format!("kept {kept:?}\nreused {reused:?}\ngarbage {garbage:?}\non disk {on_disk:?}\n{gc_status}\n{text:#?}");
    assert!(kept.is_subset(&on_disk), "a referenced chunk was swept: {why}");
    assert!(reused.is_subset(&on_disk), "a chunk of the running backup was swept: {why}");
    assert!(garbage.is_disjoint(&on_disk), "old unreferenced chunks must go: {why}");
    assert_eq!(gc_status["upid"], json!(upid));
    assert_eq!(gc_status["removed-chunks"].as_u64(), Some(garbage.len() as u64));

    // Unknown task: refused, nothing panics.
    let missing = c
        .call(
            Method::GET,
            "nodes/localhost/tasks/UPID:x:00000001:00000001:00000001:00000001:gc:s:root@pam:/status",
            &[],
            None,
        )
        .await;
    assert!(missing.is_err());
}

fn chunkyard(data_dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_chunkyard"))
        .env_clear()
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .unwrap()
}

fn stdout_json(o: &std::process::Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

#[tokio::test]
async fn cli_verify_renames_a_corrupt_chunk_then_backup_gets_no_previous_and_prune_gc_report() {
    let server = server();
    let c = client(&server);
    for (i, seed) in [10u64, 11].into_iter().enumerate() {
        let s = c.start_backup(&params(&server, "v", T0 + i as i64 * 3600)).await.unwrap();
        let mut up = s.uploader(opts()).await.unwrap();
        up.dynamic("d.didx", Bytes::from(data(200_000, seed))).await.unwrap();
        up.finish().await.unwrap();
    }
    let dir = &server.data_dir;
    let ok = chunkyard(dir, &["verify", &server.store, "--json"]);
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stderr));
    let v = stdout_json(&ok);
    assert_eq!(v["verify"]["snapshots_failed"], 0);
    assert!(v["verify"]["chunks_ok"].as_u64().unwrap() >= 2 && v["verify"]["bytes_read"].as_u64().unwrap() > 0, "{v}");

    // Skipped when recently verified.
    let skip = stdout_json(&chunkyard(
        dir,
        &["verify", &server.store, "--ignore-verified", "--outdated-after", "1", "--json"],
    ));
    assert_eq!(skip["verify"]["snapshots_skipped_verified"], 2, "{skip}");

    // Corrupt one chunk of the newest snapshot.
    let newest = snapshot_dir(&server, "v", T0 + 3600);
    let victim = index_digests(&newest.join("d.didx")).into_iter().next().unwrap();
    let path = chunk_path(&server, &victim);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();

    let time = chunkyard::format::BackupTime::from_epoch(T0 + 3600).unwrap().dir_name();
    let bad = chunkyard(dir, &["verify", &server.store, &format!("host/v/{time}"), "--json"]);
    assert_eq!(bad.status.code(), Some(1));
    let v = stdout_json(&bad);
    assert_eq!(v["verify"]["snapshots_failed"], 1, "{v}");
    assert_eq!(v["verify"]["chunks_corrupt"], 1, "{v}");
    assert!(!path.exists(), "corrupt chunk must be moved aside");
    assert_eq!(std::fs::read(path.with_file_name(format!("{victim}.0.bad"))).unwrap(), bytes);
    let manifest = std::fs::read(newest.join("index.json.blob")).unwrap();
    let manifest = chunkyard::format::manifest::Manifest::from_blob(&manifest).unwrap();
    assert_eq!(manifest.unprotected["verify_state"]["state"], "failed");

    // prune --dry-run keeps everything on disk; --keep-last 1 removes the older one.
    let dry =
        stdout_json(&chunkyard(dir, &["prune", &server.store, "host/v", "--keep-last", "1", "--dry-run", "--json"]));
    assert_eq!((dry["prune"]["removed"].as_u64(), dry["prune"]["dry_run"].as_bool()), (Some(1), Some(true)), "{dry}");
    assert!(snapshot_dir(&server, "v", T0).exists());
    let real = stdout_json(&chunkyard(dir, &["prune", &server.store, "host/v", "--keep-last", "1", "--json"]));
    assert_eq!(real["prune"]["removed"], 1, "{real}");
    assert!(!snapshot_dir(&server, "v", T0).exists());

    // gc --json: nothing is old enough to sweep; the figures add up.
    let gc = chunkyard(dir, &["gc", &server.store, "--json"]);
    assert_eq!(gc.status.code(), Some(0), "{}", String::from_utf8_lossy(&gc.stderr));
    let g = stdout_json(&gc);
    assert_eq!(g["gc"]["chunks_removed"], 0, "{g}");
    let good_files = chunk_files(&server).iter().filter(|n| n.len() == 64).count() as u64;
    let counted = g["gc"]["chunks_on_disk"].as_u64().unwrap() + g["gc"]["chunks_pending"].as_u64().unwrap();
    assert_eq!(counted, good_files, "{g}");
    assert!(path.with_file_name(format!("{victim}.0.bad")).exists(), "a fresh .bad file is not old enough to go");

    // The next backup of the group must not build on the snapshot that failed verification
    // (last: an open session holds the store's writer lock, which a GC process would respect).
    let s = c.start_backup(&params(&server, "v", T0 + 7200)).await.unwrap();
    assert_eq!(s.previous_backup_time().await.unwrap(), None);
}
