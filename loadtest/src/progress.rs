//! Progress while a run goes on: an indicatif bar on a terminal, Borg-style JSON lines
//! (`--log-json`: `progress_percent` and `archive_progress` objects on stderr, one a line,
//! the last one of an operation with `"finished": true`) otherwise, or nothing.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tokio::task::JoinHandle;

use crate::stats::{Counters, Recorder};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Bar,
    LogJson,
    Quiet,
}

impl Style {
    pub fn choose(log_json: bool) -> Style {
        if log_json {
            Style::LogJson
        } else if std::io::stderr().is_terminal() {
            Style::Bar
        } else {
            Style::Quiet
        }
    }
}

/// A running progress display; `finish` stops it and prints the closing line.
pub struct Progress {
    task: Option<JoinHandle<()>>,
    style: Style,
    operation: u64,
    msgid: String,
    bar: Option<ProgressBar>,
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// One `progress_percent` line (Borg's schema; `info` names the phase).
pub fn percent_line(operation: u64, msgid: &str, current: u64, total: u64) -> serde_json::Value {
    let pct = if total == 0 { 100.0 } else { current as f64 * 100.0 / total as f64 };
    json!({
        "type": "progress_percent", "operation": operation, "msgid": msgid, "finished": false,
        "message": format!("{pct:.1}% {msgid}"), "current": current.min(total), "total": total,
        "info": [msgid], "time": now(),
    })
}

/// One `archive_progress` line: original, wire ("compressed") and deduplicated (sent once
/// but already known, i.e. reused) sizes so far; `nfiles` counts finished sessions.
pub fn archive_line(rec: &Recorder) -> serde_json::Value {
    let c = &rec.counters;
    json!({
        "type": "archive_progress", "original_size": Counters::get(&c.original_bytes),
        "compressed_size": Counters::get(&c.wire_bytes),
        "deduplicated_size": Counters::get(&c.original_bytes)
            .saturating_sub(Counters::get(&c.uploaded_original_bytes)),
        "nfiles": Counters::get(&c.sessions_done), "path": "", "time": now(),
    })
}

fn emit(v: &serde_json::Value) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{v}");
}

impl Progress {
    /// Starts showing progress of `msgid` towards `total` original bytes.
    pub fn start(style: Style, operation: u64, msgid: &str, total: u64, rec: Arc<Recorder>) -> Self {
        let mut bar = None;
        let task = match style {
            Style::Quiet => None,
            Style::Bar => {
                let pb = ProgressBar::new(total).with_message(msgid.to_string());
                pb.set_style(
                    ProgressStyle::with_template(
                        "{msg} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec}",
                    )
                    .expect("valid template"),
                );
                bar = Some(pb.clone());
                Some(tokio::spawn(async move {
                    loop {
                        pb.set_position(Counters::get(&rec.counters.original_bytes));
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }))
            }
            Style::LogJson => {
                let msgid = msgid.to_string();
                Some(tokio::spawn(async move {
                    loop {
                        let done = Counters::get(&rec.counters.original_bytes);
                        emit(&percent_line(operation, &msgid, done, total));
                        emit(&archive_line(&rec));
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }))
            }
        };
        Progress { task, style, operation, msgid: msgid.to_string(), bar }
    }

    pub fn finish(mut self, rec: &Recorder) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        if let Some(pb) = self.bar.take() {
            pb.set_position(Counters::get(&rec.counters.original_bytes));
            pb.finish();
        }
        if self.style == Style::LogJson {
            emit(&archive_line(rec));
            emit(&json!({"type": "progress_percent", "operation": self.operation,
                         "msgid": self.msgid, "finished": true, "time": now()}));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_line_has_borgs_keys() {
        let v = percent_line(3, "loadtest.backup", 50, 200);
        assert_eq!(v["type"], "progress_percent");
        assert_eq!(v["operation"], 3);
        assert_eq!(v["current"], 50);
        assert_eq!(v["total"], 200);
        assert_eq!(v["finished"], false);
        assert_eq!(v["message"], "25.0% loadtest.backup");
        assert!(v["time"].as_f64().unwrap() > 1.0e9);
    }
}
