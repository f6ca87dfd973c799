//! The snapshot manifest `index.json.blob` (formats.md 4.1): parse, edit `unprotected`, write.
//!
//! INTERFACE STUB: the format helper fills in the bodies.

use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CryptMode {
    None,
    Encrypt,
    SignOnly,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FileEntry {
    pub filename: String,
    pub crypt_mode: CryptMode,
    pub size: u64,
    /// 64 lowercase hex characters.
    pub csum: String,
}

/// A parsed manifest. Unknown keys inside `unprotected` are kept; unknown top-level keys are
/// dropped on rewrite, as the reference does (formats.md 4.1).
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub backup_type: String,
    pub backup_id: String,
    pub backup_time: i64,
    pub files: Vec<FileEntry>,
    pub unprotected: Map<String, Value>,
    pub signature: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("unable to parse manifest - {0}")]
    Json(String),
    #[error(transparent)]
    Blob(#[from] crate::format::blob::BlobError),
}

impl Manifest {
    pub fn from_json(bytes: &[u8]) -> Result<Self, ManifestError> {
        let _ = bytes;
        todo!()
    }
    /// Pretty JSON as PBS writes it.
    pub fn to_json(&self) -> Vec<u8> {
        todo!()
    }
    /// Decodes an unencrypted blob and parses it.
    pub fn from_blob(raw: &[u8]) -> Result<Self, ManifestError> {
        let _ = raw;
        todo!()
    }
    /// Encodes as a compressed blob (the server's rewrite at finish).
    pub fn to_blob(&self) -> Vec<u8> {
        todo!()
    }
}
