//! `chunkyard datastore create|list`. Created datastores are recorded in the registry
//! (`<data-dir>/etc/datastores.toml`, see `config::registry` and `store::registry`) so the next
//! `serve` serves them without the operator editing the config file.

use serde_json::json;

use super::{Cli, CliError, DatastoreCommand, exit, output};
use crate::config::{self, Config};
use crate::format::DatastoreName;
use crate::store::{self, Datastore};

pub fn run(cli: &Cli, cmd: &DatastoreCommand) -> Result<(), CliError> {
    match cmd {
        DatastoreCommand::Create { name, path, out } => create(cli, name, path, out.json),
        DatastoreCommand::List { out } => list(cli, out.json),
    }
}

fn create(cli: &Cli, name: &str, path: &std::path::Path, as_json: bool) -> Result<(), CliError> {
    let name =
        DatastoreName::parse(name).map_err(|e| CliError::new(exit::USAGE, "Datastore.InvalidName", e.to_string()))?;
    if path.as_os_str().is_empty() {
        return Err(CliError::new(exit::USAGE, "Datastore.InvalidPath", "datastore path must not be empty"));
    }
    let config = super::load_config(cli, None)?;
    if config.datastores.contains_key(name.as_str()) {
        return Err(CliError::new(exit::ERROR, "Datastore.Exists", format!("datastore '{name}' already exists")));
    }
    let root = if path.is_absolute() { path.to_path_buf() } else { config.data_dir.join(path) };
    // The store creates its own directory but not its parents (the data dir may be new).
    if let Some(parent) = root.parent() {
        std::fs::create_dir_all(parent).map_err(|e| {
            CliError::new(exit::ERROR, "Datastore.CreateFailed", format!("creating {}: {e}", parent.display()))
        })?;
    }
    Datastore::create(name.clone(), &root).map_err(|e| {
        CliError::new(exit::ERROR, "Datastore.CreateFailed", format!("creating datastore '{name}': {e}"))
    })?;
    store::registry::add(&config, name.as_str(), path)?;
    tracing::info!(datastore = %name, path = %root.display(), "datastore created");
    if as_json {
        output::json(&json!({ "datastore": { "name": name.as_str(), "path": root, "source": "registry" } }));
    } else {
        println!("created datastore '{name}' at {}", root.display());
    }
    Ok(())
}

/// One row of `datastore list`.
fn entries(config: &Config) -> Result<Vec<serde_json::Value>, CliError> {
    let registered = config::read_registry(config)?;
    Ok(config
        .datastores
        .keys()
        .map(|name| {
            let path = config.datastore_path(name).expect("listed name");
            let source = if registered.contains_key(name) { "registry" } else { "config" };
            json!({ "name": name, "path": path, "source": source, "exists": path.join(".chunks").is_dir() })
        })
        .collect())
}

fn list(cli: &Cli, as_json: bool) -> Result<(), CliError> {
    let config = super::load_config(cli, None)?;
    let rows = entries(&config)?;
    if as_json {
        output::json(&json!({ "data_dir": config.data_dir, "datastores": rows }));
        return Ok(());
    }
    let cells = rows
        .iter()
        .map(|r| {
            let exists = if r["exists"].as_bool() == Some(true) { "ok" } else { "missing" };
            vec![
                r["name"].as_str().unwrap_or_default().to_string(),
                r["source"].as_str().unwrap_or_default().to_string(),
                exists.to_string(),
                r["path"].as_str().unwrap_or_default().to_string(),
            ]
        })
        .collect::<Vec<_>>();
    print!("{}", output::table(&["NAME", "SOURCE", "STATUS", "PATH"], &cells));
    Ok(())
}
