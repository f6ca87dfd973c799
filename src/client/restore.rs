//! Restoring through a reader session, in the real client's order (protocol.md 5.4): the
//! manifest, then an archive's index, then its chunks one by one. Every download is checked
//! the way the real client checks it (CRC, chunk digest, index csum and size against the
//! manifest), so a server that serves wrong bytes fails here as it would fail there.

use bytes::Bytes;

use crate::client::{ClientError, ReaderSession};
use crate::format::Digest;
use crate::format::blob;
use crate::format::dynamic_index::DynamicIndex;
use crate::format::fixed_index::FixedIndex;
use crate::format::manifest::{CryptMode, Manifest};

impl ReaderSession {
    /// `download index.json.blob`, CRC-checked and parsed.
    pub async fn manifest(&self) -> Result<Manifest, ClientError> {
        let raw = self.download("index.json.blob").await?;
        Ok(Manifest::from_blob(&raw)?)
    }

    /// A chunk, CRC- and digest-checked, decoded.
    pub async fn chunk_data(&self, digest: &Digest, size: u64) -> Result<Vec<u8>, ClientError> {
        let raw = self.chunk(digest).await?;
        blob::check_crc(&raw)?;
        blob::verify_chunk(&raw, digest, size)?;
        Ok(blob::decode(&raw)?)
    }

    /// An unencrypted archive (`x.didx`, `x.fidx` or `x.blob`) restored to its bytes.
    pub async fn restore(&self, manifest: &Manifest, file_name: &str) -> Result<Bytes, ClientError> {
        let entry = manifest
            .file(file_name)
            .ok_or_else(|| ClientError::Protocol(format!("{file_name} is not in the manifest")))?;
        if entry.crypt_mode == CryptMode::Encrypt {
            return Err(ClientError::Protocol(format!("{file_name} is encrypted")));
        }
        let raw = self.download(file_name).await?;
        let mismatch = |what: &str| ClientError::Protocol(format!("{file_name}: {what} does not match the manifest"));
        let (chunks, size, csum): (Vec<(Digest, u64)>, u64, [u8; 32]) = if file_name.ends_with(".didx") {
            let index = DynamicIndex::parse(&raw)?;
            let chunks = (0..index.entries.len()).map(|i| (index.entries[i].digest, index.chunk_len(i))).collect();
            (chunks, index.size(), index.csum())
        } else if file_name.ends_with(".fidx") {
            let index = FixedIndex::parse(&raw)?;
            let chunks = (0..index.digests.len()).map(|i| (index.digests[i], index.chunk_len(i))).collect();
            (chunks, index.size, index.csum())
        } else {
            let sum = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&raw));
            if hex::encode(sum) != entry.csum || raw.len() as u64 != entry.size {
                return Err(mismatch("blob"));
            }
            blob::check_crc(&raw)?;
            return Ok(Bytes::from(blob::decode(&raw)?));
        };
        if hex::encode(csum) != entry.csum || size != entry.size {
            return Err(mismatch("index"));
        }
        let mut out = Vec::with_capacity(size as usize);
        for (digest, len) in chunks {
            out.extend(self.chunk_data(&digest, len).await?);
        }
        out.truncate(size as usize);
        Ok(Bytes::from(out))
    }
}
