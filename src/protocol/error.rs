//! `ApiError`: the one place where a typed error becomes an HTTP status and message.
//!
//! Every module returns its own `thiserror` type; the HTTP layers (backup and reader sessions,
//! management API, upgrade) convert with `?` into `ApiError` and answer with its status and
//! plain-text body, as PBS does (protocol.md 1.2).

use http::StatusCode;

use crate::format::NameError;
use crate::format::blob::BlobError;
use crate::format::fixed_index::IndexError;
use crate::format::manifest::ManifestError;
use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
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
            StoreError::Io { .. } => ApiError::bad_request(e.to_string()),
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

impl From<crate::protocol::h2::BodyError> for ApiError {
    fn from(e: crate::protocol::h2::BodyError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

impl From<crate::server::auth::AuthError> for ApiError {
    fn from(e: crate::server::auth::AuthError) -> Self {
        use crate::server::auth::AuthError;
        match e {
            AuthError::Failed(_) | AuthError::LoginFailed => ApiError::unauthorized(e.to_string()),
            AuthError::Invalid(_) => ApiError::bad_request(e.to_string()),
            AuthError::MissingPrivilege { .. } => ApiError::forbidden(e.to_string()),
            other => ApiError::internal(other.to_string()),
        }
    }
}
