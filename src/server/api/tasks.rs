//! Worker tasks as the CLI sees them (protocol.md 6, `garbage-collect`): a call that starts
//! one answers its UPID; the client then polls `GET /nodes/localhost/tasks/<UPID>/log`
//! (`data` = `[{"n", "t"}]` with `total` and `active` beside `data`) and `.../status`.
//!
//! Tasks run on the blocking pool and keep their log in memory, bounded: at most [`MAX_TASKS`]
//! tasks (finished ones are forgotten oldest first) and [`MAX_LINES`] lines each (later lines
//! are counted, not kept). The UPID comes from `jobs::upid`, PBS's shape, so the client (and
//! `verify_state` consumers) can parse it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::{Value, json};

use crate::format::Authid;
use crate::http::ApiError;
use crate::http::JSON_CONTENT_TYPE;
use crate::http::params::Params;
use crate::jobs::upid::{Node, new_upid};
use crate::server::api::CallError;
use crate::server::http::Body;

/// Tasks remembered; running ones are never forgotten.
pub const MAX_TASKS: usize = 64;
/// Log lines kept per task.
pub const MAX_LINES: usize = 10_000;

#[derive(Debug)]
struct Task {
    owner: Authid,
    lines: Vec<String>,
    /// Lines not kept beyond [`MAX_LINES`].
    dropped: u64,
    /// Order of creation, to forget the oldest finished task first.
    seq: u64,
    /// `None` while running, then "OK" or "<error text>".
    exit: Option<String>,
}

type Tasks = Mutex<HashMap<String, Arc<Mutex<Task>>>>;

fn tasks() -> &'static Tasks {
    static TASKS: OnceLock<Tasks> = OnceLock::new();
    TASKS.get_or_init(Default::default)
}

/// The log a running task writes to.
pub struct TaskLog(Arc<Mutex<Task>>);

impl TaskLog {
    /// Appends a line, prefixed with the time like PBS (the CLI strips the first 27 chars).
    pub fn log(&self, line: impl AsRef<str>) {
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S+00:00");
        let mut task = self.0.lock();
        if task.lines.len() < MAX_LINES {
            task.lines.push(format!("{now}: {}", line.as_ref()));
        } else {
            task.dropped += 1;
        }
    }
}

/// Starts `work` as a task and returns its UPID at once.
pub fn spawn<E: std::error::Error>(
    kind: &str,
    id: &str,
    authid: &Authid,
    work: impl FnOnce(&TaskLog, &str) -> Result<(), E> + Send + 'static,
) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let upid = new_upid(Node::Localhost, kind, id, &authid.to_string());
    let task = Arc::new(Mutex::new(Task { owner: authid.clone(), lines: Vec::new(), dropped: 0, seq, exit: None }));
    {
        let mut all = tasks().lock();
        while all.len() >= MAX_TASKS {
            let oldest_finished = all
                .iter()
                .filter_map(|(k, t)| Some(t.lock()).filter(|t| t.exit.is_some()).map(|t| (t.seq, k.clone())))
                .min();
            match oldest_finished {
                Some((_, k)) => all.remove(&k),
                None => break,
            };
        }
        all.insert(upid.clone(), Arc::clone(&task));
    }
    let log = TaskLog(task);
    let task_upid = upid.clone();
    tokio::task::spawn_blocking(move || {
        let result = work(&log, &task_upid);
        let exit = match result {
            Ok(()) => "OK".to_string(),
            Err(e) => {
                log.log(format!("TASK ERROR: {e}"));
                e.to_string()
            }
        };
        let mut task = log.0.lock();
        if task.dropped > 0 {
            // Past the cap on purpose: the reader must learn that lines are missing.
            let n = task.dropped;
            task.lines.push(format!("({n} log lines not kept)"));
        }
        task.exit = Some(exit);
    });
    upid
}

fn find(upid: &str, authid: &Authid) -> Result<Arc<Mutex<Task>>, ApiError> {
    let task = tasks().lock().get(upid).cloned();
    let task = task.ok_or_else(|| CallError::NoSuchTask(upid.to_string()))?;
    // Only the starter (or its user, for a token) sees a task; admins of the store would in
    // PBS too, but the CLI only ever reads its own.
    let owner = task.lock().owner.clone();
    if !authid.matches_owner(&owner) && authid != &owner {
        return Err(CallError::NotTaskOwner.into());
    }
    Ok(task)
}

/// `GET nodes/localhost/tasks/<UPID>/log?start&limit`: lines are numbered from 1.
pub fn log(upid: &str, authid: &Authid, params: &Params) -> Result<Response<Body>, ApiError> {
    let task = find(upid, authid)?;
    let start = params.opt_int("start", 0, u64::MAX)?.unwrap_or(0).max(1);
    let limit = params.opt_int("limit", 0, u64::MAX)?.unwrap_or(50);
    let task = task.lock();
    let total = task.lines.len() as u64;
    let data: Vec<Value> =
        (start..=total).take(limit as usize).map(|n| json!({ "n": n, "t": task.lines[(n - 1) as usize] })).collect();
    let body = json!({ "data": data, "total": total, "active": task.exit.is_none() });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE));
    Ok(response)
}

/// `GET nodes/localhost/tasks/<UPID>/status`.
pub fn status(upid: &str, authid: &Authid) -> Result<Value, ApiError> {
    let task = find(upid, authid)?;
    let task = task.lock();
    Ok(match &task.exit {
        None => json!({ "upid": upid, "status": "running" }),
        Some(exit) => json!({ "upid": upid, "status": "stopped", "exitstatus": exit }),
    })
}
