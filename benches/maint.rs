//! Maintenance job throughput on a generated store: verify of one snapshot referencing N
//! chunks (MB/s), a full GC over them (mark + sweep, chunks/s; x60 for chunks/min), and the
//! floor verify is measured against: one thread reading each chunk file and doing CRC +
//! decode + SHA-256 (`blob::check_crc` + `blob::verify_chunk`) with no bookkeeping.
//!
//! N and the chunk size come from CHUNKYARD_BENCH_CHUNKS (default 20000) and
//! CHUNKYARD_BENCH_CHUNK_SIZE (default 4096) so the 200,000-chunk figure is one
//! environment variable away without making every `cargo bench` write a gigabyte. Wall time,
//! because verify reads with several threads (thread CPU time would hide their work): on a
//! shared machine compare the three figures of one run with each other, not across runs.

use std::hint::black_box;

use chunkyard::format::dynamic_index::{DynamicEntry, DynamicIndex};
use chunkyard::format::manifest::{CryptMode, FileEntry, Manifest};
use chunkyard::format::{
    BackupId, BackupTime, BackupType, DatastoreName, Digest, GroupRef, Namespace, SnapshotRef, blob,
};
use chunkyard::store::Datastore;
use chunkyard::store::gc::GcOptions;
use chunkyard::store::verify::VerifyCache;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Fixture {
    _dir: tempfile::TempDir,
    ds: Datastore,
    snap: SnapshotRef,
    chunks: Vec<(Digest, u64)>,
    encoded_bytes: u64,
}

/// A store with one finished snapshot whose dynamic index references `n` distinct chunks.
fn fixture(n: usize, size: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".chunks")).unwrap();
    let ds = Datastore::open(DatastoreName::parse("bench").unwrap(), dir.path()).unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let (mut entries, mut chunks, mut end, mut encoded_bytes) =
        (Vec::with_capacity(n), Vec::with_capacity(n), 0u64, 0u64);
    let mut data = vec![0u8; size];
    for _ in 0..n {
        for b in data.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let digest = Digest::of(&data);
        let raw = blob::encode(&data, true).unwrap();
        encoded_bytes += raw.len() as u64;
        ds.chunks().insert(&digest, &raw).unwrap();
        end += size as u64;
        entries.push(DynamicEntry { end, digest });
        chunks.push((digest, size as u64));
    }
    let group = GroupRef { ty: BackupType::Host, id: BackupId::parse("bench").unwrap() };
    let snap = SnapshotRef { group, time: BackupTime::from_epoch(1_718_000_000).unwrap() };
    let snap_dir = ds.snapshot_path(&Namespace::root(), &snap);
    std::fs::create_dir_all(&snap_dir).unwrap();
    let idx = DynamicIndex { uuid: [7; 16], ctime: 1_718_000_000, entries };
    std::fs::write(snap_dir.join("data.didx"), idx.encode()).unwrap();
    let manifest = Manifest {
        backup_type: "host".into(),
        backup_id: "bench".into(),
        backup_time: 1_718_000_000,
        files: vec![FileEntry {
            filename: "data.didx".into(),
            crypt_mode: CryptMode::None,
            size: end,
            csum: hex::encode(idx.csum()),
        }],
        unprotected: Default::default(),
        signature: None,
    };
    std::fs::write(snap_dir.join("index.json.blob"), manifest.to_blob()).unwrap();
    Fixture { _dir: dir, ds, snap, chunks, encoded_bytes }
}

fn maint(c: &mut Criterion) {
    let n = env_usize("CHUNKYARD_BENCH_CHUNKS", 20_000);
    let size = env_usize("CHUNKYARD_BENCH_CHUNK_SIZE", 4096);
    let f = fixture(n, size);
    let upid = chunkyard::jobs::upid::new_upid(chunkyard::jobs::upid::Node::Host, "verify", "bench", "root@pam");
    let mut g = c.benchmark_group(format!("maint_{n}_chunks_of_{size}"));
    g.sample_size(10);
    g.throughput(Throughput::Bytes(f.encoded_bytes));
    g.bench_function("verify_snapshot", |b| {
        b.iter(|| {
            let mut cache = VerifyCache::default();
            let r = f.ds.verify_snapshot(&Namespace::root(), &f.snap, &upid, &mut cache).unwrap();
            assert_eq!(r, chunkyard::store::verify::VerifyResult::Ok);
            black_box(cache.counts())
        })
    });
    g.bench_function("floor_read_crc_decode_sha256", |b| {
        b.iter(|| {
            for (d, len) in &f.chunks {
                let raw = f.ds.chunks().read(d).unwrap();
                blob::check_crc(&raw).unwrap();
                black_box(blob::verify_chunk(&raw, d, *len).unwrap());
            }
        })
    });
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("gc_mark_and_sweep", |b| {
        b.iter(|| {
            let st = f.ds.garbage_collect(&GcOptions::default()).unwrap();
            assert_eq!(st.disk_chunks, n as u64);
            black_box(st)
        })
    });
    g.finish();
}

criterion_group!(benches, maint);
criterion_main!(benches);
