//! The catalogue follows Prometheus naming rules and the exporter renders every metric with
//! its type, help text and real buckets.

use std::collections::HashSet;
use std::io::{Read, Write};

use super::*;

#[test]
fn catalogue_names_follow_prometheus_conventions() {
    let mut seen = HashSet::new();
    for m in CATALOGUE {
        assert!(seen.insert(m.name), "{} listed twice", m.name);
        assert!(m.name.starts_with("chunkyard_"), "{}", m.name);
        assert!(m.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{}", m.name);
        assert!(!m.help.is_empty(), "{} has no help", m.name);
        match m.kind {
            Kind::Counter => assert!(m.name.ends_with("_total"), "counter {} must end in _total", m.name),
            _ => assert!(!m.name.ends_with("_total"), "only counters end in _total: {}", m.name),
        }
        if m.unit == Unit::Seconds {
            assert!(m.name.ends_with("_seconds"), "{}", m.name);
        }
        if m.unit == Unit::Bytes {
            assert!(m.name.contains("_bytes"), "{}", m.name);
        }
        if m.kind == Kind::Histogram {
            assert!(m.buckets.len() > 3, "{} needs real buckets", m.name);
            assert!(m.buckets.windows(2).all(|w| w[0] < w[1]), "{} buckets must increase", m.name);
        } else {
            assert!(m.buckets.is_empty(), "{}", m.name);
        }
    }
}

/// Records one sample into every catalogue metric with plausible labels.
fn record_everything() {
    describe_all();
    record_build_info();
    for stage in Stage::ALL {
        stage.set_queue_depth(3);
        drop(stage.timer());
        stage.observe(std::time::Duration::from_millis(2));
    }
    for name in [CHUNKS_UPLOADED, CHUNKS_WRITTEN, CHUNKS_DEDUPLICATED, CHUNKS_REUSED, TLS_HANDSHAKES] {
        metrics::counter!(name).increment(1);
    }
    for name in [BYTES_ORIGINAL, BYTES_ENCODED, BYTES_WRITTEN, BYTES_DEDUPLICATED] {
        metrics::counter!(name).increment(4096);
    }
    metrics::histogram!(CHUNK_SIZE).record(3_000_000.0);
    metrics::counter!(CHUNK_WRITES, LABEL_METHOD => METHOD_IO_URING).increment(1);
    metrics::counter!(CHUNK_WRITES, LABEL_METHOD => METHOD_FALLBACK).increment(1);
    metrics::gauge!(INFLIGHT).increment(65536.0);
    metrics::gauge!(INFLIGHT_LIMIT).set(1048576.0);
    metrics::counter!(INFLIGHT_WAITS).increment(1);
    metrics::gauge!(SESSIONS_ACTIVE, LABEL_PROTOCOL => PROTOCOL_BACKUP).set(1.0);
    metrics::counter!(SESSIONS, LABEL_PROTOCOL => PROTOCOL_BACKUP, LABEL_OUTCOME => OUTCOME_FINISHED).increment(1);
    metrics::counter!(REQUESTS, LABEL_ENDPOINT => "upload_chunk", LABEL_STATUS => "200").increment(1);
    metrics::histogram!(REQUEST_DURATION, LABEL_ENDPOINT => "upload_chunk").record(0.003);
    metrics::counter!(ERRORS, LABEL_KIND => "bad_request").increment(1);
    metrics::counter!(TLS_HANDSHAKE_FAILURES, LABEL_REASON => REASON_TIMEOUT).increment(1);
    sample_disk_usage([("store", std::path::Path::new("/"))]);
    metrics::histogram!(JOB_DURATION, LABEL_JOB => "gc").record(1.5);
    for name in [JOB_CHUNKS, JOB_REMOVED_BYTES, JOB_CORRUPT_CHUNKS, JOB_SNAPSHOTS_REMOVED] {
        metrics::counter!(name, LABEL_JOB => "gc").increment(1);
    }
    metrics::counter!(LEFTOVERS_REMOVED, LABEL_KIND => LEFTOVER_SNAPSHOT).increment(1);
}

#[test]
fn exporter_renders_every_metric_with_type_help_and_buckets() {
    let recorder = endpoint::builder().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, record_everything);
    let text = handle.render();

    for m in CATALOGUE {
        let ty = match m.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        assert!(text.contains(&format!("# TYPE {} {ty}\n", m.name)), "{} missing as {ty}:\n{text}", m.name);
        assert!(text.contains(&format!("# HELP {} {}", m.name, m.help)), "{} help missing", m.name);
        for series in series_names(m) {
            assert!(
                text.lines().any(|l| l.starts_with(&format!("{series}{{")) || l.starts_with(&format!("{series} "))),
                "series {series} not rendered:\n{text}"
            );
        }
        if m.kind == Kind::Histogram {
            let first = m.buckets[0];
            let buckets = text.lines().filter(|l| l.starts_with(&format!("{}_bucket", m.name))).count();
            assert!(buckets > m.buckets.len(), "{}: {buckets} bucket lines", m.name);
            assert!(text.contains(&format!("le=\"{first}\"")), "{} lacks its first bucket", m.name);
            assert!(!text.contains(&format!("{}{{quantile", m.name)), "{} rendered as summary", m.name);
        }
    }
    let stage_series = text.lines().filter(|l| l.starts_with(STAGE_QUEUE_DEPTH)).count();
    assert_eq!(stage_series, Stage::ALL.len(), "{text}");
    assert!(text.contains(&format!("{BUILD_INFO}{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"))), "{text}");
}

fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn install_serves_scrapes_on_the_bound_port_and_stops_on_drop() {
    let ep = install("127.0.0.1:0".parse().unwrap()).unwrap();
    assert_ne!(ep.addr().port(), 0);
    metrics::counter!(CHUNKS_WRITTEN).increment(2);
    let resp = http_get(ep.addr(), "/metrics");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("text/plain; version=0.0.4"), "{resp}");
    assert!(resp.contains(&format!("{BUILD_INFO}{{version=")), "{resp}");
    assert!(resp.lines().any(|l| l.starts_with(CHUNKS_WRITTEN)), "{resp}");
    assert!(http_get(ep.addr(), "/other").starts_with("HTTP/1.1 404"));
    // a second listener shares the one recorder
    let second = install("127.0.0.1:0".parse().unwrap()).unwrap();
    assert!(http_get(second.addr(), "/metrics").contains(CHUNKS_WRITTEN));
    let addr = ep.addr();
    drop(ep);
    assert!(std::net::TcpStream::connect(addr).is_err(), "listener still open after drop");
    assert!(render().unwrap().contains(BUILD_INFO));
}

#[test]
fn install_for_config_samples_datastore_disks_and_honours_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::config::Config { data_dir: dir.path().into(), ..Default::default() };
    config.metrics.listen = "127.0.0.1:0".parse().unwrap();
    config.metrics.enabled = false;
    assert!(install_for_config(&config).unwrap().is_none());
    config.metrics.enabled = true;
    std::fs::create_dir_all(config.datastore_path("store").unwrap()).unwrap();
    let ep = install_for_config(&config).unwrap().unwrap();
    let resp = http_get(ep.addr(), "/metrics");
    for name in [DATASTORE_SIZE, DATASTORE_USED, DATASTORE_AVAILABLE] {
        let line = resp
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{datastore=\"store\"}}")))
            .unwrap_or_else(|| panic!("{name}:\n{resp}"));
        let v: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(v > 0.0 || name == DATASTORE_USED, "{line}");
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    config.metrics.listen = taken.local_addr().unwrap();
    let e = install_for_config(&config).unwrap_err().to_string();
    assert!(e.contains(&taken.local_addr().unwrap().to_string()), "{e}");
}
