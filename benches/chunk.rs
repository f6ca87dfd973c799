//! Chunk verification speed (`blob::set_crc` + `blob::verify_chunk`, what the server does with
//! every uploaded chunk) beside a *floor*: the same three steps as bare library calls (crc32fast
//! over the payload, zstd bulk decompression into a preallocated buffer, sha2 over the result).
//! The ratio verify/floor shows what our code adds on top of the libraries; the goal is <= 1.1.
//!
//! Run: `cargo bench --bench chunk`. Time is the benchmark thread's CPU time (see
//! `support/cpu_time.rs`: the machines are shared, wall time would measure the scheduler);
//! throughput is in bytes of original data, so criterion prints MiB of chunk content per
//! CPU-second.

use std::hint::black_box;
use std::time::Duration;

use chunkyard::format::Digest;
use chunkyard::format::blob::{self, BlobKind};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use support::cpu_time::ThreadCpuTime;

mod support {
    pub mod cpu_time;
}
use sha2::{Digest as _, Sha256};

const CHUNK: usize = 4 << 20;

/// xorshift64*: deterministic, fast, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: &[&str] = &[
    "backup",
    "chunk",
    "index",
    "server",
    "client",
    "the",
    "a",
    "of",
    "to",
    "and",
    "snapshot",
    "datastore",
    "verify",
    "error",
    "warning",
    "info",
    "debug",
    "config",
    "value",
    "true",
    "false",
    "null",
    "user",
    "root",
    "host",
    "vm",
    "/usr/lib",
    "/var/log",
    "/etc/proxmox",
    "2025-11-21",
    "12:00:00",
    "OK",
    "failed",
    "size",
    "digest",
    "=",
    ":",
];

/// A text/binary mix like a file-system archive: log and config lines, then records of small
/// integers with some random bytes (headers, tables, compressed payloads), then text again.
/// zstd level 1 shrinks it about 2-3x.
fn realistic(seed: u64) -> Vec<u8> {
    let mut r = Rng(seed);
    let mut out = Vec::with_capacity(CHUNK + 4096);
    while out.len() < CHUNK {
        match r.below(8) {
            0..=3 => {
                for _ in 0..r.below(60) + 20 {
                    for _ in 0..r.below(10) + 3 {
                        out.extend_from_slice(WORDS[r.below(WORDS.len() as u64) as usize].as_bytes());
                        out.push(b' ');
                    }
                    out.extend_from_slice(format!("{}\n", r.below(100_000)).as_bytes());
                }
            }
            4..=6 => {
                for _ in 0..r.below(200) + 50 {
                    out.extend_from_slice(&(r.below(1 << 12) as u32).to_le_bytes());
                    out.extend_from_slice(&(r.below(256) as u16).to_le_bytes());
                    out.extend_from_slice(&[0, 0]);
                    out.extend_from_slice(&(r.below(1 << 10) as u32).to_le_bytes());
                }
            }
            _ => {
                for _ in 0..r.below(64) + 16 {
                    out.extend_from_slice(&r.next().to_le_bytes());
                }
            }
        }
    }
    out.truncate(CHUNK);
    out
}

fn random(seed: u64) -> Vec<u8> {
    let mut r = Rng(seed);
    (0..CHUNK / 8).flat_map(|_| r.next().to_le_bytes()).collect()
}

fn bench_kind(c: &mut Criterion<ThreadCpuTime>, name: &str, data: Vec<u8>) {
    let digest = Digest::of(&data);
    let size = data.len() as u64;
    let mut raw = blob::encode(&data, true).unwrap();
    let kind = blob::kind_of(&raw).unwrap();
    eprintln!("{name}: {} -> {} bytes ({:.2}x), {kind:?}", data.len(), raw.len(), data.len() as f64 / raw.len() as f64);
    let payload = raw[kind.header_len()..].to_vec();

    let mut g = c.benchmark_group(format!("chunk_verify/{name}"));
    g.throughput(Throughput::Bytes(size));
    g.bench_function("verify", |b| {
        b.iter(|| {
            blob::set_crc(black_box(&mut raw)).unwrap();
            blob::verify_chunk(black_box(&raw), &digest, size).unwrap()
        })
    });

    let mut dec = zstd::bulk::Decompressor::new().unwrap();
    let mut out = Vec::with_capacity(CHUNK + 1);
    g.bench_function("floor", |b| {
        b.iter(|| {
            let crc = crc32fast::hash(black_box(&payload));
            let hash = if kind == BlobKind::Compressed {
                let n = dec.decompress_to_buffer(black_box(&payload[..]), &mut out).unwrap();
                Sha256::digest(&out[..n])
            } else {
                Sha256::digest(black_box(&payload))
            };
            (crc, hash)
        })
    });
    g.finish();
}

fn chunk_verify(c: &mut Criterion<ThreadCpuTime>) {
    let text = realistic(0x5eed);
    let ratio = text.len() as f64 / blob::encode(&text, true).unwrap().len() as f64;
    assert!((2.0..=3.0).contains(&ratio), "realistic data should compress 2-3x, got {ratio:.2}");
    bench_kind(c, "realistic", text);
    bench_kind(c, "random", random(0xfeed));
}

criterion_group! {
    name = benches;
    // Short runs: the machine is shared; 20 samples of a ~4 ms operation are plenty.
    config = Criterion::default().with_measurement(ThreadCpuTime).sample_size(20).warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = chunk_verify
}
criterion_main!(benches);
