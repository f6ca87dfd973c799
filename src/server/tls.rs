//! The TLS side of the listener: the server certificate (configured, or self-signed on first
//! start like PBS's `proxy.pem`), its fingerprint in PBS's form, and the rustls configuration.
//!
//! No ALPN is offered: the real client negotiates none and speaks HTTP/1.1 until the upgrade
//! (protocol.md 1.1), so selecting `h2` here would break it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::auth::files::{FileError, write_atomic};
use crate::config::Config;
use crate::format::fingerprint::cert_fingerprint;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("unable to read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("unable to write {path}: {source}")]
    Write { path: PathBuf, source: FileError },
    #[error("invalid PEM in {path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("unable to generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The loaded certificate and the ready rustls configuration.
pub struct ServerTls {
    pub config: Arc<rustls::ServerConfig>,
    /// SHA-256 of the leaf certificate's DER, `aa:bb:...` (what `--fingerprint` expects).
    pub fingerprint: String,
}

/// Loads the configured certificate and key, or the generated pair under `<data-dir>/etc`,
/// generating it first if neither file exists yet.
pub fn load_or_generate(config: &Config) -> Result<ServerTls, TlsError> {
    let etc = config.etc_dir();
    let cert_path = config.tls.cert.clone().unwrap_or_else(|| etc.join("proxy.pem"));
    let key_path = config.tls.key.clone().unwrap_or_else(|| etc.join("proxy.key"));
    let configured = config.tls.cert.is_some() || config.tls.key.is_some();
    if !configured && !cert_path.exists() && !key_path.exists() {
        generate(&cert_path, &key_path)?;
    }
    let certs = read_certs(&cert_path)?;
    let key_pem = std::fs::read(&key_path).map_err(|source| TlsError::Read { path: key_path.clone(), source })?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| TlsError::Pem { path: key_path.clone(), message: e.to_string() })?;
    let fingerprint = cert_fingerprint(&certs[0]);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    server.alpn_protocols.clear();
    Ok(ServerTls { config: Arc::new(server), fingerprint })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source })?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem { path: path.to_path_buf(), message: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::Pem { path: path.to_path_buf(), message: "no certificate found".into() });
    }
    Ok(certs)
}

/// A self-signed certificate valid for the names a local client may use.
fn generate(cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    if let Some(host) = crate::jobs::upid::hostname().filter(|h| h != "localhost") {
        names.insert(1, host);
    }
    let generated = rcgen::generate_simple_self_signed(names)?;
    // Key first: a crash between the two writes leaves no certificate without its key.
    let key_pem = generated.signing_key.serialize_pem();
    write_atomic(key_path, key_pem.as_bytes(), 0o600)
        .map_err(|source| TlsError::Write { path: key_path.to_path_buf(), source })?;
    write_atomic(cert_path, generated.cert.pem().as_bytes(), 0o640)
        .map_err(|source| TlsError::Write { path: cert_path.to_path_buf(), source })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_and_reloads_the_same_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config { data_dir: dir.path().to_path_buf(), ..Config::default() };
        let first = load_or_generate(&config).unwrap();
        let second = load_or_generate(&config).unwrap();
        assert_eq!(first.fingerprint, second.fingerprint);
        assert_eq!(first.fingerprint.len(), 95);
        assert!(first.fingerprint.chars().all(|c| c == ':' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("etc/proxy.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(first.config.alpn_protocols.is_empty());
    }

    #[test]
    fn missing_configured_certificate_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config { data_dir: dir.path().to_path_buf(), ..Config::default() };
        config.tls.cert = Some(dir.path().join("nope.pem"));
        assert!(matches!(load_or_generate(&config), Err(TlsError::Read { .. })));
    }
}
