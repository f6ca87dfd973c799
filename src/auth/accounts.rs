//! Changes to the access configuration: the first-start bootstrap, users with passwords,
//! API tokens and ACL entries. Used by the server at startup and by the `user`, `token` and
//! `acl` CLI commands. Every change rewrites its file atomically; secrets are stored only as
//! argon2id hashes and a token's secret is handed out once.

use crate::auth::acl::{AclEntry, Role, path_components};
use crate::auth::files::{FileError, write_atomic};
use crate::auth::{
    AuthError, AuthStore, BOOTSTRAP_TOKEN, BOOTSTRAP_USER, TokenEntry, UserEntry, generate_secret, hash_secret,
};
use crate::format::Authid;

impl AuthStore {
    /// On a store without users: creates `admin@pbs` and the token `admin@pbs!default`.
    /// `publish` receives the token id and secret first (to write the bootstrap file), so a
    /// crash never leaves a token nobody knows the secret of; `users.json` is written last
    /// and its presence marks the bootstrap as done.
    pub fn bootstrap(
        &self,
        publish: impl FnOnce(&Authid, &str) -> Result<(), FileError>,
    ) -> Result<Option<Authid>, AuthError> {
        if self.has_users() {
            return Ok(None);
        }
        let authid = Authid::parse(BOOTSTRAP_TOKEN).expect("bootstrap token id is valid");
        let secret = generate_secret()?;
        let admin_token = self.etc.join("admin-token.json");
        publish(&authid, &secret).map_err(|source| AuthError::Save { path: admin_token, source })?;
        self.put_token(&authid, &secret)?;
        let acl = self.etc.join("acl.json");
        if !acl.exists() {
            write_atomic(&acl, b"[]\n", 0o640).map_err(|source| AuthError::Save { path: acl, source })?;
        }
        let user =
            UserEntry { enable: true, expire: 0, comment: Some("created on first start".into()), password: None };
        self.users.write().insert(BOOTSTRAP_USER.to_string(), user);
        self.save_users()?;
        Ok(Some(authid))
    }

    /// Creates a user (`name@realm`), optionally with a password.
    pub fn create_user(&self, userid: &str, password: Option<&str>) -> Result<(), AuthError> {
        self.reload(false)?;
        let authid = Authid::parse(userid).map_err(|e| AuthError::Invalid(e.to_string()))?;
        if authid.is_token() {
            return Err(AuthError::Invalid(format!("'{userid}' is a token id, not a user id")));
        }
        if self.users.read().contains_key(userid) {
            return Err(AuthError::Invalid(format!("user '{userid}' already exists")));
        }
        let password = match password {
            Some(p) if p.len() < 5 => {
                return Err(AuthError::Invalid("password must be at least 5 characters".into()));
            }
            Some(p) => Some(hash_secret(p)?),
            None => None,
        };
        let entry = UserEntry { enable: true, expire: 0, comment: None, password };
        self.users.write().insert(userid.to_string(), entry);
        self.save_users()
    }

    /// Adds (or replaces) a token of an existing user and returns its new secret.
    pub fn create_token(&self, authid: &Authid) -> Result<String, AuthError> {
        self.reload(false)?;
        if !authid.is_token() {
            return Err(AuthError::Invalid(format!("'{authid}' is not a token id (user@realm!name)")));
        }
        if !self.users.read().contains_key(authid.user()) {
            return Err(AuthError::Invalid(format!("no such user '{}'", authid.user())));
        }
        let secret = generate_secret()?;
        self.put_token(authid, &secret)?;
        Ok(secret)
    }

    fn put_token(&self, authid: &Authid, secret: &str) -> Result<(), AuthError> {
        let entry = TokenEntry { hash: hash_secret(secret)?, enable: true, expire: 0, comment: None };
        self.tokens.write().insert(authid.to_string(), entry);
        self.verified.forget(&authid.to_string());
        let json = serde_json::to_vec_pretty(&*self.tokens.read()).expect("tokens serialize");
        let path = self.etc.join("tokens.json");
        write_atomic(&path, &json, 0o600).map_err(|source| AuthError::Save { path, source })
    }

    fn save_users(&self) -> Result<(), AuthError> {
        let json = serde_json::to_vec_pretty(&*self.users.read()).expect("users serialize");
        let path = self.etc.join("users.json");
        write_atomic(&path, &json, 0o600).map_err(|source| AuthError::Save { path, source })
    }

    /// Grants `role` on `path` to an existing user or token (replacing its role there).
    pub fn set_acl(&self, path: &str, role: Role, authid: &Authid, propagate: bool) -> Result<(), AuthError> {
        self.reload(false)?;
        if path_components(path).is_none() {
            return Err(AuthError::Invalid(format!("invalid ACL path '{path}'")));
        }
        let id = authid.to_string();
        let known =
            if authid.is_token() { self.tokens.read().contains_key(&id) } else { self.users.read().contains_key(&id) };
        if !known {
            return Err(AuthError::Invalid(format!("no such user or token '{id}'")));
        }
        let mut acl = self.acl.write();
        acl.retain(|e| !(e.path == path && e.authid == id));
        acl.push(AclEntry { path: path.to_string(), role, authid: id, propagate });
        let json = serde_json::to_vec_pretty(&*acl).expect("acl serializes");
        let file = self.etc.join("acl.json");
        write_atomic(&file, &json, 0o640).map_err(|source| AuthError::Save { path: file, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Credentials, Privilege};

    #[tokio::test]
    async fn users_tokens_and_acls() {
        let dir = tempfile::tempdir().unwrap();
        let store = AuthStore::open(dir.path()).unwrap();
        store.bootstrap(|_, _| Ok(())).unwrap();
        store.create_user("alice@pbs", Some("s3cret-pw")).unwrap();
        assert!(store.create_user("alice@pbs", None).is_err());
        assert!(store.create_user("bob@pbs", Some("x")).is_err(), "short password");
        let users = std::fs::read_to_string(dir.path().join("users.json")).unwrap();
        assert!(!users.contains("s3cret-pw") && users.contains("$argon2id$"));

        let tok = Authid::parse("alice@pbs!t1").unwrap();
        let secret = store.create_token(&tok).unwrap();
        assert!(store.create_token(&Authid::parse("nobody@pbs!t").unwrap()).is_err());
        let header = format!("PBSAPIToken {tok}:{secret}");
        let creds = Credentials { authorization: Some(header.as_bytes()), ..Default::default() };
        assert_eq!(store.authenticate_request(creds).await.unwrap(), tok);

        let alice = Authid::parse("alice@pbs").unwrap();
        let path = "/datastore/store";
        assert!(!store.has_privilege(&alice, path, Privilege::DatastoreBackup));
        store.set_acl(path, Role::DatastoreBackup, &alice, true).unwrap();
        assert!(store.has_privilege(&alice, path, Privilege::DatastoreBackup));
        // The token has no grant of its own yet: capped at nothing.
        assert!(!store.has_privilege(&tok, path, Privilege::DatastoreBackup));
        store.set_acl(path, Role::DatastoreAdmin, &tok, true).unwrap();
        // Capped by the user's privileges.
        assert!(store.has_privilege(&tok, path, Privilege::DatastoreBackup));
        assert!(!store.has_privilege(&tok, path, Privilege::DatastoreRead));
        assert!(store.set_acl("bad path", Role::DatastoreAudit, &alice, true).is_err());

        // Another process (the CLI) changes the files: the server sees it.
        let other = AuthStore::open(dir.path()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        other.set_acl(path, Role::DatastoreReader, &alice, true).unwrap();
        store.reload(false).unwrap();
        assert!(store.has_privilege(&alice, path, Privilege::DatastoreRead));

        let login = store.login("alice@pbs", "s3cret-pw").await.unwrap();
        assert!(login.ticket.starts_with("PBS:alice@pbs:"));
        assert!(store.login("alice@pbs", "wrong").await.is_err());
        let renewed = store.login("alice@pbs", &login.ticket).await.unwrap();
        assert_eq!(renewed.username, "alice@pbs");
        assert!(store.login("admin@pbs", &login.ticket).await.is_err(), "ticket of another user");
        assert!(store.login("admin@pbs", "anything").await.is_err(), "no password set");
    }
}
