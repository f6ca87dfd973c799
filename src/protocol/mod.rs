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
use crate::http::{ErrorKind, HttpError};
use crate::protocol::inflight::InflightBytes;

/// Why a session request or connection failed in the HTTP/2 layer itself; the pipeline's
/// refusals are the actors' `SessionError` and `ReaderError`, the request's shape the `http`
/// vocabulary's.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The connection's `SessionActor` stopped while a request was on its way to it.
    #[error("backup session is gone - {0}")]
    SessionGone(#[from] actix::MailboxError),
    #[error("session budget closed")]
    BudgetClosed,
    #[error("in-flight byte bound closed")]
    InflightClosed,
    /// The `backup.request` failpoint fired.
    #[error("{0}")]
    Injected(std::io::Error),
    /// The connection failed (logged when a session ends, never an answer).
    #[error("{0}")]
    Connection(#[from] ::h2::Error),
    /// Shutdown ended the session (logged, never an answer).
    #[error("aborted: the server is shutting down")]
    Aborted,
}

impl HttpError for ProtocolError {
    fn kind(&self) -> ErrorKind {
        match self {
            ProtocolError::Injected(_) => ErrorKind::InjectedIo,
            _ => ErrorKind::Internal,
        }
    }
}

/// What all sessions of one server share: the pipeline's stages, the server-wide in-flight byte
/// bound, the limits, and the signal that aborts them all. Started once, where the server
/// starts; cheap to clone.
#[derive(Clone)]
pub struct Sessions {
    pub(crate) pipeline: Pipeline,
    pub(crate) inflight: Arc<InflightBytes>,
    pub(crate) limits: crate::config::LimitsConfig,
    abort: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Sessions {
    /// Starts the pipeline's threads.
    pub fn start(config: &Config, inflight: Arc<InflightBytes>) -> Sessions {
        Sessions {
            pipeline: Pipeline::start(&config.pipeline, &config.limits),
            inflight,
            limits: config.limits.clone(),
            abort: Arc::new(tokio::sync::watch::Sender::new(false)),
        }
    }

    /// Ends every running session at once, as if its client had gone away (a stopping server
    /// whose grace period is over): an unfinished backup's snapshot is removed.
    pub fn abort_all(&self) {
        self.abort.send_replace(true);
    }

    /// Serves a session's connection (`served`) until it ends, or until [`Self::abort_all`]
    /// ends it; the reason, if not the client's close, is for the log.
    pub(crate) async fn until_aborted(
        aborted: impl Future<Output = ()>,
        served: impl Future<Output = Result<(), ::h2::Error>>,
    ) -> Result<(), ProtocolError> {
        tokio::select! {
            ended = served => Ok(ended?),
            () = aborted => Err(ProtocolError::Aborted),
        }
    }

    /// Resolves once [`Self::abort_all`] was called.
    pub(crate) fn aborted(&self) -> impl Future<Output = ()> + 'static {
        let mut abort = self.abort.subscribe();
        async move {
            let _ = abort.wait_for(|aborted| *aborted).await;
        }
    }

    /// Waits up to `deadline` for the pipeline's threads to finish what they were given; call
    /// once every session has ended. False if some are still busy.
    pub fn shutdown(self, deadline: Duration) -> bool {
        self.pipeline.shutdown(deadline)
    }
}
