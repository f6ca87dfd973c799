//! `chunkyard verify STORE [GROUP|SNAPSHOT]`: re-checks snapshots against their manifests
//! (`jobs::verify`), renames corrupt chunks to `.bad` and records `verify_state`. Exit 1 when
//! any snapshot failed, so scripts notice.

use std::time::Instant;

use clap::Args;
use serde_json::json;

use super::gc::{job_error, open_store, progress};
use super::{Cli, CliError, JsonFlag, exit, output};
use crate::format::{BackupId, BackupTime, GroupRef, Namespace, SnapshotRef};
use crate::jobs::VerifySelection;
use crate::jobs::upid::{Node, new_upid};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Datastore name.
    pub store: String,
    /// `TYPE/ID` (a group) or `TYPE/ID/TIME` (a snapshot, TIME as in the directory name);
    /// default: every snapshot of the namespace.
    pub what: Option<String>,
    /// Namespace (default: the root).
    #[arg(long)]
    pub ns: Option<String>,
    /// Skip snapshots whose last verification succeeded ...
    #[arg(long)]
    pub ignore_verified: bool,
    /// ... unless it is older than DAYS days.
    #[arg(long, value_name = "DAYS", requires = "ignore_verified")]
    pub outdated_after: Option<u64>,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// `TYPE/ID` or `TYPE/ID/TIME`.
pub fn parse_target(s: &str) -> Result<(GroupRef, Option<SnapshotRef>), CliError> {
    let usage = |m: String| CliError::new(exit::USAGE, "Verify.InvalidTarget", m);
    let parts: Vec<&str> = s.split('/').collect();
    if parts.len() < 2 || parts.len() > 3 {
        return Err(usage(format!("'{s}' is neither TYPE/ID nor TYPE/ID/TIME")));
    }
    let ty = parts[0].parse().map_err(|e: crate::format::NameError| usage(e.to_string()))?;
    let id = BackupId::parse(parts[1]).map_err(|e| usage(e.to_string()))?;
    let group = GroupRef { ty, id };
    let snap = match parts.get(2) {
        Some(t) => {
            let time = BackupTime::parse_dir_name(t).map_err(|e| usage(e.to_string()))?;
            Some(SnapshotRef { group: group.clone(), time })
        }
        None => None,
    };
    Ok((group, snap))
}

pub fn run(cli: &Cli, args: &VerifyArgs) -> Result<(), CliError> {
    let store = open_store(cli, &args.store)?;
    let ns = match &args.ns {
        Some(ns) => {
            Namespace::parse(ns).map_err(|e| CliError::new(exit::USAGE, "Verify.InvalidNamespace", e.to_string()))?
        }
        None => Namespace::root(),
    };
    let (group, snapshot) = match &args.what {
        Some(w) => parse_target(w).map(|(g, s)| (Some(g), s))?,
        None => (None, None),
    };
    let sel = VerifySelection {
        ns,
        group,
        snapshot,
        ignore_verified: args.ignore_verified,
        outdated_after_days: args.outdated_after,
    };
    let upid = new_upid(Node::Host, "verify", store.name().as_str(), "root@pam");
    let started = Instant::now();
    let report = crate::jobs::verify(&store, &sel, &upid, &mut progress(cli, "Verify.Progress"))
        .map_err(job_error("Verify.Failed"))?;
    if args.out.json {
        output::json(&json!({ "verify": report.to_json(started.elapsed().as_secs_f64()) }));
    } else {
        let rows: Vec<Vec<String>> =
            report.snapshots.iter().map(|(s, r)| vec![s.to_string(), format!("{r:?}")]).collect();
        print!("{}", output::table(&["SNAPSHOT", "RESULT"], &rows));
    }
    match report.failed() {
        0 => Ok(()),
        n => Err(CliError::new(exit::ERROR, "Verify.Corrupt", format!("{n} snapshot(s) failed verification"))),
    }
}
