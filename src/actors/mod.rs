//! The ingest pipeline. A [`session::SessionActor`] per connection routes each uploaded chunk
//! through the [`hasher`] pool (CRC, zstd decode, SHA-256) to the io_uring
//! [`chunk_writer::ChunkWriter`]; [`index_writer::IndexWriter`]s build and check indexes; the
//! [`finish::FinishActor`] commits the manifest. Every hop between them is bounded.
//!
//! [`Pipeline`] holds the process-wide stages; sessions share it.

pub mod chunk_writer;
pub mod error;
pub mod finish;
pub mod hasher;
pub mod index_memory;
pub mod index_writer;
pub mod previous;
pub mod session;
pub mod session_messages;

use std::sync::Arc;

pub use error::SessionError;

use crate::config::{LimitsConfig, PipelineConfig};

/// The shared stages: hasher pool, chunk writer, finish threads, and the bound on the index
/// tables the sessions' index writers hold. Cheap to clone, `Send + Sync`:
/// the server starts it once and hands clones to every connection thread.
#[derive(Clone)]
pub struct Pipeline {
    pub(crate) hashers: hasher::HasherPool,
    pub(crate) writer: chunk_writer::ChunkWriterHandle,
    pub(crate) finisher: finish::FinishPool,
    pub(crate) cfg: Arc<PipelineConfig>,
    /// Index tables all backup sessions hold (`limits.max-index-bytes`).
    pub(crate) index_memory: Arc<index_memory::IndexMemory>,
}

impl Pipeline {
    /// Starts every stage. Call inside an actix System (the pools are `SyncArbiter`s).
    pub fn start(cfg: &PipelineConfig, limits: &LimitsConfig) -> Pipeline {
        Pipeline {
            hashers: hasher::HasherPool::start(cfg.hashers, cfg.hasher_queue),
            writer: chunk_writer::ChunkWriter::spawn(cfg),
            finisher: finish::FinishPool::start(2),
            cfg: Arc::new(cfg.clone()),
            index_memory: index_memory::IndexMemory::server(limits.max_index_bytes),
        }
    }

    pub fn config(&self) -> &PipelineConfig {
        &self.cfg
    }
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
