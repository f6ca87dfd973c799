//! Log output on stderr through `tracing`: human lines by default, or with `--log-json` one
//! JSON object per line in Borg's `log_message` shape (`type`, `time` as float epoch seconds,
//! `levelname`, `name`, `message`, `msgid`), so front ends written for Borg's `--log-json` can
//! read it. Level filter from `CHUNKYARD_LOG` (tracing `EnvFilter` syntax, default `info`).
//!
//! A `msgid` field on an event (`tracing::error!(msgid = "Config.Invalid", "...")`) becomes
//! the JSON `msgid` (null otherwise); other fields are appended to the message as `key=value`
//! so the object keeps exactly Borg's keys.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Environment variable holding the level filter.
pub const LOG_ENV: &str = "CHUNKYARD_LOG";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// Where lines go: stderr in the binary, a buffer in tests.
pub type Sink = Arc<Mutex<dyn Write + Send>>;

/// The layer that formats every event as one line.
pub struct LineLayer {
    format: LogFormat,
    sink: Sink,
}

impl LineLayer {
    pub fn new(format: LogFormat, sink: Sink) -> Self {
        LineLayer { format, sink }
    }
}

/// Installs the global subscriber; a second call (tests) is ignored.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env(LOG_ENV).unwrap_or_else(|_| EnvFilter::new("info"));
    let sink: Sink = Arc::new(Mutex::new(std::io::stderr()));
    let _ = tracing_subscriber::registry().with(filter).with(LineLayer::new(format, sink)).try_init();
}

/// Borg's level names (it has no TRACE; WARN is WARNING).
pub fn levelname(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    msgid: Option<String>,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message.push_str(value),
            "msgid" => self.msgid = Some(value.to_string()),
            name => {
                let _ = write!(self.rest, " {name}={value}");
            }
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            "msgid" => self.msgid = Some(format!("{value:?}")),
            name => {
                let _ = write!(self.rest, " {name}={value:?}");
            }
        }
    }
}

impl<S: Subscriber> Layer<S> for LineLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        let meta = event.metadata();
        let message = format!("{}{}", f.message, f.rest);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let line = match self.format {
            LogFormat::Json => serde_json::json!({
                "type": "log_message",
                "time": now.as_secs_f64(),
                "levelname": levelname(meta.level()),
                "name": meta.target(),
                "message": message,
                "msgid": f.msgid,
            })
            .to_string(),
            LogFormat::Human => {
                let time = chrono::DateTime::<chrono::Utc>::from(SystemTime::now());
                format!(
                    "{} {:<7} {}: {message}",
                    time.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
                    levelname(meta.level()),
                    meta.target()
                )
            }
        };
        let _ = writeln!(self.sink.lock(), "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(format: LogFormat, f: impl FnOnce()) -> String {
        let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink: Sink = buf.clone();
        let subscriber = tracing_subscriber::registry().with(LineLayer::new(format, sink));
        tracing::subscriber::with_default(subscriber, f);
        String::from_utf8(buf.lock().clone()).unwrap()
    }

    #[test]
    fn json_lines_have_exactly_borgs_log_message_keys() {
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
        let out = capture(LogFormat::Json, || {
            tracing::warn!(target: "chunkyard::server", "disk \"almost\" full");
            tracing::error!(msgid = "Config.Invalid", path = "/x", "bad config");
            tracing::trace!("fine detail");
        });
        let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 3, "{out}");
        for l in &lines {
            let mut keys: Vec<_> = l.as_object().unwrap().keys().cloned().collect();
            keys.sort();
            assert_eq!(keys, ["levelname", "message", "msgid", "name", "time", "type"]);
            assert_eq!(l["type"], "log_message");
            let t = l["time"].as_f64().unwrap();
            assert!(t >= before - 1.0 && t < before + 60.0, "{t}");
        }
        assert_eq!(lines[0]["levelname"], "WARNING");
        assert_eq!(lines[0]["name"], "chunkyard::server");
        assert_eq!(lines[0]["message"], "disk \"almost\" full");
        assert!(lines[0]["msgid"].is_null());
        assert_eq!(lines[1]["levelname"], "ERROR");
        assert_eq!(lines[1]["msgid"], "Config.Invalid");
        assert_eq!(lines[1]["message"], "bad config path=/x");
        assert_eq!(lines[2]["levelname"], "DEBUG");
    }

    #[test]
    fn human_lines_carry_time_level_target_and_fields() {
        let out =
            capture(LogFormat::Human, || tracing::info!(target: "chunkyard::cli", addr = "127.0.0.1:1", "listening"));
        let line = out.trim_end();
        assert!(!line.contains('\n'), "{out}");
        assert!(line.ends_with(" INFO    chunkyard::cli: listening addr=127.0.0.1:1"), "{line}");
        assert!(chrono::DateTime::parse_from_rfc3339(line.split(' ').next().unwrap()).is_ok(), "{line}");
    }
}
