//! Server configuration: one TOML file (`config/chunkyard.toml` documents every key), the same
//! defaults embedded so `chunkyard serve` runs with no file, `CHUNKYARD_*` environment
//! overrides, and command-line flags on top.
//!
//! The struct below is the contract every module reads. Layering, the environment scheme and
//! the datastore registry are in `load.rs` and `registry.rs`; checks in `validate.rs`.

mod load;
mod registry;
mod validate;

pub use load::{Overrides, RESERVED_ENV, env_names, load, load_with};
pub use registry::{REGISTRY_FILE, read as read_registry, registry_path, render as render_registry};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct Config {
    /// Address of the TLS API listener (PBS uses port 8007 on all addresses).
    pub listen: SocketAddr,
    /// Where datastores, certificates and the user/token files live.
    pub data_dir: PathBuf,
    /// Datastore name -> path (relative paths are below `data_dir`).
    pub datastores: BTreeMap<String, PathBuf>,
    pub tls: TlsConfig,
    pub metrics: MetricsConfig,
    pub pipeline: PipelineConfig,
    pub limits: LimitsConfig,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct TlsConfig {
    /// PEM certificate chain; unset = `<data-dir>/etc/proxy.pem`, generated on first start.
    pub cert: Option<PathBuf>,
    /// PEM private key; unset = `<data-dir>/etc/proxy.key`, generated on first start.
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct MetricsConfig {
    pub enabled: bool,
    /// Prometheus scrape listener (plain HTTP, loopback by default).
    pub listen: SocketAddr,
}

/// How chunks are written to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FsyncPolicy {
    /// fsync every chunk file and its directory, every index and the manifest (default).
    File,
    /// one syncfs of the datastore at finish (PBS's default `filesystem` level).
    Filesystem,
    /// no explicit syncs (tests and benchmarks only).
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct PipelineConfig {
    /// Hasher/compressor actors; 0 = one per core.
    pub hashers: usize,
    /// Chunks waiting for or inside the hasher stage at once (its queue plus its threads).
    pub hasher_queue: usize,
    /// Chunks that may wait in the writer stage's queue.
    pub writer_queue: usize,
    /// io_uring submission queue depth of the chunk writer.
    pub uring_depth: u32,
    /// Use io_uring for chunk writes; false (or a failed setup) means plain file I/O.
    pub io_uring: bool,
    pub fsync: FsyncPolicy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct LimitsConfig {
    /// Backup and reader sessions open at once; more are refused with 503.
    pub max_sessions: usize,
    /// HTTP/2 concurrent streams per session.
    pub max_streams: u32,
    /// HTTP/2 initial stream window (PBS: 32 MiB); also the most chunk bytes one backup
    /// session may hold at once, and the connection window of reader sessions.
    pub h2_window: u32,
    /// HTTP/2 max frame size the server announces (PBS: 4 MiB). The default is HTTP/2's largest,
    /// so a whole chunk (up to 16 MiB plus its header) arrives in one frame and is passed on
    /// without being copied out of the read buffer.
    pub h2_max_frame: u32,
    /// Seconds a TLS handshake may take.
    pub tls_handshake_timeout_secs: u64,
    /// Seconds an HTTP/1.1 connection may sit idle before it is closed.
    pub idle_timeout_secs: u64,
    /// Chunk and blob bytes all backup sessions together may hold between reading a body and
    /// storing it; a backup session's HTTP/2 connection window only grows by what it reserved.
    pub max_inflight_bytes: u64,
    /// Bytes of index tables (fixed: 33 per 4 MiB slot of the announced size; dynamic: 40 per
    /// appended chunk) all backup sessions together may hold until their indexes are closed.
    pub max_index_bytes: u64,
    /// The same bound for one backup session.
    pub max_session_index_bytes: u64,
    /// Seconds a stopping server (SIGTERM, Ctrl-C) lets running sessions go on before it
    /// aborts them; it takes no new connections meanwhile.
    pub shutdown_grace_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        let mut datastores = BTreeMap::new();
        datastores.insert("store".to_string(), PathBuf::from("store"));
        Config {
            listen: "[::]:8007".parse().unwrap(),
            data_dir: PathBuf::from("./chunkyard-data"),
            datastores,
            tls: TlsConfig::default(),
            metrics: MetricsConfig::default(),
            pipeline: PipelineConfig::default(),
            limits: LimitsConfig::default(),
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { enabled: true, listen: "127.0.0.1:9807".parse().unwrap() }
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            hashers: 0,
            hasher_queue: 32,
            writer_queue: 64,
            uring_depth: 32,
            io_uring: true,
            fsync: FsyncPolicy::File,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_sessions: 512,
            max_streams: 256,
            h2_window: 32 * 1024 * 1024,
            h2_max_frame: 0xff_ffff,
            tls_handshake_timeout_secs: 10,
            idle_timeout_secs: 120,
            max_inflight_bytes: 512 * 1024 * 1024,
            max_index_bytes: 4 << 30,
            max_session_index_bytes: 1 << 30,
            shutdown_grace_secs: 30,
        }
    }
}

impl Config {
    /// Path of a datastore, resolved against `data_dir`.
    pub fn datastore_path(&self, name: &str) -> Option<PathBuf> {
        self.datastores.get(name).map(|p| if p.is_absolute() { p.clone() } else { self.data_dir.join(p) })
    }
    /// The datastore named in the admin token's repository and used by tests: the first
    /// configured one by name, else the default `store`.
    pub fn first_datastore(&self) -> String {
        self.datastores.keys().next().cloned().unwrap_or_else(|| "store".into())
    }
    /// `<data-dir>/etc`, where certificates, users, tokens and ACLs live.
    pub fn etc_dir(&self) -> PathBuf {
        self.data_dir.join("etc")
    }
}

#[cfg(test)]
mod tests;
