//! `SessionActor`: one backup session (protocol.md 2) in one place — its state, the messages
//! it answers (one per request kind of protocol.md 2.2, each declared next to its handler) and
//! where each goes. protocol/ parses HTTP and sends these messages; this file decides.
//!
//! State: the transaction, the writer-id counter (shared by fixed and dynamic writers), the
//! open writers, the session-wide known-chunk map, the file counter, the held manifest, the
//! finished flag and the upload statistics. Routing: a chunk goes to the hasher stage, which
//! hands it on to the chunk writer (one answer comes back); appends and closes go to the
//! writer's `IndexWriter`; blobs and reads of the base snapshot to the `files` stage; the
//! commit to the `finish` stage.
//!
//! Handlers check state synchronously, run the heavy part as a future (other requests proceed
//! meanwhile) and update state when it completes — a chunk is registered as known before its
//! upload is answered (protocol.md 2.4).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;

use crate::actors::finish::{CommitSnapshot, FinishFailed, MANIFEST_NAME, UploadStats};
use crate::actors::hasher::VerifyChunk;
use crate::actors::index_memory::IndexBudget;
use crate::actors::index_writer::{AppendChunks, AppendEntry, CloseIndex, IndexBuilder, IndexWriter};
use crate::actors::previous::{self, PreviousFile};
use crate::actors::{Pipeline, SessionError, StoreHandle};
use crate::format::fixed_index::FIXED_CHUNK_SIZE;
use crate::format::{ArchiveName, Authid, Digest, Namespace, SnapshotRef};
use crate::metrics as m;
use crate::store::BackupTxn;

/// Highest writer id the protocol's `wid` schema accepts.
pub const MAX_WID: u64 = 256;

/// Which kind of index an endpoint addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexKind {
    Dynamic,
    Fixed,
}

/// A backup transaction begun for a session that is not serving yet (the upgrade answers 101
/// in between). Dropped unstarted, it removes what it created, like an unfinished session.
pub struct PendingSession {
    txn: BackupTxn,
    pipeline: Pipeline,
    benchmark: bool,
}

impl PendingSession {
    /// The reference's checks and the snapshot's directory and locks (`BackupTxn::begin`), on
    /// the `files` stage. A benchmark session skips the owner check and is never kept.
    pub async fn begin(
        pipeline: &Pipeline,
        store: StoreHandle,
        ns: Namespace,
        snapshot: SnapshotRef,
        auth: &Authid,
        benchmark: bool,
    ) -> Result<PendingSession, SessionError> {
        let auth = auth.clone();
        let begin = move || BackupTxn::begin(store.0, ns, snapshot, &auth, !benchmark);
        let txn = pipeline.files.run(begin).await??;
        Ok(PendingSession { txn, pipeline: pipeline.clone(), benchmark })
    }

    pub fn snapshot(&self) -> &SnapshotRef {
        &self.txn.snapshot
    }

    /// Starts the session's actor on the calling thread (the connection's Arbiter).
    /// `index_limit`: bytes of index tables this session may hold (inside the pipeline's bound).
    pub fn start(self, index_limit: u64) -> Addr<SessionActor> {
        let PendingSession { txn, pipeline, benchmark } = self;
        SessionActor {
            index_memory: IndexBudget::new(index_limit, pipeline.index_memory.clone()),
            pipeline,
            txn: Some(Arc::new(txn)),
            benchmark,
            wid_counter: 0,
            writers: HashMap::new(),
            archive_names: HashSet::new(),
            known: HashMap::new(),
            file_counter: 0,
            manifest: None,
            stats: UploadStats::default(),
            finishing: false,
            finished: false,
        }
        .start()
    }
}

struct OpenWriter {
    name: ArchiveName,
    kind: IndexKind,
    addr: Addr<IndexWriter>,
    small_chunks: u32,
    closing: bool,
}

pub struct SessionActor {
    pipeline: Pipeline,
    txn: Option<Arc<BackupTxn>>,
    benchmark: bool,
    index_memory: IndexBudget,
    wid_counter: u64,
    writers: HashMap<u64, OpenWriter>,
    archive_names: HashSet<ArchiveName>,
    /// Digest -> (chunk length, uploaded in this session rather than learned from `previous`).
    known: HashMap<Digest, (u64, bool)>,
    file_counter: u64,
    manifest: Option<Bytes>,
    stats: UploadStats,
    finishing: bool,
    finished: bool,
}

impl SessionActor {
    fn ensure_unfinished(&self) -> Result<Arc<BackupTxn>, SessionError> {
        match (&self.txn, self.finished || self.finishing) {
            (Some(txn), false) => Ok(txn.clone()),
            _ => Err(SessionError::Finished),
        }
    }

    /// For state changes after an await: the session may have finished meanwhile.
    fn still_open(&self) -> Result<(), SessionError> {
        if self.finished || self.finishing { Err(SessionError::Finished) } else { Ok(()) }
    }

    fn writer(&mut self, kind: IndexKind, wid: u64) -> Result<&mut OpenWriter, SessionError> {
        match self.writers.get_mut(&wid) {
            Some(w) if w.kind == kind && !w.closing => Ok(w),
            _ if kind == IndexKind::Fixed => Err(SessionError::FixedNotRegistered(wid)),
            _ => Err(SessionError::DynamicNotRegistered(wid)),
        }
    }
}

impl Actor for SessionActor {
    type Context = Context<Self>;
}

type Reply<T> = ResponseActFuture<SessionActor, Result<T, SessionError>>;

/// `?` for handlers that answer with a future.
macro_rules! or_reply {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return ready(Err(e)),
        }
    };
}

fn ready<T: 'static>(r: Result<T, SessionError>) -> Reply<T> {
    Box::pin(actix::fut::ready(r))
}

/// `POST *_index`: open a writer; answers its wid.
#[derive(Debug, Message)]
#[rtype(result = "Result<u64, SessionError>")]
pub struct OpenIndex {
    pub name: ArchiveName,
    /// `Some((size, reuse_csum))` for a fixed index.
    pub fixed: Option<(u64, Option<String>)>,
}

impl Handler<OpenIndex> for SessionActor {
    type Result = Reply<u64>;

    fn handle(&mut self, msg: OpenIndex, _: &mut Context<Self>) -> Self::Result {
        let txn = or_reply!(self.ensure_unfinished());
        if self.archive_names.contains(&msg.name) {
            return ready(Err(SessionError::ArchiveTwice(msg.name.to_string())));
        }
        if self.wid_counter >= MAX_WID {
            return ready(Err(SessionError::TooManyWriters(self.wid_counter + 1)));
        }
        // Charged before anything is allocated; the table is built off this thread.
        let table = or_reply!(msg.fixed.as_ref().map_or(Ok(0), |(size, _)| IndexBuilder::fixed_table_bytes(*size)));
        let charge = or_reply!(self.index_memory.charge(&msg.name, table));
        // Reserved now, so a concurrent second open of the same name is refused too.
        self.archive_names.insert(msg.name.clone());
        let name = msg.name.clone();
        let files = self.pipeline.files.clone();
        let build = async move {
            let OpenIndex { name, fixed } = msg;
            match fixed {
                None => Ok(IndexBuilder::dynamic(name, charge)),
                Some((size, reuse)) => {
                    let txn = txn.clone();
                    files
                        .run(move || {
                            let base =
                                reuse.map(|csum| previous::reusable_fixed_digests(&txn, &name, &csum)).transpose()?;
                            IndexBuilder::fixed(name, size, base, charge)
                        })
                        .await?
                }
            }
            .map(|b| (b, txn))
        };
        Box::pin(build.into_actor(self).map(move |built, act, _| {
            let opened = built.and_then(|(builder, txn)| {
                if act.wid_counter >= MAX_WID {
                    return Err(SessionError::TooManyWriters(act.wid_counter + 1));
                }
                act.still_open()?;
                Ok((builder, txn))
            });
            let (builder, txn) = match opened {
                Ok(b) => b,
                Err(e) => {
                    act.archive_names.remove(&name);
                    return Err(e);
                }
            };
            act.wid_counter += 1;
            let kind = if builder.is_fixed() { IndexKind::Fixed } else { IndexKind::Dynamic };
            let addr = IndexWriter::new(builder, txn, act.pipeline.files.clone()).start();
            act.writers.insert(act.wid_counter, OpenWriter { name, kind, addr, small_chunks: 0, closing: false });
            Ok(act.wid_counter)
        }))
    }
}

/// `POST *_chunk`: verify, store and register one chunk; answers its digest.
#[derive(Debug, Message)]
#[rtype(result = "Result<Digest, SessionError>")]
pub struct UploadChunk {
    pub kind: IndexKind,
    pub wid: u64,
    pub digest: Digest,
    pub size: u64,
    pub blob: Bytes,
}

impl Handler<UploadChunk> for SessionActor {
    type Result = Reply<Digest>;

    fn handle(&mut self, msg: UploadChunk, _: &mut Context<Self>) -> Self::Result {
        let txn = or_reply!(self.ensure_unfinished());
        let writer = or_reply!(self.writer(msg.kind, msg.wid));
        if msg.kind == IndexKind::Fixed && msg.size > FIXED_CHUNK_SIZE {
            let name = writer.name.to_string();
            return ready(Err(SessionError::FixedLargeChunk { name, size: msg.size, max: FIXED_CHUNK_SIZE }));
        }
        let pipeline = self.pipeline.clone();
        let UploadChunk { kind, wid, digest, size, blob } = msg;
        let encoded = blob.len() as u64;
        let store = txn.store.clone();
        let work = async move {
            // One answer for both stages: the hasher hands the verified chunk to the writer.
            let stored = pipeline.hashers.ask(VerifyChunk { store, digest, size, blob }).await?;
            // Until the chunk is stored, the snapshot cannot be committed (finish needs the
            // transaction's last share).
            drop(txn);
            stored
        };
        Box::pin(work.into_actor(self).map(move |stored, act, _| {
            let stored = stored?;
            if act.finished {
                return Err(SessionError::Finished);
            }
            if kind == IndexKind::Fixed && size < FIXED_CHUNK_SIZE {
                let w = act.writer(kind, wid)?;
                w.small_chunks += 1;
                if w.small_chunks > 1 {
                    return Err(SessionError::FixedMultipleEnd(wid));
                }
            }
            act.known.insert(digest, (size, true));
            act.stats.count += 1;
            act.stats.size += size;
            act.stats.compressed_size += encoded;
            act.stats.duplicates += u64::from(!stored.new);
            metrics::counter!(m::CHUNKS_UPLOADED).increment(1);
            metrics::counter!(m::BYTES_ORIGINAL).increment(size);
            metrics::counter!(m::BYTES_ENCODED).increment(encoded);
            metrics::histogram!(m::CHUNK_SIZE).record(encoded as f64);
            Ok(digest)
        }))
    }
}

/// `PUT *_index`: append known chunks at start offsets.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), SessionError>")]
pub struct AppendIndex {
    pub kind: IndexKind,
    pub wid: u64,
    pub digests: Vec<Digest>,
    pub offsets: Vec<u64>,
}

impl Handler<AppendIndex> for SessionActor {
    type Result = Reply<()>;

    fn handle(&mut self, msg: AppendIndex, _: &mut Context<Self>) -> Self::Result {
        let prepared = (|| {
            self.ensure_unfinished()?;
            if msg.offsets.len() != msg.digests.len() {
                return Err(SessionError::OffsetListLength { offsets: msg.offsets.len(), digests: msg.digests.len() });
            }
            let addr = self.writer(msg.kind, msg.wid)?.addr.clone();
            let mut reused = 0;
            let entries = msg
                .digests
                .iter()
                .zip(&msg.offsets)
                .map(|(d, &offset)| match self.known.get(d) {
                    Some(&(len, uploaded)) => {
                        reused += u64::from(!uploaded);
                        Ok(AppendEntry { offset, digest: *d, len })
                    }
                    None => Err(SessionError::NoSuchChunk(d.to_hex())),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((addr, entries, reused))
        })();
        let (addr, entries, reused) = or_reply!(prepared);
        Box::pin(
            async move {
                addr.send(AppendChunks { entries }).await??;
                metrics::counter!(m::CHUNKS_REUSED).increment(reused);
                Ok(())
            }
            .into_actor(self),
        )
    }
}

/// `POST *_close`.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), SessionError>")]
pub struct CloseWriter {
    pub kind: IndexKind,
    pub wid: u64,
    pub chunk_count: u64,
    pub size: u64,
    pub csum: String,
}

impl Handler<CloseWriter> for SessionActor {
    type Result = Reply<()>;

    fn handle(&mut self, msg: CloseWriter, _: &mut Context<Self>) -> Self::Result {
        or_reply!(self.ensure_unfinished());
        let addr = match self.writer(msg.kind, msg.wid) {
            Ok(w) => {
                // Stays listed (so finish sees it open) until the file is written.
                w.closing = true;
                w.addr.clone()
            }
            Err(e) => return ready(Err(e)),
        };
        let wid = msg.wid;
        let close = CloseIndex { chunk_count: msg.chunk_count, size: msg.size, csum: msg.csum };
        Box::pin(async move { addr.send(close).await? }.into_actor(self).map(move |r, act, _| {
            // Removed on failure too, as the reference does.
            act.writers.remove(&wid);
            r?;
            act.file_counter += 1;
            Ok(())
        }))
    }
}

/// `POST /blob`: the CRC is checked here (off-thread), the length by the router.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), SessionError>")]
pub struct UploadBlob {
    pub name: ArchiveName,
    pub blob: Bytes,
}

impl Handler<UploadBlob> for SessionActor {
    type Result = Reply<()>;

    fn handle(&mut self, msg: UploadBlob, _: &mut Context<Self>) -> Self::Result {
        let txn = or_reply!(self.ensure_unfinished());
        let is_manifest = msg.name.as_str() == MANIFEST_NAME;
        let UploadBlob { name, blob } = msg;
        let files = self.pipeline.files.clone();
        let work = async move {
            files
                .run(move || {
                    crate::format::blob::check_crc(&blob)?;
                    // The manifest is held until finish rewrites it: a snapshot must not look
                    // finished (formats.md 5.5) before it is.
                    if !is_manifest {
                        txn.write_file(&name, &blob)?;
                    }
                    Ok::<_, SessionError>(blob)
                })
                .await?
        };
        Box::pin(work.into_actor(self).map(move |r, act, _| {
            let blob = r?;
            act.still_open()?;
            if is_manifest {
                act.manifest = Some(blob);
            }
            act.file_counter += 1;
            Ok(())
        }))
    }
}

/// `GET /previous`: a file of the base snapshot; an index's chunks become known.
#[derive(Debug, Message)]
#[rtype(result = "Result<Bytes, SessionError>")]
pub struct DownloadPrevious {
    pub name: ArchiveName,
}

impl Handler<DownloadPrevious> for SessionActor {
    type Result = Reply<Bytes>;

    fn handle(&mut self, msg: DownloadPrevious, _: &mut Context<Self>) -> Self::Result {
        let txn = or_reply!(self.ensure_unfinished());
        if txn.base.is_none() {
            return ready(Err(SessionError::NoPreviousBackup));
        }
        let files = self.pipeline.files.clone();
        let work = async move { files.run(move || previous::load(&txn, &msg.name)).await? };
        Box::pin(work.into_actor(self).map(|r, act, _| {
            let PreviousFile { raw, chunks } = r?;
            act.still_open()?;
            for (digest, len) in chunks {
                act.known.entry(digest).or_insert((len, false));
            }
            Ok(raw)
        }))
    }
}

/// `GET /previous_backup_time`.
#[derive(Debug, Message)]
#[rtype(result = "Option<i64>")]
pub struct PreviousBackupTime;

impl Handler<PreviousBackupTime> for SessionActor {
    type Result = Option<i64>;

    fn handle(&mut self, _: PreviousBackupTime, _: &mut Context<Self>) -> Option<i64> {
        self.txn.as_ref()?.base.as_ref().map(|b| b.snapshot.time.epoch())
    }
}

/// `POST /finish`.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), SessionError>")]
pub struct FinishBackup;

impl Handler<FinishBackup> for SessionActor {
    type Result = Reply<()>;

    fn handle(&mut self, _: FinishBackup, _: &mut Context<Self>) -> Self::Result {
        let checked = (|| {
            self.ensure_unfinished()?;
            if !self.writers.is_empty() {
                return Err(SessionError::OpenWriters);
            }
            if self.file_counter == 0 {
                return Err(SessionError::NoFiles);
            }
            let Some(manifest) = self.manifest.clone() else {
                let path = self.txn.as_ref().map(|t| t.path.join(MANIFEST_NAME)).unwrap_or_default();
                return Err(SessionError::Manifest(format!(
                    "unable to load blob '{}' - No such file or directory (os error 2)",
                    path.display()
                )));
            };
            Ok(manifest)
        })();
        let manifest = or_reply!(checked);
        if self.benchmark {
            // Benchmark sessions never persist: the transaction is dropped at session end.
            self.finished = true;
            return ready(Ok(()));
        }
        let txn = match Arc::try_unwrap(self.txn.take().expect("checked unfinished")) {
            Ok(txn) => txn,
            Err(shared) => {
                self.txn = Some(shared);
                return ready(Err(SessionError::Internal("snapshot still in use by a writer".into())));
            }
        };
        self.finishing = true;
        let (finisher, stats) = (self.pipeline.finisher.clone(), self.stats);
        let work = async move { finisher.ask(CommitSnapshot { txn, manifest, stats }).await };
        Box::pin(work.into_actor(self).map(|r, act, _| {
            act.finishing = false;
            match r? {
                Ok(()) => {
                    act.finished = true;
                    Ok(())
                }
                Err(FinishFailed { error, txn }) => {
                    act.txn = Some(Arc::new(txn));
                    Err(error)
                }
            }
        }))
    }
}

/// The connection is gone: keep the snapshot if finished (and not a benchmark), else remove it.
/// Answers whether the snapshot was kept.
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub struct EndSession;

impl Handler<EndSession> for SessionActor {
    type Result = bool;

    fn handle(&mut self, _: EndSession, ctx: &mut Context<Self>) -> bool {
        // Dropping the last share of an uncommitted transaction removes the snapshot; open
        // writers drop theirs as soon as their actors stop.
        self.writers.clear();
        self.txn = None;
        ctx.stop();
        self.finished && !self.benchmark
    }
}
