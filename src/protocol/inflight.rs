//! The server-wide bound on chunk bytes in flight (`limits.max-inflight-bytes`): every chunk or
//! blob upload of every backup session takes its encoded size from one [`InflightBytes`] before
//! its body is read and gives it back when the chunk is stored (or refused).
//!
//! Why one pool and not only the per-session budget: the session budget alone lets
//! `max-sessions` sessions hold a window's worth each (512 × 32 MiB). The pool caps the sum;
//! the backup router then opens each connection's HTTP/2 window only by what it has taken
//! (`h2::ConnWindow`), so bytes that have no share yet stay on the client's side.
//!
//! A request asks for at most the whole pool, so a chunk larger than the bound still goes
//! through (alone) instead of waiting forever. The semaphore is FIFO, so a large request at the
//! head is not starved by a stream of small ones.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics as m;
use crate::protocol::ProtocolError;

/// The pool of in-flight chunk bytes shared by all backup sessions of one server.
#[derive(Debug)]
pub struct InflightBytes {
    permits: Arc<Semaphore>,
    limit: u64,
    peak: AtomicU64,
    waits: AtomicU64,
}

/// A share of the pool; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    bytes: u64,
    _permit: OwnedSemaphorePermit,
}

impl InflightBytes {
    /// A pool of `limit` bytes (at least 1).
    pub fn new(limit: u64) -> Arc<InflightBytes> {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS as u64);
        metrics::gauge!(m::INFLIGHT_LIMIT).set(limit as f64);
        Arc::new(InflightBytes {
            permits: Arc::new(Semaphore::new(limit as usize)),
            limit,
            peak: AtomicU64::new(0),
            waits: AtomicU64::new(0),
        })
    }

    /// Waits for `bytes` of the pool, capped at the whole pool.
    pub async fn reserve(&self, bytes: u64) -> Result<Reservation, ProtocolError> {
        let n = bytes.clamp(1, self.limit.min(u64::from(u32::MAX))) as u32;
        let permit = match Arc::clone(&self.permits).try_acquire_many_owned(n) {
            Ok(p) => p,
            Err(_) => {
                self.waits.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(m::INFLIGHT_WAITS).increment(1);
                Arc::clone(&self.permits).acquire_many_owned(n).await.map_err(|_| ProtocolError::InflightClosed)?
            }
        };
        let bytes = u64::from(n);
        self.peak.fetch_max(self.held(), Ordering::Relaxed);
        metrics::gauge!(m::INFLIGHT).increment(bytes as f64);
        Ok(Reservation { bytes, _permit: permit })
    }

    /// The configured bound.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes reserved now.
    pub fn held(&self) -> u64 {
        self.limit - self.permits.available_permits() as u64
    }

    /// The most bytes ever reserved at once.
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// Reservations that could not be granted at once and had to wait.
    pub fn waits(&self) -> u64 {
        self.waits.load(Ordering::Relaxed)
    }
}

impl Reservation {
    /// Bytes this share holds (the request's size, or the whole pool for a larger one).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        metrics::gauge!(m::INFLIGHT).decrement(self.bytes as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reserves `n` on a task; the task ends (giving the share back) with the size it got.
    fn reserve_on_task(pool: &Arc<InflightBytes>, n: u64) -> tokio::task::JoinHandle<u64> {
        let pool = Arc::clone(pool);
        tokio::spawn(async move { pool.reserve(n).await.unwrap().bytes() })
    }

    #[tokio::test]
    async fn shares_add_up_to_the_bound_and_come_back_on_drop() {
        let pool = InflightBytes::new(100);
        let a = pool.reserve(60).await.unwrap();
        let b = pool.reserve(40).await.unwrap();
        assert_eq!((pool.held(), pool.peak(), pool.waits()), (100, 100, 0));
        // Full: the next share waits until one is given back.
        let pending = reserve_on_task(&pool, 30);
        tokio::task::yield_now().await;
        assert!(!pending.is_finished());
        drop(a);
        assert_eq!(pending.await.unwrap(), 30);
        assert_eq!(pool.waits(), 1);
        drop(b);
        assert_eq!((pool.held(), pool.peak()), (0, 100));
    }

    #[tokio::test]
    async fn a_request_larger_than_the_bound_takes_the_whole_pool_and_progresses() {
        let pool = InflightBytes::new(100);
        let big = pool.reserve(16 * 1024 * 1024).await.unwrap();
        assert_eq!((big.bytes(), pool.held()), (100, 100));
        drop(big);
        assert_eq!(pool.reserve(0).await.unwrap().bytes(), 1);
    }

    #[tokio::test]
    async fn a_waiting_large_share_is_not_overtaken_by_small_ones() {
        let pool = InflightBytes::new(100);
        let first = pool.reserve(50).await.unwrap();
        let large = reserve_on_task(&pool, 100);
        tokio::task::yield_now().await;
        // 50 bytes are free, but the large share is queued first.
        let small = reserve_on_task(&pool, 10);
        tokio::task::yield_now().await;
        assert!(!small.is_finished());
        drop(first);
        assert_eq!(large.await.unwrap(), 100);
        assert_eq!(small.await.unwrap(), 10);
    }
}
