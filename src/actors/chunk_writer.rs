//! `ChunkWriter`: the `writer` stage, one thread that hands chunks to the datastores. It takes
//! queued chunks in batches (up to the io_uring depth), so many sessions' chunks reach a
//! datastore's backend together (the io_uring backend writes a batch in a handful of syscalls);
//! `ChunkStore::insert_batch` decides and writes, this stage only batches, answers and counts.
//! Chunks arrive from the hasher stage, which forwards each verified chunk here; its asker (the
//! session) gets this stage's answer.

use std::sync::Arc;

use bytes::Bytes;

use crate::actors::SessionError;
use crate::actors::stage::{Job, Spec, Stage, Threads, Worker};
use crate::config::PipelineConfig;
use crate::format::Digest;
use crate::metrics::{self as m, Stage as Label};
use crate::store::{Datastore, InsertOutcome, WriteMethod};

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

/// The writer stage's one worker.
pub struct ChunkWriter;

/// Sending side of the writer stage; cheap to clone.
pub type ChunkWriterHandle = Stage<ChunkWriter>;

impl ChunkWriter {
    /// Starts the writer stage, its thread joined through `threads`.
    pub(crate) fn start(cfg: &PipelineConfig, threads: &mut Threads) -> ChunkWriterHandle {
        // Each chunk takes ~6 ring entries across the phases, but phases are sliced to the ring,
        // so the batch is bounded by latency, not by ring size.
        let batch = (cfg.uring_depth as usize).clamp(1, 256);
        Stage::start(Spec { label: Label::Writer, queue: cfg.writer_queue, batch }, vec![ChunkWriter], threads)
    }

    /// Starts a writer stage of its own (tests, benches); its thread ends when the last handle
    /// is dropped.
    pub fn spawn(cfg: &PipelineConfig) -> ChunkWriterHandle {
        Self::start(cfg, &mut Threads::default())
    }
}

impl Stage<ChunkWriter> {
    /// Stores one chunk directly (the pipeline's chunks come through the hasher stage instead).
    pub async fn store(&self, msg: StoreChunk) -> Result<Stored, SessionError> {
        self.ask(msg).await?
    }
}

impl Worker for ChunkWriter {
    type Msg = StoreChunk;
    type Reply = Result<Stored, SessionError>;

    fn handle(&mut self, job: Job<Self>) {
        self.handle_batch(vec![job]);
    }

    fn handle_batch(&mut self, mut jobs: Vec<Job<Self>>) {
        // One batch per datastore: each has its own backend.
        while let Some(store) = jobs.first().map(|j| j.msg.store.clone()) {
            let (mine, rest): (Vec<_>, Vec<_>) = jobs.into_iter().partition(|j| Arc::ptr_eq(&j.msg.store, &store));
            jobs = rest;
            store_batch(&store, mine);
        }
    }
}

/// Hands one datastore's jobs to its chunk store and answers each as soon as it is settled.
fn store_batch(store: &Datastore, jobs: Vec<Job<ChunkWriter>>) {
    let (msgs, mut replies): (Vec<StoreChunk>, Vec<_>) = jobs.into_iter().map(|j| (j.msg, Some(j.reply))).unzip();
    let chunks: Vec<(&Digest, &[u8])> = msgs.iter().map(|m| (&m.digest, &m.blob[..])).collect();
    let method = store.chunks().write_method();
    store.chunks().insert_batch(&chunks, |i, result| {
        let result = result.map(|o| Stored { new: o == InsertOutcome::Written });
        count(&result, msgs[i].blob.len() as u64, method);
        // The session may have gone away meanwhile; the chunk is on disk either way.
        if let Some(reply) = replies[i].take() {
            reply.send(result.map_err(SessionError::from));
        }
    });
}

fn count<E>(result: &Result<Stored, E>, len: u64, method: WriteMethod) {
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
