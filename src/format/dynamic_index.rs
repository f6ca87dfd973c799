//! Dynamic index (`*.didx`): variable chunks addressed by end offsets (formats.md 3.2).
//!
//! The header layout is shared with the fixed index (see `fixed_index::read_header`); this
//! file owns the 40-byte entries and their rule that ends strictly increase.

use sha2::{Digest as _, Sha256};

use crate::format::Digest;
use crate::format::fixed_index::{Header, read_header, seal, write_header};
pub use crate::format::fixed_index::{INDEX_HEADER_SIZE, IndexError};

/// `end: u64 LE` then the digest.
const ENTRY_SIZE: usize = 40;

pub const DYNAMIC_INDEX_MAGIC: [u8; 8] = [28, 145, 78, 165, 25, 186, 179, 205];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicEntry {
    /// Exclusive end offset of this chunk in the archive stream.
    pub end: u64,
    pub digest: Digest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicIndex {
    pub uuid: [u8; 16],
    pub ctime: i64,
    pub entries: Vec<DynamicEntry>,
}

impl DynamicIndex {
    pub fn parse(bytes: &[u8]) -> Result<Self, IndexError> {
        let header = read_header(bytes, DYNAMIC_INDEX_MAGIC)?;
        let body = &bytes[INDEX_HEADER_SIZE..];
        if !body.len().is_multiple_of(ENTRY_SIZE) {
            return Err(IndexError::WrongFileSize);
        }
        let mut entries = Vec::with_capacity(body.len() / ENTRY_SIZE);
        let mut prev = 0u64;
        for (i, e) in body.chunks_exact(ENTRY_SIZE).enumerate() {
            let end = u64::from_le_bytes(e[..8].try_into().expect("8 bytes"));
            // Strictly increasing ends: every chunk is at least one byte long.
            if end <= prev {
                return Err(IndexError::Invalid(format!("entry {i}: end offset {end} not after {prev}")));
            }
            prev = end;
            entries.push(DynamicEntry { end, digest: Digest(e[8..].try_into().expect("32 bytes")) });
        }
        Ok(DynamicIndex { uuid: header.uuid, ctime: header.ctime, entries })
    }
    pub fn encode(&self) -> Vec<u8> {
        let header = Header { uuid: self.uuid, ctime: self.ctime };
        let mut out = write_header(DYNAMIC_INDEX_MAGIC, &header, ENTRY_SIZE * self.entries.len());
        for e in &self.entries {
            out.extend_from_slice(&e.end.to_le_bytes());
            out.extend_from_slice(&e.digest.0);
        }
        seal(out)
    }
    /// `index_csum`: SHA-256 over `end_le || digest` of every entry.
    pub fn csum(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for e in &self.entries {
            h.update(e.end.to_le_bytes());
            h.update(e.digest.0);
        }
        h.finalize().into()
    }
    /// Logical size: the last end offset (0 if empty).
    pub fn size(&self) -> u64 {
        self.entries.last().map_or(0, |e| e.end)
    }
    /// Length of chunk `i`.
    pub fn chunk_len(&self, i: usize) -> u64 {
        let start = if i == 0 { 0 } else { self.entries[i - 1].end };
        self.entries[i].end.saturating_sub(start)
    }
}
