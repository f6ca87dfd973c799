//! 256 backup sessions open at once against one server whose in-flight byte bound is set far below
//! what they offer (issue #8 item 6, the fast version; the long run is `loadtest/long-run.sh`,
//! see README "Load testing"). Every backup must finish and verify, the bound must really
//! throttle (uploads waited for it) and never be exceeded — neither by the server's own count
//! nor by the `chunkyard_inflight_bytes` gauge sampled during the run. The peak RSS of this
//! process (server and clients together) is printed, not asserted: speed and memory figures
//! belong to the load tester.

mod backup_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use backup_support::*;
use bytes::Bytes;
use chunkyard::client::{BackupOptions, HttpClient};
use chunkyard::config::FsyncPolicy;
use chunkyard::format::blob;
use chunkyard::format::dynamic_index::DynamicIndex;
use chunkyard::format::{DatastoreName, Digest};
use chunkyard::metrics;
use chunkyard::store::Datastore;
use chunkyard::store::verify::VerifyResult;
use chunkyard::testing::TestServer;

const SESSIONS: usize = 256;
/// Per session: about four 64 KiB chunks of poorly compressible data.
const DATA_PER_SESSION: usize = 256 * 1024;
const BOUND: u64 = 1024 * 1024;

struct Gate {
    opening: tokio::sync::Semaphore,
    all_open: tokio::sync::Barrier,
}

/// 256 sessions need about 520 descriptors in this process (both ends of each connection).
#[allow(unsafe_code)]
fn raise_fd_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain syscalls on a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/self/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The value of an unlabelled gauge in a scrape.
fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Opens session `i` (a few handshakes at a time: 256 at once on a loaded CI machine can outlast
/// the handshake timeout), waits until all sessions are open, then backs up `data`.
async fn one_backup(client: Arc<HttpClient>, gate: Arc<Gate>, store: String, i: usize, data: Bytes) -> usize {
    let params = chunkyard::client::BackupParams::new(&store, "host", &format!("s{i:03}"), T0);
    let permit = gate.opening.acquire().await.unwrap();
    let session = client.start_backup(&params).await.unwrap_or_else(|e| panic!("session {i} starts: {e}"));
    drop(permit);
    gate.all_open.wait().await;
    let options = BackupOptions { dynamic_avg: 64 * 1024, ..BackupOptions::default() };
    let mut up = session.uploader(options).await.unwrap();
    let stats = up.dynamic("data.pxar.didx", data).await.unwrap_or_else(|e| panic!("session {i} upload: {e}"));
    up.blob("note.conf.blob", format!("session {i}\n").as_bytes()).await.unwrap();
    up.finish().await.unwrap_or_else(|e| panic!("session {i} finish: {e}"));
    stats.uploaded
}

/// Reads an archive back from the chunk files, checking every chunk on the way.
fn reassemble(store: &std::path::Path, index: &DynamicIndex) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..index.entries.len() {
        let digest: Digest = index.entries[i].digest;
        let path = store.join(".chunks").join(digest.prefix_dir()).join(digest.to_hex());
        let raw = std::fs::read(&path).unwrap();
        blob::verify_chunk(&raw, &digest, index.chunk_len(i)).unwrap();
        out.extend(blob::decode(&raw).unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_256_finish_under_a_small_inflight_bound() {
    raise_fd_limit();
    let server = TestServer::start_with(|c| {
        c.limits.max_inflight_bytes = BOUND;
        c.limits.tls_handshake_timeout_secs = 120;
        c.pipeline.fsync = FsyncPolicy::None;
    });
    assert_eq!(server.inflight.limit(), BOUND);
    let hwm_before = vm_hwm_kib();
    let datas: Vec<Bytes> = (0..SESSIONS).map(|i| Bytes::from(data(DATA_PER_SESSION, i as u64 + 1))).collect();

    // Samples the exported gauge while the sessions run.
    let done = Arc::new(AtomicBool::new(false));
    let sampler = std::thread::spawn({
        let done = Arc::clone(&done);
        move || {
            let (mut samples, mut max) = (0u32, 0f64);
            while !done.load(Ordering::Relaxed) {
                if let Some(v) = metrics::render().and_then(|t| gauge(&t, metrics::INFLIGHT)) {
                    samples += 1;
                    max = max.max(v);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (samples, max)
        }
    });

    let client = Arc::new(client(&server));
    let gate =
        Arc::new(Gate { opening: tokio::sync::Semaphore::new(16), all_open: tokio::sync::Barrier::new(SESSIONS) });
    let run = async {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, d) in datas.iter().enumerate() {
            tasks.spawn(one_backup(Arc::clone(&client), Arc::clone(&gate), server.store.clone(), i, d.clone()));
        }
        let mut uploaded = 0;
        while let Some(r) = tasks.join_next().await {
            uploaded += r.expect("a backup task panicked");
        }
        uploaded
    };
    // Only so that a hang fails the test instead of the CI job; no timing is asserted.
    let uploaded =
        tokio::time::timeout(Duration::from_secs(900), run).await.expect("256 sessions did not end in 15 min");
    done.store(true, Ordering::Relaxed);
    let (samples, sampled_max) = sampler.join().unwrap();

    let pool = &server.inflight;
    println!(
        "{SESSIONS} sessions, {uploaded} chunk uploads, bound {BOUND} B: peak held {} B, {} uploads waited, \
         gauge max {sampled_max} B over {samples} samples; VmHWM of this process (server + clients) \
         {hwm_before} KiB before, {} KiB after",
        pool.peak(),
        pool.waits(),
        vm_hwm_kib()
    );
    assert!(pool.peak() <= BOUND && pool.peak() > 0, "peak {} vs bound {BOUND}", pool.peak());
    assert!(pool.waits() > 0, "the bound never made an upload wait, so it was not tested");
    assert!(samples > 0 && sampled_max <= BOUND as f64, "gauge max {sampled_max} over {samples} samples");
    let text = metrics::render().unwrap();
    assert_eq!(gauge(&text, metrics::INFLIGHT), Some(0.0), "every share is given back");
    assert_eq!(gauge(&text, metrics::INFLIGHT_LIMIT), Some(BOUND as f64));
    assert_eq!(pool.held(), 0);

    // Every snapshot is finished, verifies, and holds exactly the data that was sent.
    let root = server.store_path();
    let store = Datastore::open(DatastoreName::parse(&server.store).unwrap(), &root).unwrap();
    let verified = store.verify_all("UPID:many-sessions-test").unwrap();
    assert_eq!(verified.len(), SESSIONS);
    for (_, snap, result) in &verified {
        assert_eq!(*result, VerifyResult::Ok, "{snap:?}");
    }
    for (i, sent) in datas.iter().enumerate() {
        let dir = snapshot_dir(&server, &format!("s{i:03}"), T0);
        let index = DynamicIndex::parse(&std::fs::read(dir.join("data.pxar.didx")).unwrap()).unwrap();
        assert_eq!(reassemble(&root, &index), sent.to_vec(), "session {i}");
    }
}
