//! Datastores created with `chunkyard datastore create` are recorded in
//! `<data-dir>/etc/datastores.toml` (a `[datastores]` table, name = path) rather than in the
//! operator's config file, which we never rewrite (it may be managed by configuration
//! management, and rewriting would lose its comments). `load` merges the registry over the
//! config's `[datastores]`; the same name in both is allowed only with the same path.
//!
//! The file's format lives here; adding to it is `store::registry`, which owns durable writes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError};

pub const REGISTRY_FILE: &str = "datastores.toml";

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Registry {
    #[serde(default)]
    datastores: BTreeMap<String, PathBuf>,
}

/// `<data-dir>/etc/datastores.toml`.
pub fn registry_path(config: &Config) -> PathBuf {
    config.etc_dir().join(REGISTRY_FILE)
}

/// The registered datastores (empty when the file does not exist yet).
pub fn read(config: &Config) -> Result<BTreeMap<String, PathBuf>, ConfigError> {
    let path = registry_path(config);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => return Err(ConfigError::Read { path, source }),
    };
    let reg: Registry = toml::from_str(&text)
        .map_err(|e| ConfigError::Parse { origin: path.display().to_string(), message: e.to_string() })?;
    Ok(reg.datastores)
}

pub(super) fn merge(config: &mut Config) -> Result<(), ConfigError> {
    for (name, path) in read(config)? {
        match config.datastores.get(&name) {
            Some(existing) if existing != &path => {
                return Err(ConfigError::Invalid(format!(
                    "datastore '{name}' is configured with path {} but {} registers it with path {}",
                    existing.display(),
                    registry_path(config).display(),
                    path.display()
                )));
            }
            _ => {
                config.datastores.insert(name, path);
            }
        }
    }
    Ok(())
}

/// The registry file's text for `datastores`.
pub fn render(datastores: &BTreeMap<String, PathBuf>) -> String {
    let reg = Registry { datastores: datastores.clone() };
    format!(
        "# Datastores created with `chunkyard datastore create`, merged over the config file's\n\
         # [datastores] by `chunkyard serve`. Written by chunkyard; edit only while it is stopped.\n\n{}",
        toml::to_string(&reg).expect("registry serializes")
    )
}
