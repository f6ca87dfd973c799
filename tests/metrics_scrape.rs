//! Scrapes `/metrics` the way Prometheus does and lints the text with `promtool check metrics`:
//! first with one sample in every catalogue metric (so every name, help text and bucket layout
//! is linted), then from a real server after a real backup.

#[path = "common/promtool.rs"]
mod promtool;

use std::io::{Read, Write};
use std::net::SocketAddr;

use chunkyard::metrics::{self, CATALOGUE, Kind};

fn scrape(addr: SocketAddr) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: prometheus\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").expect("HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{head}");
    body.to_string()
}

fn lint(text: &str) {
    let Some(promtool) = promtool::promtool() else { return };
    let (ok, out) = promtool::run(&promtool, &["check", "metrics"], text.as_bytes());
    assert!(ok, "promtool check metrics failed:\n{out}\n--- scrape ---\n{text}");
}

#[test]
fn every_catalogue_metric_passes_promtool_lint() {
    let endpoint = metrics::install("127.0.0.1:0".parse().unwrap()).unwrap();
    for m in CATALOGUE {
        match m.kind {
            Kind::Counter => metrics::counter!(m.name, "lint" => "1").increment(1),
            Kind::Gauge => metrics::gauge!(m.name, "lint" => "1").set(1.0),
            Kind::Histogram => metrics::histogram!(m.name, "lint" => "1").record(m.buckets[1]),
        }
    }
    let text = scrape(endpoint.addr());
    for m in CATALOGUE {
        for series in metrics::series_names(m) {
            assert!(text.contains(&format!("\n{series}{{")), "{series} missing from scrape");
        }
    }
    lint(&text);
}

/// The value of one series (exact name + label set as rendered), or 0 if absent.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0.0, |v| v.parse().unwrap())
}

/// Sum over all label sets of a metric.
fn total(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b'{') | Some(b' ')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn real_backup_is_visible_in_a_scrape_that_promtool_accepts() {
    use bytes::Bytes;
    use chunkyard::client::{BackupOptions, BackupParams, HttpClient};
    use chunkyard::testing::TestServer;

    let server = TestServer::start();
    // An existing chunk store is opened, not created: skips making 65536 directories up front.
    std::fs::create_dir_all(server.store_path().join(".chunks")).unwrap();
    let metrics_addr = server.metrics_addr.expect("TestServer runs the metrics listener");
    let before = scrape(metrics_addr);

    // 9 MiB of distinct pseudo-random data (three fixed chunks, no two alike), then the same
    // again as a second snapshot: the second run reuses all three without uploading.
    let data = Bytes::from(chunkyard::testing::noise(9 * 1024 * 1024, 1));
    let client = HttpClient::new(server.client_config()).unwrap();
    for (n, time) in [1_700_000_000i64, 1_700_000_100].into_iter().enumerate() {
        let session = client
            .start_backup(&BackupParams::new(&server.store, "host", "metrics-scrape", time))
            .await
            .unwrap_or_else(|e| panic!("backup {n}: {e}"));
        let mut up = session.uploader(BackupOptions::default()).await.unwrap();
        up.fixed("disk.img.fidx", data.clone()).await.unwrap();
        up.finish().await.unwrap();
    }

    let text = scrape(metrics_addr);
    lint(&text);
    use chunkyard::metrics as m;
    let grew = |name: &str| total(&text, name) - total(&before, name);
    assert!(grew(m::CHUNKS_UPLOADED) >= 3.0, "{text}");
    assert!(grew(m::CHUNKS_WRITTEN) >= 3.0, "{text}");
    assert!(grew(m::BYTES_WRITTEN) > 0.0 && grew(m::BYTES_ENCODED) > 0.0, "{text}");
    assert!(grew(m::BYTES_ORIGINAL) >= (9 * 1024 * 1024) as f64, "{text}");
    assert!(grew(m::CHUNKS_REUSED) >= 3.0, "second snapshot reuses the first one's chunks:\n{text}");
    assert!(grew(m::CHUNK_WRITES) >= 3.0, "{text}");
    assert!(grew(&format!("{}_count", m::STAGE_DURATION)) > 0.0, "{text}");
    for stage in ["hasher", "writer"] {
        let series = format!("{}_count{{stage=\"{stage}\"}}", m::STAGE_DURATION);
        assert!(value(&text, &series) - value(&before, &series) >= 3.0, "{series}:\n{text}");
    }
    assert!(grew(m::REQUESTS) > 0.0, "{text}");
    assert!(grew(m::TLS_HANDSHAKES) >= 2.0, "{text}");
    assert!(total(&text, m::DATASTORE_SIZE) > 0.0, "{text}");
    assert!(text.contains(&format!("{}{{version=\"{}\"}} 1", m::BUILD_INFO, env!("CARGO_PKG_VERSION"))));
}
