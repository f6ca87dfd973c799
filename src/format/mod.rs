//! Pure codecs for PBS's on-disk and on-wire formats: data blobs, fixed and dynamic indexes,
//! the manifest, and the validated names that may become paths.
//!
//! Nothing here touches the file system or decides policy (where files go, when to fsync):
//! that is `store/`. Keeping the byte layouts apart lets them be tested against the spec's test
//! vectors and PBS's own golden datastore without any I/O.

pub mod blob;
pub mod crypto;
pub mod dynamic_index;
pub mod fingerprint;
pub mod fixed_index;
pub mod manifest;
pub mod names;

pub use names::{
    ArchiveKind, ArchiveName, Authid, BackupId, BackupTime, BackupType, DatastoreName, Digest, GroupRef, NameError,
    Namespace, SnapshotRef,
};
