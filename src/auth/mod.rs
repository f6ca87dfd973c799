//! Authentication and authorization: the user/token/ACL store under `<data-dir>/etc`, the
//! `PBSAPIToken` header, `PBSAuthCookie` tickets with their CSRF tokens, and the privilege
//! lookup every endpoint uses (protocol.md 1.3).
//!
//! Files (written atomically, secrets only as argon2id PHC hashes): `users.json` (user ->
//! flags + password hash), `tokens.json` (token id -> secret hash + flags), `acl.json`
//! (entries, see `acl.rs`), `ticket-key` (the ticket signing key). The CLI edits them while a
//! server may run, so the server reloads a file whenever its modification time changes: every
//! authenticated request waits for a check of the times that started after it arrived, run off
//! the connection's thread and shared by the requests waiting for it (`freshness.rs`).
//! Account changes (create user/token, set ACL) live in `accounts.rs`.
//!
//! Argon2 is deliberately slow; proven token secrets are remembered by `secret_cache.rs`, so a
//! backup's many requests (and a burst of sessions) pay for it once.
//!
//! This is the auth model, below the HTTP layers: `server/` turns request headers into
//! [`Credentials`], and `crate::http` maps [`AuthError`] to a status.

pub mod accounts;
pub mod acl;
pub mod files;
pub mod freshness;
pub mod secret_cache;
pub mod ticket;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use crate::format::Authid;
use acl::own_privs;
pub use acl::{AclEntry, Privilege, Privs, Role};
use freshness::Freshness;
use secret_cache::SecretCache;
use ticket::TicketKey;

/// The user created on first start, and its token. The user (and that token) hold every
/// privilege everywhere, like `root@pam` in PBS.
pub const BOOTSTRAP_USER: &str = "admin@pbs";
pub const BOOTSTRAP_TOKEN: &str = "admin@pbs!default";
/// Name of the login cookie (newer clients may send the `__Host-` variant).
pub const AUTH_COOKIE: &str = "PBSAuthCookie";

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The request did not authenticate; the text follows "authentication failed - ".
    #[error("authentication failed - {0}")]
    Failed(&'static str),
    /// A login with wrong credentials (the reference's text).
    #[error("permission check failed.")]
    LoginFailed,
    #[error("missing permissions '{privilege}' on '{path}'")]
    MissingPrivilege { privilege: &'static str, path: String },
    /// A refused account change (CLI), e.g. an unknown user.
    #[error("{0}")]
    Invalid(String),
    #[error("unable to read {path}: {message}")]
    Load { path: PathBuf, message: String },
    #[error("unable to write {path}: {source}")]
    Save { path: PathBuf, source: files::FileError },
    #[error("unable to hash secret: {0}")]
    Hash(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct UserEntry {
    #[serde(default = "yes")]
    pub enable: bool,
    /// Unix time after which the account is refused; 0 = never.
    #[serde(default)]
    pub expire: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// PHC string of the argon2id hash of the password; none = no password login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TokenEntry {
    /// PHC string of the argon2id hash of the secret.
    pub hash: String,
    #[serde(default = "yes")]
    pub enable: bool,
    #[serde(default)]
    pub expire: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

fn yes() -> bool {
    true
}

/// The credentials a request carries.
#[derive(Debug, Default, Clone, Copy)]
pub struct Credentials<'a> {
    pub authorization: Option<&'a [u8]>,
    pub cookie: Option<&'a [u8]>,
    pub csrf: Option<&'a [u8]>,
    /// GET needs no CSRF token (the upgrade is a GET).
    pub is_get: bool,
}

impl<'a> Credentials<'a> {
    /// PBS reads these headers as text only when they are visible ASCII (tab allowed) and
    /// otherwise acts as if they were absent, so `é` in a token header is "no
    /// authentication credentials provided." there too. Control characters never get here:
    /// hyper's parser answers 400 and closes the connection, as in front of PBS.
    fn visible_only(self) -> Self {
        let keep = |v: Option<&'a [u8]>| v.filter(|v| v.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)));
        Credentials {
            authorization: keep(self.authorization),
            cookie: keep(self.cookie),
            csrf: keep(self.csrf),
            is_get: self.is_get,
        }
    }
}

/// A fresh login: what `POST /access/ticket` answers.
#[derive(Debug, Clone)]
pub struct Login {
    pub username: String,
    pub ticket: String,
    pub csrf: String,
}

pub(crate) const FILES: [&str; 3] = ["users.json", "tokens.json", "acl.json"];

/// The user, token and ACL store of one server.
pub struct AuthStore {
    pub(crate) etc: PathBuf,
    pub(crate) users: RwLock<BTreeMap<String, UserEntry>>,
    pub(crate) tokens: RwLock<BTreeMap<String, TokenEntry>>,
    pub(crate) acl: RwLock<Vec<AclEntry>>,
    key: TicketKey,
    /// Modification times the loaded files had, to notice the CLI's changes.
    stamps: Mutex<[Option<SystemTime>; 3]>,
    fresh: Freshness,
    pub(crate) verified: SecretCache,
}

fn stamp(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl AuthStore {
    /// Loads the store from `etc` (missing files = empty); creates the ticket key if absent.
    pub fn open(etc: &Path) -> Result<Arc<AuthStore>, AuthError> {
        let key = TicketKey::load_or_create(etc)
            .map_err(|source| AuthError::Save { path: etc.join("ticket-key"), source })?;
        let store = AuthStore {
            etc: etc.to_path_buf(),
            users: RwLock::new(BTreeMap::new()),
            tokens: RwLock::new(BTreeMap::new()),
            acl: RwLock::new(Vec::new()),
            key,
            stamps: Mutex::new([None; 3]),
            fresh: Freshness::default(),
            verified: SecretCache::default(),
        };
        store.reload(true)?;
        Ok(Arc::new(store))
    }

    /// Re-reads the files whose modification time changed (all of them with `force`).
    pub fn reload(&self, force: bool) -> Result<(), AuthError> {
        let mut stamps = self.stamps.lock();
        for (i, name) in FILES.iter().enumerate() {
            let path = self.etc.join(name);
            let now = stamp(&path);
            if !force && now == stamps[i] {
                continue;
            }
            match i {
                0 => *self.users.write() = load_json(&path)?,
                1 => *self.tokens.write() = load_json(&path)?,
                _ => *self.acl.write() = load_json(&path)?,
            }
            stamps[i] = now;
            if i == 1 {
                self.verified.clear();
            }
        }
        Ok(())
    }

    /// Picks up changes made by the CLI before this call; a broken file keeps the last good
    /// state. The file I/O runs on the blocking pool.
    async fn refresh(self: &Arc<Self>) {
        let store = Arc::clone(self);
        self.fresh
            .after(move || {
                if let Err(e) = store.reload(false) {
                    tracing::warn!("keeping the previous access configuration: {e}");
                }
            })
            .await;
    }

    pub fn has_users(&self) -> bool {
        !self.users.read().is_empty()
    }

    /// Authenticates a request: the token header if present, else the ticket cookie (plus
    /// the CSRF token on anything but GET).
    pub async fn authenticate_request(self: &Arc<Self>, creds: Credentials<'_>) -> Result<Authid, AuthError> {
        self.refresh().await;
        let creds = creds.visible_only();
        if creds.authorization.is_some() {
            return self.authenticate(creds.authorization).await;
        }
        let Some(ticket) = creds.cookie.and_then(cookie_ticket) else {
            return Err(AuthError::Failed("no authentication credentials provided."));
        };
        let now = chrono::Utc::now().timestamp();
        let user = self.key.verify_ticket(&ticket, now).ok_or(AuthError::Failed("invalid ticket"))?;
        let authid = Authid::parse(&user).map_err(|_| AuthError::Failed("invalid ticket"))?;
        if authid.is_token() {
            return Err(AuthError::Failed("invalid ticket"));
        }
        self.check_user_live(&user)?;
        if !creds.is_get {
            let csrf = creds.csrf.ok_or(AuthError::Failed("missing CSRF prevention token"))?;
            let csrf = std::str::from_utf8(csrf).unwrap_or("");
            if !self.key.verify_csrf(&user, csrf, now) {
                return Err(AuthError::Failed("invalid CSRF prevention token"));
            }
        }
        Ok(authid)
    }

    fn check_user_live(&self, user: &str) -> Result<(), AuthError> {
        let users = self.users.read();
        let entry = users.get(user).ok_or(AuthError::Failed("no such user"))?;
        if !live(entry.enable, entry.expire) {
            return Err(AuthError::Failed("user account disabled or expired."));
        }
        Ok(())
    }

    /// `POST /access/ticket`: a password, or a still valid ticket of the same user (renewal).
    pub async fn login(self: &Arc<Self>, username: &str, password: &str) -> Result<Login, AuthError> {
        self.refresh().await;
        let authid = Authid::parse(username).map_err(|_| AuthError::LoginFailed)?;
        if authid.is_token() {
            return Err(AuthError::LoginFailed);
        }
        let now = chrono::Utc::now().timestamp();
        self.check_user_live(username).map_err(|_| AuthError::LoginFailed)?;
        let ok = if password.starts_with("PBS:") {
            self.key.verify_ticket(password, now).as_deref() == Some(username)
        } else {
            let hash = self.users.read().get(username).and_then(|u| u.password.clone());
            match hash {
                Some(hash) => {
                    let password = password.to_string();
                    tokio::task::spawn_blocking(move || verify_secret(&password, &hash)).await.unwrap_or(false)
                }
                None => false,
            }
        };
        if !ok {
            return Err(AuthError::LoginFailed);
        }
        Ok(Login {
            username: username.to_string(),
            ticket: self.key.ticket(username, now),
            csrf: self.key.csrf(username, now),
        })
    }

    /// Authenticates a request from its `Authorization` header value (API tokens).
    pub async fn authenticate(self: &Arc<Self>, header: Option<&[u8]>) -> Result<Authid, AuthError> {
        let (authid, secret) = parse_token_header(header)?;
        let key = authid.to_string();
        let hash = {
            let users = self.users.read();
            let tokens = self.tokens.read();
            let token = tokens.get(&key).ok_or(AuthError::Failed("invalid token"))?;
            let user = users.get(authid.user()).ok_or(AuthError::Failed("invalid token"))?;
            if !live(token.enable, token.expire) || !live(user.enable, user.expire) {
                return Err(AuthError::Failed("user account or token disabled or expired."));
            }
            token.hash.clone()
        };
        let ok = self.verified.check(&key, &secret, &hash).await.map_err(|_| AuthError::Failed("internal error"))?;
        if !ok {
            return Err(AuthError::Failed("invalid token"));
        }
        Ok(authid)
    }

    /// What `authid` may do on ACL path `path`. The bootstrap user and token may do
    /// everything; a token gets its own grants capped by its user's.
    pub fn privs(&self, authid: &Authid, path: &str) -> Privs {
        let user = authid.user();
        if user == BOOTSTRAP_USER && (!authid.is_token() || authid.to_string() == BOOTSTRAP_TOKEN) {
            return Privs::ALL;
        }
        let acl = self.acl.read();
        let user_privs = if user == BOOTSTRAP_USER { Privs::ALL } else { own_privs(&acl, user, path) };
        if authid.is_token() { user_privs.intersect(own_privs(&acl, &authid.to_string(), path)) } else { user_privs }
    }

    /// Whether a user or token of that id exists (and may log in).
    pub fn knows(&self, authid: &Authid) -> bool {
        let user_ok = self.users.read().get(authid.user()).is_some_and(|u| live(u.enable, u.expire));
        user_ok
            && (!authid.is_token()
                || self.tokens.read().get(&authid.to_string()).is_some_and(|t| live(t.enable, t.expire)))
    }

    pub fn has_privilege(&self, authid: &Authid, path: &str, privilege: Privilege) -> bool {
        self.privs(authid, path).has(privilege)
    }

    /// 403 "missing permissions '<priv>' on '<path>'" unless `authid` holds `privilege`.
    pub fn check_privilege(&self, authid: &Authid, path: &str, privilege: Privilege) -> Result<(), AuthError> {
        if self.has_privilege(authid, path, privilege) {
            return Ok(());
        }
        Err(AuthError::MissingPrivilege { privilege: privilege.name(), path: path.to_string() })
    }
}

fn live(enable: bool, expire: i64) -> bool {
    enable && (expire == 0 || expire > chrono::Utc::now().timestamp())
}

/// The ticket in a `Cookie` header (`PBSAuthCookie`, or the `__Host-` form newer clients use),
/// percent-decoded.
pub fn cookie_ticket(header: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(header).ok()?;
    let mut found = None;
    for pair in text.split(';') {
        let Some((name, value)) = pair.trim().split_once('=') else { continue };
        let preferred = name == format!("__Host-{AUTH_COOKIE}");
        if name == AUTH_COOKIE || preferred {
            let value = percent_encoding::percent_decode_str(value).decode_utf8().ok()?.into_owned();
            if preferred || found.is_none() {
                found = Some(value);
            }
        }
    }
    found
}

/// `PBSAPIToken <authid>:<secret>` (a space or `=` after the prefix), split at the first `:`,
/// the secret percent-decoded.
pub fn parse_token_header(header: Option<&[u8]>) -> Result<(Authid, String), AuthError> {
    let raw = header.ok_or(AuthError::Failed("no authentication credentials provided."))?;
    let value = std::str::from_utf8(raw).map_err(|_| AuthError::Failed("invalid authorization header"))?;
    let rest = value
        .strip_prefix("PBSAPIToken")
        .and_then(|r| r.strip_prefix(' ').or_else(|| r.strip_prefix('=')))
        .ok_or(AuthError::Failed("unsupported authorization header"))?;
    let (id, secret) = rest.split_once(':').ok_or(AuthError::Failed("invalid API token header"))?;
    let authid = Authid::parse(id).map_err(|_| AuthError::Failed("invalid API token id"))?;
    if !authid.is_token() {
        return Err(AuthError::Failed("invalid API token id"));
    }
    let secret = percent_encoding::percent_decode_str(secret)
        .decode_utf8()
        .map_err(|_| AuthError::Failed("invalid API token secret encoding"))?
        .into_owned();
    Ok((authid, secret))
}

pub(crate) fn load_json<T: serde::de::DeserializeOwned + Default>(path: &Path) -> Result<T, AuthError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| AuthError::Load { path: path.to_path_buf(), message: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(AuthError::Load { path: path.to_path_buf(), message: e.to_string() }),
    }
}

/// A random secret in the UUID form PBS hands out for tokens.
pub(crate) fn generate_secret() -> Result<String, AuthError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| AuthError::Hash(e.to_string()))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]))
}

pub(crate) fn hash_secret(secret: &str) -> Result<String, AuthError> {
    argon2::Argon2::default()
        .hash_password(secret.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

pub(crate) fn verify_secret(secret: &str, hash: &str) -> bool {
    argon2::Argon2::default().verify_password(secret.as_bytes(), hash).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_forms() {
        let (id, s) = parse_token_header(Some(b"PBSAPIToken a@pbs!t:x%20y:z")).unwrap();
        assert_eq!((id.to_string().as_str(), s.as_str()), ("a@pbs!t", "x y:z"));
        let (id, _) = parse_token_header(Some(b"PBSAPIToken=a@pbs!t:s")).unwrap();
        assert_eq!(id.to_string(), "a@pbs!t");
        for bad in [&b"PBSAPITokena@pbs!t:s"[..], b"Bearer x", b"PBSAPIToken a@pbs!t", b"PBSAPIToken a@pbs:s", b"\xff"]
        {
            assert!(matches!(parse_token_header(Some(bad)), Err(AuthError::Failed(_))), "{bad:?}");
        }
        assert!(parse_token_header(None).is_err());
    }

    #[test]
    fn cookie_forms() {
        assert_eq!(cookie_ticket(b"PBSAuthCookie=PBS%3Aa%40pbs%3A1::x").as_deref(), Some("PBS:a@pbs:1::x"));
        assert_eq!(cookie_ticket(b"other=1; PBSAuthCookie=t1").as_deref(), Some("t1"));
        assert_eq!(cookie_ticket(b"PBSAuthCookie=t1; __Host-PBSAuthCookie=t2").as_deref(), Some("t2"));
        assert_eq!(cookie_ticket(b"nothing=here"), None);
        assert_eq!(cookie_ticket(b"\xff"), None);
    }

    async fn check(store: &Arc<AuthStore>, authorization: &[u8], cookie: Option<&[u8]>) -> Result<String, String> {
        let creds = Credentials { authorization: Some(authorization), cookie, csrf: None, is_get: true };
        store.authenticate_request(creds).await.map(|id| id.to_string()).map_err(|e| e.to_string())
    }

    /// A store with its bootstrap token, and that token's `Authorization` header.
    fn bootstrapped() -> (tempfile::TempDir, Arc<AuthStore>, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let store = AuthStore::open(dir.path()).unwrap();
        let mut published = None;
        store
            .bootstrap(|id, s| {
                published = Some(format!("PBSAPIToken {id}:{s}"));
                Ok(())
            })
            .unwrap();
        (dir, store, published.unwrap().into_bytes())
    }

    #[tokio::test]
    async fn credential_headers_that_are_not_visible_ascii_count_as_absent() {
        let (_dir, store, good) = bootstrapped();
        assert_eq!(check(&store, &good, None).await.as_deref(), Ok("admin@pbs!default"));
        let absent = Err("authentication failed - no authentication credentials provided.".to_string());
        for bad in ["é".as_bytes(), b"\x80", b"\xff"] {
            let mut header = good.clone();
            header.splice(good.len() - 2..good.len() - 2, bad.iter().copied());
            assert_eq!(check(&store, &header, None).await, absent, "{bad:?}");
        }
        // A cookie PBS cannot read is ignored, and the token still works.
        assert_eq!(check(&store, &good, Some("PBSAuthCookie=é".as_bytes())).await.as_deref(), Ok("admin@pbs!default"));
        // Tab counts as visible: the header is read and refused on its merits.
        let tabbed = String::from_utf8(good.clone()).unwrap().replacen(' ', "\t", 1);
        let refused = check(&store, tabbed.as_bytes(), None).await;
        assert!(refused.is_err() && refused != absent, "{refused:?}");
    }

    #[tokio::test]
    async fn bootstrap_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let store = AuthStore::open(dir.path()).unwrap();
        let mut published = None;
        store
            .bootstrap(|id, s| {
                published = Some((id.clone(), s.to_string()));
                Ok(())
            })
            .unwrap()
            .unwrap();
        let (id, secret) = published.unwrap();
        let header = format!("PBSAPIToken {id}:{secret}");
        assert_eq!(store.authenticate(Some(header.as_bytes())).await.unwrap(), id);
        // Second time through the cache, and a wrong secret is still refused after caching.
        assert_eq!(store.authenticate(Some(header.as_bytes())).await.unwrap(), id);
        let wrong = format!("PBSAPIToken {id}:{secret}x");
        assert!(store.authenticate(Some(wrong.as_bytes())).await.is_err());
        // Reopened from disk: same result, and no second bootstrap.
        let reopened = AuthStore::open(dir.path()).unwrap();
        assert_eq!(reopened.authenticate(Some(header.as_bytes())).await.unwrap(), id);
        assert!(reopened.bootstrap(|_, _| panic!("bootstrapped twice")).unwrap().is_none());
        let tokens = std::fs::read_to_string(dir.path().join("tokens.json")).unwrap();
        assert!(!tokens.contains(&secret) && tokens.contains("$argon2id$"));
    }

    #[tokio::test]
    async fn a_panic_while_a_lock_is_held_does_not_break_later_requests() {
        let (_dir, store, header) = bootstrapped();
        assert_eq!(check(&store, &header, None).await.as_deref(), Ok("admin@pbs!default"));
        // A bug panics on another thread while it holds every lock of the store.
        let held = Arc::clone(&store);
        let died = std::thread::spawn(move || {
            let _held = (held.users.write(), held.tokens.write(), held.acl.write(), held.stamps.lock());
            held.verified.panic_holding_locks();
        })
        .join();
        assert!(died.is_err());
        // Requests, privilege checks and account changes all still work.
        assert_eq!(check(&store, &header, None).await.as_deref(), Ok("admin@pbs!default"));
        store.create_user("bob@pbs", None).unwrap();
        let bob = Authid::parse("bob@pbs").unwrap();
        store.set_acl("/datastore/store", Role::DatastoreBackup, &bob, true).unwrap();
        assert!(store.has_privilege(&bob, "/datastore/store", Privilege::DatastoreBackup));
        store.reload(true).unwrap();
        assert!(store.knows(&bob));
    }

    #[tokio::test]
    async fn a_slow_access_file_does_not_block_the_requests_thread() {
        let (dir, store, header) = bootstrapped();
        // An access file whose read waits until someone writes it: a stand-in for slow storage.
        let fifo = dir.path().join("acl.json");
        let _ = std::fs::remove_file(&fifo);
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let writer = std::thread::spawn(move || {
            let told = wait.recv_timeout(std::time::Duration::from_secs(5)).is_ok();
            std::fs::write(&fifo, b"[]").unwrap();
            told
        });
        let request = tokio::spawn({
            let store = Arc::clone(&store);
            async move { check(&store, &header, None).await }
        });
        // This test's only thread runs the request too: it must stay free while the read waits.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let _ = go.send(());
        assert_eq!(request.await.unwrap().as_deref(), Ok("admin@pbs!default"));
        assert!(writer.join().unwrap(), "the file read blocked the thread that runs requests");
    }
}
