//! Checks a parsed configuration for values that would only fail later, deep inside the server,
//! and says which key is wrong and what is allowed.

use crate::format::DatastoreName;

use super::{Config, ConfigError};

pub(super) fn validate(c: &Config) -> Result<(), ConfigError> {
    let bad = |key: &str, msg: String| Err(ConfigError::Invalid(format!("{key}: {msg}")));
    if c.data_dir.as_os_str().is_empty() {
        return bad("data-dir", "must not be empty".into());
    }
    for (name, path) in &c.datastores {
        if let Err(e) = DatastoreName::parse(name) {
            return bad(&format!("datastores.{name}"), e.to_string());
        }
        if path.as_os_str().is_empty() {
            return bad(&format!("datastores.{name}"), "path must not be empty".into());
        }
    }
    if c.tls.cert.is_some() != c.tls.key.is_some() {
        return bad("tls", "set both `cert` and `key`, or neither (then a certificate is generated)".into());
    }
    if c.metrics.enabled && c.metrics.listen == c.listen && c.listen.port() != 0 {
        return bad("metrics.listen", format!("{} is also the API listen address", c.listen));
    }
    let p = &c.pipeline;
    if p.hashers > 1024 {
        return bad("pipeline.hashers", format!("{} is more than 1024", p.hashers));
    }
    if p.hasher_queue == 0 {
        return bad("pipeline.hasher-queue", "must be at least 1".into());
    }
    if p.writer_queue == 0 {
        return bad("pipeline.writer-queue", "must be at least 1".into());
    }
    if !(1..=4096).contains(&p.uring_depth) || !p.uring_depth.is_power_of_two() {
        return bad("pipeline.uring-depth", format!("{} is not a power of two from 1 to 4096", p.uring_depth));
    }
    let l = &c.limits;
    if l.max_sessions == 0 {
        return bad("limits.max-sessions", "must be at least 1".into());
    }
    if l.max_streams == 0 {
        return bad("limits.max-streams", "must be at least 1".into());
    }
    // RFC 9113: windows 65535..=2^31-1, frames 16384..=2^24-1.
    if !(65_535..=0x7fff_ffff).contains(&l.h2_window) {
        return bad("limits.h2-window", format!("{} is outside 65535..=2147483647", l.h2_window));
    }
    if !(16_384..=0xff_ffff).contains(&l.h2_max_frame) {
        return bad("limits.h2-max-frame", format!("{} is outside 16384..=16777215", l.h2_max_frame));
    }
    if l.tls_handshake_timeout_secs == 0 {
        return bad("limits.tls-handshake-timeout-secs", "must be at least 1".into());
    }
    if l.idle_timeout_secs == 0 {
        return bad("limits.idle-timeout-secs", "must be at least 1".into());
    }
    if l.max_inflight_bytes < 1024 * 1024 {
        return bad("limits.max-inflight-bytes", format!("{} is less than 1048576 (1 MiB)", l.max_inflight_bytes));
    }
    if l.max_session_index_bytes < 1024 * 1024 {
        let n = l.max_session_index_bytes;
        return bad("limits.max-session-index-bytes", format!("{n} is less than 1048576 (1 MiB)"));
    }
    if l.max_index_bytes < l.max_session_index_bytes {
        let (n, s) = (l.max_index_bytes, l.max_session_index_bytes);
        return bad("limits.max-index-bytes", format!("{n} is less than limits.max-session-index-bytes ({s})"));
    }
    Ok(())
}
