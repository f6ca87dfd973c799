//! The snapshot manifest `index.json.blob` (formats.md 4.1): parse, edit `unprotected`, write.
//!
//! PBS reads the manifest into a fixed struct and writes it back through an untyped JSON value,
//! so its output has sorted keys and 2-space indentation, unknown top-level keys vanish and
//! unknown `unprotected` keys survive. We do the same so a rewrite is byte-identical to PBS's.
//! The signature (HMAC over the canonical form) needs a key and lives in `format::crypto`;
//! this file provides the canonical bytes.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::format::blob;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CryptMode {
    #[default]
    None,
    Encrypt,
    SignOnly,
}

impl CryptMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CryptMode::None => "none",
            CryptMode::Encrypt => "encrypt",
            CryptMode::SignOnly => "sign-only",
        }
    }
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

/// The wire shape, used only to parse; writing goes through `to_value` for PBS's key order.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawManifest {
    backup_type: String,
    backup_id: String,
    backup_time: i64,
    files: Vec<RawFile>,
    #[serde(default)]
    unprotected: Map<String, Value>,
    #[serde(default)]
    signature: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawFile {
    filename: String,
    #[serde(default)]
    crypt_mode: CryptMode,
    size: u64,
    csum: String,
}

impl Manifest {
    pub fn from_json(bytes: &[u8]) -> Result<Self, ManifestError> {
        let raw: RawManifest = serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
        if !matches!(raw.backup_type.as_str(), "vm" | "ct" | "host") {
            return Err(ManifestError::Json(format!("unknown backup type '{}'", raw.backup_type)));
        }
        let files = raw
            .files
            .into_iter()
            .map(|f| {
                // The reference holds the checksum as 32 bytes, so any hex case parses and the
                // rewrite is lowercase.
                let mut csum = [0u8; 32];
                hex::decode_to_slice(&f.csum, &mut csum)
                    .map_err(|_| ManifestError::Json(format!("invalid csum '{}' of '{}'", f.csum, f.filename)))?;
                Ok(FileEntry { filename: f.filename, crypt_mode: f.crypt_mode, size: f.size, csum: hex::encode(csum) })
            })
            .collect::<Result<_, ManifestError>>()?;
        Ok(Manifest {
            backup_type: raw.backup_type,
            backup_id: raw.backup_id,
            backup_time: raw.backup_time,
            files,
            unprotected: raw.unprotected,
            signature: raw.signature,
        })
    }

    /// The whole manifest as an untyped value with sorted keys.
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("backup-id".into(), self.backup_id.clone().into());
        m.insert("backup-time".into(), self.backup_time.into());
        m.insert("backup-type".into(), self.backup_type.clone().into());
        let files = self
            .files
            .iter()
            .map(|f| {
                let mut e = Map::new();
                e.insert("crypt-mode".into(), f.crypt_mode.as_str().into());
                e.insert("csum".into(), f.csum.clone().into());
                e.insert("filename".into(), f.filename.clone().into());
                e.insert("size".into(), f.size.into());
                Value::Object(e)
            })
            .collect();
        m.insert("files".into(), Value::Array(files));
        m.insert("signature".into(), self.signature.clone().map_or(Value::Null, Value::String));
        m.insert("unprotected".into(), Value::Object(self.unprotected.clone()));
        sort_keys(Value::Object(m))
    }

    /// Pretty JSON as PBS writes it.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(&self.to_value()).expect("a JSON value always serializes")
    }

    /// The bytes the signature covers (formats.md 4.2): everything but `unprotected` and
    /// `signature`, keys sorted, no whitespace; a `null` anywhere is refused.
    pub fn signed_json(&self) -> Result<Vec<u8>, ManifestError> {
        let mut v = self.to_value();
        let m = v.as_object_mut().expect("manifest is an object");
        m.remove("unprotected");
        m.remove("signature");
        canonical_json(&v)
    }

    /// Decodes an unencrypted blob and parses it.
    pub fn from_blob(raw: &[u8]) -> Result<Self, ManifestError> {
        Self::from_json(&blob::decode(raw)?)
    }

    /// Encodes as a compressed blob (the server's rewrite at finish).
    pub fn to_blob(&self) -> Vec<u8> {
        blob::encode(&self.to_json(), true).expect("a manifest is far below the blob size limit")
    }

    /// The entry of archive `filename`, if listed.
    pub fn file(&self, filename: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.filename == filename)
    }
}

/// Compact JSON with sorted keys, refusing `null` (formats.md 4.2).
pub fn canonical_json(v: &Value) -> Result<Vec<u8>, ManifestError> {
    fn has_null(v: &Value) -> bool {
        match v {
            Value::Null => true,
            Value::Array(a) => a.iter().any(has_null),
            Value::Object(o) => o.values().any(has_null),
            _ => false,
        }
    }
    if has_null(v) {
        return Err(ManifestError::Json("canonical JSON cannot hold null".into()));
    }
    Ok(serde_json::to_vec(&sort_keys(v.clone())).expect("a JSON value always serializes"))
}

/// Rebuilds every object with its keys in byte order, whether or not serde_json's
/// `preserve_order` feature is switched on by some other crate in the build.
fn sort_keys(v: Value) -> Value {
    match v {
        Value::Object(o) => {
            let mut entries: Vec<(String, Value)> = o.into_iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sort_keys(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sort_keys).collect()),
        other => other,
    }
}

#[cfg(test)]
#[path = "manifest_tests.rs"]
mod tests;
