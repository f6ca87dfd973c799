//! Fault injection (issue #8 item 2): ENOSPC and EIO where a backup writes — chunk files (io_uring
//! writer and the plain-I/O fallback), the fixed and dynamic index at close, a blob upload,
//! the manifest at finish — through a real server, via `chunkyard::failpoint`.
//!
//! Each case checks what an operator relies on: the client gets 400 with a text naming what
//! failed and the OS error; every file that existed is unchanged, the failed snapshot is gone,
//! no temp file is left; a session on another group that ran beside it finishes; a new backup
//! of the group works and restores; the error shows in `chunkyard_errors_total{kind="io"}`; and
//! the failpoint fired exactly once (so a case cannot pass without its fault).
//!
//! The failpoint table is process-wide: the cases take turns (`SERIAL`), and each rule carries a
//! context (digest, file name, snapshot) that only the victim session's calls match.

mod backup_support;
mod faults_support;

use std::path::PathBuf;
use std::sync::{Mutex, Once};

use backup_support::*;
use chunkyard::client::ClientError;
use chunkyard::failpoint;
use chunkyard::testing::TestServer;
use faults_support::*;
use http::StatusCode;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Everything the servers of this test binary log (a process-wide subscriber into memory).
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts capturing logs (once) and returns the captured text so far.
fn log_text() -> String {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_writer(|| LogWriter)
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .try_init();
    });
    String::from_utf8_lossy(&LOG.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

const ENOSPC: &str = "No space left on device (os error 28)";
const EIO: &str = "Input/output error (os error 5)";

/// A fault: the failpoint rule and the message the victim's client must get.
struct Fault {
    rule: String,
    message: String,
}

/// The first chunk of the victim's dynamic archive that the seed does not have.
fn new_chunk() -> String {
    let seed = Archives::seed().dynamic_digests();
    let digest =
        Archives::victim().dynamic_digests().into_iter().find(|d| !seed.contains(d)).expect("victim has new chunks");
    digest.to_hex()
}

fn chunk_fault(point: &str, errno: &str) -> Fault {
    let digest = new_chunk();
    let action = if errno == ENOSPC { "enospc" } else { "eio" };
    Fault { rule: format!("{point}:{digest}={action}"), message: format!("storing chunk {digest} failed: {errno}") }
}

fn file_fault(point: &str, file: &str, errno: &str) -> Fault {
    let action = if errno == ENOSPC { "enospc" } else { "eio" };
    Fault { rule: format!("{point}:{file}={action}"), message: format!("writing {file} failed: {errno}") }
}

/// Runs the whole story of one fault (see the file comment) on a fresh server.
async fn survive(fault: Fault, io_uring: bool) {
    let _turn = SERIAL.lock().await;
    failpoint::clear();
    log_text();
    let server = TestServer::start_with(|c| c.pipeline.io_uring = io_uring);
    let root = server.store_path();
    let metrics = server.metrics_addr.expect("test server exports metrics");
    let seed = Archives::seed();
    backup(&server, GROUP, SEED_TIME, &seed).await.expect("seed backup");
    let before = contents(&root);
    let scrape_before = scrape(metrics);

    failpoint::set(&fault.rule).unwrap();
    let injected = failpoint::injected();
    let victim = Archives::victim();
    let bystander = Archives::bystander();
    let (vs, other) = (session(&server, GROUP, VICTIM_TIME).await, session(&server, OTHER, VICTIM_TIME).await);
    let (failed, other_up) = tokio::join!(
        async {
            let mut up = vs.uploader(options()).await?;
            victim.upload(&mut up).await?;
            up.finish().await.map(drop)
        },
        async {
            let mut up = other.uploader(options()).await?;
            bystander.upload(&mut up).await?;
            Ok::<_, ClientError>(up)
        }
    );
    match failed {
        Err(ClientError::Status { status, message }) => {
            assert_eq!(
                (status, message.as_str()),
                (StatusCode::BAD_REQUEST, fault.message.as_str()),
                "rule {}",
                fault.rule
            )
        }
        other => panic!("rule {}: expected the victim to fail, got {other:?}", fault.rule),
    }
    assert_eq!(failpoint::injected() - injected, 1, "the fault fired exactly once");

    // The client gives up, as the real one does on an error: the snapshot must vanish.
    drop(vs);
    assert_removed(&snapshot_dir(&server, GROUP, VICTIM_TIME)).await;
    assert_eq!(temp_files(&root), Vec::<PathBuf>::new(), "temp files left after {}", fault.rule);
    let bystander_dir = PathBuf::from("host").join(OTHER);
    assert_untouched(&root, &before, &[bystander_dir]);

    // The bystander, open all along, finishes; the group takes a new backup; all restore.
    other_up.expect("bystander uploads").finish().await.expect("bystander finishes");
    drop(other);
    failpoint::clear();
    backup(&server, GROUP, AFTER_TIME, &victim).await.expect("backup after the fault");
    seed.assert_restored(&server, GROUP, SEED_TIME).await;
    bystander.assert_restored(&server, OTHER, VICTIM_TIME).await;
    victim.assert_restored(&server, GROUP, AFTER_TIME).await;
    assert_eq!(temp_files(&root), Vec::<PathBuf>::new());

    let scrape_after = scrape(metrics);
    let grew = |series: &str| value(&scrape_after, series) - value(&scrape_before, series);
    assert_eq!(grew(IO_ERRORS), 1.0, "one failed request counted as an I/O error");
    assert!(grew(ABORTED) >= 1.0, "the victim's session counted as aborted");
    let logged = format!("ERROR chunkyard::protocol::backup: backup request failed on disk I/O: {}", fault.message);
    assert!(log_text().contains(&logged), "the log shows {logged:?}");
}

#[tokio::test]
async fn chunk_write_enospc_io_uring() {
    survive(chunk_fault("chunk.write", ENOSPC), true).await;
}

#[tokio::test]
async fn chunk_write_eio_io_uring() {
    survive(chunk_fault("chunk.write", EIO), true).await;
}

#[tokio::test]
async fn chunk_write_enospc_fallback() {
    survive(chunk_fault("chunk.write", ENOSPC), false).await;
}

#[tokio::test]
async fn chunk_write_eio_fallback() {
    survive(chunk_fault("chunk.write", EIO), false).await;
}

/// The rename of a complete, synced chunk temp file fails.
#[tokio::test]
async fn chunk_rename_eio_both_writers() {
    survive(chunk_fault("chunk.rename", EIO), true).await;
    survive(chunk_fault("chunk.rename", EIO), false).await;
}

/// The chunk is in place but syncing its directory fails: the upload must still fail (the
/// chunk's durability is unknown), and the complete chunk file may stay.
#[tokio::test]
async fn chunk_dir_sync_eio_both_writers() {
    survive(chunk_fault("chunk.stored", EIO), true).await;
    survive(chunk_fault("chunk.stored", EIO), false).await;
}

#[tokio::test]
async fn fixed_index_close_enospc() {
    survive(file_fault("file.write", "disk.img.fidx", ENOSPC), true).await;
}

#[tokio::test]
async fn dynamic_index_close_eio() {
    survive(file_fault("file.write", "root.didx", EIO), true).await;
}

#[tokio::test]
async fn index_rename_enospc_and_sync_eio() {
    survive(file_fault("file.rename", "root.didx", ENOSPC), true).await;
    survive(file_fault("file.stored", "disk.img.fidx", EIO), true).await;
}

#[tokio::test]
async fn blob_upload_enospc_and_eio() {
    survive(file_fault("file.write", "conf.blob", ENOSPC), true).await;
    survive(file_fault("file.write", "conf.blob", EIO), true).await;
}

/// The manifest is written only by `finish`; the bystander's own manifest comes after the
/// victim's (it finishes later), and the rule fires once.
#[tokio::test]
async fn manifest_write_enospc() {
    survive(file_fault("file.write", "index.json.blob", ENOSPC), true).await;
}

/// The manifest was renamed into place but its directory sync failed: the snapshot looked
/// finished for a moment, yet the commit failed, so it must not survive the session.
#[tokio::test]
async fn manifest_sync_eio_removes_the_snapshot() {
    survive(file_fault("file.stored", "index.json.blob", EIO), true).await;
}

#[tokio::test]
async fn manifest_commit_eio() {
    let snapshot = snapshot_name(GROUP, VICTIM_TIME);
    let fault = Fault {
        rule: format!("finish.commit:{snapshot}=eio"),
        message: format!("committing the manifest failed: {EIO}"),
    };
    survive(fault, true).await;
}

/// The group directory of a new group cannot get its `owner` file: the upgrade is refused with
/// the reason, the half-made group disappears, and the next try works.
#[tokio::test]
async fn new_group_owner_write_enospc() {
    let _turn = SERIAL.lock().await;
    failpoint::clear();
    let server = TestServer::start();
    let root = server.store_path();
    backup(&server, GROUP, SEED_TIME, &Archives::seed()).await.expect("seed backup");
    let before = contents(&root);
    failpoint::set("file.write:owner=enospc").unwrap();
    let refused = client(&server).start_backup(&params(&server, OTHER, VICTIM_TIME)).await.map(drop);
    let group = format!("host/{OTHER}");
    assert_refused(
        refused,
        StatusCode::BAD_REQUEST,
        &format!("creating backup group {group} failed - writing owner: {ENOSPC}"),
    );
    assert!(!group_dir(&server, OTHER).exists(), "the failed group's directory is gone");
    assert_eq!(temp_files(&root), Vec::<PathBuf>::new());
    assert_untouched(&root, &before, &[]);
    failpoint::clear();
    let bystander = Archives::bystander();
    backup(&server, OTHER, VICTIM_TIME, &bystander).await.expect("the group is created on the next try");
    bystander.assert_restored(&server, OTHER, VICTIM_TIME).await;
}
