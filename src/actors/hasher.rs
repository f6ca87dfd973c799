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
        let blob = with_true_crc(msg.blob)?;
        Stage::Hasher.observe(started.elapsed());
        Ok(Verified { digest: msg.digest, size: msg.size, kind, blob })
    }
}

/// The blob with the CRC of its payload in its header. A client's CRC is not trusted
/// (formats.md 2.6), but it is normally right: then the buffer is passed on untouched, which
/// matters because it may be the shared HTTP/2 frame it arrived in.
fn with_true_crc(raw: Bytes) -> Result<Bytes, BlobError> {
    match blob::check_crc(&raw) {
        Err(BlobError::WrongCrc) => {}
        checked => return checked.map(|_| raw),
    }
    let mut raw = raw.try_into_mut().unwrap_or_else(|shared| BytesMut::from(&shared[..]));
    blob::set_crc(&mut raw)?;
    Ok(raw.freeze())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_right_crc_passes_the_buffer_on_and_a_wrong_one_is_replaced() {
        let raw = Bytes::from(blob::encode(&[7u8; 1000], false).unwrap());
        let passed = with_true_crc(raw.clone()).unwrap();
        assert_eq!(passed.as_ptr(), raw.as_ptr(), "a right CRC must not cost a copy");
        let mut bad = raw.to_vec();
        bad[10] ^= 0xff;
        // Shared (as a frame of h2's read buffer can be): the other handle keeps its bytes.
        let bad = Bytes::from(bad);
        let other = bad.clone();
        assert_eq!(with_true_crc(bad).unwrap(), raw);
        assert_ne!(other, raw);
        // Unique: fixed in place.
        let mut bad = raw.to_vec();
        bad[8] ^= 1;
        let bad = Bytes::from(bad);
        let ptr = bad.as_ptr();
        let fixed = with_true_crc(bad).unwrap();
        assert_eq!((fixed.as_ptr(), &fixed[..]), (ptr, &raw[..]));
    }
}
