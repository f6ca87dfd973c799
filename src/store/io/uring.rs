//! Batched chunk-file writes on one io_uring: a batch of N new chunk files costs a handful of
//! `io_uring_enter` calls (open all, write all, fsync all, close all, rename all, sync their
//! directories) instead of ~6·N syscalls. [`UringBackend`] is the plain [`FileBackend`] with
//! its chunk writes done this way: same directory, temp names, failpoints and sync level.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use io_uring::{IoUring, opcode, squeue, types};
use parking_lot::Mutex;

use crate::failpoint;
use crate::format::Digest;
use crate::format::blob::BlobKind;
use crate::store::Result;
use crate::store::durable;
use crate::store::io::files::{FileBackend, WriteTarget};
use crate::store::io::{Backend, ChunkWrite, WriteMethod};

/// Chunk writes on an io_uring; everything else as [`FileBackend`] does it.
#[derive(Debug)]
pub struct UringBackend {
    files: FileBackend,
    /// Only the writer thread submits, so the lock is never contended; it keeps the ring's
    /// single-submitter rule whoever else inserts a chunk.
    ring: Mutex<UringWriter>,
}

impl UringBackend {
    pub fn new(files: FileBackend, ring: UringWriter) -> Self {
        UringBackend { files, ring: Mutex::new(ring) }
    }
}

impl Backend for UringBackend {
    fn method(&self) -> WriteMethod {
        WriteMethod::IoUring
    }
    fn chunk_len(&self, digest: &Digest) -> Result<Option<u64>> {
        self.files.chunk_len(digest)
    }
    fn chunk_kind(&self, digest: &Digest) -> Result<Option<BlobKind>> {
        self.files.chunk_kind(digest)
    }
    fn touch_chunk(&self, digest: &Digest) -> Result<bool> {
        self.files.touch_chunk(digest)
    }
    fn read_chunk(&self, digest: &Digest) -> Result<Vec<u8>> {
        self.files.read_chunk(digest)
    }
    fn write_file(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        self.files.write_file(path, bytes)
    }

    fn write_chunks(&self, batch: &[ChunkWrite<'_>], done: &mut dyn FnMut(usize, Result<()>)) {
        let mut targets: Vec<(usize, WriteTarget)> = Vec::with_capacity(batch.len());
        for (i, chunk) in batch.iter().enumerate() {
            match self.files.dir().target(chunk.digest) {
                Ok(t) => targets.push((i, t)),
                Err(e) => done(i, Err(e)),
            }
        }
        if targets.is_empty() {
            return;
        }
        let items: Vec<WriteItem<'_>> = targets
            .iter()
            .map(|(i, t)| WriteItem { tmp: &t.tmp, dest: &t.dest, dir: &t.dir, data: batch[*i].data })
            .collect();
        let results = self.ring.lock().write_batch(&items, self.files.sync());
        for ((i, t), r) in targets.iter().zip(results) {
            done(*i, r.map_err(|e| durable::CHUNK.failed(&t.dest, e)));
        }
    }
}

/// One chunk file to create: write `data` to the fresh `tmp`, then rename it to `dest` in `dir`.
pub struct WriteItem<'a> {
    pub tmp: &'a Path,
    pub dest: &'a Path,
    pub dir: &'a Path,
    pub data: &'a [u8],
}

pub struct UringWriter {
    ring: IoUring,
}

impl std::fmt::Debug for UringWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringWriter").field("sq_entries", &self.ring.params().sq_entries()).finish()
    }
}

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

impl UringWriter {
    /// Fails where the kernel (or a seccomp filter) refuses io_uring; the caller falls back.
    pub fn new(depth: u32) -> io::Result<UringWriter> {
        let ring = IoUring::new(depth.clamp(4, 4096))?;
        // A no-op round trip proves submission really works (some sandboxes allow setup only).
        let mut w = UringWriter { ring };
        w.run(vec![opcode::Nop::new().build()])?.into_iter().next().unwrap_or(Ok(0))?;
        Ok(w)
    }

    /// Submits `entries` (in slices that fit the ring) and returns each one's result, in order.
    #[allow(unsafe_code)]
    fn run(&mut self, entries: Vec<squeue::Entry>) -> io::Result<Vec<io::Result<u32>>> {
        let mut results: Vec<io::Result<u32>> = Vec::with_capacity(entries.len());
        let cap = self.ring.params().sq_entries() as usize;
        for (base, slice) in entries.chunks(cap).enumerate() {
            let base = base * cap;
            let start = results.len();
            results.extend((0..slice.len()).map(|_| Ok(0)));
            {
                let mut sq = self.ring.submission();
                for (i, e) in slice.iter().enumerate() {
                    let e = e.clone().user_data((base + i) as u64);
                    // SAFETY: every buffer and path an entry points to is owned by the caller of
                    // `write_batch` and outlives this call, which waits for all completions.
                    unsafe { sq.push(&e).map_err(|_| io::Error::other("io_uring submission queue full"))? };
                }
            }
            self.ring.submit_and_wait(slice.len())?;
            let mut seen = 0;
            while seen < slice.len() {
                let cqes: Vec<_> = self.ring.completion().map(|c| (c.user_data(), c.result())).collect();
                if cqes.is_empty() {
                    self.ring.submit_and_wait(1)?;
                    continue;
                }
                for (ud, res) in cqes {
                    seen += 1;
                    results[start + (ud as usize - base)] =
                        if res < 0 { Err(io::Error::from_raw_os_error(-res)) } else { Ok(res as u32) };
                }
            }
        }
        Ok(results)
    }

    /// Creates every item's file (fsyncing files and directories if `fsync`); returns one
    /// result per item. A failed item leaves no tmp file.
    pub fn write_batch(&mut self, items: &[WriteItem<'_>], fsync: bool) -> Vec<io::Result<()>> {
        match self.try_write_batch(items, fsync) {
            Ok(r) => r,
            Err(e) => items.iter().map(|_| Err(io::Error::new(e.kind(), e.to_string()))).collect(),
        }
    }

    fn try_write_batch(&mut self, items: &[WriteItem<'_>], fsync: bool) -> io::Result<Vec<io::Result<()>>> {
        let n = items.len();
        let mut status: Vec<io::Result<()>> = (0..n).map(|_| Ok(())).collect();
        let tmps = items.iter().map(|i| cstr(i.tmp)).collect::<io::Result<Vec<_>>>()?;
        let dests = items.iter().map(|i| cstr(i.dest)).collect::<io::Result<Vec<_>>>()?;
        let cwd = types::Fd(libc::AT_FDCWD);

        // 1. open every tmp file (O_EXCL: the store picked a fresh name)
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC;
        let opens =
            tmps.iter().map(|p| opcode::OpenAt::new(cwd, p.as_ptr()).flags(flags).mode(0o644).build()).collect();
        let mut fds: Vec<Option<i32>> = Vec::with_capacity(n);
        for (i, r) in self.run(opens)?.into_iter().enumerate() {
            match r {
                Ok(fd) => fds.push(Some(fd as i32)),
                Err(e) => {
                    fds.push(None);
                    status[i] = Err(e);
                }
            }
        }

        // 2. write, resubmitting the rest of any short write
        let mut done = vec![0usize; n];
        loop {
            let pending: Vec<usize> =
                (0..n).filter(|&i| status[i].is_ok() && fds[i].is_some() && done[i] < items[i].data.len()).collect();
            if pending.is_empty() {
                break;
            }
            let writes = pending
                .iter()
                .map(|&i| {
                    let rest = &items[i].data[done[i]..];
                    let len = rest.len().min(1 << 30) as u32;
                    opcode::Write::new(types::Fd(fds[i].unwrap()), rest.as_ptr(), len).offset(done[i] as u64).build()
                })
                .collect();
            for (&i, r) in pending.iter().zip(self.run(writes)?) {
                match r {
                    Ok(0) => status[i] = Err(io::Error::new(io::ErrorKind::WriteZero, "chunk write wrote nothing")),
                    Ok(k) => done[i] += k as usize,
                    Err(e) => status[i] = Err(e),
                }
            }
        }

        // Failpoint: data written, not yet synced (a test's ENOSPC lands here, as a real one would).
        strike(durable::CHUNK.write, items, &mut status);

        // 3. fsync the files (policy `file`)
        if fsync {
            let ok: Vec<usize> = (0..n).filter(|&i| status[i].is_ok() && fds[i].is_some()).collect();
            let syncs = ok.iter().map(|&i| opcode::Fsync::new(types::Fd(fds[i].unwrap())).build()).collect();
            for (&i, r) in ok.iter().zip(self.run(syncs)?) {
                if let Err(e) = r {
                    status[i] = Err(e);
                }
            }
        }

        // 4. close everything we opened
        let open: Vec<usize> = (0..n).filter(|&i| fds[i].is_some()).collect();
        let closes = open.iter().map(|&i| opcode::Close::new(types::Fd(fds[i].unwrap())).build()).collect();
        for (&i, r) in open.iter().zip(self.run(closes)?) {
            if let (Err(e), true) = (r, status[i].is_ok()) {
                status[i] = Err(e);
            }
        }

        // 5. rename into place
        strike(durable::CHUNK.rename, items, &mut status);
        let ok: Vec<usize> = (0..n).filter(|&i| status[i].is_ok()).collect();
        let renames =
            ok.iter().map(|&i| opcode::RenameAt::new(cwd, tmps[i].as_ptr(), cwd, dests[i].as_ptr()).build()).collect();
        for (&i, r) in ok.iter().zip(self.run(renames)?) {
            if let Err(e) = r {
                status[i] = Err(e);
            }
        }
        for i in 0..n {
            if status[i].is_err() && fds[i].is_some() {
                let _ = std::fs::remove_file(items[i].tmp);
            }
        }

        // 6. fsync each touched directory once, so the renames are durable
        if fsync {
            let mut dirs: BTreeMap<&Path, Vec<usize>> = BTreeMap::new();
            for i in (0..n).filter(|&i| status[i].is_ok()) {
                dirs.entry(items[i].dir).or_default().push(i);
            }
            let dir_list: Vec<(&Path, Vec<usize>)> = dirs.into_iter().collect();
            let dir_c = dir_list.iter().map(|(d, _)| cstr(d)).collect::<io::Result<Vec<_>>>()?;
            let dflags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;
            let opens = dir_c.iter().map(|p| opcode::OpenAt::new(cwd, p.as_ptr()).flags(dflags).build()).collect();
            let dfds = self.run(opens)?;
            let opened: Vec<(usize, i32)> =
                dfds.iter().enumerate().filter_map(|(k, r)| r.as_ref().ok().map(|fd| (k, *fd as i32))).collect();
            let syncs = opened.iter().map(|&(_, fd)| opcode::Fsync::new(types::Fd(fd)).build()).collect();
            let sync_res = self.run(syncs)?;
            let closes = opened.iter().map(|&(_, fd)| opcode::Close::new(types::Fd(fd)).build()).collect();
            self.run(closes)?;
            let mut failed: Vec<(usize, io::Error)> = Vec::new();
            for (k, r) in dfds.into_iter().enumerate() {
                if let Err(e) = r {
                    failed.push((k, e));
                }
            }
            for ((k, _), r) in opened.iter().zip(sync_res) {
                if let Err(e) = r {
                    failed.push((*k, e));
                }
            }
            for (k, e) in failed {
                for &i in &dir_list[k].1 {
                    status[i] = Err(io::Error::new(e.kind(), format!("fsync of chunk directory failed: {e}")));
                }
            }
        }
        strike(durable::CHUNK.stored, items, &mut status);
        Ok(status)
    }
}

/// Runs the failpoint of step `point` for every item still on track (context: the chunk's file
/// name), so a test can fail or kill the batch at that phase, as it can the plain write one
/// chunk at a time. Costs nothing when no failpoint is armed.
fn strike(point: &str, items: &[WriteItem<'_>], status: &mut [io::Result<()>]) {
    if !failpoint::armed() {
        return;
    }
    for (item, st) in items.iter().zip(status.iter_mut()).filter(|(_, st)| st.is_ok()) {
        let name = item.dest.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
        if let Err(e) = failpoint::check(point, &name) {
            *st = Err(e);
        }
    }
}

#[cfg(test)]
#[path = "uring_tests.rs"]
mod tests;
