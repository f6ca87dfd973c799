//! The endpoint table of the HTTP/1.1 side (the upgrades, login and the management API under
//! `/api2/json`): every path, the call each method makes there, how its body is read, and the
//! name its requests are counted under. The router dispatches on what [`find`] returns and the
//! request metrics take its name, so the two can no longer disagree. (The HTTP/2 sessions name
//! each endpoint in the same match arm that routes it.)

use http::Method;

/// One call the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Version,
    BackupUpgrade,
    ReaderUpgrade,
    Login,
    DatastoreList,
    TaskLog,
    TaskStatus,
    Status,
    GarbageCollect,
    Groups,
    ChangeOwner,
    Snapshots,
    Forget,
    Files,
    Notes,
    SetNotes,
    Protected,
    SetProtected,
    UploadLog,
    Prune,
    Namespaces,
    CreateNamespace,
    DeleteNamespace,
}

/// How the body of a request to a path is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// Parameters: a JSON or form body of at most `MAX_PARAM_BODY` bytes.
    Params,
    /// An upload taken as it is (the backup log).
    Raw,
}

/// What the table says about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found<'a> {
    /// The metrics name: a fixed word, never a piece of the path.
    pub name: &'static str,
    /// `None`: no call for this method (or path) here, "not found".
    pub endpoint: Option<Endpoint>,
    pub body: BodyKind,
    /// The datastore segment, for the paths below `admin/datastore/<store>`.
    pub store: Option<&'a str>,
    /// The task segment, for the paths below `nodes/<node>/tasks/<upid>`.
    pub upid: Option<&'a str>,
}

#[derive(Clone, Copy)]
enum Seg {
    Lit(&'static str),
    Store,
    Upid,
    Any,
}

/// Which name a request for a method the path does not answer is counted under.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Others {
    /// The path's name (a management API path).
    Named,
    /// `unknown`: the path is only known as its one call (version, upgrade, login).
    Unknown,
}

struct Row {
    path: &'static [Seg],
    name: &'static str,
    others: Others,
    body: BodyKind,
    calls: &'static [(&'static str, Endpoint)],
}

const fn row(path: &'static [Seg], name: &'static str, calls: &'static [(&'static str, Endpoint)]) -> Row {
    Row { path, name, others: Others::Named, body: BodyKind::Params, calls }
}

const fn only(path: &'static [Seg], name: &'static str, calls: &'static [(&'static str, Endpoint)]) -> Row {
    Row { others: Others::Unknown, ..row(path, name, calls) }
}

use Endpoint as E;
use Seg::{Any, Lit, Store, Upid};

const DS: Seg = Lit("datastore");

/// Paths below `/api2/json`, first match wins.
static TABLE: &[Row] = &[
    only(&[Lit("version")], "version", &[("GET", E::Version)]),
    only(&[Lit("backup")], "upgrade", &[("GET", E::BackupUpgrade)]),
    only(&[Lit("reader")], "upgrade", &[("GET", E::ReaderUpgrade)]),
    only(&[Lit("access"), Lit("ticket")], "login", &[("POST", E::Login)]),
    row(&[Lit("admin"), DS], "datastore_list", &[("GET", E::DatastoreList)]),
    row(&[Lit("nodes"), Any, Lit("tasks"), Upid, Lit("log")], "task", &[("GET", E::TaskLog)]),
    row(&[Lit("nodes"), Any, Lit("tasks"), Upid, Lit("status")], "task", &[("GET", E::TaskStatus)]),
    row(&[Lit("nodes"), Any, Lit("tasks"), Upid, Any], "task", &[]),
    row(&[Lit("admin"), DS, Store, Lit("groups")], "groups", &[("GET", E::Groups)]),
    row(&[Lit("admin"), DS, Store, Lit("snapshots")], "snapshots", &[("GET", E::Snapshots), ("DELETE", E::Forget)]),
    row(&[Lit("admin"), DS, Store, Lit("files")], "files", &[("GET", E::Files)]),
    row(&[Lit("admin"), DS, Store, Lit("status")], "status", &[("GET", E::Status)]),
    row(&[Lit("admin"), DS, Store, Lit("gc")], "gc", &[("POST", E::GarbageCollect)]),
    row(&[Lit("admin"), DS, Store, Lit("prune")], "prune", &[("POST", E::Prune)]),
    row(&[Lit("admin"), DS, Store, Lit("notes")], "notes", &[("GET", E::Notes), ("PUT", E::SetNotes)]),
    row(&[Lit("admin"), DS, Store, Lit("protected")], "protected", &[("GET", E::Protected), ("PUT", E::SetProtected)]),
    Row {
        body: BodyKind::Raw,
        ..row(&[Lit("admin"), DS, Store, Lit("upload-backup-log")], "upload_backup_log", &[("POST", E::UploadLog)])
    },
    row(
        &[Lit("admin"), DS, Store, Lit("namespace")],
        "namespace",
        &[("GET", E::Namespaces), ("POST", E::CreateNamespace), ("DELETE", E::DeleteNamespace)],
    ),
    row(&[Lit("admin"), DS, Store, Lit("change-owner")], "change_owner", &[("POST", E::ChangeOwner)]),
    // Any other call on a datastore: its name is still checked before "not found".
    row(&[Lit("admin"), DS, Store, Any], "unknown", &[]),
];

/// Looks a normalised path (`crate::http::normalize_path`) up in the table.
pub fn find<'a>(method: &Method, path: &'a str) -> Found<'a> {
    let parts: Vec<&str> = match path.strip_prefix("/api2/json/") {
        Some(rest) => rest.split('/').collect(),
        None => Vec::new(),
    };
    for row in TABLE {
        if row.path.len() != parts.len() {
            continue;
        }
        let (mut store, mut upid) = (None, None);
        let matched = row.path.iter().zip(&parts).all(|(seg, part)| match seg {
            Lit(lit) => lit == part,
            Store => {
                store = Some(*part);
                true
            }
            Upid => {
                upid = Some(*part);
                true
            }
            Any => true,
        });
        if !matched {
            continue;
        }
        let endpoint = row.calls.iter().find(|(m, _)| *m == method.as_str()).map(|(_, e)| *e);
        let name = if endpoint.is_none() && row.others == Others::Unknown { "unknown" } else { row.name };
        return Found { name, endpoint, body: row.body, store, upid };
    }
    Found { name: "unknown", endpoint: None, body: BodyKind::Params, store: None, upid: None }
}

/// Metric name of a request (never a raw path with ids in it).
pub fn endpoint_name(method: &Method, path: &str) -> &'static str {
    find(method, path).name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_names_never_carry_ids() {
        assert_eq!(endpoint_name(&Method::POST, "/api2/json/access/ticket"), "login");
        assert_eq!(endpoint_name(&Method::GET, "/api2/json/admin/datastore/s1/snapshots"), "snapshots");
        assert_eq!(endpoint_name(&Method::GET, "/api2/json/nodes/localhost/tasks/UPID:x:y/log"), "task");
        assert_eq!(endpoint_name(&Method::GET, "/api2/json/admin/datastore/s1/whatever"), "unknown");
        assert_eq!(endpoint_name(&Method::GET, "/elsewhere"), "unknown");
    }

    #[test]
    fn one_lookup_names_and_routes() {
        let f = find(&Method::DELETE, "/api2/json/admin/datastore/s1/snapshots");
        assert_eq!((f.name, f.endpoint, f.store), ("snapshots", Some(Endpoint::Forget), Some("s1")));
        // A method the path does not take: counted under the path, answered "not found".
        let f = find(&Method::PUT, "/api2/json/admin/datastore/s1/groups");
        assert_eq!((f.name, f.endpoint), ("groups", None));
        // Paths known only as their one call count as unknown for any other method.
        assert_eq!(find(&Method::GET, "/api2/json/access/ticket").name, "unknown");
        assert_eq!(find(&Method::POST, "/api2/json/version").name, "unknown");
        assert_eq!(find(&Method::GET, "/api2/json/reader").endpoint, Some(Endpoint::ReaderUpgrade));
        let f = find(&Method::GET, "/api2/json/nodes/localhost/tasks/UPID:a/status");
        assert_eq!((f.endpoint, f.upid), (Some(Endpoint::TaskStatus), Some("UPID:a")));
        assert_eq!(find(&Method::GET, "/api2/json/nodes/n/tasks/UPID:a/other").endpoint, None);
        let f = find(&Method::POST, "/api2/json/admin/datastore/s1/upload-backup-log");
        assert_eq!((f.body, f.endpoint), (BodyKind::Raw, Some(Endpoint::UploadLog)));
        assert_eq!(find(&Method::GET, "/api2/json/admin/datastore/s1/upload-backup-log").body, BodyKind::Raw);
        let f = find(&Method::GET, "/api2/json/admin/datastore/s1/whatever");
        assert_eq!((f.endpoint, f.store), (None, Some("s1")));
        // Only below /api2/json.
        assert_eq!(find(&Method::GET, "/admin/datastore").endpoint, None);
        assert_eq!(find(&Method::GET, "/api2/json").endpoint, None);
    }
}
