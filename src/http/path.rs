//! Request path normalisation: the one decoding of a request's path before routing, so every
//! router (and the request metrics) sees the same canonical form whatever the client sent.

use crate::http::ApiError;

/// Drops empty segments (the client sends `//api2/json/backup`) and percent-decodes the rest;
/// a decoded segment may not smuggle in a `/` or escape with `..`.
pub fn normalize_path(raw: &str) -> Result<String, ApiError> {
    let mut out = String::with_capacity(raw.len());
    for segment in raw.split('/').filter(|s| !s.is_empty()) {
        let decoded = percent_encoding::percent_decode_str(segment)
            .decode_utf8()
            .map_err(|_| ApiError::bad_request("invalid path encoding"))?;
        if decoded.contains('/') || decoded == "." || decoded == ".." {
            return Err(ApiError::bad_request(format!("invalid path segment '{decoded}'")));
        }
        out.push('/');
        out.push_str(&decoded);
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
        assert_eq!(normalize_path("//api2/json/backup").unwrap(), "/api2/json/backup");
        assert_eq!(normalize_path("/api2//json/%76ersion/").unwrap(), "/api2/json/version");
        assert_eq!(normalize_path("").unwrap(), "/");
        assert!(normalize_path("/api2/a%2Fb").is_err());
        assert!(normalize_path("/api2/%2e%2e/x").is_err());
        assert!(normalize_path("/api2/%ff").is_err());
    }
}
