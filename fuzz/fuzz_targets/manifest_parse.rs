//! Any bytes as manifest JSON and as a manifest blob: no panic; whatever parses survives a
//! rewrite unchanged.
#![no_main]

use chunkyard::format::manifest::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    for parsed in [Manifest::from_json(bytes), Manifest::from_blob(bytes)] {
        if let Ok(m) = parsed {
            assert_eq!(Manifest::from_json(&m.to_json()).unwrap(), m);
            assert_eq!(Manifest::from_blob(&m.to_blob()).unwrap(), m);
        }
    }
});
