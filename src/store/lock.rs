//! The two kinds of lock PBS 3.2.4 uses, so that chunkyard and PBS exclude each other on the
//! same datastore (formats.md 5.5, 6.1, pitfall 11).
//!
//! - Group and snapshot directories: BSD `flock` on an `O_RDONLY` fd of the directory itself,
//!   always non-blocking. The guard owns the fd and unlocks explicitly before closing it: a
//!   child process spawned meanwhile holds a copy of the fd until it execs, and a mere close
//!   would leave the lock held by that copy.
//! - `<root>/.lock`: POSIX `fcntl` record lock on the whole file. Writers hold `F_RDLCK`, GC takes
//!   `F_WRLCK`. POSIX locks belong to the process, not the fd, and closing *any* fd of the file
//!   drops them all; so one `ProcessLocker` per datastore keeps the only fd open and counts its
//!   in-process holders, like the reference's process locker, and remembers when each writer
//!   started (GC needs the oldest, formats.md 6.3).

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::store::{Result, StoreError};

/// A held `flock` on a directory.
#[derive(Debug)]
pub struct DirLock {
    file: File,
    path: PathBuf,
}

impl DirLock {
    /// Locks `path` non-blocking. `what` names the directory kind in the error ("backup group",
    /// "snapshot"); `busy` is the reason given when someone else holds the lock.
    #[allow(unsafe_code)]
    pub fn try_lock(path: &Path, exclusive: bool, what: &str, busy: &str) -> Result<Self> {
        let file = File::open(path).map_err(|e| {
            let msg = format!("unable to open {what} directory {path:?} for locking - {e}");
            if e.kind() == io::ErrorKind::NotFound { StoreError::NotFound(msg) } else { StoreError::Locked(msg) }
        })?;
        let op = if exclusive { libc::LOCK_EX } else { libc::LOCK_SH } | libc::LOCK_NB;
        // SAFETY: flock on an fd we own; no memory is passed.
        if unsafe { libc::flock(file.as_raw_fd(), op) } != 0 {
            let e = io::Error::last_os_error();
            let reason = if e.kind() == io::ErrorKind::WouldBlock { busy.to_string() } else { e.to_string() };
            return Err(StoreError::Locked(format!("unable to acquire lock on {what} directory {path:?} - {reason}")));
        }
        Ok(DirLock { file, path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the locked directory is still the one at its path (not removed or replaced
    /// between open and lock).
    pub fn still_at_path(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (self.file.metadata(), std::fs::symlink_metadata(&self.path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
}

#[derive(Debug, Default)]
struct LockerState {
    /// Start time (epoch seconds) of each in-process shared holder, by guard id.
    writers: BTreeMap<u64, i64>,
    exclusive: bool,
    next_id: u64,
}

/// The datastore's `.lock` file and its in-process holders.
#[derive(Debug)]
pub struct ProcessLocker {
    file: File,
    state: Mutex<LockerState>,
}

#[allow(unsafe_code)]
fn fcntl_lock(file: &File, kind: libc::c_short) -> io::Result<()> {
    // SAFETY: a zeroed flock is a valid value; we fill the fields F_SETLK reads.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 0;
    // SAFETY: F_SETLK with a pointer to a live, initialised flock struct.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &fl) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn now_epoch() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

impl ProcessLocker {
    /// Opens (creating with mode 0644 if missing) the lock file.
    pub fn open(path: &Path) -> Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
            .map_err(crate::store::durable::io_err("open lock file", path))?;
        Ok(ProcessLocker { file, state: Mutex::new(LockerState::default()) })
    }

    /// Takes a shared (writer) lock, held until the guard drops. Fails if another process
    /// (a GC) holds the write lock.
    pub fn try_shared(self: &Arc<Self>) -> Result<SharedGuard> {
        let mut st = self.state.lock();
        if st.writers.is_empty() && !st.exclusive {
            fcntl_lock(&self.file, libc::F_RDLCK as libc::c_short)
                .map_err(|e| StoreError::Locked(format!("unable to get shared lock - {e}")))?;
        }
        let id = st.next_id;
        st.next_id += 1;
        st.writers.insert(id, now_epoch());
        Ok(SharedGuard { locker: Arc::clone(self), id })
    }

    /// Takes the exclusive (GC) lock. In-process writers do not block it (they are accounted
    /// for by [`oldest_shared`](Self::oldest_shared)); another process's writer does.
    pub fn try_exclusive(self: &Arc<Self>) -> Result<ExclusiveGuard> {
        let mut st = self.state.lock();
        if st.exclusive {
            return Err(StoreError::Locked("already locked exclusively".into()));
        }
        fcntl_lock(&self.file, libc::F_WRLCK as libc::c_short)
            .map_err(|e| StoreError::Locked(format!("unable to get exclusive lock - {e}")))?;
        st.exclusive = true;
        Ok(ExclusiveGuard { locker: Arc::clone(self) })
    }

    /// Start time of the oldest in-process writer, if any.
    pub fn oldest_shared(&self) -> Option<i64> {
        self.state.lock().writers.values().min().copied()
    }

    fn release(&self, st: &LockerState) {
        let kind = if st.exclusive {
            libc::F_WRLCK
        } else if !st.writers.is_empty() {
            libc::F_RDLCK
        } else {
            libc::F_UNLCK
        };
        // Downgrading or unlocking a lock we hold cannot conflict with anyone.
        let _ = fcntl_lock(&self.file, kind as libc::c_short);
    }
}

/// A writer's hold on `.lock`.
#[derive(Debug)]
pub struct SharedGuard {
    locker: Arc<ProcessLocker>,
    id: u64,
}

impl Drop for SharedGuard {
    fn drop(&mut self) {
        let mut st = self.locker.state.lock();
        st.writers.remove(&self.id);
        self.locker.release(&st);
    }
}

/// The GC's hold on `.lock`.
#[derive(Debug)]
pub struct ExclusiveGuard {
    locker: Arc<ProcessLocker>,
}

impl Drop for ExclusiveGuard {
    fn drop(&mut self) {
        let mut st = self.locker.state.lock();
        st.exclusive = false;
        self.locker.release(&st);
    }
}

impl Drop for DirLock {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: flock on the fd this guard still owns.
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(unsafe_code)]
    fn dropping_a_dir_lock_releases_it_even_while_a_copy_of_its_fd_lives() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DirLock::try_lock(dir.path(), true, "snapshot", "busy").unwrap();
        // What a child process spawned at this moment would hold until it execs.
        // SAFETY: dup of an fd we own; the copy is closed below.
        let copy = unsafe { libc::dup(lock.file.as_raw_fd()) };
        assert!(copy >= 0);
        drop(lock);
        let again = DirLock::try_lock(dir.path(), true, "snapshot", "busy");
        // SAFETY: closing the copy made above.
        unsafe { libc::close(copy) };
        again.expect("released although a copy of the fd was still open");
    }

    #[test]
    fn dir_lock_exclusive_and_shared() {
        let dir = tempfile::tempdir().unwrap();
        let a = DirLock::try_lock(dir.path(), true, "backup group", "another backup is already running").unwrap();
        let err = DirLock::try_lock(dir.path(), true, "backup group", "another backup is already running").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "unable to acquire lock on backup group directory {:?} - another backup is already running",
                dir.path()
            )
        );
        assert!(DirLock::try_lock(dir.path(), false, "snapshot", "busy").is_err());
        drop(a);
        let s1 = DirLock::try_lock(dir.path(), false, "snapshot", "busy").unwrap();
        let _s2 = DirLock::try_lock(dir.path(), false, "snapshot", "busy").unwrap();
        assert!(DirLock::try_lock(dir.path(), true, "snapshot", "busy").is_err());
        assert!(s1.still_at_path());
        assert!(matches!(
            DirLock::try_lock(&dir.path().join("gone"), true, "snapshot", "busy"),
            Err(StoreError::NotFound(_))
        ));
    }

    #[test]
    fn process_locker_counts_writers() {
        let dir = tempfile::tempdir().unwrap();
        let locker = Arc::new(ProcessLocker::open(&dir.path().join(".lock")).unwrap());
        assert_eq!(locker.oldest_shared(), None);
        let w1 = locker.try_shared().unwrap();
        let w2 = locker.try_shared().unwrap();
        assert!(locker.oldest_shared().is_some());
        // In-process GC is not blocked by in-process writers, but only one GC at a time.
        let gc = locker.try_exclusive().unwrap();
        assert!(locker.try_exclusive().is_err());
        drop(gc);
        drop(w1);
        drop(w2);
        assert_eq!(locker.oldest_shared(), None);
    }
}

#[cfg(test)]
mod foreign_process_tests {
    //! Open-file-description locks conflict with process-owned POSIX locks even inside one
    //! process, so they stand in for PBS running as another process.
    use super::*;

    #[allow(unsafe_code)]
    fn ofd_lock(file: &File, kind: libc::c_short) -> io::Result<()> {
        // SAFETY: as in fcntl_lock; F_OFD_SETLK requires l_pid == 0, which zeroed gives.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = kind;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        // SAFETY: pointer to a live flock.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    #[test]
    fn writers_block_foreign_gc_and_foreign_gc_blocks_writers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".lock");
        let locker = Arc::new(ProcessLocker::open(&path).unwrap());
        let foreign = File::options().read(true).write(true).open(&path).unwrap();

        let w = locker.try_shared().unwrap();
        assert!(ofd_lock(&foreign, libc::F_WRLCK as _).is_err(), "foreign GC must see our writer");
        ofd_lock(&foreign, libc::F_RDLCK as _).unwrap();
        ofd_lock(&foreign, libc::F_UNLCK as _).unwrap();
        drop(w);
        ofd_lock(&foreign, libc::F_WRLCK as _).unwrap();
        let err = locker.try_shared().unwrap_err();
        assert!(err.to_string().starts_with("unable to get shared lock - "), "{err}");
        assert!(locker.try_exclusive().is_err());
        ofd_lock(&foreign, libc::F_UNLCK as _).unwrap();
        let _w = locker.try_shared().unwrap();
    }
}
