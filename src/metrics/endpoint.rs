//! The Prometheus recorder (process-wide, installed once) and the plain-HTTP scrape listener.
//!
//! The recorder comes from `metrics-exporter-prometheus`, configured with real histogram buckets
//! from [`super::CATALOGUE`]. The listener is our own small hyper server rather than the crate's:
//! the crate's listener cannot report the port it bound, and tests bind `127.0.0.1:0`. Several
//! servers in one process (tests) share the one recorder, each with its own listener.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot install the metrics recorder: {0}")]
    Recorder(String),
    #[error("cannot listen for metrics scrapes on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
}

/// The running scrape listener; dropping it stops the listener (the recorder stays).
#[derive(Debug)]
pub struct MetricsEndpoint {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MetricsEndpoint {
    /// The address actually bound (the real port when asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsEndpoint {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A builder with every histogram of the catalogue given its buckets.
pub(crate) fn builder() -> PrometheusBuilder {
    let mut b = PrometheusBuilder::new();
    for m in super::CATALOGUE.iter().filter(|m| m.kind == super::Kind::Histogram) {
        b = b
            .set_buckets_for_metric(Matcher::Full(m.name.to_string()), m.buckets)
            .expect("catalogue histograms have buckets");
    }
    b
}

static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

fn handle() -> Result<&'static PrometheusHandle, MetricsError> {
    HANDLE
        .get_or_init(|| {
            let recorder = builder().build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).map_err(|e| e.to_string())?;
            super::describe_all();
            super::record_build_info();
            // Upkeep drains histogram samples into buckets; without it they pile up between
            // scrapes.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .map_err(|e| e.to_string())?;
            Ok(handle)
        })
        .as_ref()
        .map_err(|e| MetricsError::Recorder(e.clone()))
}

/// The current scrape text, or `None` before [`install`].
pub fn render() -> Option<String> {
    HANDLE.get().and_then(|h| h.as_ref().ok()).map(|h| h.render())
}

/// Installs the recorder (first call only) and serves `GET /metrics` on `listen`.
pub fn install(listen: SocketAddr) -> Result<MetricsEndpoint, MetricsError> {
    install_watching(listen, Vec::new())
}

/// What the server calls at startup: nothing when `metrics.enabled` is false; otherwise
/// [`install`] on `metrics.listen`, sampling each configured datastore's file system into the
/// `chunkyard_datastore_*_bytes` gauges at every scrape.
pub fn install_for_config(config: &Config) -> Result<Option<MetricsEndpoint>, MetricsError> {
    if !config.metrics.enabled {
        return Ok(None);
    }
    let stores = config.datastores.keys().filter_map(|n| Some((n.clone(), config.datastore_path(n)?))).collect();
    install_watching(config.metrics.listen, stores).map(Some)
}

fn install_watching(listen: SocketAddr, stores: Vec<(String, PathBuf)>) -> Result<MetricsEndpoint, MetricsError> {
    let handle = handle()?.clone();
    let listener = std::net::TcpListener::bind(listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|source| MetricsError::Listen { addr: listen, source })?;
    let addr = listener.local_addr().map_err(|source| MetricsError::Listen { addr: listen, source })?;
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || serve(listener, Scrape { handle, stores: Arc::new(stores) }, stopped))
        .map_err(|source| MetricsError::Listen { addr, source })?;
    tracing::info!(%addr, "serving Prometheus metrics on http://{addr}/metrics");
    Ok(MetricsEndpoint { addr, stop: Some(stop), thread: Some(thread) })
}

/// What one scrape needs: the recorder's handle and the datastores to sample first.
#[derive(Clone)]
struct Scrape {
    handle: PrometheusHandle,
    stores: Arc<Vec<(String, PathBuf)>>,
}

impl Scrape {
    fn render(&self) -> String {
        super::sample_disk_usage(self.stores.iter().map(|(n, p)| (n.as_str(), p.as_path())));
        self.handle.render()
    }
}

fn serve(listener: std::net::TcpListener, scrape: Scrape, mut stopped: tokio::sync::oneshot::Receiver<()>) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return tracing::error!("metrics listener runtime: {e}"),
    };
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => return tracing::error!("metrics listener: {e}"),
        };
        loop {
            let stream = tokio::select! {
                _ = &mut stopped => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => { tracing::warn!("metrics accept: {e}"); continue; }
                },
            };
            let scrape = scrape.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| answer(req, scrape.clone()));
                let io = hyper_util::rt::TokioIo::new(stream);
                if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await {
                    tracing::debug!("metrics connection: {e}");
                }
            });
        }
    });
}

async fn answer(req: Request<Incoming>, scrape: Scrape) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, ctype, body) = match (req.method(), req.uri().path()) {
        (&hyper::Method::GET, "/metrics") => {
            (StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", scrape.render())
        }
        (&hyper::Method::GET, _) => (StatusCode::NOT_FOUND, "text/plain", "metrics are at /metrics\n".into()),
        _ => (StatusCode::METHOD_NOT_ALLOWED, "text/plain", "only GET\n".into()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(ctype));
    Ok(resp)
}
