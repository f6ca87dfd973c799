//! `ApiError`: the one place where a typed error becomes an HTTP status and message.
//!
//! Every module returns its own `thiserror` type; the HTTP layers (backup and reader sessions,
//! management API, upgrade) convert with `?` into `ApiError` and answer with its status and
//! plain-text body, as PBS does (protocol.md 1.2).

use http::StatusCode;

use crate::auth::AuthError;
use crate::format::NameError;
use crate::format::blob::BlobError;
use crate::format::fixed_index::IndexError;
use crate::format::manifest::ManifestError;
use crate::store::StoreError;

/// A request body that could not be read (HTTP/2 sessions).
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body too large")]
    TooLarge,
    #[error("unable to read request body - {0}")]
    H2(#[from] h2::Error),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// The `kind` label of `chunkyard_errors_total`: follows the status, except that a failed
    /// disk operation is `io` (a full or broken disk must stand out from clients' mistakes).
    pub kind: &'static str,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        let kind = match status {
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            s if s.is_server_error() => "internal",
            _ => "bad_request",
        };
        ApiError { status, message: message.into(), kind }
    }
    /// A disk operation failed (ENOSPC, EIO, ...): 400 with the text, as the reference answers
    /// any handler error, but counted as kind `io`.
    pub fn io(message: impl Into<String>) -> Self {
        ApiError { kind: "io", ..Self::bad_request(message) }
    }
    /// 400, the reference's default for any ordinary failure.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }
    /// The reference's text for an unknown path.
    pub fn no_such_path(path: &str) -> Self {
        Self::not_found(format!("Path '{path}' not found."))
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl From<NameError> for ApiError {
    fn from(e: NameError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

impl From<BlobError> for ApiError {
    fn from(e: BlobError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

impl From<IndexError> for ApiError {
    fn from(e: IndexError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

impl From<ManifestError> for ApiError {
    fn from(e: ManifestError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => ApiError::not_found(m),
            StoreError::Io { .. } => ApiError::io(e.to_string()),
            other => ApiError::bad_request(other.to_string()),
        }
    }
}

impl From<crate::actors::SessionError> for ApiError {
    fn from(e: crate::actors::SessionError) -> Self {
        use crate::actors::SessionError as S;
        match e {
            S::Store(e) => e.into(),
            S::PreviousBlobMissing(_) => ApiError::not_found(e.to_string()),
            S::Internal(_) => ApiError::internal(e.to_string()),
            other => ApiError::bad_request(other.to_string()),
        }
    }
}

impl From<crate::actors::reader::ReaderError> for ApiError {
    fn from(e: crate::actors::reader::ReaderError) -> Self {
        use crate::actors::reader::ReaderError as R;
        match e {
            R::Store(e) => e.into(),
            R::FileMissing(_) => ApiError::not_found(e.to_string()),
            R::ChunkNotAllowed(_) => ApiError::unauthorized(e.to_string()),
            R::Stopped(_) => ApiError::internal(e.to_string()),
            other => ApiError::bad_request(other.to_string()),
        }
    }
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Failed(_) | AuthError::LoginFailed => ApiError::unauthorized(e.to_string()),
            AuthError::Invalid(_) => ApiError::bad_request(e.to_string()),
            AuthError::MissingPrivilege { .. } => ApiError::forbidden(e.to_string()),
            other => ApiError::internal(other.to_string()),
        }
    }
}
