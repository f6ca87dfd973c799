//! The store against a datastore written by the real PBS 3.2.4 (`tests/data/golden/`): open a copy,
//! list what PBS wrote, read its chunks back into the archives the README hashes, then add a
//! snapshot of our own next to PBS's and read both.

#[path = "common/golden.rs"]
mod golden;

use std::path::Path;
use std::sync::Arc;

use chunkyard::format::blob;
use chunkyard::format::dynamic_index::{DynamicEntry, DynamicIndex};
use chunkyard::format::fixed_index::FixedIndex;
use chunkyard::format::manifest::{CryptMode, FileEntry, Manifest};
use chunkyard::format::{
    ArchiveName, Authid, BackupId, BackupTime, BackupType, DatastoreName, Digest, GroupRef, Namespace, SnapshotRef,
};
use chunkyard::store::{BackupTxn, Datastore, InsertOutcome};
use sha2::Digest as _;

const OWNER: &str = "bench@pbs!anchor";

fn open_copy() -> (tempfile::TempDir, Arc<Datastore>) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("golden");
    golden::copy_store(&root);
    let ds = Datastore::open(DatastoreName::parse("golden").unwrap(), &root).unwrap();
    (dir, Arc::new(ds))
}

fn snap(ty: BackupType, id: &str, time: &str) -> SnapshotRef {
    SnapshotRef {
        group: GroupRef { ty, id: BackupId::parse(id).unwrap() },
        time: BackupTime::parse_dir_name(time).unwrap(),
    }
}

/// Reassembles a plain dynamic archive from the store and returns its SHA-256.
fn didx_sha(ds: &Datastore, snap: &SnapshotRef, archive: &str) -> String {
    let reader = ds.open_snapshot(&Namespace::root(), snap).unwrap();
    let raw = std::fs::read(reader.file_path(&ArchiveName::parse(archive).unwrap())).unwrap();
    let idx = DynamicIndex::parse(&raw).unwrap();
    let mut h = sha2::Sha256::new();
    for (i, e) in idx.entries.iter().enumerate() {
        let data = blob::decode(&ds.chunks().read(&e.digest).unwrap()).unwrap();
        assert_eq!(data.len() as u64, idx.chunk_len(i));
        h.update(&data);
    }
    hex::encode(h.finalize())
}

#[test]
fn lists_what_pbs_wrote() {
    let (_dir, ds) = open_copy();
    let root = Namespace::root();
    assert_eq!(ds.namespaces(&root, None).unwrap(), std::slice::from_ref(&root));
    let groups: Vec<String> = ds.groups(&root).unwrap().iter().map(|g| g.to_string()).collect();
    assert_eq!(groups, ["host/golden", "host/golden-encrypted", "vm/golden-img"]);
    let owner = Authid::parse(OWNER).unwrap();
    let mut snaps = Vec::new();
    for g in ds.groups(&root).unwrap() {
        assert_eq!(ds.group_owner(&root, &g).unwrap(), owner);
        for s in ds.snapshots(&root, &g).unwrap() {
            assert!(s.finished && !s.protected, "{s:?}");
            snaps.push(s.snapshot.to_string());
        }
    }
    assert_eq!(
        snaps,
        [
            "host/golden/2025-11-21T00:00:00Z",
            "host/golden/2025-11-21T01:00:00Z",
            "host/golden-encrypted/2025-11-21T00:00:00Z",
            "vm/golden-img/2025-11-21T00:00:00Z",
        ]
    );
}

#[test]
fn reads_every_chunk_and_the_archives() {
    let (dir, ds) = open_copy();
    let mut count = 0;
    for sub in std::fs::read_dir(dir.path().join("golden/.chunks")).unwrap() {
        for f in std::fs::read_dir(sub.unwrap().path()).unwrap() {
            let name = f.unwrap().file_name().into_string().unwrap();
            let d = Digest::from_hex(&name).unwrap();
            blob::check_crc(&ds.chunks().read(&d).unwrap()).unwrap();
            count += 1;
        }
    }
    assert_eq!(count, 84);
    let h = |t| snap(BackupType::Host, "golden", t);
    assert_eq!(
        didx_sha(&ds, &h("2025-11-21T00:00:00Z"), "tree.pxar.didx"),
        "1ee89fe9c0781f886a691abcdd8e99ce01a64d9f223be83ffaecaa4f56945ccd"
    );
    assert_eq!(
        didx_sha(&ds, &h("2025-11-21T01:00:00Z"), "tree.pxar.didx"),
        "722c40280e50fd95482ce63f579b53a7f67f1c0a1a8482e499c37d6822369ddf"
    );
    let vm = snap(BackupType::Vm, "golden-img", "2025-11-21T00:00:00Z");
    let reader = ds.open_snapshot(&Namespace::root(), &vm).unwrap();
    let fidx = FixedIndex::parse(&std::fs::read(reader.path.join("disk.img.fidx")).unwrap()).unwrap();
    let mut hasher = sha2::Sha256::new();
    for d in &fidx.digests {
        hasher.update(blob::decode(&ds.chunks().read(d).unwrap()).unwrap());
    }
    assert_eq!(hex::encode(hasher.finalize()), "6380e5c991659d1eb93e5c08d8375c3d73431d67a8e16f1872d1ab1e06d697ce");
}

#[test]
fn our_snapshot_beside_pbs_snapshots() {
    let (_dir, ds) = open_copy();
    let root = Namespace::root();
    let base_snap = snap(BackupType::Host, "golden", "2025-11-21T01:00:00Z");
    let new_snap = snap(BackupType::Host, "golden", "2025-11-21T02:00:00Z");
    let owner = Authid::parse(OWNER).unwrap();

    // Someone else may not write here.
    let err = BackupTxn::begin(Arc::clone(&ds), root.clone(), new_snap.clone(), &Authid::parse("x@pbs").unwrap(), true)
        .unwrap_err();
    assert_eq!(err.to_string(), "backup owner check failed (x@pbs != bench@pbs!anchor)");

    let txn = BackupTxn::begin(Arc::clone(&ds), root.clone(), new_snap.clone(), &owner, true).unwrap();
    let base = txn.base.as_ref().expect("PBS's newest snapshot is our base");
    assert_eq!(base.snapshot, base_snap);
    assert!(base.manifest.file("tree.pxar.didx").is_some());

    // Reuse the base's first chunk (a duplicate on insert) and add a new one. The new chunk's
    // directory was dropped by git with the other empty ones: insert creates it.
    let base_idx = DynamicIndex::parse(&std::fs::read(base.path.join("tree.pxar.didx")).unwrap()).unwrap();
    let reused = base_idx.entries[0].digest;
    let reused_raw = ds.chunks().read(&reused).unwrap();
    let reused_len = blob::decode(&reused_raw).unwrap().len() as u64;
    assert_eq!(ds.chunks().insert(&reused, &reused_raw).unwrap(), InsertOutcome::Duplicate);
    let data = b"chunkyard was here, next to PBS 3.2.4".repeat(100);
    let digest = Digest::of(&data);
    let raw = blob::encode(&data, true).unwrap();
    assert_eq!(ds.chunks().insert(&digest, &raw).unwrap(), InsertOutcome::Written);

    let idx = DynamicIndex {
        uuid: [7; 16],
        ctime: new_snap.time.epoch(),
        entries: vec![
            DynamicEntry { end: reused_len, digest: reused },
            DynamicEntry { end: reused_len + data.len() as u64, digest },
        ],
    };
    txn.write_file(&ArchiveName::parse("tree.pxar.didx").unwrap(), &idx.encode()).unwrap();
    let manifest = Manifest {
        backup_type: "host".into(),
        backup_id: "golden".into(),
        backup_time: new_snap.time.epoch(),
        files: vec![FileEntry {
            filename: "tree.pxar.didx".into(),
            crypt_mode: CryptMode::None,
            size: idx.size(),
            csum: hex::encode(idx.csum()),
        }],
        unprotected: Default::default(),
        signature: None,
    };
    txn.write_file(&ArchiveName::parse("index.json.blob").unwrap(), &manifest.to_blob()).unwrap();
    assert!(txn.base_still_exists());
    txn.commit();

    let times: Vec<String> = ds
        .snapshots(&root, &new_snap.group)
        .unwrap()
        .iter()
        .filter(|s| s.finished)
        .map(|s| s.snapshot.time.to_string())
        .collect();
    assert_eq!(times, ["2025-11-21T00:00:00Z", "2025-11-21T01:00:00Z", "2025-11-21T02:00:00Z"]);
    let mut expect = sha2::Sha256::new();
    expect.update(blob::decode(&reused_raw).unwrap());
    expect.update(&data);
    assert_eq!(didx_sha(&ds, &new_snap, "tree.pxar.didx"), hex::encode(expect.finalize()));
    assert_eq!(
        didx_sha(&ds, &base_snap, "tree.pxar.didx"),
        "722c40280e50fd95482ce63f579b53a7f67f1c0a1a8482e499c37d6822369ddf"
    );
    let m = ds.open_snapshot(&root, &new_snap).unwrap().manifest().unwrap();
    assert_eq!(m, manifest);
    // The next backup builds on ours.
    let next = snap(BackupType::Host, "golden", "2025-11-21T03:00:00Z");
    let txn = BackupTxn::begin(Arc::clone(&ds), root, next, &owner, true).unwrap();
    assert_eq!(txn.base.as_ref().unwrap().snapshot, new_snap);
}

#[test]
fn verify_and_gc_accept_everything_pbs_wrote() {
    let (_dir, ds) = open_copy();
    let results = ds.verify_all("UPID:golden-verify").unwrap();
    assert_eq!(results.len(), 4);
    for (_, snap, r) in &results {
        assert_eq!(*r, chunkyard::store::verify::VerifyResult::Ok, "{snap}");
        let m = ds.open_snapshot(&Namespace::root(), snap).unwrap().manifest().unwrap();
        assert_eq!(m.unprotected["verify_state"]["state"], "ok");
    }

    // Age every chunk file by an hour, then GC with the default cutoff: the mark phase must
    // touch exactly the chunks PBS's indexes reference (their atime comes back to "now") and
    // no other (6 of the 84 files are orphans left by the failed `--chunk-size 64` image run),
    // and the sweep must remove nothing, since nothing is older than the cutoff.
    let chunk_files = all_chunk_files(ds.root());
    assert_eq!(chunk_files.len(), 84);
    let referenced = referenced_chunk_files(ds.root());
    assert_eq!(referenced.len(), 78);
    let hour_ago = now_secs() - 3600;
    for f in &chunk_files {
        set_atime(f, hour_ago);
    }
    let before = now_secs();
    let st = ds.garbage_collect(&chunkyard::store::gc::GcOptions::default()).unwrap();
    assert_eq!((st.removed_chunks, st.removed_bad, st.index_file_count), (0, 0, 8), "{st:?}");
    // disk vs pending compares atimes from the kernel's coarse clock with GC start in whole
    // seconds, so a chunk marked right at a second boundary may count as pending: only the sum
    // is exact. What must hold exactly is which files were marked.
    assert_eq!(st.disk_chunks + st.pending_chunks, 84, "{st:?}");
    let marked: std::collections::BTreeSet<_> =
        chunk_files.iter().filter(|f| atime(f) >= before - 1).cloned().collect();
    assert_eq!(marked, referenced, "mark phase touched the wrong set: {st:?}");
    assert!(chunk_files.iter().filter(|f| !referenced.contains(*f)).all(|f| atime(f) == hour_ago));
    assert_eq!(all_chunk_files(ds.root()).len(), 84, "GC removed a chunk");
}

/// Chunk files named by any index of the store, found by walking the snapshot directories.
fn referenced_chunk_files(root: &Path) -> std::collections::BTreeSet<std::path::PathBuf> {
    let mut out = std::collections::BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            } else if path.is_dir() {
                stack.push(path);
            } else if name.ends_with(".fidx") || name.ends_with(".didx") {
                let bytes = std::fs::read(&path).unwrap();
                let digests: Vec<Digest> = if name.ends_with(".fidx") {
                    FixedIndex::parse(&bytes).unwrap().digests
                } else {
                    DynamicIndex::parse(&bytes).unwrap().entries.into_iter().map(|e| e.digest).collect()
                };
                for d in digests {
                    out.insert(root.join(".chunks").join(d.prefix_dir()).join(d.to_hex()));
                }
            }
        }
    }
    out
}

fn all_chunk_files(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(root.join(".chunks")).unwrap() {
        for f in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            out.push(f.unwrap().path());
        }
    }
    out
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn atime(path: &Path) -> i64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().atime()
}

#[allow(unsafe_code)]
fn set_atime(path: &Path, secs: i64) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let times = [
        libc::timespec { tv_sec: secs as libc::time_t, tv_nsec: 0 },
        libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT },
    ];
    // SAFETY: valid NUL-terminated path and the two-element timespec array utimensat expects.
    assert_eq!(unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) }, 0);
}
