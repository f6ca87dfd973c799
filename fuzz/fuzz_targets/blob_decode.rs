//! Any bytes through every blob entry point: no panic, and the answers agree with each other.
#![no_main]

use chunkyard::format::Digest;
use chunkyard::format::blob;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &[u8]| {
    let kind = blob::kind_of(raw);
    assert_eq!(kind.is_ok(), blob::compute_crc(raw).is_ok());
    if let Ok(data) = blob::decode(raw) {
        // Whatever decodes must verify as a chunk of its own digest and length.
        assert_eq!(blob::verify_chunk(raw, &Digest::of(&data), data.len() as u64).ok(), kind.ok());
    }
    let mut copy = raw.to_vec();
    if blob::set_crc(&mut copy).is_ok() {
        assert!(blob::check_crc(&copy).is_ok());
    }
    let _ = blob::verify_chunk(raw, &Digest([0; 32]), raw.len() as u64);
});
