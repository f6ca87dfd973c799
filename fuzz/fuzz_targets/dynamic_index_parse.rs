//! Any bytes as a `.didx`: no panic; whatever parses re-encodes to the same entries.
#![no_main]

use chunkyard::format::dynamic_index::DynamicIndex;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(idx) = DynamicIndex::parse(bytes) {
        let again = idx.encode();
        assert_eq!(again[4096..], bytes[4096..]);
        assert_eq!(DynamicIndex::parse(&again).unwrap(), idx);
        let total: u64 = (0..idx.entries.len()).map(|i| idx.chunk_len(i)).sum();
        assert_eq!(total, idx.size());
    }
});
