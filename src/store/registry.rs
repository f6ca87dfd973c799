//! Adding a datastore to the registry (`<data-dir>/etc/datastores.toml`, see
//! `config::registry` for its format and how `serve` reads it). It lives here because the file
//! is replaced with the store's one durable write, which config, a leaf, cannot reach.

use std::path::Path;

use crate::config::{self, Config, ConfigError};
use crate::store::StoreError;
use crate::store::durable;

/// The registry holds paths only, but is the operator's: readable by its owner alone, as the
/// temp file it used to be renamed from was.
const REGISTRY_MODE: u32 = 0o600;

/// Adds `name = path` to the registry: under an exclusive lock, replaced durably (temp file,
/// fsync, rename, directory fsync). Refuses a name already configured anywhere.
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

    let mut datastores = config::read_registry(config)?;
    if config.datastores.contains_key(name) || datastores.contains_key(name) {
        return Err(ConfigError::Invalid(format!("datastore '{name}' already exists")));
    }
    datastores.insert(name.to_string(), path.to_path_buf());
    let text = config::render_registry(&datastores);
    durable::write_atomic_mode(&config::registry_path(config), text.as_bytes(), REGISTRY_MODE, true).map_err(
        |e| match e {
            StoreError::Io { context, source } => ConfigError::Io { context, source },
            other => ConfigError::Invalid(other.to_string()),
        },
    )
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::config::{Overrides, load_with, read_registry};

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn registered_datastores_are_merged_and_conflicts_refused() {
        let env = Vec::<(String, String)>::new;
        let dir = tempfile::tempdir().unwrap();
        let flags = Overrides { data_dir: Some(dir.path().into()), ..Default::default() };
        let base = load_with(None, env(), &flags).unwrap();
        add(&base, "archive", Path::new("/srv/archive")).unwrap();
        add(&base, "second", Path::new("second")).unwrap();
        let e = add(&base, "store", Path::new("other")).unwrap_err().to_string();
        assert!(e.contains("'store' already exists"), "{e}");
        let e = add(&base, "archive", Path::new("/elsewhere")).unwrap_err().to_string();
        assert!(e.contains("'archive' already exists"), "{e}");

        let c = load_with(None, env(), &flags).unwrap();
        assert_eq!(c.datastore_path("archive").unwrap(), Path::new("/srv/archive"));
        assert_eq!(c.datastore_path("second").unwrap(), dir.path().join("second"));
        assert_eq!(c.datastore_path("store").unwrap(), dir.path().join("store"));
        assert_eq!(read_registry(&c).unwrap().len(), 2);
        // no temp files left next to the registry
        let names: Vec<_> = std::fs::read_dir(c.etc_dir()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "{names:?}"); // datastores.toml + .datastores.lock

        let file = write(dir.path(), "c.toml", "[datastores]\narchive = \"/srv/other\"\n");
        let e = load_with(Some(&file), env(), &flags).unwrap_err().to_string();
        assert!(e.contains("archive") && e.contains("/srv/other") && e.contains("/srv/archive"), "{e}");
        let file = write(dir.path(), "c.toml", "[datastores]\narchive = \"/srv/archive\"\n");
        assert!(load_with(Some(&file), env(), &flags).is_ok(), "same path in both is fine");
    }

    #[test]
    fn the_registry_stays_private_to_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let flags = Overrides { data_dir: Some(dir.path().into()), ..Default::default() };
        let config = load_with(None, Vec::new(), &flags).unwrap();
        add(&config, "archive", Path::new("/srv/archive")).unwrap();
        let mode = std::fs::metadata(config::registry_path(&config)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, REGISTRY_MODE);
    }
}
