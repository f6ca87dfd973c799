//! `chunkyard-loadtest`: drives many concurrent PBS-protocol sessions against a server on
//! loopback and reports latency per endpoint, throughput and server cost (issue #6; README,
//! "Load testing"). Data is made before the measured window; see `data`.

mod cli;
mod data;
mod driver;
mod procfs;
mod progress;
mod run;
mod stats;

use std::sync::Arc;

use clap::{Parser, ValueEnum};

use crate::cli::Args;
use crate::progress::Style;
use crate::run::RunSpec;

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match rt.block_on(main_async(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chunkyard-loadtest: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn main_async(args: Args) -> anyhow::Result<()> {
    let targets = args.targets()?;
    let (spec, mode, model) = args.resolve()?;
    let scenario = args.scenario.to_possible_value().expect("named").get_name().to_string();
    let style = Style::choose(args.log_json);
    let max_pool = args.max_pool_mib << 20;
    let workload = tokio::task::spawn_blocking(move || data::build(&spec, max_pool)).await??;
    let workload = Arc::new(workload);
    if style != Style::Quiet {
        eprintln!(
            "prepared {} sessions, {} MiB logical, {} distinct chunks ({} MiB encoded)",
            workload.plans.len(),
            workload.logical_bytes() >> 20,
            workload.pool.len(),
            workload.pool_bytes() >> 20
        );
    }
    let base = unix_now();
    let mut reports = Vec::new();
    for round in 0..args.rounds.max(1) {
        for (i, target) in targets.iter().enumerate() {
            let spec = RunSpec {
                scenario: &scenario,
                mode,
                model,
                style,
                tag: base.as_secs() as i64,
                run_id: format!("{}-{}-{}", base.as_millis(), std::process::id(), round * targets.len() + i),
            };
            let report = run::run(target, &workload, &spec).await?;
            if !args.json {
                report.print_human();
            }
            reports.push(report);
        }
    }
    let ratio = comparison(&reports, targets.len());
    if args.json {
        let out = if targets.len() == 1 && reports.len() == 1 {
            serde_json::to_value(&reports[0])?
        } else {
            serde_json::json!({ "runs": reports, "comparison": ratio })
        };
        println!("{out}");
    } else if let Some(r) = ratio {
        println!("{}", serde_json::to_string_pretty(&r)?);
    }
    Ok(())
}

/// B/A ratios of the medians over rounds of throughput and upload p99 (A = --repository).
fn comparison(reports: &[stats::Report], targets: usize) -> Option<serde_json::Value> {
    if targets < 2 {
        return None;
    }
    let pick = |t: usize, f: &dyn Fn(&stats::Report) -> f64| {
        let mut v: Vec<f64> = reports.iter().skip(t).step_by(targets).map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mbps = |r: &stats::Report| r.original_mb_per_s;
    let p99 = |r: &stats::Report| {
        r.latency
            .get("upload_chunk")
            .or_else(|| r.latency.get("chunk"))
            .or_else(|| r.latency.get("speedtest"))
            .or_else(|| r.latency.get("append"))
            .map_or(0.0, |l| l.p99_ms)
    };
    let (a, b) = (pick(0, &mbps), pick(1, &mbps));
    let (pa, pb) = (pick(0, &p99), pick(1, &p99));
    Some(serde_json::json!({
        "original_mb_per_s": [a, b], "throughput_ratio_b_over_a": b / a,
        "p99_ms": [pa, pb], "p99_ratio_b_over_a": if pa > 0.0 { pb / pa } else { 0.0 },
    }))
}

fn unix_now() -> std::time::Duration {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default()
}
