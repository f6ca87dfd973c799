//! The bound on index tables held in memory (`limits.max-session-index-bytes` per backup
//! session, `limits.max-index-bytes` for the whole server). An index lives in memory from its
//! open until its close (index_writer.rs): a fixed index's slot table is sized by the image
//! size the client announces, a dynamic index grows by every appended chunk, and a session may
//! open 256 of them. Without a bound a few clients could make the server allocate more than the
//! machine has.
//!
//! Each open index holds one [`IndexCharge`] against both bounds, taken before its table is
//! allocated or grown, and given back when the index is dropped (closed, failed or abandoned).
//! A charge that does not fit is refused at once, not waited for: an index is held for a whole
//! backup, so waiting could wait for ever, and the client gets a 400 it can act on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::actors::SessionError;
use crate::format::ArchiveName;

/// One bound: a session's or the server's.
#[derive(Debug)]
pub struct IndexMemory {
    limit: u64,
    used: AtomicU64,
    scope: &'static str,
}

impl IndexMemory {
    /// The server-wide bound all sessions share.
    pub fn server(limit: u64) -> Arc<IndexMemory> {
        Arc::new(IndexMemory { limit, used: AtomicU64::new(0), scope: "server" })
    }

    fn session(limit: u64) -> Arc<IndexMemory> {
        Arc::new(IndexMemory { limit, used: AtomicU64::new(0), scope: "session" })
    }

    /// Bytes charged now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `bytes` if they fit; else answers what is in use.
    fn take(&self, bytes: u64) -> Result<(), u64> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .map(drop)
    }

    fn give(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// The two bounds one backup session charges its indexes against.
#[derive(Debug, Clone)]
pub struct IndexBudget {
    session: Arc<IndexMemory>,
    server: Arc<IndexMemory>,
}

impl IndexBudget {
    /// A new session's budget of `session_limit` bytes inside the server's.
    pub fn new(session_limit: u64, server: Arc<IndexMemory>) -> IndexBudget {
        IndexBudget { session: IndexMemory::session(session_limit), server }
    }

    /// A charge of `bytes` for the index `name`, refused when it would exceed either bound.
    pub fn charge(&self, name: &ArchiveName, bytes: u64) -> Result<IndexCharge, SessionError> {
        let mut charge = IndexCharge { budget: self.clone(), name: name.to_string(), bytes: 0 };
        charge.grow(bytes)?;
        Ok(charge)
    }
}

/// What one open index holds against its session's and the server's bound; given back on drop.
#[derive(Debug)]
pub struct IndexCharge {
    budget: IndexBudget,
    name: String,
    bytes: u64,
}

impl IndexCharge {
    /// Takes `bytes` more, from both bounds or from neither.
    pub fn grow(&mut self, bytes: u64) -> Result<(), SessionError> {
        let refused = |bound: &IndexMemory, used: u64| SessionError::IndexMemory {
            name: self.name.clone(),
            need: bytes,
            used,
            scope: bound.scope,
            limit: bound.limit,
        };
        let IndexBudget { session, server } = &self.budget;
        session.take(bytes).map_err(|used| refused(session, used))?;
        if let Err(used) = server.take(bytes) {
            session.give(bytes);
            return Err(refused(server, used));
        }
        self.bytes += bytes;
        Ok(())
    }

    /// Bytes this index holds.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for IndexCharge {
    fn drop(&mut self) {
        self.budget.session.give(self.bytes);
        self.budget.server.give(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> ArchiveName {
        ArchiveName::parse(s).unwrap()
    }

    #[test]
    fn charges_count_against_both_bounds_and_come_back_on_drop() {
        let server = IndexMemory::server(100);
        let (a, b) = (IndexBudget::new(60, Arc::clone(&server)), IndexBudget::new(60, Arc::clone(&server)));
        let mut first = a.charge(&name("a.fidx"), 50).unwrap();
        let e = a.charge(&name("b.fidx"), 20).unwrap_err().to_string();
        assert_eq!(e, "index memory limit exceeded - 'b.fidx' needs 20 bytes, 50 of the session's 60 are in use");
        let mut second = b.charge(&name("c.fidx"), 40).unwrap();
        let e = second.grow(20).unwrap_err().to_string();
        assert_eq!(e, "index memory limit exceeded - 'c.fidx' needs 20 bytes, 90 of the server's 100 are in use");
        // The refused growth left nothing behind in the session's bound either.
        assert_eq!((b.session.used(), second.bytes(), server.used()), (40, 40, 90));
        drop(second);
        first.grow(10).unwrap();
        drop(first);
        assert_eq!((a.session.used(), b.session.used(), server.used()), (0, 0, 0));
    }

    #[test]
    fn a_charge_that_overflows_is_refused() {
        let budget = IndexBudget::new(u64::MAX, IndexMemory::server(u64::MAX));
        let _held = budget.charge(&name("a.didx"), 10).unwrap();
        assert!(budget.charge(&name("b.didx"), u64::MAX).is_err());
    }
}
