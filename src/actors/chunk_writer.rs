//! `ChunkWriter`: the one thread that puts chunk files on disk. It owns an io_uring ring and
//! drains a bounded crossbeam channel in batches, so many sessions' chunks share few syscalls;
//! `ChunkStore::plan_insert` decides per chunk (dedup-by-size rules), the ring carries out the
//! writes. Where io_uring is unavailable (or `io_uring = false`) it uses `ChunkStore::insert`,
//! logs that once and counts it in `chunkyard_chunk_writes_total{method="fallback"}`.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use tokio::sync::{Semaphore, oneshot};

use crate::actors::SessionError;
use crate::actors::uring::{UringWriter, WriteItem};
use crate::config::PipelineConfig;
use crate::format::Digest;
use crate::metrics::{self as m, Stage};
use crate::store::backup::client_io;
use crate::store::durable;
use crate::store::{Datastore, InsertOutcome, InsertPlan, StoreError};

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

/// How the writer thread writes chunk files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMethod {
    IoUring,
    Fallback,
}

impl WriteMethod {
    pub fn label(self) -> &'static str {
        match self {
            WriteMethod::IoUring => m::METHOD_IO_URING,
            WriteMethod::Fallback => m::METHOD_FALLBACK,
        }
    }
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
    method: WriteMethod,
}

impl ChunkWriterHandle {
    pub fn method(&self) -> WriteMethod {
        self.method
    }

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
    uring: Option<UringWriter>,
    batch: usize,
}

impl ChunkWriter {
    /// Starts the thread; it ends when the last handle is dropped.
    pub fn spawn(cfg: &PipelineConfig) -> ChunkWriterHandle {
        let queue = cfg.writer_queue.max(1);
        let (tx, rx) = crossbeam_channel::bounded(queue);
        let uring = if cfg.io_uring {
            match UringWriter::new(cfg.uring_depth) {
                Ok(u) => Some(u),
                Err(e) => {
                    tracing::warn!("io_uring unavailable ({e}); chunk writer falls back to plain file I/O");
                    None
                }
            }
        } else {
            tracing::info!("io_uring disabled by configuration; chunk writer uses plain file I/O");
            None
        };
        let method = if uring.is_some() { WriteMethod::IoUring } else { WriteMethod::Fallback };
        // Each chunk takes ~6 ring entries across the phases, but phases are sliced to the ring,
        // so the batch is bounded by latency, not by ring size.
        let writer = ChunkWriter { rx, uring, batch: (cfg.uring_depth as usize).clamp(1, 256) };
        std::thread::Builder::new()
            .name("chunk-writer".into())
            .spawn(move || writer.run())
            .expect("spawn chunk writer thread");
        ChunkWriterHandle { tx, permits: Arc::new(Semaphore::new(queue)), depth: Arc::default(), method }
    }

    fn run(mut self) {
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
            if self.uring.is_some() {
                self.run_uring(jobs);
            } else {
                for job in jobs {
                    let r = job.msg.store.chunks().insert(&job.msg.digest, &job.msg.blob);
                    let r = r.map(|o| Stored { new: o == InsertOutcome::Written });
                    finish_job(job, r, WriteMethod::Fallback);
                }
            }
            let per_chunk = started.elapsed() / count as u32;
            (0..count).for_each(|_| Stage::Writer.observe(per_chunk));
        }
    }

    fn run_uring(&mut self, jobs: Vec<Job>) {
        let mut seen: HashSet<(usize, Digest)> = HashSet::new();
        let mut to_write: Vec<(Job, std::path::PathBuf, std::path::PathBuf, std::path::PathBuf)> = Vec::new();
        for job in jobs {
            // Two uploads of one digest in one batch: the second is a duplicate of the first.
            let key = (Arc::as_ptr(&job.msg.store) as usize, job.msg.digest);
            if !seen.insert(key) {
                finish_job(job, Ok(Stored { new: false }), WriteMethod::IoUring);
                continue;
            }
            match job.msg.store.chunks().plan_insert(&job.msg.digest, &job.msg.blob) {
                Ok(InsertPlan::Keep) => finish_job(job, Ok(Stored { new: false }), WriteMethod::IoUring),
                Ok(InsertPlan::Write { tmp, dest, dir }) => to_write.push((job, tmp, dest, dir)),
                Err(e) => finish_job(job, Err(e), WriteMethod::IoUring),
            }
        }
        if to_write.is_empty() {
            return;
        }
        let items: Vec<WriteItem<'_>> =
            to_write.iter().map(|(j, tmp, dest, dir)| WriteItem { tmp, dest, dir, data: &j.msg.blob }).collect();
        // The datastore's own sync level decides, exactly as for the fallback's `insert`.
        let fsync = to_write.iter().any(|(j, ..)| j.msg.store.chunks().fsync());
        let results = self.uring.as_mut().expect("uring mode").write_batch(&items, fsync);
        drop(items);
        for ((job, _, dest, _), r) in to_write.into_iter().zip(results) {
            let r = r.map(|()| Stored { new: true }).map_err(|e| durable::CHUNK.failed(&dest, e));
            finish_job(job, r, WriteMethod::IoUring);
        }
    }
}

fn finish_job(job: Job, result: Result<Stored, StoreError>, method: WriteMethod) {
    // One text for both write methods, naming the chunk rather than a temp path the client
    // never saw; the log keeps the path and the step that failed.
    let result = result.map_err(|e| client_io(e, format!("storing chunk {} failed", job.msg.digest)));
    if let Ok(stored) = &result {
        let len = job.msg.blob.len() as u64;
        if stored.new {
            metrics::counter!(m::CHUNK_WRITES, m::LABEL_METHOD => method.label()).increment(1);
            metrics::counter!(m::CHUNKS_WRITTEN).increment(1);
            metrics::counter!(m::BYTES_WRITTEN).increment(len);
        } else {
            metrics::counter!(m::CHUNKS_DEDUPLICATED).increment(1);
            metrics::counter!(m::BYTES_DEDUPLICATED).increment(len);
        }
    }
    // The session may have gone away meanwhile; the chunk is on disk either way.
    let _ = job.reply.send(result);
}

#[cfg(test)]
#[path = "chunk_writer_tests.rs"]
mod tests;
