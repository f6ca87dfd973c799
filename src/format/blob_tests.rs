//! Blob codec tests: spec vectors T1-T4 (formats.md 11) and every rejection rule of 2.2-2.6.

use super::*;

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).unwrap()
}

const T1: &str = "42ab3807be8370a1 86a61036 68656c6c6f";

#[test]
fn t1_plain_uncompressed_hello() {
    let blob = encode(b"hello", true).unwrap();
    assert_eq!(blob, h(T1));
    assert_eq!(hex::encode(Sha256::digest(&blob)), "9c5944aba3379b450612203cafb5bf60c2358103550b7f799d197f4668f169d5");
    assert_eq!(check_crc(&blob).unwrap(), BlobKind::Uncompressed);
    assert_eq!(decode(&blob).unwrap(), b"hello");
    assert_eq!(encode(b"hello", false).unwrap(), blob);
}

#[test]
fn t2_digest_and_prefix_of_hello() {
    let d = Digest::of(b"hello");
    assert_eq!(d.to_hex(), "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
    assert_eq!(d.prefix_dir(), "2cf2");
    assert_eq!(verify_chunk(&h(T1), &d, 5).unwrap(), BlobKind::Uncompressed);
}

#[test]
fn t3_forced_compression_of_hello() {
    let frame = zstd_stream_encode(b"hello").unwrap();
    assert_eq!(frame, h("28b52ffd 00 48 290000 68656c6c6f"));
    assert_eq!(compress_if_smaller(b"hello").unwrap(), None);
    let blob = assemble(BlobKind::Compressed, &[], &frame);
    assert_eq!(blob, h("31b958426fb6a37f 198309ce 28b52ffd004829000068656c6c6f"));
    assert_eq!(decode(&blob).unwrap(), b"hello");
    assert_eq!(verify_chunk(&blob, &Digest::of(b"hello"), 5).unwrap(), BlobKind::Compressed);
}

#[test]
fn t4_zero_chunk() {
    let data = vec![0u8; 4 << 20];
    let d = Digest::of(&data);
    assert_eq!(d.to_hex(), "bb9f8df61474d25e71fa00722318cd387396ca1736605e1248821cc0de3d3af8");
    let blob = encode(&data, true).unwrap();
    assert_eq!(kind_of(&blob).unwrap(), BlobKind::Compressed);
    // libzstd 1.5.x level 1 streaming: 146-byte payload with CRC 0x293822ec.
    assert_eq!(blob.len(), 158);
    assert_eq!(stored_crc(&blob).unwrap(), 0x293822ec);
    assert_eq!(verify_chunk(&blob, &d, 4 << 20).unwrap(), BlobKind::Compressed);
    assert_eq!(decode(&blob).unwrap(), data);
}

#[test]
fn magics_are_sha256_prefixes_of_their_names() {
    for (kind, name) in [
        (BlobKind::Uncompressed, "Proxmox Backup uncompressed blob v1.0"),
        (BlobKind::Compressed, "Proxmox Backup zstd compressed blob v1.0"),
        (BlobKind::Encrypted, "Proxmox Backup encrypted blob v1.0"),
        (BlobKind::EncryptedCompressed, "Proxmox Backup zstd compressed encrypted blob v1.0"),
    ] {
        assert_eq!(kind.magic()[..], Sha256::digest(name.as_bytes())[..8], "{kind:?}");
        assert_eq!(kind_of(&assemble(kind, &vec![0; kind.header_len() - 12], b"")).unwrap(), kind);
    }
}

#[test]
fn rejects_short_and_unknown_blobs() {
    assert!(matches!(kind_of(&h(T1)[..11]), Err(BlobError::TooSmall)));
    assert!(matches!(kind_of(&[]), Err(BlobError::TooSmall)));
    let mut bad = h(T1);
    bad[7] ^= 1;
    assert!(matches!(kind_of(&bad), Err(BlobError::WrongMagic)));
    // The pre-0.8 authenticated blob magic is unknown today.
    let mut auth = h(T1);
    auth[..8].copy_from_slice(&[31, 135, 238, 226, 145, 206, 5, 2]);
    assert!(matches!(decode(&auth), Err(BlobError::WrongMagic)));
    let enc = assemble(BlobKind::Encrypted, &[0; 32], b"x");
    assert!(matches!(kind_of(&enc[..43]), Err(BlobError::EncryptedTooSmall)));
    assert!(matches!(verify_chunk(&enc[..20], &Digest([0; 32]), 1), Err(BlobError::EncryptedTooSmall)));
}

#[test]
fn crc_covers_only_the_payload() {
    let mut blob = h(T1);
    blob[12] ^= 0x20;
    assert!(matches!(check_crc(&blob), Err(BlobError::WrongCrc)));
    assert!(matches!(decode(&blob), Err(BlobError::WrongCrc)));
    assert_eq!(set_crc(&mut blob).unwrap(), BlobKind::Uncompressed);
    assert_eq!(check_crc(&blob).unwrap(), BlobKind::Uncompressed);
    assert_eq!(compute_crc(&blob).unwrap(), crc32fast::hash(b"Hello"));

    // Encrypted: the IV and tag are outside the CRC.
    let mut enc = assemble(BlobKind::EncryptedCompressed, &[7; 32], b"cipher");
    assert_eq!(stored_crc(&enc).unwrap(), crc32fast::hash(b"cipher"));
    enc[20] ^= 1;
    assert_eq!(check_crc(&enc).unwrap(), BlobKind::EncryptedCompressed);
    enc[44] ^= 1;
    assert!(matches!(check_crc(&enc), Err(BlobError::WrongCrc)));
    set_crc(&mut enc).unwrap();
    assert!(check_crc(&enc).is_ok());
}

#[test]
fn empty_payload_is_legal() {
    let blob = encode(b"", true).unwrap();
    assert_eq!(blob.len(), 12);
    assert_eq!(decode(&blob).unwrap(), b"");
}

#[test]
fn incompressible_data_stays_uncompressed() {
    let data: Vec<u8> = (0..100_000u32).flat_map(|i| Sha256::digest(i.to_le_bytes())).collect();
    let blob = encode(&data, true).unwrap();
    assert_eq!(kind_of(&blob).unwrap(), BlobKind::Uncompressed);
    assert_eq!(blob.len(), data.len() + 12);
    assert_eq!(verify_chunk(&blob, &Digest::of(&data), data.len() as u64).unwrap(), BlobKind::Uncompressed);
}

#[test]
fn encode_refuses_oversized_input() {
    let big = vec![0u8; MAX_BLOB_SIZE + 1];
    assert!(matches!(encode(&big, true), Err(BlobError::TooLarge)));
}

#[test]
fn verify_ignores_the_crc_but_checks_length_and_digest() {
    let data = b"some text some text some text some text some text".repeat(100);
    let d = Digest::of(&data);
    let mut blob = encode(&data, true).unwrap();
    assert_eq!(kind_of(&blob).unwrap(), BlobKind::Compressed);
    blob[8] ^= 0xff;
    assert_eq!(verify_chunk(&blob, &d, data.len() as u64).unwrap(), BlobKind::Compressed);

    let n = data.len() as u64;
    match verify_chunk(&blob, &d, n + 1) {
        Err(BlobError::WrongLength { expected, actual }) => assert_eq!((expected, actual), (n + 1, n)),
        other => panic!("{other:?}"),
    }
    // Announced shorter than the data: the bulk buffer overflows, the true length is reported.
    match verify_chunk(&blob, &d, n - 1) {
        Err(BlobError::WrongLength { expected, actual }) => assert_eq!((expected, actual), (n - 1, n)),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        verify_chunk(&blob, &d, 1 << 40).unwrap_err().to_string(),
        format!("detected chunk with wrong length ({} != {n})", 1u64 << 40)
    );
    assert!(matches!(verify_chunk(&blob, &Digest::of(b"other"), n), Err(BlobError::WrongDigest)));

    let plain = encode(&data, false).unwrap();
    assert!(matches!(verify_chunk(&plain, &d, n - 1), Err(BlobError::WrongLength { .. })));
    assert!(matches!(verify_chunk(&plain, &Digest([0; 32]), n), Err(BlobError::WrongDigest)));
}

#[test]
fn verify_reports_corrupt_zstd() {
    let data = vec![b'a'; 10_000];
    let mut blob = encode(&data, true).unwrap();
    let last = blob.len() - 3;
    blob[last] ^= 0x55;
    blob.truncate(blob.len() - 1);
    assert!(matches!(verify_chunk(&blob, &Digest::of(&data), 10_000), Err(BlobError::Zstd(_))));
    assert!(matches!(zstd_decode(&blob[12..]), Err(BlobError::Zstd(_))));
}

#[test]
fn concatenated_frames_are_one_payload() {
    let (a, b) = (vec![b'x'; 5000], vec![b'y'; 7000]);
    let mut z = zstd_stream_encode(&a).unwrap();
    z.extend(zstd::bulk::compress(&b, 3).unwrap());
    let blob = assemble(BlobKind::Compressed, &[], &z);
    let whole = [a, b].concat();
    assert_eq!(decode(&blob).unwrap(), whole);
    assert_eq!(verify_chunk(&blob, &Digest::of(&whole), whole.len() as u64).unwrap(), BlobKind::Compressed);
}

#[test]
fn encrypted_chunks_are_checked_for_structure_only() {
    let blob = assemble(BlobKind::Encrypted, &[1; 32], b"opaque ciphertext");
    assert_eq!(verify_chunk(&blob, &Digest([9; 32]), 17).unwrap(), BlobKind::Encrypted);
    assert!(matches!(decode(&blob), Err(BlobError::Encrypted)));
}

#[test]
fn zstd_bomb_is_refused() {
    // 129 MiB of zeros compresses to a few KiB.
    let z = zstd_stream_encode(&vec![0u8; MAX_BLOB_SIZE + (1 << 20)]).unwrap();
    let blob = assemble(BlobKind::Compressed, &[], &z);
    assert!(matches!(decode(&blob), Err(BlobError::TooLarge)));
    assert!(matches!(verify_chunk(&blob, &Digest([0; 32]), 100), Err(BlobError::TooLarge)));
}
