//! The load tester's report must agree with what the server says it received: its chunk and
//! byte counters (metrics endpoint) and the chunk files in the datastore; a restore reads
//! back exactly what was uploaded. Runs the real binary
//! against a TestServer on 127.0.0.1 (one test function: the metrics recorder is per process).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::Command;

use chunkyard::testing::TestServer;
use serde_json::Value;

fn scrape(addr: SocketAddr) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: prometheus\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// Value of an unlabelled counter (0 when not yet recorded).
fn counter(text: &str, name: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map(|v| v.trim().parse::<f64>().unwrap() as u64)
        .next()
        .unwrap_or(0)
}

const COUNTERS: [&str; 6] = [
    "chunkyard_chunks_uploaded_total",
    "chunkyard_chunks_written_total",
    "chunkyard_chunks_deduplicated_total",
    "chunkyard_encoded_bytes_total",
    "chunkyard_original_bytes_total",
    "chunkyard_written_bytes_total",
];

fn counters(server: &TestServer) -> Vec<u64> {
    let text = scrape(server.metrics_addr.expect("metrics enabled"));
    COUNTERS.iter().map(|n| counter(&text, n)).collect()
}

fn loadtest(server: &TestServer, extra: &[&str]) -> (bool, Value, String) {
    let repo = format!("{}@{}:{}", server.authid, server.addr, server.store);
    let pid = std::process::id().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_chunkyard-loadtest"))
        .args(["--repository", &repo, "--fingerprint", &server.fingerprint])
        .args(["--secret", &server.secret, "--server-pid", &pid, "--json"])
        .args(["--sessions", "3", "--size-mib", "2", "--kind", "dynamic"])
        .args(["--chunk-min-kib", "64", "--chunk-max-kib", "192", "--seed", "11"])
        .args(["--dup-within", "0.2", "--dup-across", "0.3"])
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.success(), report, stderr)
}

fn chunk_files(server: &TestServer) -> u64 {
    let mut n = 0;
    for dir in std::fs::read_dir(server.store_path().join(".chunks")).unwrap() {
        let dir = dir.unwrap().path();
        if dir.is_dir() {
            n += std::fs::read_dir(dir).unwrap().count() as u64;
        }
    }
    n
}

fn u(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} missing in {v}"))
}

#[test]
fn report_matches_what_the_server_stored() {
    let server = TestServer::start();

    // First run: everything new, with duplicates inside and across sessions.
    let before = counters(&server);
    let (ok, r, err) = loadtest(&server, &[]);
    assert!(ok, "loadtest failed: {err}");
    let after = counters(&server);
    let delta: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    let uploaded = u(&r, "chunks_uploaded");
    let distinct = u(&r, "distinct_chunks_uploaded");
    assert_eq!(u(&r, "errors"), 0);
    assert!(u(&r, "chunks_reused") > 0, "within-session duplicates are only appended: {r}");
    assert!(uploaded > distinct, "cross-session duplicates are uploaded again: {r}");
    assert_eq!(delta[0], uploaded, "uploaded chunks");
    assert_eq!(delta[1], distinct, "new chunk files");
    assert_eq!(delta[2], uploaded - distinct, "deduplicated chunks");
    assert_eq!(delta[3], u(&r, "wire_bytes"), "encoded bytes");
    assert_eq!(delta[4], u(&r, "uploaded_original_bytes"), "original bytes");
    assert_eq!(chunk_files(&server), distinct);
    assert!(u(&r, "original_bytes") >= 3 * (2 << 20));
    let cost = &r["server_cost"];
    assert!(cost["peak_rss_bytes"].as_u64().unwrap() > 0);
    assert!(cost["floor_seconds_per_gib"].as_f64().unwrap() > 0.0);
    assert!(r["latency"]["upload_chunk"]["count"].as_u64() == Some(uploaded));
    assert!(r["latency"]["finish"]["count"].as_u64() == Some(3));

    // Incremental: the seed pass stores nothing new, the measured pass uploads nothing.
    let before = counters(&server);
    let (ok, r, err) = loadtest(&server, &["--mode", "incremental"]);
    assert!(ok, "incremental failed: {err}");
    let after = counters(&server);
    assert_eq!(u(&r, "chunks_uploaded"), 0, "{r}");
    assert!(u(&r, "chunks_reused") > 0);
    // Seed pass: same chunks again -> all deduplicated on the server.
    assert_eq!(after[1], before[1], "no new chunk files");
    assert_eq!(after[0] - before[0], uploaded);
    assert_eq!(chunk_files(&server), distinct);

    // Restore reads every distinct chunk of each snapshot back over the reader protocol.
    let (ok, r, err) = loadtest(&server, &["--mode", "restore"]);
    assert!(ok, "restore failed: {err}");
    assert_eq!(u(&r, "errors"), 0);
    let read = u(&r, "chunks_uploaded");
    assert_eq!(read, uploaded, "each session reads its distinct chunks once: {r}");
    assert!(u(&r, "wire_bytes") > 0);
    assert_eq!(r["latency"]["chunk"]["count"].as_u64(), Some(read));
}
