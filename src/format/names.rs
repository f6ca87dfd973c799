//! Validated names: the only way a string from the wire or the disk becomes part of a path.
//!
//! Every type here is built through the spec's regexes (formats.md 5.4, protocol.md 7) and
//! nothing else, so code that holds a `BackupId` or a `Namespace` can join it to a path without
//! thinking about `..`, `/` or NUL. Constructors are `parse` (or `FromStr`); there is no way to
//! wrap an unchecked string.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::LazyLock;

use regex::Regex;

/// Why a name was refused. The text is what the API answers, so it names the offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("invalid backup type '{0}'")]
    BackupType(String),
    #[error("invalid backup id '{0}'")]
    BackupId(String),
    #[error("invalid backup time {0}")]
    BackupTime(String),
    #[error("invalid namespace '{0}'")]
    Namespace(String),
    #[error("invalid archive name '{0}'")]
    ArchiveName(String),
    #[error("invalid datastore name '{0}'")]
    DatastoreName(String),
    #[error("invalid digest '{0}'")]
    Digest(String),
    #[error("invalid auth id '{0}'")]
    Authid(String),
}

/// `SAFE_ID` of the reference: a first character that can't start a dot-name, then a tame set.
const SAFE_ID: &str = r"[A-Za-z0-9_][A-Za-z0-9._\-]*";

static SAFE_ID_RE: LazyLock<Regex> = LazyLock::new(|| Regex::new(&format!("^(?:{SAFE_ID})$")).unwrap());
static SNAPSHOT_DIR_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$").unwrap());
static DIGEST_RE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-f0-9]{64}$").unwrap());
// PBS user names: no whitespace, no ':' or '/' (they delimit tickets and paths), no '@'/'!'.
static USER_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[^\s:/@!\x00-\x1f\x7f]{1,64}@[A-Za-z0-9_][A-Za-z0-9._\-]{0,31}$").unwrap());

fn safe_id(s: &str) -> bool {
    SAFE_ID_RE.is_match(s)
}

/// `vm`, `ct` or `host`. Declared in listing order (ct < host < vm).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BackupType {
    Ct,
    Host,
    Vm,
}

impl BackupType {
    pub const ALL: [BackupType; 3] = [BackupType::Ct, BackupType::Host, BackupType::Vm];

    pub fn as_str(self) -> &'static str {
        match self {
            BackupType::Ct => "ct",
            BackupType::Host => "host",
            BackupType::Vm => "vm",
        }
    }
}

impl FromStr for BackupType {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        match s {
            "ct" => Ok(BackupType::Ct),
            "host" => Ok(BackupType::Host),
            "vm" => Ok(BackupType::Vm),
            _ => Err(NameError::BackupType(s.to_string())),
        }
    }
}

impl fmt::Display for BackupType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest backup id we accept. The reference has no limit in its schema, but a name must fit
/// in one path component (255 bytes) and leave room for temp-file suffixes next to it.
pub const MAX_BACKUP_ID_LEN: usize = 128;

macro_rules! string_name {
    ($(#[$doc:meta])* $name:ident, $err:ident, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, NameError> {
                let check: fn(&str) -> bool = $check;
                if check(s) { Ok($name(s.to_string())) } else { Err(NameError::$err(s.to_string())) }
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::parse(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_name!(
    /// A backup group's id (`^[A-Za-z0-9_][A-Za-z0-9._\-]*$`, at most [`MAX_BACKUP_ID_LEN`]).
    BackupId,
    BackupId,
    |s| s.len() <= MAX_BACKUP_ID_LEN && safe_id(s)
);

string_name!(
    /// A datastore's name: SAFE_ID, 3 to 32 characters.
    DatastoreName,
    DatastoreName,
    |s| (3..=32).contains(&s.len()) && safe_id(s)
);

/// Seconds since the epoch of a snapshot; its directory name is the UTC RFC 3339 form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackupTime(i64);

/// 9999-12-31T23:59:59Z: the directory name has a four-digit year.
const MAX_BACKUP_TIME: i64 = 253_402_300_799;

impl BackupTime {
    pub fn from_epoch(epoch: i64) -> Result<Self, NameError> {
        if (1..=MAX_BACKUP_TIME).contains(&epoch) {
            Ok(BackupTime(epoch))
        } else {
            Err(NameError::BackupTime(epoch.to_string()))
        }
    }

    pub fn epoch(self) -> i64 {
        self.0
    }

    /// `YYYY-MM-DDTHH:MM:SSZ`, the snapshot directory name.
    pub fn dir_name(self) -> String {
        let dt = chrono::DateTime::from_timestamp(self.0, 0).expect("range checked at construction");
        dt.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    }

    /// Parses a snapshot directory name; anything but the exact UTC form is refused.
    pub fn parse_dir_name(s: &str) -> Result<Self, NameError> {
        if !SNAPSHOT_DIR_RE.is_match(s) {
            return Err(NameError::BackupTime(s.to_string()));
        }
        let dt = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%SZ")
            .map_err(|_| NameError::BackupTime(s.to_string()))?;
        let time = Self::from_epoch(dt.and_utc().timestamp())?;
        // chrono reads second 60 as a leap second of :59; one time must have one directory.
        if time.dir_name() != s {
            return Err(NameError::BackupTime(s.to_string()));
        }
        Ok(time)
    }
}

impl fmt::Display for BackupTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.dir_name())
    }
}

/// Deepest namespace below the root (formats.md 5.4).
pub const MAX_NAMESPACE_DEPTH: usize = 7;
/// Longest joined namespace name.
pub const MAX_NAMESPACE_LEN: usize = 256;

/// A namespace path `a/b/c`; the root namespace has no components.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace(Vec<String>);

impl Namespace {
    pub fn root() -> Self {
        Namespace(Vec::new())
    }

    /// Parses `a/b/c`; the empty string is the root namespace.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.is_empty() {
            return Ok(Self::root());
        }
        let bad = || NameError::Namespace(s.to_string());
        if s.len() > MAX_NAMESPACE_LEN {
            return Err(bad());
        }
        let parts: Vec<String> = s.split('/').map(str::to_string).collect();
        if parts.len() > MAX_NAMESPACE_DEPTH || !parts.iter().all(|p| safe_id(p)) {
            return Err(bad());
        }
        Ok(Namespace(parts))
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    pub fn depth(&self) -> usize {
        self.0.len()
    }

    pub fn components(&self) -> &[String] {
        &self.0
    }

    /// The child namespace `self/name`, checked against the depth and length limits.
    pub fn child(&self, name: &str) -> Result<Self, NameError> {
        let joined = if self.is_root() { name.to_string() } else { format!("{self}/{name}") };
        Self::parse(&joined)
    }

    pub fn parent(&self) -> Option<Self> {
        if self.is_root() { None } else { Some(Namespace(self.0[..self.0.len() - 1].to_vec())) }
    }

    /// On-disk path relative to the datastore root: `ns/a/ns/b` (empty for the root).
    pub fn rel_path(&self) -> PathBuf {
        let mut p = PathBuf::new();
        for c in &self.0 {
            p.push("ns");
            p.push(c);
        }
        p
    }
}

impl FromStr for Namespace {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        Self::parse(s)
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("/"))
    }
}

/// What an archive file holds, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArchiveKind {
    Fixed,
    Dynamic,
    Blob,
}

impl ArchiveKind {
    pub fn extension(self) -> &'static str {
        match self {
            ArchiveKind::Fixed => ".fidx",
            ArchiveKind::Dynamic => ".didx",
            ArchiveKind::Blob => ".blob",
        }
    }
}

/// An archive file name inside a snapshot: SAFE_ID ending in `.fidx`, `.didx` or `.blob`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArchiveName(String);

/// Longest archive name: a path component, with room for the temp suffix written beside it.
pub const MAX_ARCHIVE_NAME_LEN: usize = 200;

impl ArchiveName {
    /// Parses any SAFE_ID name with a known archive extension.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.len() > MAX_ARCHIVE_NAME_LEN || !safe_id(s) || Self::kind_of(s).is_none() {
            return Err(NameError::ArchiveName(s.to_string()));
        }
        Ok(ArchiveName(s.to_string()))
    }

    /// Parses a name that must be of one kind (the error says which extension was wrong
    /// in the protocol layer, which knows the endpoint's wording).
    pub fn parse_kind(s: &str, kind: ArchiveKind) -> Result<Self, NameError> {
        let name = Self::parse(s)?;
        if name.kind() == kind { Ok(name) } else { Err(NameError::ArchiveName(s.to_string())) }
    }

    fn kind_of(s: &str) -> Option<ArchiveKind> {
        [ArchiveKind::Fixed, ArchiveKind::Dynamic, ArchiveKind::Blob]
            .into_iter()
            .find(|k| s.len() > k.extension().len() && s.ends_with(k.extension()))
    }

    pub fn kind(&self) -> ArchiveKind {
        Self::kind_of(&self.0).expect("checked at construction")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ArchiveName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        Self::parse(s)
    }
}

impl fmt::Display for ArchiveName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// SHA-256 content address of a chunk.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// Parses 64 lowercase hex characters (uppercase is refused, as by the reference).
    pub fn from_hex(s: &str) -> Result<Self, NameError> {
        if !DIGEST_RE.is_match(s) {
            return Err(NameError::Digest(s.to_string()));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| NameError::Digest(s.to_string()))?;
        Ok(Digest(out))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The chunk directory below `.chunks`: the first two bytes as four hex digits.
    pub fn prefix_dir(&self) -> String {
        hex::encode(&self.0[..2])
    }

    /// SHA-256 of `data`.
    pub fn of(data: &[u8]) -> Self {
        use sha2::Digest as _;
        Digest(sha2::Sha256::digest(data).into())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl FromStr for Digest {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        Self::from_hex(s)
    }
}

/// A user (`name@realm`) or one of its API tokens (`name@realm!token`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Authid {
    user: String,
    token: Option<String>,
}

impl Authid {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let bad = || NameError::Authid(s.to_string());
        let (user, token) = match s.split_once('!') {
            Some((u, t)) => (u, Some(t)),
            None => (s, None),
        };
        if !USER_RE.is_match(user) {
            return Err(bad());
        }
        if let Some(t) = token
            && (t.len() > 64 || !safe_id(t))
        {
            return Err(bad());
        }
        Ok(Authid { user: user.to_string(), token: token.map(str::to_string) })
    }

    /// `name@realm`, the user this id is or belongs to.
    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn token_name(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub fn is_token(&self) -> bool {
        self.token.is_some()
    }

    /// The user this id belongs to, as an `Authid` of its own.
    pub fn user_id(&self) -> Authid {
        Authid { user: self.user.clone(), token: None }
    }

    /// Ownership rule of protocol.md 1.3: equal, or the owner is a token of this user.
    pub fn matches_owner(&self, owner: &Authid) -> bool {
        self == owner || (!self.is_token() && owner.is_token() && owner.user == self.user)
    }
}

impl FromStr for Authid {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        Self::parse(s)
    }
}

impl fmt::Display for Authid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.token {
            Some(t) => write!(f, "{}!{}", self.user, t),
            None => f.write_str(&self.user),
        }
    }
}

/// A backup group: type and id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupRef {
    pub ty: BackupType,
    pub id: BackupId,
}

impl GroupRef {
    /// Path relative to its namespace directory: `<type>/<id>`.
    pub fn rel_path(&self) -> PathBuf {
        PathBuf::from(self.ty.as_str()).join(self.id.as_str())
    }
}

impl fmt::Display for GroupRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ty, self.id)
    }
}

/// A snapshot: its group and time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SnapshotRef {
    pub group: GroupRef,
    pub time: BackupTime,
}

impl SnapshotRef {
    /// Path relative to its namespace directory: `<type>/<id>/<time>`.
    pub fn rel_path(&self) -> PathBuf {
        self.group.rel_path().join(self.time.dir_name())
    }
}

impl fmt::Display for SnapshotRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.group, self.time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_ids() {
        for ok in ["a", "myhost", "_x", "100", "a.b-c_d"] {
            BackupId::parse(ok).unwrap();
        }
        for bad in ["", ".", "..", ".hidden", "-x", "a/b", "a b", "ä", "a\0b", &"x".repeat(129)] {
            assert!(BackupId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn backup_time_round_trip() {
        let t = BackupTime::from_epoch(1_593_179_765).unwrap();
        assert_eq!(t.dir_name(), "2020-06-26T13:56:05Z");
        assert_eq!(BackupTime::parse_dir_name("2020-06-26T13:56:05Z").unwrap(), t);
        assert!(BackupTime::parse_dir_name("2020-06-26T13:56:05+00:00").is_err());
        assert!(BackupTime::parse_dir_name("2020-13-26T13:56:05Z").is_err());
        assert!(BackupTime::from_epoch(0).is_err());
        assert!(BackupTime::from_epoch(MAX_BACKUP_TIME + 1).is_err());
    }

    #[test]
    fn leap_second_dir_names_are_refused() {
        // Found by fuzz/fuzz_targets/names.rs: chrono reads second 60 as a leap second of
        // 23:59:59, so two directory names mapped to one backup time.
        assert!(BackupTime::parse_dir_name("2016-12-31T23:59:60Z").is_err());
        assert!(BackupTime::parse_dir_name("2022-06-06T13:20:60Z").is_err());
    }

    #[test]
    fn namespaces() {
        assert!(Namespace::parse("").unwrap().is_root());
        let ns = Namespace::parse("a/b").unwrap();
        assert_eq!(ns.rel_path(), PathBuf::from("ns/a/ns/b"));
        assert_eq!(ns.to_string(), "a/b");
        for bad in ["/a", "a/", "a//b", "..", "a/../b", "a/b/c/d/e/f/g/h"] {
            assert!(Namespace::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Namespace::parse("a/b/c/d/e/f/g").is_ok());
    }

    #[test]
    fn archive_names() {
        assert_eq!(ArchiveName::parse("root.pxar.didx").unwrap().kind(), ArchiveKind::Dynamic);
        assert_eq!(ArchiveName::parse("disk.img.fidx").unwrap().kind(), ArchiveKind::Fixed);
        assert_eq!(ArchiveName::parse("index.json.blob").unwrap().kind(), ArchiveKind::Blob);
        for bad in ["x.txt", ".didx", "../x.didx", "a/b.blob", "x.didx/"] {
            assert!(ArchiveName::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(ArchiveName::parse_kind("x.didx", ArchiveKind::Fixed).is_err());
    }

    #[test]
    fn digests() {
        let d = Digest::of(b"hello");
        assert_eq!(d.to_hex(), "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        assert_eq!(d.prefix_dir(), "2cf2");
        assert_eq!(Digest::from_hex(&d.to_hex()).unwrap(), d);
        assert!(Digest::from_hex(&d.to_hex().to_uppercase()).is_err());
        assert!(Digest::from_hex("2cf2").is_err());
    }

    #[test]
    fn authids_and_owners() {
        let user = Authid::parse("admin@pbs").unwrap();
        let token = Authid::parse("admin@pbs!default").unwrap();
        assert_eq!(token.user_id(), user);
        assert!(user.matches_owner(&token));
        assert!(!token.matches_owner(&user));
        assert!(token.matches_owner(&token));
        for bad in ["admin", "a@", "@pbs", "a b@pbs", "a@pbs!", "a@pbs!x/y", "a/b@pbs"] {
            assert!(Authid::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
