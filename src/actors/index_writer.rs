//! `IndexWriter`: one actor per open writer id. It builds a fixed or dynamic index from
//! `PUT *_index` appends (all entries of one PUT or none, stricter-than-pbs 7), and on close
//! checks chunk count, size and checksum against what the client claims, refuses a fixed index
//! with unfilled slots (stricter-than-pbs 2), and writes the file durably through
//! `BackupTxn::write_file`, on the `files` stage. The index lives in memory until then, so
//! a failed or abandoned writer leaves no file behind; its table is charged against the
//! session's and the server's index memory bound (index_memory.rs) for as long as it lives.

use std::sync::Arc;

use actix::{Actor, ActorContext, Context, Handler, Message, ResponseFuture};

use crate::actors::SessionError;
use crate::actors::index_memory::IndexCharge;
use crate::actors::stage::{Blocking, Stage};
use crate::format::dynamic_index::{DynamicEntry, DynamicIndex};
use crate::format::fixed_index::{FIXED_CHUNK_SIZE, FixedIndex};
use crate::format::{ArchiveName, Digest};
use crate::metrics::Stage as Label;
use crate::store::BackupTxn;

/// One `(start offset, digest)` pair of a PUT, with the length the session registered for it.
#[derive(Debug, Clone, Copy)]
pub struct AppendEntry {
    pub offset: u64,
    pub digest: Digest,
    pub len: u64,
}

/// Append these entries, all or none.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), SessionError>")]
pub struct AppendChunks {
    pub entries: Vec<AppendEntry>,
}

/// Check the client's totals and write the index file; the actor stops afterwards either way.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), SessionError>")]
pub struct CloseIndex {
    pub chunk_count: u64,
    pub size: u64,
    pub csum: String,
}

#[derive(Debug)]
enum Body {
    Dynamic { entries: Vec<DynamicEntry> },
    Fixed { size: u64, digests: Vec<Digest>, filled: Vec<bool>, incremental: bool },
}

/// The index being built, without any I/O (the actor adds the file write).
#[derive(Debug)]
pub struct IndexBuilder {
    name: ArchiveName,
    body: Body,
    appended: u64,
    charge: IndexCharge,
}

const ZERO: Digest = Digest([0; 32]);

/// Largest image a fixed index may announce: 64 TiB, 16 Mi slots, a 528 MiB table in memory
/// until close. The reference maps the index file instead and has no limit of its own; here an
/// unchecked `size` (up to 2^64 - 1) would ask the allocator for up to 128 TiB and abort the
/// whole server.
pub const MAX_FIXED_SIZE: u64 = 64 << 40;

/// Memory of one fixed slot: its digest and its filled flag.
const FIXED_SLOT_BYTES: u64 = size_of::<Digest>() as u64 + 1;
/// Memory of one dynamic entry.
const DYNAMIC_ENTRY_BYTES: u64 = size_of::<DynamicEntry>() as u64;

impl IndexBuilder {
    /// An empty dynamic index; its table is charged as it grows.
    pub fn dynamic(name: ArchiveName, charge: IndexCharge) -> Self {
        IndexBuilder { name, body: Body::Dynamic { entries: Vec::new() }, appended: 0, charge }
    }

    /// Bytes the table of a fixed index of `size` bytes takes, to be charged before it is built;
    /// refuses sizes over [`MAX_FIXED_SIZE`].
    pub fn fixed_table_bytes(size: u64) -> Result<u64, SessionError> {
        if size > MAX_FIXED_SIZE {
            return Err(SessionError::FixedTooLarge { size, max: MAX_FIXED_SIZE });
        }
        Ok(FixedIndex::slot_count(size, FIXED_CHUNK_SIZE) as u64 * FIXED_SLOT_BYTES)
    }

    /// A fixed index of `size` bytes; `base` (the previous index's digests) makes it incremental.
    /// `charge` holds [`Self::fixed_table_bytes`]; allocating up to 528 MiB, so call off-thread.
    pub fn fixed(
        name: ArchiveName,
        size: u64,
        base: Option<Vec<Digest>>,
        charge: IndexCharge,
    ) -> Result<Self, SessionError> {
        debug_assert!(Self::fixed_table_bytes(size).ok().is_none_or(|b| b <= charge.bytes()));
        if size > MAX_FIXED_SIZE {
            return Err(SessionError::FixedTooLarge { size, max: MAX_FIXED_SIZE });
        }
        let slots = FixedIndex::slot_count(size, FIXED_CHUNK_SIZE);
        let incremental = base.is_some();
        let (digests, filled) = match base {
            Some(d) if d.len() != slots => return Err(SessionError::CloneSizes),
            Some(d) => (d, vec![true; slots]),
            None => (vec![ZERO; slots], vec![false; slots]),
        };
        Ok(IndexBuilder { name, body: Body::Fixed { size, digests, filled, incremental }, appended: 0, charge })
    }

    pub fn name(&self) -> &ArchiveName {
        &self.name
    }

    pub fn is_fixed(&self) -> bool {
        matches!(self.body, Body::Fixed { .. })
    }

    pub fn append(&mut self, entries: &[AppendEntry]) -> Result<(), SessionError> {
        let name = self.name.as_str();
        match &mut self.body {
            Body::Dynamic { entries: list } => {
                let mut end = list.last().map_or(0, |e| e.end);
                for e in entries {
                    if e.offset != end {
                        return Err(SessionError::StrangeOffset { name: name.into(), expected: end, got: e.offset });
                    }
                    end += e.len;
                }
                grow_charged(list, entries.len(), &mut self.charge)?;
                let mut end = list.last().map_or(0, |e| e.end);
                list.extend(entries.iter().map(|e| {
                    end += e.len;
                    DynamicEntry { end, digest: e.digest }
                }));
            }
            Body::Fixed { size, digests, filled, .. } => {
                let slots: Vec<usize> = entries.iter().map(|e| fixed_slot(e, *size)).collect::<Result<_, _>>()?;
                for (slot, e) in slots.into_iter().zip(entries) {
                    digests[slot] = e.digest;
                    filled[slot] = true;
                }
            }
        }
        self.appended += entries.len() as u64;
        Ok(())
    }

    /// Checks the client's totals; returns the encoded index file.
    pub fn close(self, chunk_count: u64, size: u64, csum: &str) -> Result<Vec<u8>, SessionError> {
        self.close_charged(chunk_count, size, csum).map(|(file, _)| file)
    }

    /// [`Self::close`], also handing back the charge so it can be held until the file (which
    /// is about as large as the table was) has been written.
    fn close_charged(self, chunk_count: u64, size: u64, csum: &str) -> Result<(Vec<u8>, IndexCharge), SessionError> {
        let uuid = new_uuid();
        let ctime = chrono::Utc::now().timestamp();
        let fail = |kind: &'static str, reason: String| SessionError::CloseFailed {
            kind,
            name: self.name.to_string(),
            reason,
        };
        let charge = self.charge;
        let file = match self.body {
            Body::Dynamic { entries } => {
                if self.appended != chunk_count {
                    return Err(fail(
                        "dynamic",
                        format!("unexpected chunk count ({} != {chunk_count})", self.appended),
                    ));
                }
                let index = DynamicIndex { uuid, ctime, entries };
                if index.size() != size {
                    return Err(fail("dynamic", format!("unexpected file size ({} != {size})", index.size())));
                }
                if !csum_matches(&index.csum(), csum) {
                    return Err(fail("dynamic", "got unexpected checksum".into()));
                }
                index.encode()
            }
            Body::Fixed { size: declared, digests, filled, incremental } => {
                if self.appended != chunk_count {
                    return Err(fail(
                        "fixed",
                        format!("received wrong number of chunk ({} != {chunk_count})", self.appended),
                    ));
                }
                if !incremental {
                    if digests.len() as u64 != chunk_count {
                        return Err(fail(
                            "fixed",
                            format!("unexpected chunk count ({} != {chunk_count})", digests.len()),
                        ));
                    }
                    if declared != size {
                        return Err(fail("fixed", format!("unexpected file size ({declared} != {size})")));
                    }
                    let holes = filled.iter().filter(|f| !**f).count();
                    if holes > 0 {
                        return Err(fail(
                            "fixed",
                            format!("{holes} of {} slots were never written (index has holes)", digests.len()),
                        ));
                    }
                }
                let index = FixedIndex { uuid, ctime, size: declared, chunk_size: FIXED_CHUNK_SIZE, digests };
                if !csum_matches(&index.csum(), csum) {
                    return Err(fail("fixed", "got unexpected checksum".into()));
                }
                index.encode()
            }
        };
        Ok((file, charge))
    }
}

/// Makes room for `more` entries, charging what the table's allocation grows by (doubling, as
/// `Vec` would) before it grows; refused, nothing changes.
fn grow_charged(list: &mut Vec<DynamicEntry>, more: usize, charge: &mut IndexCharge) -> Result<(), SessionError> {
    let needed = list.len() + more;
    if needed <= list.capacity() {
        return Ok(());
    }
    let capacity = needed.max(list.capacity() * 2);
    charge.grow((capacity - list.capacity()) as u64 * DYNAMIC_ENTRY_BYTES)?;
    list.reserve_exact(capacity - list.len());
    Ok(())
}

/// The reference's `check_chunk_alignment` for a fixed index, on a start offset.
fn fixed_slot(e: &AppendEntry, size: u64) -> Result<usize, SessionError> {
    let bad = |s: String| Err(SessionError::FixedAppend(s));
    let end = e.offset.checked_add(e.len).ok_or_else(|| SessionError::FixedAppend("chunk offset overflows".into()))?;
    if end > size {
        return bad(format!("chunk data exceeds size ({end} >= {size})"));
    }
    if (end != size && e.len != FIXED_CHUNK_SIZE) || e.len > FIXED_CHUNK_SIZE || e.len == 0 {
        return bad(format!("chunk with unexpected length ({} != {FIXED_CHUNK_SIZE}", e.len));
    }
    if !e.offset.is_multiple_of(FIXED_CHUNK_SIZE) {
        return bad(format!("got unaligned chunk (pos = {})", e.offset));
    }
    Ok((e.offset / FIXED_CHUNK_SIZE) as usize)
}

fn csum_matches(actual: &[u8; 32], given: &str) -> bool {
    hex::decode(given).is_ok_and(|g| g.as_slice() == actual.as_slice())
}

fn new_uuid() -> [u8; 16] {
    let mut uuid = [0u8; 16];
    if getrandom::fill(&mut uuid).is_err() {
        // A uuid is informational only (readers ignore it); time is unique enough here.
        uuid[..16].copy_from_slice(&chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0).to_le_bytes().repeat(2));
    }
    uuid[6] = (uuid[6] & 0x0f) | 0x40;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    uuid
}

/// The actor around an [`IndexBuilder`]: it owns a share of the transaction until it closes.
pub struct IndexWriter {
    builder: Option<IndexBuilder>,
    txn: Option<Arc<BackupTxn>>,
    files: Stage<Blocking>,
}

impl IndexWriter {
    pub fn new(builder: IndexBuilder, txn: Arc<BackupTxn>, files: Stage<Blocking>) -> Self {
        IndexWriter { builder: Some(builder), txn: Some(txn), files }
    }
}

impl Actor for IndexWriter {
    type Context = Context<Self>;
}

impl Handler<AppendChunks> for IndexWriter {
    type Result = Result<(), SessionError>;
    fn handle(&mut self, msg: AppendChunks, _: &mut Self::Context) -> Self::Result {
        match &mut self.builder {
            Some(b) => b.append(&msg.entries),
            None => Err(SessionError::Internal("index writer already closed".into())),
        }
    }
}

impl Handler<CloseIndex> for IndexWriter {
    type Result = ResponseFuture<Result<(), SessionError>>;
    fn handle(&mut self, msg: CloseIndex, ctx: &mut Self::Context) -> Self::Result {
        ctx.stop();
        let (builder, txn, files) = (self.builder.take(), self.txn.take(), self.files.clone());
        Box::pin(async move {
            let (builder, txn) = match (builder, txn) {
                (Some(b), Some(t)) => (b, t),
                _ => return Err(SessionError::Internal("index writer already closed".into())),
            };
            let _timer = Label::Index.timer();
            let name = builder.name().clone();
            // Encoding hashes the whole index and the write fsyncs: both stay off this thread.
            files
                .run(move || {
                    let (bytes, _charge) = builder.close_charged(msg.chunk_count, msg.size, &msg.csum)?;
                    txn.write_file(&name, &bytes)?;
                    Ok::<(), SessionError>(())
                })
                .await?
        })
    }
}

#[cfg(test)]
#[path = "index_writer_tests.rs"]
mod tests;
