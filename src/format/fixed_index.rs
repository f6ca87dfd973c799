//! Fixed index (`*.fidx`): an image cut into equal chunks (formats.md 3.1).
//!
//! INTERFACE STUB: the format helper fills in the bodies.

use crate::format::Digest;

pub const FIXED_INDEX_MAGIC: [u8; 8] = [47, 127, 65, 237, 145, 253, 15, 205];
/// Chunk size the server uses for every fixed index, whatever the client says.
pub const FIXED_CHUNK_SIZE: u64 = 4 * 1024 * 1024;
pub const INDEX_HEADER_SIZE: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("got unknown magic number")]
    WrongMagic,
    #[error("unexpected file size")]
    WrongFileSize,
    #[error("index too small")]
    TooSmall,
    #[error("invalid index: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedIndex {
    pub uuid: [u8; 16],
    pub ctime: i64,
    /// Image size in bytes.
    pub size: u64,
    pub chunk_size: u64,
    pub digests: Vec<Digest>,
}

impl FixedIndex {
    /// `ceil(size / chunk_size)`.
    pub fn slot_count(size: u64, chunk_size: u64) -> usize {
        size.div_ceil(chunk_size) as usize
    }
    /// Parses a whole `.fidx` file with the strict length rules.
    pub fn parse(bytes: &[u8]) -> Result<Self, IndexError> {
        let _ = bytes;
        todo!()
    }
    /// The whole file, with `index_csum` filled in.
    pub fn encode(&self) -> Vec<u8> {
        todo!()
    }
    /// `index_csum`: SHA-256 over all digests.
    pub fn csum(&self) -> [u8; 32] {
        todo!()
    }
    /// Length of chunk `i` (the last may be short).
    pub fn chunk_len(&self, i: usize) -> u64 {
        let _ = i;
        todo!()
    }
}
