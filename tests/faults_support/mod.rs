//! Shared by the fault tests (tests/faults.rs: injected ENOSPC/EIO; tests/faults_disk_full.rs:
//! a real full file system): the backups they run, a content map of the datastore that proves
//! a fault changed nothing that existed, and a metrics scrape.
//!
//! Every scenario is the same story: a seed snapshot exists; a "victim" backup of the same group
//! meets the fault while a "bystander" session on another group runs beside it; afterwards the
//! victim's client holds a clear error, the seed is byte-for-byte intact, nothing of the victim
//! is left but complete chunk files, the bystander finishes and a new backup of the group works.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use chunkyard::client::chunker::Chunker;
use chunkyard::client::{BackupOptions, ClientError, ReaderParams, Uploader};
use chunkyard::format::{BackupTime, Digest, blob};
use chunkyard::testing::TestServer;
use sha2::{Digest as _, Sha256};

use crate::backup_support::{T0, client, data, session};

/// The group the seed, the victim and the backup after the fault belong to.
pub const GROUP: &str = "vm-100";
/// The bystander's group.
pub const OTHER: &str = "ct-200";
pub const SEED_TIME: i64 = T0;
pub const VICTIM_TIME: i64 = T0 + 100;
pub const AFTER_TIME: i64 = T0 + 200;

const AVG: usize = 64 * 1024;

pub fn options() -> BackupOptions {
    BackupOptions { dynamic_avg: AVG, ..BackupOptions::default() }
}

/// The archives of one backup. The group's backups and the bystander use different names
/// whose ends differ, so a failpoint context (matched as a suffix) hits one session only.
#[derive(Clone)]
pub struct Archives {
    pub blob: (&'static str, Vec<u8>),
    pub dynamic: (&'static str, Vec<u8>),
    pub fixed: (&'static str, Vec<u8>),
}

impl Archives {
    /// The group's first snapshot.
    pub fn seed() -> Self {
        Archives {
            blob: ("conf.blob", data(300, 1)),
            dynamic: ("root.didx", data(384 * 1024, 2)),
            fixed: ("disk.img.fidx", data(96 * 1024, 3)),
        }
    }

    /// The next backup of the group: the same names, the dynamic archive half changed (so it
    /// both reuses the seed's chunks and uploads new ones), new disk and config contents.
    pub fn victim() -> Self {
        let mut seed = Self::seed();
        let (len, half) = (seed.dynamic.1.len(), seed.dynamic.1.len() / 2);
        seed.dynamic.1[half..].copy_from_slice(&data(len - half, 12));
        Archives {
            blob: ("conf.blob", data(310, 11)),
            dynamic: seed.dynamic,
            fixed: ("disk.img.fidx", data(80 * 1024, 13)),
        }
    }

    /// The session on another group that runs while the victim meets its fault.
    pub fn bystander() -> Self {
        Archives {
            blob: ("settings.blob", data(200, 21)),
            dynamic: ("data.didx", data(256 * 1024, 22)),
            fixed: ("vol.img.fidx", data(64 * 1024, 23)),
        }
    }

    /// Digests of the dynamic archive's chunks, in order.
    pub fn dynamic_digests(&self) -> Vec<Digest> {
        let d = &self.dynamic.1;
        let mut start = 0;
        Chunker::new(AVG)
            .cut_points(d)
            .into_iter()
            .map(|end| {
                let digest = Digest::of(&d[start..end]);
                start = end;
                digest
            })
            .collect()
    }

    /// Uploads every archive in the real client's order (blob, dynamic, fixed), no finish.
    pub async fn upload(&self, up: &mut Uploader<'_>) -> Result<(), ClientError> {
        up.blob(self.blob.0, &self.blob.1).await?;
        up.dynamic(self.dynamic.0, Bytes::from(self.dynamic.1.clone())).await?;
        up.fixed(self.fixed.0, Bytes::from(self.fixed.1.clone())).await?;
        Ok(())
    }

    /// Restores every archive of the snapshot through a reader session and compares it.
    pub async fn assert_restored(&self, server: &TestServer, id: &str, time: i64) {
        let params = ReaderParams {
            store: server.store.clone(),
            ns: None,
            backup_type: "host".into(),
            backup_id: id.into(),
            backup_time: time,
        };
        let reader = client(server).start_reader(&params).await.expect("reader session starts");
        let manifest = reader.manifest().await.unwrap();
        for (name, bytes) in [&self.blob, &self.dynamic, &self.fixed] {
            let restored = reader.restore(&manifest, name).await.unwrap_or_else(|e| panic!("restore {id}/{name}: {e}"));
            assert!(restored.as_ref() == bytes.as_slice(), "{id}/{time}/{name} restored different bytes");
        }
    }
}

/// A complete backup of `archives` as snapshot `host/<id>/<time>`.
pub async fn backup(server: &TestServer, id: &str, time: i64, archives: &Archives) -> Result<(), ClientError> {
    let s = session(server, id, time).await;
    let mut up = s.uploader(options()).await?;
    archives.upload(&mut up).await?;
    up.finish().await.map(drop)
}

/// `host/<id>/<time>` as the server names the snapshot in failpoint contexts.
pub fn snapshot_name(id: &str, time: i64) -> String {
    format!("host/{id}/{}", BackupTime::from_epoch(time).unwrap())
}

/// SHA-256 of every regular file below `root`, by path relative to it.
pub fn contents(root: &Path) -> BTreeMap<PathBuf, [u8; 32]> {
    let mut map = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let (path, ty) = (e.path(), e.file_type().unwrap());
            if ty.is_dir() {
                stack.push(path);
            } else if ty.is_file() {
                let hash = Sha256::digest(std::fs::read(&path).unwrap()).into();
                map.insert(path.strip_prefix(root).unwrap().to_path_buf(), hash);
            }
        }
    }
    map
}

/// Every file of `before` is still there with the same content; every other file is either
/// a complete, correct chunk file (a fault may strike after some chunks were stored; GC owns
/// them) or lies below one of `allowed` (relative directories of sessions that did not fail).
/// Returns the number of new chunk files.
#[track_caller]
pub fn assert_untouched(root: &Path, before: &BTreeMap<PathBuf, [u8; 32]>, allowed: &[PathBuf]) -> usize {
    let after = contents(root);
    for (path, hash) in before {
        match after.get(path) {
            Some(h) => assert!(h == hash, "{} changed", path.display()),
            None => panic!("{} disappeared", path.display()),
        }
    }
    let mut new_chunks = 0;
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        if allowed.iter().any(|a| path.starts_with(a)) {
            continue;
        }
        assert!(path.starts_with(".chunks"), "unexpected new file {}", path.display());
        let name = path.file_name().unwrap().to_str().unwrap();
        let raw = std::fs::read(root.join(path)).unwrap();
        blob::check_crc(&raw).unwrap_or_else(|e| panic!("new chunk {name}: {e}"));
        let decoded = blob::decode(&raw).unwrap();
        assert_eq!(Digest::of(&decoded).to_hex(), name, "new chunk file holds other data than its name says");
        new_chunks += 1;
    }
    new_chunks
}

/// One scrape of the server's Prometheus endpoint.
pub fn scrape(addr: SocketAddr) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp.split_once("\r\n\r\n").expect("HTTP response").1.to_string()
}

/// Value of one series (`name{labels}` exactly as rendered), 0 if absent.
pub fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0.0, |v| v.parse().unwrap())
}

pub const IO_ERRORS: &str = "chunkyard_errors_total{kind=\"io\"}";
pub const ABORTED: &str = "chunkyard_sessions_total{protocol=\"backup\",outcome=\"aborted\"}";
