//! High-level backups in the real client's request order (spec/real-client-trace.txt):
//! `previous_backup_time`, the previous manifest, then per archive the previous index (if the
//! previous manifest lists it), the writer, pipelined chunk uploads with `PUT` batches of up to
//! 64 entries, the close; finally the manifest blob and `finish`.
//!
//! Chunks the session already knows (from a previous index or uploaded earlier in this
//! session) are only appended, never uploaded again, exactly the dedup contract of the
//! protocol (protocol.md 2.4).

use std::collections::{HashSet, VecDeque};

use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use tokio::task::JoinSet;

use crate::client::ClientError;
use crate::client::chunker::Chunker;
use crate::client::session::{BackupSession, IndexKind, upload_chunk};
use crate::format::Digest;
use crate::format::blob;
use crate::format::dynamic_index::{DynamicEntry, DynamicIndex};
use crate::format::fixed_index::{FIXED_CHUNK_SIZE, FixedIndex};
use crate::format::manifest::{CryptMode, FileEntry, Manifest};

/// Largest number of entries in one `PUT *_index` (the real client flushes at 64).
pub const APPEND_BATCH: usize = 64;
pub const MANIFEST_NAME: &str = "index.json.blob";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupOptions {
    /// Chunk uploads outstanding at once (the real client reaches 7).
    pub in_flight: usize,
    /// zstd-compress chunks and blobs when that makes them smaller.
    pub compress: bool,
    /// Average chunk size of dynamic archives (the real client: 4 MiB).
    pub dynamic_avg: usize,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions { in_flight: 7, compress: true, dynamic_avg: 4 * 1024 * 1024 }
    }
}

/// What one archive upload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveStats {
    pub name: String,
    pub size: u64,
    pub chunks: usize,
    /// Chunks sent with `POST *_chunk`.
    pub uploaded: usize,
    /// Chunks only appended because the session knew them.
    pub reused: usize,
    /// Encoded bytes sent in chunk uploads.
    pub uploaded_bytes: u64,
    pub csum: [u8; 32],
}

/// A backup in progress on a session: collects the manifest entries.
pub struct Uploader<'a> {
    session: &'a BackupSession,
    options: BackupOptions,
    previous: Option<Manifest>,
    known: HashSet<Digest>,
    files: Vec<FileEntry>,
}

impl BackupSession {
    /// Starts a backup like the real client: asks for the previous backup time and, if there
    /// is one (or the question failed), downloads the previous manifest.
    pub async fn uploader(&self, options: BackupOptions) -> Result<Uploader<'_>, ClientError> {
        let previous = match self.previous_backup_time().await {
            Ok(None) => None,
            Ok(Some(_)) | Err(_) => match self.previous(MANIFEST_NAME).await {
                Ok(raw) => Manifest::from_blob(&raw).ok(),
                Err(_) => None,
            },
        };
        Ok(Uploader { session: self, options, previous, known: HashSet::new(), files: Vec::new() })
    }
}

impl Uploader<'_> {
    /// The previous snapshot's manifest, if the server offered one.
    pub fn previous_manifest(&self) -> Option<&Manifest> {
        self.previous.as_ref()
    }

    /// Backs `data` up as a fixed index (`name` ends in `.fidx`): 4 MiB chunks, last short.
    pub async fn fixed(&mut self, name: &str, data: Bytes) -> Result<ArchiveStats, ClientError> {
        self.learn_previous(name, IndexKind::Fixed).await;
        let size = data.len() as u64;
        let wid = self.session.create_fixed_index(name, size, None).await?;
        let step = FIXED_CHUNK_SIZE as usize;
        let pieces: Vec<(u64, Bytes)> =
            (0..data.len()).step_by(step).map(|o| (o as u64, data.slice(o..(o + step).min(data.len())))).collect();
        let mut stats = self.upload(IndexKind::Fixed, wid, name, &pieces).await?;
        let index = FixedIndex {
            uuid: [0; 16],
            ctime: 0,
            size,
            chunk_size: FIXED_CHUNK_SIZE,
            digests: pieces.iter().map(|(_, p)| Digest::of(p)).collect(),
        };
        stats.csum = index.csum();
        self.session.close(IndexKind::Fixed, wid, pieces.len() as u64, size, &stats.csum).await?;
        self.add_file(name, size, stats.csum);
        Ok(stats)
    }

    /// Backs `data` up as a dynamic index (`name` ends in `.didx`), content-defined chunks.
    pub async fn dynamic(&mut self, name: &str, data: Bytes) -> Result<ArchiveStats, ClientError> {
        self.learn_previous(name, IndexKind::Dynamic).await;
        let wid = self.session.create_dynamic_index(name).await?;
        let mut start = 0usize;
        let mut pieces = Vec::new();
        for end in Chunker::new(self.options.dynamic_avg).cut_points(&data) {
            pieces.push((start as u64, data.slice(start..end)));
            start = end;
        }
        let mut stats = self.upload(IndexKind::Dynamic, wid, name, &pieces).await?;
        let entries = pieces
            .iter()
            .map(|(offset, p)| DynamicEntry { end: offset + p.len() as u64, digest: Digest::of(p) })
            .collect();
        stats.csum = DynamicIndex { uuid: [0; 16], ctime: 0, entries }.csum();
        self.session.close(IndexKind::Dynamic, wid, pieces.len() as u64, stats.size, &stats.csum).await?;
        self.add_file(name, stats.size, stats.csum);
        Ok(stats)
    }

    /// Uploads `data` as a blob file of the snapshot (`name` ends in `.blob`).
    pub async fn blob(&mut self, name: &str, data: &[u8]) -> Result<(), ClientError> {
        let raw = Bytes::from(blob::encode(data, self.options.compress)?);
        self.session.upload_blob(name, raw.clone()).await?;
        self.add_file(name, raw.len() as u64, Sha256::digest(&raw).into());
        Ok(())
    }

    /// Uploads the manifest and finishes the session; returns the manifest as uploaded.
    pub async fn finish(self) -> Result<Manifest, ClientError> {
        let params = &self.session.params;
        let manifest = Manifest {
            backup_type: params.backup_type.clone(),
            backup_id: params.backup_id.clone(),
            backup_time: params.backup_time,
            files: self.files,
            unprotected: serde_json::Map::new(),
            signature: None,
        };
        self.session.upload_blob(MANIFEST_NAME, Bytes::from(manifest.to_blob())).await?;
        self.session.finish().await?;
        Ok(manifest)
    }

    fn add_file(&mut self, name: &str, size: u64, csum: [u8; 32]) {
        self.files.push(FileEntry {
            filename: name.to_string(),
            crypt_mode: CryptMode::None,
            size,
            csum: hex::encode(csum),
        });
    }

    /// Downloads the previous index of `name` if the previous manifest lists it, and learns
    /// its chunks. Any failure only means no reuse, as for the real client.
    async fn learn_previous(&mut self, name: &str, kind: IndexKind) {
        let listed = self.previous.as_ref().is_some_and(|m| m.files.iter().any(|f| f.filename == name));
        if !listed {
            return;
        }
        let Ok(raw) = self.session.previous(name).await else {
            return;
        };
        let digests: Vec<Digest> = match kind {
            IndexKind::Fixed => FixedIndex::parse(&raw).map(|i| i.digests).unwrap_or_default(),
            IndexKind::Dynamic => {
                DynamicIndex::parse(&raw).map(|i| i.entries.into_iter().map(|e| e.digest).collect()).unwrap_or_default()
            }
        };
        self.known.extend(digests);
    }

    /// Uploads the unknown chunks of `pieces` (at most `in_flight` at once) and appends all of
    /// them in order, a batch as soon as every chunk in it has been stored.
    async fn upload(
        &mut self,
        kind: IndexKind,
        wid: u64,
        name: &str,
        pieces: &[(u64, Bytes)],
    ) -> Result<ArchiveStats, ClientError> {
        let mut stats = ArchiveStats {
            name: name.to_string(),
            size: 0,
            chunks: pieces.len(),
            uploaded: 0,
            reused: 0,
            uploaded_bytes: 0,
            csum: [0; 32],
        };
        let mut running: JoinSet<Result<(Digest, u64), ClientError>> = JoinSet::new();
        let mut started: HashSet<Digest> = HashSet::new();
        let mut pending: VecDeque<(Digest, u64)> = VecDeque::new();
        let in_flight = self.options.in_flight.max(1);
        for (offset, piece) in pieces {
            let digest = Digest::of(piece);
            stats.size += piece.len() as u64;
            if self.known.contains(&digest) || started.contains(&digest) {
                stats.reused += 1;
            } else {
                while running.len() >= in_flight {
                    self.reap(&mut running, &mut stats).await?;
                }
                started.insert(digest);
                stats.uploaded += 1;
                let (conn, piece, compress) = (self.session.conn.clone(), piece.clone(), self.options.compress);
                let d = digest;
                running.spawn(async move {
                    let raw = Bytes::from(blob::encode(&piece, compress)?);
                    let encoded = raw.len() as u64;
                    upload_chunk(&conn, kind, wid, &d, piece.len() as u64, raw).await?;
                    Ok((d, encoded))
                });
            }
            pending.push_back((digest, *offset));
            if pending.len() >= APPEND_BATCH {
                self.flush(kind, wid, &mut pending, &mut running, &mut stats).await?;
            }
        }
        self.flush(kind, wid, &mut pending, &mut running, &mut stats).await?;
        while !running.is_empty() {
            self.reap(&mut running, &mut stats).await?;
        }
        Ok(stats)
    }

    async fn reap(
        &mut self,
        running: &mut JoinSet<Result<(Digest, u64), ClientError>>,
        stats: &mut ArchiveStats,
    ) -> Result<(), ClientError> {
        if let Some(done) = running.join_next().await {
            let (digest, encoded) = done.map_err(|e| ClientError::Protocol(format!("upload task failed: {e}")))??;
            stats.uploaded_bytes += encoded;
            self.known.insert(digest);
        }
        Ok(())
    }

    async fn flush(
        &mut self,
        kind: IndexKind,
        wid: u64,
        pending: &mut VecDeque<(Digest, u64)>,
        running: &mut JoinSet<Result<(Digest, u64), ClientError>>,
        stats: &mut ArchiveStats,
    ) -> Result<(), ClientError> {
        if pending.is_empty() {
            return Ok(());
        }
        // The server registers a chunk before it answers; appending earlier would be refused.
        while pending.iter().any(|(d, _)| !self.known.contains(d)) {
            if running.is_empty() {
                return Err(ClientError::Protocol("chunk neither known nor being uploaded".into()));
            }
            self.reap(running, stats).await?;
        }
        let (digests, offsets): (Vec<Digest>, Vec<u64>) = pending.drain(..).unzip();
        self.session.append(kind, wid, &digests, &offsets).await
    }
}
