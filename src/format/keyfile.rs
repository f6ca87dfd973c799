//! Key files (formats.md 1.2): the JSON a client keeps its encryption key in, either raw
//! (`kdf: null`) or wrapped with AES-256-GCM under a passphrase-derived key (scrypt or PBKDF2).

use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;

use super::*;

/// Upstream refuses scrypt parameters needing more memory than this (1025 MiB).
const SCRYPT_MAX_MEMORY: u64 = 1025 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub enum Kdf {
    Scrypt { n: u64, r: u64, p: u64, salt: String },
    PBKDF2 { iter: usize, salt: String },
}

/// A parsed key file. `created`/`modified`/`hint` are informational and not kept.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct KeyFile {
    pub kdf: Option<Kdf>,
    /// Base64: the raw key, or `IV || TAG || ciphertext` when a KDF is set.
    pub data: String,
    #[serde(default)]
    pub fingerprint: Option<String>,
}

impl KeyFile {
    pub fn parse(json: &[u8]) -> Result<Self, CryptError> {
        serde_json::from_slice(json).map_err(|e| CryptError::KeyFile(e.to_string()))
    }

    /// The key, unwrapped with `passphrase` if the file has a KDF; checks the recorded
    /// fingerprint.
    pub fn open(&self, passphrase: Option<&[u8]>) -> Result<CryptConfig, CryptError> {
        let data = B64.decode(&self.data).map_err(|e| CryptError::KeyFile(format!("data - {e}")))?;
        let key: Vec<u8> = match &self.kdf {
            None => data,
            Some(kdf) => {
                let pass = passphrase.ok_or(CryptError::PassphraseRequired)?;
                if pass.len() < 5 {
                    return Err(CryptError::PassphraseTooShort);
                }
                unwrap_key(&derive(kdf, pass)?, &data)?
            }
        };
        let key: [u8; 32] =
            key.try_into().map_err(|k: Vec<u8>| CryptError::KeyFile(format!("key has {} bytes, not 32", k.len())))?;
        let config = CryptConfig::new(key);
        if let Some(fp) = &self.fingerprint
            && parse_fingerprint(fp)? != config.fingerprint()
        {
            return Err(CryptError::WrongFingerprint { expected: fp.clone(), actual: config.fingerprint_string() });
        }
        Ok(config)
    }
}

fn derive(kdf: &Kdf, pass: &[u8]) -> Result<[u8; 32], CryptError> {
    let bad = |what: &str| CryptError::KeyFile(format!("kdf - {what}"));
    let mut out = [0u8; 32];
    match kdf {
        Kdf::Scrypt { n, r, p, salt } => {
            let salt = B64.decode(salt).map_err(|_| bad("salt is not base64"))?;
            if !n.is_power_of_two() || *n < 2 || 128 * n.saturating_mul(*r) > SCRYPT_MAX_MEMORY {
                return Err(bad("scrypt parameters out of range"));
            }
            let (r, p) = (u32::try_from(*r).map_err(|_| bad("r"))?, u32::try_from(*p).map_err(|_| bad("p"))?);
            let params = scrypt::Params::new(n.trailing_zeros() as u8, r, p, 32).map_err(|e| bad(&e.to_string()))?;
            scrypt::scrypt(pass, &salt, &params, &mut out).map_err(|e| bad(&e.to_string()))?;
        }
        Kdf::PBKDF2 { iter, salt } => {
            let salt = B64.decode(salt).map_err(|_| bad("salt is not base64"))?;
            pbkdf2::pbkdf2_hmac::<Sha256>(pass, &salt, *iter as u32, &mut out);
        }
    }
    Ok(out)
}

/// `IV(16) || TAG(16) || AES-256-GCM(derived, IV, aad = "", key)`.
fn unwrap_key(derived: &[u8; 32], data: &[u8]) -> Result<Vec<u8>, CryptError> {
    if data.len() < 32 {
        return Err(CryptError::KeyFile("wrapped key too short".into()));
    }
    let mut buf = data[32..].to_vec();
    Aes256Gcm16::new_from_slice(derived)
        .expect("32-byte key")
        .decrypt_in_place_detached(Nonce::<U16>::from_slice(&data[..16]), b"", &mut buf, Tag::from_slice(&data[16..32]))
        .map_err(|_| CryptError::Decrypt)?;
    Ok(buf)
}
