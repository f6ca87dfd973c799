//! The example files parse, the built-in defaults are the example's values, and each layer
//! (file, environment, flags, registry) overrides the one below with clear errors.

use std::path::{Path, PathBuf};

use super::*;

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn every_file_in_config_dir_parses_and_validates() {
    let mut n = 0;
    for entry in std::fs::read_dir(repo("config")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let parsed: Config = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            validate::validate(&parsed).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 1, "no config files found");
}

#[test]
fn embedded_defaults_equal_the_example_file() {
    let text = std::fs::read_to_string(repo("config/chunkyard.toml")).unwrap();
    let example: Config = toml::from_str(&text).unwrap();
    assert_eq!(example, Config::default());
    // and the example spells out every key (optional ones commented out) in its section, so
    // no default hides behind serde(default)
    for (path, _) in load::known_keys() {
        let section = if path.len() == 2 { format!("[{}]", path[0]) } else { String::new() };
        let start =
            if section.is_empty() { 0 } else { text.find(&section).unwrap_or_else(|| panic!("{section} missing")) };
        let body = &text[start + section.len()..];
        let body =
            if section.is_empty() { &body[..body.find("\n[").unwrap()] } else { body.split("\n[").next().unwrap() };
        let key = path.last().unwrap();
        assert!(
            body.lines().any(|l| l.trim_start_matches("# ").starts_with(&format!("{key} = "))),
            "{} not documented in config/chunkyard.toml",
            path.join(".")
        );
    }
}

#[test]
fn no_file_no_env_gives_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let flags = Overrides { data_dir: Some(dir.path().to_path_buf()), ..Default::default() };
    let c = load_with(None, env(&[]), &flags).unwrap();
    assert_eq!(c, Config { data_dir: dir.path().to_path_buf(), ..Config::default() });
}

#[test]
fn environment_overrides_file_and_flags_override_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "c.toml",
        "listen = \"127.0.0.1:1000\"\n[pipeline]\nhashers = 2\nwriter-queue = 7\n[metrics]\nenabled = false\n",
    );
    let vars = env(&[
        ("CHUNKYARD_PIPELINE_HASHERS", "6"),
        ("CHUNKYARD_METRICS_ENABLED", "true"),
        ("CHUNKYARD_METRICS_LISTEN", "127.0.0.1:9999"),
        ("CHUNKYARD_LISTEN", "127.0.0.1:2000"),
        ("CHUNKYARD_DATA_DIR", "/nonexistent/from-env"),
        ("CHUNKYARD_PIPELINE_FSYNC", "none"),
        ("CHUNKYARD_TLS_CERT", "/c.pem"),
        ("CHUNKYARD_TLS_KEY", "/c.key"),
        ("CHUNKYARD_CONFIG", "ignored: read by the CLI"),
        ("PATH", "/bin"),
    ]);
    let flags = Overrides { listen: Some("127.0.0.1:3000".parse().unwrap()), data_dir: Some(dir.path().into()) };
    let c = load_with(Some(&file), vars, &flags).unwrap();
    assert_eq!(c.pipeline.hashers, 6);
    assert_eq!(c.pipeline.writer_queue, 7, "file value kept where env is silent");
    assert_eq!(c.pipeline.fsync, FsyncPolicy::None);
    assert!(c.metrics.enabled);
    assert_eq!(c.metrics.listen, "127.0.0.1:9999".parse().unwrap());
    assert_eq!(c.listen, "127.0.0.1:3000".parse().unwrap(), "flag beats env and file");
    assert_eq!(c.data_dir, dir.path(), "flag beats env");
    assert_eq!(c.tls.cert.as_deref(), Some(Path::new("/c.pem")));

    let c = load_with(Some(&file), env(&[("CHUNKYARD_DATA_DIR", "/x/y")]), &Overrides::default()).unwrap();
    assert_eq!(c.listen, "127.0.0.1:1000".parse().unwrap(), "file beats default");
    assert_eq!(c.data_dir, Path::new("/x/y"));
}

fn err(file_text: Option<&str>, vars: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = file_text.map(|t| write(dir.path(), "c.toml", t));
    let flags = Overrides { data_dir: Some(dir.path().into()), ..Default::default() };
    load_with(file.as_deref(), env(vars), &flags).unwrap_err().to_string()
}

#[test]
fn bad_input_gives_errors_naming_the_problem() {
    let e = err(Some("listen = \"[::]:8007\"\nlisen = 1\n"), &[]);
    assert!(e.contains("lisen") && e.contains("line 2"), "{e}");
    let e = err(Some("[pipeline]\nhashers = \"four\"\n"), &[]);
    assert!(e.contains("hashers") || e.contains("line 2"), "{e}");
    let e = err(None, &[("CHUNKYARD_PIPELINE_HASHER", "4")]);
    assert!(e.contains("CHUNKYARD_PIPELINE_HASHER") && e.contains("CHUNKYARD_PIPELINE_HASHERS"), "{e}");
    let e = err(None, &[("CHUNKYARD_PIPELINE_HASHERS", "many")]);
    assert!(e.contains("CHUNKYARD_PIPELINE_HASHERS") && e.contains("not an integer"), "{e}");
    let e = err(None, &[("CHUNKYARD_LISTEN", "nowhere")]);
    assert!(e.contains("CHUNKYARD_LISTEN") && e.contains("invalid socket address"), "{e}");
    let e = err(None, &[("CHUNKYARD_PIPELINE_FSYNC", "sometimes")]);
    assert!(e.contains("CHUNKYARD_PIPELINE_FSYNC") && e.contains("sometimes"), "{e}");
    let e = err(None, &[("CHUNKYARD_PIPELINE_URING_DEPTH", "33")]);
    assert!(e.contains("pipeline.uring-depth") && e.contains("33"), "{e}");
    let e = err(None, &[("CHUNKYARD_LIMITS_H2_MAX_FRAME", "100")]);
    assert!(e.contains("limits.h2-max-frame"), "{e}");
    let e = err(None, &[("CHUNKYARD_LIMITS_MAX_INDEX_BYTES", "1048576")]);
    assert!(e.contains("limits.max-index-bytes") && e.contains("limits.max-session-index-bytes"), "{e}");
    let e = err(None, &[("CHUNKYARD_LIMITS_MAX_SESSION_INDEX_BYTES", "4096")]);
    assert!(e.contains("limits.max-session-index-bytes") && e.contains("1 MiB"), "{e}");
    let e = err(None, &[("CHUNKYARD_TLS_CERT", "/only-cert.pem")]);
    assert!(e.contains("tls") && e.contains("both"), "{e}");
    let e = err(Some("[datastores]\n\"../escape\" = \"x\"\n"), &[]);
    assert!(e.contains("datastores.../escape"), "{e}");
    let e = err(None, &[("CHUNKYARD_METRICS_LISTEN", "[::]:8007")]);
    assert!(e.contains("metrics.listen"), "{e}");
    let e = load_with(Some(Path::new("/nonexistent/chunkyard.toml")), env(&[]), &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/chunkyard.toml"), "{e}");
}
