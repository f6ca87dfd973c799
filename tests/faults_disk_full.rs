//! A real full file system under the datastore (a small tmpfs): the kernel, not a failpoint,
//! says ENOSPC — during a chunk write, at an index close and at the manifest commit — for the
//! io_uring writer and the plain-I/O fallback. The same promises as tests/faults.rs hold: a
//! clear 400 error, the seed snapshot intact, no temp file, no trace of the failed snapshot,
//! and once space is freed the next backup works.
//!
//! Mounting needs root (CI runs as root). Where `mount(2)` is refused the test says so and
//! passes as "not applicable"; it never pretends the scenario ran.

mod backup_support;
mod faults_support;

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use backup_support::*;
use bytes::Bytes;
use chunkyard::client::{BackupSession, ClientError};
use chunkyard::testing::TestServer;
use faults_support::*;
use http::StatusCode;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const ENOSPC: &str = "No space left on device (os error 28)";

/// A tmpfs of `size` bytes mounted on a fresh temp directory; unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    #[allow(unsafe_code)]
    fn mount(size: u64) -> Result<Tmpfs, std::io::Error> {
        let dir = tempfile::Builder::new().prefix("chunkyard-tmpfs").tempdir()?;
        let target = CString::new(dir.path().as_os_str().as_bytes()).unwrap();
        let options = CString::new(format!("size={size},mode=0755")).unwrap();
        // SAFETY: plain syscall with NUL-terminated strings that outlive it.
        let rc =
            unsafe { libc::mount(c"tmpfs".as_ptr(), target.as_ptr(), c"tmpfs".as_ptr(), 0, options.as_ptr().cast()) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        let target = CString::new(self.dir.path().as_os_str().as_bytes()).unwrap();
        // SAFETY: as above; a lazy unmount cannot fail on a busy mount.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

/// A file that eats the file system's free space.
struct Filler {
    file: File,
    len: u64,
}

impl Filler {
    fn new(fs: &Tmpfs) -> Filler {
        let file = OpenOptions::new().create_new(true).write(true).open(fs.path().join("filler")).unwrap();
        Filler { file, len: 0 }
    }

    /// Appends until the file system is full (to the last 4 KiB page).
    fn fill(&mut self) {
        for step in [1 << 20, 64 << 10, 4 << 10] {
            let block = vec![0xa5u8; step];
            loop {
                match self.file.write(&block) {
                    Ok(n) if n == step => self.len += n as u64,
                    Ok(n) => {
                        self.len += n as u64;
                        break;
                    }
                    Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                    Err(e) => panic!("filling the tmpfs: {e}"),
                }
            }
        }
        // Proof that it is full: not one more byte fits.
        let e = self.file.write_all(&[0u8; 4096]).expect_err("the file system is full");
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        self.len = self.file.metadata().unwrap().len();
    }

    /// Gives `bytes` back to the file system.
    fn free(&mut self, bytes: u64) {
        self.len = self.len.saturating_sub(bytes);
        self.file.set_len(self.len).unwrap();
    }
}

#[track_caller]
fn assert_enospc<T: std::fmt::Debug>(r: Result<T, ClientError>, prefix: &str) {
    match r {
        Err(ClientError::Status { status, message }) => {
            eprintln!("full disk: {status} {message}");
            assert_eq!(status, StatusCode::BAD_REQUEST, "{message}");
            assert!(message.starts_with(prefix) && message.ends_with(&format!(": {ENOSPC}")), "{message}");
        }
        other => panic!("expected 400 {prefix}...: {ENOSPC}, got {other:?}"),
    }
}

/// The client gives up on the failed victim session: its snapshot must go, no temp file may
/// stay, everything that existed must be unchanged.
async fn give_up(server: &TestServer, victim: BackupSession, before: &std::collections::BTreeMap<PathBuf, [u8; 32]>) {
    drop(victim);
    let root = server.store_path();
    assert_removed(&snapshot_dir(server, GROUP, VICTIM_TIME)).await;
    assert_eq!(temp_files(&root), Vec::<PathBuf>::new(), "temp files left on the full file system");
    assert_untouched(&root, before, &[]);
}

async fn full_disk(io_uring: bool) {
    let _turn = SERIAL.lock().await;
    let fs = match Tmpfs::mount(16 << 20) {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!("NOT APPLICABLE: cannot mount a tmpfs here ({e}); the real full-disk test did not run");
            return;
        }
    };
    let store_dir = fs.path().join("store");
    let server = TestServer::start_with(|c| {
        c.pipeline.io_uring = io_uring;
        c.datastores.insert("store".into(), store_dir.clone());
    });
    let metrics = server.metrics_addr.unwrap();
    let seed = Archives::seed();
    backup(&server, GROUP, SEED_TIME, &seed).await.expect("seed backup");
    let before = contents(&server.store_path());
    let scrape_before = scrape(metrics);
    let victim = Archives::victim();
    let mut filler = Filler::new(&fs);

    // 1. A chunk write: room for the small blob, not for a 64 KiB incompressible chunk.
    filler.fill();
    filler.free(32 << 10);
    let s = session(&server, GROUP, VICTIM_TIME).await;
    let failed = async {
        let mut up = s.uploader(options()).await?;
        up.blob(victim.blob.0, &victim.blob.1).await?;
        up.dynamic(victim.dynamic.0, Bytes::from(victim.dynamic.1.clone())).await
    }
    .await;
    assert_enospc(failed, "storing chunk ");
    give_up(&server, s, &before).await;

    // 2. An index close: the new chunks fit, then the disk fills; the fixed archive is the
    //    seed's (all chunks reused, nothing uploaded), so the first write is its index.
    filler.free(8 << 20);
    let s = session(&server, GROUP, VICTIM_TIME).await;
    let failed = async {
        let mut up = s.uploader(options()).await?;
        up.blob(victim.blob.0, &victim.blob.1).await?;
        up.dynamic(victim.dynamic.0, Bytes::from(victim.dynamic.1.clone())).await?;
        filler.fill();
        up.fixed(seed.fixed.0, Bytes::from(seed.fixed.1.clone())).await
    }
    .await;
    assert_enospc(failed, &format!("writing {} failed", seed.fixed.0));
    give_up(&server, s, &before).await;

    // 3. The manifest at finish: every archive stored, then the disk fills.
    filler.free(8 << 20);
    let s = session(&server, GROUP, VICTIM_TIME).await;
    let failed = async {
        let mut up = s.uploader(options()).await?;
        victim.upload(&mut up).await?;
        filler.fill();
        up.finish().await
    }
    .await;
    assert_enospc(failed, "writing index.json.blob failed");
    give_up(&server, s, &before).await;

    // Space back: the group backs up and everything restores.
    drop(filler);
    std::fs::remove_file(fs.path().join("filler")).unwrap();
    backup(&server, GROUP, AFTER_TIME, &victim).await.expect("backup after space was freed");
    seed.assert_restored(&server, GROUP, SEED_TIME).await;
    victim.assert_restored(&server, GROUP, AFTER_TIME).await;
    let grew = value(&scrape(metrics), IO_ERRORS) - value(&scrape_before, IO_ERRORS);
    assert!(grew >= 3.0, "every ENOSPC counted as an I/O error ({grew})");
    drop(server);
}

#[tokio::test]
async fn full_tmpfs_io_uring() {
    full_disk(true).await;
}

#[tokio::test]
async fn full_tmpfs_fallback() {
    full_disk(false).await;
}
