//! Fixed index (`*.fidx`): an image cut into equal chunks (formats.md 3.1).
//!
//! Also owns the 4096-byte header both index kinds share (magic, uuid, ctime, index_csum), so
//! the dynamic index reuses `read_header`/`write_header` instead of repeating the offsets.

use sha2::{Digest as _, Sha256};

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

/// Offset of `index_csum` in both index headers.
const CSUM_OFFSET: usize = 32;

/// The fields every index header starts with.
pub(crate) struct Header {
    pub uuid: [u8; 16],
    pub ctime: i64,
}

/// Checks the minimum length and the magic; returns the common fields.
pub(crate) fn read_header(bytes: &[u8], magic: [u8; 8]) -> Result<Header, IndexError> {
    if bytes.len() < INDEX_HEADER_SIZE {
        return Err(IndexError::TooSmall);
    }
    if bytes[..8] != magic {
        return Err(IndexError::WrongMagic);
    }
    Ok(Header {
        uuid: bytes[8..24].try_into().expect("16 bytes"),
        ctime: i64::from_le_bytes(bytes[24..32].try_into().expect("8 bytes")),
    })
}

/// A zeroed header with the common fields, with room reserved for `body_len` more bytes.
pub(crate) fn write_header(magic: [u8; 8], header: &Header, body_len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(INDEX_HEADER_SIZE + body_len);
    out.extend_from_slice(&magic);
    out.extend_from_slice(&header.uuid);
    out.extend_from_slice(&header.ctime.to_le_bytes());
    out.resize(INDEX_HEADER_SIZE, 0);
    out
}

/// Fills `index_csum`, which is always SHA-256 of everything after the header (formats.md 3.3).
pub(crate) fn seal(mut file: Vec<u8>) -> Vec<u8> {
    let csum: [u8; 32] = Sha256::digest(&file[INDEX_HEADER_SIZE..]).into();
    file[CSUM_OFFSET..CSUM_OFFSET + 32].copy_from_slice(&csum);
    file
}

/// `index_csum` as stored in the header; readers recompute it rather than trust this.
pub fn stored_csum(bytes: &[u8]) -> Result<[u8; 32], IndexError> {
    if bytes.len() < INDEX_HEADER_SIZE {
        return Err(IndexError::TooSmall);
    }
    Ok(bytes[CSUM_OFFSET..CSUM_OFFSET + 32].try_into().expect("32 bytes"))
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

impl FixedIndex {
    /// `ceil(size / chunk_size)`.
    pub fn slot_count(size: u64, chunk_size: u64) -> usize {
        size.div_ceil(chunk_size) as usize
    }
    /// Parses a whole `.fidx` file with the strict length rules.
    pub fn parse(bytes: &[u8]) -> Result<Self, IndexError> {
        let header = read_header(bytes, FIXED_INDEX_MAGIC)?;
        let size = read_u64(bytes, 64);
        let chunk_size = read_u64(bytes, 72);
        // The reader computes offsets within a chunk with a bitmask.
        if !chunk_size.is_power_of_two() {
            return Err(IndexError::Invalid(format!("chunk size {chunk_size} is not a power of two")));
        }
        if size == 0 {
            return Err(IndexError::Invalid("image size is zero".into()));
        }
        let expected = size.div_ceil(chunk_size).checked_mul(32).and_then(|n| n.checked_add(INDEX_HEADER_SIZE as u64));
        if expected != Some(bytes.len() as u64) {
            return Err(IndexError::WrongFileSize);
        }
        let digests =
            bytes[INDEX_HEADER_SIZE..].chunks_exact(32).map(|d| Digest(d.try_into().expect("32 bytes"))).collect();
        Ok(FixedIndex { uuid: header.uuid, ctime: header.ctime, size, chunk_size, digests })
    }
    /// The whole file, with `index_csum` filled in.
    pub fn encode(&self) -> Vec<u8> {
        let header = Header { uuid: self.uuid, ctime: self.ctime };
        let mut out = write_header(FIXED_INDEX_MAGIC, &header, 32 * self.digests.len());
        out[64..72].copy_from_slice(&self.size.to_le_bytes());
        out[72..80].copy_from_slice(&self.chunk_size.to_le_bytes());
        for d in &self.digests {
            out.extend_from_slice(&d.0);
        }
        seal(out)
    }
    /// `index_csum`: SHA-256 over all digests.
    pub fn csum(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for d in &self.digests {
            h.update(d.0);
        }
        h.finalize().into()
    }
    /// Length of chunk `i` (the last may be short).
    pub fn chunk_len(&self, i: usize) -> u64 {
        let start = i as u64 * self.chunk_size;
        self.size.min(start.saturating_add(self.chunk_size)).saturating_sub(start)
    }
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
