//! One run against one server: the unmeasured seed pass if the mode needs one, then the
//! measured pass with every session at once, and the report built from what was recorded.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use chunkyard::client::{ClientConfig, HttpClient};

use crate::cli::{Mode, Target};
use crate::data::Workload;
use crate::driver::{self, Model, SessionCtx};
use crate::procfs;
use crate::progress::{Progress, Style};
use crate::stats::{Counters, Recorder, Report, ServerCost};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    Seed,
    Measured,
}

pub struct RunSpec<'a> {
    pub scenario: &'a str,
    pub mode: Mode,
    pub model: Model,
    pub style: Style,
    /// Backup time of the first pass (the measured pass of a seeded mode uses tag + 1).
    pub tag: i64,
    /// Makes backup ids unique per run: runs may share a datastore and start within the same
    /// second, and a group refuses a backup time older than its last one.
    pub run_id: String,
}

pub async fn run(t: &Target, w: &Arc<Workload>, spec: &RunSpec<'_>) -> anyhow::Result<Report> {
    let client = Arc::new(HttpClient::new(ClientConfig {
        addr: t.addr,
        fingerprint: t.fingerprint.clone(),
        authid: t.authid.clone(),
        secret: t.secret.clone(),
    })?);
    if spec.mode.seeds() {
        let seed_mode = Mode::Backup;
        let rec = Arc::new(Recorder::default());
        pass(&client, t, w, spec, seed_mode, Pass::Seed, &rec).await?;
    }
    let rec = Arc::new(Recorder::default());
    let cpu0 = t.pid.map(procfs::cpu_seconds).transpose()?;
    let progress =
        Progress::start(spec.style, 1, &format!("loadtest.{}", mode_name(spec.mode)), w.logical_bytes(), rec.clone());
    let started = Instant::now();
    let result = pass(&client, t, w, spec, spec.mode, Pass::Measured, &rec).await;
    let elapsed = started.elapsed().as_secs_f64();
    progress.finish(&rec);
    let cpu1 = t.pid.map(procfs::cpu_seconds).transpose()?;
    let failed = result?;

    let uploads = upload_counts(w, spec.mode);
    let c = &rec.counters;
    let original = Counters::get(&c.original_bytes);
    let wire = Counters::get(&c.wire_bytes);
    let chunks = Counters::get(&c.chunks_uploaded);
    let server_cost = match (t.pid, cpu0, cpu1) {
        (Some(pid), Some(a), Some(b)) => {
            let gib = original as f64 / (1u64 << 30) as f64;
            let floor = match spec.mode {
                Mode::Backup | Mode::Dedup | Mode::Incremental => Some(procfs::floor_seconds(w, &uploads)? / gib),
                Mode::Restore | Mode::Speedtest => None,
            };
            let per_gib = (b - a) / gib;
            Some(ServerCost {
                pid,
                cpu_seconds: b - a,
                cpu_seconds_per_gib: per_gib,
                floor_seconds_per_gib: floor,
                ratio_to_floor: floor.filter(|f| *f > 0.0).map(|f| per_gib / f),
                peak_rss_bytes: procfs::peak_rss(pid)?,
            })
        }
        _ => None,
    };
    let mb = |b: u64| b as f64 / 1e6 / elapsed;
    Ok(Report {
        scenario: spec.scenario.to_string(),
        server: t.label.clone(),
        mode: mode_name(spec.mode).into(),
        model: match spec.model {
            Model::Closed { in_flight } => format!("closed(in_flight={in_flight})"),
            Model::Open { rate } => format!("open(rate={:.1}/s)", rate * w.plans.len() as f64),
        },
        sessions: w.plans.len(),
        elapsed_seconds: elapsed,
        original_bytes: original,
        uploaded_original_bytes: Counters::get(&c.uploaded_original_bytes),
        wire_bytes: wire,
        chunks_uploaded: chunks,
        chunks_reused: Counters::get(&c.chunks_reused),
        distinct_chunks_uploaded: uploads.iter().filter(|n| **n > 0).count() as u64,
        original_mb_per_s: mb(original),
        wire_mb_per_s: mb(wire),
        chunks_per_s: chunks as f64 / elapsed,
        errors: failed,
        latency: rec.latencies(),
        server_cost,
    })
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Backup => "backup",
        Mode::Incremental => "incremental",
        Mode::Dedup => "dedup",
        Mode::Restore => "restore",
        Mode::Speedtest => "speedtest",
    }
}

/// How often each pool chunk is uploaded by a measured backup pass (in `mode`): once per
/// session that contains it, none when the session learned it from `previous`.
fn upload_counts(w: &Workload, mode: Mode) -> Vec<u64> {
    let mut n = vec![0u64; w.pool.len()];
    if matches!(mode, Mode::Backup | Mode::Dedup) {
        for plan in &w.plans {
            let distinct: HashSet<u32> = plan.ids.iter().copied().collect();
            for id in distinct {
                n[id as usize] += 1;
            }
        }
    }
    n
}

/// All sessions at once; returns how many failed. Fails outright if every one did, with the
/// first error (a server without the reader protocol ends a restore here, saying so).
async fn pass(
    client: &Arc<HttpClient>,
    t: &Target,
    w: &Arc<Workload>,
    spec: &RunSpec<'_>,
    mode: Mode,
    which: Pass,
    rec: &Arc<Recorder>,
) -> anyhow::Result<u64> {
    let mut tasks = tokio::task::JoinSet::new();
    for session in 0..w.plans.len() {
        let measured_backup = which == Pass::Measured && mode != Mode::Restore;
        let ctx = SessionCtx {
            client: client.clone(),
            store: t.store.clone(),
            backup_id: if mode == Mode::Speedtest {
                "benchmark".into()
            } else {
                format!("lt{}-{session}", spec.run_id)
            },
            backup_time: match mode {
                Mode::Speedtest => spec.tag + session as i64,
                _ if measured_backup && spec.mode.seeds() => spec.tag + 1,
                _ => spec.tag,
            },
            session,
            model: if which == Pass::Seed { Model::Closed { in_flight: 7 } } else { spec.model },
            use_previous: measured_backup && mode == Mode::Incremental,
        };
        let (w, rec) = (w.clone(), rec.clone());
        tasks.spawn(async move {
            match mode {
                Mode::Restore => driver::restore(&ctx, &w, &rec).await,
                Mode::Speedtest => driver::speedtest(&ctx, &w, &rec).await,
                _ => driver::backup(&ctx, &w, &rec).await,
            }
        });
    }
    let (mut failed, mut first) = (0u64, None);
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done.map_err(anyhow::Error::from).and_then(|r| r) {
            failed += 1;
            Counters::add(&rec.counters.errors, 1);
            first.get_or_insert(e);
        }
    }
    if let Some(e) = first {
        let what = if which == Pass::Seed { "seed pass" } else { "session" };
        if failed == w.plans.len() as u64 || which == Pass::Seed {
            return Err(e.context(format!("{failed} of {} sessions failed ({what})", w.plans.len())));
        }
        eprintln!("{failed} of {} sessions failed; first error: {e:#}", w.plans.len());
    }
    Ok(failed)
}
