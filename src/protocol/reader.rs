//! The reader session (`proxmox-backup-reader-protocol-v1`, protocol.md 3): downloads of one
//! snapshot's files and of the chunks its indexes reference. The reading itself, the rule that
//! only chunks of downloaded indexes may be fetched, and the snapshot's shared lock belong to
//! the pipeline's [`SnapshotFiles`]; this router parses requests and answers.

use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::json;

use crate::actors::StoreHandle;
use crate::actors::reader::SnapshotFiles;
use crate::format::{Authid, Namespace, SnapshotRef};
use crate::http::params::Params;
use crate::http::{ApiError, Reply, ReplyResult, RequestError, Segments, normalize_path, parse_query};
use crate::metrics as m;
use crate::protocol::Sessions;
use crate::protocol::h2::serve;

/// Size of the `GET /speedtest` answer: 1 MiB of `A`.
pub const SPEEDTEST_LEN: usize = 1024 * 1024;

const SUBDIRS: [&str; 3] = ["chunk", "download", "speedtest"];

/// What the upgrade hands to the session: the snapshot, open and locked shared.
pub struct ReaderSessionStart {
    pub files: SnapshotFiles,
    pub auth: Authid,
}

/// Opens `snapshot` for a reader session (it must exist) before the upgrade answers 101. With
/// `only_owner`, the group must belong to that user.
pub async fn open(
    sessions: &Sessions,
    store: StoreHandle,
    ns: Namespace,
    snapshot: SnapshotRef,
    only_owner: Option<Authid>,
) -> Result<SnapshotFiles, ApiError> {
    Ok(SnapshotFiles::open(&sessions.pipeline, store, ns, snapshot, only_owner).await?)
}

/// Serves a reader session until the client drops the connection. Nothing is persisted.
pub async fn serve_session<IO>(io: IO, start: ReaderSessionStart, sessions: Sessions)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    let ReaderSessionStart { files, auth } = start;
    let snapshot = files.snapshot().clone();
    let active = metrics::gauge!(m::SESSIONS_ACTIVE, m::LABEL_PROTOCOL => m::PROTOCOL_READER);
    active.increment(1.0);
    tracing::info!(snapshot = %snapshot, auth = %auth, "reader session started");
    let router = Rc::new(ReaderRouter { files });
    let served = serve(io, &sessions.limits, move |req| {
        let router = Rc::clone(&router);
        async move { router.handle(req).await }
    });
    let ended = Sessions::until_aborted(sessions.aborted(), served).await;
    if let Err(e) = ended {
        tracing::debug!(snapshot = %snapshot, "reader connection ended: {e}");
    }
    metrics::counter!(m::SESSIONS, m::LABEL_PROTOCOL => m::PROTOCOL_READER, m::LABEL_OUTCOME => m::OUTCOME_FINISHED)
        .increment(1);
    active.decrement(1.0);
}

pub(crate) struct ReaderRouter {
    files: SnapshotFiles,
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
                ("unknown", Err(RequestError::Method(m.to_string()).into()))
            }
            (_, p) => ("unknown", Err(RequestError::NoSuchPath(p.to_string()).into())),
        }
    }

    /// `GET /download?file-name=..`: the file exactly as stored.
    pub(crate) async fn download(&self, params: Params) -> ReplyResult {
        let name = params.any_archive("file-name")?;
        Ok(Reply::Raw(self.files.download(name).await?))
    }

    /// `GET /chunk?digest=..`: a chunk file unchanged, only for registered digests.
    pub(crate) async fn chunk(&self, params: Params) -> ReplyResult {
        let digest = params.digest("digest")?;
        Ok(Reply::Raw(self.files.chunk(digest).await?))
    }
}
