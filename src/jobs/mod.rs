//! Maintenance jobs (GC, verify, prune) as the CLI and the API's worker tasks run them: one
//! place that names the task (UPID, formats.md 4.1), writes progress lines to a log sink and
//! records the job metrics, so a `chunkyard gc` and a `POST .../gc` count the same way.
//! The work itself lives in `store::{gc, verify, prune}`.

pub mod upid;

use std::time::Instant;

use serde_json::{Value, json};

use crate::format::{GroupRef, Namespace, SnapshotRef};
use crate::metrics;
use crate::store::gc::{GcOptions, GcStatus};
use crate::store::list::SnapshotInfo;
use crate::store::prune::{KeepOptions, PruneMark};
use crate::store::verify::{VerifyCache, VerifyResult};
use crate::store::{Datastore, Result};

pub const JOB_GC: &str = "gc";
pub const JOB_VERIFY: &str = "verify";
pub const JOB_PRUNE: &str = "prune";

/// Where a job writes its human progress lines (a task log, stderr, or nothing).
pub type Log<'a> = &'a mut dyn FnMut(String);

fn observe(job: &'static str, started: Instant) {
    metrics::histogram!(metrics::JOB_DURATION, metrics::LABEL_JOB => job).record(started.elapsed().as_secs_f64());
}

/// Runs GC, logs its figures and records the job metrics.
pub fn gc(store: &Datastore, opts: &GcOptions, log: Log<'_>) -> Result<GcStatus> {
    let started = Instant::now();
    log(format!("starting garbage collection on store {}", store.name()));
    let result = store.garbage_collect(opts);
    observe(JOB_GC, started);
    let status = result?;
    let scanned =
        status.disk_chunks + status.removed_chunks + status.pending_chunks + status.removed_bad + status.still_bad;
    metrics::counter!(metrics::JOB_CHUNKS, metrics::LABEL_JOB => JOB_GC).increment(scanned);
    metrics::counter!(metrics::JOB_REMOVED_BYTES, metrics::LABEL_JOB => JOB_GC).increment(status.removed_bytes);
    log(format!("Index files: {}, referenced data: {} bytes", status.index_file_count, status.index_data_bytes));
    log(format!("Removed garbage: {} bytes in {} chunks", status.removed_bytes, status.removed_chunks));
    log(format!("Removed bad chunks: {}", status.removed_bad));
    log(format!("Pending removals: {} bytes in {} chunks", status.pending_bytes, status.pending_chunks));
    log(format!("Still bad chunks: {}", status.still_bad));
    if status.removed_temp_files > 0 {
        log(format!("Removed stale chunk temp files: {}", status.removed_temp_files));
        metrics::counter!(metrics::LEFTOVERS_REMOVED, metrics::LABEL_KIND => metrics::LEFTOVER_CHUNK_TEMP)
            .increment(status.removed_temp_files);
    }
    log(format!("On-Disk usage: {} bytes, {} chunks", status.disk_bytes, status.disk_chunks));
    Ok(status)
}

/// The `--json` object of a GC run.
pub fn gc_json(status: &GcStatus, seconds: f64) -> Value {
    json!({
        "chunks_scanned": status.disk_chunks + status.removed_chunks + status.pending_chunks + status.removed_bad + status.still_bad,
        "chunks_removed": status.removed_chunks,
        "bytes_removed": status.removed_bytes,
        "chunks_pending": status.pending_chunks,
        "bytes_pending": status.pending_bytes,
        "bad_removed": status.removed_bad,
        "bad_remaining": status.still_bad,
        "chunks_on_disk": status.disk_chunks,
        "bytes_on_disk": status.disk_bytes,
        "index_files": status.index_file_count,
        "temp_files_removed": status.removed_temp_files,
        "duration_seconds": seconds,
        "gc_status": status,
    })
}

/// Which snapshots a verify run looks at.
#[derive(Debug, Clone, Default)]
pub struct VerifySelection {
    pub ns: Namespace,
    pub group: Option<GroupRef>,
    pub snapshot: Option<SnapshotRef>,
    /// Skip snapshots whose last verify was ok ...
    pub ignore_verified: bool,
    /// ... unless it is older than this many days.
    pub outdated_after_days: Option<u64>,
}

/// The outcome of one verify run.
#[derive(Debug, Default)]
pub struct VerifyReport {
    pub snapshots: Vec<(SnapshotRef, VerifyResult)>,
    pub skipped_verified: u64,
    pub chunks_ok: u64,
    pub chunks_corrupt: u64,
    pub bytes_read: u64,
}

impl VerifyReport {
    pub fn failed(&self) -> usize {
        self.snapshots.iter().filter(|(_, r)| matches!(r, VerifyResult::Failed(_))).count()
    }

    pub fn to_json(&self, seconds: f64) -> Value {
        let snaps: Vec<Value> = self
            .snapshots
            .iter()
            .map(|(s, r)| {
                let (state, errors) = match r {
                    VerifyResult::Ok => ("ok", vec![]),
                    VerifyResult::Failed(e) => ("failed", e.clone()),
                    VerifyResult::Skipped => ("skipped", vec![]),
                };
                json!({"snapshot": s.to_string(), "state": state, "errors": errors})
            })
            .collect();
        json!({
            "snapshots": snaps,
            "snapshots_failed": self.failed(),
            "snapshots_skipped_verified": self.skipped_verified,
            "chunks_ok": self.chunks_ok,
            "chunks_corrupt": self.chunks_corrupt,
            "bytes_read": self.bytes_read,
            "duration_seconds": seconds,
        })
    }
}

/// Whether the snapshot's last verify was ok and recent enough to skip.
fn recently_verified(store: &Datastore, ns: &Namespace, snap: &SnapshotRef, days: Option<u64>) -> bool {
    let Ok(m) = crate::store::admin::load_manifest(&store.snapshot_path(ns, snap)) else { return false };
    let Some(state) = m.unprotected.get("verify_state") else { return false };
    if state["state"].as_str() != Some("ok") {
        return false;
    }
    let Some(days) = days else { return true };
    let Some(start) = state["upid"].as_str().and_then(upid::upid_start) else { return false };
    chrono::Utc::now().timestamp() - start < days as i64 * 86_400
}

/// Verifies the selected snapshots (one chunk cache for the run), logging each verdict.
pub fn verify(store: &Datastore, sel: &VerifySelection, upid: &str, log: Log<'_>) -> Result<VerifyReport> {
    let started = Instant::now();
    let result = verify_inner(store, sel, upid, log);
    observe(JOB_VERIFY, started);
    let report = result?;
    metrics::counter!(metrics::JOB_CHUNKS, metrics::LABEL_JOB => JOB_VERIFY)
        .increment(report.chunks_ok + report.chunks_corrupt);
    metrics::counter!(metrics::JOB_CORRUPT_CHUNKS, metrics::LABEL_JOB => JOB_VERIFY).increment(report.chunks_corrupt);
    Ok(report)
}

fn verify_inner(store: &Datastore, sel: &VerifySelection, upid: &str, log: Log<'_>) -> Result<VerifyReport> {
    let mut todo: Vec<SnapshotRef> = Vec::new();
    if let Some(s) = &sel.snapshot {
        todo.push(s.clone());
    } else {
        let groups = match &sel.group {
            Some(g) => vec![g.clone()],
            None => store.groups(&sel.ns)?,
        };
        for g in groups {
            todo.extend(store.snapshots(&sel.ns, &g)?.into_iter().filter(|s| s.finished).map(|s| s.snapshot));
        }
    }
    let mut report = VerifyReport::default();
    let mut cache = VerifyCache::default();
    let total = todo.len().max(1);
    for (i, snap) in todo.into_iter().enumerate() {
        if sel.ignore_verified && recently_verified(store, &sel.ns, &snap, sel.outdated_after_days) {
            report.skipped_verified += 1;
            continue;
        }
        let r = store.verify_snapshot(&sel.ns, &snap, upid, &mut cache)?;
        let pct = (i + 1) * 100 / total;
        match &r {
            VerifyResult::Ok => log(format!("verify {snap}: ok ({pct}%)")),
            VerifyResult::Skipped => log(format!("verify {snap}: skipped, locked ({pct}%)")),
            VerifyResult::Failed(errs) => log(format!("verify {snap}: failed - {} ({pct}%)", errs.join("; "))),
        }
        report.snapshots.push((snap, r));
    }
    let (ok, corrupt, bytes) = cache.counts();
    (report.chunks_ok, report.chunks_corrupt, report.bytes_read) = (ok, corrupt, bytes);
    Ok(report)
}

/// Prunes one group (or only computes the marks with `dry_run`), logging each decision.
pub fn prune(
    store: &Datastore,
    ns: &Namespace,
    group: &GroupRef,
    opts: &KeepOptions,
    dry_run: bool,
    log: Log<'_>,
) -> Result<Vec<(SnapshotInfo, PruneMark)>> {
    let started = Instant::now();
    let result = store.prune_group(ns, group, opts, dry_run);
    observe(JOB_PRUNE, started);
    let marks = result?;
    let removed = marks.iter().filter(|(_, m)| !m.keep()).count() as u64;
    if !dry_run {
        metrics::counter!(metrics::JOB_SNAPSHOTS_REMOVED, metrics::LABEL_JOB => JOB_PRUNE).increment(removed);
    }
    for (info, mark) in &marks {
        log(format!("{} {}", info.snapshot, if mark.keep() { "keep" } else { "remove" }));
    }
    Ok(marks)
}
