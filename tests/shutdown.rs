//! Stopping the real `chunkyard serve` with SIGTERM, as systemd and container runtimes do: it
//! stops accepting, lets running backups finish within `limits.shutdown-grace-secs`, aborts
//! the rest (their snapshots are removed, as when a client goes away), waits for the chunk
//! writer and exits 0. What it leaves is a store the next start finds clean: nothing for crash
//! recovery to remove, no partial snapshot listed, and the next backup works.

mod crash_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chunkyard::client::BackupParams;
use crash_support::*;

const T0: i64 = 1_718_000_000;
/// How long a stop may take beyond the grace period; generous, for a loaded machine.
const STOP_MARGIN: Duration = Duration::from_secs(30);

fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(STORE).join(".chunks")).unwrap();
    dir
}

fn start(data_dir: &Path, grace_secs: &str) -> Serve {
    Serve::start_with(data_dir, None, &[("CHUNKYARD_LIMITS_SHUTDOWN_GRACE_SECS", grace_secs)])
}

/// SIGTERM, then the exit: with status 0, within `limit`.
async fn terminate(srv: &mut Serve, limit: Duration) -> Duration {
    let asked = Instant::now();
    srv.terminate();
    let status = srv.wait(limit).await.unwrap_or_else(|| panic!("still running {limit:?} after SIGTERM"));
    assert!(status.success(), "{status}:\n{}", srv.output());
    asked.elapsed()
}

/// What a clean store looks like after a stop: no partial snapshot, no temp file anywhere.
fn assert_clean(data_dir: &Path) {
    let store = data_dir.join(STORE);
    assert_eq!(unfinished_snapshots(&store), Vec::<PathBuf>::new());
    assert_eq!(temp_files(&store), (Vec::new(), Vec::new()));
}

/// The next start finds nothing to recover, and lists exactly `want` of group `id`.
async fn restart_is_clean(data_dir: &Path, id: &str, want: &[i64]) -> Serve {
    let srv = start(data_dir, "30");
    let listed = srv.client.snapshots(STORE, None).await.unwrap();
    let times: Vec<i64> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["backup-id"] == id)
        .map(|s| s["backup-time"].as_i64().unwrap())
        .collect();
    assert_eq!(times, want);
    assert!(!srv.output().contains("recovered from an earlier crash"), "{}", srv.output());
    srv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_cut_by_sigterm_is_rolled_back_and_the_next_start_is_clean() {
    let dir = data_dir();
    let mut srv = start(dir.path(), "1");
    let c = Contents::of(1, 0);
    // A backup half done: its fixed archive is stored and closed, then the client pauses.
    let session = srv.client.start_backup(&BackupParams::new(STORE, "host", "cut", T0)).await.unwrap();
    let mut up = session.uploader(options()).await.unwrap();
    up.fixed(FIXED, c.fixed.clone()).await.unwrap();
    assert!(snapshot_dir(dir.path(), "cut", T0).join(FIXED).exists());

    // The session does not finish within the second of grace: it is aborted, and the server
    // exits instead of waiting for the client.
    terminate(&mut srv, Duration::from_secs(1) + STOP_MARGIN).await;
    let out = srv.output();
    assert!(out.contains("SIGTERM received, shutting down"), "{out}");
    assert!(out.contains("aborting 1 session"), "{out}");
    assert!(up.dynamic(DYNAMIC, c.dynamic.clone()).await.is_err(), "the aborted session still answers");
    drop(session);
    assert!(!snapshot_dir(dir.path(), "cut", T0).exists(), "the aborted snapshot is removed");
    assert!(!dir.path().join(STORE).join("host").join("cut").exists(), "its new group too");
    assert_clean(dir.path());

    let srv = restart_is_clean(dir.path(), "cut", &[]).await;
    let done = backup(&srv.client, "cut", T0 + 60, &c).await.expect("the next backup works");
    assert_eq!(done.previous, None, "nothing of the aborted backup is offered as a base");
    assert_restores(&srv.client, "cut", T0 + 60, &c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_that_finishes_within_the_grace_period_is_committed() {
    let dir = data_dir();
    let srv = start(dir.path(), "600");
    let c = Contents::of(2, 0);
    let session = srv.client.start_backup(&BackupParams::new(STORE, "host", "graced", T0)).await.unwrap();
    let mut up = session.uploader(options()).await.unwrap();
    up.fixed(FIXED, c.fixed.clone()).await.unwrap();

    let stopping = tokio::spawn({
        let mut srv = srv;
        async move {
            let took = terminate(&mut srv, Duration::from_secs(600)).await;
            (srv, took)
        }
    });
    // The rest of the backup runs while the server is stopping.
    tokio::time::sleep(Duration::from_millis(300)).await;
    up.dynamic(DYNAMIC, c.dynamic.clone()).await.unwrap();
    up.blob(BLOB, &c.blob).await.unwrap();
    up.finish().await.unwrap();
    drop(session);
    // Once its last session ended the server stops, without waiting out the grace period.
    let (srv, took) = stopping.await.unwrap();
    assert!(took < STOP_MARGIN, "stopped after {took:?} of a 600 s grace period");
    let out = srv.output();
    assert!(out.contains("SIGTERM received, shutting down"), "{out}");
    assert!(!out.contains("aborting"), "{out}");
    assert_clean(dir.path());

    let srv = restart_is_clean(dir.path(), "graced", &[T0]).await;
    assert_restores(&srv.client, "graced", T0, &c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_server_accepts_no_new_connections_and_idle_ones_do_not_hold_it() {
    let dir = data_dir();
    let mut srv = start(dir.path(), "600");
    let session = srv.client.start_backup(&BackupParams::new(STORE, "host", "held", T0)).await.unwrap();
    // A management connection opened before the stop, kept alive by the client.
    srv.client.version().await.unwrap();
    srv.terminate();
    let deadline = Instant::now() + STOP_MARGIN;
    while tokio::net::TcpStream::connect(srv.addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting connections after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(session);
    let status = srv.wait(STOP_MARGIN).await.expect("stops once its session ended");
    assert!(status.success(), "{status}");
    assert_clean(dir.path());
}
