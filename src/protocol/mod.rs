//! The HTTP/2 sessions that follow the protocol upgrade: the backup session
//! (`proxmox-backup-protocol-v1`) and the reader session (`...-reader-protocol-v1`). They parse
//! requests, call the actors or the store, and turn every error into a status and message
//! through [`crate::http::ApiError`]. [`h2`] holds the connection plumbing both sessions share.

pub mod backup;
pub mod h2;
pub mod inflight;
pub mod reader;
