//! `chunkyard serve`, `cert fingerprint` and `config show`: the commands about the server and
//! the configuration it runs with.

use serde_json::json;

use super::{CertCommand, Cli, CliError, ServeArgs, exit, output};
use crate::config::Config;

/// Blocks until the server stops (Ctrl-C). Metrics, certificate and first-start token are
/// the server's startup (`server::run`).
pub fn run(cli: &Cli, args: &ServeArgs) -> Result<(), CliError> {
    let config = super::load_config(cli, args.listen)?;
    // A mistyped failpoint table must stop a test run here, not silently test nothing.
    crate::failpoint::init_from_env().map_err(|e| CliError::new(exit::USAGE, "Failpoints.Invalid", e))?;
    if let Ok(spec) = std::env::var(crate::failpoint::ENV) {
        tracing::warn!(%spec, "failpoints armed: this server will fail or die on purpose");
    }
    crate::server::run(config).map_err(|e| CliError::new(exit::ERROR, "Server.Failed", e.to_string()))
}

/// The certificate `serve` uses: the configured one, or the generated `<data-dir>/etc/proxy.pem`.
pub fn cert_path(config: &Config) -> std::path::PathBuf {
    config.tls.cert.clone().unwrap_or_else(|| config.etc_dir().join("proxy.pem"))
}

pub fn cert(cli: &Cli, cmd: &CertCommand) -> Result<(), CliError> {
    let CertCommand::Fingerprint { out } = cmd;
    let config = super::load_config(cli, None)?;
    let path = cert_path(&config);
    let fingerprint = fingerprint_of(&path)?;
    if out.json {
        output::json(&json!({ "certificate": { "path": path, "fingerprint": fingerprint } }));
    } else {
        println!("{fingerprint}");
    }
    Ok(())
}

fn fingerprint_of(path: &std::path::Path) -> Result<String, CliError> {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(path).map_err(|e| {
        let hint =
            if e.kind() == std::io::ErrorKind::NotFound { " (run `chunkyard serve` once to generate it)" } else { "" };
        CliError::new(exit::ERROR, "Cert.Unreadable", format!("cannot read {}: {e}{hint}", path.display()))
    })?;
    let leaf = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
        .next()
        .ok_or_else(|| CliError::new(exit::ERROR, "Cert.Invalid", format!("{}: no certificate found", path.display())))?
        .map_err(|e| CliError::new(exit::ERROR, "Cert.Invalid", format!("{}: {e}", path.display())))?;
    Ok(crate::format::fingerprint::cert_fingerprint(leaf.as_ref()))
}

/// `config show`: what `serve` would run with, after every layer and the checks.
pub fn show_config(cli: &Cli, as_json: bool) -> Result<(), CliError> {
    let config = super::load_config(cli, None)?;
    if as_json {
        output::json(&json!({ "config": config }));
    } else {
        let text = toml::to_string(&config)
            .map_err(|e| CliError::new(exit::ERROR, "Config.Render", format!("rendering the configuration: {e}")))?;
        print!("{text}");
    }
    Ok(())
}
