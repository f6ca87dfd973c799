//! DataBlob: the container of every chunk file and `*.blob` file (formats.md 2).
//!
//! INTERFACE STUB: signatures are the contract other modules code against; the format helper
//! fills in the bodies (and may add functions, but changes a signature only with care).

use crate::format::Digest;

/// Largest blob `encode` accepts (client-side limit of PBS).
pub const MAX_BLOB_SIZE: usize = 128 * 1024 * 1024;

/// The four blob kinds, by magic number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlobKind {
    Uncompressed,
    Compressed,
    Encrypted,
    EncryptedCompressed,
}

impl BlobKind {
    pub fn magic(self) -> [u8; 8] {
        todo!()
    }
    /// 12 for plain blobs, 44 for encrypted ones.
    pub fn header_len(self) -> usize {
        todo!()
    }
    pub fn is_encrypted(self) -> bool {
        matches!(self, BlobKind::Encrypted | BlobKind::EncryptedCompressed)
    }
    pub fn is_compressed(self) -> bool {
        matches!(self, BlobKind::Compressed | BlobKind::EncryptedCompressed)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob too small")]
    TooSmall,
    #[error("encrypted blob too small")]
    EncryptedTooSmall,
    #[error("unable to parse raw blob - wrong magic")]
    WrongMagic,
    #[error("Data blob has wrong CRC checksum.")]
    WrongCrc,
    #[error("unable to decode encrypted blob")]
    Encrypted,
    #[error("zstd decompression failed: {0}")]
    Zstd(String),
    #[error("detected chunk with wrong digest.")]
    WrongDigest,
    #[error("detected chunk with wrong length ({expected} != {actual})")]
    WrongLength { expected: u64, actual: u64 },
    #[error("blob too large")]
    TooLarge,
}

/// Checks magic and minimum length; returns the kind.
pub fn kind_of(raw: &[u8]) -> Result<BlobKind, BlobError> {
    let _ = raw;
    todo!()
}

/// CRC32 of the payload (everything after the header).
pub fn compute_crc(raw: &[u8]) -> Result<u32, BlobError> {
    let _ = raw;
    todo!()
}

/// Checks magic, length and the stored CRC.
pub fn check_crc(raw: &[u8]) -> Result<BlobKind, BlobError> {
    let _ = raw;
    todo!()
}

/// Recomputes and writes the CRC field in place (the server ignores the client's CRC on chunk
/// upload, formats.md 2.6).
pub fn set_crc(raw: &mut [u8]) -> Result<BlobKind, BlobError> {
    let _ = raw;
    todo!()
}

/// Encodes `data` as PBS does: zstd level 1 if that is strictly smaller, else uncompressed.
pub fn encode(data: &[u8], compress: bool) -> Result<Vec<u8>, BlobError> {
    let _ = (data, compress);
    todo!()
}

/// Checks the CRC and returns the decoded data of an unencrypted blob.
pub fn decode(raw: &[u8]) -> Result<Vec<u8>, BlobError> {
    let _ = raw;
    todo!()
}

/// Verifies an uploaded or stored chunk without trusting its CRC: for a plain blob, decode it,
/// and check SHA-256 == `digest` and decoded length == `size`; for an encrypted blob only the
/// structure. Returns the kind. This is the hot path of ingest and of verify.
pub fn verify_chunk(raw: &[u8], digest: &Digest, size: u64) -> Result<BlobKind, BlobError> {
    let _ = (raw, digest, size);
    todo!()
}
