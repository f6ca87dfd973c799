//! Dynamic index (`*.didx`): variable chunks addressed by end offsets (formats.md 3.2).
//!
//! INTERFACE STUB: the format helper fills in the bodies.

use crate::format::Digest;
pub use crate::format::fixed_index::{INDEX_HEADER_SIZE, IndexError};

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
        let _ = bytes;
        todo!()
    }
    pub fn encode(&self) -> Vec<u8> {
        todo!()
    }
    /// `index_csum`: SHA-256 over `end_le || digest` of every entry.
    pub fn csum(&self) -> [u8; 32] {
        todo!()
    }
    /// Logical size: the last end offset (0 if empty).
    pub fn size(&self) -> u64 {
        self.entries.last().map_or(0, |e| e.end)
    }
    /// Length of chunk `i`.
    pub fn chunk_len(&self, i: usize) -> u64 {
        let _ = i;
        todo!()
    }
}
