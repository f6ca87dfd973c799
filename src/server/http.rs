//! HTTP/1.1 on the TLS listener: the accept loop, per-connection TLS and hyper, request
//! normalisation (the 3072-byte limit here, path segments by `crate::http::normalize_path`),
//! authentication, routing to the upgrades and the management API (`api/`), and the one
//! conversion of `ApiError` into an HTTP/1.1 response.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::OwnedSemaphorePermit;

use crate::auth::Credentials;
use crate::format::Authid;
use crate::http::endpoint::{self, Endpoint};
use crate::http::{ApiError, ReplyResult, Segments, encode_reply, normalize_path};
use crate::metrics as m;
use crate::protocol::Sessions;
use crate::server::{Refused, ServerError, ServerState, upgrade};

/// Longest path + query the reference accepts.
pub const MAX_URI_LEN: usize = 3072;
/// TCP keepalive idle time of both PBS sides.
const TCP_KEEPALIVE_SECS: libc::c_int = 120;

pub type Body = Full<Bytes>;

/// What a connection task needs: the shared state and what the sessions share.
#[derive(Clone)]
pub struct Ctx {
    pub state: Arc<ServerState>,
    pub sessions: Sessions,
}

/// Accepts connections and deals them round-robin to the Arbiters until `shutdown`.
pub(super) async fn accept_loop(
    listener: std::net::TcpListener,
    ctx: Ctx,
    arbiters: &[actix_rt::Arbiter],
    shutdown: Option<tokio::sync::oneshot::Receiver<()>>,
) -> Result<(), ServerError> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let stop = async move {
        match shutdown {
            Some(rx) => {
                let _ = rx.await;
            }
            // Without an explicit shutdown channel this is the real service: stop on Ctrl-C or
            // on SIGTERM, which is how systemd and container runtimes ask a service to stop.
            None => wait_for_stop_signal().await,
        }
    };
    tokio::pin!(stop);
    let mut next = 0usize;
    loop {
        let (socket, _peer) = tokio::select! {
            _ = &mut stop => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = socket.set_nodelay(true);
        set_keepalive(&socket);
        let std_socket = match socket.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("unable to hand over connection: {e}");
                continue;
            }
        };
        let ctx = ctx.clone();
        arbiters[next % arbiters.len()].spawn_fn(move || {
            actix_rt::spawn(connection(ctx, std_socket));
        });
        next = next.wrapping_add(1);
    }
}

async fn wait_for_stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received, shutting down"),
                _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
            }
        }
        Err(e) => {
            tracing::warn!("unable to listen for SIGTERM ({e}); only Ctrl-C stops the server");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[allow(unsafe_code)]
fn set_keepalive(socket: &tokio::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    let on: libc::c_int = 1;
    let idle = TCP_KEEPALIVE_SECS;
    let size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: fd is a live socket; the option values are c_ints that outlive the calls.
    unsafe {
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, (&on as *const libc::c_int).cast(), size);
        libc::setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, (&idle as *const libc::c_int).cast(), size);
    }
}

/// One TLS connection, HTTP/1.1 until it ends or is upgraded.
async fn connection(ctx: Ctx, socket: std::net::TcpStream) {
    let Ok(socket) = tokio::net::TcpStream::from_std(socket) else {
        return;
    };
    let permit = Arc::clone(&ctx.state.connections).try_acquire_owned().ok();
    let limits = &ctx.state.config.limits;
    let handshake = Duration::from_secs(limits.tls_handshake_timeout_secs);
    let failed = |reason: &'static str| {
        metrics::counter!(m::TLS_HANDSHAKE_FAILURES, m::LABEL_REASON => reason).increment(1);
    };
    let tls = match tokio::time::timeout(handshake, ctx.state.tls.accept(socket)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!("TLS handshake failed: {e}");
            return failed(m::REASON_ERROR);
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            return failed(m::REASON_TIMEOUT);
        }
    };
    metrics::counter!(m::TLS_HANDSHAKES).increment(1);
    let idle = Duration::from_secs(limits.idle_timeout_secs);
    let busy = permit.is_none();
    let service = service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(handle(ctx, req, busy).await) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(idle)
        .keep_alive(true)
        .serve_connection(TokioIo::new(tls), service)
        .with_upgrades()
        .await;
    if let Err(e) = served {
        tracing::debug!("HTTP/1.1 connection ended: {e}");
    }
    drop::<Option<OwnedSemaphorePermit>>(permit);
}

/// Answers one HTTP/1.1 request.
pub async fn handle(ctx: Ctx, req: Request<Incoming>, busy: bool) -> Response<Body> {
    let uri_len = req.uri().path_and_query().map(|pq| pq.as_str().len()).unwrap_or(0);
    if uri_len > MAX_URI_LEN {
        return empty(StatusCode::URI_TOO_LONG);
    }
    if busy {
        return error_response(Refused::Busy.into());
    }
    let started = std::time::Instant::now();
    let (endpoint, result) = route(ctx, req).await;
    let response = result.unwrap_or_else(error_response);
    if endpoint != "upgrade" || response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = response.status().as_u16().to_string();
        metrics::counter!(m::REQUESTS, m::LABEL_ENDPOINT => endpoint, m::LABEL_STATUS => status).increment(1);
        metrics::histogram!(m::REQUEST_DURATION, m::LABEL_ENDPOINT => endpoint).record(started.elapsed().as_secs_f64());
    }
    response
}

/// Routes a request; also names the endpoint for the request metrics (never a raw path).
async fn route(ctx: Ctx, req: Request<Incoming>) -> (&'static str, Result<Response<Body>, ApiError>) {
    let path = match normalize_path(req.uri().path(), Segments::Decoded) {
        Ok(path) => path,
        Err(e) => return ("invalid", Err(e)),
    };
    let found = endpoint::find(req.method(), &path);
    let name = found.name;
    // Logging in is the one call that needs no credentials.
    if found.endpoint == Some(Endpoint::Login) {
        return (name, super::api::access::login(ctx, req).await);
    }
    let authid = match authenticate(&ctx, &req).await {
        Ok(authid) => authid,
        Err(e) => return (name, Err(e)),
    };
    let result = match found.endpoint {
        Some(Endpoint::BackupUpgrade) => upgrade::backup(ctx, req, authid).await,
        Some(Endpoint::ReaderUpgrade) => upgrade::reader(ctx, req, authid).await,
        _ => super::api::route(ctx, req, &path, found, authid).await,
    };
    (name, result)
}

async fn authenticate(ctx: &Ctx, req: &Request<Incoming>) -> Result<Authid, ApiError> {
    let headers = req.headers();
    let creds = Credentials {
        authorization: headers.get(header::AUTHORIZATION).map(HeaderValue::as_bytes),
        cookie: headers.get(header::COOKIE).map(HeaderValue::as_bytes),
        csrf: headers.get("csrfpreventiontoken").map(HeaderValue::as_bytes),
        is_get: req.method() == Method::GET,
    };
    Ok(ctx.state.auth.authenticate_request(creds).await?)
}

pub fn reply(result: ReplyResult) -> Response<Body> {
    let (status, content_type, body) = encode_reply(result);
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub fn error_response(e: ApiError) -> Response<Body> {
    reply(Err(e))
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}
