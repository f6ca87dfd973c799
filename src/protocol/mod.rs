//! The HTTP/2 sessions that follow the protocol upgrade: the backup session
//! (`proxmox-backup-protocol-v1`) and the reader session (`...-reader-protocol-v1`). They parse
//! requests, send typed messages to the pipeline's actors, and turn every error into a status
//! and message through [`crate::http::ApiError`]. [`h2`] holds the connection plumbing both
//! sessions share. The datastore is reached only through the pipeline (actors/), never directly.

pub mod backup;
pub mod h2;
pub mod inflight;
pub mod reader;

use std::sync::Arc;
use std::time::Duration;

use crate::actors::Pipeline;
use crate::config::Config;
use crate::protocol::inflight::InflightBytes;

/// What all sessions of one server share: the pipeline's stages, the server-wide in-flight byte
/// bound and the limits. Started once, where the server starts; cheap to clone.
#[derive(Clone)]
pub struct Sessions {
    pub(crate) pipeline: Pipeline,
    pub(crate) inflight: Arc<InflightBytes>,
    pub(crate) limits: crate::config::LimitsConfig,
}

impl Sessions {
    /// Starts the pipeline's threads.
    pub fn start(config: &Config, inflight: Arc<InflightBytes>) -> Sessions {
        Sessions {
            pipeline: Pipeline::start(&config.pipeline, &config.limits),
            inflight,
            limits: config.limits.clone(),
        }
    }

    /// Waits up to `deadline` for the pipeline's threads to finish what they were given; call
    /// once every session has ended. False if some are still busy.
    pub fn shutdown(self, deadline: Duration) -> bool {
        self.pipeline.shutdown(deadline)
    }
}
