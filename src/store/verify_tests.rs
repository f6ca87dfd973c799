//! Verify on a hand-built snapshot: all good, then each kind of damage.

use super::*;
use crate::format::dynamic_index::DynamicEntry;
use crate::format::manifest::Manifest;
use crate::format::{Authid, BackupType};
use crate::store::BackupTxn;
use crate::store::backup::tests::{snap, test_store};
use std::sync::Arc;

struct Fixture {
    _dir: tempfile::TempDir,
    ds: Arc<Datastore>,
    snap: SnapshotRef,
    chunks: Vec<Digest>,
}

fn entry(name: &str, mode: CryptMode, size: u64, csum: [u8; 32]) -> FileEntry {
    FileEntry { filename: name.into(), crypt_mode: mode, size, csum: hex::encode(csum) }
}

/// host/h with a.didx (two chunks), b.fidx (one chunk) and c.blob; manifest matching.
fn fixture() -> Fixture {
    let (dir, ds) = test_store();
    let s = snap(BackupType::Host, "h", 1_700_000_000);
    let txn = BackupTxn::begin(Arc::clone(&ds), Namespace::root(), s.clone(), &Authid::parse("u@pbs").unwrap(), true)
        .unwrap();
    let datas: [&[u8]; 3] = [b"first chunk", b"second chunk, compressible ........................", b"fixed"];
    let chunks: Vec<Digest> = datas
        .iter()
        .map(|d| {
            let digest = Digest::of(d);
            ds.chunks().insert(&digest, &blob::encode(d, true).unwrap()).unwrap();
            digest
        })
        .collect();
    let didx = DynamicIndex {
        uuid: [1; 16],
        ctime: 0,
        entries: vec![
            DynamicEntry { end: datas[0].len() as u64, digest: chunks[0] },
            DynamicEntry { end: (datas[0].len() + datas[1].len()) as u64, digest: chunks[1] },
        ],
    };
    let fidx = FixedIndex { uuid: [2; 16], ctime: 0, size: 5, chunk_size: 4 << 20, digests: vec![chunks[2]] };
    let cblob = blob::encode(b"config", false).unwrap();
    let name = |n: &str| ArchiveName::parse(n).unwrap();
    txn.write_file(&name("a.didx"), &didx.encode()).unwrap();
    txn.write_file(&name("b.fidx"), &fidx.encode()).unwrap();
    txn.write_file(&name("c.blob"), &cblob).unwrap();
    let m = Manifest {
        backup_type: "host".into(),
        backup_id: "h".into(),
        backup_time: s.time.epoch(),
        files: vec![
            entry("a.didx", CryptMode::None, didx.size(), didx.csum()),
            entry("b.fidx", CryptMode::None, 5, fidx.csum()),
            entry("c.blob", CryptMode::None, cblob.len() as u64, sha2::Sha256::digest(&cblob).into()),
        ],
        unprotected: Default::default(),
        signature: None,
    };
    txn.write_file(&name("index.json.blob"), &m.to_blob()).unwrap();
    txn.commit();
    Fixture { _dir: dir, ds, snap: s, chunks }
}

fn verify(f: &Fixture) -> VerifyResult {
    f.ds.verify_snapshot(&Namespace::root(), &f.snap, "UPID:v", &mut VerifyCache::default()).unwrap()
}

fn state(f: &Fixture) -> serde_json::Value {
    f.ds.open_snapshot(&Namespace::root(), &f.snap).unwrap().manifest().unwrap().unprotected["verify_state"].clone()
}

#[test]
fn good_snapshot_verifies_ok() {
    let f = fixture();
    assert_eq!(verify(&f), VerifyResult::Ok);
    assert_eq!(state(&f), serde_json::json!({"state": "ok", "upid": "UPID:v"}));
}

#[test]
fn corrupt_chunk_is_quarantined_and_snapshot_fails() {
    let f = fixture();
    let path = f.ds.chunks().chunk_path(&f.chunks[1]);
    let mut raw = std::fs::read(&path).unwrap();
    let last = raw.len() - 1;
    raw[last] ^= 0xff;
    blob::set_crc(&mut raw).unwrap(); // valid CRC, wrong content: only decoding finds it
    std::fs::write(&path, &raw).unwrap();
    let VerifyResult::Failed(errs) = verify(&f) else { panic!("must fail") };
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("a.didx: chunk "), "{errs:?}");
    assert!(!path.exists());
    assert!(path.with_file_name(format!("{}.0.bad", f.chunks[1])).exists());
    assert_eq!(state(&f)["state"], "failed");
    // A second verify finds it missing and moves nothing else.
    assert!(matches!(verify(&f), VerifyResult::Failed(_)));
    assert!(f.ds.chunks().chunk_path(&f.chunks[0]).exists());
    // The failed snapshot is no base: the next backup re-uploads everything.
    let next = snap(BackupType::Host, "h", 1_700_000_100);
    let txn =
        BackupTxn::begin(Arc::clone(&f.ds), Namespace::root(), next, &Authid::parse("u@pbs").unwrap(), true).unwrap();
    assert!(txn.base.is_none());
}

#[test]
fn bad_crc_counts_as_corrupt_and_bad_names_count_up() {
    let f = fixture();
    let path = f.ds.chunks().chunk_path(&f.chunks[2]);
    for n in 0..2 {
        let mut raw = blob::encode(b"fixed", true).unwrap();
        raw[8] ^= 1;
        std::fs::write(&path, &raw).unwrap();
        assert!(matches!(verify(&f), VerifyResult::Failed(_)));
        assert!(path.with_file_name(format!("{}.{n}.bad", f.chunks[2])).exists());
    }
}

#[test]
fn blob_damage_and_index_mismatch_fail() {
    let f = fixture();
    let dir = f.ds.snapshot_path(&Namespace::root(), &f.snap);
    std::fs::write(dir.join("c.blob"), blob::encode(b"CONFIG", false).unwrap()).unwrap();
    let VerifyResult::Failed(errs) = verify(&f) else { panic!("must fail") };
    assert_eq!(errs, ["c.blob: wrong checksum"]);
    std::fs::remove_file(dir.join("b.fidx")).unwrap();
    let VerifyResult::Failed(errs) = verify(&f) else { panic!("must fail") };
    assert_eq!(errs.len(), 2);
}

#[test]
fn crypt_mode_mismatch_fails_without_quarantine() {
    let f = fixture();
    f.ds.update_manifest(&Namespace::root(), &f.snap, |m| m.files[1].crypt_mode = CryptMode::Encrypt).unwrap();
    let VerifyResult::Failed(errs) = verify(&f) else { panic!("must fail") };
    assert!(errs[0].contains("crypt mode"), "{errs:?}");
    assert!(f.ds.chunks().chunk_path(&f.chunks[2]).exists());
}

#[test]
fn locked_snapshot_is_skipped() {
    let f = fixture();
    let _forget = DirLock::try_lock(&f.ds.snapshot_path(&Namespace::root(), &f.snap), true, "snapshot", "x").unwrap();
    assert_eq!(verify(&f), VerifyResult::Skipped);
}
