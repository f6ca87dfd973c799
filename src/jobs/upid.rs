//! Task ids (UPIDs, formats.md 4.1): the one builder for the CLI's jobs and the API's worker
//! tasks, the start time `--outdated-after` reads back, and the host name the node field (and
//! the server's self-signed certificate) are made from.

use std::sync::atomic::{AtomicU32, Ordering};

static TASK_COUNTER: AtomicU32 = AtomicU32::new(0);

/// The node field of a UPID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    /// This machine's host name, as PBS writes it (the CLI's jobs: a `verify_state` names the
    /// host that verified).
    Host,
    /// `localhost`: the API's worker tasks, which the client always polls under
    /// `nodes/localhost`.
    Localhost,
}

/// A fresh task id `UPID:node:pid:pstart:task_id:starttime:type:id:authid:`.
/// `worker_id` must not contain `:` or blanks (datastore names never do).
pub fn new_upid(node: Node, worker_type: &str, worker_id: &str, authid: &str) -> String {
    let node = match node {
        Node::Host => node_name(),
        Node::Localhost => "localhost".to_string(),
    };
    let pid = std::process::id();
    let task = TASK_COUNTER.fetch_add(1, Ordering::Relaxed);
    let start = chrono::Utc::now().timestamp();
    format!("UPID:{node}:{pid:08X}:{:08X}:{task:08X}:{start:08X}:{worker_type}:{worker_id}:{authid}:", process_start())
}

/// The start time (hex epoch) of a UPID, which `--outdated-after` ages verify states by.
pub fn upid_start(upid: &str) -> Option<i64> {
    let fields: Vec<&str> = upid.split(':').collect();
    if fields.len() != 10 || fields[0] != "UPID" {
        return None;
    }
    i64::from_str_radix(fields[5], 16).ok()
}

/// The host name reduced to the UPID node syntax (alphanumerics and inner dashes).
fn node_name() -> String {
    let host = hostname().unwrap_or_default();
    let first = host.split('.').next().unwrap_or("");
    let clean: String = first.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
    let clean = clean.trim_matches('-');
    if clean.is_empty() { "chunkyard".into() } else { clean.to_string() }
}

/// Process start in clock ticks since boot (field 22 of /proc/self/stat), as PBS records it.
fn process_start() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            s.rsplit(')').next().and_then(|rest| rest.split_whitespace().nth(19)).and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The machine's host name, if it is a usable DNS name.
#[allow(unsafe_code)]
pub fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = std::str::from_utf8(&buf[..end]).ok()?.to_string();
    let dns_ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    dns_ok.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// formats.md 4.1: what PBS (and a `verify_state` reader) accepts as a UPID.
    const UPID_RE: &str = r"^UPID:([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):([0-9A-Fa-f]{8,16}):([0-9A-Fa-f]{8}):([^:\s]+):([^:\s]*):([^:\s]+):$";

    #[test]
    fn both_nodes_build_upids_of_pbs_shape() {
        let re = regex::Regex::new(UPID_RE).unwrap();
        let before = chrono::Utc::now().timestamp();
        for node in [Node::Host, Node::Localhost] {
            let upid = new_upid(node, "verify", "store1", "admin@pbs!t");
            assert!(re.is_match(&upid), "{upid}");
            assert!(upid.ends_with(":verify:store1:admin@pbs!t:"), "{upid}");
            assert!(upid_start(&upid).unwrap() >= before, "{upid}");
        }
        assert!(new_upid(Node::Localhost, "gc", "s", "a@pbs").starts_with("UPID:localhost:"));
        assert_eq!(upid_start("UPID:x"), None);
    }
}
