//! HTTP/2 plumbing shared by the backup and reader sessions: the server side of the connection
//! that follows the protocol upgrade, request bodies with flow control, and sending replies.
//!
//! The routers (`protocol::backup`, `protocol::reader`) only see typed requests and return a
//! [`crate::http::Reply`]; how a reply becomes bytes is `crate::http`'s, shared with HTTP/1.1.

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Response, header};

use crate::config::LimitsConfig;
use crate::http::{BodyError, ReplyResult, encode_reply};

/// Largest header block we accept. The reference advertises hyper's 16 MiB, which lets one
/// client pin 16 MiB of decoded headers per stream; the real client's largest header is a
/// `:path` with a query of at most 4 KiB (protocol.md 7), so 128 KiB leaves ample room.
pub const MAX_HEADER_LIST_SIZE: u32 = 128 * 1024;

/// The connection-level receive window of one HTTP/2 connection: how many body bytes the
/// client may have sent that the server has not read yet. The router steers it (the backup
/// session opens it by what it reserved for a body, so the peer cannot push bytes the server
/// has no room for); [`serve`] applies every change to the connection.
#[derive(Debug)]
pub struct ConnWindow {
    target: Cell<u32>,
    changed: tokio::sync::Notify,
}

/// Window opened by [`ConnWindow::open`]: [`OpenWindow::consume`] closes it as its bytes are
/// read, the rest is closed when it is dropped.
#[derive(Debug)]
pub struct OpenWindow<'a> {
    window: &'a ConnWindow,
    bytes: u32,
}

/// The largest window HTTP/2 allows (RFC 9113 6.9.1).
const MAX_WINDOW: u32 = 0x7fff_ffff;
/// The smallest: the protocol's initial connection window, which a peer may always use.
const MIN_WINDOW: u32 = 65_535;

impl ConnWindow {
    /// A window of `initial` bytes until the router changes it.
    pub fn new(initial: u32) -> Rc<ConnWindow> {
        Rc::new(ConnWindow { target: Cell::new(initial.clamp(MIN_WINDOW, MAX_WINDOW)), changed: Default::default() })
    }

    pub fn target(&self) -> u32 {
        self.target.get()
    }

    /// Widens the window by `bytes` until the returned guard is dropped.
    pub fn open(&self, bytes: u64) -> OpenWindow<'_> {
        let before = self.target.get();
        let after = (u64::from(before) + bytes).min(u64::from(MAX_WINDOW)) as u32;
        self.set(after);
        OpenWindow { window: self, bytes: after - before }
    }

    fn set(&self, target: u32) {
        self.target.set(target);
        self.changed.notify_one();
    }
}

impl OpenWindow<'_> {
    /// `n` bytes of the opened window arrived and were read. Closing it by as much as h2 just
    /// got back keeps the peer's credit where it was: a read never turns into room for bytes
    /// that have no share (otherwise a client could re-send a whole share's worth right after).
    pub fn consume(&mut self, n: usize) {
        let n = (n as u64).min(u64::from(self.bytes)) as u32;
        if n > 0 {
            self.bytes -= n;
            let w = self.window;
            w.set(w.target.get().saturating_sub(n).max(MIN_WINDOW));
        }
    }
}

impl Drop for OpenWindow<'_> {
    fn drop(&mut self) {
        let n = self.bytes as usize;
        self.consume(n);
    }
}

/// Serves one HTTP/2 connection (server side, prior knowledge) until it ends. Each request
/// runs `handler` on its own local task so a slow upload never blocks the others. Stream and
/// connection windows stay at `limits.h2_window`.
pub async fn serve<IO, H, F>(io: IO, limits: &LimitsConfig, handler: H) -> Result<(), h2::Error>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
    H: Fn(http::Request<h2::RecvStream>) -> F + 'static,
    F: Future<Output = ReplyResult> + 'static,
{
    serve_steered(io, limits, ConnWindow::new(limits.h2_window), handler).await
}

/// [`serve`] with the connection window following `window` (streams start with
/// `limits.h2_window`).
pub async fn serve_steered<IO, H, F>(
    io: IO,
    limits: &LimitsConfig,
    window: Rc<ConnWindow>,
    handler: H,
) -> Result<(), h2::Error>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
    H: Fn(http::Request<h2::RecvStream>) -> F + 'static,
    F: Future<Output = ReplyResult> + 'static,
{
    let mut conn = h2::server::Builder::new()
        .initial_window_size(limits.h2_window)
        .initial_connection_window_size(window.target())
        // h2 ties its allowance for small DATA frames to the connection window unless told;
        // a window that shrinks after a large upload must not turn into ENHANCE_YOUR_CALM.
        .data_frame_budget(limits.h2_window as usize / 2)
        .max_frame_size(limits.h2_max_frame)
        .max_concurrent_streams(limits.max_streams)
        .max_header_list_size(MAX_HEADER_LIST_SIZE)
        .handshake::<_, Bytes>(io)
        .await?;
    let handler = Rc::new(handler);
    loop {
        let accepted = tokio::select! {
            biased;
            () = window.changed.notified() => {
                conn.set_target_window_size(window.target());
                continue;
            }
            accepted = conn.accept() => accepted,
        };
        let Some(accepted) = accepted else { break };
        let (request, respond) = accepted?;
        let handler = Rc::clone(&handler);
        tokio::task::spawn_local(async move {
            let reply = handler(request).await;
            // A stream the client reset or a connection that died: nobody is left to tell.
            let _ = send_reply(respond, reply);
        });
    }
    Ok(())
}

/// Reads a request body to its end, releasing flow-control capacity as it goes.
pub async fn read_body(body: &mut h2::RecvStream, max: usize) -> Result<Bytes, BodyError> {
    let mut parts: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    while let Some(data) = body.data().await {
        let data = data?;
        let _ = body.flow_control().release_capacity(data.len());
        total += data.len();
        if total > max {
            return Err(BodyError::TooLarge);
        }
        if !data.is_empty() {
            parts.push(data);
        }
    }
    // One frame (the common case for small requests) is passed on without a copy.
    Ok(match parts.len() {
        0 => Bytes::new(),
        1 => parts.pop().unwrap_or_default(),
        _ => {
            let mut all = BytesMut::with_capacity(total);
            for p in parts {
                all.extend_from_slice(&p);
            }
            all.freeze()
        }
    })
}

fn send_reply(mut respond: h2::server::SendResponse<Bytes>, reply: ReplyResult) -> Result<(), h2::Error> {
    let (status, content_type, body) = encode_reply(reply);
    let mut response = Response::new(());
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if body.is_empty() {
        respond.send_response(response, true)?;
        return Ok(());
    }
    // The body is already in memory; h2 frames it out of the same buffer as the client's
    // window allows, so queueing it whole costs no copy.
    let mut stream = respond.send_response(response, false)?;
    stream.send_data(body, true)
}
