//! Client-side key operations (formats.md 1, 2.3-2.5, 4.2): what a holder of the encryption key
//! can do and the server never can. Derived identifiers (`id_key`, keyed digest, fingerprint),
//! AES-256-GCM blobs with PBS's 16-byte IV, key files, and the manifest HMAC.
//!
//! The server stores encrypted chunks without reading them; this module exists for our own
//! client (encrypted backups, restores) and for checking PBS's encrypted golden data.

use aes_gcm::aead::consts::U16;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::aes::Aes256;
use aes_gcm::{AesGcm, Nonce, Tag};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use crate::format::Digest;
use crate::format::blob::{self, BlobError, BlobKind, PLAIN_HEADER_LEN};
use crate::format::fingerprint::colon_hex;
use crate::format::manifest::{Manifest, ManifestError};

/// AES-256-GCM with the 16-byte IV PBS uses (GCM derives J0 through GHASH for it).
type Aes256Gcm16 = AesGcm<Aes256, U16>;

/// `SHA256(b"Proxmox Backup Encryption Key Fingerprint")`.
const FINGERPRINT_INPUT: [u8; 32] = [
    110, 208, 239, 119, 71, 31, 255, 77, 85, 199, 168, 254, 74, 157, 182, 33, 97, 64, 127, 19, 76, 114, 93, 223, 48,
    153, 45, 37, 236, 69, 237, 38,
];

#[derive(Debug, thiserror::Error)]
pub enum CryptError {
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error("blob is not encrypted")]
    NotEncrypted,
    #[error("decryption failed - wrong key or corrupt data")]
    Decrypt,
    #[error("detected chunk with wrong digest.")]
    WrongDigest,
    #[error("unable to parse key file - {0}")]
    KeyFile(String),
    #[error("passphrase is too short (at least 5 characters)")]
    PassphraseTooShort,
    #[error("passphrase required to decrypt key")]
    PassphraseRequired,
    #[error("wrong key fingerprint: expected {expected}, got {actual}")]
    WrongFingerprint { expected: String, actual: String },
    #[error("manifest signature mismatch")]
    WrongSignature,
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("no random numbers: {0}")]
    Random(String),
}

/// An encryption key and what PBS derives from it.
#[derive(Clone)]
pub struct CryptConfig {
    enc_key: [u8; 32],
    id_key: [u8; 32],
}

impl std::fmt::Debug for CryptConfig {
    // Never print key material, only the public fingerprint.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CryptConfig({})", self.fingerprint_string())
    }
}

impl CryptConfig {
    pub fn new(enc_key: [u8; 32]) -> Self {
        let mut id_key = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(&enc_key, b"_id_key", 10, &mut id_key);
        CryptConfig { enc_key, id_key }
    }

    pub fn id_key(&self) -> &[u8; 32] {
        &self.id_key
    }

    /// Content address of an encrypted chunk: `SHA256(data || id_key)`.
    pub fn keyed_digest(&self, data: &[u8]) -> Digest {
        let mut h = Sha256::new();
        h.update(data);
        h.update(self.id_key);
        Digest(h.finalize().into())
    }

    pub fn fingerprint(&self) -> [u8; 32] {
        self.keyed_digest(&FINGERPRINT_INPUT).0
    }

    /// All 32 bytes as colon-separated hex, as manifests and key files hold it.
    pub fn fingerprint_string(&self) -> String {
        colon_hex(&self.fingerprint())
    }

    /// The short "key ID" shown to users: the first 8 bytes.
    pub fn short_key_id(&self) -> String {
        colon_hex(&self.fingerprint()[..8])
    }

    /// `HMAC-SHA256(id_key, data)`.
    pub fn hmac(&self, data: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.id_key).expect("HMAC takes any key length");
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// An encrypted blob with a random IV; compressed first if that is strictly smaller.
    pub fn encrypt_blob(&self, data: &[u8], compress: bool) -> Result<Vec<u8>, CryptError> {
        let mut iv = [0u8; 16];
        getrandom::fill(&mut iv).map_err(|e| CryptError::Random(e.to_string()))?;
        self.encrypt_blob_with_iv(data, compress, iv)
    }

    /// As `encrypt_blob` with a given IV; only tests and test vectors should choose the IV.
    pub fn encrypt_blob_with_iv(&self, data: &[u8], compress: bool, iv: [u8; 16]) -> Result<Vec<u8>, CryptError> {
        if data.len() > blob::MAX_BLOB_SIZE {
            return Err(BlobError::TooLarge.into());
        }
        // PBS's encrypted path compresses with the one-shot encoder (content size in the frame).
        let compressed = if compress {
            let z = zstd::bulk::compress(data, 1).map_err(|e| BlobError::Zstd(e.to_string()))?;
            (z.len() < data.len()).then_some(z)
        } else {
            None
        };
        let (kind, mut buf) = match compressed {
            Some(z) => (BlobKind::EncryptedCompressed, z),
            None => (BlobKind::Encrypted, data.to_vec()),
        };
        let tag = self
            .cipher()
            .encrypt_in_place_detached(Nonce::<U16>::from_slice(&iv), b"", &mut buf)
            .map_err(|_| CryptError::Decrypt)?;
        let mut extra = [0u8; 32];
        extra[..16].copy_from_slice(&iv);
        extra[16..].copy_from_slice(&tag);
        Ok(blob::assemble(kind, &extra, &buf))
    }

    /// Checks the CRC, decrypts and inflates an encrypted blob; plain blobs are refused so a
    /// caller that expects encryption cannot be fed unencrypted data.
    pub fn decrypt_blob(&self, raw: &[u8]) -> Result<Vec<u8>, CryptError> {
        let kind = blob::check_crc(raw)?;
        if !kind.is_encrypted() {
            return Err(CryptError::NotEncrypted);
        }
        let iv = &raw[PLAIN_HEADER_LEN..PLAIN_HEADER_LEN + 16];
        let tag = &raw[PLAIN_HEADER_LEN + 16..kind.header_len()];
        let mut buf = raw[kind.header_len()..].to_vec();
        self.cipher()
            .decrypt_in_place_detached(Nonce::<U16>::from_slice(iv), b"", &mut buf, Tag::from_slice(tag))
            .map_err(|_| CryptError::Decrypt)?;
        if kind.is_compressed() { Ok(blob::zstd_decode(&buf)?) } else { Ok(buf) }
    }

    /// Decrypts an encrypted chunk and checks its keyed digest; returns the plaintext.
    pub fn decode_chunk(&self, raw: &[u8], digest: &Digest) -> Result<Vec<u8>, CryptError> {
        let data = self.decrypt_blob(raw)?;
        if self.keyed_digest(&data) != *digest {
            return Err(CryptError::WrongDigest);
        }
        Ok(data)
    }

    /// Hex HMAC over the manifest's canonical JSON (formats.md 4.2).
    pub fn manifest_signature(&self, manifest: &Manifest) -> Result<String, CryptError> {
        Ok(hex::encode(self.hmac(&manifest.signed_json()?)))
    }

    /// Signs the manifest and records the key fingerprint, as the client does before upload.
    pub fn sign_manifest(&self, manifest: &mut Manifest) -> Result<(), CryptError> {
        manifest.signature = Some(self.manifest_signature(manifest)?);
        manifest.unprotected.insert("key-fingerprint".into(), self.fingerprint_string().into());
        Ok(())
    }

    /// The client's check of a downloaded manifest: a recorded fingerprint must be this key's,
    /// a present signature must match; an unsigned manifest is accepted.
    pub fn check_manifest(&self, manifest: &Manifest) -> Result<(), CryptError> {
        if let Some(fp) = manifest.unprotected.get("key-fingerprint").and_then(|v| v.as_str())
            && parse_fingerprint(fp)? != self.fingerprint()
        {
            return Err(CryptError::WrongFingerprint { expected: fp.to_string(), actual: self.fingerprint_string() });
        }
        if let Some(sig) = &manifest.signature {
            let want = self.manifest_signature(manifest)?;
            if !bool::from(sig.as_bytes().ct_eq(want.as_bytes())) {
                return Err(CryptError::WrongSignature);
            }
        }
        Ok(())
    }

    fn cipher(&self) -> Aes256Gcm16 {
        Aes256Gcm16::new_from_slice(&self.enc_key).expect("32-byte key")
    }
}

/// Parses the full colon-separated fingerprint form.
pub fn parse_fingerprint(s: &str) -> Result<[u8; 32], CryptError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s.replace(':', ""), &mut out)
        .map_err(|_| CryptError::KeyFile(format!("invalid fingerprint '{s}'")))?;
    Ok(out)
}

#[path = "keyfile.rs"]
mod keyfile;
pub use keyfile::{Kdf, KeyFile};

#[cfg(test)]
#[path = "crypto_tests.rs"]
mod tests;
