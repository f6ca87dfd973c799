//! `ChunkWriter`: the one thread that hands chunks to the datastores. It drains a bounded
//! crossbeam channel in batches, so many sessions' chunks reach a datastore's backend together
//! (the io_uring backend writes a batch in a handful of syscalls); `ChunkStore::insert_batch`
//! decides and writes, this thread only queues, batches and counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use tokio::sync::{Semaphore, oneshot};

use crate::actors::SessionError;
use crate::config::PipelineConfig;
use crate::format::Digest;
use crate::metrics::{self as m, Stage};
use crate::store::{Datastore, InsertOutcome, StoreError, WriteMethod};

/// Put this verified chunk (final bytes, CRC already fixed) into `store`'s chunk store.
#[derive(Debug)]
pub struct StoreChunk {
    pub store: Arc<Datastore>,
    pub digest: Digest,
    pub blob: Bytes,
}

/// What happened: `new` is false when an existing chunk file was kept (dedup).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub new: bool,
}

struct Job {
    msg: StoreChunk,
    reply: oneshot::Sender<Result<Stored, StoreError>>,
}

/// Sending side; cheap to clone. Permits mirror the channel bound so an async sender waits
/// instead of blocking its thread on a full channel.
#[derive(Clone)]
pub struct ChunkWriterHandle {
    tx: Sender<Job>,
    permits: Arc<Semaphore>,
    depth: Arc<AtomicUsize>,
}

impl ChunkWriterHandle {
    pub async fn store(&self, msg: StoreChunk) -> Result<Stored, SessionError> {
        let closed = || SessionError::Internal("chunk writer stopped".into());
        let _permit = self.permits.acquire().await.map_err(|_| closed())?;
        Stage::Writer.set_queue_depth(self.depth.fetch_add(1, Ordering::Relaxed) + 1);
        let (reply, rx) = oneshot::channel();
        // Never blocks: holders of permits never exceed the channel's capacity.
        let sent = self.tx.send(Job { msg, reply });
        let result = match sent {
            Ok(()) => rx.await.map_err(|_| closed()),
            Err(_) => Err(closed()),
        };
        Stage::Writer.set_queue_depth(self.depth.fetch_sub(1, Ordering::Relaxed) - 1);
        Ok(result??)
    }
}

/// The writer thread.
pub struct ChunkWriter {
    rx: Receiver<Job>,
    batch: usize,
}

impl ChunkWriter {
    /// Starts the thread; it ends when the last handle is dropped.
    pub fn spawn(cfg: &PipelineConfig) -> ChunkWriterHandle {
        let queue = cfg.writer_queue.max(1);
        let (tx, rx) = crossbeam_channel::bounded(queue);
        // Each chunk takes ~6 ring entries across the phases, but phases are sliced to the ring,
        // so the batch is bounded by latency, not by ring size.
        let writer = ChunkWriter { rx, batch: (cfg.uring_depth as usize).clamp(1, 256) };
        std::thread::Builder::new()
            .name("chunk-writer".into())
            .spawn(move || writer.run())
            .expect("spawn chunk writer thread");
        ChunkWriterHandle { tx, permits: Arc::new(Semaphore::new(queue)), depth: Arc::default() }
    }

    fn run(self) {
        while let Ok(first) = self.rx.recv() {
            let mut jobs = vec![first];
            while jobs.len() < self.batch {
                match self.rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            let started = Instant::now();
            let count = jobs.len();
            // One batch per datastore: each has its own backend.
            while let Some(store) = jobs.first().map(|j| j.msg.store.clone()) {
                let (mine, rest): (Vec<Job>, Vec<Job>) =
                    jobs.into_iter().partition(|j| Arc::ptr_eq(&j.msg.store, &store));
                jobs = rest;
                store_batch(&store, mine);
            }
            let per_chunk = started.elapsed() / count as u32;
            (0..count).for_each(|_| Stage::Writer.observe(per_chunk));
        }
    }
}

/// Hands one datastore's jobs to its chunk store and answers each as soon as it is settled.
fn store_batch(store: &Datastore, jobs: Vec<Job>) {
    let (msgs, mut replies): (Vec<StoreChunk>, Vec<_>) = jobs.into_iter().map(|j| (j.msg, Some(j.reply))).unzip();
    let chunks: Vec<(&Digest, &[u8])> = msgs.iter().map(|m| (&m.digest, &m.blob[..])).collect();
    let method = store.chunks().write_method();
    store.chunks().insert_batch(&chunks, |i, result| {
        let result = result.map(|o| Stored { new: o == InsertOutcome::Written });
        count(&result, msgs[i].blob.len() as u64, method);
        // The session may have gone away meanwhile; the chunk is on disk either way.
        if let Some(reply) = replies[i].take() {
            let _ = reply.send(result);
        }
    });
}

fn count(result: &Result<Stored, StoreError>, len: u64, method: WriteMethod) {
    match result {
        Ok(Stored { new: true }) => {
            metrics::counter!(m::CHUNK_WRITES, m::LABEL_METHOD => method.label()).increment(1);
            metrics::counter!(m::CHUNKS_WRITTEN).increment(1);
            metrics::counter!(m::BYTES_WRITTEN).increment(len);
        }
        Ok(Stored { new: false }) => {
            metrics::counter!(m::CHUNKS_DEDUPLICATED).increment(1);
            metrics::counter!(m::BYTES_DEDUPLICATED).increment(len);
        }
        Err(_) => {}
    }
}

#[cfg(test)]
#[path = "chunk_writer_tests.rs"]
mod tests;
