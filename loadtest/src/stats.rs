//! What a run measured: one HDR histogram per endpoint (microseconds) and byte/chunk counters
//! that every session task adds to while the run goes on (the progress ticker reads them).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

#[derive(Default)]
pub struct Counters {
    /// Logical bytes of every chunk slot done (uploaded or only appended).
    pub original_bytes: AtomicU64,
    /// Decoded bytes of the chunks actually sent.
    pub uploaded_original_bytes: AtomicU64,
    /// Encoded bytes sent in chunk uploads (or received in chunk downloads).
    pub wire_bytes: AtomicU64,
    pub chunks_uploaded: AtomicU64,
    /// Slots only appended because the session knew the chunk (earlier in it, or `previous`).
    pub chunks_reused: AtomicU64,
    pub sessions_done: AtomicU64,
    pub errors: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
    /// One chunk-sized request done that moved `wire` bytes for `original` logical ones
    /// (restore and speedtest count their requests as chunks).
    pub fn transferred(&self, wire: u64, original: u64) {
        Self::add(&self.wire_bytes, wire);
        Self::add(&self.original_bytes, original);
        Self::add(&self.chunks_uploaded, 1);
    }
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Latencies per endpoint name ("upload_chunk", "append", "upgrade", ...).
pub struct Recorder {
    hists: Mutex<BTreeMap<&'static str, Histogram<u64>>>,
    pub counters: Counters,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder { hists: Mutex::new(BTreeMap::new()), counters: Counters::default() }
    }
}

impl Recorder {
    pub fn record(&self, endpoint: &'static str, latency: Duration) {
        let us = (latency.as_micros() as u64).max(1);
        let mut hists = self.hists.lock().expect("recorder lock");
        hists
            .entry(endpoint)
            .or_insert_with(|| {
                // 1 µs .. 1 h at 3 significant figures; anything slower is clamped to 1 h.
                Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
            })
            .saturating_record(us);
    }

    pub fn latencies(&self) -> BTreeMap<String, Latency> {
        let hists = self.hists.lock().expect("recorder lock");
        hists.iter().map(|(name, h)| (name.to_string(), Latency::of(h))).collect()
    }
}

/// Summary of one endpoint's histogram, milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// Server cost measured through /proc (see `procfs`).
#[derive(Debug, Clone, Serialize)]
pub struct ServerCost {
    pub pid: u32,
    pub cpu_seconds: f64,
    pub cpu_seconds_per_gib: f64,
    /// Single-thread CRC + zstd decompress + SHA-256 over the same uploads, seconds per GiB.
    /// None for restore and speedtest, where no chunk is verified.
    pub floor_seconds_per_gib: Option<f64>,
    pub ratio_to_floor: Option<f64>,
    pub peak_rss_bytes: u64,
}

/// The `--json` report of one run against one server (schema in README, "Load testing").
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub server: String,
    pub mode: String,
    pub model: String,
    pub sessions: usize,
    pub elapsed_seconds: f64,
    pub original_bytes: u64,
    pub uploaded_original_bytes: u64,
    pub wire_bytes: u64,
    pub chunks_uploaded: u64,
    pub chunks_reused: u64,
    /// Distinct chunks among the uploads (what a fresh datastore ends up storing).
    pub distinct_chunks_uploaded: u64,
    pub original_mb_per_s: f64,
    pub wire_mb_per_s: f64,
    pub chunks_per_s: f64,
    pub errors: u64,
    pub latency: BTreeMap<String, Latency>,
    pub server_cost: Option<ServerCost>,
}

impl Report {
    pub fn print_human(&self) {
        println!(
            "{} [{} {} x{} sessions] against {}: {:.1} s",
            self.scenario, self.mode, self.model, self.sessions, self.server, self.elapsed_seconds
        );
        println!(
            "  {:.1} MB/s original, {:.1} MB/s wire, {:.1} chunks/s; {} uploaded ({} distinct), {} reused, {} errors",
            self.original_mb_per_s,
            self.wire_mb_per_s,
            self.chunks_per_s,
            self.chunks_uploaded,
            self.distinct_chunks_uploaded,
            self.chunks_reused,
            self.errors
        );
        println!(
            "  {:<16} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "endpoint", "count", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
        );
        for (name, l) in &self.latency {
            println!(
                "  {:<16} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                name, l.count, l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
            );
        }
        if let Some(c) = &self.server_cost {
            let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
            println!(
                "  server pid {}: {:.2} CPU s/GiB (floor {}, ratio {}), peak RSS {} MiB",
                c.pid,
                c.cpu_seconds_per_gib,
                opt(c.floor_seconds_per_gib),
                opt(c.ratio_to_floor),
                c.peak_rss_bytes >> 20
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_recorded_values() {
        let r = Recorder::default();
        for ms in 1..=1000u64 {
            r.record("upload_chunk", Duration::from_millis(ms));
        }
        let l = &r.latencies()["upload_chunk"];
        assert_eq!(l.count, 1000);
        assert!((l.p50_ms - 500.0).abs() < 1.0, "{}", l.p50_ms);
        assert!((l.p99_ms - 990.0).abs() < 1.5, "{}", l.p99_ms);
        assert!((l.max_ms - 1000.0).abs() < 1.5, "{}", l.max_ms);
    }
}
