//! `FinishActor`: commits a snapshot. It decodes the uploaded manifest (unencrypted only),
//! records the session's upload statistics in `unprotected.chunk_upload_stats`, writes the
//! rewritten manifest atomically, syncs per the datastore's sync level and marks the transaction
//! committed. Runs on a `SyncArbiter` thread because every step is blocking file I/O.

use std::sync::Arc;

use actix::{Actor, Addr, Handler, Message, SyncArbiter, SyncContext};
use bytes::Bytes;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::actors::SessionError;
use crate::failpoint;
use crate::format::ArchiveName;
use crate::format::manifest::Manifest;
use crate::metrics::Stage;
use crate::store::{BackupTxn, StoreError};

pub const MANIFEST_NAME: &str = "index.json.blob";

/// What the session uploaded, for `chunk_upload_stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadStats {
    pub count: u64,
    pub size: u64,
    pub compressed_size: u64,
    pub duplicates: u64,
}

/// Commit this transaction with this manifest blob (as uploaded).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), FinishFailed>")]
pub struct CommitSnapshot {
    pub txn: BackupTxn,
    pub manifest: Bytes,
    pub stats: UploadStats,
}

/// A refused commit hands the transaction back: the session stays open (and unfinished).
#[derive(Debug)]
pub struct FinishFailed {
    pub error: SessionError,
    pub txn: BackupTxn,
}

pub struct FinishActor;

impl Actor for FinishActor {
    type Context = SyncContext<Self>;
}

impl Handler<CommitSnapshot> for FinishActor {
    type Result = Result<(), FinishFailed>;

    fn handle(&mut self, msg: CommitSnapshot, _: &mut Self::Context) -> Self::Result {
        let _timer = Stage::Finish.timer();
        let CommitSnapshot { txn, manifest, stats } = msg;
        match commit_files(&txn, &manifest, stats) {
            Ok(()) => {
                let snapshot = txn.snapshot.to_string();
                txn.commit();
                // Only `kill` means something here: the snapshot is committed whatever happens next.
                let _ = failpoint::check("finish.done", &snapshot);
                Ok(())
            }
            Err(error) => Err(FinishFailed { error, txn }),
        }
    }
}

fn commit_files(txn: &BackupTxn, raw: &[u8], stats: UploadStats) -> Result<(), SessionError> {
    let mut manifest = Manifest::from_blob(raw)?;
    if !txn.base_still_exists() {
        let base = txn.base.as_ref().map(|b| b.snapshot.to_string()).unwrap_or_default();
        return Err(SessionError::BaseRemoved(base));
    }
    manifest.unprotected.insert(
        "chunk_upload_stats".into(),
        json!({
            "count": stats.count,
            "size": stats.size,
            "compressed_size": stats.compressed_size,
            "duplicates": stats.duplicates,
        }),
    );
    let name = ArchiveName::parse(MANIFEST_NAME).expect("valid constant");
    failpoint::check("finish.commit", &txn.snapshot.to_string())
        .map_err(|source| StoreError::Io { context: "committing the manifest failed".into(), source })?;
    txn.write_file(&name, &manifest.to_blob())?;
    Ok(txn.sync_commit()?)
}

/// Handle on the finish threads, bounded like every other stage.
#[derive(Clone)]
pub struct FinishPool {
    addr: Addr<FinishActor>,
    permits: Arc<Semaphore>,
    capacity: usize,
}

impl FinishPool {
    pub fn start(threads: usize) -> FinishPool {
        let threads = threads.max(1);
        let capacity = threads * 4;
        FinishPool {
            addr: SyncArbiter::start(threads, || FinishActor),
            permits: Arc::new(Semaphore::new(capacity)),
            capacity,
        }
    }

    fn permits_in_use(&self) -> usize {
        self.capacity - self.permits.available_permits()
    }

    pub async fn commit(&self, msg: CommitSnapshot) -> Result<Result<(), FinishFailed>, SessionError> {
        let _permit = self.permits.acquire().await.map_err(|_| SessionError::Internal("finish pool closed".into()))?;
        Stage::Finish.set_queue_depth(self.permits_in_use());
        let r = self.addr.send(msg).await;
        Stage::Finish.set_queue_depth(self.permits_in_use().saturating_sub(1));
        Ok(r?)
    }
}
