//! Reply encoding: how a successful answer or an [`ApiError`] becomes status, content type
//! and body, the same for the HTTP/2 sessions and HTTP/1.1 (the `{"data": ...}` envelope,
//! plain-text errors with a JSON content type, protocol.md 1.2).

use bytes::Bytes;
use http::StatusCode;

use crate::http::ApiError;

/// The content type PBS sends on every JSON answer, errors included.
pub const JSON_CONTENT_TYPE: &str = "application/json;charset=UTF-8";

/// A successful answer of an endpoint (session or management API).
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Sent as `{"data": v}` with the JSON content type.
    Data(serde_json::Value),
    /// Sent as-is with `application/octet-stream` (downloads).
    Raw(Bytes),
}

pub type ReplyResult = Result<Reply, ApiError>;

/// Status, content type and body of a reply, as both HTTP layers send them.
pub fn encode_reply(reply: ReplyResult) -> (StatusCode, &'static str, Bytes) {
    match reply {
        Ok(Reply::Data(value)) => {
            let body = serde_json::to_vec(&serde_json::json!({ "data": value })).unwrap_or_default();
            (StatusCode::OK, JSON_CONTENT_TYPE, Bytes::from(body))
        }
        Ok(Reply::Raw(bytes)) => (StatusCode::OK, "application/octet-stream", bytes),
        // PBS answers errors as plain text under a JSON content type; the client relies on it
        // only to print the text.
        Err(e) => (e.status, JSON_CONTENT_TYPE, Bytes::from(e.message.into_bytes())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_use_the_pbs_envelope() {
        let (s, ct, b) = encode_reply(Ok(Reply::Data(serde_json::Value::Null)));
        assert_eq!((s, ct, &b[..]), (StatusCode::OK, JSON_CONTENT_TYPE, &b"{\"data\":null}"[..]));
        let (s, ct, b) = encode_reply(Err(ApiError::bad_request("nope")));
        assert_eq!((s, ct, &b[..]), (StatusCode::BAD_REQUEST, JSON_CONTENT_TYPE, &b"nope"[..]));
        let (s, ct, b) = encode_reply(Ok(Reply::Raw(Bytes::from_static(b"\x01\x02"))));
        assert_eq!((s, ct, &b[..]), (StatusCode::OK, "application/octet-stream", &b"\x01\x02"[..]));
    }
}
