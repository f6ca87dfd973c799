//! The management API under `/api2/json` (protocol.md 6): routing by the endpoint table
//! (`crate::http::endpoint`), parameter decoding (query for GET/PUT/DELETE, JSON or form body
//! for POST, raw body for the log upload), and the privilege rules the endpoints share. One
//! file per area: `access.rs` (login), `datastore.rs` (datastore list, status), `groups.rs`
//! (groups, change-owner), `snapshots.rs` (snapshots, files, forget, notes, protected, log
//! upload), `prune.rs`, `namespace.rs`, `tasks.rs` (worker tasks: garbage collection's UPID,
//! task log and status).
//!
//! Answers use the `{"data": ...}` envelope, errors plain text with their status (protocol.md
//! 1.2); both come from `crate::http::encode_reply` through `server::http::reply`.

pub mod access;
pub mod datastore;
pub mod groups;
pub mod namespace;
pub mod prune;
pub mod snapshots;
pub mod tasks;

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::Value;

use crate::auth::Privilege;
use crate::format::{Authid, BackupId, BackupTime, BackupType, DatastoreName, GroupRef, Namespace, SnapshotRef};
use crate::http::endpoint::{BodyKind, Endpoint, Found};
use crate::http::params::{MAX_PARAM_BODY, Params};
use crate::http::{ApiError, BodyError, ErrorKind, HttpError, RequestError};
use crate::http::{Reply, ReplyResult, parse_query};
use crate::server::http::{Body, Ctx, reply};
use crate::store::Datastore;

/// Largest log upload (`upload-backup-log`): a blob of the client's maximum size.
pub const MAX_LOG_BODY: usize = 128 * 1024 * 1024;

/// Why a management call failed, where neither the store, auth nor parameter decoding has the
/// answer; texts as the reference's.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Neither one of the full privileges nor the partial one ([`Call::access`]).
    #[error("permission check failed - missing {} on {path}", .privileges.join("|"))]
    Privileges { privileges: Vec<&'static str>, path: String },
    #[error("user '{0}' is inactive or non-existent")]
    UnknownUser(Authid),
    #[error("namespace '{parent}' is already at the maximum depth of {max}")]
    TooDeep { parent: Namespace, max: u64 },
    #[error("unable to read file system usage of {path:?} - {source}")]
    Usage { path: std::path::PathBuf, source: nix::Error },
    #[error("no such task '{0}'")]
    NoSuchTask(String),
    /// Only a task's starter (or its user, for a token) sees it.
    #[error("permission check failed")]
    NotTaskOwner,
    /// Work on the blocking pool panicked or was cancelled.
    #[error("task failed - {0}")]
    Blocking(#[from] tokio::task::JoinError),
}

impl HttpError for CallError {
    fn kind(&self) -> ErrorKind {
        match self {
            CallError::Privileges { .. } | CallError::NotTaskOwner => ErrorKind::Forbidden,
            CallError::NoSuchTask(_) => ErrorKind::NotFound,
            CallError::Blocking(_) => ErrorKind::Internal,
            CallError::UnknownUser(_) | CallError::TooDeep { .. } | CallError::Usage { .. } => ErrorKind::BadRequest,
        }
    }
}

/// One authenticated management call, decoded.
pub struct Call {
    pub ctx: Ctx,
    pub authid: Authid,
    pub method: Method,
    pub params: Params,
    /// The raw body of an octet-stream upload (empty otherwise).
    pub body: Bytes,
}

/// Routes an authenticated request below `/api2/json` to what the endpoint table `found`.
pub async fn route(
    ctx: Ctx,
    req: Request<Incoming>,
    path: &str,
    found: Found<'_>,
    authid: Authid,
) -> Result<Response<Body>, ApiError> {
    if found.endpoint == Some(Endpoint::Version) {
        return Ok(reply(Ok(Reply::Data(version()))));
    }
    let call = decode(ctx, req, authid, found.body == BodyKind::Raw).await?;
    let store = found.store.map(DatastoreName::parse).transpose()?;
    let upid = found.upid.unwrap_or_default();
    let result = match (found.endpoint, &store) {
        (Some(Endpoint::DatastoreList), _) => datastore::list(&call).await,
        (Some(Endpoint::TaskLog), _) => return tasks::log(upid, &call.authid, &call.params),
        (Some(Endpoint::TaskStatus), _) => tasks::status(upid, &call.authid).map(Reply::Data),
        (Some(endpoint), Some(store)) => match endpoint {
            Endpoint::Status => datastore::status(&call, store).await,
            Endpoint::GarbageCollect => datastore::garbage_collect(&call, store),
            Endpoint::Groups => groups::list(&call, store).await,
            Endpoint::ChangeOwner => groups::change_owner(&call, store).await,
            Endpoint::Snapshots => snapshots::list(&call, store).await,
            Endpoint::Forget => snapshots::forget(&call, store).await,
            Endpoint::Files => snapshots::files(&call, store).await,
            Endpoint::Notes => snapshots::notes(&call, store).await,
            Endpoint::SetNotes => snapshots::set_notes(&call, store).await,
            Endpoint::Protected => snapshots::protected(&call, store).await,
            Endpoint::SetProtected => snapshots::set_protected(&call, store).await,
            Endpoint::UploadLog => snapshots::upload_log(&call, store).await,
            Endpoint::Prune => prune::prune(&call, store).await,
            Endpoint::Namespaces => namespace::list(&call, store).await,
            Endpoint::CreateNamespace => namespace::create(&call, store).await,
            Endpoint::DeleteNamespace => namespace::delete(&call, store).await,
            _ => Err(RequestError::NoSuchPath(path.to_string()).into()),
        },
        _ => Err(RequestError::NoSuchPath(path.to_string()).into()),
    };
    Ok(reply(result))
}

/// What every call reads first (login too): the query's parameters, the content type, and
/// the body, at most `limit` bytes of it.
pub(crate) async fn read_request(
    req: Request<Incoming>,
    limit: usize,
) -> Result<(Params, Option<String>, Bytes), ApiError> {
    let content_type = req.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let params = Params::from_query(parse_query(req.uri().query()));
    let body = Limited::new(req.into_body(), limit)
        .collect()
        .await
        .map_err(|e| -> ApiError {
            if e.is::<http_body_util::LengthLimitError>() {
                RequestError::BodyTooLarge.into()
            } else {
                BodyError::Http1(e).into()
            }
        })?
        .to_bytes();
    Ok((params, content_type, body))
}

/// Parameters from the query, plus the JSON/form body of a POST, or the raw upload body.
async fn decode(ctx: Ctx, req: Request<Incoming>, authid: Authid, upload: bool) -> Result<Call, ApiError> {
    let method = req.method().clone();
    let limit = if upload { MAX_LOG_BODY } else { MAX_PARAM_BODY };
    let (mut params, content_type, body) = read_request(req, limit).await?;
    if !upload {
        let ct = content_type.as_deref().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if !body.is_empty() && ct != "application/json" && ct != "application/x-www-form-urlencoded" {
            return Err(RequestError::ContentType.into());
        }
        params.merge_body(content_type.as_deref(), &body)?;
    }
    let body = if upload { body } else { Bytes::new() };
    Ok(Call { ctx, authid, method, params, body })
}

/// The strings the CLI prints as `version.release` (numbers would crash it, pitfall 28).
pub fn version() -> Value {
    serde_json::json!({
        "version": "3.2",
        "release": "4",
        "repoid": format!("chunkyard-{}", env!("CARGO_PKG_VERSION")),
    })
}

impl Call {
    /// The datastore, opened; 400 for an unknown name.
    pub fn store(&self, name: &DatastoreName) -> Result<Arc<Datastore>, ApiError> {
        Ok(self.ctx.state.datastore(name)?)
    }

    /// `ns` (absent = root).
    pub fn ns(&self) -> Result<Namespace, ApiError> {
        self.ns_param("ns")
    }

    pub fn ns_param(&self, name: &str) -> Result<Namespace, ApiError> {
        match self.params.opt_str(name)? {
            Some(ns) => Ok(Namespace::parse(ns)?),
            None => Ok(Namespace::root()),
        }
    }

    /// `backup-type` + `backup-id`.
    pub fn group(&self) -> Result<GroupRef, ApiError> {
        let ty: BackupType = self.params.str("backup-type")?.parse()?;
        let id = BackupId::parse(self.params.str("backup-id")?)?;
        Ok(GroupRef { ty, id })
    }

    /// The group when both `backup-type` and `backup-id` are given.
    pub fn opt_group(&self) -> Result<Option<GroupRef>, ApiError> {
        if self.params.has("backup-type") || self.params.has("backup-id") {
            return self.group().map(Some);
        }
        Ok(None)
    }

    /// `backup-type` + `backup-id` + `backup-time`.
    pub fn snapshot(&self) -> Result<SnapshotRef, ApiError> {
        let group = self.group()?;
        let epoch = self.params.int("backup-time", 0, i64::MAX as u64)? as i64;
        Ok(SnapshotRef { group, time: BackupTime::from_epoch(epoch)? })
    }

    /// Whether the caller holds `privilege` on the namespace's ACL path.
    pub fn has(&self, store: &DatastoreName, ns: &Namespace, privilege: Privilege) -> bool {
        self.ctx.state.auth.has_privilege(&self.authid, &acl_path(store, ns), privilege)
    }

    /// 403 "missing permissions '<priv>' on '<path>'" unless the caller holds `privilege`.
    pub fn require(&self, store: &DatastoreName, ns: &Namespace, privilege: Privilege) -> Result<(), ApiError> {
        Ok(self.ctx.state.auth.check_privilege(&self.authid, &acl_path(store, ns), privilege)?)
    }

    /// PBS's two-level check: `full` grants access to every group, `partial` only to the
    /// caller's own (returns `Limited`); neither is 403.
    pub fn access(
        &self,
        store: &DatastoreName,
        ns: &Namespace,
        full: &[Privilege],
        partial: Privilege,
    ) -> Result<Access, ApiError> {
        if full.iter().any(|p| self.has(store, ns, *p)) {
            return Ok(Access::Full);
        }
        if self.has(store, ns, partial) {
            return Ok(Access::Limited);
        }
        let privileges = full.iter().map(|p| p.name()).chain([partial.name()]).collect();
        Err(CallError::Privileges { privileges, path: acl_path(store, ns) }.into())
    }

    /// `access` plus, when limited, the group-owner check (400 like the reference).
    pub async fn group_access(
        &self,
        store: &Arc<Datastore>,
        ns: &Namespace,
        group: &GroupRef,
        full: &[Privilege],
        partial: Privilege,
    ) -> Result<(), ApiError> {
        if self.access(store.name(), ns, full, partial)? == Access::Full {
            return Ok(());
        }
        check_owner(store, ns, group, &self.authid).await
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Full,
    Limited,
}

/// 400 "backup owner check failed (<authid> != <owner>)" unless `authid` matches the owner.
pub async fn check_owner(
    store: &Arc<Datastore>,
    ns: &Namespace,
    group: &GroupRef,
    authid: &Authid,
) -> Result<(), ApiError> {
    let owner = owner_of(store, ns, group).await?;
    Ok(crate::store::list::check_owner(authid, &owner)?)
}

pub async fn owner_of(store: &Arc<Datastore>, ns: &Namespace, group: &GroupRef) -> Result<Authid, ApiError> {
    let (s, ns, g) = (Arc::clone(store), ns.clone(), group.clone());
    blocking(move || Ok(s.group_owner(&ns, &g)?)).await
}

/// ACL path of a namespace: `/datastore/<store>[/<ns>...]`.
pub fn acl_path(store: &DatastoreName, ns: &Namespace) -> String {
    let mut path = format!("/datastore/{store}");
    for c in ns.components() {
        path.push('/');
        path.push_str(c);
    }
    path
}

/// Runs file-system work on the blocking pool.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(CallError::Blocking)?
}

pub fn data(v: Value) -> ReplyResult {
    Ok(Reply::Data(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_paths_follow_the_namespace() {
        let store = DatastoreName::parse("store1").unwrap();
        assert_eq!(acl_path(&store, &Namespace::root()), "/datastore/store1");
        assert_eq!(acl_path(&store, &Namespace::parse("a/b").unwrap()), "/datastore/store1/a/b");
    }
}
