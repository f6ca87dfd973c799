//! HTTP/2 sessions after the upgrade: raw requests (for tests of error paths) and typed calls
//! for every backup and reader endpoint, with the real client's content types and envelopes.

use bytes::{Bytes, BytesMut};
use http::{Method, Request, header};
use serde_json::json;
use tokio::task::JoinHandle;

use crate::client::{ClientError, Response, encode_query};
use crate::format::Digest;

/// The real client's HTTP/2 settings (protocol.md 1.4).
pub const CLIENT_WINDOW: u32 = 2_147_483_646;
pub const CLIENT_MAX_FRAME: u32 = 4 * 1024 * 1024;
/// The literal `:authority` the real client always sends.
const AUTHORITY: &str = "localhost:8007";

/// Client side of the HTTP/2 handshake on an upgraded stream; the connection runs on its own
/// task until the session is dropped.
pub async fn h2_handshake<IO>(io: IO) -> Result<(h2::client::SendRequest<Bytes>, JoinHandle<()>), ClientError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = h2::client::Builder::new()
        .initial_window_size(CLIENT_WINDOW)
        .initial_connection_window_size(CLIENT_WINDOW)
        .max_frame_size(CLIENT_MAX_FRAME)
        .handshake(io)
        .await?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok((send, task))
}

/// Parameters of `GET /api2/json/backup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupParams {
    pub store: String,
    pub ns: Option<String>,
    pub backup_type: String,
    pub backup_id: String,
    pub backup_time: i64,
    pub debug: bool,
    pub benchmark: bool,
}

impl BackupParams {
    /// A real (non-benchmark) backup, as the CLI starts it.
    pub fn new(store: &str, backup_type: &str, backup_id: &str, backup_time: i64) -> Self {
        BackupParams {
            store: store.into(),
            ns: None,
            backup_type: backup_type.into(),
            backup_id: backup_id.into(),
            backup_time,
            debug: true,
            benchmark: false,
        }
    }

    /// `proxmox-backup-client benchmark`: `host/benchmark`, debug off.
    pub fn benchmark(store: &str, backup_time: i64) -> Self {
        BackupParams { debug: false, benchmark: true, ..Self::new(store, "host", "benchmark", backup_time) }
    }

    pub fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = vec![
            ("backup-id", self.backup_id.clone()),
            ("backup-time", self.backup_time.to_string()),
            ("backup-type", self.backup_type.clone()),
            ("benchmark", self.benchmark.to_string()),
            ("debug", self.debug.to_string()),
            ("store", self.store.clone()),
        ];
        if let Some(ns) = &self.ns {
            q.push(("ns", ns.clone()));
        }
        q
    }
}

/// Parameters of `GET /api2/json/reader`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderParams {
    pub store: String,
    pub ns: Option<String>,
    pub backup_type: String,
    pub backup_id: String,
    pub backup_time: i64,
}

impl ReaderParams {
    pub fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = vec![
            ("backup-id", self.backup_id.clone()),
            ("backup-time", self.backup_time.to_string()),
            ("backup-type", self.backup_type.clone()),
            ("debug", "true".to_string()),
            ("store", self.store.clone()),
        ];
        if let Some(ns) = &self.ns {
            q.push(("ns", ns.clone()));
        }
        q
    }
}

/// One HTTP/2 connection; cheap to clone, so requests can be pipelined from several tasks.
#[derive(Clone)]
pub struct H2Conn {
    send: h2::client::SendRequest<Bytes>,
}

impl H2Conn {
    pub fn new(send: h2::client::SendRequest<Bytes>) -> Self {
        H2Conn { send }
    }

    /// One request: `path` without `/api2/json`, `query` already encoded, no content-length,
    /// the body sent as the window allows; the whole response body read.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        query: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<Response, ClientError> {
        let uri = if query.is_empty() {
            format!("https://{AUTHORITY}{path}")
        } else {
            format!("https://{AUTHORITY}{path}?{query}")
        };
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::USER_AGENT, super::http::USER_AGENT)
            .header(header::CONTENT_TYPE, content_type)
            .body(())?;
        let mut send = self.send.clone().ready().await?;
        let (response, mut stream) = send.send_request(request, body.is_empty())?;
        let sent = if body.is_empty() { Ok(()) } else { send_body(&mut stream, body).await };
        // A server that refuses a body early answers, then resets the stream: the answer
        // (if it came) is what the caller wants to see, not the reset.
        let response = match response.await {
            Ok(r) => r,
            Err(e) => {
                sent?;
                return Err(e.into());
            }
        };
        let status = response.status();
        let mut recv = response.into_body();
        let mut all = BytesMut::new();
        while let Some(data) = recv.data().await {
            let data = data?;
            let _ = recv.flow_control().release_capacity(data.len());
            all.extend_from_slice(&data);
        }
        Ok(Response { status, body: all.freeze() })
    }

    async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Response, ClientError> {
        self.request(Method::GET, path, &encode_query(query), Bytes::new(), FORM).await
    }

    /// A GET whose successful body is the answer itself (a file or a chunk), not JSON.
    async fn download(&self, path: &str, param: (&str, String)) -> Result<Bytes, ClientError> {
        self.get(path, &[param]).await?.raw()
    }

    async fn post(&self, path: &str, query: &[(&str, String)], body: Bytes) -> Result<Response, ClientError> {
        let content_type = if body.is_empty() { FORM } else { OCTETS };
        self.request(Method::POST, path, &encode_query(query), body, content_type).await
    }
}

/// Sends `data` as the rest of a stream, waiting for send capacity before each piece as the
/// real client does, so a pipelined upload never queues more than the window allows.
async fn send_body(stream: &mut h2::SendStream<Bytes>, mut data: Bytes) -> Result<(), h2::Error> {
    while !data.is_empty() {
        stream.reserve_capacity(data.len());
        let granted = match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
            Some(granted) => granted?,
            None => return Err(h2::Error::from(h2::Reason::CANCEL)),
        };
        if granted == 0 {
            continue;
        }
        let piece = data.split_to(granted.min(data.len()));
        stream.send_data(piece, data.is_empty())?;
    }
    Ok(())
}

const FORM: &str = "application/x-www-form-urlencoded";
const OCTETS: &str = "application/octet-stream";

/// Dynamic (`.didx`) or fixed (`.fidx`) index writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexKind {
    Dynamic,
    Fixed,
}

impl IndexKind {
    fn prefix(self) -> &'static str {
        match self {
            IndexKind::Dynamic => "dynamic",
            IndexKind::Fixed => "fixed",
        }
    }
}

/// An open backup session. Dropping it tears the connection down the way the real client
/// does after `finish` (no GOAWAY).
pub struct BackupSession {
    pub conn: H2Conn,
    pub params: BackupParams,
    _task: ConnTask,
}

/// The task driving a session's connection; aborted with the session.
struct ConnTask(JoinHandle<()>);

impl Drop for ConnTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl BackupSession {
    pub(crate) fn new(send: h2::client::SendRequest<Bytes>, task: JoinHandle<()>, params: BackupParams) -> Self {
        BackupSession { conn: H2Conn::new(send), params, _task: ConnTask(task) }
    }

    /// Any request, for tests of the error paths.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        query: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<Response, ClientError> {
        self.conn.request(method, path, query, body, content_type).await
    }

    pub async fn previous_backup_time(&self) -> Result<Option<i64>, ClientError> {
        let data = self.conn.get("/previous_backup_time", &[]).await?.data()?;
        match data {
            serde_json::Value::Null => Ok(None),
            v => v.as_i64().map(Some).ok_or_else(|| ClientError::Protocol(format!("unexpected backup time {v}"))),
        }
    }

    /// A file of the base snapshot, raw.
    pub async fn previous(&self, archive_name: &str) -> Result<Bytes, ClientError> {
        self.conn.download("/previous", ("archive-name", archive_name.to_string())).await
    }

    pub async fn create_dynamic_index(&self, archive_name: &str) -> Result<u64, ClientError> {
        let r = self.conn.post("/dynamic_index", &[("archive-name", archive_name.to_string())], Bytes::new()).await?;
        wid(r.data()?)
    }

    pub async fn create_fixed_index(
        &self,
        archive_name: &str,
        size: u64,
        reuse_csum: Option<&str>,
    ) -> Result<u64, ClientError> {
        let mut q = vec![("archive-name", archive_name.to_string())];
        if let Some(csum) = reuse_csum {
            q.push(("reuse-csum", csum.to_string()));
        }
        q.push(("size", size.to_string()));
        wid(self.conn.post("/fixed_index", &q, Bytes::new()).await?.data()?)
    }

    /// Uploads one encoded chunk; returns the digest the server echoes. Pipelinable: clone
    /// `conn` into tasks, or call concurrently.
    pub async fn upload_chunk(
        &self,
        kind: IndexKind,
        wid: u64,
        digest: &Digest,
        size: u64,
        blob: Bytes,
    ) -> Result<String, ClientError> {
        upload_chunk(&self.conn, kind, wid, digest, size, blob).await
    }

    /// `PUT /<kind>_index`: appends chunks (start offsets) in one JSON body.
    pub async fn append(
        &self,
        kind: IndexKind,
        wid: u64,
        digests: &[Digest],
        offsets: &[u64],
    ) -> Result<(), ClientError> {
        let body = json!({
            "wid": wid,
            "digest-list": digests.iter().map(Digest::to_hex).collect::<Vec<_>>(),
            "offset-list": offsets,
        });
        let body = Bytes::from(serde_json::to_vec(&body)?);
        let path = format!("/{}_index", kind.prefix());
        self.conn.request(Method::PUT, &path, "", body, "application/json").await?.data().map(drop)
    }

    pub async fn close(
        &self,
        kind: IndexKind,
        wid: u64,
        chunk_count: u64,
        size: u64,
        csum: &[u8; 32],
    ) -> Result<(), ClientError> {
        let q = [
            ("chunk-count", chunk_count.to_string()),
            ("csum", hex::encode(csum)),
            ("size", size.to_string()),
            ("wid", wid.to_string()),
        ];
        let path = format!("/{}_close", kind.prefix());
        self.conn.post(&path, &q, Bytes::new()).await?.data().map(drop)
    }

    /// `POST /blob` with an encoded DataBlob.
    pub async fn upload_blob(&self, file_name: &str, blob: Bytes) -> Result<(), ClientError> {
        let q = [("encoded-size", blob.len().to_string()), ("file-name", file_name.to_string())];
        self.conn.post("/blob", &q, blob).await?.data().map(drop)
    }

    pub async fn finish(&self) -> Result<(), ClientError> {
        self.conn.post("/finish", &[], Bytes::new()).await?.data().map(drop)
    }

    /// `POST /speedtest` as the benchmark sends it (form content type, arbitrary body).
    pub async fn speedtest(&self, body: Bytes) -> Result<serde_json::Value, ClientError> {
        self.conn.request(Method::POST, "/speedtest", "", body, FORM).await?.data()
    }
}

pub async fn upload_chunk(
    conn: &H2Conn,
    kind: IndexKind,
    wid: u64,
    digest: &Digest,
    size: u64,
    blob: Bytes,
) -> Result<String, ClientError> {
    let q = [
        ("digest", digest.to_hex()),
        ("encoded-size", blob.len().to_string()),
        ("size", size.to_string()),
        ("wid", wid.to_string()),
    ];
    let path = format!("/{}_chunk", kind.prefix());
    match conn.post(&path, &q, blob).await?.data()? {
        serde_json::Value::String(s) => Ok(s),
        v => Err(ClientError::Protocol(format!("chunk upload answered {v}"))),
    }
}

fn wid(v: serde_json::Value) -> Result<u64, ClientError> {
    v.as_u64().ok_or_else(|| ClientError::Protocol(format!("expected a writer id, got {v}")))
}

/// An open reader session.
pub struct ReaderSession {
    pub conn: H2Conn,
    _task: ConnTask,
}

impl ReaderSession {
    pub(crate) fn new(send: h2::client::SendRequest<Bytes>, task: JoinHandle<()>) -> Self {
        ReaderSession { conn: H2Conn::new(send), _task: ConnTask(task) }
    }

    pub async fn request(&self, method: Method, path: &str, query: &str) -> Result<Response, ClientError> {
        self.conn.request(method, path, query, Bytes::new(), FORM).await
    }

    /// `GET /download?file-name=..`: a file of the snapshot, raw.
    pub async fn download(&self, file_name: &str) -> Result<Bytes, ClientError> {
        self.conn.download("/download", ("file-name", file_name.to_string())).await
    }

    /// `GET /chunk?digest=..`: a chunk file as stored.
    pub async fn chunk(&self, digest: &Digest) -> Result<Bytes, ClientError> {
        self.conn.download("/chunk", ("digest", digest.to_hex())).await
    }
}

impl Response {
    /// The client's reading of a JSON answer: 2xx empty -> null, 2xx object -> its `data`.
    pub fn data(self) -> Result<serde_json::Value, ClientError> {
        self.check()?;
        if self.body.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        let mut v: serde_json::Value = serde_json::from_slice(&self.body)?;
        match v.get_mut("data") {
            Some(data) => Ok(data.take()),
            None => Err(ClientError::Protocol("got result without data property".into())),
        }
    }

    /// A download: 2xx body as it is.
    pub fn raw(self) -> Result<Bytes, ClientError> {
        self.check()?;
        Ok(self.body)
    }

    fn check(&self) -> Result<(), ClientError> {
        if self.status.is_success() {
            Ok(())
        } else {
            Err(ClientError::Status { status: self.status, message: String::from_utf8_lossy(&self.body).into_owned() })
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}
