//! Any query string and any body through the parameter decoder of the API and the backup
//! session: no panic; the query split survives re-encoding; every typed getter either refuses
//! with a 400 or returns a value inside what it promised (range, digest text, archive kind).
#![no_main]

use chunkyard::format::{ArchiveKind, ArchiveName};
use chunkyard::fuzzing::{MAX_PARAM_BODY, Params};
use chunkyard::http::{ApiError, parse_query};
use http::StatusCode;
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 8] = ["wid", "size", "digest", "archive-name", "digest-list", "offset-list", "debug", "x"];

fn refused<T>(r: Result<T, ApiError>) -> Option<T> {
    r.map_err(|e| assert_eq!(e.status, StatusCode::BAD_REQUEST, "{}", e.message)).ok()
}

fn check(params: &Params, name: &str, (min, max): (u64, u64)) {
    let text = refused(params.opt_str(name)).flatten().map(str::to_owned);
    if let Some(n) = refused(params.int(name, min, max)) {
        assert!((min..=max).contains(&n));
    }
    if let Some(Some(n)) = refused(params.opt_int(name, min, max)) {
        assert!((min..=max).contains(&n));
    }
    let _ = refused(params.opt_bool(name));
    if let Some(d) = refused(params.digest(name)) {
        assert_eq!(Some(d.to_hex()), text);
    }
    let _ = refused(params.digest_list(name));
    let _ = refused(params.offset_list(name));
    for kind in [ArchiveKind::Fixed, ArchiveKind::Dynamic, ArchiveKind::Blob] {
        if let Some(a) = refused(params.archive(name, kind)) {
            assert_eq!(a.kind(), kind);
            assert_eq!(Some(a.as_str()), text.as_deref());
        }
    }
    if let Some(a) = refused(params.any_archive(name)) {
        assert_eq!(ArchiveName::parse(a.as_str()).as_ref(), Ok(&a));
    }
}

/// Ranges the endpoints ask for, and the whole of `u64`.
const RANGES: [(u64, u64); 4] = [(1, 256), (0, u64::MAX), (1, 16 * 1024 * 1024), (5, 5)];

fuzz_target!(|data: &[u8]| {
    // Layout (so that seeds stay readable): one control byte, the query, NUL, the body.
    let Some((&control, rest)) = data.split_first() else { return };
    let (query, body) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let query = String::from_utf8_lossy(query);
    let pairs = parse_query(Some(&query));
    let again = form_urlencoded::Serializer::new(String::new()).extend_pairs(&pairs).finish();
    assert_eq!(parse_query(Some(&again)), pairs);

    let mut params = Params::from_query(pairs.clone());
    let ct = ["application/json", "application/x-www-form-urlencoded", "Application/JSON; charset=utf-8"]
        .get(usize::from(control % 4))
        .copied();
    if body.len() <= MAX_PARAM_BODY {
        let _ = refused(params.merge_body(ct, body));
    }
    let range = RANGES[usize::from(control >> 2) % RANGES.len()];
    // Each distinct name once (a repeated key is one array): checking every pair would make
    // a long query quadratic and the fuzzer slow, without reaching anything new.
    let mut names: Vec<&str> = NAMES.into_iter().chain(pairs.iter().map(|(k, _)| k.as_str())).collect();
    names.sort_unstable();
    names.dedup();
    for name in names.into_iter().take(32) {
        check(&params, name, range);
    }
});
