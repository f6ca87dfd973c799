//! Index codec tests: spec vectors T5 and T6 (formats.md 11) and the strict length rules of
//! 3.1-3.3, for both index kinds (they share the header code under test here).

use super::*;
use crate::format::dynamic_index::{DYNAMIC_INDEX_MAGIC, DynamicEntry, DynamicIndex};

const UUID: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
const CTIME: i64 = 1_700_000_000;

fn t5() -> FixedIndex {
    FixedIndex { uuid: UUID, ctime: CTIME, size: 5, chunk_size: FIXED_CHUNK_SIZE, digests: vec![Digest::of(b"hello")] }
}

fn t6() -> DynamicIndex {
    DynamicIndex {
        uuid: UUID,
        ctime: CTIME,
        entries: vec![
            DynamicEntry { end: 5, digest: Digest::of(b"hello") },
            DynamicEntry { end: 11, digest: Digest::of(b" world") },
        ],
    }
}

#[test]
fn t5_fixed_index_bytes() {
    let file = t5().encode();
    assert_eq!(file.len(), 4128);
    let mut want = vec![0u8; 4096];
    want[..16].copy_from_slice(&hex::decode("2f7f41ed91fd0fcd0001020304050607").unwrap());
    want[16..32].copy_from_slice(&hex::decode("08090a0b0c0d0e0f00f1536500000000").unwrap());
    want[32..64]
        .copy_from_slice(&hex::decode("9595c9df90075148eb06860365df33584b75bff782a510c6cd4883a419833d50").unwrap());
    want[64..80].copy_from_slice(&hex::decode("05000000000000000000400000000000").unwrap());
    want.extend(hex::decode("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824").unwrap());
    assert_eq!(file, want);
    assert_eq!(hex::encode(t5().csum()), "9595c9df90075148eb06860365df33584b75bff782a510c6cd4883a419833d50");
    assert_eq!(stored_csum(&file).unwrap(), t5().csum());
    assert_eq!(FixedIndex::parse(&file).unwrap(), t5());
}

#[test]
fn t6_dynamic_index_bytes() {
    let file = t6().encode();
    assert_eq!(file.len(), 4176);
    assert_eq!(file[..8], DYNAMIC_INDEX_MAGIC);
    assert_eq!(file[8..24], UUID);
    assert_eq!(file[24..32], CTIME.to_le_bytes());
    assert_eq!(hex::encode(&file[32..64]), "9b2fd908141c00eaabcc62853152a71a5db06f0b722ff557a0a50352eb6c22cd");
    assert!(file[64..4096].iter().all(|&b| b == 0));
    assert_eq!(file[4096..4104], [5, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(hex::encode(&file[4104..4136]), "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
    assert_eq!(file[4136..4144], [11, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(hex::encode(&file[4144..]), "045f13dd864bafaad0dd977ac971de549b090cb2836f061d0779b26dd9bb8f4b");
    assert_eq!(t6().csum()[..], file[32..64]);
    let parsed = DynamicIndex::parse(&file).unwrap();
    assert_eq!(parsed, t6());
    assert_eq!((parsed.size(), parsed.chunk_len(0), parsed.chunk_len(1)), (11, 5, 6));
}

#[test]
fn csum_is_sha256_of_the_body() {
    use sha2::{Digest as _, Sha256};
    let f = FixedIndex { size: 9 << 20, digests: (0..3u8).map(|i| Digest([i; 32])).collect(), ..t5() };
    assert_eq!(f.csum()[..], Sha256::digest(&f.encode()[4096..])[..]);
    let d = t6();
    assert_eq!(d.csum()[..], Sha256::digest(&d.encode()[4096..])[..]);
}

#[test]
fn fixed_chunk_lengths() {
    let f = FixedIndex { size: 13 << 20, digests: vec![Digest([0; 32]); 4], ..t5() };
    assert_eq!(FixedIndex::slot_count(13 << 20, FIXED_CHUNK_SIZE), 4);
    assert_eq!(FixedIndex::slot_count(12 << 20, FIXED_CHUNK_SIZE), 3);
    assert_eq!((0..4).map(|i| f.chunk_len(i)).collect::<Vec<_>>(), [4 << 20, 4 << 20, 4 << 20, 1 << 20]);
    assert_eq!(f.chunk_len(4), 0);
    assert_eq!(t5().chunk_len(0), 5);
}

#[test]
fn fixed_parse_rejects_bad_files() {
    let good = t5().encode();
    assert!(matches!(FixedIndex::parse(&good[..4095]), Err(IndexError::TooSmall)));
    let mut m = good.clone();
    m[0] ^= 1;
    assert!(matches!(FixedIndex::parse(&m), Err(IndexError::WrongMagic)));
    // A didx is not a fidx.
    assert!(matches!(FixedIndex::parse(&t6().encode()), Err(IndexError::WrongMagic)));
    // One digest slot too many or too few, or a partial slot.
    let mut long = good.clone();
    long.extend([0; 32]);
    assert!(matches!(FixedIndex::parse(&long), Err(IndexError::WrongFileSize)));
    assert!(matches!(FixedIndex::parse(&good[..4096]), Err(IndexError::WrongFileSize)));
    assert!(matches!(FixedIndex::parse(&good[..4127]), Err(IndexError::WrongFileSize)));
    for cs in [0u64, 3 << 20] {
        let mut f = good.clone();
        f[72..80].copy_from_slice(&cs.to_le_bytes());
        assert!(matches!(FixedIndex::parse(&f), Err(IndexError::Invalid(_))), "chunk size {cs}");
    }
    let zero = FixedIndex { size: 0, digests: vec![], ..t5() }.encode();
    assert!(matches!(FixedIndex::parse(&zero), Err(IndexError::Invalid(_))));
    // A size whose slot count overflows the file length arithmetic.
    let mut huge = good.clone();
    huge[64..72].copy_from_slice(&u64::MAX.to_le_bytes());
    huge[72..80].copy_from_slice(&1u64.to_le_bytes());
    assert!(matches!(FixedIndex::parse(&huge), Err(IndexError::WrongFileSize)));
}

#[test]
fn fixed_parse_does_not_trust_the_header_csum() {
    let mut f = t5().encode();
    f[40] ^= 0xff;
    let parsed = FixedIndex::parse(&f).unwrap();
    assert_eq!(parsed.csum(), t5().csum());
    assert_ne!(stored_csum(&f).unwrap(), parsed.csum());
}

#[test]
fn dynamic_parse_rejects_bad_files() {
    let good = t6().encode();
    assert!(matches!(DynamicIndex::parse(&good[..100]), Err(IndexError::TooSmall)));
    assert!(matches!(DynamicIndex::parse(&t5().encode()), Err(IndexError::WrongMagic)));
    assert!(matches!(DynamicIndex::parse(&good[..good.len() - 1]), Err(IndexError::WrongFileSize)));
    // Equal ends (an empty chunk), a decreasing end, a first end of zero.
    for (at, end) in [(4136, 5u64), (4136, 4), (4096, 0)] {
        let mut f = good.clone();
        f[at..at + 8].copy_from_slice(&end.to_le_bytes());
        assert!(matches!(DynamicIndex::parse(&f), Err(IndexError::Invalid(_))), "end {end} at {at}");
    }
    let empty = DynamicIndex { entries: vec![], ..t6() };
    assert_eq!(DynamicIndex::parse(&empty.encode()).unwrap().size(), 0);
}

#[test]
fn error_texts_match_the_reference() {
    assert_eq!(IndexError::WrongMagic.to_string(), "got unknown magic number");
    assert_eq!(IndexError::WrongFileSize.to_string(), "unexpected file size");
}
