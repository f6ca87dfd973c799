//! Any request path through the server's normalisation (both rules) and the metric naming: no panic; what
//! comes out is canonical (one `/` between non-empty segments, no `.` or `..` segment, no `/`
//! smuggled inside a segment), and percent-encoding its segments again leads back to it.
#![no_main]

use chunkyard::http::endpoint::endpoint_name;
use chunkyard::http::{Segments, normalize_path};
use http::Method;
use libfuzzer_sys::fuzz_target;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

fuzz_target!(|raw: &str| {
    // The sessions' rule refuses nothing (they rely on it) and only drops empty segments.
    let as_sent = normalize_path(raw, Segments::AsSent).unwrap();
    assert!(as_sent.starts_with('/') && !as_sent.contains("//"), "{raw:?} -> {as_sent:?}");
    let Ok(path) = normalize_path(raw, Segments::Decoded) else {
        return;
    };
    assert!(path.starts_with('/'), "{path:?}");
    if path != "/" {
        let segments: Vec<&str> = path[1..].split('/').collect();
        for s in &segments {
            assert!(!s.is_empty() && *s != "." && *s != "..", "{raw:?} -> {path:?}");
        }
        let encoded: String =
            segments.iter().map(|s| format!("/{}", utf8_percent_encode(s, NON_ALPHANUMERIC))).collect();
        assert_eq!(normalize_path(&encoded, Segments::Decoded).unwrap(), path);
    }
    for method in [Method::GET, Method::POST, Method::PUT, Method::DELETE] {
        let name = endpoint_name(&method, &path);
        // A metric label is one of a fixed set of words, never a piece of the path.
        assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{name:?}");
    }
});
