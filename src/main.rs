//! The `chunkyard` binary: everything lives in `chunkyard::cli`, so this file stays wiring only.

fn main() -> std::process::ExitCode {
    chunkyard::cli::main()
}
