//! `TestServer`: the real server on 127.0.0.1:0 with a temporary data directory, for
//! integration tests and benches. It runs `bind` + `serve` on its own thread (its own actix
//! System and Arbiters) exactly as `chunkyard serve` does; Drop stops it and removes the
//! directory. Also the pseudo-random data those tests back up.
//!
//! Behind the cargo feature `testing`: the harness starts servers and uses the client, so the
//! release library leaves it out; the package's dev-dependency on itself turns it on for its
//! tests and benches.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::client::ClientConfig;
use crate::config::Config;
use crate::protocol::inflight::InflightBytes;

pub struct TestServer {
    pub addr: SocketAddr,
    pub fingerprint: String,
    pub authid: String,
    pub secret: String,
    /// Name of the datastore the tests use.
    pub store: String,
    pub data_dir: PathBuf,
    pub config: Config,
    /// The Prometheus scrape listener of this server (loopback, own port).
    pub metrics_addr: Option<SocketAddr>,
    /// The server's in-flight byte bound, to watch its peak.
    pub inflight: Arc<InflightBytes>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub fn start() -> TestServer {
        Self::start_with(|_| {})
    }

    /// Starts with the test defaults (loopback, temp data dir, one datastore `store`, the
    /// metrics listener on 127.0.0.1:0) changed by `f`.
    pub fn start_with(f: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::Builder::new().prefix("chunkyard-test").tempdir().expect("temp dir");
        let mut config =
            Config { listen: "127.0.0.1:0".parse().unwrap(), data_dir: dir.path().to_path_buf(), ..Config::default() };
        config.metrics.listen = "127.0.0.1:0".parse().unwrap();
        // A test's server stops at once when dropped: sessions still open are aborted.
        config.limits.shutdown_grace_secs = 0;
        f(&mut config);
        // An empty `.chunks` makes the server open the store instead of creating 65536
        // directories per test; chunk directories are then made on demand.
        for name in config.datastores.keys() {
            let root = config.datastore_path(name).expect("configured");
            std::fs::create_dir_all(root.join(".chunks")).expect("create test datastore");
        }
        let store = config.first_datastore();
        let bound = crate::server::bind(config.clone()).expect("test server binds");
        let (authid, secret) = bound.bootstrap.clone().expect("fresh data dir bootstraps a token");
        let (addr, fingerprint) = (bound.addr, bound.fingerprint.clone());
        let metrics_addr = bound.metrics.as_ref().map(|m| m.addr());
        let inflight = bound.inflight();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("test-server".into())
            .spawn(move || {
                if let Err(e) = bound.serve(Some(rx)) {
                    eprintln!("test server failed: {e}");
                }
            })
            .expect("spawn test server");
        TestServer {
            addr,
            fingerprint,
            authid: authid.to_string(),
            secret,
            store,
            data_dir: dir.path().to_path_buf(),
            config,
            metrics_addr,
            inflight,
            shutdown: Some(tx),
            thread: Some(thread),
            _dir: dir,
        }
    }

    pub fn client_config(&self) -> ClientConfig {
        ClientConfig {
            addr: self.addr,
            fingerprint: self.fingerprint.clone(),
            authid: self.authid.clone(),
            secret: self.secret.clone(),
        }
    }

    /// Path of the test datastore.
    pub fn store_path(&self) -> PathBuf {
        self.config.datastore_path(&self.store).expect("test store configured")
    }
}

/// Deterministic, poorly compressible test data (xorshift64): the same `seed` gives the same
/// bytes on every machine, different seeds share no chunks.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
