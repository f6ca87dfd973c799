//! Files of the base snapshot, as `GET /previous` and `reuse-csum` need them: the raw bytes to
//! serve and, for an index, every chunk it references with its length — the chunks the session
//! may then append without uploading (protocol.md 2.4). Blocking reads: call off-thread.

use std::io::ErrorKind;

use bytes::Bytes;

use crate::actors::SessionError;
use crate::format::dynamic_index::DynamicIndex;
use crate::format::fixed_index::FixedIndex;
use crate::format::{ArchiveKind, ArchiveName, Digest};
use crate::store::{BackupTxn, StoreError};

pub struct PreviousFile {
    pub raw: Bytes,
    /// Chunks to register as known (empty for a blob).
    pub chunks: Vec<(Digest, u64)>,
}

/// Reads `name` from the base snapshot (which must exist).
pub fn load(txn: &BackupTxn, name: &ArchiveName) -> Result<PreviousFile, SessionError> {
    let base = txn.base.as_ref().ok_or(SessionError::NoPreviousBackup)?;
    let path = base.path.join(name.as_str());
    let shown = path.display().to_string();
    match name.kind() {
        ArchiveKind::Blob => match std::fs::read(&path) {
            Ok(raw) => Ok(PreviousFile { raw: raw.into(), chunks: Vec::new() }),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(SessionError::PreviousBlobMissing(shown)),
            Err(source) => Err(StoreError::Io { context: format!("open file \"{shown}\" failed"), source }.into()),
        },
        ArchiveKind::Dynamic => {
            let fail = |reason: String| SessionError::PreviousIndex { kind: "dynamic", path: shown.clone(), reason };
            let raw = std::fs::read(&path).map_err(|e| fail(e.to_string()))?;
            let index = DynamicIndex::parse(&raw).map_err(|e| fail(e.to_string()))?;
            Ok(PreviousFile { chunks: dynamic_chunks(&index), raw: raw.into() })
        }
        ArchiveKind::Fixed => {
            let fail = |reason: String| SessionError::PreviousIndex { kind: "fixed", path: shown.clone(), reason };
            let raw = std::fs::read(&path).map_err(|e| fail(e.to_string()))?;
            let index = FixedIndex::parse(&raw).map_err(|e| fail(e.to_string()))?;
            Ok(PreviousFile { chunks: fixed_chunks(&index), raw: raw.into() })
        }
    }
}

fn dynamic_chunks(index: &DynamicIndex) -> Vec<(Digest, u64)> {
    let mut start = 0;
    index
        .entries
        .iter()
        .map(|e| {
            let len = e.end.saturating_sub(start);
            start = e.end;
            (e.digest, len)
        })
        .collect()
}

fn fixed_chunks(index: &FixedIndex) -> Vec<(Digest, u64)> {
    let cs = index.chunk_size.max(1);
    index.digests.iter().enumerate().map(|(i, d)| (*d, cs.min(index.size.saturating_sub(i as u64 * cs)))).collect()
}

/// The base's digests of fixed index `name`, if its checksum is `csum` (`reuse-csum`).
pub fn reusable_fixed_digests(txn: &BackupTxn, name: &ArchiveName, csum: &str) -> Result<Vec<Digest>, SessionError> {
    let base = txn.base.as_ref().ok_or_else(|| SessionError::CannotReuse("no valid previous backup exists".into()))?;
    let missing = || SessionError::CannotReuse("no previous backup exists for archive".into());
    let raw = std::fs::read(base.path.join(name.as_str())).map_err(|_| missing())?;
    let index = FixedIndex::parse(&raw).map_err(|_| missing())?;
    let actual = hex::encode(index.csum());
    if actual != csum {
        return Err(SessionError::ReuseCsumMismatch { given: csum.to_string(), actual });
    }
    Ok(index.digests)
}
