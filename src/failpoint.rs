//! Failpoints: named places on the write path where a test can make the server die or fail.
//!
//! Crash consistency and full-disk handling can only be shown by making a real server die or
//! see `ENOSPC` at a chosen moment, over and over, at exactly the same place. Each durable step
//! of the write path (chunk file written, renamed, synced; index, blob and manifest file
//! written, renamed, synced; a request received) calls [`check`] with its name and the file or
//! request it is about. Nothing happens unless the process was started with
//! `CHUNKYARD_FAILPOINTS` set (or a test called [`set`]); then the first call parses the
//! table, and each call costs one atomic load when the point is not listed.
//!
//! Syntax: `point[:context]=action[@hit][;...]`, for example
//! `chunk.rename=kill@3;file.write:index.json.blob=enospc@1+`.
//! - `point`: a name passed to [`check`] (see [`POINTS`]).
//! - `context`: optional; the point fires only if the call's context ends with it (a file
//!   name such as `index.json.blob` or `.didx`, or a request path such as `/finish`).
//! - `action`: `kill` (SIGKILL the whole process: no destructor, no flush, like a power cut
//!   for everything but the page cache), `enospc`, `eio` (the call returns that `io::Error`).
//! - `@hit`: fire on the N-th matching call (1-based, default 1); `@N+` fires on the N-th and
//!   every later one.

use std::io;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

/// The environment variable read once, at the first [`check`].
pub const ENV: &str = "CHUNKYARD_FAILPOINTS";

/// Every point the code calls, in write-path order, so a crash harness can iterate them.
pub const POINTS: &[&str] = &[
    // a request was routed inside a backup session (context: its path, e.g. `/fixed_index`)
    "backup.request",
    // chunk file data written to its temp file, not yet fsynced (context: the digest)
    "chunk.write",
    // chunk temp file written and fsynced, not yet renamed (context: the digest)
    "chunk.rename",
    // chunk renamed into place and its directory fsynced (context: the digest)
    "chunk.stored",
    // snapshot or config file data written to its temp file (context: the final file name)
    "file.write",
    // temp file complete and fsynced, not yet renamed (context: the final file name)
    "file.rename",
    // file renamed into place and its directory fsynced (context: the final file name)
    "file.stored",
    // finish: manifest checks passed, about to write the manifest
    "finish.commit",
    // finish: manifest committed, response not yet sent
    "finish.done",
    // forget/prune: the snapshot's manifest is gone, its other files not yet (context: snapshot)
    "snapshot.remove",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Kill,
    Fail(i32),
}

#[derive(Debug)]
struct Rule {
    point: String,
    context: Option<String>,
    action: Action,
    hit: u64,
    repeat: bool,
    seen: AtomicU64,
}

/// Set once a table is installed; the fast path reads only this.
static ACTIVE: AtomicBool = AtomicBool::new(false);
static FROM_ENV: OnceLock<()> = OnceLock::new();
static RULES: Mutex<Vec<Rule>> = Mutex::new(Vec::new());
/// I/O errors injected since the process started (fault-injection tests report and check it).
static INJECTED: AtomicU64 = AtomicU64::new(0);

/// How many `enospc`/`eio` errors the table has injected in this process so far.
pub fn injected() -> u64 {
    INJECTED.load(Ordering::SeqCst)
}

/// Installs a table (replacing any other). For in-process tests; the server reads [`ENV`].
pub fn set(spec: &str) -> Result<(), String> {
    let rules = parse(spec)?;
    let active = !rules.is_empty();
    *RULES.lock() = rules;
    ACTIVE.store(active, Ordering::SeqCst);
    Ok(())
}

/// Removes every rule.
pub fn clear() {
    let _ = set("");
}

/// Reads [`ENV`] now (the server calls this at start-up, so a typo stops it there).
pub fn init_from_env() -> Result<(), String> {
    let mut result = Ok(());
    FROM_ENV.get_or_init(|| {
        if let Ok(spec) = std::env::var(ENV) {
            result = set(&spec);
        }
    });
    result
}

/// Whether any rule is installed; lets a caller skip building contexts when none is.
#[inline]
pub fn armed() -> bool {
    if FROM_ENV.get().is_none() {
        let _ = init_from_env();
    }
    ACTIVE.load(Ordering::Relaxed)
}

/// Passes unless a rule for `point` (and `context`) says this call dies or fails.
#[inline]
pub fn check(point: &str, context: &str) -> io::Result<()> {
    if !armed() {
        return Ok(());
    }
    fire(point, context)
}

#[cold]
#[allow(unsafe_code)]
fn fire(point: &str, context: &str) -> io::Result<()> {
    let rules = RULES.lock();
    for rule in rules.iter() {
        if rule.point != point || rule.context.as_deref().is_some_and(|c| !context.ends_with(c)) {
            continue;
        }
        let n = rule.seen.fetch_add(1, Ordering::SeqCst) + 1;
        if n == rule.hit || (rule.repeat && n > rule.hit) {
            match rule.action {
                Action::Kill => {
                    eprintln!("failpoint {point} ({context}) hit {n}: SIGKILL");
                    // SAFETY: plain syscalls on our own pid; the signal cannot be caught.
                    unsafe {
                        libc::kill(libc::getpid(), libc::SIGKILL);
                    }
                    unreachable!("SIGKILL returned");
                }
                Action::Fail(errno) => {
                    INJECTED.fetch_add(1, Ordering::SeqCst);
                    tracing::warn!(point, context, hit = n, errno, "failpoint injects an I/O error");
                    return Err(io::Error::from_raw_os_error(errno));
                }
            }
        }
    }
    Ok(())
}

fn parse(spec: &str) -> Result<Vec<Rule>, String> {
    let mut rules = Vec::new();
    for item in spec.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = || format!("{ENV}: cannot parse {item:?} (want point[:context]=kill|enospc|eio[@N[+]])");
        let (target, what) = item.split_once('=').ok_or_else(bad)?;
        let (point, context) = match target.split_once(':') {
            Some((p, c)) => (p, Some(c.to_string())),
            None => (target, None),
        };
        if !POINTS.contains(&point) {
            return Err(format!("{ENV}: unknown point {point:?}; known: {}", POINTS.join(", ")));
        }
        let (action, hit) = what.split_once('@').unwrap_or((what, "1"));
        let action = match action {
            "kill" => Action::Kill,
            "enospc" => Action::Fail(libc::ENOSPC),
            "eio" => Action::Fail(libc::EIO),
            _ => return Err(bad()),
        };
        let (hit, repeat) = match hit.strip_suffix('+') {
            Some(h) => (h, true),
            None => (hit, false),
        };
        let hit: u64 = hit.parse().ok().filter(|h| *h >= 1).ok_or_else(bad)?;
        rules.push(Rule { point: point.to_string(), context, action, hit, repeat, seen: AtomicU64::new(0) });
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let r = parse("chunk.rename=kill@3; file.write:index.json.blob=enospc@2+").unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].action, r[0].hit, r[0].repeat), (Action::Kill, 3, false));
        assert_eq!(r[1].context.as_deref(), Some("index.json.blob"));
        assert_eq!((r[1].action, r[1].hit, r[1].repeat), (Action::Fail(libc::ENOSPC), 2, true));
        for bad in ["nope=kill", "chunk.write", "chunk.write=explode", "chunk.write=kill@0", "chunk.write=eio@x"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    // The only test in this crate that installs rules: the table is process-wide.
    #[test]
    fn fires_on_the_chosen_hits_only() {
        set("file.rename:.fp-test=eio@2+").unwrap();
        assert!(check("file.rename", "a.fp-test").is_ok(), "first hit passes");
        assert!(check("file.rename", "a.fidx").is_ok(), "other context does not count");
        assert!(check("chunk.write", "a.fp-test").is_ok(), "other point");
        let before = injected();
        let e = check("file.rename", "b.fp-test").unwrap_err();
        assert_eq!(injected(), before + 1);
        assert_eq!(e.raw_os_error(), Some(libc::EIO));
        assert!(check("file.rename", "c.fp-test").is_err(), "repeats after the hit");
        clear();
        assert!(check("file.rename", "d.fp-test").is_ok());
    }
}
