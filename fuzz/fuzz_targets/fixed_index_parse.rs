//! Any bytes as a `.fidx`: no panic; whatever parses re-encodes to an index that parses equal.
#![no_main]

use chunkyard::format::fixed_index::FixedIndex;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(idx) = FixedIndex::parse(bytes) {
        let again = idx.encode();
        assert_eq!(again.len(), bytes.len());
        assert_eq!(FixedIndex::parse(&again).unwrap(), idx);
        assert_eq!(again[4096..], bytes[4096..]);
        for i in 0..idx.digests.len() {
            assert!(idx.chunk_len(i) >= 1 && idx.chunk_len(i) <= idx.chunk_size);
        }
    }
});
