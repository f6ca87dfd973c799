//! The ingest pipeline. A [`session::SessionActor`] per connection sends each uploaded chunk to
//! the [`hasher`] stage (CRC, zstd decode, SHA-256), which hands it on to the
//! [`chunk_writer::ChunkWriter`] stage; [`index_writer::IndexWriter`]s build and check indexes; the
//! [`finish`] stage commits the manifest; the `files` stage does the sessions' other blocking
//! file I/O, and [`reader`] reads a snapshot for the reader protocol through it. Every hop is
//! bounded: each pool is built the one way [`stage`] describes.
//!
//! [`Pipeline`] holds the process-wide stages; sessions share it. protocol/ reaches the
//! datastore only through it ([`StoreHandle`]), never through store/ directly.

pub mod chunk_writer;
pub mod error;
pub mod finish;
pub mod hasher;
pub mod index_memory;
pub mod index_writer;
pub mod previous;
pub mod reader;
pub mod session;
pub mod stage;

use std::sync::Arc;
use std::time::Duration;

pub use error::SessionError;

use parking_lot::Mutex;

use crate::config::{LimitsConfig, PipelineConfig};
use crate::metrics::Stage as Label;
use crate::store::Datastore;
use stage::{Blocking, Spec, Stage, Threads};

/// Threads of the `finish` stage: commits are rare, but one may wait seconds for a `syncfs`.
const FINISH_THREADS: usize = 2;
/// Queue of the `finish` stage.
const FINISH_QUEUE: usize = 6;
/// Threads of the `files` stage: blocking file I/O of all sessions (mostly waiting for the
/// disk, so more threads than cores).
const FILES_THREADS: usize = 4;
/// Queue of the `files` stage: one message per request, so a few per session.
const FILES_QUEUE: usize = 64;

/// The shared stages: hasher pool, chunk writer, finish and files threads, and the bound on the
/// index tables the sessions' index writers hold. Cheap to clone, `Send + Sync`: the server
/// starts it once and hands clones to every connection thread.
#[derive(Clone)]
pub struct Pipeline {
    pub(crate) hashers: Stage<hasher::Hasher>,
    pub(crate) finisher: Stage<finish::Finisher>,
    pub(crate) files: Stage<Blocking>,
    pub(crate) cfg: Arc<PipelineConfig>,
    /// Index tables all backup sessions hold (`limits.max-index-bytes`).
    pub(crate) index_memory: Arc<index_memory::IndexMemory>,
    threads: Arc<Mutex<Threads>>,
}

/// A datastore as protocol/ holds it: the server hands it in (`store.into()`), protocol/ passes
/// it on to the pipeline and cannot read from it.
#[derive(Debug, Clone)]
pub struct StoreHandle(pub(crate) Arc<Datastore>);

impl From<Arc<Datastore>> for StoreHandle {
    fn from(store: Arc<Datastore>) -> Self {
        StoreHandle(store)
    }
}

impl Pipeline {
    /// Starts every stage's threads.
    pub fn start(cfg: &PipelineConfig, limits: &LimitsConfig) -> Pipeline {
        let mut threads = Threads::default();
        let hashers =
            if cfg.hashers == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { cfg.hashers };
        // `hasher_queue` bounds the chunks waiting for or inside the pool, as it always has.
        let hasher_queue = cfg.hasher_queue.saturating_sub(hashers);
        let spec = |label, queue| Spec { label, queue, batch: 1 };
        // Only the hashers hold the writer: it stops after them, once they have handed on
        // everything they were given.
        let writer = chunk_writer::ChunkWriter::start(cfg, &mut threads);
        Pipeline {
            hashers: Stage::start(
                spec(Label::Hasher, hasher_queue),
                workers(hashers, || hasher::Hasher { writer: writer.clone() }),
                &mut threads,
            ),
            finisher: Stage::start(
                spec(Label::Finish, FINISH_QUEUE),
                workers(FINISH_THREADS, || finish::Finisher),
                &mut threads,
            ),
            files: Stage::start(spec(Label::Files, FILES_QUEUE), workers(FILES_THREADS, || Blocking), &mut threads),
            cfg: Arc::new(cfg.clone()),
            index_memory: index_memory::IndexMemory::server(limits.max_index_bytes),
            threads: Arc::new(Mutex::new(threads)),
        }
    }

    pub fn config(&self) -> &PipelineConfig {
        &self.cfg
    }

    /// Drops this handle and waits up to `deadline` for the stages' threads to end. They end
    /// once every other clone is gone too (sessions ended) and what was queued is done — so
    /// chunks accepted before shutdown are on disk when this returns true.
    pub fn shutdown(self, deadline: Duration) -> bool {
        let threads = std::mem::take(&mut *self.threads.lock());
        drop(self);
        threads.join(deadline)
    }
}

fn workers<W>(n: usize, make: impl FnMut() -> W) -> Vec<W> {
    std::iter::repeat_with(make).take(n).collect()
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").field("config", &self.cfg).finish()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pipeline_can_be_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync + Clone + std::fmt::Debug>() {}
        assert_send_sync::<super::Pipeline>();
    }
}
