//! Authentication and (for now) authorization: the user/token store under `<data-dir>/etc`,
//! the `PBSAPIToken` header, and the bootstrap of the first admin token.
//!
//! Layout (ready for tickets and ACLs of issue #4): `users.json` (user -> flags),
//! `tokens.json` (token id -> argon2id hash of the secret + flags), `acl.json` (entries; empty
//! now, admin@pbs and its tokens may do everything). Secrets never touch the disk in clear,
//! except the bootstrap file `admin-token.json` the operator picks the first token from.
//!
//! Argon2 is deliberately slow; a verified secret is remembered as authid -> SHA-256(secret)
//! so a backup's many requests pay for it once. Both comparisons are constant-time.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use crate::format::Authid;
use crate::server::files::write_atomic;

/// The user created on first start, and its token.
pub const BOOTSTRAP_USER: &str = "admin@pbs";
pub const BOOTSTRAP_TOKEN: &str = "admin@pbs!default";

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The request did not authenticate; the text follows "authentication failed - ".
    #[error("authentication failed - {0}")]
    Failed(&'static str),
    #[error("missing permissions '{privilege}' on '{path}'")]
    MissingPrivilege {
        privilege: &'static str,
        path: String,
    },
    #[error("unable to read {path}: {message}")]
    Load { path: PathBuf, message: String },
    #[error("unable to write {path}: {source}")]
    Save {
        path: PathBuf,
        source: std::io::Error,
    },
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

/// Privileges the protocol checks (names as in PBS ACLs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    DatastoreAudit,
    DatastoreBackup,
    DatastoreRead,
    DatastoreModify,
    DatastorePrune,
}

impl Privilege {
    pub fn name(self) -> &'static str {
        match self {
            Privilege::DatastoreAudit => "Datastore.Audit",
            Privilege::DatastoreBackup => "Datastore.Backup",
            Privilege::DatastoreRead => "Datastore.Read",
            Privilege::DatastoreModify => "Datastore.Modify",
            Privilege::DatastorePrune => "Datastore.Prune",
        }
    }
}

/// The user and token store of one server.
pub struct AuthStore {
    etc: PathBuf,
    users: RwLock<BTreeMap<String, UserEntry>>,
    tokens: RwLock<BTreeMap<String, TokenEntry>>,
    verified: Mutex<HashMap<String, [u8; 32]>>,
}

impl AuthStore {
    /// Loads `users.json` and `tokens.json` from `etc` (missing files = empty).
    pub fn open(etc: &Path) -> Result<Arc<AuthStore>, AuthError> {
        Ok(Arc::new(AuthStore {
            etc: etc.to_path_buf(),
            users: RwLock::new(load_json(&etc.join("users.json"))?),
            tokens: RwLock::new(load_json(&etc.join("tokens.json"))?),
            verified: Mutex::new(HashMap::new()),
        }))
    }

    pub fn has_users(&self) -> bool {
        !self.users.read().map(|u| u.is_empty()).unwrap_or(true)
    }

    /// On a store without users: creates `admin@pbs` and the token `admin@pbs!default`.
    /// `publish` receives the token id and secret first (to write the bootstrap file), so a
    /// crash never leaves a token nobody knows the secret of; `users.json` is written last
    /// and its presence marks the bootstrap as done.
    pub fn bootstrap(
        &self,
        publish: impl FnOnce(&Authid, &str) -> std::io::Result<()>,
    ) -> Result<Option<Authid>, AuthError> {
        if self.has_users() {
            return Ok(None);
        }
        let authid = Authid::parse(BOOTSTRAP_TOKEN).expect("bootstrap token id is valid");
        let secret = generate_secret()?;
        let admin_token = self.etc.join("admin-token.json");
        publish(&authid, &secret).map_err(|source| AuthError::Save {
            path: admin_token,
            source,
        })?;
        let entry = TokenEntry {
            hash: hash_secret(&secret)?,
            enable: true,
            expire: 0,
            comment: None,
        };
        self.tokens
            .write()
            .expect("token lock")
            .insert(authid.to_string(), entry);
        self.save_tokens()?;
        let acl = self.etc.join("acl.json");
        if !acl.exists() {
            write_atomic(&acl, b"[]\n", 0o640)
                .map_err(|source| AuthError::Save { path: acl, source })?;
        }
        let user = UserEntry {
            enable: true,
            expire: 0,
            comment: Some("created on first start".into()),
        };
        self.users
            .write()
            .expect("user lock")
            .insert(BOOTSTRAP_USER.to_string(), user);
        let users = serde_json::to_vec_pretty(&*self.users.read().expect("user lock"))
            .expect("users serialize");
        let path = self.etc.join("users.json");
        write_atomic(&path, &users, 0o640).map_err(|source| AuthError::Save { path, source })?;
        Ok(Some(authid))
    }

    /// Adds (or replaces) a token of an existing user and returns its new secret.
    pub fn create_token(&self, authid: &Authid) -> Result<String, AuthError> {
        if !authid.is_token()
            || !self
                .users
                .read()
                .expect("user lock")
                .contains_key(authid.user())
        {
            return Err(AuthError::Failed("no such user"));
        }
        let secret = generate_secret()?;
        let entry = TokenEntry {
            hash: hash_secret(&secret)?,
            enable: true,
            expire: 0,
            comment: None,
        };
        self.tokens
            .write()
            .expect("token lock")
            .insert(authid.to_string(), entry);
        self.verified
            .lock()
            .expect("cache lock")
            .remove(&authid.to_string());
        self.save_tokens()?;
        Ok(secret)
    }

    fn save_tokens(&self) -> Result<(), AuthError> {
        let tokens = serde_json::to_vec_pretty(&*self.tokens.read().expect("token lock"))
            .expect("tokens serialize");
        let path = self.etc.join("tokens.json");
        write_atomic(&path, &tokens, 0o600).map_err(|source| AuthError::Save { path, source })
    }

    /// Authenticates a request from its `Authorization` header value.
    pub async fn authenticate(
        self: &Arc<Self>,
        header: Option<&[u8]>,
    ) -> Result<Authid, AuthError> {
        let (authid, secret) = parse_token_header(header)?;
        let key = authid.to_string();
        let hash = {
            let users = self.users.read().expect("user lock");
            let tokens = self.tokens.read().expect("token lock");
            let token = tokens.get(&key).ok_or(AuthError::Failed("invalid token"))?;
            let user = users
                .get(authid.user())
                .ok_or(AuthError::Failed("invalid token"))?;
            let now = chrono::Utc::now().timestamp();
            let live = |enable: bool, expire: i64| enable && (expire == 0 || expire > now);
            if !live(token.enable, token.expire) || !live(user.enable, user.expire) {
                return Err(AuthError::Failed(
                    "user account or token disabled or expired.",
                ));
            }
            token.hash.clone()
        };
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        if let Some(known) = self.verified.lock().expect("cache lock").get(&key) {
            if bool::from(known.ct_eq(&digest)) {
                return Ok(authid);
            }
        }
        // argon2 takes tens of milliseconds: keep it off the connection's thread.
        let ok = tokio::task::spawn_blocking(move || verify_secret(&secret, &hash))
            .await
            .map_err(|_| AuthError::Failed("internal error"))?;
        if !ok {
            return Err(AuthError::Failed("invalid token"));
        }
        self.verified
            .lock()
            .expect("cache lock")
            .insert(key, digest);
        Ok(authid)
    }

    /// For now the only grant: admin@pbs and its tokens hold every privilege everywhere.
    pub fn check_privilege(
        &self,
        authid: &Authid,
        path: &str,
        privilege: Privilege,
    ) -> Result<(), AuthError> {
        if authid.user() == BOOTSTRAP_USER {
            return Ok(());
        }
        Err(AuthError::MissingPrivilege {
            privilege: privilege.name(),
            path: path.to_string(),
        })
    }
}

/// `PBSAPIToken <authid>:<secret>` (a space or `=` after the prefix), split at the first `:`,
/// the secret percent-decoded.
pub fn parse_token_header(header: Option<&[u8]>) -> Result<(Authid, String), AuthError> {
    let raw = header.ok_or(AuthError::Failed("no authentication credentials provided."))?;
    let value =
        std::str::from_utf8(raw).map_err(|_| AuthError::Failed("invalid authorization header"))?;
    let rest = value
        .strip_prefix("PBSAPIToken")
        .and_then(|r| r.strip_prefix(' ').or_else(|| r.strip_prefix('=')))
        .ok_or(AuthError::Failed("unsupported authorization header"))?;
    let (id, secret) = rest
        .split_once(':')
        .ok_or(AuthError::Failed("invalid API token header"))?;
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

fn load_json<T: serde::de::DeserializeOwned + Default>(path: &Path) -> Result<T, AuthError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| AuthError::Load {
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(AuthError::Load {
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
    }
}

/// A random secret in the UUID form PBS hands out for tokens.
fn generate_secret() -> Result<String, AuthError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| AuthError::Hash(e.to_string()))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

fn hash_secret(secret: &str) -> Result<String, AuthError> {
    argon2::Argon2::default()
        .hash_password(secret.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

fn verify_secret(secret: &str, hash: &str) -> bool {
    argon2::Argon2::default()
        .verify_password(secret.as_bytes(), hash)
        .is_ok()
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
        for bad in [
            &b"PBSAPITokena@pbs!t:s"[..],
            b"Bearer x",
            b"PBSAPIToken a@pbs!t",
            b"PBSAPIToken a@pbs:s",
            b"\xff",
        ] {
            assert!(
                matches!(parse_token_header(Some(bad)), Err(AuthError::Failed(_))),
                "{bad:?}"
            );
        }
        assert!(parse_token_header(None).is_err());
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
        assert_eq!(
            store.authenticate(Some(header.as_bytes())).await.unwrap(),
            id
        );
        // Second time through the cache, and a wrong secret is still refused after caching.
        assert_eq!(
            store.authenticate(Some(header.as_bytes())).await.unwrap(),
            id
        );
        let wrong = format!("PBSAPIToken {id}:{secret}x");
        assert!(store.authenticate(Some(wrong.as_bytes())).await.is_err());
        // Reopened from disk: same result, and no second bootstrap.
        let reopened = AuthStore::open(dir.path()).unwrap();
        assert_eq!(
            reopened
                .authenticate(Some(header.as_bytes()))
                .await
                .unwrap(),
            id
        );
        assert!(
            reopened
                .bootstrap(|_, _| panic!("bootstrapped twice"))
                .unwrap()
                .is_none()
        );
        let tokens = std::fs::read_to_string(dir.path().join("tokens.json")).unwrap();
        assert!(!tokens.contains(&secret) && tokens.contains("$argon2id$"));
    }
}
