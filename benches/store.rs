//! Chunk store insert throughput into a temp datastore: new 4 MiB chunks with and without
//! fsync (sync level `file` vs `none`), and duplicates (the dedup path: stat + atime touch).
//! Criterion prints MB/s from the byte throughput.

use std::hint::black_box;

use chunkyard::config::FsyncPolicy;
use chunkyard::format::{DatastoreName, Digest};
use chunkyard::store::{Datastore, DatastoreOptions};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const CHUNK: usize = 4 * 1024 * 1024;

/// A stored-blob-shaped buffer (uncompressed magic, 12-byte header) whose digest we vary.
fn raw_chunk() -> Vec<u8> {
    let mut v = vec![66u8, 171, 56, 7, 190, 131, 112, 161, 0, 0, 0, 0];
    v.extend((0..CHUNK).map(|i| (i * 31 % 251) as u8));
    v
}

fn store(fsync: FsyncPolicy) -> (tempfile::TempDir, Datastore) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".chunks")).unwrap();
    let options = DatastoreOptions { fsync, ..DatastoreOptions::default() };
    let ds = Datastore::open_with(DatastoreName::parse("bench").unwrap(), dir.path(), &options).unwrap();
    (dir, ds)
}

fn inserts(c: &mut Criterion) {
    let raw = raw_chunk();
    let mut g = c.benchmark_group("chunk_insert_4MiB");
    g.throughput(Throughput::Bytes(raw.len() as u64));
    g.sample_size(20);
    for fsync in [true, false] {
        let (_dir, ds) = store(if fsync { FsyncPolicy::File } else { FsyncPolicy::None });
        let mut n: u64 = 0;
        g.bench_function(if fsync { "new_fsync" } else { "new_nosync" }, |b| {
            b.iter(|| {
                n += 1;
                let d = Digest::of(&n.to_le_bytes());
                black_box(ds.chunks().insert(&d, &raw).unwrap())
            })
        });
    }
    let (_dir, ds) = store(FsyncPolicy::File);
    let digests: Vec<Digest> = (0..64u64).map(|i| Digest::of(&i.to_le_bytes())).collect();
    for d in &digests {
        ds.chunks().insert(d, &raw).unwrap();
    }
    let mut i = 0;
    g.bench_function("duplicate", |b| {
        b.iter(|| {
            i = (i + 1) % digests.len();
            black_box(ds.chunks().insert(&digests[i], &raw).unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, inserts);
criterion_main!(benches);
