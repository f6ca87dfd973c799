//! PBS's certificate fingerprint form: SHA-256 of the leaf certificate's DER as lowercase hex
//! byte pairs joined by `:` (95 characters). The server prints it, the client pins it.

use sha2::{Digest as _, Sha256};

pub fn cert_fingerprint(der: &[u8]) -> String {
    colon_hex(&Sha256::digest(der))
}

/// Lowercase hex byte pairs joined by `:`, PBS's form for every fingerprint (certificates and
/// encryption keys alike).
pub fn colon_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    #[test]
    fn form() {
        let f = super::cert_fingerprint(b"");
        assert!(f.starts_with("e3:b0:c4:42:98:fc:1c:14:9a:fb:f4:c8:99:6f:b9:24"));
        assert_eq!(f.len(), 95);
    }
}
