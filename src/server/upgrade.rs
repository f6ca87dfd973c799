//! `GET /api2/json/backup` and `GET /api2/json/reader`: the checks PBS makes before it
//! switches protocols (protocol.md 1.4), the 101 answer, and the hand-over of the upgraded
//! stream to the HTTP/2 session. A failed check answers with an error and never 101.

use std::sync::Arc;

use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::auth::Privilege;
use crate::format::{Authid, BackupId, BackupTime, BackupType, DatastoreName, GroupRef, Namespace, SnapshotRef};
use crate::http::params::Params;
use crate::http::parse_query;
use crate::http::{ApiError, ErrorKind, HttpError};
use crate::protocol::backup::{self, BackupSessionStart};
use crate::protocol::reader::{self, ReaderSessionStart};
use crate::server::http::{Body, Ctx};
use crate::server::{Refused, ServerState};
use tokio::sync::{OwnedSemaphorePermit, TryAcquireError};

pub const BACKUP_PROTOCOL: &str = "proxmox-backup-protocol-v1";
pub const READER_PROTOCOL: &str = "proxmox-backup-reader-protocol-v1";

/// Why the protocol upgrade is refused, beyond its parameters, privileges and datastore
/// (protocol.md 1.4), with the reference's texts.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("unexpected http version '{0:?}' (expected version < 2)")]
    HttpVersion(Version),
    #[error("missing Upgrade header")]
    NoUpgradeHeader,
    #[error("invalid protocol name")]
    Protocol,
    #[error("unable to run benchmark without --benchmark flags")]
    BenchmarkWithoutFlag,
    #[error("benchmark flags is only allowed on 'host/benchmark'")]
    BenchmarkFlagElsewhere,
    /// The reader upgrade needs Read, or Backup (for owned groups), on the namespace.
    #[error("no permissions on {0}")]
    NoPermissions(String),
}

impl HttpError for UpgradeError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::BadRequest
    }
}

/// The query of the backup upgrade, validated (step 2).
#[derive(Debug, Clone)]
pub struct BackupParams {
    pub store: DatastoreName,
    pub ns: Namespace,
    pub snapshot: SnapshotRef,
    pub debug: bool,
    pub benchmark: bool,
}

impl BackupParams {
    pub fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let q = Params::from_upgrade_query(
            parse_query(query),
            &["store", "ns", "backup-type", "backup-id", "backup-time", "debug", "benchmark", "no-cache"],
        )?;
        let store = DatastoreName::parse(q.str("store")?)?;
        let ns = match q.opt_str("ns")? {
            Some(ns) => Namespace::parse(ns)?,
            None => Namespace::root(),
        };
        let ty: BackupType = q.str("backup-type")?.parse()?;
        let id = BackupId::parse(q.str("backup-id")?)?;
        let time = BackupTime::from_epoch(q.i64("backup-time")?)?;
        let debug = q.opt_bool("debug")?.unwrap_or(false);
        let benchmark = q.opt_bool("benchmark")?.unwrap_or(false);
        // Accepted for newer clients (protocol.md 10); a local store has no cache to skip.
        let _no_cache = q.opt_bool("no-cache")?;
        Ok(BackupParams { store, ns, snapshot: SnapshotRef { group: GroupRef { ty, id }, time }, debug, benchmark })
    }

    /// ACL path of the namespace: `/datastore/<store>[/<ns>...]`.
    pub fn acl_path(&self) -> String {
        crate::server::api::acl_path(&self.store, &self.ns)
    }
}

/// Step 5: the request must be HTTP/1.x and ask for exactly `protocol`.
pub fn check_upgrade_header<B>(req: &Request<B>, protocol: &str) -> Result<(), UpgradeError> {
    if req.version() >= Version::HTTP_2 {
        return Err(UpgradeError::HttpVersion(req.version()));
    }
    let value = req.headers().get(header::UPGRADE).ok_or(UpgradeError::NoUpgradeHeader)?;
    if value.as_bytes() != protocol.as_bytes() {
        return Err(UpgradeError::Protocol);
    }
    Ok(())
}

/// Step 7: `host/benchmark` only with the flag, the flag only there.
pub fn check_benchmark(group: &GroupRef, benchmark: bool) -> Result<(), UpgradeError> {
    let is_benchmark_group = group.ty == BackupType::Host && group.id.as_str() == "benchmark";
    match (is_benchmark_group, benchmark) {
        (true, false) => Err(UpgradeError::BenchmarkWithoutFlag),
        (false, true) => Err(UpgradeError::BenchmarkFlagElsewhere),
        _ => Ok(()),
    }
}

/// `GET /api2/json/backup` with `Upgrade: proxmox-backup-protocol-v1`.
pub async fn backup(ctx: Ctx, mut req: Request<Incoming>, authid: Authid) -> Result<Response<Body>, ApiError> {
    let params = BackupParams::parse(req.uri().query())?;
    let state = &ctx.state;
    state.auth.check_privilege(&authid, &params.acl_path(), Privilege::DatastoreBackup)?;
    let store = state.datastore(&params.store)?;
    check_upgrade_header(&req, BACKUP_PROTOCOL)?;
    check_benchmark(&params.snapshot.group, params.benchmark)?;
    let permit = session_permit(state)?;
    let (ns, snapshot) = (params.ns.clone(), params.snapshot.clone());
    let session = backup::begin(&ctx.sessions, store.into(), ns, snapshot, &authid, params.benchmark).await?;
    let start = BackupSessionStart { session, auth: authid, benchmark: params.benchmark, debug: params.debug };
    let sessions = ctx.sessions.clone();
    // Should the client go away between 101 and the first byte, dropping the begun session
    // removes the snapshot.
    Ok(switch_protocols(&mut req, BACKUP_PROTOCOL, permit, move |io| backup::serve_session(io, start, sessions)))
}

/// `GET /api2/json/reader` with `Upgrade: proxmox-backup-reader-protocol-v1` (protocol.md 1.4
/// "Reader upgrade checks"): Read or Backup privilege (Backup alone only for owned groups),
/// the snapshot must exist, a shared lock on it for the whole session, then 101.
pub async fn reader(ctx: Ctx, mut req: Request<Incoming>, authid: Authid) -> Result<Response<Body>, ApiError> {
    let params = BackupParams::parse(req.uri().query())?;
    let state = &ctx.state;
    let acl_path = params.acl_path();
    let may_read = state.auth.has_privilege(&authid, &acl_path, Privilege::DatastoreRead);
    let may_backup = state.auth.has_privilege(&authid, &acl_path, Privilege::DatastoreBackup);
    if !may_read && !may_backup {
        return Err(UpgradeError::NoPermissions(acl_path).into());
    }
    let store = state.datastore(&params.store)?;
    check_upgrade_header(&req, READER_PROTOCOL)?;
    let permit = session_permit(state)?;
    let (ns, snapshot) = (params.ns.clone(), params.snapshot.clone());
    let only_owner = if may_read { None } else { Some(authid.clone()) };
    let files = reader::open(&ctx.sessions, store.into(), ns, snapshot, only_owner).await?;
    let start = ReaderSessionStart { files, auth: authid };
    let sessions = ctx.sessions.clone();
    Ok(switch_protocols(&mut req, READER_PROTOCOL, permit, move |io| reader::serve_session(io, start, sessions)))
}

/// Answers 101 and, once hyper hands the connection over, runs the session on it. The
/// session slot is held until the session ends; if the upgrade never completes, `serve` is
/// dropped unrun, and with it what the session had begun.
fn switch_protocols<Serve, Session>(
    req: &mut Request<Incoming>,
    protocol: &'static str,
    permit: OwnedSemaphorePermit,
    serve: Serve,
) -> Response<Body>
where
    Serve: FnOnce(TokioIo<hyper::upgrade::Upgraded>) -> Session + 'static,
    Session: std::future::Future<Output = ()> + 'static,
{
    let on_upgrade = hyper::upgrade::on(req);
    actix_rt::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => serve(TokioIo::new(upgraded)).await,
            Err(e) => tracing::debug!("{protocol} upgrade failed: {e}"),
        }
        drop(permit);
    });
    switching_protocols(protocol)
}

fn session_permit(state: &ServerState) -> Result<OwnedSemaphorePermit, Refused> {
    Arc::clone(&state.sessions).try_acquire_owned().map_err(|e| match e {
        TryAcquireError::Closed => Refused::ShuttingDown,
        TryAcquireError::NoPermits => Refused::TooManySessions(state.config.limits.max_sessions),
    })
}

fn switching_protocols(protocol: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    response.headers_mut().insert(header::UPGRADE, HeaderValue::from_static(protocol));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_of_the_real_client() {
        let p = BackupParams::parse(Some(
            "backup-id=myhost&backup-time=1718000000&backup-type=host&benchmark=false&debug=true&store=store1",
        ))
        .unwrap();
        assert_eq!(p.snapshot.group.id.as_str(), "myhost");
        assert!(p.debug && !p.benchmark && p.ns.is_root());
        assert_eq!(p.acl_path(), "/datastore/store1");
        let p =
            BackupParams::parse(Some("store=abc&ns=a/b&backup-type=vm&backup-id=1&backup-time=5&_dc=9&benchmark=YES"))
                .unwrap();
        assert!(p.benchmark);
        assert_eq!(p.acl_path(), "/datastore/abc/a/b");
    }

    #[test]
    fn bad_params_are_refused() {
        let base = "store=abc&backup-type=vm&backup-id=1&backup-time=5";
        for (extra, text) in [
            ("&foo=1", "parameter 'foo': schema does not allow additional properties"),
            ("&debug=maybe", "parameter 'debug': unable to parse boolean 'maybe'"),
            ("&store=x", "parameter 'store': duplicate parameter"),
        ] {
            let e = BackupParams::parse(Some(&format!("{base}{extra}"))).unwrap_err();
            assert_eq!((e.status, e.message.as_str()), (StatusCode::BAD_REQUEST, text));
        }
        let e = BackupParams::parse(Some("store=abc&backup-type=vm&backup-id=1")).unwrap_err();
        assert_eq!(e.message, "parameter 'backup-time': parameter is missing and it is not optional");
        assert!(BackupParams::parse(Some("store=abc&backup-type=xx&backup-id=1&backup-time=5")).is_err());
        assert!(BackupParams::parse(Some("store=abc&backup-type=vm&backup-id=../x&backup-time=5")).is_err());
    }

    #[test]
    fn benchmark_rules() {
        let group = |ty, id| GroupRef { ty, id: BackupId::parse(id).unwrap() };
        assert!(check_benchmark(&group(BackupType::Host, "benchmark"), true).is_ok());
        assert!(check_benchmark(&group(BackupType::Host, "x"), false).is_ok());
        assert_eq!(
            ApiError::from(check_benchmark(&group(BackupType::Host, "benchmark"), false).unwrap_err()).message,
            "unable to run benchmark without --benchmark flags"
        );
        assert_eq!(
            ApiError::from(check_benchmark(&group(BackupType::Vm, "benchmark"), true).unwrap_err()).message,
            "benchmark flags is only allowed on 'host/benchmark'"
        );
    }
}
