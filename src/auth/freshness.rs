//! How a request learns of the CLI's edits to the access files without blocking its thread.
//!
//! The CLI changes users, tokens and ACLs while a server runs, and the next request must see
//! the change (an ACL set, then a backup started with it). So every authenticated request needs
//! a check of the files' modification times that *started after the request arrived*, and a
//! changed file is re-read. That is file I/O: it runs on the blocking pool, never on the
//! connection's thread. Requests that arrive while a check is running wait for the next one,
//! and one check serves every request waiting for it, so a burst of requests costs two checks,
//! not one per request.

use std::sync::atomic::{AtomicU64, Ordering};

/// The coalescing of one kind of check.
#[derive(Debug, Default)]
pub struct Freshness {
    /// Numbers handed to callers so far (the n-th caller gets n).
    asked: AtomicU64,
    /// Every caller numbered up to this has seen a check that started after it asked.
    covered: AtomicU64,
    /// One check at a time; callers wait their turn without blocking a thread.
    turn: tokio::sync::Mutex<()>,
    /// Checks run so far.
    checks: AtomicU64,
}

impl Freshness {
    /// Returns once a check that started after this call has run. `check` runs on the blocking
    /// pool, unless a check started by another caller after this one asked covers it too.
    pub async fn after(&self, check: impl FnOnce() + Send + 'static) {
        let ticket = self.asked.fetch_add(1, Ordering::SeqCst) + 1;
        let _turn = self.turn.lock().await;
        if self.covered.load(Ordering::SeqCst) >= ticket {
            return;
        }
        // Everyone who asked up to now is covered by a check that starts only now.
        let through = self.asked.load(Ordering::SeqCst);
        self.checks.fetch_add(1, Ordering::Relaxed);
        match tokio::task::spawn_blocking(check).await {
            Ok(()) => self.covered.store(through, Ordering::SeqCst),
            // Not covered: the next caller checks again.
            Err(e) => tracing::error!("access file check failed: {e}"),
        }
    }

    /// Checks run so far.
    pub fn checks(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use super::*;

    #[tokio::test]
    async fn a_burst_of_callers_shares_two_checks() {
        let fresh = Arc::new(Freshness::default());
        let callers = (0..50).map(|_| {
            let fresh = Arc::clone(&fresh);
            tokio::spawn(async move { fresh.after(|| std::thread::sleep(std::time::Duration::from_millis(20))).await })
        });
        for c in callers.collect::<Vec<_>>() {
            c.await.unwrap();
        }
        assert_eq!(fresh.checks(), 2, "the first caller's check, then one for everyone who waited");
        fresh.after(|| {}).await;
        assert_eq!(fresh.checks(), 3, "a caller after the burst gets a check of its own");
    }

    #[tokio::test]
    async fn a_check_that_started_before_a_caller_asked_does_not_cover_it() {
        let fresh = Arc::new(Freshness::default());
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let release = Arc::new(AtomicBool::new(false));
        let first = tokio::spawn({
            let (fresh, release) = (Arc::clone(&fresh), Arc::clone(&release));
            async move {
                fresh
                    .after(move || {
                        started_tx.send(()).unwrap();
                        while !release.load(Ordering::SeqCst) {
                            std::thread::yield_now();
                        }
                    })
                    .await
            }
        });
        tokio::task::spawn_blocking(move || started_rx.recv().unwrap()).await.unwrap();
        // Asks while the first check runs: that check may have read the files already.
        let seen = Arc::new(AtomicBool::new(false));
        let second = tokio::spawn({
            let (fresh, seen) = (Arc::clone(&fresh), Arc::clone(&seen));
            async move { fresh.after(move || seen.store(true, Ordering::SeqCst)).await }
        });
        while fresh.asked.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        release.store(true, Ordering::SeqCst);
        first.await.unwrap();
        second.await.unwrap();
        assert!(seen.load(Ordering::SeqCst), "the second caller waited for a check of its own");
        assert_eq!(fresh.checks(), 2);
    }
}
