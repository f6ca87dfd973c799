//! `chunkyard gc STORE`: garbage collection of a datastore from the command line (the same
//! job the API's worker task runs, `jobs::gc`), plus what the maintenance commands share:
//! opening a configured datastore and reporting progress (human lines, or Borg's
//! `progress_percent` JSON lines with `--log-json`).

use std::time::Instant;

use clap::Args;
use serde_json::json;

use super::{Cli, CliError, JsonFlag, exit, output};
use crate::format::DatastoreName;
use crate::jobs::upid::{Node, new_upid};
use crate::store::Datastore;
use crate::store::gc::GcOptions;

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Datastore name (as in `datastore list`).
    pub store: String,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// Opens a configured or registered datastore by name.
pub fn open_store(cli: &Cli, name: &str) -> Result<Datastore, CliError> {
    let name =
        DatastoreName::parse(name).map_err(|e| CliError::new(exit::USAGE, "Datastore.InvalidName", e.to_string()))?;
    let config = super::load_config(cli, None)?;
    let path = config
        .datastore_path(name.as_str())
        .ok_or_else(|| CliError::new(exit::ERROR, "Datastore.Unknown", format!("datastore '{name}' does not exist")))?;
    Datastore::open(name, &path).map_err(|e| CliError::new(exit::ERROR, "Datastore.OpenFailed", e.to_string()))
}

/// A job failure: exit 1 with the store's message.
pub fn job_error(msgid: &'static str) -> impl Fn(crate::store::StoreError) -> CliError {
    move |e| CliError::new(exit::ERROR, msgid, e.to_string())
}

/// Progress on stderr. With `--log-json`: Borg's `progress_percent` objects for lines that
/// carry a `(NN%)` figure, `log_message` lines otherwise. On a terminal: a progress bar that
/// follows the figure, each line printed above it. Elsewhere (pipes, files): plain log lines.
pub fn progress(cli: &Cli, msgid: &'static str) -> impl FnMut(String) + use<> {
    use std::io::IsTerminal;
    let log_json = cli.log_json;
    let bar = (!log_json && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(100);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos:>3}% {elapsed}").expect("static template"),
        );
        bar
    });
    move |line: String| {
        let pct = line.rsplit_once('(').and_then(|(_, r)| r.strip_suffix("%)")).and_then(|p| p.parse::<u64>().ok());
        match (log_json, pct) {
            (true, Some(p)) => {
                let time =
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
                let obj = json!({"type": "progress_percent", "msgid": msgid, "operation": 1, "current": p, "total": 100,
                                 "finished": p >= 100, "message": line, "time": time});
                eprintln!("{obj}");
            }
            (false, pct) if bar.is_some() => {
                let bar = bar.as_ref().expect("checked by the guard");
                bar.println(&line);
                if let Some(p) = pct {
                    bar.set_position(p.min(100));
                    if p >= 100 {
                        bar.finish();
                    }
                }
            }
            _ => tracing::info!(target: "chunkyard", msgid, "{line}"),
        }
    }
}

pub fn run(cli: &Cli, args: &GcArgs) -> Result<(), CliError> {
    let store = open_store(cli, &args.store)?;
    let upid = new_upid(Node::Host, "garbage_collection", store.name().as_str(), "root@pam");
    let started = Instant::now();
    let opts = GcOptions { upid: Some(upid), ..GcOptions::default() };
    let status = crate::jobs::gc(&store, &opts, &mut progress(cli, "GC.Progress")).map_err(job_error("GC.Failed"))?;
    let report = crate::jobs::gc_json(&status, started.elapsed().as_secs_f64());
    if args.out.json {
        output::json(&json!({ "gc": report }));
    } else {
        print!(
            "{}",
            output::table(
                &["WHAT", "CHUNKS", "BYTES"],
                &[
                    vec!["removed".into(), status.removed_chunks.to_string(), status.removed_bytes.to_string()],
                    vec!["pending".into(), status.pending_chunks.to_string(), status.pending_bytes.to_string()],
                    vec!["on disk".into(), status.disk_chunks.to_string(), status.disk_bytes.to_string()],
                ],
            )
        );
    }
    Ok(())
}
