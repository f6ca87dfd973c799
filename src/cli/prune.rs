//! `chunkyard prune STORE TYPE/ID --keep-* [--dry-run]`: the keep-* selection of formats.md 8
//! on one group (`jobs::prune` over `store::prune`), from the command line.

use clap::Args;
use serde_json::{Value, json};

use super::gc::{job_error, open_store, progress};
use super::{Cli, CliError, JsonFlag, exit, output};
use crate::format::Namespace;
use crate::store::prune::KeepOptions;

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Datastore name.
    pub store: String,
    /// The group, `TYPE/ID`.
    pub group: String,
    #[arg(long)]
    pub ns: Option<String>,
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub keep_last: Option<u64>,
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub keep_hourly: Option<u64>,
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub keep_daily: Option<u64>,
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub keep_weekly: Option<u64>,
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub keep_monthly: Option<u64>,
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub keep_yearly: Option<u64>,
    /// Only show what would be removed.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub out: JsonFlag,
}

pub fn run(cli: &Cli, args: &PruneArgs) -> Result<(), CliError> {
    let store = open_store(cli, &args.store)?;
    let (group, snap) = super::verify::parse_target(&args.group)?;
    if snap.is_some() {
        return Err(CliError::new(exit::USAGE, "Prune.InvalidGroup", "prune takes a group TYPE/ID, not a snapshot"));
    }
    let ns = match &args.ns {
        Some(ns) => {
            Namespace::parse(ns).map_err(|e| CliError::new(exit::USAGE, "Prune.InvalidNamespace", e.to_string()))?
        }
        None => Namespace::root(),
    };
    let opts = KeepOptions {
        keep_last: args.keep_last,
        keep_hourly: args.keep_hourly,
        keep_daily: args.keep_daily,
        keep_weekly: args.keep_weekly,
        keep_monthly: args.keep_monthly,
        keep_yearly: args.keep_yearly,
    };
    let marks = crate::jobs::prune(&store, &ns, &group, &opts, args.dry_run, &mut progress(cli, "Prune.Progress"))
        .map_err(job_error("Prune.Failed"))?;
    let rows: Vec<Value> = marks
        .iter()
        .map(|(info, mark)| {
            json!({"snapshot": info.snapshot.to_string(), "backup-time": info.snapshot.time.epoch(),
                   "keep": mark.keep(), "mark": format!("{mark:?}").to_lowercase(), "protected": info.protected})
        })
        .collect();
    if args.out.json {
        let removed = marks.iter().filter(|(_, m)| !m.keep()).count();
        output::json(&json!({ "prune": { "dry_run": args.dry_run, "snapshots": rows, "removed": removed } }));
    } else {
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| vec![r["snapshot"].as_str().unwrap_or("").into(), r["mark"].as_str().unwrap_or("").into()])
            .collect();
        print!("{}", output::table(&["SNAPSHOT", "DECISION"], &cells));
    }
    Ok(())
}
