//! The reader session (`proxmox-backup-reader-protocol-v1`, protocol.md 3): downloads of one
//! snapshot's files and of the chunks its indexes reference.
//!
//! Chunk access is session-scoped on purpose: a reader may fetch only digests listed by an index
//! it downloaded in this session (pitfall 23), so holding read rights on one snapshot never
//! turns into reading arbitrary chunks of the store. Files are read on the blocking pool; the
//! snapshot's shared lock lives as long as the session so prune/forget cannot pull it away.

use std::cell::RefCell;
use std::collections::HashSet;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::json;

use crate::config::LimitsConfig;
use crate::format::dynamic_index::DynamicIndex;
use crate::format::fixed_index::FixedIndex;
use crate::format::{ArchiveKind, Authid, Digest};
use crate::http::params::Params;
use crate::http::{ApiError, Reply, ReplyResult, Segments, normalize_path, parse_query};
use crate::metrics as m;
use crate::protocol::h2::serve;
use crate::store::Datastore;
use crate::store::admin::SnapshotReader;

/// Size of the `GET /speedtest` answer: 1 MiB of `A`.
pub const SPEEDTEST_LEN: usize = 1024 * 1024;

const SUBDIRS: [&str; 3] = ["chunk", "download", "speedtest"];

/// What the upgrade hands to the session: the opened store, the snapshot and its shared lock.
pub struct ReaderSessionStart {
    pub store: Arc<Datastore>,
    /// The snapshot with its shared lock, held until the session ends.
    pub snapshot: SnapshotReader,
    pub auth: Authid,
}

/// Serves a reader session until the client drops the connection. Nothing is persisted.
pub async fn serve_session<IO>(io: IO, start: ReaderSessionStart, limits: LimitsConfig)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    let ReaderSessionStart { store, snapshot: reader, auth } = start;
    let snapshot = reader.snapshot.clone();
    let active = metrics::gauge!(m::SESSIONS_ACTIVE, m::LABEL_PROTOCOL => m::PROTOCOL_READER);
    active.increment(1.0);
    tracing::info!(snapshot = %snapshot, auth = %auth, "reader session started");
    let dir = reader.path.clone();
    let label = snapshot.rel_path();
    let router = Rc::new(ReaderRouter { store, dir, label, allowed: RefCell::new(HashSet::new()) });
    let ended = serve(io, &limits, move |req| {
        let router = Rc::clone(&router);
        async move { router.handle(req).await }
    })
    .await;
    if let Err(e) = ended {
        tracing::debug!(snapshot = %snapshot, "reader connection ended: {e}");
    }
    metrics::counter!(m::SESSIONS, m::LABEL_PROTOCOL => m::PROTOCOL_READER, m::LABEL_OUTCOME => m::OUTCOME_FINISHED)
        .increment(1);
    active.decrement(1.0);
    drop(reader);
}

pub(crate) struct ReaderRouter {
    store: Arc<Datastore>,
    /// Absolute snapshot directory.
    dir: PathBuf,
    /// `type/id/time`, used in error texts instead of the server's absolute paths.
    label: PathBuf,
    allowed: RefCell<HashSet<Digest>>,
}

impl ReaderRouter {
    async fn handle(&self, req: http::Request<h2::RecvStream>) -> ReplyResult {
        let started = Instant::now();
        let (parts, _body) = req.into_parts();
        // Empty path segments are dropped, as the reference router does; `AsSent` refuses nothing.
        let path = normalize_path(parts.uri.path(), Segments::AsSent).unwrap_or_default();
        let params = Params::from_query(parse_query(parts.uri.query()));
        let (endpoint, result) = self.route(&parts.method, &path, params).await;
        let status = result.as_ref().map(|_| StatusCode::OK).unwrap_or_else(|e| e.status);
        metrics::counter!(m::REQUESTS, m::LABEL_ENDPOINT => endpoint, m::LABEL_STATUS => status.as_str().to_owned())
            .increment(1);
        metrics::histogram!(m::REQUEST_DURATION, m::LABEL_ENDPOINT => endpoint).record(started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            tracing::info!(method = %parts.method, path = %path, "reader request failed: {}", e.message);
        }
        result
    }

    async fn route(&self, method: &Method, path: &str, params: Params) -> (&'static str, ReplyResult) {
        match (method.as_str(), path) {
            ("GET", "/") => ("index", Ok(Reply::Data(json!(SUBDIRS.map(|s| json!({ "subdir": s })))))),
            ("GET", "/download") => ("download", self.download(params).await),
            ("GET", "/chunk") => ("chunk", self.chunk(params).await),
            ("GET", "/speedtest") => ("speedtest", Ok(Reply::Raw(Bytes::from(vec![b'A'; SPEEDTEST_LEN])))),
            (m, p) if SUBDIRS.iter().any(|s| p.strip_prefix('/') == Some(*s)) => {
                ("unknown", Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("Unsupported method '{m}'"))))
            }
            (_, p) => ("unknown", Err(ApiError::no_such_path(p))),
        }
    }

    /// `GET /download?file-name=..`: an index is parsed first (and its digests become
    /// downloadable), then the file goes out exactly as stored.
    pub(crate) async fn download(&self, params: Params) -> ReplyResult {
        let name = params.any_archive("file-name")?;
        let path = self.dir.join(name.as_str());
        let shown = self.label.join(name.as_str());
        let kind = name.kind();
        let (bytes, digests) = blocking(move || -> Result<(Vec<u8>, Vec<Digest>), ApiError> {
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) if kind != ArchiveKind::Blob => {
                    return Err(ApiError::bad_request(format!("unable to open index {shown:?} - {e}")));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(ApiError::not_found(format!("open file {shown:?} failed - not found")));
                }
                Err(e) => return Err(ApiError::bad_request(format!("open file {shown:?} failed: {e}"))),
            };
            let bad = |e| ApiError::bad_request(format!("unable to open index {shown:?} - {e}"));
            let digests = match kind {
                ArchiveKind::Blob => Vec::new(),
                ArchiveKind::Fixed => FixedIndex::parse(&bytes).map_err(bad)?.digests,
                ArchiveKind::Dynamic => {
                    DynamicIndex::parse(&bytes).map_err(bad)?.entries.into_iter().map(|e| e.digest).collect()
                }
            };
            Ok((bytes, digests))
        })
        .await?;
        self.allowed.borrow_mut().extend(digests);
        Ok(Reply::Raw(Bytes::from(bytes)))
    }

    /// `GET /chunk?digest=..`: a chunk file unchanged, only for registered digests.
    pub(crate) async fn chunk(&self, params: Params) -> ReplyResult {
        let digest = params.digest("digest")?;
        if !self.allowed.borrow().contains(&digest) {
            return Err(ApiError::unauthorized(format!("download chunk {} not allowed", digest.to_hex())));
        }
        let store = Arc::clone(&self.store);
        let bytes = blocking(move || {
            let path = store.chunks().chunk_path(&digest);
            std::fs::read(&path).map_err(|e| {
                let shown = format!(".chunks/{}/{}", digest.prefix_dir(), digest.to_hex());
                ApiError::bad_request(format!("reading file {shown:?} failed: {e}"))
            })
        })
        .await?;
        Ok(Reply::Raw(Bytes::from(bytes)))
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::internal(format!("reader task failed - {e}")))?
}
