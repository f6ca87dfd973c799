//! One session's traffic: a backup in the real client's request order (writer, pipelined
//! chunk uploads, `PUT` batches of 64, close, manifest, finish), a restore over the reader
//! protocol, or speedtest uploads. Chunks come pre-encoded from the pool.
//!
//! Closed model: at most `in_flight` uploads outstanding per session. Open model: upload k of
//! a session is due at `start + k / rate`; its latency counts from that due time, not from when
//! it could actually be sent, so a stalled server shows up in the percentiles (coordinated
//! omission corrected, as wrk2 does).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chunkyard::client::session::upload_chunk;
use chunkyard::client::{
    BackupParams, CryptMode, Digest, DynamicIndex, FileEntry, FixedIndex, HttpClient, IndexKind, Manifest, ReaderParams,
};
use tokio::task::JoinSet;

use crate::data::{ArchiveKind, Workload};
use crate::stats::{Counters, Recorder};

const MANIFEST: &str = "index.json.blob";
const APPEND_BATCH: usize = 64;
/// Bound on outstanding requests per session in the open model (memory, not pacing).
const OPEN_MAX_OUTSTANDING: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Model {
    Closed {
        in_flight: usize,
    },
    /// Target chunk uploads per second, per session.
    Open {
        rate: f64,
    },
}

/// Who to talk to and which snapshot this session writes.
pub struct SessionCtx {
    pub client: Arc<HttpClient>,
    pub store: String,
    pub backup_id: String,
    pub backup_time: i64,
    pub session: usize,
    pub model: Model,
    /// Learn known chunks from the previous snapshot's index (incremental run).
    pub use_previous: bool,
}

type Upload = JoinSet<anyhow::Result<u32>>;

/// Backs up session `ctx.session` of the workload as one snapshot.
pub async fn backup(ctx: &SessionCtx, w: &Workload, rec: &Arc<Recorder>) -> anyhow::Result<()> {
    let plan = &w.plans[ctx.session];
    let params = BackupParams::new(&ctx.store, "host", &ctx.backup_id, ctx.backup_time);
    let t = Instant::now();
    let s = ctx.client.start_backup(&params).await?;
    rec.record("upgrade", t.elapsed());

    let mut known: HashSet<u32> = HashSet::new();
    if ctx.use_previous {
        known = previous_ids(&s, w, rec).await?;
    }
    let name = w.archive_name();
    let kind = match w.spec.kind {
        ArchiveKind::Fixed => IndexKind::Fixed,
        ArchiveKind::Dynamic => IndexKind::Dynamic,
    };
    let t = Instant::now();
    let wid = match kind {
        IndexKind::Fixed => s.create_fixed_index(name, plan.size, None).await?,
        IndexKind::Dynamic => s.create_dynamic_index(name).await?,
    };
    rec.record("create_index", t.elapsed());

    let c = &rec.counters;
    let mut running: Upload = JoinSet::new();
    let mut started: HashSet<u32> = HashSet::new();
    let mut pending: Vec<(u32, u64)> = Vec::new();
    let start = Instant::now();
    let mut due_count = 0u64;
    for (&id, &offset) in plan.ids.iter().zip(&plan.offsets) {
        let chunk = &w.pool[id as usize];
        Counters::add(&c.original_bytes, chunk.size);
        if known.contains(&id) || !started.insert(id) {
            Counters::add(&c.chunks_reused, 1);
        } else {
            let due = match ctx.model {
                Model::Closed { in_flight } => {
                    while running.len() >= in_flight.max(1) {
                        reap(&mut running, &mut known).await?;
                    }
                    None
                }
                Model::Open { rate } => {
                    let due = start + Duration::from_secs_f64(due_count as f64 / rate);
                    due_count += 1;
                    tokio::time::sleep_until(due.into()).await;
                    while running.len() >= OPEN_MAX_OUTSTANDING {
                        reap(&mut running, &mut known).await?;
                    }
                    Some(due)
                }
            };
            let (conn, rec) = (s.conn.clone(), rec.clone());
            let (digest, size, blob) = (chunk.digest, chunk.size, chunk.blob.clone());
            running.spawn(async move {
                let sent = Instant::now();
                let wire = blob.len() as u64;
                upload_chunk(&conn, kind, wid, &digest, size, blob).await?;
                rec.record("upload_chunk", due.unwrap_or(sent).elapsed());
                let c = &rec.counters;
                Counters::add(&c.chunks_uploaded, 1);
                Counters::add(&c.wire_bytes, wire);
                Counters::add(&c.uploaded_original_bytes, size);
                Ok(id)
            });
        }
        pending.push((id, offset));
        if pending.len() >= APPEND_BATCH {
            append(&s, kind, wid, w, &mut pending, &mut running, &mut known, rec).await?;
        }
    }
    append(&s, kind, wid, w, &mut pending, &mut running, &mut known, rec).await?;
    while !running.is_empty() {
        reap(&mut running, &mut known).await?;
    }

    let t = Instant::now();
    s.close(kind, wid, plan.ids.len() as u64, plan.size, &plan.csum).await?;
    rec.record("close", t.elapsed());
    let manifest = Manifest {
        backup_type: "host".into(),
        backup_id: ctx.backup_id.clone(),
        backup_time: ctx.backup_time,
        files: vec![FileEntry {
            filename: name.into(),
            crypt_mode: CryptMode::None,
            size: plan.size,
            csum: hex_of(&plan.csum),
        }],
        unprotected: serde_json::Map::new(),
        signature: None,
    };
    let t = Instant::now();
    s.upload_blob(MANIFEST, Bytes::from(manifest.to_blob())).await?;
    rec.record("upload_blob", t.elapsed());
    let t = Instant::now();
    s.finish().await?;
    rec.record("finish", t.elapsed());
    Counters::add(&c.sessions_done, 1);
    Ok(())
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn reap(running: &mut Upload, known: &mut HashSet<u32>) -> anyhow::Result<()> {
    if let Some(done) = running.join_next().await {
        known.insert(done??);
    }
    Ok(())
}

/// Appends the pending slots once every chunk in them is stored (the server refuses to
/// append a chunk it has not registered yet).
#[allow(clippy::too_many_arguments)]
async fn append(
    s: &chunkyard::client::BackupSession,
    kind: IndexKind,
    wid: u64,
    w: &Workload,
    pending: &mut Vec<(u32, u64)>,
    running: &mut Upload,
    known: &mut HashSet<u32>,
    rec: &Recorder,
) -> anyhow::Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    while pending.iter().any(|(id, _)| !known.contains(id)) {
        anyhow::ensure!(!running.is_empty(), "chunk neither known nor being uploaded");
        reap(running, known).await?;
    }
    let digests: Vec<Digest> = pending.iter().map(|(id, _)| w.pool[*id as usize].digest).collect();
    let offsets: Vec<u64> = pending.iter().map(|(_, o)| *o).collect();
    let t = Instant::now();
    s.append(kind, wid, &digests, &offsets).await?;
    rec.record("append", t.elapsed());
    pending.clear();
    Ok(())
}

/// Previous manifest and index, as the real client fetches them; the pool ids they contain.
async fn previous_ids(
    s: &chunkyard::client::BackupSession,
    w: &Workload,
    rec: &Recorder,
) -> anyhow::Result<HashSet<u32>> {
    let t = Instant::now();
    s.previous_backup_time().await?;
    s.previous(MANIFEST).await?;
    let raw = s.previous(w.archive_name()).await?;
    rec.record("previous", t.elapsed());
    let digests = index_digests(w.spec.kind, &raw)?;
    let by_digest = w.ids_by_digest();
    Ok(digests.iter().filter_map(|d| by_digest.get(d).copied()).collect())
}

fn index_digests(kind: ArchiveKind, raw: &[u8]) -> anyhow::Result<Vec<Digest>> {
    Ok(match kind {
        ArchiveKind::Fixed => FixedIndex::parse(raw)?.digests,
        ArchiveKind::Dynamic => DynamicIndex::parse(raw)?.entries.into_iter().map(|e| e.digest).collect(),
    })
}

/// Restores the session's snapshot: manifest, index, then every distinct chunk.
pub async fn restore(ctx: &SessionCtx, w: &Workload, rec: &Arc<Recorder>) -> anyhow::Result<()> {
    let params = ReaderParams {
        store: ctx.store.clone(),
        ns: None,
        backup_type: "host".into(),
        backup_id: ctx.backup_id.clone(),
        backup_time: ctx.backup_time,
    };
    let t = Instant::now();
    let r = ctx
        .client
        .start_reader(&params)
        .await
        .map_err(|e| anyhow::anyhow!("restore needs the reader protocol on the server, which refused it: {e}"))?;
    rec.record("reader_upgrade", t.elapsed());
    let t = Instant::now();
    r.download(MANIFEST).await?;
    let raw = r.download(w.archive_name()).await?;
    rec.record("download", t.elapsed());
    let mut seen = HashSet::new();
    let digests: Vec<Digest> = index_digests(w.spec.kind, &raw)?.into_iter().filter(|d| seen.insert(*d)).collect();
    let in_flight = request_limit(ctx.model);
    let by_digest = w.ids_by_digest();
    let mut running: JoinSet<anyhow::Result<()>> = JoinSet::new();
    for d in digests {
        while running.len() >= in_flight {
            running.join_next().await.expect("non-empty")??;
        }
        let (conn, rec) = (r.conn.clone(), rec.clone());
        let size = by_digest.get(&d).map_or(0, |&id| w.pool[id as usize].size);
        running.spawn(async move {
            let t = Instant::now();
            let q = chunkyard::client::encode_query(&[("digest", d.to_hex())]);
            let body = conn.request(http::Method::GET, "/chunk", &q, Bytes::new(), FORM).await?.raw()?;
            rec.record("chunk", t.elapsed());
            rec.counters.transferred(body.len() as u64, size);
            Ok(())
        });
    }
    drain(running, rec).await
}

/// Outstanding requests per session for restore and speedtest.
fn request_limit(model: Model) -> usize {
    match model {
        Model::Closed { in_flight } => in_flight.max(1),
        Model::Open { .. } => OPEN_MAX_OUTSTANDING,
    }
}

/// Waits for the rest of a session's requests and counts the session done.
async fn drain(mut running: JoinSet<anyhow::Result<()>>, rec: &Recorder) -> anyhow::Result<()> {
    while let Some(done) = running.join_next().await {
        done??;
    }
    Counters::add(&rec.counters.sessions_done, 1);
    Ok(())
}

const FORM: &str = "application/x-www-form-urlencoded";

/// `proxmox-backup-client benchmark`'s upload test: a benchmark session and `POST /speedtest`
/// with the pool's chunks as bodies, as many as the session's plan has slots.
pub async fn speedtest(ctx: &SessionCtx, w: &Workload, rec: &Arc<Recorder>) -> anyhow::Result<()> {
    let params = BackupParams::benchmark(&ctx.store, ctx.backup_time);
    let params = BackupParams { backup_id: ctx.backup_id.clone(), ..params };
    let t = Instant::now();
    let s = ctx.client.start_backup(&params).await?;
    rec.record("upgrade", t.elapsed());
    let in_flight = request_limit(ctx.model);
    let mut running: JoinSet<anyhow::Result<()>> = JoinSet::new();
    for &id in &w.plans[ctx.session].ids {
        while running.len() >= in_flight {
            running.join_next().await.expect("non-empty")??;
        }
        let (conn, rec) = (s.conn.clone(), rec.clone());
        let chunk = &w.pool[id as usize];
        let (body, size) = (chunk.blob.clone(), chunk.size);
        running.spawn(async move {
            let t = Instant::now();
            let wire = body.len() as u64;
            conn.request(http::Method::POST, "/speedtest", "", body, FORM).await?.data()?;
            rec.record("speedtest", t.elapsed());
            rec.counters.transferred(wire, size);
            Ok(())
        });
    }
    drain(running, rec).await
}
