//! `ApiError`: the one place where a typed error becomes an HTTP status, text and metrics kind.
//!
//! Every module returns its own `thiserror` type; the HTTP layers (backup and reader sessions,
//! management API, upgrade) convert with `?` into `ApiError` and answer with its status and
//! plain-text body, as PBS does (protocol.md 1.2). The text is always the typed error's own;
//! the status and the metrics kind follow from its [`ErrorKind`]. This file gives every error
//! of the layers beneath (format, store, auth, actors) and of the HTTP vocabulary its kind; the
//! layers above (sessions, server) cannot be named here without a cycle, so their error types
//! name their kinds themselves through [`HttpError`], and the status and label still come from
//! [`ErrorKind`] alone.

use http::StatusCode;

use crate::actors::SessionError;
use crate::actors::reader::ReaderError;
use crate::auth::AuthError;
use crate::format::NameError;
use crate::format::blob::BlobError;
use crate::format::fixed_index::IndexError;
use crate::format::manifest::ManifestError;
use crate::store::StoreError;

/// A request body that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Past the limit `protocol::h2::read_body` was given (the routers answer the reference's
    /// capitalised [`RequestError::BodyTooLarge`] instead).
    #[error("request body too large")]
    TooLarge,
    #[error("unable to read request body - {0}")]
    H2(#[from] h2::Error),
    /// An HTTP/1.1 body (hyper's error).
    #[error("unable to read request body - {0}")]
    Http1(Box<dyn std::error::Error + Send + Sync>),
}

/// A request refused before an endpoint looks at it (routing, bodies), with the reference's
/// texts; the backup and reader sessions and the management API share it.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("Path '{0}' not found.")]
    NoSuchPath(String),
    /// A known path asked with a method it does not take.
    #[error("Unsupported method '{0}'")]
    Method(String),
    #[error("Request body too large")]
    BodyTooLarge,
    #[error("unsupported content type")]
    ContentType,
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

/// Built only inside `http/`: elsewhere an `ApiError` comes from a typed error by `?`.
impl ApiError {
    pub(in crate::http) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError { status: kind.status(), message: message.into(), kind }
    }
    /// A refused parameter, body or path (the vocabulary's own texts).
    pub(in crate::http) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }
    /// The reference's answer for an unknown path.
    pub fn no_such_path(path: &str) -> Self {
        RequestError::NoSuchPath(path.to_string()).into()
    }
}

/// An error that knows its [`ErrorKind`]; `?` turns it into an [`ApiError`] with that kind's
/// status and its own text. Implemented here for the layers beneath and the HTTP vocabulary,
/// and by the sessions' and the server's error types for their own variants.
pub trait HttpError: std::error::Error {
    fn kind(&self) -> ErrorKind;
}

impl<E: HttpError> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError::new(e.kind(), e.to_string())
    }
}

/// Errors that are always the client's: 400.
macro_rules! bad_request {
    ($($error:ty),*) => {
        $(impl HttpError for $error {
            fn kind(&self) -> ErrorKind {
                ErrorKind::BadRequest
            }
        })*
    };
}

bad_request!(NameError, BlobError, IndexError, ManifestError, BodyError);

impl HttpError for StoreError {
    fn kind(&self) -> ErrorKind {
        match self {
            StoreError::NotFound(_) => ErrorKind::NotFound,
            StoreError::Io { .. } => ErrorKind::Io,
            _ => ErrorKind::BadRequest,
        }
    }
}

impl HttpError for SessionError {
    fn kind(&self) -> ErrorKind {
        match self {
            SessionError::Store(e) => e.kind(),
            SessionError::PreviousBlobMissing(_) => ErrorKind::NotFound,
            SessionError::Internal(_) => ErrorKind::Internal,
            _ => ErrorKind::BadRequest,
        }
    }
}

impl HttpError for ReaderError {
    fn kind(&self) -> ErrorKind {
        match self {
            ReaderError::Store(e) => e.kind(),
            ReaderError::FileMissing(_) => ErrorKind::NotFound,
            ReaderError::ChunkNotAllowed(_) => ErrorKind::Unauthorized,
            ReaderError::Stopped(_) => ErrorKind::Internal,
            _ => ErrorKind::BadRequest,
        }
    }
}

impl HttpError for RequestError {
    fn kind(&self) -> ErrorKind {
        match self {
            RequestError::NoSuchPath(_) => ErrorKind::NotFound,
            RequestError::Method(_) => ErrorKind::MethodNotAllowed,
            RequestError::BodyTooLarge | RequestError::ContentType => ErrorKind::BadRequest,
        }
    }
}

impl HttpError for AuthError {
    fn kind(&self) -> ErrorKind {
        match self {
            AuthError::Failed(_) | AuthError::LoginFailed => ErrorKind::Unauthorized,
            AuthError::Invalid(_) => ErrorKind::BadRequest,
            AuthError::MissingPrivilege { .. } => ErrorKind::Forbidden,
            _ => ErrorKind::Internal,
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
