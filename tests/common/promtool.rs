//! Finding `promtool` (Debian package `prometheus`, installed by `.ci/run`). Under CI (`CI` set)
//! a missing promtool fails the test; elsewhere the check is skipped with a loud message.

use std::path::PathBuf;
use std::process::Command;

pub fn promtool() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("promtool"))
        .find(|p| p.is_file());
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("promtool is required under CI: install Debian's `prometheus` package (.ci/run does)");
        }
        eprintln!(
            "\n*** SKIPPING promtool checks: promtool not found on PATH (apt-get install prometheus, or run .ci/run) ***\n"
        );
    }
    found
}

/// Runs promtool with `args`, feeding `stdin`; returns (success, combined output).
pub fn run(promtool: &PathBuf, args: &[&str], stdin: &[u8]) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(promtool)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}
