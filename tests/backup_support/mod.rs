//! Shared helpers of the backup session tests: a real server, sessions, chunk encoding, and
//! the on-disk checks every error path ends with (no snapshot left, no temp file left).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chunkyard::client::{BackupParams, BackupSession, ClientError, HttpClient};
use chunkyard::format::blob;
use chunkyard::format::{BackupTime, Digest};
use chunkyard::testing::TestServer;
use http::StatusCode;

pub const T0: i64 = 1_718_000_000;

/// A test server whose datastore opens without creating its 65536 chunk directories up front
/// (the store creates each on first use), which keeps a test at milliseconds instead of
/// seconds of mkdir.
pub fn server() -> TestServer {
    let server = TestServer::start();
    std::fs::create_dir_all(server.store_path().join(".chunks")).unwrap();
    server
}

pub fn client(server: &TestServer) -> HttpClient {
    HttpClient::new(server.client_config()).unwrap()
}

pub fn params(server: &TestServer, id: &str, time: i64) -> BackupParams {
    BackupParams::new(&server.store, "host", id, time)
}

pub async fn session(server: &TestServer, id: &str, time: i64) -> BackupSession {
    client(server).start_backup(&params(server, id, time)).await.expect("backup session starts")
}

pub fn group_dir(server: &TestServer, id: &str) -> PathBuf {
    server.store_path().join("host").join(id)
}

pub fn snapshot_dir(server: &TestServer, id: &str, time: i64) -> PathBuf {
    group_dir(server, id).join(BackupTime::from_epoch(time).unwrap().dir_name())
}

/// Encodes `data` as a compressed chunk blob; returns its digest and bytes.
pub fn chunk(data: &[u8]) -> (Digest, Bytes) {
    (Digest::of(data), Bytes::from(blob::encode(data, true).unwrap()))
}

/// Deterministic, poorly compressible test data.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    chunkyard::testing::noise(len, seed)
}

/// Asserts a refused request: status and exact text.
#[track_caller]
pub fn assert_refused<T: std::fmt::Debug>(r: Result<T, ClientError>, status: StatusCode, message: &str) {
    match r {
        Err(ClientError::Status { status: s, message: m }) => {
            assert_eq!((s, m.as_str()), (status, message));
        }
        other => panic!("expected {status} {message:?}, got {other:?}"),
    }
}

/// Like [`assert_refused`] for a message that starts with `prefix`.
#[track_caller]
pub fn assert_refused_prefix<T: std::fmt::Debug>(r: Result<T, ClientError>, status: StatusCode, prefix: &str) {
    match r {
        Err(ClientError::Status { status: s, message: m }) if s == status && m.starts_with(prefix) => {}
        other => panic!("expected {status} {prefix:?}..., got {other:?}"),
    }
}

/// Waits until the server removed `path` (the session ends asynchronously after the client
/// drops its connection).
pub async fn assert_removed(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while path.exists() {
        assert!(Instant::now() < deadline, "{} still exists", path.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every file below `root` whose name marks it as a temporary file.
pub fn temp_files(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(p);
            } else if p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.contains("tmp")) {
                found.push(p);
            }
        }
    }
    found
}

/// Ends a failed session the way a client gives up (drop = connection torn down) and checks
/// that nothing of it stays on disk.
pub async fn abandon_and_check(server: &TestServer, session: BackupSession, id: &str, time: i64, new_group: bool) {
    drop(session);
    assert_removed(&snapshot_dir(server, id, time)).await;
    if new_group {
        assert_removed(&group_dir(server, id)).await;
    }
    assert_eq!(temp_files(&server.store_path()), Vec::<PathBuf>::new());
}
