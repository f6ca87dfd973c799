//! Command line: where to send load, the named scenarios, and the knobs that override them.

use std::net::SocketAddr;

use clap::{Parser, ValueEnum};

use crate::data::{ArchiveKind, DataSpec};
use crate::driver::Model;

#[derive(Debug, Parser)]
#[command(name = "chunkyard-loadtest", about = "Load generator for PBS-protocol servers (loopback only)")]
pub struct Args {
    /// `authid@host:port:store`, e.g. `admin@pbs!default@127.0.0.1:8007:store`.
    #[arg(long, env = "PBS_REPOSITORY")]
    pub repository: String,
    /// SHA-256 fingerprint of the server certificate.
    #[arg(long, env = "PBS_FINGERPRINT")]
    pub fingerprint: String,
    /// Token secret.
    #[arg(long, env = "PBS_PASSWORD", hide_env_values = true)]
    pub secret: String,
    /// Server process to charge CPU seconds and peak RSS to.
    #[arg(long)]
    pub server_pid: Option<u32>,

    /// A second server: the same workload runs alternately against both.
    #[arg(long)]
    pub against: Option<String>,
    #[arg(long, requires = "against")]
    pub against_fingerprint: Option<String>,
    #[arg(long, requires = "against", hide_env_values = true)]
    pub against_secret: Option<String>,
    #[arg(long, requires = "against")]
    pub against_server_pid: Option<u32>,
    /// Alternations with --against (A, B, A, B, ...).
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,

    #[arg(long, value_enum, default_value_t = Scenario::Custom)]
    pub scenario: Scenario,
    /// Multiplies the bytes per session of the scenario (e.g. 0.0625 for a quick run).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub sessions: Option<u64>,
    /// Archive size per session, MiB (before --scale).
    #[arg(long)]
    pub size_mib: Option<u64>,
    #[arg(long, value_enum)]
    pub kind: Option<ArchiveKind>,
    /// Dynamic archives: chunk sizes are uniform in [min, max] KiB.
    #[arg(long, default_value_t = 1024)]
    pub chunk_min_kib: u64,
    #[arg(long, default_value_t = 7168)]
    pub chunk_max_kib: u64,
    /// Share of text-like (compressible) chunks, 0..1.
    #[arg(long)]
    pub compressible: Option<f64>,
    /// Chance a chunk repeats one of the same session, 0..1.
    #[arg(long, default_value_t = 0.0)]
    pub dup_within: f64,
    /// Chance a chunk comes from the region all sessions share, 0..1.
    #[arg(long, default_value_t = 0.0)]
    pub dup_across: f64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Closed model: chunk uploads outstanding per session (the real client: 7).
    #[arg(long, default_value_t = 7)]
    pub in_flight: usize,
    /// Open model: target chunk uploads per second over all sessions (latency counted from
    /// each upload's due time).
    #[arg(long, conflicts_with = "in_flight")]
    pub rate: Option<f64>,
    /// Refuse workloads whose distinct chunks need more memory than this.
    #[arg(long, default_value_t = 4096)]
    pub max_pool_mib: u64,
    /// Print the final report as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Progress as Borg-style JSON lines on stderr.
    #[arg(long)]
    pub log_json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// 16 sessions x 1 GiB image, half compressible, all new.
    #[value(name = "ingest-16")]
    Ingest16,
    /// ingest-16 seeded unmeasured, then uploaded again: every chunk already stored.
    Dedup,
    /// 256 sessions x 64 MiB image.
    #[value(name = "many-256")]
    Many256,
    /// ingest-16 seeded unmeasured, then restored over the reader protocol.
    Restore,
    /// One benchmark session posting 1 GiB to /speedtest (the server locks `host/benchmark`,
    /// so benchmark sessions cannot run side by side).
    Speedtest,
    /// Only the flags.
    Custom,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One measured backup pass.
    Backup,
    /// Seed pass, then a measured pass that learns known chunks through `previous`.
    Incremental,
    /// Seed pass, then a measured pass uploading the same chunks again (server-side dedup).
    Dedup,
    /// Seed pass, then a measured restore of every snapshot.
    Restore,
    /// Measured `POST /speedtest` in benchmark sessions.
    Speedtest,
}

impl Mode {
    pub fn seeds(self) -> bool {
        matches!(self, Mode::Incremental | Mode::Dedup | Mode::Restore)
    }
}

/// One server to load.
#[derive(Debug, Clone)]
pub struct Target {
    pub label: String,
    pub addr: SocketAddr,
    pub authid: String,
    pub store: String,
    pub fingerprint: String,
    pub secret: String,
    pub pid: Option<u32>,
}

/// Parses `authid@host:port:store`; only loopback addresses are accepted.
pub fn parse_repository(repo: &str) -> anyhow::Result<(String, SocketAddr, String)> {
    let bad = || anyhow::anyhow!("repository '{repo}' is not authid@host:port:store");
    let (authid, rest) = repo.rsplit_once('@').ok_or_else(bad)?;
    let (hostport, store) = rest.rsplit_once(':').ok_or_else(bad)?;
    let host = hostport.replace("localhost", "127.0.0.1");
    let addr: SocketAddr = host.parse().map_err(|_| bad())?;
    anyhow::ensure!(addr.ip().is_loopback(), "refusing {addr}: load goes to loopback addresses only");
    anyhow::ensure!(!authid.is_empty() && !store.is_empty(), bad());
    Ok((authid.to_string(), addr, store.to_string()))
}

impl Args {
    pub fn targets(&self) -> anyhow::Result<Vec<Target>> {
        let (authid, addr, store) = parse_repository(&self.repository)?;
        let mut out = vec![Target {
            label: self.repository.clone(),
            addr,
            authid,
            store,
            fingerprint: self.fingerprint.clone(),
            secret: self.secret.clone(),
            pid: self.server_pid,
        }];
        if let Some(repo) = &self.against {
            let (authid, addr, store) = parse_repository(repo)?;
            out.push(Target {
                label: repo.clone(),
                addr,
                authid,
                store,
                fingerprint: self.against_fingerprint.clone().unwrap_or_default(),
                secret: self.against_secret.clone().unwrap_or_default(),
                pid: self.against_server_pid,
            });
        }
        Ok(out)
    }

    /// The scenario's defaults with every explicit flag on top.
    pub fn resolve(&self) -> anyhow::Result<(DataSpec, Mode, Model)> {
        let (sessions, mib, mode) = match self.scenario {
            Scenario::Ingest16 => (16, 1024, Mode::Backup),
            Scenario::Dedup => (16, 1024, Mode::Dedup),
            Scenario::Many256 => (256, 64, Mode::Backup),
            Scenario::Restore => (16, 1024, Mode::Restore),
            Scenario::Speedtest => (1, 1024, Mode::Speedtest),
            Scenario::Custom => (1, 64, Mode::Backup),
        };
        let sessions = self.sessions.map_or(sessions, |n| n as usize);
        let mib = self.size_mib.unwrap_or(mib);
        let bytes = ((mib << 20) as f64 * self.scale).max(1.0) as u64;
        for (name, v) in [
            ("--compressible", self.compressible.unwrap_or(0.5)),
            ("--dup-within", self.dup_within),
            ("--dup-across", self.dup_across),
        ] {
            anyhow::ensure!((0.0..=1.0).contains(&v), "{name} must be within 0..1");
        }
        anyhow::ensure!(self.dup_within + self.dup_across <= 1.0, "duplicate ratios add up to more than 1");
        anyhow::ensure!(
            self.chunk_min_kib >= 1 && self.chunk_min_kib <= self.chunk_max_kib,
            "need 1 <= --chunk-min-kib <= --chunk-max-kib"
        );
        anyhow::ensure!(self.chunk_max_kib <= 16 * 1024, "chunks are at most 16 MiB");
        let spec = DataSpec {
            seed: self.seed,
            sessions,
            bytes_per_session: bytes,
            kind: self.kind.unwrap_or(ArchiveKind::Fixed),
            chunk_min: self.chunk_min_kib << 10,
            chunk_max: self.chunk_max_kib << 10,
            compressible: self.compressible.unwrap_or(0.5),
            dup_within: self.dup_within,
            dup_across: self.dup_across,
        };
        let model = match self.rate {
            Some(rate) => {
                anyhow::ensure!(rate > 0.0, "--rate must be positive");
                Model::Open { rate: rate / sessions as f64 }
            }
            None => Model::Closed { in_flight: self.in_flight.max(1) },
        };
        let mode = self.mode.unwrap_or(mode);
        anyhow::ensure!(
            mode != Mode::Speedtest || sessions == 1,
            "speedtest runs one session: the server allows one benchmark session (host/benchmark) at a time"
        );
        Ok((spec, mode, model))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_parse_and_only_loopback_is_accepted() {
        let (a, addr, s) = parse_repository("admin@pbs!default@127.0.0.1:8007:store").unwrap();
        assert_eq!((a.as_str(), addr.port(), s.as_str()), ("admin@pbs!default", 8007, "store"));
        let (_, addr, _) = parse_repository("root@pam@[::1]:9:s").unwrap();
        assert!(addr.is_ipv6());
        assert!(parse_repository("root@pam@192.168.1.2:8007:s").is_err());
        assert!(parse_repository("127.0.0.1:8007:s").is_err());
    }

    #[test]
    fn scenarios_scale_and_flags_override() {
        let args = Args::parse_from([
            "x",
            "--repository",
            "a@pam@127.0.0.1:1:s",
            "--fingerprint",
            "f",
            "--secret",
            "s",
            "--scenario",
            "many-256",
            "--scale",
            "0.25",
            "--rate",
            "100",
        ]);
        let (spec, mode, model) = args.resolve().unwrap();
        assert_eq!((spec.sessions, spec.bytes_per_session, mode), (256, 16 << 20, Mode::Backup));
        assert_eq!(model, Model::Open { rate: 100.0 / 256.0 });
    }
}
