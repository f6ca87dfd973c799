//! Ingest pipeline throughput. `chunk_writer`: 1 MiB chunk files through the writer thread,
//! io_uring batches vs the plain-I/O fallback, with fsync (sync level `file`) and without.
//! `backup_session`: a 64 MiB fixed archive backed up through a real server (TLS, upgrade,
//! HTTP/2, hasher pool, writer, index, finish), new chunks and already-stored ones; only the
//! upload is timed, the client's data generation and encoding are not.
//! Criterion prints MB/s from the byte throughput.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chunkyard::actors::chunk_writer::{ChunkWriter, StoreChunk};
use chunkyard::client::{BackupParams, HttpClient, IndexKind};
use chunkyard::config::{FsyncPolicy, PipelineConfig};
use chunkyard::format::fixed_index::{FIXED_CHUNK_SIZE, FixedIndex};
use chunkyard::format::manifest::Manifest;
use chunkyard::format::{DatastoreName, Digest, blob};
use chunkyard::store::{Datastore, DatastoreOptions};
use chunkyard::testing::TestServer;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const MIB: usize = 1024 * 1024;

fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn chunk_writer(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let raw = Bytes::from(blob::encode(&random(MIB, 1), false).unwrap());
    const BATCH: u64 = 32;
    let mut g = c.benchmark_group("chunk_writer_1MiB_x32");
    g.throughput(Throughput::Bytes(raw.len() as u64 * BATCH));
    g.sample_size(10);
    for (io_uring, fsync) in [(true, true), (false, true), (true, false), (false, false)] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".chunks")).unwrap();
        let cfg = PipelineConfig {
            io_uring,
            fsync: if fsync { FsyncPolicy::File } else { FsyncPolicy::None },
            ..PipelineConfig::default()
        };
        let options = DatastoreOptions::from_config(&cfg);
        let ds = Arc::new(Datastore::open_with(DatastoreName::parse("bench").unwrap(), dir.path(), &options).unwrap());
        let writer = ChunkWriter::spawn(&cfg);
        let name = format!("{}_{}", ds.chunks().write_method().label(), if fsync { "fsync" } else { "nosync" });
        let mut n: u64 = 0;
        g.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(futures_util::future::join_all((0..BATCH).map(|_| {
                    n += 1;
                    // The writer does not verify: a fresh digest is a fresh file.
                    let msg = StoreChunk { store: ds.clone(), digest: Digest::of(&n.to_le_bytes()), blob: raw.clone() };
                    let w = writer.clone();
                    async move { assert!(w.store(msg).await.unwrap().new) }
                })))
            })
        });
    }
    g.finish();
}

/// One backup of `chunks` (digest, size, encoded) as a fixed archive; returns the time taken.
async fn backup(server: &TestServer, time: i64, chunks: &[(Digest, u64, Bytes)]) -> Duration {
    let client = HttpClient::new(server.client_config()).unwrap();
    let start = Instant::now();
    let s = client.start_backup(&BackupParams::new(&server.store, "host", "bench", time)).await.unwrap();
    let size: u64 = chunks.iter().map(|c| c.1).sum();
    let wid = s.create_fixed_index("disk.img.fidx", size, None).await.unwrap();
    // 7 uploads in flight, like the real client.
    let uploads = chunks.iter().map(|(d, len, raw)| s.upload_chunk(IndexKind::Fixed, wid, d, *len, raw.clone()));
    let results: Vec<_> =
        futures_util::StreamExt::collect(futures_util::StreamExt::buffered(futures_util::stream::iter(uploads), 7))
            .await;
    for r in results {
        r.unwrap();
    }
    let digests: Vec<Digest> = chunks.iter().map(|c| c.0).collect();
    let offsets: Vec<u64> = (0..chunks.len() as u64).map(|i| i * FIXED_CHUNK_SIZE).collect();
    s.append(IndexKind::Fixed, wid, &digests, &offsets).await.unwrap();
    let csum = FixedIndex { uuid: [0; 16], ctime: 0, size, chunk_size: FIXED_CHUNK_SIZE, digests }.csum();
    s.close(IndexKind::Fixed, wid, chunks.len() as u64, size, &csum).await.unwrap();
    let m = Manifest {
        backup_type: "host".into(),
        backup_id: "bench".into(),
        backup_time: time,
        files: vec![],
        unprotected: Default::default(),
        signature: None,
    };
    s.upload_blob("index.json.blob", Bytes::from(m.to_blob())).await.unwrap();
    s.finish().await.unwrap();
    start.elapsed()
}

fn encode(seed: u64, chunks: usize) -> Vec<(Digest, u64, Bytes)> {
    (0..chunks)
        .map(|i| {
            let data = random(FIXED_CHUNK_SIZE as usize, seed * 1000 + i as u64);
            (Digest::of(&data), data.len() as u64, Bytes::from(blob::encode(&data, false).unwrap()))
        })
        .collect()
}

fn backup_session(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    const CHUNKS: usize = 16;
    let mut g = c.benchmark_group("backup_session_64MiB");
    g.throughput(Throughput::Bytes(CHUNKS as u64 * FIXED_CHUNK_SIZE));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    let server = TestServer::start_with(|c| c.pipeline.fsync = chunkyard::config::FsyncPolicy::File);
    std::fs::create_dir_all(server.store_path().join(".chunks")).unwrap();
    let mut time = 1_700_000_000;
    g.bench_function("new_chunks", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                time += 1;
                let chunks = encode(time as u64, CHUNKS);
                total += rt.block_on(backup(&server, time, &chunks));
            }
            total
        })
    });
    let same = encode(1, CHUNKS);
    rt.block_on(backup(&server, time + 1, &same));
    time += 1;
    g.bench_function("stored_chunks", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                time += 1;
                total += rt.block_on(backup(&server, time, &same));
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, chunk_writer, backup_session);
criterion_main!(benches);
