//! Prometheus metrics: the one list of metric names, their help texts, units and histogram
//! buckets, and [`install`], which puts the `metrics-exporter-prometheus` recorder in place and
//! opens the scrape listener.
//!
//! Every module records with the `metrics` macros using the constants below, so a name lives in
//! exactly one place and the Grafana dashboard test (`tests/grafana.rs`) can check every PromQL
//! expression against [`CATALOGUE`]. Conventions: counters end in `_total`, byte amounts carry
//! `_bytes`, durations are histograms in `_seconds` (real buckets, never summaries, so
//! `histogram_quantile` works across instances). Labels are small closed sets (stage, endpoint,
//! status, kind, method, protocol, datastore): never a digest, backup id, snapshot or user,
//! which would grow the series count without bound.
//!
//! Recording before [`install`] (or with metrics disabled) is a cheap no-op.

mod endpoint;

/// The recording macros, re-exported so `use chunkyard::metrics;` + `metrics::counter!(...)`
/// works whichever `metrics` (this module or the crate) a path resolves to.
pub use ::metrics::{counter, gauge, histogram};
pub use endpoint::{MetricsEndpoint, MetricsError, install, install_for_config, render};

use std::time::{Duration, Instant};

use metrics::Unit;

// ---- ingest pipeline -------------------------------------------------------------------

/// Gauge{stage}: messages queued in front of (or inside) an actor stage.
pub const STAGE_QUEUE_DEPTH: &str = "chunkyard_stage_queue_depth";
/// Histogram{stage}: time one message spends being processed by a stage.
pub const STAGE_DURATION: &str = "chunkyard_stage_duration_seconds";

/// Counter: chunks received through `upload_chunk` (fixed and dynamic).
pub const CHUNKS_UPLOADED: &str = "chunkyard_chunks_uploaded_total";
/// Counter: chunks that became a new chunk file.
pub const CHUNKS_WRITTEN: &str = "chunkyard_chunks_written_total";
/// Counter: uploaded chunks not written because the chunk store already had them.
pub const CHUNKS_DEDUPLICATED: &str = "chunkyard_chunks_deduplicated_total";
/// Counter: chunks appended to an index from the previous snapshot without being uploaded.
pub const CHUNKS_REUSED: &str = "chunkyard_chunks_reused_total";
/// Counter: plain (decoded) size of uploaded chunks.
pub const BYTES_ORIGINAL: &str = "chunkyard_original_bytes_total";
/// Counter: size of uploaded chunks as they came over the wire (encoded blobs).
pub const BYTES_ENCODED: &str = "chunkyard_encoded_bytes_total";
/// Counter: bytes of new chunk files written to disk.
pub const BYTES_WRITTEN: &str = "chunkyard_written_bytes_total";
/// Counter: encoded size of uploaded chunks not written because they were already stored.
pub const BYTES_DEDUPLICATED: &str = "chunkyard_deduplicated_bytes_total";
/// Histogram: encoded size of each uploaded chunk.
pub const CHUNK_SIZE: &str = "chunkyard_chunk_size_bytes";
/// Counter{method}: chunk file writes by I/O path.
pub const CHUNK_WRITES: &str = "chunkyard_chunk_writes_total";
/// Gauge: chunk and blob bytes backup sessions hold now, from reading a body to storing it.
pub const INFLIGHT: &str = "chunkyard_inflight_bytes";
/// Gauge: the bound on [`INFLIGHT`] (`limits.max-inflight-bytes`).
pub const INFLIGHT_LIMIT: &str = "chunkyard_inflight_limit_bytes";
/// Counter: uploads that had to wait for a share of the in-flight bound.
pub const INFLIGHT_WAITS: &str = "chunkyard_inflight_waits_total";

// ---- sessions and requests -------------------------------------------------------------

/// Gauge{protocol}: backup and reader sessions open now.
pub const SESSIONS_ACTIVE: &str = "chunkyard_sessions_active";
/// Counter{protocol, outcome}: sessions ended, by how they ended.
pub const SESSIONS: &str = "chunkyard_sessions_total";
/// Counter{endpoint, status}: requests answered (management API and inside sessions).
pub const REQUESTS: &str = "chunkyard_requests_total";
/// Histogram{endpoint}: time from request head to the end of the answer.
pub const REQUEST_DURATION: &str = "chunkyard_request_duration_seconds";
/// Counter{kind}: errors, by kind.
pub const ERRORS: &str = "chunkyard_errors_total";

// ---- transport ---------------------------------------------------------------------------

/// Counter: TLS handshakes completed.
pub const TLS_HANDSHAKES: &str = "chunkyard_tls_handshakes_total";
/// Counter{reason}: TLS handshakes that failed or timed out.
pub const TLS_HANDSHAKE_FAILURES: &str = "chunkyard_tls_handshake_failures_total";

// ---- storage and process -----------------------------------------------------------------

/// Gauge{datastore}: bytes used on the file system holding a datastore.
pub const DATASTORE_USED: &str = "chunkyard_datastore_used_bytes";
/// Gauge{datastore}: bytes still available to unprivileged writers on that file system.
pub const DATASTORE_AVAILABLE: &str = "chunkyard_datastore_available_bytes";
/// Gauge{datastore}: total size of that file system.
pub const DATASTORE_SIZE: &str = "chunkyard_datastore_size_bytes";
/// Gauge{version}: always 1; the label says which build is running.
pub const BUILD_INFO: &str = "chunkyard_build_info";
/// Histogram{job}: duration of one maintenance job run (gc, verify, prune).
pub const JOB_DURATION: &str = "chunkyard_job_duration_seconds";
/// Counter{job}: chunks a maintenance job looked at (gc: swept files, verify: chunks checked).
pub const JOB_CHUNKS: &str = "chunkyard_job_chunks_total";
/// Counter{job}: bytes of chunk files GC removed.
pub const JOB_REMOVED_BYTES: &str = "chunkyard_job_removed_bytes_total";
/// Counter{job}: chunks verify found corrupt or missing.
pub const JOB_CORRUPT_CHUNKS: &str = "chunkyard_job_corrupt_chunks_total";
/// Counter{job}: snapshots prune removed.
pub const JOB_SNAPSHOTS_REMOVED: &str = "chunkyard_job_snapshots_removed_total";
/// Counter{kind}: crash leftovers removed (start-up recovery and GC), by kind.
pub const LEFTOVERS_REMOVED: &str = "chunkyard_crash_leftovers_removed_total";

// ---- label names and values --------------------------------------------------------------

pub const LABEL_STAGE: &str = "stage";
pub const LABEL_ENDPOINT: &str = "endpoint";
pub const LABEL_STATUS: &str = "status";
pub const LABEL_KIND: &str = "kind";
pub const LABEL_METHOD: &str = "method";
pub const LABEL_PROTOCOL: &str = "protocol";
pub const LABEL_OUTCOME: &str = "outcome";
pub const LABEL_REASON: &str = "reason";
pub const LABEL_DATASTORE: &str = "datastore";
pub const LABEL_VERSION: &str = "version";
pub const LABEL_JOB: &str = "job";

/// Values of the `method` label of [`CHUNK_WRITES`].
pub const METHOD_IO_URING: &str = "io_uring";
pub const METHOD_FALLBACK: &str = "fallback";
/// Values of the `protocol` label of [`SESSIONS_ACTIVE`] and [`SESSIONS`].
pub const PROTOCOL_BACKUP: &str = "backup";
pub const PROTOCOL_READER: &str = "reader";
/// Values of the `outcome` label of [`SESSIONS`].
pub const OUTCOME_FINISHED: &str = "finished";
pub const OUTCOME_ABORTED: &str = "aborted";
pub const OUTCOME_BENCHMARK: &str = "benchmark";
/// Values of the `reason` label of [`TLS_HANDSHAKE_FAILURES`].
pub const REASON_TIMEOUT: &str = "timeout";
pub const REASON_ERROR: &str = "error";

/// Values of the `kind` label of [`LEFTOVERS_REMOVED`].
pub const LEFTOVER_SNAPSHOT: &str = "snapshot";
pub const LEFTOVER_GROUP: &str = "group";
pub const LEFTOVER_TEMP: &str = "temp_file";
pub const LEFTOVER_CHUNK_TEMP: &str = "chunk_temp_file";

/// The actor stages of the ingest pipeline (the `stage` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Session,
    Hasher,
    Writer,
    Index,
    Finish,
    Files,
}

impl Stage {
    pub const ALL: [Stage; 6] =
        [Stage::Session, Stage::Hasher, Stage::Writer, Stage::Index, Stage::Finish, Stage::Files];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Session => "session",
            Stage::Hasher => "hasher",
            Stage::Writer => "writer",
            Stage::Index => "index",
            Stage::Finish => "finish",
            Stage::Files => "files",
        }
    }

    /// Sets this stage's queue depth gauge.
    pub fn set_queue_depth(self, depth: usize) {
        metrics::gauge!(STAGE_QUEUE_DEPTH, LABEL_STAGE => self.as_str()).set(depth as f64);
    }

    /// Records one message's processing time.
    pub fn observe(self, took: Duration) {
        metrics::histogram!(STAGE_DURATION, LABEL_STAGE => self.as_str()).record(took.as_secs_f64());
    }

    /// Starts a timer that records into [`STAGE_DURATION`] when dropped.
    pub fn timer(self) -> StageTimer {
        StageTimer { stage: self, start: Instant::now() }
    }
}

/// Records the time since [`Stage::timer`] when dropped, so early returns are measured too.
#[must_use = "the time is recorded when the timer is dropped"]
pub struct StageTimer {
    stage: Stage,
    start: Instant,
}

impl Drop for StageTimer {
    fn drop(&mut self) {
        self.stage.observe(self.start.elapsed());
    }
}

// ---- the catalogue -----------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One exported metric: what the dashboard test and [`describe_all`] read.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    pub name: &'static str,
    pub kind: Kind,
    pub unit: Unit,
    pub help: &'static str,
    /// Bucket upper bounds (histograms only).
    pub buckets: &'static [f64],
}

/// Latencies from 10 µs (an in-memory dedup hit) to 10 s (an fsync on a busy disk).
pub const STAGE_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Request latencies from 100 µs to 1 min (finish of a large snapshot).
pub const REQUEST_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
/// Maintenance jobs take from milliseconds (an empty store) to hours (verify of terabytes).
pub const JOB_BUCKETS: &[f64] = &[0.01, 0.1, 1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 10800.0, 43200.0];
/// Chunk sizes, powers of two from 1 KiB to 16 MiB (PBS chunks are at most 16 MiB).
pub const CHUNK_SIZE_BUCKETS: &[f64] =
    &[1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 524288.0, 1048576.0, 2097152.0, 4194304.0, 8388608.0, 16777216.0];

const fn def(name: &'static str, kind: Kind, unit: Unit, help: &'static str) -> MetricDef {
    MetricDef { name, kind, unit, help, buckets: &[] }
}
const fn hist(name: &'static str, unit: Unit, help: &'static str, buckets: &'static [f64]) -> MetricDef {
    MetricDef { name, kind: Kind::Histogram, unit, help, buckets }
}

use Kind::{Counter, Gauge};
use Unit::{Bytes, Count, Seconds};

/// Every metric chunkyard exports.
pub const CATALOGUE: &[MetricDef] = &[
    def(STAGE_QUEUE_DEPTH, Gauge, Count, "Messages queued in front of or inside an ingest pipeline stage."),
    hist(
        STAGE_DURATION,
        Seconds,
        "Time one message spends being processed by an ingest pipeline stage.",
        STAGE_BUCKETS,
    ),
    def(CHUNKS_UPLOADED, Counter, Count, "Chunks received through upload_chunk."),
    def(CHUNKS_WRITTEN, Counter, Count, "Uploaded chunks that became a new chunk file."),
    def(CHUNKS_DEDUPLICATED, Counter, Count, "Uploaded chunks not written because the chunk store already had them."),
    def(CHUNKS_REUSED, Counter, Count, "Chunks referenced from the previous snapshot without being uploaded."),
    def(BYTES_ORIGINAL, Counter, Bytes, "Plain (decoded) size of uploaded chunks."),
    def(BYTES_ENCODED, Counter, Bytes, "Size of uploaded chunks as received (encoded blobs)."),
    def(BYTES_WRITTEN, Counter, Bytes, "Bytes of new chunk files written to disk."),
    def(
        BYTES_DEDUPLICATED,
        Counter,
        Bytes,
        "Encoded size of uploaded chunks not written because they were already stored.",
    ),
    hist(CHUNK_SIZE, Bytes, "Encoded size of each uploaded chunk.", CHUNK_SIZE_BUCKETS),
    def(CHUNK_WRITES, Counter, Count, "Chunk file writes by I/O method (io_uring or fallback)."),
    def(
        INFLIGHT,
        Gauge,
        Bytes,
        "Chunk and blob bytes backup sessions hold now, between reading the body and storing it.",
    ),
    def(INFLIGHT_LIMIT, Gauge, Bytes, "Bound on chunkyard_inflight_bytes (limits.max-inflight-bytes)."),
    def(INFLIGHT_WAITS, Counter, Count, "Chunk and blob uploads that waited for a share of the in-flight byte bound."),
    def(SESSIONS_ACTIVE, Gauge, Count, "Backup and reader sessions open now."),
    def(SESSIONS, Counter, Count, "Sessions ended, by protocol and outcome (finished, aborted, benchmark)."),
    def(REQUESTS, Counter, Count, "Requests answered, by endpoint and HTTP status."),
    hist(REQUEST_DURATION, Seconds, "Time from request head to the end of the answer, by endpoint.", REQUEST_BUCKETS),
    def(ERRORS, Counter, Count, "Errors, by kind."),
    def(TLS_HANDSHAKES, Counter, Count, "TLS handshakes completed."),
    def(TLS_HANDSHAKE_FAILURES, Counter, Count, "TLS handshakes that failed or timed out, by reason."),
    def(DATASTORE_USED, Gauge, Bytes, "Bytes used on the file system holding a datastore."),
    def(
        DATASTORE_AVAILABLE,
        Gauge,
        Bytes,
        "Bytes available to unprivileged writers on the file system holding a datastore.",
    ),
    def(DATASTORE_SIZE, Gauge, Bytes, "Total size of the file system holding a datastore."),
    def(BUILD_INFO, Gauge, Count, "Always 1; the version label names the running build."),
    hist(JOB_DURATION, Seconds, "Duration of one maintenance job run, by job (gc, verify, prune).", JOB_BUCKETS),
    def(
        JOB_CHUNKS,
        Counter,
        Count,
        "Chunks a maintenance job processed (gc: chunk files swept, verify: chunks checked).",
    ),
    def(JOB_REMOVED_BYTES, Counter, Bytes, "Bytes of chunk files removed by garbage collection."),
    def(JOB_CORRUPT_CHUNKS, Counter, Count, "Chunks verify found corrupt or missing."),
    def(JOB_SNAPSHOTS_REMOVED, Counter, Count, "Snapshots removed by prune."),
    def(
        LEFTOVERS_REMOVED,
        Counter,
        Count,
        "Crash leftovers removed: abandoned snapshots, groups and temp files at start-up, stale chunk temp files by GC.",
    ),
];

/// Registers help texts and units with the current recorder.
pub fn describe_all() {
    for m in CATALOGUE {
        match m.kind {
            Kind::Counter => metrics::describe_counter!(m.name, m.unit, m.help),
            Kind::Gauge => metrics::describe_gauge!(m.name, m.unit, m.help),
            Kind::Histogram => metrics::describe_histogram!(m.name, m.unit, m.help),
        }
    }
}

/// Sets `chunkyard_build_info{version}` to 1.
pub fn record_build_info() {
    metrics::gauge!(BUILD_INFO, LABEL_VERSION => env!("CARGO_PKG_VERSION")).set(1.0);
}

/// The series names a scrape contains for a metric: histograms add `_bucket`, `_sum`, `_count`.
pub fn series_names(m: &MetricDef) -> Vec<String> {
    match m.kind {
        Kind::Histogram => ["_bucket", "_sum", "_count"].iter().map(|s| format!("{}{s}", m.name)).collect(),
        _ => vec![m.name.to_string()],
    }
}

/// Samples the file system of each datastore into the `chunkyard_datastore_*_bytes` gauges.
/// Errors (a datastore directory not created yet) leave that datastore's gauges as they were.
pub fn sample_disk_usage<'a>(datastores: impl IntoIterator<Item = (&'a str, &'a std::path::Path)>) {
    for (name, path) in datastores {
        let Ok(st) = nix::sys::statvfs::statvfs(path) else { continue };
        let frag = st.fragment_size() as f64;
        let size = st.blocks() as f64 * frag;
        let used = (st.blocks() - st.blocks_free()) as f64 * frag;
        let avail = st.blocks_available() as f64 * frag;
        let label = name.to_string();
        metrics::gauge!(DATASTORE_SIZE, LABEL_DATASTORE => label.clone()).set(size);
        metrics::gauge!(DATASTORE_USED, LABEL_DATASTORE => label.clone()).set(used);
        metrics::gauge!(DATASTORE_AVAILABLE, LABEL_DATASTORE => label).set(avail);
    }
}

#[cfg(test)]
mod tests;
