//! Helpers of the bad-input battery: parameter mutations with the texts the schema check
//! answers, the tally of requests and statuses, a content snapshot of a datastore tree, and
//! raw request bytes over TLS for what hyper's client refuses to send.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chunkyard::client::{ClientError, HttpClient, Response};
use chunkyard::testing::TestServer;
use http::StatusCode;
use sha2::{Digest as _, Sha256};

pub const FORM: &str = "application/x-www-form-urlencoded";
pub const JSON: &str = "application/json";
pub const OCTETS: &str = "application/octet-stream";

/// What the message of a refusal must be.
#[derive(Debug, Clone)]
pub enum Want {
    Exact(String),
    Prefix(String),
    /// Any non-empty text (where the spec gives no wording).
    NonEmpty,
    /// An empty body (414, as the reference answers it).
    Empty,
}

impl Want {
    pub fn exact(s: impl Into<String>) -> Want {
        Want::Exact(s.into())
    }
    pub fn prefix(s: impl Into<String>) -> Want {
        Want::Prefix(s.into())
    }
    pub fn any() -> Want {
        Want::NonEmpty
    }
}

/// Requests sent and statuses answered.
#[derive(Debug, Default)]
pub struct Tally {
    pub count: usize,
    pub statuses: BTreeMap<u16, usize>,
}

impl Tally {
    #[track_caller]
    pub fn check(&mut self, label: &str, r: Result<Response, ClientError>, status: StatusCode, want: &Want) {
        let r = r.unwrap_or_else(|e| panic!("{label}: no answer: {e}"));
        self.count += 1;
        *self.statuses.entry(r.status.as_u16()).or_default() += 1;
        let text = String::from_utf8_lossy(&r.body);
        assert_eq!(r.status, status, "{label}: {text}");
        match want {
            Want::Exact(w) => assert_eq!(text, w.as_str(), "{label}"),
            Want::Prefix(p) => assert!(text.starts_with(p.as_str()), "{label}: {text:?} does not start with {p:?}"),
            Want::NonEmpty => assert!(!text.trim().is_empty(), "{label}: empty message"),
            Want::Empty => assert!(text.is_empty(), "{label}: {text:?}"),
        }
    }
}

/// The kind of a session parameter, which decides its mutations.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Int(u64, u64),
    Digest,
    Str,
    /// Name with the required extension, and which text a wrong extension gets.
    Archive(&'static str, Ext),
}

#[derive(Debug, Clone, Copy)]
pub enum Ext {
    Blob,
    Archive,
    Any,
}

/// A mutation of one parameter.
#[derive(Debug, Clone)]
pub enum Val {
    Missing,
    /// The parameter sent twice (an array, for the session's schema).
    Twice,
    Set(String),
}

pub struct Mutation {
    pub value: Val,
    pub want: Want,
}

pub fn schema(name: &str, msg: &str) -> String {
    format!("parameter verification failed - '{name}': {msg}")
}
pub fn missing(name: &str) -> String {
    schema(name, "property is missing and it is not optional")
}
pub fn int_type(name: &str) -> String {
    schema(name, "Expected integer value.")
}
pub fn min_err(name: &str, min: u64) -> String {
    schema(name, &format!("value must have a minimum value of {min}"))
}
pub fn max_err(name: &str, max: u64) -> String {
    schema(name, &format!("value must have a maximum value of {max}"))
}
pub fn regex(name: &str) -> String {
    schema(name, "value does not match the regex pattern")
}

/// Names that are not SAFE_ID: traversal, separators, encodings, NUL, RTL/zero-width marks,
/// non-ASCII, leading dot or dash, very long.
pub fn unsafe_names(ext: &str) -> Vec<String> {
    let mut v: Vec<String> = vec![
        String::new(),
        "..".into(),
        ".".into(),
        format!("../a{ext}"),
        format!("a/b{ext}"),
        format!("/a{ext}"),
        format!("%2Fa{ext}"),
        format!("..%2F..%2Fa{ext}"),
        format!("a\0{ext}"),
        format!("\u{202E}a{ext}"),
        format!("a\u{200B}{ext}"),
        format!("ä{ext}"),
        format!(".a{ext}"),
        format!("-a{ext}"),
        format!("a b{ext}"),
        format!("a\\b{ext}"),
        format!("a:b{ext}"),
        format!("a\n{ext}"),
        ext.to_string(),
        format!("{}{ext}", "../".repeat(300)),
    ];
    v.push(format!("a{ext}\u{0}"));
    v
}

pub fn mutations(name: &str, kind: &Kind) -> Vec<Mutation> {
    let m = |value: Val, want: String| Mutation { value, want: Want::Exact(want) };
    let set = |s: &str| Val::Set(s.to_string());
    let mut out = vec![m(Val::Missing, missing(name))];
    match *kind {
        Kind::Int(min, max) => {
            out.push(m(Val::Twice, int_type(name)));
            for bad in [
                "",
                "abc",
                "1.5",
                "0x10",
                " 1",
                "1 ",
                "1e3",
                "١",
                "NaN",
                "--1",
                "1_000",
                "340282366920938463463374607431768211456",
            ] {
                out.push(m(set(bad), int_type(name)));
            }
            out.push(m(set("-1"), min_err(name, min)));
            out.push(m(set("-99999999999999999999"), min_err(name, min)));
            if min > 0 {
                out.push(m(set(&(min - 1).to_string()), min_err(name, min)));
            }
            let over = if max < u64::MAX { (max + 1).to_string() } else { "18446744073709551616".to_string() };
            out.push(m(Val::Set(over), max_err(name, max)));
            out.push(m(set("99999999999999999999999999"), max_err(name, max)));
        }
        Kind::Digest => {
            out.push(m(Val::Twice, schema(name, "Expected string value.")));
            let z = "0".repeat(64);
            for bad in [
                String::new(),
                z[1..].to_string(),
                format!("{z}0"),
                "A".repeat(64),
                "g".repeat(64),
                format!("{}\0", &z[1..]),
                format!(" {}", &z[1..]),
                format!("{}é", &z[2..]),
                "../".repeat(22),
            ] {
                out.push(m(Val::Set(bad), regex(name)));
            }
        }
        Kind::Str => out.push(m(Val::Twice, schema(name, "Expected string value."))),
        Kind::Archive(ext, which) => {
            out.push(m(Val::Twice, schema(name, "Expected string value.")));
            for bad in unsafe_names(ext) {
                out.push(m(Val::Set(bad), regex(name)));
            }
            let mut wrong: Vec<String> = vec![
                "a.txt".into(),
                "a".into(),
                "didx".into(),
                format!("a{ext}.tmp"),
                format!("a{ext}x"),
                format!("{}{ext}", "x".repeat(250)),
            ];
            if !matches!(which, Ext::Any) {
                wrong.extend([".didx", ".fidx", ".blob"].iter().filter(|e| **e != ext).map(|e| format!("a{e}")));
            }
            for w in wrong {
                let text = match which {
                    Ext::Blob => format!("wrong blob file extension: '{w}'"),
                    Ext::Archive => format!("wrong archive extension: '{w}'"),
                    Ext::Any => format!("unknown archive type: {w}"),
                };
                out.push(m(Val::Set(w), text));
            }
        }
    }
    out
}

/// `base` with parameter `name` replaced as `val` says (appended when absent).
pub fn apply<'a>(base: &[(&'a str, String)], name: &'a str, val: &Val) -> Vec<(&'a str, String)> {
    let mut q: Vec<(&str, String)> = base.iter().filter(|(k, _)| *k != name).cloned().collect();
    let orig = base.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()).unwrap_or_else(|| "x".into());
    match val {
        Val::Missing => {}
        Val::Twice => {
            q.push((name, orig.clone()));
            q.push((name, orig));
        }
        Val::Set(v) => q.push((name, v.clone())),
    }
    q
}

/// Form-urlencodes pairs in the given order.
pub fn encode(pairs: &[(&str, String)]) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        ser.append_pair(k, v);
    }
    ser.finish()
}

/// Every directory and file below `root`: files with size and SHA-256.
pub fn tree(root: &Path) -> BTreeMap<PathBuf, Option<(u64, String)>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if e.file_type().unwrap().is_dir() {
                out.insert(rel, None);
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                out.insert(rel, Some((bytes.len() as u64, hex::encode(Sha256::digest(&bytes)))));
            }
        }
    }
    out
}

/// Human-readable differences between two tree snapshots.
pub fn diff(a: &BTreeMap<PathBuf, Option<(u64, String)>>, b: &BTreeMap<PathBuf, Option<(u64, String)>>) -> Vec<String> {
    let mut out = Vec::new();
    for (p, v) in a {
        match b.get(p) {
            None => out.push(format!("removed {}", p.display())),
            Some(w) if w != v => out.push(format!("changed {}", p.display())),
            _ => {}
        }
    }
    out.extend(b.keys().filter(|p| !a.contains_key(*p)).map(|p| format!("added {}", p.display())));
    out
}

/// The server still answers a version call and opens (and drops) a fresh session.
pub async fn assert_still_serving(server: &TestServer) {
    let c = chunkyard::client::HttpClient::new(server.client_config()).unwrap();
    c.version().await.expect("version answers");
    let s = super::session(server, "alive", super::T0).await;
    let r = s.request(http::Method::GET, "/", "", bytes::Bytes::new(), FORM).await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    drop(s);
    super::assert_removed(&super::group_dir(server, "alive")).await;
}

/// How long the server may take to answer and close a raw connection.
pub const CLOSE_BOUND: std::time::Duration = std::time::Duration::from_secs(30);

/// Writes `bytes` (one or more whole requests, as raw as a hostile client may send them) on a
/// fresh TLS connection and returns everything the server sent until it closed the
/// connection. Panics if it is still open after [`CLOSE_BOUND`].
pub async fn raw_exchange(c: &HttpClient, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = c.connect_tls().await.expect("TLS connection");
    tls.write_all(bytes).await.unwrap();
    tls.flush().await.unwrap();
    let mut out = Vec::new();
    match tokio::time::timeout(CLOSE_BOUND, tls.read_to_end(&mut out)).await {
        Ok(Ok(_)) => {}
        // A reset after the answer is a close too.
        Ok(Err(e)) if !out.is_empty() => eprintln!("connection ended with {e}"),
        Ok(Err(e)) => panic!("no answer: {e}"),
        Err(_) => panic!("connection still open after {CLOSE_BOUND:?}; got {:?}", String::from_utf8_lossy(&out)),
    }
    String::from_utf8_lossy(&out).into_owned()
}
