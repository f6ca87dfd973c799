//! Synthetic backup data, made and encoded before the measured window so the load tester
//! spends its measured time on the wire, not in zstd or SHA-256.
//!
//! Memory stays bounded by the number of *distinct* chunks: every session is a plan of chunk
//! ids into one shared pool, and the duplicate ratios decide how often a slot reuses an id
//! (within its own session or from the region all sessions share) instead of taking a fresh
//! one. Everything follows from `seed`, so two runs (or two servers) get the same bytes.

use std::collections::HashMap;

use bytes::Bytes;
use chunkyard::client::{Digest, DynamicEntry, DynamicIndex, FIXED_CHUNK_SIZE, FixedIndex, blob};

/// Index kind of the archive every session uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveKind {
    /// A disk image (`.img.fidx`, 4 MiB chunks).
    Fixed,
    /// A file archive (`.pxar.didx`, chunk sizes drawn from [chunk-min, chunk-max]).
    Dynamic,
}

/// What the data looks like; all fractions are 0..=1.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DataSpec {
    pub seed: u64,
    pub sessions: usize,
    pub bytes_per_session: u64,
    pub kind: ArchiveKind,
    pub chunk_min: u64,
    pub chunk_max: u64,
    /// Share of chunks that are text-like (compress about 3:1); the rest are random bytes.
    pub compressible: f64,
    /// Chance that a slot repeats a chunk this session already had.
    pub dup_within: f64,
    /// Chance that a slot takes a chunk from the region every session shares.
    pub dup_across: f64,
}

/// One distinct chunk, encoded once.
#[derive(Debug, Clone)]
pub struct PoolChunk {
    pub digest: Digest,
    pub size: u64,
    /// The encoded DataBlob as it goes on the wire.
    pub blob: Bytes,
}

/// One session's archive: chunk ids in order, their start offsets, and the index checksum.
#[derive(Debug, Clone)]
pub struct SessionPlan {
    pub ids: Vec<u32>,
    pub offsets: Vec<u64>,
    pub size: u64,
    pub csum: [u8; 32],
}

pub struct Workload {
    pub spec: DataSpec,
    pub pool: Vec<PoolChunk>,
    pub plans: Vec<SessionPlan>,
}

impl Workload {
    pub fn archive_name(&self) -> &'static str {
        match self.spec.kind {
            ArchiveKind::Fixed => "disk.img.fidx",
            ArchiveKind::Dynamic => "root.pxar.didx",
        }
    }

    /// Digest -> pool id, to map a previous index back onto the pool.
    pub fn ids_by_digest(&self) -> HashMap<Digest, u32> {
        self.pool.iter().enumerate().map(|(i, c)| (c.digest, i as u32)).collect()
    }

    pub fn logical_bytes(&self) -> u64 {
        self.plans.iter().map(|p| p.size).sum()
    }

    pub fn pool_bytes(&self) -> u64 {
        self.pool.iter().map(|c| c.blob.len() as u64).sum()
    }
}

/// Plans every session, then makes and encodes the distinct chunks on all cores. Refuses
/// when the distinct chunks would take more than `max_pool_bytes` of memory.
pub fn build(spec: &DataSpec, max_pool_bytes: u64) -> anyhow::Result<Workload> {
    let (ids_plans, sizes) = plan(spec);
    let distinct_bytes: u64 = sizes.iter().sum();
    if distinct_bytes > max_pool_bytes {
        anyhow::bail!(
            "the workload needs {} MiB of distinct chunks, over --max-pool-mib {}: \
             lower --scale, raise the duplicate ratios or --max-pool-mib",
            distinct_bytes >> 20,
            max_pool_bytes >> 20
        );
    }
    let pool = make_pool(spec, &sizes)?;
    let plans = ids_plans.into_iter().map(|ids| finish_plan(spec.kind, ids, &pool)).collect();
    Ok(Workload { spec: spec.clone(), pool, plans })
}

/// Chunk ids per session and the size of every distinct id.
fn plan(spec: &DataSpec) -> (Vec<Vec<u32>>, Vec<u64>) {
    let mut rng = Rng::new(spec.seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut sizes: Vec<u64> = Vec::new();
    // The shared region is drawn lazily: its k-th chunk gets an id when first used.
    let mut shared: Vec<Option<u32>> = Vec::new();
    let mut plans = Vec::with_capacity(spec.sessions);
    for _ in 0..spec.sessions {
        let mut ids: Vec<u32> = Vec::new();
        let mut total = 0u64;
        while total < spec.bytes_per_session.max(1) {
            let r = rng.unit();
            let id = if r < spec.dup_within && !ids.is_empty() {
                ids[rng.below(ids.len() as u64) as usize]
            } else if r < spec.dup_within + spec.dup_across {
                // The region is as large as one session's share of it, so sessions overlap
                // in it as much as the ratio says.
                let avg = match spec.kind {
                    ArchiveKind::Fixed => FIXED_CHUNK_SIZE,
                    ArchiveKind::Dynamic => (spec.chunk_min + spec.chunk_max) / 2,
                };
                let slots = spec.bytes_per_session / avg.max(1);
                let region = ((slots as f64 * spec.dup_across) as u64).max(1);
                let k = rng.below(region) as usize;
                if shared.len() <= k {
                    shared.resize(k + 1, None);
                }
                *shared[k].get_or_insert_with(|| fresh(&mut sizes, spec, &mut rng))
            } else {
                fresh(&mut sizes, spec, &mut rng)
            };
            total += sizes[id as usize];
            ids.push(id);
        }
        plans.push(ids);
    }
    (plans, sizes)
}

fn fresh(sizes: &mut Vec<u64>, spec: &DataSpec, rng: &mut Rng) -> u32 {
    let size = match spec.kind {
        ArchiveKind::Fixed => FIXED_CHUNK_SIZE,
        ArchiveKind::Dynamic => {
            let (lo, hi) = (spec.chunk_min.max(1), spec.chunk_max.max(spec.chunk_min));
            lo + rng.below(hi - lo + 1)
        }
    };
    sizes.push(size);
    (sizes.len() - 1) as u32
}

fn make_pool(spec: &DataSpec, sizes: &[u64]) -> anyhow::Result<Vec<PoolChunk>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = sizes.len().div_ceil(threads).max(1);
    let parts: Vec<anyhow::Result<Vec<PoolChunk>>> = std::thread::scope(|s| {
        let handles: Vec<_> = sizes
            .chunks(per)
            .enumerate()
            .map(|(t, part)| {
                s.spawn(move || {
                    part.iter().enumerate().map(|(i, &size)| make_chunk(spec, (t * per + i) as u64, size)).collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("pool thread")).collect()
    });
    let mut pool = Vec::with_capacity(sizes.len());
    for part in parts {
        pool.extend(part?);
    }
    Ok(pool)
}

fn make_chunk(spec: &DataSpec, id: u64, size: u64) -> anyhow::Result<PoolChunk> {
    let mut rng = Rng::new(spec.seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ id);
    let text = rng.unit() < spec.compressible;
    let mut data = vec![0u8; size as usize];
    if text {
        fill_text(&mut rng, &mut data);
    } else {
        rng.fill(&mut data);
    }
    // The id in front makes every distinct chunk distinct even if two generators collide.
    let n = data.len().min(8);
    data[..n].copy_from_slice(&id.to_le_bytes()[..n]);
    Ok(PoolChunk { digest: Digest::of(&data), size, blob: Bytes::from(blob::encode(&data, true)?) })
}

const WORDS: &[&str] = &[
    "the",
    "backup",
    "chunk",
    "index",
    "server",
    "store",
    "of",
    "and",
    "to",
    "data",
    "a",
    "snapshot",
    "in",
    "is",
    "for",
    "manifest",
    "client",
    "verify",
    "with",
    "on",
    "digest",
    "proxmox",
    "archive",
    "fixed",
    "dynamic",
    "upload",
    "reader",
    "that",
    "it",
    "zstd",
    "error",
    "time",
    "2026-11-22T03:00:00Z",
    "INFO",
    "WARN",
    "/var/lib/data",
    "0x7f3a",
];

/// Log-like text: words from a small vocabulary, lines of varying length.
fn fill_text(rng: &mut Rng, out: &mut [u8]) {
    let mut i = 0;
    while i < out.len() {
        let r = rng.next();
        let word = WORDS[(r % WORDS.len() as u64) as usize].as_bytes();
        let sep: &[u8] = if (r >> 32).is_multiple_of(11) { b"\n" } else { b" " };
        for &b in word.iter().chain(sep) {
            if i == out.len() {
                return;
            }
            out[i] = b;
            i += 1;
        }
    }
}

fn finish_plan(kind: ArchiveKind, ids: Vec<u32>, pool: &[PoolChunk]) -> SessionPlan {
    let mut offsets = Vec::with_capacity(ids.len());
    let mut size = 0u64;
    for &id in &ids {
        offsets.push(size);
        size += pool[id as usize].size;
    }
    let digests = ids.iter().map(|&id| pool[id as usize].digest);
    let csum = match kind {
        ArchiveKind::Fixed => {
            FixedIndex { uuid: [0; 16], ctime: 0, size, chunk_size: FIXED_CHUNK_SIZE, digests: digests.collect() }
                .csum()
        }
        ArchiveKind::Dynamic => DynamicIndex {
            uuid: [0; 16],
            ctime: 0,
            entries: digests
                .zip(&offsets)
                .zip(&ids)
                .map(|((digest, &o), &id)| DynamicEntry { end: o + pool[id as usize].size, digest })
                .collect(),
        }
        .csum(),
    };
    SessionPlan { ids, offsets, size, csum }
}

/// xoshiro256** seeded through splitmix64: fast, and the same stream on every machine.
pub struct Rng([u64; 4]);

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Rng([next(), next(), next(), next()])
    }

    pub fn next(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    fn fill(&mut self, out: &mut [u8]) {
        for piece in out.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            piece.copy_from_slice(&v[..piece.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DataSpec {
        DataSpec {
            seed: 7,
            sessions: 3,
            bytes_per_session: 1 << 20,
            kind: ArchiveKind::Dynamic,
            chunk_min: 16 << 10,
            chunk_max: 64 << 10,
            compressible: 0.5,
            dup_within: 0.2,
            dup_across: 0.3,
        }
    }

    #[test]
    fn same_seed_same_data_and_duplicates_follow_the_ratios() {
        let a = build(&spec(), 1 << 30).unwrap();
        let b = build(&spec(), 1 << 30).unwrap();
        assert_eq!(a.pool.len(), b.pool.len());
        assert_eq!(a.pool[3].digest, b.pool[3].digest);
        let slots: usize = a.plans.iter().map(|p| p.ids.len()).sum();
        // Half the slots repeat a chunk, so clearly fewer distinct chunks than slots.
        assert!(a.pool.len() < slots * 8 / 10, "{} of {slots}", a.pool.len());
        for p in &a.plans {
            assert!(p.size >= 1 << 20);
        }
        let none = build(&DataSpec { dup_within: 0.0, dup_across: 0.0, ..spec() }, 1 << 30).unwrap();
        let slots: usize = none.plans.iter().map(|p| p.ids.len()).sum();
        assert_eq!(none.pool.len(), slots);
    }

    #[test]
    fn text_chunks_compress_and_random_ones_do_not() {
        let w = build(&DataSpec { compressible: 1.0, ..spec() }, 1 << 30).unwrap();
        assert!(w.pool_bytes() * 2 < w.logical_bytes());
        let w = build(&DataSpec { compressible: 0.0, ..spec() }, 1 << 30).unwrap();
        let raw: u64 = w.pool.iter().map(|c| c.size).sum();
        assert!(w.pool_bytes() >= raw);
    }

    #[test]
    fn too_many_distinct_chunks_is_refused() {
        let err = build(&spec(), 1 << 20).err().unwrap().to_string();
        assert!(err.contains("--max-pool-mib"), "{err}");
    }
}
