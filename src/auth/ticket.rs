//! Login tickets and CSRF prevention tokens (protocol.md 1.3): the `PBS:<userid>:<HEXTIME>::<sig>`
//! form, 7200 s lifetime with 300 s clock skew, signed with a server key kept in
//! `<data-dir>/etc/ticket-key` (created on first use, mode 0600).
//!
//! The client treats both strings as opaque, so the signature is an HMAC-SHA256 under the
//! server key rather than PBS's key pair; what matters is that they cannot be forged, expire,
//! and are bound to one user. Comparisons are constant-time.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::auth::files::{FileError, write_atomic};

/// Lifetime of a ticket and a CSRF token, in seconds.
pub const TICKET_LIFETIME: i64 = 7200;
/// How far in the future a ticket's time may be (clock skew between cluster nodes in PBS).
pub const TICKET_SKEW: i64 = 300;
const PREFIX: &str = "PBS";

pub struct TicketKey([u8; 32]);

impl std::fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TicketKey(..)")
    }
}

impl TicketKey {
    /// Loads `<etc>/ticket-key`, creating it with 32 random bytes when absent.
    pub fn load_or_create(etc: &Path) -> Result<TicketKey, FileError> {
        let path = etc.join("ticket-key");
        match std::fs::read(&path) {
            Ok(bytes) => {
                let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| FileError::NotAKey(path.clone()))?;
                Ok(TicketKey(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(FileError::Random)?;
                write_atomic(&path, &key, 0o600)?;
                Ok(TicketKey(key))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A fixed key, for tests and the fuzz targets (a server always uses `load_or_create`).
    #[doc(hidden)]
    pub fn from_bytes(key: [u8; 32]) -> TicketKey {
        TicketKey(key)
    }

    fn mac(&self, domain: &str, text: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("any key length");
        mac.update(domain.as_bytes());
        mac.update(&[0]);
        mac.update(text.as_bytes());
        STANDARD_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// A ticket for `userid` issued at `now`.
    pub fn ticket(&self, userid: &str, now: i64) -> String {
        let data = format!("{PREFIX}:{userid}:{now:08X}");
        let sig = self.mac("ticket", &data);
        format!("{data}::{sig}")
    }

    /// The user a valid, unexpired ticket was issued to.
    pub fn verify_ticket(&self, ticket: &str, now: i64) -> Option<String> {
        let (data, sig) = ticket.split_once("::")?;
        let expected = self.mac("ticket", data);
        if !bool::from(expected.as_bytes().ct_eq(sig.as_bytes())) {
            return None;
        }
        let rest = data.strip_prefix(PREFIX)?.strip_prefix(':')?;
        let (userid, hex) = rest.rsplit_once(':')?;
        let time = i64::from_str_radix(hex, 16).ok()?;
        fresh(time, now).then(|| userid.to_string())
    }

    /// The CSRF prevention token of `userid` issued at `now`.
    pub fn csrf(&self, userid: &str, now: i64) -> String {
        let hex = format!("{now:08X}");
        let sig = self.mac("csrf", &format!("{hex}:{userid}:"));
        format!("{hex}:{sig}")
    }

    pub fn verify_csrf(&self, userid: &str, token: &str, now: i64) -> bool {
        let Some((hex, sig)) = token.split_once(':') else { return false };
        let Ok(time) = i64::from_str_radix(hex, 16) else { return false };
        let expected = self.mac("csrf", &format!("{hex}:{userid}:"));
        bool::from(expected.as_bytes().ct_eq(sig.as_bytes())) && fresh(time, now)
    }
}

fn fresh(time: i64, now: i64) -> bool {
    let age = now - time;
    (-TICKET_SKEW..=TICKET_LIFETIME).contains(&age)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_round_trip_and_expire() {
        let key = TicketKey::from_bytes([7; 32]);
        let t = key.ticket("alice@pbs", 0x6553F164);
        assert!(t.starts_with("PBS:alice@pbs:6553F164::"), "{t}");
        assert_eq!(key.verify_ticket(&t, 0x6553F164 + 100).as_deref(), Some("alice@pbs"));
        assert_eq!(key.verify_ticket(&t, 0x6553F164 + TICKET_LIFETIME + 1), None);
        assert_eq!(key.verify_ticket(&t, 0x6553F164 - TICKET_SKEW - 1), None);
        let forged = t.replace("alice@pbs", "admin@pbs");
        assert_eq!(key.verify_ticket(&forged, 0x6553F164), None);
        let other = TicketKey::from_bytes([8; 32]);
        assert_eq!(other.verify_ticket(&t, 0x6553F164), None);
    }

    #[test]
    fn csrf_is_bound_to_user_and_time() {
        let key = TicketKey::from_bytes([1; 32]);
        let c = key.csrf("bob@pbs", 1000);
        assert!(key.verify_csrf("bob@pbs", &c, 1000 + 10));
        assert!(!key.verify_csrf("eve@pbs", &c, 1000));
        assert!(!key.verify_csrf("bob@pbs", &c, 1000 + TICKET_LIFETIME + 1));
        assert!(!key.verify_csrf("bob@pbs", "invalid", 1000));
    }

    #[test]
    fn key_is_created_once_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = TicketKey::load_or_create(dir.path()).unwrap();
        let b = TicketKey::load_or_create(dir.path()).unwrap();
        assert_eq!(a.0, b.0);
        let mode = std::fs::metadata(dir.path().join("ticket-key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
