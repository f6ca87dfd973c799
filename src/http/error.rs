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

/// What kind of failure an answer reports. It alone decides the status and the `kind` label of
/// `chunkyard_errors_total`, here and nowhere else; every typed error is given one below (the
/// layers beneath by this module, the HTTP layers above through [`HttpError`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400, the reference's answer to any ordinary failure.
    BadRequest,
    /// 401: no valid credentials.
    Unauthorized,
    /// 403: authenticated, but a privilege is missing.
    Forbidden,
    /// 404.
    NotFound,
    /// 405: a known path with a method it does not take.
    MethodNotAllowed,
    /// 503: a server limit is reached; the client may try again later.
    Unavailable,
    /// 500: the server's own fault (a stage went away, a task panicked).
    Internal,
    /// A disk operation failed (ENOSPC, EIO, ...): 400 with the text, as the reference answers
    /// any handler error, but counted as `io` so a full or broken disk stands out from
    /// clients' mistakes.
    Io,
    /// A disk fault injected at the request itself (the `backup.request` failpoint): 500,
    /// counted as `io`.
    InjectedIo,
}

impl ErrorKind {
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::BadRequest | ErrorKind::Io => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal | ErrorKind::InjectedIo => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `kind` label of `chunkyard_errors_total`.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::BadRequest | ErrorKind::Unauthorized | ErrorKind::Forbidden => "bad_request",
            ErrorKind::NotFound => "not_found",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::Unavailable | ErrorKind::Internal => "internal",
            ErrorKind::Io | ErrorKind::InjectedIo => "io",
        }
    }

    /// The disk failed, not the client: operators must see these.
    pub fn is_io(self) -> bool {
        matches!(self, ErrorKind::Io | ErrorKind::InjectedIo)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: ErrorKind,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError { status: kind.status(), message: message.into(), kind }
    }
    pub fn io(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Io, message)
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthorized, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }
    /// The reference's text for an unknown path.
    pub fn no_such_path(path: &str) -> Self {
        Self::not_found(format!("Path '{path}' not found."))
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_give_status_and_metric_label() {
        let table = [
            (ErrorKind::BadRequest, 400, "bad_request"),
            (ErrorKind::Unauthorized, 401, "bad_request"),
            (ErrorKind::Forbidden, 403, "bad_request"),
            (ErrorKind::NotFound, 404, "not_found"),
            (ErrorKind::MethodNotAllowed, 405, "method_not_allowed"),
            (ErrorKind::Unavailable, 503, "internal"),
            (ErrorKind::Internal, 500, "internal"),
            (ErrorKind::Io, 400, "io"),
            (ErrorKind::InjectedIo, 500, "io"),
        ];
        for (kind, status, label) in table {
            let e = ApiError::new(kind, "x");
            assert_eq!((e.status.as_u16(), e.kind.label()), (status, label), "{kind:?}");
            assert_eq!(kind.is_io(), label == "io");
        }
    }
}
