//! The `chunkyard` command line: argument definitions (clap), dispatch to one module per
//! command group, and the mapping of failures to documented exit codes. `main.rs` only calls
//! [`main`].
//!
//! Output follows Borg's front-end conventions: data on stdout (a human table, or with `--json`
//! exactly one JSON object), logs and errors on stderr (human lines, or with `--log-json`
//! `log_message` JSON lines).

pub mod acl;
pub mod datastore;
pub mod gc;
pub mod logging;
pub mod output;
pub mod prune;
pub mod serve;
pub mod token;
pub mod user;
pub mod verify;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, Config, ConfigError, Overrides};

/// Exit codes (documented in README.md).
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// The command failed at run time (I/O, server error, datastore already exists, ...).
    pub const ERROR: u8 = 1;
    /// Bad command line: unknown option, missing or malformed argument (clap's code too).
    pub const USAGE: u8 = 2;
    /// The configuration (file, CHUNKYARD_* variables, registry) is unreadable or invalid.
    pub const CONFIG: u8 = 3;
}

#[derive(Debug, Parser)]
#[command(name = "chunkyard", version, about = "A Proxmox Backup Server protocol compatible backup server")]
pub struct Cli {
    /// Configuration file (default: built-in defaults, see config/chunkyard.toml).
    #[arg(long, short = 'c', global = true, env = "CHUNKYARD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (overrides `data-dir` from the file and CHUNKYARD_DATA_DIR).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log as JSON lines (Borg's log_message objects) on stderr.
    #[arg(long, global = true)]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Manage datastores.
    #[command(subcommand)]
    Datastore(DatastoreCommand),
    /// Inspect the server's TLS certificate.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Inspect the effective configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage users (password login).
    #[command(subcommand)]
    User(user::UserCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Manage access control lists.
    #[command(subcommand)]
    Acl(acl::AclCommand),
    /// Garbage-collect a datastore (remove chunks no index references).
    Gc(gc::GcArgs),
    /// Verify snapshots; corrupt chunks are renamed to `.bad`.
    Verify(verify::VerifyArgs),
    /// Prune a backup group by keep-* rules.
    Prune(prune::PruneArgs),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (defaults, file, environment, flags, registry merged
    /// and validated) as TOML, or with --json as {"config": {...}}; exit 3 if it is invalid.
    Show {
        #[command(flatten)]
        out: JsonFlag,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the TLS API listener (overrides `listen` and CHUNKYARD_LISTEN).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DatastoreCommand {
    /// Create a datastore at PATH (relative = below the data dir) and register it for `serve`.
    Create {
        /// Datastore name: 3-32 characters of A-Z a-z 0-9 _ . - (not starting with . or -).
        name: String,
        path: PathBuf,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// List the configured and registered datastores.
    List {
        #[command(flatten)]
        out: JsonFlag,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Print the SHA-256 fingerprint of the server certificate (for PBS_FINGERPRINT).
    Fingerprint {
        #[command(flatten)]
        out: JsonFlag,
    },
}

/// A failed command: the message for the operator, Borg-style msgid, and the exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    pub message: String,
    pub msgid: &'static str,
    pub code: u8,
}

impl CliError {
    pub fn new(code: u8, msgid: &'static str, message: impl Into<String>) -> Self {
        CliError { message: message.into(), msgid, code }
    }
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        let msgid = match e {
            ConfigError::Read { .. } => "Config.Unreadable",
            ConfigError::Parse { .. } | ConfigError::Env { .. } => "Config.Syntax",
            ConfigError::Invalid(_) => "Config.Invalid",
            ConfigError::Io { .. } => "Config.Io",
        };
        let code = if matches!(e, ConfigError::Io { .. }) { exit::ERROR } else { exit::CONFIG };
        CliError::new(code, msgid, e.to_string())
    }
}

/// The effective configuration for this invocation: file, environment, flags, registry.
pub fn load_config(cli: &Cli, listen: Option<SocketAddr>) -> Result<Config, CliError> {
    let flags = Overrides { listen, data_dir: cli.data_dir.clone() };
    Ok(config::load_with(cli.config.as_deref(), std::env::vars(), &flags)?)
}

/// Parses the command line, runs the command, reports a failure on stderr, returns the code.
pub fn main() -> ExitCode {
    let cli = Cli::parse(); // prints usage errors itself and exits with 2
    logging::init(if cli.log_json { logging::LogFormat::Json } else { logging::LogFormat::Human });
    let result = match &cli.command {
        Command::Serve(args) => serve::run(&cli, args),
        Command::Datastore(cmd) => datastore::run(&cli, cmd),
        Command::Cert(cmd) => serve::cert(&cli, cmd),
        Command::Config(ConfigCommand::Show { out }) => serve::show_config(&cli, out.json),
        Command::User(cmd) => user::run(&cli, cmd),
        Command::Token(cmd) => token::run(&cli, cmd),
        Command::Acl(cmd) => acl::run(&cli, cmd),
        Command::Gc(args) => gc::run(&cli, args),
        Command::Verify(args) => verify::run(&cli, args),
        Command::Prune(args) => prune::run(&cli, args),
    };
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            tracing::error!(target: "chunkyard", msgid = e.msgid, "{}", e.message);
            ExitCode::from(e.code)
        }
    }
}
