//! `chunkyard acl set PATH ROLE AUTHID`: grants a role (DatastoreAdmin, DatastoreBackup,
//! DatastoreReader, DatastoreAudit, ...) on an ACL path such as `/datastore/store1` to a user or
//! token, replacing its previous role there.

use clap::Subcommand;
use serde_json::json;

use super::user::{access_error, open_store};
use super::{Cli, CliError, JsonFlag, exit, output};
use crate::auth::Role;
use crate::format::Authid;

#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// Grant ROLE on PATH to AUTHID (user@realm or user@realm!token).
    Set {
        path: String,
        role: String,
        authid: String,
        /// Apply only to PATH itself, not to what lies below it.
        #[arg(long)]
        no_propagate: bool,
        #[command(flatten)]
        out: JsonFlag,
    },
}

pub fn run(cli: &Cli, cmd: &AclCommand) -> Result<(), CliError> {
    match cmd {
        AclCommand::Set { path, role, authid, no_propagate, out } => {
            let parsed = Role::parse(role).ok_or_else(|| {
                let known: Vec<String> = Role::ALL.iter().map(|r| format!("{r:?}")).collect();
                CliError::new(
                    exit::USAGE,
                    "Access.InvalidRole",
                    format!("unknown role '{role}' (known: {})", known.join(", ")),
                )
            })?;
            let id =
                Authid::parse(authid).map_err(|e| CliError::new(exit::USAGE, "Access.InvalidAuthid", e.to_string()))?;
            open_store(cli)?.set_acl(path, parsed, &id, !no_propagate).map_err(access_error)?;
            if out.json {
                output::json(
                    &json!({ "acl": { "path": path, "role": role, "authid": authid, "propagate": !no_propagate } }),
                );
            } else {
                println!("granted {role} on {path} to {authid}");
            }
            Ok(())
        }
    }
}
