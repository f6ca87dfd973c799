//! Unit tests of index building: offsets, slots, all-or-nothing appends, close checks.

use super::*;
use crate::actors::index_memory::{IndexBudget, IndexMemory};
use crate::format::ArchiveName;

const MIB4: u64 = FIXED_CHUNK_SIZE;

fn d(n: u8) -> Digest {
    Digest([n; 32])
}

fn e(offset: u64, n: u8, len: u64) -> AppendEntry {
    AppendEntry { offset, digest: d(n), len }
}

/// A charge against bounds no test reaches, sized for a fixed index of `size` (0: dynamic).
fn charge(size: u64) -> IndexCharge {
    let budget = IndexBudget::new(u64::MAX, IndexMemory::server(u64::MAX));
    let bytes = IndexBuilder::fixed_table_bytes(size).unwrap_or(0);
    budget.charge(&ArchiveName::parse("any.fidx").unwrap(), bytes).unwrap()
}

fn dynamic() -> IndexBuilder {
    IndexBuilder::dynamic(ArchiveName::parse("root.pxar.didx").unwrap(), charge(0))
}

fn fixed(size: u64) -> IndexBuilder {
    IndexBuilder::fixed(ArchiveName::parse("disk.img.fidx").unwrap(), size, None, charge(size)).unwrap()
}

#[test]
fn dynamic_appends_must_be_contiguous() {
    let mut b = dynamic();
    b.append(&[e(0, 1, 10), e(10, 2, 5)]).unwrap();
    let err = b.append(&[e(16, 3, 1)]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "dynamic writer 'root.pxar.didx' append chunk failed - got strange chunk offset (15 != 16)"
    );
    b.append(&[e(15, 3, 1)]).unwrap();
    assert_eq!(b.appended, 3);
}

#[test]
fn dynamic_put_is_all_or_nothing() {
    let mut b = dynamic();
    assert!(b.append(&[e(0, 1, 10), e(11, 2, 5)]).is_err());
    assert_eq!(b.appended, 0);
    // Nothing of the failed PUT stuck: the first entry can be appended again at offset 0.
    b.append(&[e(0, 1, 10)]).unwrap();
    assert_eq!(b.appended, 1);
}

#[test]
fn dynamic_growth_is_charged_before_it_happens_and_a_refused_put_appends_nothing() {
    let name = ArchiveName::parse("root.pxar.didx").unwrap();
    let budget = IndexBudget::new(6 * DYNAMIC_ENTRY_BYTES, IndexMemory::server(u64::MAX));
    let mut b = IndexBuilder::dynamic(name.clone(), budget.charge(&name, 0).unwrap());
    b.append(&[e(0, 1, 10), e(10, 2, 5), e(15, 3, 1)]).unwrap();
    // The table doubles as a Vec would: room for 6 is charged for the 4th entry.
    b.append(&[e(16, 4, 1)]).unwrap();
    assert_eq!(b.charge.bytes(), 6 * DYNAMIC_ENTRY_BYTES);
    let err = b.append(&[e(17, 5, 1), e(18, 6, 1), e(19, 7, 1)]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "index memory limit exceeded - 'root.pxar.didx' needs 240 bytes, 240 of the session's 240 are in use"
    );
    assert_eq!((b.appended, b.charge.bytes()), (4, 6 * DYNAMIC_ENTRY_BYTES));
    // What fits the room already charged still appends.
    b.append(&[e(17, 5, 1), e(18, 6, 1)]).unwrap();
    assert_eq!(b.appended, 6);
    drop(b);
    assert!(budget.charge(&name, 6 * DYNAMIC_ENTRY_BYTES).is_ok(), "dropping the index gave its charge back");
}

#[test]
fn fixed_slot_rules_follow_the_reference() {
    let size = 2 * MIB4 + 100;
    let mut b = fixed(size);
    let msg = |r: Result<(), SessionError>| r.unwrap_err().to_string();
    assert_eq!(msg(b.append(&[e(MIB4 + 1, 1, MIB4)])), "got unaligned chunk (pos = 4194305)");
    assert_eq!(
        msg(b.append(&[e(2 * MIB4, 1, 200)])),
        format!("chunk data exceeds size ({} >= {size})", 2 * MIB4 + 200)
    );
    assert_eq!(msg(b.append(&[e(0, 1, 100)])), format!("chunk with unexpected length (100 != {MIB4}"));
    assert_eq!(msg(b.append(&[e(MIB4 - 100, 1, 200)])), format!("chunk with unexpected length (200 != {MIB4}"));
    assert_eq!(msg(b.append(&[e(2 * MIB4 - MIB4 / 2, 1, MIB4 / 2 + 100)])), "got unaligned chunk (pos = 6291456)");
    // The last, short chunk and full chunks in any order are fine.
    b.append(&[e(2 * MIB4, 3, 100), e(0, 1, MIB4)]).unwrap();
    assert_eq!(b.appended, 2);
}

#[test]
fn fixed_put_is_all_or_nothing() {
    let mut b = fixed(2 * MIB4);
    assert!(b.append(&[e(0, 1, MIB4), e(3, 2, MIB4)]).is_err());
    assert_eq!(b.appended, 0);
    match &b.body {
        Body::Fixed { filled, .. } => assert!(filled.iter().all(|f| !f)),
        _ => unreachable!(),
    }
}

#[test]
fn fixed_clone_needs_equal_slot_counts() {
    let name = ArchiveName::parse("disk.img.fidx").unwrap();
    let err = IndexBuilder::fixed(name, 3 * MIB4, Some(vec![d(1); 2]), charge(3 * MIB4)).unwrap_err();
    assert_eq!(err.to_string(), "clone_data_from failed - index sizes not equal");
}

#[test]
fn fixed_size_is_capped_before_anything_is_allocated() {
    let name = ArchiveName::parse("disk.img.fidx").unwrap();
    for size in [MAX_FIXED_SIZE + 1, u64::MAX] {
        let err = IndexBuilder::fixed(name.clone(), size, None, charge(0)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("fixed index size {size} is larger than the supported 70368744177664 bytes")
        );
    }
    // A 1 TiB image (8.3 MiB of tables) opens as before.
    assert!(IndexBuilder::fixed(name, 1 << 40, None, charge(1 << 40)).unwrap().is_fixed());
}

fn hex_csum_dynamic(entries: &[(u64, Digest)]) -> String {
    use sha2::{Digest as _, Sha256};
    let mut h = Sha256::new();
    for (end, dg) in entries {
        h.update(end.to_le_bytes());
        h.update(dg.0);
    }
    hex::encode(h.finalize())
}

fn hex_csum_fixed(digests: &[Digest]) -> String {
    use sha2::{Digest as _, Sha256};
    let mut h = Sha256::new();
    digests.iter().for_each(|dg| h.update(dg.0));
    hex::encode(h.finalize())
}

#[test]
fn dynamic_close_checks_count_size_csum_then_encodes() {
    let mk = || {
        let mut b = dynamic();
        b.append(&[e(0, 1, 10), e(10, 2, 5)]).unwrap();
        b
    };
    let csum = hex_csum_dynamic(&[(10, d(1)), (15, d(2))]);
    let err = |r: Result<Vec<u8>, SessionError>| r.unwrap_err().to_string();
    assert_eq!(
        err(mk().close(3, 15, &csum)),
        "dynamic writer 'root.pxar.didx' close failed - unexpected chunk count (2 != 3)"
    );
    assert_eq!(
        err(mk().close(2, 16, &csum)),
        "dynamic writer 'root.pxar.didx' close failed - unexpected file size (15 != 16)"
    );
    assert_eq!(
        err(mk().close(2, 15, &"0".repeat(64))),
        "dynamic writer 'root.pxar.didx' close failed - got unexpected checksum"
    );
    let bytes = mk().close(2, 15, &csum).unwrap();
    let parsed = DynamicIndex::parse(&bytes).unwrap();
    assert_eq!(parsed.entries, vec![DynamicEntry { end: 10, digest: d(1) }, DynamicEntry { end: 15, digest: d(2) }]);
    assert_eq!(hex::encode(parsed.csum()), csum);
}

#[test]
fn fixed_close_refuses_holes_and_checks_totals() {
    let size = 2 * MIB4 + 1;
    let full = [d(1), d(2), d(3)];
    let csum = hex_csum_fixed(&full);
    let err = |r: Result<Vec<u8>, SessionError>| r.unwrap_err().to_string();
    // The same slot twice: chunk-count matches the slot count, but slot 1 stays empty.
    let mut b = fixed(size);
    b.append(&[e(0, 1, MIB4), e(0, 1, MIB4), e(2 * MIB4, 3, 1)]).unwrap();
    let holes_csum = hex_csum_fixed(&[d(1), Digest([0; 32]), d(3)]);
    assert_eq!(
        err(b.close(3, size, &holes_csum)),
        "fixed writer 'disk.img.fidx' close failed - 1 of 3 slots were never written (index has holes)"
    );
    let mk = || {
        let mut b = fixed(size);
        b.append(&[e(2 * MIB4, 3, 1), e(0, 1, MIB4), e(MIB4, 2, MIB4)]).unwrap();
        b
    };
    assert_eq!(
        err(mk().close(2, size, &csum)),
        "fixed writer 'disk.img.fidx' close failed - received wrong number of chunk (3 != 2)"
    );
    assert_eq!(
        err(mk().close(3, size + 1, &csum)),
        format!("fixed writer 'disk.img.fidx' close failed - unexpected file size ({size} != {})", size + 1)
    );
    assert_eq!(
        err(mk().close(3, size, &"ab".repeat(32))),
        "fixed writer 'disk.img.fidx' close failed - got unexpected checksum"
    );
    let parsed = FixedIndex::parse(&mk().close(3, size, &csum).unwrap()).unwrap();
    assert_eq!((parsed.size, parsed.chunk_size, parsed.digests), (size, MIB4, full.to_vec()));
}

#[test]
fn incremental_fixed_close_counts_only_new_appends() {
    let name = ArchiveName::parse("disk.img.fidx").unwrap();
    let size = 2 * MIB4;
    let b = IndexBuilder::fixed(name.clone(), size, Some(vec![d(1), d(2)]), charge(size)).unwrap();
    b.close(0, 0, &hex_csum_fixed(&[d(1), d(2)])).unwrap();
    let mut b = IndexBuilder::fixed(name, size, Some(vec![d(1), d(2)]), charge(size)).unwrap();
    b.append(&[e(MIB4, 9, MIB4)]).unwrap();
    let parsed = FixedIndex::parse(&b.close(1, 0, &hex_csum_fixed(&[d(1), d(9)])).unwrap()).unwrap();
    assert_eq!(parsed.digests, vec![d(1), d(9)]);
}
