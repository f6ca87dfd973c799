//! Our own PBS protocol client, used by the integration tests and the load tester.
//!
//! It behaves like `proxmox-backup-client` on the wire: TLS with leaf-fingerprint pinning, no
//! ALPN, HTTP/1.1 management calls with keep-alive, the upgrade with the double-slash path and
//! no `HTTP2-Settings`, and an HTTP/2 client with the real client's window and frame sizes.
//! It depends on `format/` only, never on the server.

use std::net::SocketAddr;

/// Where and as whom to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    pub addr: SocketAddr,
    /// Expected SHA-256 fingerprint of the server's leaf certificate (`aa:bb:...`).
    pub fingerprint: String,
    /// `user@realm!token`.
    pub authid: String,
    pub secret: String,
}

pub mod admin;
pub mod archive;
pub mod chunker;
pub mod http;
pub mod restore;
pub mod session;
pub mod tls;

pub use archive::{ArchiveStats, BackupOptions, Uploader};
pub use http::HttpClient;
pub use session::{BackupParams, BackupSession, H2Conn, IndexKind, ReaderParams, ReaderSession};

/// The formats a client writes and reads (chunks as data blobs, indexes, the manifest), so a
/// user of the client (the load tester) needs nothing of the crate beyond `client`.
pub use crate::format::dynamic_index::{DynamicEntry, DynamicIndex};
pub use crate::format::fixed_index::{FIXED_CHUNK_SIZE, FixedIndex};
pub use crate::format::manifest::{CryptMode, FileEntry, Manifest};
pub use crate::format::{Digest, blob};

use ::http::StatusCode;
use bytes::Bytes;

pub const BACKUP_PROTOCOL: &str = "proxmox-backup-protocol-v1";
pub const READER_PROTOCOL: &str = "proxmox-backup-reader-protocol-v1";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A non-2xx answer: status and the server's text.
    #[error("{status}: {message}")]
    Status { status: StatusCode, message: String },
    #[error("{0}")]
    Protocol(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS error: {0}")]
    Tls(#[from] rustls::Error),
    #[error("HTTP error: {0}")]
    Hyper(#[from] hyper::Error),
    #[error("HTTP/2 error: {0}")]
    H2(#[from] h2::Error),
    #[error("invalid request: {0}")]
    Http(#[from] ::http::Error),
    #[error("invalid header: {0}")]
    HeaderName(#[from] ::http::header::InvalidHeaderName),
    #[error("invalid header: {0}")]
    HeaderValue(#[from] ::http::header::InvalidHeaderValue),
    #[error("invalid URI: {0}")]
    Uri(#[from] ::http::uri::InvalidUri),
    #[error("JSON error: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Blob(#[from] crate::format::blob::BlobError),
    #[error(transparent)]
    Index(#[from] crate::format::fixed_index::IndexError),
    #[error(transparent)]
    Manifest(#[from] crate::format::manifest::ManifestError),
}

impl ClientError {
    /// The HTTP status of a refused request.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A response read to its end.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub body: Bytes,
}

/// Form-urlencodes pairs with the keys in alphabetical order, as the real client does.
pub fn encode_query(pairs: &[(&str, String)]) -> String {
    let mut sorted: Vec<&(&str, String)> = pairs.iter().collect();
    sorted.sort_by_key(|(k, _)| *k);
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in sorted {
        ser.append_pair(k, v);
    }
    ser.finish()
}
