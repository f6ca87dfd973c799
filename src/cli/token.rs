//! `chunkyard token create USERID!NAME [--json]`: creates (or regenerates) an API token and
//! prints its secret once; only its argon2id hash is stored.

use clap::Subcommand;
use serde_json::json;

use super::user::{access_error, open_store};
use super::{Cli, CliError, JsonFlag, exit, output};
use crate::format::Authid;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token of an existing user and print its secret (shown only now).
    Create {
        /// `user@realm!tokenname`.
        tokenid: String,
        #[command(flatten)]
        out: JsonFlag,
    },
}

pub fn run(cli: &Cli, cmd: &TokenCommand) -> Result<(), CliError> {
    match cmd {
        TokenCommand::Create { tokenid, out } => {
            let authid = Authid::parse(tokenid)
                .map_err(|e| CliError::new(exit::USAGE, "Access.InvalidTokenId", e.to_string()))?;
            let secret = open_store(cli)?.create_token(&authid).map_err(access_error)?;
            if out.json {
                output::json(&json!({ "tokenid": authid.to_string(), "value": secret }));
            } else {
                println!("tokenid: {authid}");
                println!("value: {secret}");
                println!("(the secret is shown only once)");
            }
            Ok(())
        }
    }
}
