//! The HTTP vocabulary every HTTP layer shares (the HTTP/2 backup and reader sessions in
//! `protocol/`, HTTP/1.1 and the management API in `server/`): [`ApiError`] with the one mapping
//! of typed errors to status, text and metrics kind, reply encoding, query and parameter
//! decoding, request path normalisation, and the HTTP/1.1 side's endpoint table.
//!
//! It sits below both users so neither reaches up into the other: it may use the error types of
//! the layers beneath (format, store, actors, auth) and nothing that serves connections.

pub mod endpoint;
mod error;
pub(crate) mod params;
mod path;
mod reply;

pub use error::{ApiError, BodyError, ErrorKind, HttpError, RequestError};
pub use params::parse_query;
pub use path::{Segments, normalize_path};
pub use reply::{JSON_CONTENT_TYPE, Reply, ReplyResult, encode_reply};
