//! Request path normalisation: the one decoding of a request's path before routing, so every
//! router (and the request metrics) sees the same canonical form whatever the client sent.

use crate::http::ApiError;

/// How [`normalize_path`] takes the segments between the slashes. The two HTTP layers differ
/// on purpose and each keeps the answers it always gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segments {
    /// HTTP/1.1 requests: percent-decoded; a segment that decodes to something with a `/`, or
    /// to `.` or `..`, is refused with a 400.
    Decoded,
    /// HTTP/2 session requests: as sent, nothing refused. The sessions' paths are fixed words,
    /// so an encoded or dotted segment just matches no route ("Path '...' not found.").
    AsSent,
}

/// Drops empty segments (the client sends `//api2/json/backup`) and takes the rest as
/// `segments` says; an empty path becomes `/`.
pub fn normalize_path(raw: &str, segments: Segments) -> Result<String, ApiError> {
    let mut out = String::with_capacity(raw.len());
    for segment in raw.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        match segments {
            Segments::AsSent => out.push_str(segment),
            Segments::Decoded => {
                let decoded = percent_encoding::percent_decode_str(segment)
                    .decode_utf8()
                    .map_err(|_| ApiError::bad_request("invalid path encoding"))?;
                if decoded.contains('/') || decoded == "." || decoded == ".." {
                    return Err(ApiError::bad_request(format!("invalid path segment '{decoded}'")));
                }
                out.push_str(&decoded);
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalized() {
        let n = |raw| normalize_path(raw, Segments::Decoded);
        assert_eq!(n("//api2/json/backup").unwrap(), "/api2/json/backup");
        assert_eq!(n("/api2//json/%76ersion/").unwrap(), "/api2/json/version");
        assert_eq!(n("").unwrap(), "/");
        assert!(n("/api2/a%2Fb").is_err());
        assert!(n("/api2/%2e%2e/x").is_err());
        assert!(n("/api2/%ff").is_err());
    }

    #[test]
    fn session_paths_only_lose_empty_segments() {
        let n = |raw| normalize_path(raw, Segments::AsSent).unwrap();
        assert_eq!(n("//dynamic_chunk"), "/dynamic_chunk");
        assert_eq!(n("/fixed_index/"), "/fixed_index");
        assert_eq!(n(""), "/");
        assert_eq!(n("/%64ynamic_chunk"), "/%64ynamic_chunk");
        assert_eq!(n("/a/../%2e%2e/%ff"), "/a/../%2e%2e/%ff");
    }
}
