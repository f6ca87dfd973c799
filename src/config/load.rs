//! Building the effective configuration from its layers, lowest first: the embedded defaults
//! (`Config::default()`, equal to `config/chunkyard.toml`), the TOML file, `CHUNKYARD_*`
//! environment variables, command-line flags, and last the datastores registered by
//! `chunkyard datastore create` in `<data-dir>/etc/datastores.toml`. Then validation.
//!
//! Environment scheme: `CHUNKYARD_` + the key's TOML path, upper-cased, with `-` and `.` both
//! written `_`: `listen` -> `CHUNKYARD_LISTEN`, `data-dir` -> `CHUNKYARD_DATA_DIR`,
//! `metrics.listen` -> `CHUNKYARD_METRICS_LISTEN`, `pipeline.hashers` ->
//! `CHUNKYARD_PIPELINE_HASHERS`. Values are read as the key's type (numbers, `true`/`false`,
//! strings as written, no quotes). Datastores cannot be set from the environment (their names
//! are not expressible as variable names). An unknown `CHUNKYARD_*` variable is an error, like
//! an unknown key in the file, so a typo never silently does nothing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::{Config, ConfigError};

/// `CHUNKYARD_*` variables that are not configuration keys (read elsewhere).
pub const RESERVED_ENV: &[&str] = &["CHUNKYARD_CONFIG", "CHUNKYARD_LOG", crate::failpoint::ENV];

/// Command-line flags that override file and environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
}

/// File (if given) + process environment, then the datastore registry and validation.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
    load_with(path, std::env::vars(), &Overrides::default())
}

/// [`load`] with an explicit environment and command-line overrides.
pub fn load_with(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    flags: &Overrides,
) -> Result<Config, ConfigError> {
    let mut table = match path {
        Some(p) => read_table(p)?,
        None => Table::new(),
    };
    apply_env(&mut table, env)?;
    let origin = path.map_or_else(|| "<defaults + environment>".to_string(), |p| p.display().to_string());
    let mut config: Config = table
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Parse { origin, message: e.message().to_string() })?;
    if let Some(listen) = flags.listen {
        config.listen = listen;
    }
    if let Some(dir) = &flags.data_dir {
        config.data_dir = dir.clone();
    }
    super::registry::merge(&mut config)?;
    super::validate::validate(&config)?;
    Ok(config)
}

/// Parses one TOML file strictly (unknown keys refused) without defaults applied.
pub fn read_table(path: &Path) -> Result<Table, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    let origin = path.display().to_string();
    // Parse once as Config so unknown keys and wrong types are reported with line and column.
    toml::from_str::<Config>(&text)
        .map_err(|e| ConfigError::Parse { origin: origin.clone(), message: e.to_string() })?;
    text.parse::<Table>().map_err(|e| ConfigError::Parse { origin, message: e.to_string() })
}

/// Every settable key path (`["pipeline", "hashers"]`) with its default value, which also says
/// how an environment string is typed.
pub(super) fn known_keys() -> Vec<(Vec<String>, Value)> {
    let mut probe = Config::default();
    // Optional keys are absent from a serialized default; give them a value so they are listed.
    probe.tls.cert = Some(PathBuf::new());
    probe.tls.key = Some(PathBuf::new());
    let table = Table::try_from(&probe).expect("Config serializes to a table");
    let mut out = Vec::new();
    for (k, v) in table {
        match v {
            Value::Table(section) if k != "datastores" => {
                out.extend(section.into_iter().map(|(k2, v2)| (vec![k.clone(), k2], v2)));
            }
            Value::Table(_) => {}
            v => out.push((vec![k], v)),
        }
    }
    out
}

fn env_name(path: &[String]) -> String {
    format!("CHUNKYARD_{}", path.join("_").replace('-', "_").to_uppercase())
}

/// The environment variable names that set configuration keys, for docs and error messages.
pub fn env_names() -> Vec<String> {
    known_keys().iter().map(|(p, _)| env_name(p)).collect()
}

fn apply_env(table: &mut Table, env: impl IntoIterator<Item = (String, String)>) -> Result<(), ConfigError> {
    let keys = known_keys();
    let mut vars: Vec<(String, String)> =
        env.into_iter().filter(|(k, _)| k.starts_with("CHUNKYARD_") && !RESERVED_ENV.contains(&k.as_str())).collect();
    vars.sort();
    for (var, raw) in vars {
        let Some((path, default)) = keys.iter().find(|(p, _)| env_name(p) == var) else {
            return Err(ConfigError::Env {
                var,
                message: format!("not a configuration variable (known: {})", env_names().join(", ")),
            });
        };
        let value = typed(&raw, default).map_err(|message| ConfigError::Env { var: var.clone(), message })?;
        // Deserialize the variable alone so a bad value is blamed on it, not on the whole layer.
        let alone = path.iter().rev().fold(value.clone(), |v, k| Value::Table(Table::from_iter([(k.clone(), v)])));
        alone
            .try_into::<Config>()
            .map_err(|e| ConfigError::Env { var: var.clone(), message: e.message().to_string() })?;
        let mut at = &mut *table;
        for part in &path[..path.len() - 1] {
            let entry = at.entry(part.clone()).or_insert_with(|| Value::Table(Table::new()));
            at = entry.as_table_mut().ok_or_else(|| ConfigError::Env {
                var: var.clone(),
                message: format!("`{part}` in the file is not a table"),
            })?;
        }
        at.insert(path[path.len() - 1].clone(), value);
    }
    Ok(())
}

fn typed(raw: &str, like: &Value) -> Result<Value, String> {
    let raw = raw.trim();
    match like {
        Value::Integer(_) => raw.parse::<i64>().map(Value::Integer).map_err(|_| format!("`{raw}` is not an integer")),
        Value::Boolean(_) => match raw {
            "true" | "1" | "yes" | "on" => Ok(Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Ok(Value::Boolean(false)),
            _ => Err(format!("`{raw}` is not a boolean (true/false)")),
        },
        Value::Float(_) => raw.parse::<f64>().map(Value::Float).map_err(|_| format!("`{raw}` is not a number")),
        _ => Ok(Value::String(raw.to_string())),
    }
}
