//! The backup session router (`proxmox-backup-protocol-v1`, protocol.md 2): every endpoint of
//! 2.2 with its parameters, checks, answers and error texts. It parses and checks requests,
//! reads bodies under a per-session byte budget and a share of the server-wide in-flight bound,
//! and hands typed messages to the connection's `SessionActor`; nothing heavy runs here.
//!
//! Backpressure: a chunk or blob body is read only after its `encoded-size` has been taken from
//! the session's budget (sized to the HTTP/2 stream window) and from the server's
//! [`InflightBytes`]; both are held until the chunk is stored. The connection's receive window
//! starts at [`BASE_WINDOW`] and is opened by each share, and closed again byte for byte as
//! that body is read (reading never hands out new credit), so bytes with no share stay with
//! the client (HTTP/2 flow control) instead of in h2's buffers: memory held for bodies is at
//! most the in-flight bound plus `BASE_WINDOW` per session. The body is passed on by
//! ownership: as the HTTP/2 frame it arrived in when it came in one, else joined once into a
//! buffer of the announced size.
//!
//! Limit of this scheme: the window a share opens is the connection's, not its stream's, so a
//! client that sends another stream's bytes first makes the stream holding the share wait for
//! data. Clients send stream data in the order they opened the streams (the real one keeps ≤ 7
//! uploads in flight), which is the order shares are granted in (both semaphores are FIFO).

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use actix::Addr;
use bytes::{Bytes, BytesMut};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::actors::session::*;
use crate::actors::{SessionError, StoreHandle};
use crate::failpoint;
use crate::format::{ArchiveKind, Authid, Namespace, SnapshotRef};
use crate::http::params::{MAX_PARAM_BODY, Params};
use crate::http::{ApiError, BodyError, RequestError};
use crate::http::{Reply, ReplyResult, Segments, normalize_path, parse_query};
use crate::metrics::{self as m, Stage};
use crate::protocol::h2::{ConnWindow, OpenWindow, read_body, serve_steered};
use crate::protocol::inflight::{InflightBytes, Reservation};
use crate::protocol::{ProtocolError, Sessions};

/// A backup begun by the upgrade, to be served once the connection is handed over.
pub struct BackupSessionStart {
    pub session: PendingSession,
    pub auth: Authid,
    pub benchmark: bool,
    pub debug: bool,
}

/// Begins the backup of `snapshot` (the reference's checks, its directory and locks) before
/// the upgrade answers 101. A benchmark session skips the owner check.
pub async fn begin(
    sessions: &Sessions,
    store: StoreHandle,
    ns: Namespace,
    snapshot: SnapshotRef,
    auth: &Authid,
    benchmark: bool,
) -> Result<PendingSession, ApiError> {
    Ok(PendingSession::begin(&sessions.pipeline, store, ns, snapshot, auth, benchmark).await?)
}

/// Largest decoded chunk (protocol.md 7).
const MAX_CHUNK: u64 = 16 * 1024 * 1024;
/// Largest chunk or blob body: a 16 MiB payload behind an encrypted header.
const MAX_ENCODED: u64 = MAX_CHUNK + 44;

/// Connection window of a backup session with no body share open: room for the parameter
/// bodies (≤ 64 KiB each) that need no share, and a head start for the next upload.
pub const BASE_WINDOW: u32 = 256 * 1024;

/// Requests being handled by all backup sessions (the `session` stage's queue depth).
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// `GET /` on the session.
const SUBDIRS: [&str; 11] = [
    "blob",
    "dynamic_chunk",
    "dynamic_close",
    "dynamic_index",
    "finish",
    "fixed_chunk",
    "fixed_close",
    "fixed_index",
    "previous",
    "previous_backup_time",
    "speedtest",
];

/// Runs a backup session on the upgraded connection. Finished: the snapshot was committed by
/// `finish`. Connection lost before that, or a benchmark: the snapshot is removed.
pub async fn serve_session<IO>(io: IO, start: BackupSessionStart, sessions: Sessions)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    let BackupSessionStart { session, auth, benchmark, debug } = start;
    let aborted = sessions.aborted();
    let Sessions { limits, inflight, .. } = sessions;
    let label = format!("{}", session.snapshot());
    let session = session.start(limits.max_session_index_bytes);
    let active = metrics::gauge!(m::SESSIONS_ACTIVE, m::LABEL_PROTOCOL => m::PROTOCOL_BACKUP);
    active.increment(1.0);
    tracing::info!(snapshot = %label, auth = %auth, benchmark, "backup session started");

    let budget = limits.h2_window.max(1);
    let window = ConnWindow::new(BASE_WINDOW.min(limits.h2_window));
    let router = Rc::new(Router {
        session: session.clone(),
        budget: Arc::new(Semaphore::new(budget as usize)),
        budget_max: budget,
        inflight,
        window: Rc::clone(&window),
        debug,
    });
    let served = serve_steered(io, &limits, window, move |req| {
        let router = Rc::clone(&router);
        async move { router.handle(req).await }
    });
    let ended = Sessions::until_aborted(aborted, served).await;

    let kept = session.send(EndSession).await.unwrap_or(false);
    let outcome = match (benchmark, kept) {
        (true, _) => m::OUTCOME_BENCHMARK,
        (false, true) => m::OUTCOME_FINISHED,
        (false, false) => m::OUTCOME_ABORTED,
    };
    metrics::counter!(m::SESSIONS, m::LABEL_PROTOCOL => m::PROTOCOL_BACKUP, m::LABEL_OUTCOME => outcome).increment(1);
    active.decrement(1.0);
    match (kept, ended) {
        (true, _) => tracing::info!(snapshot = %label, "backup finished"),
        (false, Err(e)) => {
            tracing::warn!(snapshot = %label, "backup session ended without finish ({e}); snapshot removed")
        }
        (false, Ok(())) => {
            tracing::info!(snapshot = %label, outcome, "backup session ended without finish; snapshot removed")
        }
    }
}

struct Router {
    session: Addr<SessionActor>,
    budget: Arc<Semaphore>,
    budget_max: u32,
    inflight: Arc<InflightBytes>,
    window: Rc<ConnWindow>,
    debug: bool,
}

/// What an upload holds from before its body is read until its chunk is stored.
struct Shares {
    _session: tokio::sync::OwnedSemaphorePermit,
    server: Reservation,
}

/// Why a sized body could not be read.
enum SizedBody {
    Larger(u64),
    Shorter(u64),
    Broken(h2::Error),
}

/// Bodies at least this long are kept as the HTTP/2 frame they arrived in (no copy). A frame
/// this large has an allocation of its own in h2's read buffer, so holding it pins nothing
/// else; smaller frames can share one with their neighbours and are copied out.
const KEEP_FRAME_MIN: usize = 64 * 1024;

/// Reads exactly `expected` bytes, releasing flow control as it goes and closing the window
/// the body's share opened by as much; stops as soon as more arrives. A body that came in one
/// large frame is passed on as that frame (the server's frame limit lets a whole chunk fit
/// one); otherwise the frames are joined into one buffer.
async fn read_sized(body: &mut h2::RecvStream, expected: usize, open: &mut OpenWindow<'_>) -> Result<Bytes, SizedBody> {
    let mut whole: Option<Bytes> = None;
    let mut joined = BytesMut::new();
    let mut len = 0usize;
    while let Some(data) = body.data().await {
        let data = data.map_err(SizedBody::Broken)?;
        let _ = body.flow_control().release_capacity(data.len());
        open.consume(data.len());
        len += data.len();
        if len > expected {
            return Err(SizedBody::Larger(len as u64));
        }
        if data.is_empty() {
            continue;
        }
        if whole.is_none() && joined.is_empty() && expected >= KEEP_FRAME_MIN {
            whole = Some(data);
            continue;
        }
        if joined.capacity() == 0 {
            joined.reserve(expected);
        }
        if let Some(first) = whole.take() {
            joined.extend_from_slice(&first);
        }
        joined.extend_from_slice(&data);
    }
    if len != expected {
        return Err(SizedBody::Shorter(len as u64));
    }
    Ok(whole.unwrap_or_else(|| joined.freeze()))
}

/// Reads and drops the rest of a body, counting it.
async fn drain(body: &mut h2::RecvStream) -> Result<u64, h2::Error> {
    let mut n = 0;
    while let Some(data) = body.data().await {
        let data = data?;
        let _ = body.flow_control().release_capacity(data.len());
        n += data.len() as u64;
    }
    Ok(n)
}

fn null() -> ReplyResult {
    Ok(Reply::Data(Value::Null))
}

impl Router {
    async fn handle(&self, req: http::Request<h2::RecvStream>) -> ReplyResult {
        let started = Instant::now();
        Stage::Session.set_queue_depth(IN_FLIGHT.fetch_add(1, Ordering::Relaxed) + 1);
        let (parts, mut body) = req.into_parts();
        // Empty path segments are dropped, as the reference router does; `AsSent` refuses nothing.
        let path = normalize_path(parts.uri.path(), Segments::AsSent).unwrap_or_default();
        let query = Params::from_query(parse_query(parts.uri.query()));
        let content_type =
            parts.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let (endpoint, result) = self.route(&parts.method, &path, query, content_type.as_deref(), &mut body).await;
        let status = match &result {
            Ok(_) => StatusCode::OK,
            Err(e) => e.status,
        };
        metrics::counter!(m::REQUESTS, m::LABEL_ENDPOINT => endpoint, m::LABEL_STATUS => status.as_str().to_owned())
            .increment(1);
        metrics::histogram!(m::REQUEST_DURATION, m::LABEL_ENDPOINT => endpoint).record(started.elapsed().as_secs_f64());
        Stage::Session.observe(started.elapsed());
        Stage::Session.set_queue_depth(IN_FLIGHT.fetch_sub(1, Ordering::Relaxed) - 1);
        if self.debug {
            tracing::debug!(method = %parts.method, path = %path, status = status.as_u16(), "backup request");
        }
        if let Err(e) = &result {
            metrics::counter!(m::ERRORS, m::LABEL_KIND => e.kind.label()).increment(1);
            if e.kind.is_io() {
                tracing::error!(method = %parts.method, path = %path, "backup request failed on disk I/O: {}", e.message);
            } else {
                tracing::info!(method = %parts.method, path = %path, "backup request failed: {}", e.message);
            }
        }
        result
    }

    async fn route(
        &self,
        method: &Method,
        path: &str,
        mut params: Params,
        content_type: Option<&str>,
        body: &mut h2::RecvStream,
    ) -> (&'static str, ReplyResult) {
        use IndexKind::{Dynamic, Fixed};
        if let Err(e) = failpoint::check("backup.request", path) {
            return ("failpoint", Err(ProtocolError::Injected(e).into()));
        }
        let sync = matches!(
            path,
            "/dynamic_index" | "/fixed_index" | "/dynamic_close" | "/fixed_close" | "/finish" | "/previous_backup_time"
        );
        if sync {
            let merged = match read_body(body, MAX_PARAM_BODY).await {
                Ok(b) => params.merge_body(content_type, &b),
                Err(BodyError::TooLarge) => Err(RequestError::BodyTooLarge.into()),
                Err(e) => Err(e.into()),
            };
            if let Err(e) = merged {
                return ("params", Err(e));
            }
        }
        match (method.as_str(), path) {
            ("GET", "/") => ("index", Ok(Reply::Data(json!(SUBDIRS.map(|s| json!({ "subdir": s })))))),
            ("POST", "/blob") => ("upload_blob", self.upload_blob(params, body).await),
            ("POST", "/dynamic_index") => ("dynamic_index", self.open_index(params, Dynamic).await),
            ("POST", "/fixed_index") => ("fixed_index", self.open_index(params, Fixed).await),
            ("PUT", "/dynamic_index") => ("dynamic_append", self.append(params, Dynamic).await),
            ("PUT", "/fixed_index") => ("fixed_append", self.append(params, Fixed).await),
            ("POST", "/dynamic_chunk") => ("upload_chunk", self.upload_chunk(params, Dynamic, body).await),
            ("POST", "/fixed_chunk") => ("upload_chunk", self.upload_chunk(params, Fixed, body).await),
            ("POST", "/dynamic_close") => ("dynamic_close", self.close(params, Dynamic).await),
            ("POST", "/fixed_close") => ("fixed_close", self.close(params, Fixed).await),
            ("POST", "/finish") => ("finish", self.ask(FinishBackup).await.map(|()| Reply::Data(Value::Null))),
            ("GET", "/previous") => ("previous", self.previous(params).await),
            ("GET", "/previous_backup_time") => {
                let t = self.session.send(PreviousBackupTime).await.map_err(|e| ProtocolError::SessionGone(e).into());
                ("previous_backup_time", t.map(|t| Reply::Data(json!(t))))
            }
            ("POST", "/speedtest") => {
                ("speedtest", drain(body).await.map_err(|e| BodyError::H2(e).into()).and_then(|_| null()))
            }
            (m, p) if SUBDIRS.iter().any(|s| p.strip_prefix('/') == Some(*s)) => {
                ("unknown", Err(RequestError::Method(m.to_string()).into()))
            }
            (_, p) => ("unknown", Err(RequestError::NoSuchPath(p.to_string()).into())),
        }
    }

    /// Sends a message whose answer is a `SessionError` result.
    async fn ask<M, T>(&self, msg: M) -> Result<T, ApiError>
    where
        M: actix::Message<Result = Result<T, SessionError>> + Send + 'static,
        T: Send + 'static,
        SessionActor: actix::Handler<M>,
    {
        Ok(self.session.send(msg).await.map_err(ProtocolError::SessionGone)??)
    }

    /// Waits for `encoded` bytes of the session's budget, then of the server's in-flight bound
    /// (each capped at its whole size, so one large chunk still progresses). Always in this
    /// order, so no two uploads wait for each other crosswise.
    async fn reserve(&self, encoded: u64) -> Result<Shares, ApiError> {
        let n = (encoded.min(u64::from(self.budget_max)) as u32).max(1);
        let session = self.budget.clone().acquire_many_owned(n).await.map_err(|_| ProtocolError::BudgetClosed)?;
        let server = self.inflight.reserve(encoded).await?;
        Ok(Shares { _session: session, server })
    }

    /// Reads a body of `expected` bytes with the connection window opened by its share.
    async fn read_shared(&self, shares: &Shares, body: &mut h2::RecvStream, expected: u64) -> Result<Bytes, SizedBody> {
        let mut open = self.window.open(shares.server.bytes());
        read_sized(body, expected as usize, &mut open).await
    }

    async fn upload_blob(&self, p: Params, body: &mut h2::RecvStream) -> ReplyResult {
        let name = p.archive("file-name", ArchiveKind::Blob)?;
        let expected = p.int("encoded-size", 12, MAX_ENCODED)?;
        let shares = self.reserve(expected).await?;
        let blob = match self.read_shared(&shares, body, expected).await {
            Ok(b) => b,
            Err(SizedBody::Broken(e)) => return Err(BodyError::H2(e).into()),
            Err(SizedBody::Shorter(got)) => return Err(SessionError::BlobLength { expected, got }.into()),
            Err(SizedBody::Larger(seen)) => {
                let got = seen + drain(body).await.map_err(BodyError::H2)?;
                return Err(SessionError::BlobLength { expected, got }.into());
            }
        };
        self.ask(UploadBlob { name, blob }).await?;
        null()
    }

    async fn open_index(&self, p: Params, kind: IndexKind) -> ReplyResult {
        let msg = match kind {
            IndexKind::Dynamic => OpenIndex { name: p.archive("archive-name", ArchiveKind::Dynamic)?, fixed: None },
            IndexKind::Fixed => {
                let name = p.archive("archive-name", ArchiveKind::Fixed)?;
                let size = p.int("size", 1, u64::MAX)?;
                OpenIndex { name, fixed: Some((size, p.opt_str("reuse-csum")?.map(str::to_owned))) }
            }
        };
        let wid = self.ask(msg).await?;
        Ok(Reply::Data(json!(wid)))
    }

    async fn upload_chunk(&self, p: Params, kind: IndexKind, body: &mut h2::RecvStream) -> ReplyResult {
        let wid = p.int("wid", 1, MAX_WID)?;
        let digest = p.digest("digest")?;
        let size = p.int("size", 1, MAX_CHUNK)?;
        let encoded = p.int("encoded-size", 13, MAX_ENCODED)?;
        // Held until the chunk is stored: this is what bounds the memory of bodies.
        let shares = self.reserve(encoded).await?;
        let blob = match self.read_shared(&shares, body, encoded).await {
            Ok(b) => b,
            Err(SizedBody::Broken(e)) => return Err(BodyError::H2(e).into()),
            Err(SizedBody::Larger(_)) => return Err(SessionError::ChunkLarger.into()),
            Err(SizedBody::Shorter(_)) => return Err(SessionError::ChunkSize.into()),
        };
        let digest = self.ask(UploadChunk { kind, wid, digest, size, blob }).await?;
        Ok(Reply::Data(json!(digest.to_hex())))
    }

    async fn append(&self, p: Params, kind: IndexKind) -> ReplyResult {
        let wid = p.int("wid", 1, MAX_WID)?;
        let digests = p.digest_list("digest-list")?;
        let offsets = p.offset_list("offset-list")?;
        self.ask(AppendIndex { kind, wid, digests, offsets }).await?;
        null()
    }

    async fn close(&self, p: Params, kind: IndexKind) -> ReplyResult {
        let wid = p.int("wid", 1, MAX_WID)?;
        // Dynamic indexes cannot be empty; an incremental fixed index may add nothing.
        let min = if kind == IndexKind::Dynamic { 1 } else { 0 };
        let chunk_count = p.int("chunk-count", min, u64::MAX)?;
        let size = p.int("size", min, u64::MAX)?;
        let csum = p.str("csum")?.to_owned();
        self.ask(CloseWriter { kind, wid, chunk_count, size, csum }).await?;
        null()
    }

    async fn previous(&self, p: Params) -> ReplyResult {
        let name = p.any_archive("archive-name")?;
        let raw = self.ask(DownloadPrevious { name }).await?;
        Ok(Reply::Raw(raw))
    }
}
