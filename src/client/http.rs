//! The HTTP/1.1 side of the client: TLS connections, management calls over one kept-alive
//! connection, and the protocol upgrade that turns a fresh connection into an HTTP/2 session.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::client::session::{BackupParams, BackupSession, ReaderParams, ReaderSession, h2_handshake};
use crate::client::{ClientConfig, ClientError, Response, encode_query};

/// What the real client sends as user agent.
pub const USER_AGENT: &str = "proxmox-backup-client/1.0";
/// Characters the real client percent-encodes in a token secret.
const SECRET_ENCODE_SET: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'?')
    .add(b'{')
    .add(b'}');

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// A client of one server. Management calls share one keep-alive connection; every session
/// opens its own.
pub struct HttpClient {
    config: ClientConfig,
    tls: TlsConnector,
    conn: tokio::sync::Mutex<Option<Sender>>,
}

impl HttpClient {
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        let tls = TlsConnector::from(super::tls::pinned_config(&config.fingerprint)?);
        Ok(HttpClient { config, tls, conn: tokio::sync::Mutex::new(None) })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The `Authorization` header value for this client's token.
    pub fn auth_header(&self) -> String {
        let secret = percent_encoding::utf8_percent_encode(&self.config.secret, SECRET_ENCODE_SET);
        format!("PBSAPIToken {}:{}", self.config.authid, secret)
    }

    /// TCP + TLS to the server, pinned to the configured fingerprint.
    pub async fn connect_tls(&self) -> Result<TlsStream<TcpStream>, ClientError> {
        let tcp = tokio::time::timeout(std::time::Duration::from_secs(10), TcpStream::connect(self.config.addr))
            .await
            .map_err(|_| ClientError::Protocol("connect timed out".into()))??;
        tcp.set_nodelay(true)?;
        // SNI carries the host the user typed; for an address there is none, as with the real client.
        let name = rustls::pki_types::ServerName::IpAddress(self.config.addr.ip().into());
        Ok(self.tls.connect(name, tcp).await?)
    }

    /// A request on the management connection (kept alive; opened again when the server
    /// closed it). `target` is the request target exactly as it goes on the wire (e.g.
    /// `/api2/json/version` or `//api2/json/backup?...`). The token header is added when
    /// `auth` is set; `headers` come on top.
    pub async fn raw(
        &self,
        method: Method,
        target: &str,
        headers: &[(&str, &str)],
        body: Bytes,
        auth: bool,
    ) -> Result<Response, ClientError> {
        let request = self.build(method, target, headers, body, auth)?;
        let mut slot = self.conn.lock().await;
        let reusable = match slot.as_mut() {
            Some(sender) => sender.ready().await.is_ok(),
            None => false,
        };
        if !reusable {
            let tls = self.connect_tls().await?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            *slot = Some(sender);
        }
        let sender = slot.as_mut().expect("connection just made");
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Response { status, body })
    }

    fn build(
        &self,
        method: Method,
        target: &str,
        headers: &[(&str, &str)],
        body: Bytes,
        auth: bool,
    ) -> Result<Request<Full<Bytes>>, ClientError> {
        let uri = http::Uri::builder().path_and_query(target).build()?;
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::HOST, self.config.addr.to_string())
            .header(header::USER_AGENT, USER_AGENT)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Full::new(body))?;
        if auth {
            request.headers_mut().insert(header::AUTHORIZATION, HeaderValue::from_str(&self.auth_header())?);
        }
        for (name, value) in headers {
            request.headers_mut().insert(HeaderName::from_bytes(name.as_bytes())?, HeaderValue::from_str(value)?);
        }
        Ok(request)
    }

    /// Authenticated GET of `api2/json/<path>`; the `data` of a successful answer.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<serde_json::Value, ClientError> {
        let mut target = format!("/api2/json/{path}");
        if !query.is_empty() {
            target.push('?');
            target.push_str(&encode_query(query));
        }
        self.raw(Method::GET, &target, &[], Bytes::new(), true).await?.data()
    }

    /// `GET /api2/json/version`.
    pub async fn version(&self) -> Result<serde_json::Value, ClientError> {
        self.get("version", &[]).await
    }

    /// Opens a backup session: `GET //api2/json/backup?...` with the upgrade, then HTTP/2.
    pub async fn start_backup(&self, params: &BackupParams) -> Result<BackupSession, ClientError> {
        let target = format!("//api2/json/backup?{}", encode_query(&params.query()));
        let (send, task) = self.upgrade(&target, super::BACKUP_PROTOCOL).await?;
        Ok(BackupSession::new(send, task, params.clone()))
    }

    /// Opens a reader session: `GET //api2/json/reader?...` with the upgrade, then HTTP/2.
    pub async fn start_reader(&self, params: &ReaderParams) -> Result<ReaderSession, ClientError> {
        let target = format!("//api2/json/reader?{}", encode_query(&params.query()));
        let (send, task) = self.upgrade(&target, super::READER_PROTOCOL).await?;
        Ok(ReaderSession::new(send, task))
    }

    /// The upgrade on a fresh connection, headers as the real client sends them.
    pub async fn upgrade(
        &self,
        target: &str,
        protocol: &str,
    ) -> Result<(h2::client::SendRequest<Bytes>, tokio::task::JoinHandle<()>), ClientError> {
        let tls = self.connect_tls().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        let conn = tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        let request =
            self.build(Method::GET, target, &[("connection", "upgrade"), ("upgrade", protocol)], Bytes::new(), true)?;
        let response = sender.send_request(request).await?;
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            conn.abort();
            return Err(ClientError::Status { status, message: String::from_utf8_lossy(&body).into_owned() });
        }
        let upgraded = hyper::upgrade::on(response).await?;
        h2_handshake(TokioIo::new(upgraded)).await
    }
}
