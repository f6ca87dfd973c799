//! Any `Cookie`, `Authorization` and ticket text through authentication's parsers: no panic;
//! nothing unsigned is accepted; what the server issues (tickets, CSRF tokens, the cookie and
//! token headers a client builds) parses back to what went in.
#![no_main]

use chunkyard::auth::ticket::{TICKET_LIFETIME, TICKET_SKEW, TicketKey};
use chunkyard::auth::{cookie_ticket, parse_token_header};
use chunkyard::format::Authid;
use libfuzzer_sys::fuzz_target;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

fuzz_target!(|data: &[u8]| {
    // Layout (so that seeds stay readable): header, text, secret, issued, now, split at '\n';
    // the times are decimal, a clock near 2023 when missing.
    let mut parts = data.splitn(5, |&b| b == b'\n');
    let header = parts.next().unwrap_or_default();
    let text = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let secret = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let mut time = || {
        let t = parts.next().and_then(|p| std::str::from_utf8(p).ok()?.trim().parse::<i64>().ok());
        t.unwrap_or(1_700_000_000)
    };
    let (issued, now) = (time(), time());
    let (text, secret) = (text.as_ref(), secret.as_ref());
    let key = TicketKey::from_bytes([0x5a; 32]);

    let _ = cookie_ticket(header);
    if let Ok((id, _)) = parse_token_header(Some(header)) {
        assert!(id.is_token());
    }
    assert_eq!(key.verify_ticket(text, now), None, "unsigned ticket accepted");
    assert!(!key.verify_csrf("root@pam", text, now), "unsigned CSRF token accepted");

    let cookie = format!("x=1; PBSAuthCookie={}; y", utf8_percent_encode(text, NON_ALPHANUMERIC));
    assert_eq!(cookie_ticket(cookie.as_bytes()).as_deref(), Some(text));

    let Ok(id) = Authid::parse(text) else { return };
    if id.is_token() {
        let header = format!("PBSAPIToken {id}:{}", utf8_percent_encode(secret, NON_ALPHANUMERIC));
        let (back, back_secret) = parse_token_header(Some(header.as_bytes())).unwrap();
        assert_eq!((back, back_secret.as_str()), (id.clone(), secret));
    }
    let user = id.user();
    let age = i128::from(now) - i128::from(issued);
    let fresh = issued >= 0 && (-i128::from(TICKET_SKEW)..=i128::from(TICKET_LIFETIME)).contains(&age);
    let ticket = key.ticket(user, issued);
    assert_eq!(key.verify_ticket(&ticket, now).as_deref(), fresh.then_some(user), "{ticket}");
    let csrf = key.csrf(user, issued);
    assert_eq!(key.verify_csrf(user, &csrf, now), fresh, "{csrf}");
});
