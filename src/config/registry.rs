//! Datastores created with `chunkyard datastore create` are recorded in
//! `<data-dir>/etc/datastores.toml` (a `[datastores]` table, name = path) rather than in the
//! operator's config file, which we never rewrite (it may be managed by configuration
//! management, and rewriting would lose its comments). `load` merges the registry over the
//! config's `[datastores]`; the same name in both is allowed only with the same path.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

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

/// Adds `name = path` to the registry: under an exclusive lock, written to a temp file, fsynced,
/// renamed over the old file, directory fsynced. Refuses a name already configured anywhere.
pub fn add(config: &Config, name: &str, path: &Path) -> Result<(), ConfigError> {
    let etc = config.etc_dir();
    let io = |context: String| move |source: std::io::Error| ConfigError::Io { context, source };
    std::fs::create_dir_all(&etc).map_err(io(format!("creating {}", etc.display())))?;
    let lock_path = etc.join(".datastores.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io(format!("opening {}", lock_path.display())))?;
    let _guard = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| ConfigError::Io { context: format!("locking {}", lock_path.display()), source: e.into() })?;

    let mut reg = Registry { datastores: read(config)? };
    if config.datastores.contains_key(name) || reg.datastores.contains_key(name) {
        return Err(ConfigError::Invalid(format!("datastore '{name}' already exists")));
    }
    reg.datastores.insert(name.to_string(), path.to_path_buf());
    let text = format!(
        "# Datastores created with `chunkyard datastore create`, merged over the config file's\n\
         # [datastores] by `chunkyard serve`. Written by chunkyard; edit only while it is stopped.\n\n{}",
        toml::to_string(&reg).expect("registry serializes")
    );
    let target = registry_path(config);
    let mut tmp = tempfile::NamedTempFile::new_in(&etc).map_err(io(format!("temp file in {}", etc.display())))?;
    tmp.write_all(text.as_bytes()).map_err(io(format!("writing {}", tmp.path().display())))?;
    tmp.as_file().sync_all().map_err(io(format!("fsync {}", tmp.path().display())))?;
    tmp.persist(&target)
        .map_err(|e| ConfigError::Io { context: format!("renaming to {}", target.display()), source: e.error })?;
    let dir = std::fs::File::open(&etc).map_err(io(format!("opening {}", etc.display())))?;
    nix::unistd::fsync(dir.as_fd())
        .map_err(|e| ConfigError::Io { context: format!("fsync {}", etc.display()), source: e.into() })?;
    Ok(())
}
