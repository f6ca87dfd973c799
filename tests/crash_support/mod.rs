//! The pieces of the crash test that are not about crashes: the real `chunkyard serve` as a
//! child process (started, awaited, killed), the backup contents of each generation, one
//! backup and one restore through the project client, and the on-disk walks the checks use.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chunkyard::client::{BackupOptions, BackupParams, ClientConfig, ClientError, HttpClient, ReaderParams};
use chunkyard::format::BackupTime;
use chunkyard::format::manifest::Manifest;
use chunkyard::testing::noise;
use serde_json::Value;

pub const STORE: &str = "store";
pub const FIXED: &str = "disk.img.fidx";
pub const DYNAMIC: &str = "root.pxar.didx";
pub const BLOB: &str = "qemu-server.conf.blob";
/// Average dynamic chunk size: small, so one backup writes a dozen chunks in little time.
pub const DYNAMIC_AVG: usize = 32 * 1024;

/// A running `chunkyard serve` on 127.0.0.1 with its output collected.
pub struct Serve {
    child: Child,
    pub addr: std::net::SocketAddr,
    pub metrics: std::net::SocketAddr,
    pub client: HttpClient,
    output: Arc<Mutex<Vec<String>>>,
    /// The threads copying stdout/stderr into `output`; joined once the process has ended, so
    /// its last words (the failpoint's line) are in `output` before anyone reads it.
    readers: Vec<std::thread::JoinHandle<()>>,
}

fn collect(r: impl Read + Send + 'static, out: Arc<Mutex<Vec<String>>>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            out.lock().unwrap().push(line);
        }
    })
}

impl Serve {
    /// Starts the binary on `data_dir` (whose `store/.chunks` exists, so start-up does not
    /// create 65536 directories), with `failpoints` armed if given, and waits until it listens.
    pub fn start(data_dir: &Path, failpoints: Option<&str>) -> Serve {
        Self::start_with(data_dir, failpoints, &[])
    }

    /// [`Serve::start`] with more `CHUNKYARD_*` configuration variables.
    pub fn start_with(data_dir: &Path, failpoints: Option<&str>, vars: &[(&str, &str)]) -> Serve {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chunkyard"));
        cmd.env_clear()
            .envs(vars.iter().copied())
            .env("CHUNKYARD_METRICS_LISTEN", "127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(spec) = failpoints {
            cmd.env("CHUNKYARD_FAILPOINTS", spec);
        }
        let mut child = cmd.spawn().expect("spawn chunkyard serve");
        let output = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), Arc::clone(&output)),
            collect(child.stderr.take().unwrap(), Arc::clone(&output)),
        ];
        let deadline = Instant::now() + Duration::from_secs(60);
        let (addr, metrics, fingerprint) = loop {
            let found = {
                let lines = output.lock().unwrap();
                let addr = lines.iter().find_map(|l| l.strip_prefix("chunkyard listening on ")?.trim().parse().ok());
                let metrics =
                    lines.iter().find_map(|l| l.split("http://").nth(1)?.split("/metrics").next()?.parse().ok());
                let fp =
                    lines.iter().find_map(|l| Some(l.strip_prefix("certificate fingerprint: ")?.trim().to_string()));
                match (addr, metrics, fp) {
                    (Some(a), Some(m), Some(f)) => Some((a, m, f)),
                    _ => None,
                }
            };
            if let Some(found) = found {
                break found;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("serve exited with {status} before listening:\n{}", output.lock().unwrap().join("\n"));
            }
            assert!(Instant::now() < deadline, "serve did not start:\n{}", output.lock().unwrap().join("\n"));
            std::thread::sleep(Duration::from_millis(10));
        };
        let token: Value =
            serde_json::from_slice(&std::fs::read(data_dir.join("etc/admin-token.json")).unwrap()).unwrap();
        let client = HttpClient::new(ClientConfig {
            addr,
            fingerprint,
            authid: token["tokenid"].as_str().unwrap().into(),
            secret: token["value"].as_str().unwrap().into(),
        })
        .unwrap();
        Serve { child, addr, metrics, client, output, readers }
    }

    /// Waits up to `limit` for the process to end (without blocking the runtime, whose tasks
    /// may be the ones driving the server to its end).
    pub async fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The pipes reach end-of-file now that their only writer is gone.
                self.readers.drain(..).for_each(|r| r.join().expect("output reader"));
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Asks the server to stop, as systemd or a container runtime does (SIGTERM).
    #[allow(unsafe_code)]
    pub fn terminate(&self) {
        // SAFETY: kill(2) on our own child's pid; no memory is passed.
        assert_eq!(unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) }, 0);
    }

    /// SIGKILLs the server from outside and waits for it; true if it was still running.
    pub fn kill(&mut self) -> bool {
        let running = self.child.try_wait().unwrap().is_none();
        let _ = self.child.kill();
        let status = self.child.wait().unwrap();
        assert!(!running || status.signal() == Some(libc::SIGKILL), "{status}");
        running
    }

    pub fn output(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    /// A counter's value in the server's Prometheus scrape (0 if absent).
    pub fn counter(&self, series: &str) -> f64 {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(self.metrics).unwrap();
        write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text.lines().filter(|l| l.starts_with(series)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What backup number `generation` of a group holds: a fixed archive of one full 4 MiB chunk
/// (changing every 16 generations) and a short one (changing every time), a dynamic archive
/// of which 256 KiB change every time (about ten new chunks, the rest reused), and a blob.
#[derive(Clone)]
pub struct Contents {
    pub fixed: Bytes,
    pub dynamic: Bytes,
    pub blob: Vec<u8>,
}

impl Contents {
    pub fn of(group_seed: u64, generation: u64) -> Contents {
        // One seed per (group, part, generation); part 0 is the group's unchanging base.
        let seed = |part: u64, generation: u64| group_seed.wrapping_mul(1 << 24) ^ (part << 20) ^ generation;
        // The big chunk is shared by all groups, so the store does not grow by 4 MiB a group.
        let mut fixed = big_chunk(generation / 16);
        fixed.extend(noise(96 << 10, seed(1, generation)));
        let mut dynamic = noise(768 << 10, seed(0, 0));
        let span = 256 << 10;
        let at = (generation as usize * (37 << 10)) % (dynamic.len() - span);
        dynamic[at..at + span].copy_from_slice(&noise(span, seed(2, generation)));
        let blob = format!("generation {generation} of group {group_seed}\n").repeat(20).into_bytes();
        Contents { fixed: fixed.into(), dynamic: dynamic.into(), blob }
    }
}

/// 4 MiB of noise for `era`, made once (unoptimised test code takes a while for 4 MiB).
fn big_chunk(era: u64) -> Vec<u8> {
    static MADE: Mutex<Option<(u64, Vec<u8>)>> = Mutex::new(None);
    let mut made = MADE.lock().unwrap();
    if made.as_ref().is_none_or(|(e, _)| *e != era) {
        *made = Some((era, noise(4 << 20, 1 + era)));
    }
    made.as_ref().unwrap().1.clone()
}

pub fn options() -> BackupOptions {
    BackupOptions { dynamic_avg: DYNAMIC_AVG, ..BackupOptions::default() }
}

/// What one backup saw of its base.
pub struct Done {
    pub manifest: Manifest,
    /// `backup-time` of the previous manifest the server offered.
    pub previous: Option<i64>,
    /// Dynamic chunks only appended because the base had them.
    pub reused: usize,
}

/// One backup of `id` at `time` in the real client's order.
pub async fn backup(client: &HttpClient, id: &str, time: i64, c: &Contents) -> Result<Done, ClientError> {
    let session = client.start_backup(&BackupParams::new(STORE, "host", id, time)).await?;
    let mut up = session.uploader(options()).await?;
    let previous = up.previous_manifest().map(|m| m.backup_time);
    up.fixed(FIXED, c.fixed.clone()).await?;
    let stats = up.dynamic(DYNAMIC, c.dynamic.clone()).await?;
    up.blob(BLOB, &c.blob).await?;
    let manifest = up.finish().await?;
    Ok(Done { manifest, previous, reused: stats.reused })
}

/// Restores every archive of a snapshot through a reader session and compares it with `c`.
pub async fn assert_restores(client: &HttpClient, id: &str, time: i64, c: &Contents) {
    let params = ReaderParams {
        store: STORE.into(),
        ns: None,
        backup_type: "host".into(),
        backup_id: id.into(),
        backup_time: time,
    };
    let reader = client.start_reader(&params).await.unwrap();
    let manifest = reader.manifest().await.unwrap();
    for (name, want) in [(FIXED, &c.fixed[..]), (DYNAMIC, &c.dynamic[..]), (BLOB, &c.blob[..])] {
        let got = reader.restore(&manifest, name).await.unwrap_or_else(|e| panic!("restore {id}/{time} {name}: {e}"));
        assert!(got[..] == *want, "{id}/{time} {name}: restored bytes differ");
    }
}

pub fn snapshot_dir(data_dir: &Path, id: &str, time: i64) -> PathBuf {
    data_dir.join(STORE).join("host").join(id).join(BackupTime::from_epoch(time).unwrap().dir_name())
}

/// Files below `dir` whose name is a temp name (`*.tmp_XXXXXX`), split into those in the
/// chunk store and elsewhere.
pub fn temp_files(dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let (mut chunks, mut other) = (Vec::new(), Vec::new());
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else if chunkyard::store::durable::is_tmp_name(&e.file_name().to_string_lossy()) {
                if p.components().any(|c| c.as_os_str() == ".chunks") { chunks.push(p) } else { other.push(p) }
            }
        }
    }
    (chunks, other)
}

/// Snapshot directories (`<type>/<id>/<time>`) below the datastore without `index.json.blob`.
pub fn unfinished_snapshots(store: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for ty in ["host", "vm", "ct"] {
        let Ok(groups) = std::fs::read_dir(store.join(ty)) else { continue };
        for g in groups.flatten().filter(|g| g.path().is_dir()) {
            for s in std::fs::read_dir(g.path()).unwrap().flatten().filter(|s| s.path().is_dir()) {
                if !s.path().join("index.json.blob").exists() {
                    out.push(s.path());
                }
            }
        }
    }
    out
}

/// Runs GC through the API and waits for its task to stop; returns the task's exit status.
pub async fn gc(client: &HttpClient) -> String {
    use http::Method;
    let upid = client.call(Method::POST, &format!("admin/datastore/{STORE}/gc"), &[], None).await.unwrap();
    let enc =
        percent_encoding::utf8_percent_encode(upid.as_str().unwrap(), percent_encoding::NON_ALPHANUMERIC).to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = client.call(Method::GET, &format!("nodes/localhost/tasks/{enc}/status"), &[], None).await.unwrap();
        if st["status"] == "stopped" {
            return st["exitstatus"].as_str().unwrap_or("").to_string();
        }
        assert!(Instant::now() < deadline, "GC did not finish: {st}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
