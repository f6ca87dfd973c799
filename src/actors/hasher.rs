//! The hasher/compressor pool: checks an uploaded chunk (zstd decode, SHA-256 against the
//! announced digest, length against `size`) and recomputes its CRC, on the `hasher` stage's
//! threads so that no connection thread ever hashes (design.md: hashing on the connection
//! thread caps a session at ~0.4 GB/s). A chunk that passes goes on to the writer stage from
//! here, not back through the session: the session awaits one answer for both steps.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::actors::SessionError;
use crate::actors::chunk_writer::{ChunkWriterHandle, StoreChunk, Stored};
use crate::actors::stage::{Job, Worker};
use crate::format::Digest;
use crate::format::blob::{self, BlobError};
use crate::store::Datastore;

/// Check this uploaded chunk and, if it is what was announced, have it stored: answers how it
/// was stored (the writer stage answers for this stage).
#[derive(Debug)]
pub struct VerifyChunk {
    pub store: Arc<Datastore>,
    pub digest: Digest,
    /// Announced decoded length.
    pub size: u64,
    pub blob: Bytes,
}

/// One pool thread; it hands each verified chunk straight to the writer stage.
pub struct Hasher {
    pub(crate) writer: ChunkWriterHandle,
}

impl Worker for Hasher {
    type Msg = VerifyChunk;
    type Reply = Result<Stored, SessionError>;

    fn handle(&mut self, job: Job<Self>) {
        let Job { msg, reply } = job;
        let checked = blob::verify_chunk(&msg.blob, &msg.digest, msg.size).and_then(|_| with_true_crc(msg.blob));
        match checked {
            Ok(blob) => reply.forward(&self.writer, StoreChunk { store: msg.store, digest: msg.digest, blob }),
            Err(e) => reply.send(Err(e.into())),
        }
    }
}

/// The blob with the CRC of its payload in its header. A client's CRC is not trusted
/// (formats.md 2.6), but it is normally right: then the buffer is passed on untouched, which
/// matters because it may be the shared HTTP/2 frame it arrived in.
fn with_true_crc(raw: Bytes) -> Result<Bytes, BlobError> {
    match blob::check_crc(&raw) {
        Err(BlobError::WrongCrc) => {}
        checked => return checked.map(|_| raw),
    }
    let mut raw = raw.try_into_mut().unwrap_or_else(|shared| BytesMut::from(&shared[..]));
    blob::set_crc(&mut raw)?;
    Ok(raw.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_right_crc_passes_the_buffer_on_and_a_wrong_one_is_replaced() {
        let raw = Bytes::from(blob::encode(&[7u8; 1000], false).unwrap());
        let passed = with_true_crc(raw.clone()).unwrap();
        assert_eq!(passed.as_ptr(), raw.as_ptr(), "a right CRC must not cost a copy");
        let mut bad = raw.to_vec();
        bad[10] ^= 0xff;
        // Shared (as a frame of h2's read buffer can be): the other handle keeps its bytes.
        let bad = Bytes::from(bad);
        let other = bad.clone();
        assert_eq!(with_true_crc(bad).unwrap(), raw);
        assert_ne!(other, raw);
        // Unique: fixed in place.
        let mut bad = raw.to_vec();
        bad[8] ^= 1;
        let bad = Bytes::from(bad);
        let ptr = bad.as_ptr();
        let fixed = with_true_crc(bad).unwrap();
        assert_eq!((fixed.as_ptr(), &fixed[..]), (ptr, &raw[..]));
    }
}
