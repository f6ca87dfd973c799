//! `chunkyard user create USERID [--password-stdin]`: adds a user to `<data-dir>/etc/users.json`
//! (password stored as an argon2id hash). A running server picks the change up by itself.

use std::io::BufRead;

use clap::Subcommand;
use serde_json::json;

use super::{Cli, CliError, JsonFlag, exit, output};
use crate::auth::{AuthError, AuthStore};

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user (`name@realm`, e.g. `alice@pbs`).
    Create {
        userid: String,
        /// Read the password (for `login` / tickets) from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        out: JsonFlag,
    },
}

/// Opens the access store of the configured data directory.
pub fn open_store(cli: &Cli) -> Result<std::sync::Arc<AuthStore>, CliError> {
    let config = super::load_config(cli, None)?;
    AuthStore::open(&config.etc_dir()).map_err(access_error)
}

/// Refused changes are the operator's mistake (exit 1 with the reason), like any run-time error.
pub fn access_error(e: AuthError) -> CliError {
    let msgid = match e {
        AuthError::Invalid(_) => "Access.Invalid",
        _ => "Access.Io",
    };
    CliError::new(exit::ERROR, msgid, e.to_string())
}

pub fn run(cli: &Cli, cmd: &UserCommand) -> Result<(), CliError> {
    match cmd {
        UserCommand::Create { userid, password_stdin, out } => {
            let password = if *password_stdin {
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line).map_err(|e| {
                    CliError::new(exit::ERROR, "Access.Io", format!("reading password from stdin: {e}"))
                })?;
                Some(line.trim_end_matches(['\r', '\n']).to_string())
            } else {
                None
            };
            let store = open_store(cli)?;
            store.create_user(userid, password.as_deref()).map_err(access_error)?;
            if out.json {
                output::json(&json!({ "user": { "userid": userid, "password": password.is_some() } }));
            } else {
                println!("created user '{userid}'");
            }
            Ok(())
        }
    }
}
