//! The `chunkyard` binary as an operator runs it: exit codes, `--json` objects on stdout,
//! `--log-json` Borg log lines on stderr, config layering from the command line.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn chunkyard(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chunkyard"));
    cmd.env_clear().arg("--data-dir").arg(data_dir).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited normally")
}

/// The stderr JSON lines, each checked to be a Borg log_message.
fn log_lines(o: &Output) -> Vec<Value> {
    text(&o.stderr)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            assert_eq!(v["type"], "log_message", "{l}");
            assert!(v["time"].is_f64() && v["levelname"].is_string() && v["name"].is_string(), "{l}");
            v
        })
        .collect()
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let o = chunkyard(dir.path(), &["--help"], &[]);
    assert_eq!(code(&o), 0);
    for cmd in ["serve", "datastore", "cert"] {
        assert!(text(&o.stdout).contains(cmd), "{}", text(&o.stdout));
    }
    assert_eq!(code(&chunkyard(dir.path(), &["datastore", "list", "--bogus"], &[])), 2);
    assert_eq!(code(&chunkyard(dir.path(), &["frobnicate"], &[])), 2);
    assert_eq!(code(&chunkyard(dir.path(), &["serve", "--listen", "not-an-address"], &[])), 2);

    let o = chunkyard(dir.path(), &["--log-json", "datastore", "create", "../etc", "x"], &[]);
    assert_eq!(code(&o), 2, "{}", text(&o.stderr));
    let lines = log_lines(&o);
    let err = lines.iter().find(|l| l["levelname"] == "ERROR").expect("error logged");
    assert_eq!(err["msgid"], "Datastore.InvalidName");
    assert!(!dir.path().join("etc").exists(), "nothing written for a refused name");
}

#[test]
fn bad_configuration_exits_3_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "[pipeline]\nhashrs = 4\n").unwrap();
    let o = chunkyard(dir.path(), &["--config", file.to_str().unwrap(), "datastore", "list"], &[]);
    assert_eq!(code(&o), 3);
    let err = text(&o.stderr);
    assert!(err.contains("ERROR") && err.contains("hashrs") && err.contains("c.toml"), "{err}");
    assert!(o.stdout.is_empty());

    // the config file can come from CHUNKYARD_CONFIG too
    let o =
        chunkyard(dir.path(), &["--log-json", "datastore", "list"], &[("CHUNKYARD_CONFIG", file.to_str().unwrap())]);
    assert_eq!(code(&o), 3);
    assert_eq!(log_lines(&o).last().unwrap()["msgid"], "Config.Syntax");

    let o = chunkyard(dir.path(), &["datastore", "list"], &[("CHUNKYARD_PIPELINE_HASHRS", "4")]);
    assert_eq!(code(&o), 3);
    assert!(text(&o.stderr).contains("CHUNKYARD_PIPELINE_HASHRS"), "{}", text(&o.stderr));

    let o = chunkyard(dir.path(), &["datastore", "list"], &[("CHUNKYARD_LIMITS_MAX_SESSIONS", "0")]);
    assert_eq!(code(&o), 3);
    assert!(text(&o.stderr).contains("limits.max-sessions"), "{}", text(&o.stderr));

    let o = chunkyard(dir.path(), &["--config", "/nonexistent/c.toml", "datastore", "list"], &[]);
    assert_eq!(code(&o), 3);
}

#[test]
fn datastore_list_shows_config_entries_as_table_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    let abs = dir.path().join("elsewhere");
    std::fs::create_dir_all(abs.join(".chunks")).unwrap();
    std::fs::write(&file, format!("[datastores]\nstore = \"store\"\nbig = {:?}\n", abs.to_str().unwrap())).unwrap();
    let cfg = file.to_str().unwrap();

    let o = chunkyard(dir.path(), &["-c", cfg, "datastore", "list", "--json"], &[]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).expect("stdout is one JSON object");
    assert_eq!(v["data_dir"], dir.path().to_str().unwrap());
    let stores = v["datastores"].as_array().unwrap();
    assert_eq!(stores.len(), 2);
    assert_eq!(stores[0]["name"], "big");
    assert_eq!(stores[0]["path"], abs.to_str().unwrap());
    assert_eq!(stores[0]["exists"], true);
    assert_eq!(stores[0]["source"], "config");
    assert_eq!(stores[1]["name"], "store");
    assert_eq!(stores[1]["path"], dir.path().join("store").to_str().unwrap());
    assert_eq!(stores[1]["exists"], false);

    let o = chunkyard(dir.path(), &["-c", cfg, "datastore", "list"], &[]);
    assert_eq!(code(&o), 0);
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("NAME") && lines[0].contains("PATH"), "{out}");
    assert!(
        lines[1].starts_with("big ") && lines[1].contains(" ok ") && lines[1].ends_with(abs.to_str().unwrap()),
        "{out}"
    );
    assert!(lines[2].starts_with("store ") && lines[2].contains("missing"), "{out}");
}

#[test]
fn cert_fingerprint_is_sha256_of_the_leaf_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = dir.path().join("c.pem");
    let key = dir.path().join("c.key");
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    let env = [("CHUNKYARD_TLS_CERT", cert.to_str().unwrap()), ("CHUNKYARD_TLS_KEY", key.to_str().unwrap())];
    use sha2::Digest as _;
    let want: Vec<String> = sha2::Sha256::digest(generated.cert.der()).iter().map(|b| format!("{b:02x}")).collect();
    let want = want.join(":");

    let o = chunkyard(dir.path(), &["cert", "fingerprint"], &env);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).trim(), want);
    let o = chunkyard(dir.path(), &["cert", "fingerprint", "--json"], &env);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["certificate"]["fingerprint"], want.as_str());
    assert_eq!(v["certificate"]["path"], cert.to_str().unwrap());

    // without a certificate yet: a runtime error that says what to do
    let o = chunkyard(dir.path(), &["cert", "fingerprint"], &[]);
    assert_eq!(code(&o), 1);
    assert!(
        text(&o.stderr).contains("proxy.pem") && text(&o.stderr).contains("chunkyard serve"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn datastore_create_makes_a_pbs_layout_and_registers_it_for_serve() {
    let dir = tempfile::tempdir().unwrap();
    // One create only: making 65536 chunk directories takes seconds on a loaded machine.
    let o = chunkyard(dir.path(), &["datastore", "create", "backups", "rel/backups", "--json"], &[]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let root = dir.path().join("rel/backups");
    assert_eq!(v["datastore"]["name"], "backups");
    assert_eq!(v["datastore"]["path"], root.to_str().unwrap());
    assert!(root.join(".chunks/0000").is_dir() && root.join(".chunks/ffff").is_dir() && root.join(".lock").is_file());

    // a second create of the same name is refused and changes nothing
    let registry = dir.path().join("etc/datastores.toml");
    let before = std::fs::read(&registry).unwrap();
    let o = chunkyard(dir.path(), &["--log-json", "datastore", "create", "backups", "other"], &[]);
    assert_eq!(code(&o), 1);
    assert_eq!(log_lines(&o).last().unwrap()["msgid"], "Datastore.Exists");
    assert!(!dir.path().join("other").exists());
    let o = chunkyard(dir.path(), &["datastore", "create", "store", "other"], &[]);
    assert_eq!(code(&o), 1, "the configured default 'store' exists too");
    assert_eq!(std::fs::read(&registry).unwrap(), before);

    // list (the view serve gets) merges the registry over the config
    let abs = dir.path().join("abs-store");
    std::fs::create_dir_all(abs.join(".chunks")).unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, format!("[datastores]\nstore = \"store\"\noffsite = {:?}\n", abs.to_str().unwrap())).unwrap();
    let o = chunkyard(dir.path(), &["-c", file.to_str().unwrap(), "datastore", "list", "--json"], &[]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let got: Vec<(String, String, bool)> = v["datastores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (d["name"].as_str().unwrap().into(), d["source"].as_str().unwrap().into(), d["exists"].as_bool().unwrap())
        })
        .collect();
    assert_eq!(
        got,
        [
            ("backups".into(), "registry".into(), true),
            ("offsite".into(), "config".into(), true),
            ("store".into(), "config".into(), false)
        ]
    );
}

#[test]
fn config_show_prints_the_effective_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("CHUNKYARD_PIPELINE_HASHERS", "3"), ("CHUNKYARD_LISTEN", "127.0.0.1:7000")];
    let o = chunkyard(dir.path(), &["config", "show", "--json"], &env);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["config"]["pipeline"]["hashers"], 3);
    assert_eq!(v["config"]["listen"], "127.0.0.1:7000");
    assert_eq!(v["config"]["data-dir"], dir.path().to_str().unwrap());
    assert_eq!(v["config"]["limits"]["h2-window"], 33554432);

    // the TOML form is itself a valid config file that yields the same configuration
    let o = chunkyard(dir.path(), &["config", "show"], &env);
    assert_eq!(code(&o), 0);
    let file = dir.path().join("shown.toml");
    std::fs::write(&file, &o.stdout).unwrap();
    let again = chunkyard(dir.path(), &["-c", file.to_str().unwrap(), "config", "show", "--json"], &[]);
    assert_eq!(code(&again), 0, "{}", text(&again.stderr));
    assert_eq!(serde_json::from_slice::<Value>(&again.stdout).unwrap(), v);

    let o = chunkyard(dir.path(), &["config", "show"], &[("CHUNKYARD_PIPELINE_URING_DEPTH", "3")]);
    assert_eq!(code(&o), 3);
    assert!(o.stdout.is_empty());
}
