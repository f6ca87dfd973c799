//! README.md stays true to the code: it documents every exported metric, every exit code, every
//! configuration key, and its test command is the one `.ci/run` runs.

use chunkyard::cli::exit;
use chunkyard::metrics::CATALOGUE;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

#[test]
fn readme_lists_every_metric() {
    let text = readme();
    for m in CATALOGUE {
        assert!(text.contains(&format!("| `{}` |", m.name)), "README metrics table lacks {}", m.name);
    }
}

#[test]
fn readme_documents_every_exit_code() {
    let text = readme();
    for code in [exit::OK, exit::ERROR, exit::USAGE, exit::CONFIG] {
        assert!(text.contains(&format!("\n| {code} | ")), "README lacks exit code {code}");
    }
}

#[test]
fn readme_documents_every_config_key() {
    let text = readme();
    for var in chunkyard::config::env_names() {
        // CHUNKYARD_PIPELINE_URING_DEPTH -> some table row naming uring-depth
        let key = var.trim_start_matches("CHUNKYARD_").to_lowercase().replace('_', "-");
        let found = text.lines().filter(|l| l.starts_with("| `")).any(|l| {
            let cell = l.split('|').nth(1).unwrap_or("").replace(['`', ' '], "");
            cell.split(',').any(|k| k.replace(['.', '_'], "-") == key)
        });
        assert!(found, "README configuration table lacks the key for {var}");
    }
}

#[test]
fn readme_and_ci_run_the_same_test_command() {
    let ci = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/run")).unwrap();
    let cmd = "cargo test --workspace --locked";
    assert!(ci.lines().any(|l| l.trim() == cmd), ".ci/run does not run `{cmd}`");
    assert!(readme().contains(cmd), "README does not give `{cmd}`");
}
