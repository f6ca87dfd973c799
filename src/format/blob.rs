//! DataBlob: the container of every chunk file and `*.blob` file (formats.md 2).
//!
//! Owns the byte layout (magic, CRC, optional IV and tag, payload), PBS's encoding rule
//! (compress only if strictly smaller) and `verify_chunk`, the hot path of ingest and verify.
//! Encryption needs a key and lives in `format::crypto`; this file only knows the header.

use std::cell::RefCell;
use std::io::Read;

use sha2::{Digest as _, Sha256};

use crate::format::Digest;

/// Largest blob `encode` accepts (client-side limit of PBS). `decode` refuses to inflate past
/// it too, so a small zstd bomb cannot make us allocate without bound.
pub const MAX_BLOB_SIZE: usize = 128 * 1024 * 1024;

/// Size of the header of a plain blob: magic and CRC.
pub const PLAIN_HEADER_LEN: usize = 12;
/// Size of the header of an encrypted blob: magic, CRC, IV and GCM tag.
pub const ENCRYPTED_HEADER_LEN: usize = 44;

/// Largest chunk `verify_chunk` decodes into its reusable per-thread buffer; bigger announced
/// sizes (never valid for chunks, which are at most 16 MiB) take a buffer-less streaming path.
const VERIFY_BUFFER_MAX: usize = 16 * 1024 * 1024;

const MAGIC_UNCOMPRESSED: [u8; 8] = [66, 171, 56, 7, 190, 131, 112, 161];
const MAGIC_COMPRESSED: [u8; 8] = [49, 185, 88, 66, 111, 182, 163, 127];
const MAGIC_ENCRYPTED: [u8; 8] = [123, 103, 133, 190, 34, 45, 76, 240];
const MAGIC_ENCRYPTED_COMPRESSED: [u8; 8] = [230, 89, 27, 191, 11, 191, 216, 11];

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
        match self {
            BlobKind::Uncompressed => MAGIC_UNCOMPRESSED,
            BlobKind::Compressed => MAGIC_COMPRESSED,
            BlobKind::Encrypted => MAGIC_ENCRYPTED,
            BlobKind::EncryptedCompressed => MAGIC_ENCRYPTED_COMPRESSED,
        }
    }
    /// 12 for plain blobs, 44 for encrypted ones.
    pub fn header_len(self) -> usize {
        if self.is_encrypted() { ENCRYPTED_HEADER_LEN } else { PLAIN_HEADER_LEN }
    }
    pub fn is_encrypted(self) -> bool {
        matches!(self, BlobKind::Encrypted | BlobKind::EncryptedCompressed)
    }
    pub fn is_compressed(self) -> bool {
        matches!(self, BlobKind::Compressed | BlobKind::EncryptedCompressed)
    }
    fn from_magic(magic: &[u8]) -> Option<Self> {
        [BlobKind::Uncompressed, BlobKind::Compressed, BlobKind::Encrypted, BlobKind::EncryptedCompressed]
            .into_iter()
            .find(|k| k.magic() == magic)
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
    if raw.len() < PLAIN_HEADER_LEN {
        return Err(BlobError::TooSmall);
    }
    let kind = BlobKind::from_magic(&raw[..8]).ok_or(BlobError::WrongMagic)?;
    if raw.len() < kind.header_len() {
        return Err(BlobError::EncryptedTooSmall);
    }
    Ok(kind)
}

/// The stored payload: zstd bytes, raw data or ciphertext.
pub fn payload(raw: &[u8]) -> Result<(BlobKind, &[u8]), BlobError> {
    let kind = kind_of(raw)?;
    Ok((kind, &raw[kind.header_len()..]))
}

/// The CRC as stored in the header (not checked).
pub fn stored_crc(raw: &[u8]) -> Result<u32, BlobError> {
    kind_of(raw)?;
    Ok(u32::from_le_bytes(raw[8..12].try_into().expect("4 bytes")))
}

/// CRC32 of the payload (everything after the header).
pub fn compute_crc(raw: &[u8]) -> Result<u32, BlobError> {
    let (_, payload) = payload(raw)?;
    Ok(crc32fast::hash(payload))
}

/// Checks magic, length and the stored CRC.
pub fn check_crc(raw: &[u8]) -> Result<BlobKind, BlobError> {
    let (kind, payload) = payload(raw)?;
    if crc32fast::hash(payload) != stored_crc(raw)? {
        return Err(BlobError::WrongCrc);
    }
    Ok(kind)
}

/// Recomputes and writes the CRC field in place (the server ignores the client's CRC on chunk
/// upload, formats.md 2.6).
pub fn set_crc(raw: &mut [u8]) -> Result<BlobKind, BlobError> {
    let (kind, payload) = payload(raw)?;
    let crc = crc32fast::hash(payload);
    raw[8..12].copy_from_slice(&crc.to_le_bytes());
    Ok(kind)
}

/// Builds a blob from its parts: `extra` is the IV and tag of an encrypted blob, else empty.
pub fn assemble(kind: BlobKind, extra: &[u8], payload: &[u8]) -> Vec<u8> {
    debug_assert_eq!(PLAIN_HEADER_LEN + extra.len(), kind.header_len());
    let mut out = Vec::with_capacity(kind.header_len() + payload.len());
    out.extend_from_slice(&kind.magic());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(extra);
    out.extend_from_slice(payload);
    out
}

/// zstd level 1 with the streaming encoder, as PBS's plain path does (no content size, no
/// checksum in the frame), but only if the result is strictly shorter than `data`.
pub fn compress_if_smaller(data: &[u8]) -> Result<Option<Vec<u8>>, BlobError> {
    let out = zstd_stream_encode(data)?;
    Ok((out.len() < data.len()).then_some(out))
}

/// One zstd level-1 frame as the streaming encoder writes it.
pub fn zstd_stream_encode(data: &[u8]) -> Result<Vec<u8>, BlobError> {
    use std::io::Write;
    let zerr = |e: std::io::Error| BlobError::Zstd(e.to_string());
    let mut enc = zstd::stream::write::Encoder::new(Vec::with_capacity(data.len() / 2), 1).map_err(zerr)?;
    enc.write_all(data).map_err(zerr)?;
    enc.finish().map_err(zerr)
}

/// Encodes `data` as PBS does: zstd level 1 if that is strictly smaller, else uncompressed.
pub fn encode(data: &[u8], compress: bool) -> Result<Vec<u8>, BlobError> {
    if data.len() > MAX_BLOB_SIZE {
        return Err(BlobError::TooLarge);
    }
    if compress && let Some(z) = compress_if_smaller(data)? {
        return Ok(assemble(BlobKind::Compressed, &[], &z));
    }
    Ok(assemble(BlobKind::Uncompressed, &[], data))
}

/// Inflates a zstd payload (any number of concatenated frames), refusing to grow past
/// `MAX_BLOB_SIZE`.
pub fn zstd_decode(payload: &[u8]) -> Result<Vec<u8>, BlobError> {
    let dec = zstd::stream::read::Decoder::with_buffer(payload).map_err(|e| BlobError::Zstd(e.to_string()))?;
    let mut out = Vec::new();
    dec.take(MAX_BLOB_SIZE as u64 + 1).read_to_end(&mut out).map_err(|e| BlobError::Zstd(e.to_string()))?;
    if out.len() > MAX_BLOB_SIZE {
        return Err(BlobError::TooLarge);
    }
    Ok(out)
}

/// Checks the CRC and returns the decoded data of an unencrypted blob.
pub fn decode(raw: &[u8]) -> Result<Vec<u8>, BlobError> {
    let kind = check_crc(raw)?;
    let payload = &raw[kind.header_len()..];
    match kind {
        BlobKind::Uncompressed => Ok(payload.to_vec()),
        BlobKind::Compressed => zstd_decode(payload),
        BlobKind::Encrypted | BlobKind::EncryptedCompressed => Err(BlobError::Encrypted),
    }
}

/// Per-thread decoder state of `verify_chunk`: reused so that the hot path allocates neither
/// a zstd context nor an output buffer per chunk.
struct VerifyScratch {
    dctx: zstd::zstd_safe::DCtx<'static>,
    out: Vec<u8>,
}

thread_local! {
    static SCRATCH: RefCell<VerifyScratch> = RefCell::new(VerifyScratch {
        dctx: zstd::zstd_safe::DCtx::create(),
        out: Vec::new(),
    });
}

/// Verifies an uploaded or stored chunk without trusting its CRC: for a plain blob, decode it,
/// and check SHA-256 == `digest` and decoded length == `size`; for an encrypted blob only the
/// structure. Returns the kind. This is the hot path of ingest and of verify.
pub fn verify_chunk(raw: &[u8], digest: &Digest, size: u64) -> Result<BlobKind, BlobError> {
    let (kind, payload) = payload(raw)?;
    let (len, hash) = match kind {
        BlobKind::Encrypted | BlobKind::EncryptedCompressed => return Ok(kind),
        BlobKind::Uncompressed => (payload.len() as u64, Sha256::digest(payload).into()),
        BlobKind::Compressed => decode_and_hash(payload, size)?,
    };
    if len != size {
        return Err(BlobError::WrongLength { expected: size, actual: len });
    }
    if hash != digest.0 {
        return Err(BlobError::WrongDigest);
    }
    Ok(kind)
}

/// One bulk decompression into the per-thread buffer sized for the announced length, then one
/// hash: the same work as the bare library calls. A payload that inflates past the announced
/// length (or an absurd announced length) falls back to streaming, which finds the true length
/// for the error message without a buffer of that size.
fn decode_and_hash(payload: &[u8], size: u64) -> Result<(u64, [u8; 32]), BlobError> {
    if size > VERIFY_BUFFER_MAX as u64 {
        return stream_decode_and_hash(payload);
    }
    let bulk = SCRATCH.with_borrow_mut(|s| {
        s.out.clear();
        // One spare byte: a payload inflating to exactly `size` fits, a longer one fails.
        s.out.reserve(size as usize + 1);
        let n = s.dctx.decompress(&mut s.out, payload).ok()?;
        Some((n as u64, Sha256::digest(&s.out[..n]).into()))
    });
    // Any failure (too long, corrupt) is rare: the streaming pass names the true length or the
    // zstd error.
    match bulk {
        Some(r) => Ok(r),
        None => stream_decode_and_hash(payload),
    }
}

/// Decodes in 128 KiB pieces, hashing as it goes; memory stays bounded whatever the payload,
/// and a bomb stops at `MAX_BLOB_SIZE`.
fn stream_decode_and_hash(payload: &[u8]) -> Result<(u64, [u8; 32]), BlobError> {
    let dec = zstd::stream::read::Decoder::with_buffer(payload).map_err(|e| BlobError::Zstd(e.to_string()))?;
    let mut dec = dec.take(MAX_BLOB_SIZE as u64 + 1);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 128 * 1024];
    let mut len = 0u64;
    loop {
        let n = dec.read(&mut buf).map_err(|e| BlobError::Zstd(e.to_string()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    if len > MAX_BLOB_SIZE as u64 {
        return Err(BlobError::TooLarge);
    }
    Ok((len, hasher.finalize().into()))
}

#[cfg(test)]
#[path = "blob_tests.rs"]
mod tests;
