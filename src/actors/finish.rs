//! The `finish` stage: commits a snapshot. It decodes the uploaded manifest (unencrypted only),
//! records the session's upload statistics in `unprotected.chunk_upload_stats`, writes the
//! rewritten manifest atomically, syncs per the datastore's sync level and marks the transaction
//! committed. Runs on the `finish` stage's threads because every step is blocking file I/O.

use bytes::Bytes;
use serde_json::json;

use crate::actors::SessionError;
use crate::actors::stage::{Job, Worker};
use crate::failpoint;
use crate::format::ArchiveName;
use crate::format::manifest::Manifest;
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
#[derive(Debug)]
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

/// One finish thread.
pub struct Finisher;

impl Worker for Finisher {
    type Msg = CommitSnapshot;
    type Reply = Result<(), FinishFailed>;

    fn handle(&mut self, job: Job<Self>) {
        let CommitSnapshot { txn, manifest, stats } = job.msg;
        let result = match commit_files(&txn, &manifest, stats) {
            Ok(()) => {
                let snapshot = txn.snapshot.to_string();
                txn.commit();
                // Only `kill` means something here: the snapshot is committed whatever happens next.
                let _ = failpoint::check("finish.done", &snapshot);
                Ok(())
            }
            Err(error) => Err(FinishFailed { error, txn }),
        };
        job.reply.send(result);
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
