//! The hasher/compressor pool: checks an uploaded chunk (zstd decode, SHA-256 against the
//! announced digest, length against `size`) and recomputes its CRC, on `SyncArbiter` threads so
//! that no connection thread ever hashes (design.md: hashing on the connection thread caps a
//! session at ~0.4 GB/s).
//!
//! actix's SyncArbiter mailbox is unbounded, so [`HasherPool`] puts a semaphore in front: at
//! most `hasher_queue` chunks are queued for or inside the pool at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use actix::{Actor, Addr, Handler, Message, SyncArbiter, SyncContext};
use bytes::{Bytes, BytesMut};
use tokio::sync::Semaphore;

use crate::actors::SessionError;
use crate::format::Digest;
use crate::format::blob::{self, BlobError, BlobKind};
use crate::metrics::Stage;

/// Check this chunk and give it back with a trustworthy CRC.
#[derive(Debug, Message)]
#[rtype(result = "Result<Verified, BlobError>")]
pub struct VerifyChunk {
    pub digest: Digest,
    /// Announced decoded length.
    pub size: u64,
    pub blob: Bytes,
}

/// A chunk that passed verification; `blob` now carries the recomputed CRC.
#[derive(Debug)]
pub struct Verified {
    pub digest: Digest,
    pub size: u64,
    pub kind: BlobKind,
    pub blob: Bytes,
}

/// One pool thread.
pub struct Hasher;

impl Actor for Hasher {
    type Context = SyncContext<Self>;
}

impl Handler<VerifyChunk> for Hasher {
    type Result = Result<Verified, BlobError>;

    fn handle(&mut self, msg: VerifyChunk, _: &mut Self::Context) -> Self::Result {
        let started = Instant::now();
        let kind = blob::verify_chunk(&msg.blob, &msg.digest, msg.size)?;
        // The body arrives as the only handle on its buffer, so this is normally no copy.
        let mut raw = msg.blob.try_into_mut().unwrap_or_else(|shared| BytesMut::from(&shared[..]));
        blob::set_crc(&mut raw)?;
        Stage::Hasher.observe(started.elapsed());
        Ok(Verified { digest: msg.digest, size: msg.size, kind, blob: raw.freeze() })
    }
}

/// Handle on the pool: the SyncArbiter address plus the permits that bound its queue.
#[derive(Clone)]
pub struct HasherPool {
    addr: Addr<Hasher>,
    permits: Arc<Semaphore>,
    depth: Arc<AtomicUsize>,
}

impl HasherPool {
    /// Starts `threads` hashers (0 = one per core). Call inside an actix System.
    pub fn start(threads: usize, queue: usize) -> HasherPool {
        let threads = if threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { threads };
        let addr = SyncArbiter::start(threads, || Hasher);
        HasherPool { addr, permits: Arc::new(Semaphore::new(queue.max(1))), depth: Arc::default() }
    }

    /// Verifies a chunk, waiting for a queue slot first (this wait is the backpressure).
    pub async fn verify(&self, msg: VerifyChunk) -> Result<Verified, SessionError> {
        let _permit = self.permits.acquire().await.map_err(|_| SessionError::Internal("hasher pool closed".into()))?;
        Stage::Hasher.set_queue_depth(self.depth.fetch_add(1, Ordering::Relaxed) + 1);
        let result = self.addr.send(msg).await;
        Stage::Hasher.set_queue_depth(self.depth.fetch_sub(1, Ordering::Relaxed) - 1);
        Ok(result??)
    }
}
