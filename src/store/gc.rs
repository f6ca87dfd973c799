//! Garbage collection (formats.md 6): mark every chunk an index references by touching its
//! atime, then sweep chunk files whose atime is older than the cutoff.
//!
//! Safety rests on the locks (a foreign writer's `F_RDLCK` makes GC refuse; our own writers are
//! accounted for by their start time) and on explicit `utimensat` touches, which work on
//! noatime mounts. The cutoff is an option so tests can sweep without waiting a day. The sweep
//! also removes chunk temp files a crash left, since it reads every chunk directory anyway.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::format::Digest;
use crate::format::dynamic_index::DynamicIndex;
use crate::format::fixed_index::FixedIndex;
use crate::store::durable::{io_err, is_tmp_name};
use crate::store::io::files::touch_atime;
use crate::store::{Datastore, Result, StoreError};

/// PBS 3.2.4: chunks untouched for a day may only look untouched because of relatime.
pub const DEFAULT_ATIME_CUTOFF: i64 = 24 * 3600;
/// Clock and timestamp granularity margin.
pub const SAFETY_MARGIN: i64 = 300;

#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Seconds before GC start that count as "recently used" (default one day).
    pub atime_cutoff: i64,
    /// Task id recorded in `.gc-status`.
    pub upid: Option<String>,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions { atime_cutoff: DEFAULT_ATIME_CUTOFF, upid: None }
    }
}

/// The result, written to `.gc-status` with PBS's kebab-case keys (formats.md 6.4).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct GcStatus {
    pub upid: Option<String>,
    pub index_file_count: u64,
    pub index_data_bytes: u64,
    pub disk_bytes: u64,
    pub disk_chunks: u64,
    pub removed_bytes: u64,
    pub removed_chunks: u64,
    pub pending_bytes: u64,
    pub pending_chunks: u64,
    pub removed_bad: u64,
    pub still_bad: u64,
    /// Chunk temp files a crashed or failed write left (not in PBS's `.gc-status`).
    #[serde(skip)]
    pub removed_temp_files: u64,
}

fn now_epoch() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Name filter of formats.md 5.2: 64 hex digits, optionally followed by `.<d>.bad`.
fn chunk_file_kind(name: &str) -> Option<bool> {
    let hex_ok = name.len() >= 64 && name.as_bytes()[..64].iter().all(u8::is_ascii_hexdigit);
    match name.len() {
        64 if hex_ok => Some(false),
        70 if hex_ok && name.ends_with(".bad") => Some(true),
        _ => None,
    }
}

/// `<digest>.tmp_XXXXXX`, a chunk write's temp file.
fn is_chunk_tmp(name: &str) -> bool {
    name.len() == 75 && name.as_bytes()[..64].iter().all(u8::is_ascii_hexdigit) && is_tmp_name(name)
}

/// Removes a chunk temp file last written before `stale` (see `garbage_collect`).
fn remove_stale_tmp(path: &Path, stale: SystemTime, status: &mut GcStatus) -> Result<()> {
    let modified = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => m.modified().map_err(io_err("stat chunk temp file", path))?,
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("stat chunk temp file", path)(e)),
    };
    if modified >= stale {
        return Ok(());
    }
    match std::fs::remove_file(path) {
        Ok(()) => status.removed_temp_files += 1,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("remove chunk temp file", path)(e)),
    }
    Ok(())
}

struct Marker<'a> {
    store: &'a Datastore,
    touched: HashSet<Digest>,
    status: GcStatus,
}

impl Marker<'_> {
    fn mark_digest(&mut self, d: &Digest) -> Result<()> {
        if !self.touched.insert(*d) {
            return Ok(());
        }
        if !self.store.chunks().touch(d)? {
            tracing::warn!(digest = %d, "chunk referenced by an index is missing");
            // Keep quarantined copies alive: verify may be the only one who knows them.
            let path = self.store.chunks().chunk_path(d);
            for n in 0..10 {
                touch_atime(&path.with_file_name(format!("{d}.{n}.bad")))?;
            }
        }
        Ok(())
    }

    fn mark_index(&mut self, path: &Path, fixed: bool) -> Result<()> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err("read index", path)(e)),
        };
        let bad = |e: crate::format::fixed_index::IndexError| {
            StoreError::Corrupt(format!("unable to parse index {path:?} - {e}"))
        };
        let (digests, size): (Vec<Digest>, u64) = if fixed {
            let idx = FixedIndex::parse(&bytes).map_err(bad)?;
            let size = idx.size;
            (idx.digests, size)
        } else {
            let idx = DynamicIndex::parse(&bytes).map_err(bad)?;
            let size = idx.size();
            (idx.entries.into_iter().map(|e| e.digest).collect(), size)
        };
        self.status.index_file_count += 1;
        self.status.index_data_bytes += size;
        for d in &digests {
            self.mark_digest(d)?;
        }
        Ok(())
    }

    /// Walks the tree without following symlinks, skipping dot-names (so `.chunks`).
    fn walk(&mut self, dir: &Path, depth: usize) -> Result<()> {
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied && depth <= 2 && dir.ends_with("lost+found") => {
                return Ok(());
            }
            Err(e) => return Err(io_err("list directory", dir)(e)),
        };
        for entry in rd {
            let entry = entry.map_err(io_err("list directory", dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') {
                continue;
            }
            let ft = entry.file_type().map_err(io_err("stat entry in", dir))?;
            if ft.is_dir() {
                self.walk(&entry.path(), depth + 1)?;
            } else if ft.is_file() {
                match Path::new(name).extension().and_then(|e| e.to_str()) {
                    Some("fidx") => self.mark_index(&entry.path(), true)?,
                    Some("didx") => self.mark_index(&entry.path(), false)?,
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

impl Datastore {
    /// Runs a full GC and writes `.gc-status`. Refuses while another process (a PBS backup)
    /// holds `.lock` shared, or another GC runs.
    pub fn garbage_collect(&self, opts: &GcOptions) -> Result<GcStatus> {
        let _gc = self.locker().try_exclusive()?;
        let phase1_start = now_epoch();
        let oldest_writer = self.locker().oldest_shared().unwrap_or(phase1_start).min(phase1_start);

        let mut marker = Marker { store: self, touched: HashSet::new(), status: GcStatus::default() };
        marker.walk(self.root(), 0)?;
        let mut status = marker.status;
        status.upid = opts.upid.clone();

        let mut min_atime = phase1_start - opts.atime_cutoff;
        if oldest_writer < min_atime {
            min_atime = oldest_writer;
        }
        min_atime -= SAFETY_MARGIN;
        // A chunk temp file older than this process was left by one that is gone (foreign
        // writers hold `.lock` shared, which our exclusive lock excludes); one older than a day
        // by a failed write of ours, since no single chunk write takes that long.
        let day_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(DEFAULT_ATIME_CUTOFF as u64);
        let stale_tmp = crate::store::recover::process_start().max(day_ago);
        self.sweep(min_atime, oldest_writer, stale_tmp, &mut status)?;
        if status.removed_temp_files > 0 {
            tracing::info!(count = status.removed_temp_files, "GC removed stale chunk temp files");
        }

        let json = serde_json::to_vec(&status).expect("status serialises");
        if let Err(e) = self.write_file(&self.root().join(".gc-status"), &json) {
            tracing::warn!(%e, "unable to write .gc-status");
        }
        Ok(status)
    }

    fn sweep(&self, min_atime: i64, oldest_writer: i64, stale_tmp: SystemTime, status: &mut GcStatus) -> Result<()> {
        let base = self.chunks().base();
        for idx in 0..=u16::MAX {
            let dir = base.join(format!("{idx:04x}"));
            let rd = match std::fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("list chunk directory", &dir)(e)),
            };
            for entry in rd {
                let entry = entry.map_err(io_err("list chunk directory", &dir))?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if is_chunk_tmp(name) {
                    remove_stale_tmp(&entry.path(), stale_tmp, status)?;
                    continue;
                }
                let Some(bad) = chunk_file_kind(name) else { continue };
                let _insert_excluded = self.chunks().lock_sweep();
                let meta = match std::fs::symlink_metadata(entry.path()) {
                    Ok(m) if m.file_type().is_file() => m,
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_err("stat chunk", &entry.path())(e)),
                };
                let (atime, size) = (meta.atime(), meta.len());
                if atime < min_atime {
                    match std::fs::remove_file(entry.path()) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(io_err("remove chunk", &entry.path())(e)),
                    }
                    if bad {
                        status.removed_bad += 1
                    } else {
                        status.removed_chunks += 1
                    }
                    status.removed_bytes += size;
                } else if atime < oldest_writer {
                    if bad {
                        status.still_bad += 1
                    } else {
                        status.pending_chunks += 1
                    }
                    status.pending_bytes += size;
                } else {
                    if !bad {
                        status.disk_chunks += 1;
                    }
                    status.disk_bytes += size;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "gc_tests.rs"]
mod tests;
