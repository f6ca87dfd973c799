//! What a stopping server does between closing its listener and returning from `serve`: the
//! running sessions get `limits.shutdown-grace-secs` to end on their own (a backup that
//! finishes in that time is kept), new sessions are refused, and the sessions still running
//! then are aborted the way a vanished client ends them, so an unfinished backup's snapshot is
//! removed by its own session, not left for crash recovery. `serve` then joins the pipeline.

use std::time::Duration;

use crate::protocol::Sessions;
use crate::server::ServerState;

/// How often the count of open sessions is looked at while stopping.
const POLL: Duration = Duration::from_millis(20);
/// How long aborted sessions may take to undo what they began.
const ABORT_WAIT: Duration = Duration::from_secs(10);

/// Waits for the open sessions to end, aborting them once the grace period is over.
pub(super) async fn stop_sessions(state: &ServerState, sessions: &Sessions) {
    // Upgrades on connections that are still open are answered 503 from now on.
    state.sessions.close();
    let open = || state.config.limits.max_sessions.saturating_sub(state.sessions.available_permits());
    let grace = state.config.limits.shutdown_grace_secs;
    if open() > 0 {
        tracing::info!("waiting up to {grace} s for {} session(s) to end", open());
    }
    if tokio::time::timeout(Duration::from_secs(grace), none_open(&open)).await.is_ok() {
        return;
    }
    tracing::warn!("shutdown grace period of {grace} s over: aborting {} session(s)", open());
    sessions.abort_all();
    if tokio::time::timeout(ABORT_WAIT, none_open(&open)).await.is_err() {
        tracing::warn!("{} aborted session(s) still ending after {ABORT_WAIT:?}; stopping anyway", open());
    }
}

async fn none_open(open: &impl Fn() -> usize) {
    while open() > 0 {
        tokio::time::sleep(POLL).await;
    }
}
