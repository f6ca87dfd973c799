//! The API-token secrets already proven against their argon2 hash, and the single check that
//! concurrent requests presenting the same unproven secret share.
//!
//! Argon2 is deliberately slow (tens of milliseconds of CPU). A verified secret is remembered
//! as authid -> SHA-256(secret), so a backup's many requests pay for it once. Without sharing,
//! a burst of connections that all start before the first check ends (a cluster's nightly jobs
//! using one token, the load tester's 16 sessions) would each run argon2: in the ingest
//! profile that was a tenth of the server's CPU. Checks are shared only between identical
//! (authid, secret, stored hash) triples, so a wrong secret never delays a right one.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::OnceCell;

/// What identifies one argon2 check: authid, SHA-256 of the secret, the stored PHC hash.
type CheckKey = (String, [u8; 32], String);

#[derive(Default)]
pub struct SecretCache {
    verified: Mutex<HashMap<String, [u8; 32]>>,
    running: Mutex<HashMap<CheckKey, Arc<OnceCell<bool>>>>,
    /// argon2 runs started, for tests.
    argon2_runs: AtomicU64,
}

/// The check could not run (the blocking pool refused or the check panicked).
#[derive(Debug)]
pub struct CheckFailed;

impl SecretCache {
    /// Forgets every proven secret (the token file changed).
    pub fn clear(&self) {
        self.verified.lock().clear();
    }

    /// Forgets the proven secret of one token (its secret was replaced).
    pub fn forget(&self, authid: &str) {
        self.verified.lock().remove(authid);
    }

    /// Whether `secret` matches `hash` (the stored argon2 PHC string of `authid`'s secret).
    /// Constant-time against the cache; argon2 runs on the blocking pool, at most once at a
    /// time per distinct (authid, secret, hash).
    pub async fn check(&self, authid: &str, secret: &str, hash: &str) -> Result<bool, CheckFailed> {
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        if let Some(known) = self.verified.lock().get(authid)
            && bool::from(known.ct_eq(&digest))
        {
            return Ok(true);
        }
        let key: CheckKey = (authid.to_owned(), digest, hash.to_owned());
        let cell = Arc::clone(self.running.lock().entry(key.clone()).or_default());
        // A failed (not merely negative) check is not kept: the next waiter runs it again.
        let result = cell
            .get_or_try_init(|| {
                let (secret, hash) = (secret.to_owned(), hash.to_owned());
                self.argon2_runs.fetch_add(1, Ordering::Relaxed);
                async move {
                    tokio::task::spawn_blocking(move || crate::auth::verify_secret(&secret, &hash))
                        .await
                        .map_err(|_| CheckFailed)
                }
            })
            .await
            .copied();
        // Remembered before the running check is dropped, so no request in between runs it again.
        if let Ok(true) = result {
            self.verified.lock().insert(authid.to_owned(), digest);
        }
        let mut running = self.running.lock();
        if running.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            running.remove(&key);
        }
        result
    }

    /// Panics while holding both tables' locks, as a bug inside them would (for tests).
    #[cfg(test)]
    pub(crate) fn panic_holding_locks(&self) {
        let _held = (self.verified.lock(), self.running.lock());
        panic!("bug while holding the secret cache");
    }

    /// Checks in progress and argon2 runs so far (for tests: the table must not grow).
    #[cfg(test)]
    pub(crate) fn counts(&self) -> (usize, u64) {
        (self.running.lock().len(), self.argon2_runs.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn concurrent_checks_of_one_secret_share_one_argon2_run() {
        let hash = crate::auth::hash_secret("s3cret").unwrap();
        let cache = SecretCache::default();
        // All 16 are polled (and find the first one's check running) before any can finish.
        let burst = (0..16).map(|_| cache.check("a@pbs!t", "s3cret", &hash));
        for ok in futures_util::future::join_all(burst).await {
            assert!(ok.unwrap());
        }
        assert_eq!(cache.counts(), (0, 1));
        // Then the cache answers without argon2.
        assert!(cache.check("a@pbs!t", "s3cret", &hash).await.unwrap());
        assert_eq!(cache.counts(), (0, 1));
    }

    #[tokio::test]
    async fn wrong_secrets_are_refused_and_not_cached() {
        let hash = crate::auth::hash_secret("right").unwrap();
        let cache = SecretCache::default();
        let (a, b) = tokio::join!(cache.check("a@pbs!t", "wrong", &hash), cache.check("a@pbs!t", "right", &hash));
        assert!(!a.unwrap());
        assert!(b.unwrap());
        // Different secrets never share a check.
        assert_eq!(cache.counts(), (0, 2));
        assert!(!cache.check("a@pbs!t", "wrong", &hash).await.unwrap());
        assert_eq!(cache.counts(), (0, 3));
        // Proven secrets are per token, and a forgotten one pays argon2 again (still right).
        assert!(cache.check("b@pbs!t", "right", &hash).await.unwrap());
        assert_eq!(cache.counts(), (0, 4));
        cache.forget("a@pbs!t");
        assert_eq!(cache.verified.lock().keys().collect::<Vec<_>>(), ["b@pbs!t"]);
        assert!(cache.check("a@pbs!t", "right", &hash).await.unwrap());
        assert_eq!(cache.counts(), (0, 5));
    }
}
