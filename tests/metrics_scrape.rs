//! Scrapes `/metrics` the way Prometheus does and lints the text with `promtool check metrics`:
//! first with one sample in every catalogue metric (so every name, help text and bucket layout
//! is linted), then from a real server after a real backup.

#[path = "common/promtool.rs"]
mod promtool;

use std::io::{Read, Write};
use std::net::SocketAddr;

use chunkyard::metrics::{self, Kind, CATALOGUE};

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
