//! chunkyard: a Proxmox Backup Server protocol compatible backup target.
//!
//! A tour of the crate, from the disk up to the wire:
//!
//! - [`format`]: pure codecs for PBS's formats (data blobs, fixed and dynamic indexes, the
//!   manifest) and the validated names (`BackupId`, `Namespace`, `Digest`, ...) that are the
//!   only way to build a path.
//! - [`store`]: the datastore on disk: layout, chunk store with PBS's dedup rules, locks,
//!   snapshot lifecycle, listing.
//! - [`auth`]: the user, token and ACL store under `<data-dir>/etc`, login tickets, and the
//!   privilege lookup every endpoint uses.
//! - [`actors`]: the ingest pipeline. A `SessionActor` per connection routes each uploaded
//!   chunk through the hasher pool (CRC, zstd decode, SHA-256) to the io_uring `ChunkWriter`;
//!   `IndexWriter`s check and write indexes; the finish stage commits the manifest.
//! - [`http`]: the HTTP vocabulary both HTTP layers share: `ApiError` (every typed error mapped
//!   to a status and message in one place), reply encoding, query and parameter decoding, path
//!   normalisation, the HTTP/1.1 endpoint table.
//! - [`protocol`]: the HTTP/2 backup and reader sessions: parse requests, call the actors.
//! - [`server`]: TLS, HTTP/1.1, request authentication, the management API and the protocol
//!   upgrade.
//! - [`client`]: our own protocol client, used by the tests and the load tester.
//! - [`config`], [`metrics`]: configuration and Prometheus metrics.
//! - [`failpoint`]: named places on the write path where crash and full-disk tests strike.
//! - [`cli`]: the `chunkyard` command line (serve, datastore, cert) and log output.
//! - `testing` (cargo feature `testing`, which the package's own tests, benches and the load
//!   tester's tests turn on): `TestServer` and the test data generator; never in a release
//!   build.
//!
//! ## Layers
//!
//! Each module may use only the modules of ours its row names, and every row names only rows
//! above it, so the arrows between folders point one way: down this table, towards the disk.
//! External crates are free, except where the last column says. `tests/layers.rs` holds this
//! table: it parses every source file of the crate and of the load tester and fails on any
//! `crate::`, `super::` or `chunkyard::` path (in `use`, code or macro bodies) that the table
//! does not allow, naming file, line and edge. `lib.rs` and `main.rs` only wire modules up.
//! Edges that break the table while code is being moved are listed in the test one by one;
//! that list may only shrink.
//!
//! | module | may use (of ours) | may not use (crates) |
//! |---|---|---|
//! | `format` | nothing | |
//! | `failpoint` | `format` | |
//! | `config` | `format`, `failpoint` | |
//! | `metrics` | `format`, `config` | |
//! | `store` | `format`, `failpoint`, `config`, `metrics` | |
//! | `auth` | `format`, `failpoint`, `config`, `metrics`, `store` | |
//! | `jobs` | `format`, `failpoint`, `config`, `metrics`, `store` | |
//! | `actors` | `format`, `failpoint`, `config`, `metrics`, `store` | `http`, `hyper`, `h2` |
//! | `http` | `format`, `failpoint`, `config`, `metrics`, `store`, `auth`, `actors` | |
//! | `protocol` | `format`, `failpoint`, `config`, `metrics`, `auth`, `actors`, `http` | |
//! | `server` | `format`, `failpoint`, `config`, `metrics`, `store`, `auth`, `jobs`, `http`, `protocol` | |
//! | `client` | `format` | |
//! | `cli` | anything | |
//! | `testing` | anything | |
//! | `loadtest` (its own crate; sees this one as `chunkyard`) | `client` | |
//!
//! Why so: `format` is pure codecs, shared by the server and the client; the leaves know no
//! datastore; `store` is the one owner of chunk and file I/O; the pipeline in `actors` knows
//! nothing of HTTP; `http` sits below both HTTP layers so they share one error mapping without
//! a cycle; `protocol` reaches the datastore only through the pipeline, and `server` does not
//! start the pipeline itself. `client` speaks the protocol on `format` alone and the load
//! tester uses nothing but `client`. `testing` (the test server) is not in the release library.

pub mod actors;
pub mod auth;
pub mod cli;
pub mod client;
pub mod config;
pub mod failpoint;
pub mod format;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod protocol;
pub mod server;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;

/// What the cargo-fuzz targets in `fuzz/` reach that the crate otherwise keeps to itself (the
/// parameter decoder of the API and the backup session). Not an API: nothing else may use it.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::http::params::{MAX_PARAM_BODY, Params};
}
