//! The server: TLS listener, HTTP/1.1, authentication, the protocol upgrade, startup.
//!
//! `bind` does everything that can fail before serving (certificate, token store, listening
//! socket), so a caller learns the address and fingerprint before traffic starts; `serve` then
//! runs an actix System whose accept loop deals connections round-robin to one Arbiter per
//! core. A connection lives on one Arbiter from TLS to the end of its HTTP/2 session, so the
//! session's actors run on the thread that reads its socket. The pipeline the sessions share
//! is started by `serve` (through protocol/'s [`Sessions`]) and joined when serving ends. A stop
//! (SIGTERM, Ctrl-C) closes the listener, then lets the sessions end or aborts them
//! (`shutdown.rs`) before the Arbiters stop.

pub mod api;
pub mod http;
mod shutdown;
pub mod tls;
pub mod upgrade;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::auth::{self, files};
use crate::config::Config;
use crate::format::{Authid, DatastoreName};
use crate::http::{ErrorKind, HttpError};
use crate::protocol::Sessions;
use crate::protocol::inflight::InflightBytes;
use crate::store::{Datastore, DatastoreOptions};

/// How long shutdown waits for the pipeline to finish queued chunk writes and commits.
const PIPELINE_DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("unable to listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    #[error("datastore '{name}': {message}")]
    Datastore { name: String, message: String },
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Why the server turns a request away before an endpoint handles it.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// Step 4 of the upgrade, and any other lookup of a configured datastore.
    #[error("datastore '{0}' does not exist")]
    NoSuchDatastore(DatastoreName),
    /// Past `limits.max_sessions * 2` connections (at least 64): HTTP/1.1 answers only this.
    #[error("server busy - too many connections, try again later")]
    Busy,
    #[error("too many sessions - the server allows {0} at once, try again later")]
    TooManySessions(usize),
    /// A stopping server waits for its running sessions and starts no new one.
    #[error("server shutting down - try again later")]
    ShuttingDown,
}

impl HttpError for Refused {
    fn kind(&self) -> ErrorKind {
        match self {
            Refused::NoSuchDatastore(_) => ErrorKind::BadRequest,
            Refused::Busy | Refused::TooManySessions(_) | Refused::ShuttingDown => ErrorKind::Unavailable,
        }
    }
}

/// What every connection needs, shared by all Arbiters.
pub struct ServerState {
    pub config: Config,
    pub auth: Arc<auth::AuthStore>,
    pub tls: tokio_rustls::TlsAcceptor,
    pub fingerprint: String,
    /// Permits for open backup/reader sessions (`limits.max_sessions`).
    pub sessions: Arc<Semaphore>,
    /// Permits for HTTP/1.1 connections; past them a connection only gets 503 answers.
    pub connections: Arc<Semaphore>,
    /// Chunk bytes all backup sessions hold (`limits.max_inflight_bytes`).
    pub inflight: Arc<InflightBytes>,
    datastores: HashMap<String, Arc<Datastore>>,
}

impl ServerState {
    /// A configured datastore (all are opened at startup).
    pub fn datastore(&self, name: &DatastoreName) -> Result<Arc<Datastore>, Refused> {
        self.datastores.get(name.as_str()).cloned().ok_or_else(|| Refused::NoSuchDatastore(name.clone()))
    }
}

/// Opens every configured datastore, creating the layout of one that does not exist yet (PBS
/// creates `.chunks/0000..ffff` when a datastore is added; here that is the first start).
pub fn open_datastores(config: &Config) -> Result<HashMap<String, Arc<Datastore>>, ServerError> {
    let mut map = HashMap::new();
    for name in config.datastores.keys() {
        let root = config.datastore_path(name).expect("configured datastore has a path");
        let parsed = DatastoreName::parse(name)
            .map_err(|e| ServerError::Datastore { name: name.clone(), message: e.to_string() })?;
        let options = DatastoreOptions::from_config(&config.pipeline);
        let opened = if root.join(".chunks").is_dir() {
            Datastore::open_with(parsed, &root, &options)
        } else {
            tracing::info!(datastore = %name, path = %root.display(), "creating datastore");
            Datastore::create_with(parsed, &root, &options)
        };
        let ds = opened.map_err(|e| ServerError::Datastore { name: name.clone(), message: e.to_string() })?;
        map.insert(name.clone(), Arc::new(ds));
    }
    Ok(map)
}

/// Clears what a crash left in a datastore before it is served (store/recover.rs). A failure
/// here is logged, not fatal: leftovers are invisible to clients, an unserved datastore is not.
fn recover(name: &str, ds: &Datastore) {
    use crate::metrics as m;
    match ds.recover() {
        Ok(r) => {
            for (kind, n) in [
                (m::LEFTOVER_SNAPSHOT, r.snapshots.len()),
                (m::LEFTOVER_GROUP, r.groups.len()),
                (m::LEFTOVER_TEMP, r.temp_files.len()),
            ] {
                if n > 0 {
                    metrics::counter!(m::LEFTOVERS_REMOVED, m::LABEL_KIND => kind).increment(n as u64);
                }
            }
            if !r.is_empty() {
                tracing::info!(
                    datastore = %name,
                    snapshots = r.snapshots.len(),
                    groups = r.groups.len(),
                    temp_files = r.temp_files.len(),
                    "recovered from an earlier crash"
                );
            }
        }
        Err(e) => tracing::error!(datastore = %name, %e, "crash recovery failed; serving anyway"),
    }
}

/// A server ready to serve: everything that can fail at startup has been done.
pub struct Bound {
    listener: std::net::TcpListener,
    state: Arc<ServerState>,
    pub addr: SocketAddr,
    pub fingerprint: String,
    /// Token id and secret created on this start (first start only).
    pub bootstrap: Option<(Authid, String)>,
    pub admin_token_file: PathBuf,
    /// The Prometheus scrape listener (when enabled); lives as long as the server.
    pub metrics: Option<crate::metrics::MetricsEndpoint>,
}

/// Contents of `<data-dir>/etc/admin-token.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AdminToken {
    pub tokenid: String,
    pub value: String,
    pub fingerprint: String,
    pub repository: String,
}

/// Loads the certificate and token store, opens the datastores and clears crash leftovers in
/// them, bootstraps the first token, binds the listener.
pub fn bind(config: Config) -> Result<Bound, ServerError> {
    let etc = config.etc_dir();
    std::fs::create_dir_all(&etc)?;
    let tls = tls::load_or_generate(&config)?;
    let auth = auth::AuthStore::open(&etc)?;
    let datastores = open_datastores(&config)?;
    let metrics = crate::metrics::install_for_config(&config)?;
    for (name, ds) in &datastores {
        recover(name, ds);
    }
    let listener = std::net::TcpListener::bind(config.listen)
        .map_err(|source| ServerError::Listen { addr: config.listen, source })?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let admin_token_file = etc.join("admin-token.json");
    let mut bootstrap = None;
    auth.bootstrap(|authid, secret| {
        let store = config.first_datastore();
        let host = match addr.ip() {
            ip if ip.is_unspecified() => "localhost".to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        let token = AdminToken {
            tokenid: authid.to_string(),
            value: secret.to_string(),
            fingerprint: tls.fingerprint.clone(),
            repository: format!("{authid}@{host}:{}:{store}", addr.port()),
        };
        let json = serde_json::to_vec_pretty(&token).expect("token serializes");
        files::write_atomic(&admin_token_file, &json, 0o600)?;
        bootstrap = Some((authid.clone(), secret.to_string()));
        Ok(())
    })?;
    let limits = &config.limits;
    let state = Arc::new(ServerState {
        tls: tokio_rustls::TlsAcceptor::from(Arc::clone(&tls.config)),
        fingerprint: tls.fingerprint.clone(),
        auth,
        sessions: Arc::new(Semaphore::new(limits.max_sessions)),
        // Room for management calls next to a full house of sessions.
        connections: Arc::new(Semaphore::new(limits.max_sessions.saturating_mul(2).max(64))),
        inflight: InflightBytes::new(limits.max_inflight_bytes),
        datastores,
        config,
    });
    Ok(Bound { listener, state, addr, fingerprint: tls.fingerprint, bootstrap, admin_token_file, metrics })
}

impl Bound {
    /// The server's in-flight byte bound (tests watch its peak).
    pub fn inflight(&self) -> Arc<InflightBytes> {
        Arc::clone(&self.state.inflight)
    }

    /// Serves until `shutdown` fires (or, without one, until Ctrl-C). Blocking.
    pub fn serve(self, shutdown: Option<tokio::sync::oneshot::Receiver<()>>) -> Result<(), ServerError> {
        let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let sessions = Sessions::start(&self.state.config, Arc::clone(&self.state.inflight));
        let system = actix_rt::System::new();
        let arbiters: Vec<actix_rt::Arbiter> =
            system.block_on(async { (0..workers).map(|_| actix_rt::Arbiter::new()).collect() });
        let state = self.state;
        let ctx = http::Ctx { state: Arc::clone(&state), sessions: sessions.clone() };
        let result = system.block_on(async {
            let accepted = http::accept_loop(self.listener, ctx, &arbiters, shutdown).await;
            shutdown::stop_sessions(&state, &sessions).await;
            accepted
        });
        for arbiter in &arbiters {
            arbiter.stop();
        }
        for arbiter in arbiters {
            let _ = arbiter.join();
        }
        // The connections are gone: what the pipeline was given is finished before returning.
        if !sessions.shutdown(PIPELINE_DRAIN) {
            tracing::warn!("pipeline threads still busy {PIPELINE_DRAIN:?} after shutdown; leaving them");
        }
        drop(self.metrics);
        result
    }
}

/// `chunkyard serve`: bind, tell the operator where the first token is, serve until Ctrl-C.
pub fn run(config: Config) -> Result<(), ServerError> {
    let bound = bind(config)?;
    tracing::info!(addr = %bound.addr, fingerprint = %bound.fingerprint, "listening");
    println!("chunkyard listening on {}", bound.addr);
    println!("certificate fingerprint: {}", bound.fingerprint);
    if bound.bootstrap.is_some() {
        println!("first start: API token for admin@pbs written to {}", bound.admin_token_file.display());
    }
    bound.serve(None)
}
