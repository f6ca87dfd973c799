//! Crash consistency (issue 8, item 1): the real `chunkyard serve` is SIGKILLed in the middle of
//! a backup — at named failpoints spread over the whole write path (request arrival, chunk
//! write/rename/stored, index, blob and manifest write/rename/stored, owner of a new group,
//! finish before and after the commit; forget and prune part-way through a removal), and from
//! outside at arbitrary moments — then started again without failpoints. After each crash:
//! - before recovery, listing, base selection and prune already treat the killed snapshot as
//!   unfinished and list no temp file;
//! - the killed snapshot is either complete (only when the kill came after its manifest was
//!   renamed into place) or gone: no directory without a manifest, no partial snapshot listed;
//! - every listed snapshot verifies and nothing finished was lost;
//! - no temp file is left after start-up recovery (snapshot tree) and one GC (chunk store);
//! - the next backup of the same group works, incrementally on the last finished snapshot, and
//!   restores byte for byte (as does a killed snapshot that got committed).
//!
//! All cases share one data directory, so later crashes happen on a store full of earlier
//! crash debris and recoveries. `cargo test --test crash -- --nocapture` prints every point.

mod crash_support;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::{Duration, Instant};

use chunkyard::client::chunker::Chunker;
use chunkyard::format::{DatastoreName, Digest, Namespace};
use chunkyard::store::Datastore;
use chunkyard::store::prune::{KeepOptions, PruneMark};
use chunkyard::store::verify::{VerifyCache, VerifyResult};
use crash_support::*;

const T0: i64 = 1_718_000_000;
const UPID: &str = "UPID:localhost:00000001:00000001:00000001:00000001:verify:store:root@pam:";

/// `(failpoint spec, first backup of a new group, snapshot committed before the kill)`.
/// `{fixed_tail}` / `{last_new}` become the digest of the short fixed chunk / of the last new
/// dynamic chunk of the backup, so those kills hit one particular chunk, however uploads race.
const CASES: &[(&str, bool, bool)] = &[
    // a request arrives (the kill lands between the previous answer and this one's work)
    ("backup.request:/previous_backup_time=kill", false, false),
    ("backup.request:/previous=kill@1", false, false),
    ("backup.request:/previous=kill@3", false, false),
    ("backup.request:/fixed_index=kill@1", false, false),
    ("backup.request:/fixed_chunk=kill@1", false, false),
    ("backup.request:/fixed_index=kill@2", false, false),
    ("backup.request:/fixed_close=kill", false, false),
    ("backup.request:/dynamic_index=kill@1", false, false),
    ("backup.request:/dynamic_chunk=kill@1", false, false),
    ("backup.request:/dynamic_chunk=kill@4", false, false),
    ("backup.request:/dynamic_chunk=kill@8", false, false),
    ("backup.request:/dynamic_index=kill@2", false, false),
    ("backup.request:/dynamic_close=kill", false, false),
    ("backup.request:/blob=kill@1", false, false),
    ("backup.request:/blob=kill@2", false, false),
    ("backup.request:/finish=kill", false, false),
    // chunk files: early, late, and one chosen chunk, at each of the three steps
    ("chunk.write=kill@1", false, false),
    ("chunk.write=kill@3", false, false),
    ("chunk.write=kill@6", false, false),
    ("chunk.write:{fixed_tail}=kill", false, false),
    ("chunk.write:{last_new}=kill", false, false),
    ("chunk.rename=kill@1", false, false),
    ("chunk.rename=kill@5", false, false),
    ("chunk.rename:{fixed_tail}=kill", false, false),
    ("chunk.rename:{last_new}=kill", false, false),
    ("chunk.stored=kill@1", false, false),
    ("chunk.stored=kill@4", false, false),
    ("chunk.stored:{fixed_tail}=kill", false, false),
    ("chunk.stored:{last_new}=kill", false, false),
    // index close (fixed, dynamic), blob, manifest commit: write, rename, stored
    ("file.write:disk.img.fidx=kill", false, false),
    ("file.rename:disk.img.fidx=kill", false, false),
    ("file.stored:disk.img.fidx=kill", false, false),
    ("file.write:root.pxar.didx=kill", false, false),
    ("file.rename:root.pxar.didx=kill", false, false),
    ("file.stored:root.pxar.didx=kill", false, false),
    ("file.write:qemu-server.conf.blob=kill", false, false),
    ("file.rename:qemu-server.conf.blob=kill", false, false),
    ("file.stored:qemu-server.conf.blob=kill", false, false),
    ("finish.commit=kill", false, false),
    ("file.write:index.json.blob=kill", false, false),
    ("file.rename:index.json.blob=kill", false, false),
    ("file.stored:index.json.blob=kill", false, true),
    ("finish.done=kill", false, true),
    // the first backup of a new group: its owner file, and the same steps without a base
    ("file.write:owner=kill", true, false),
    ("file.rename:owner=kill", true, false),
    ("file.stored:owner=kill", true, false),
    ("backup.request:/fixed_index=kill@1", true, false),
    ("backup.request:/fixed_chunk=kill@2", true, false),
    ("chunk.write=kill@5", true, false),
    ("chunk.rename:{last_new}=kill", true, false),
    ("file.stored:disk.img.fidx=kill", true, false),
    ("file.rename:root.pxar.didx=kill", true, false),
    ("backup.request:/finish=kill", true, false),
    ("file.rename:index.json.blob=kill", true, false),
    ("file.stored:index.json.blob=kill", true, true),
    ("finish.done=kill", true, true),
];

/// Delays (ms) after a backup starts at which the test SIGKILLs the server from outside.
const EXTERNAL_KILLS_MS: &[u64] = &[7, 45, 120, 260, 480];

/// What the store must hold: finished snapshots per group, `(time, generation)`.
#[derive(Default)]
struct Model {
    finished: BTreeMap<String, Vec<(i64, u64)>>,
    verified: BTreeSet<(String, i64)>,
}

/// What the crash left and recovery removed, summed over all cases.
#[derive(Default, Debug)]
struct Found {
    snapshots: usize,
    temp_files: usize,
    chunk_temp_files: usize,
}

fn group_seed(id: &str) -> u64 {
    id.bytes().fold(7, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
}

/// Fills in the digest placeholders for the backup of `c` into `store`.
fn resolve(spec: &str, store: &Path, c: &Contents) -> String {
    let exists = |d: &Digest| store.join(".chunks").join(d.prefix_dir()).join(d.to_hex()).exists();
    let tail = Digest::of(&c.fixed[4 << 20..]);
    let mut start = 0;
    let mut last_new = None;
    for end in Chunker::new(DYNAMIC_AVG).cut_points(&c.dynamic) {
        let d = Digest::of(&c.dynamic[start..end]);
        if !exists(&d) {
            last_new = Some(d);
        }
        start = end;
    }
    assert!(!exists(&tail), "the short fixed chunk must be new in every generation");
    spec.replace("{fixed_tail}", &tail.to_hex()).replace("{last_new}", &last_new.expect("new dynamic chunks").to_hex())
}

struct Crash<'a> {
    data_dir: &'a Path,
    model: Model,
    found: Found,
    time: i64,
    generation: u64,
    /// Wall time per phase, to see where the test's time goes.
    phases: BTreeMap<&'static str, Duration>,
}

enum Kill<'a> {
    Failpoint(&'a str),
    After(Duration),
}

impl Crash<'_> {
    fn add(&mut self, phase: &'static str, since: Instant) {
        *self.phases.entry(phase).or_default() += since.elapsed();
    }

    fn store(&self) -> std::path::PathBuf {
        self.data_dir.join(STORE)
    }

    fn next(&mut self, id: &str) -> (i64, Contents) {
        self.time += 1;
        self.generation += 1;
        (self.time, Contents::of(group_seed(id), self.generation))
    }

    /// One crash of a backup of `id`, the restart, and every check. Returns whether the killed
    /// backup was committed.
    async fn run(&mut self, id: &str, kill: Kill<'_>, label: &str) -> bool {
        let (time, c) = self.next(id);
        let t = Instant::now();
        let mut srv = match &kill {
            Kill::Failpoint(spec) => Serve::start(self.data_dir, Some(&resolve(spec, &self.store(), &c))),
            Kill::After(_) => Serve::start(self.data_dir, None),
        };
        self.add("start", t);
        let client = chunkyard::client::HttpClient::new(srv.client.config().clone()).unwrap();
        let (id_owned, c_owned) = (id.to_string(), c.clone());
        let mut task = tokio::spawn(async move { backup(&client, &id_owned, time, &c_owned).await });
        match kill {
            Kill::Failpoint(_) => {
                // The server must die while the backup runs; a backup that completes means the
                // point was never reached (the process gets a moment to be reaped first).
                let status = tokio::select! {
                    status = srv.wait(Duration::from_secs(60)) => status,
                    done = &mut task => {
                        let status = srv.wait(Duration::from_secs(5)).await;
                        assert!(status.is_some(), "{label}: server survived a backup that ended with {:?}", done.unwrap().map(|_| ()));
                        task = tokio::spawn(async move { done.unwrap() });
                        status
                    }
                };
                let status = status.unwrap_or_else(|| panic!("{label}: server survived"));
                assert_eq!(status.signal(), Some(libc::SIGKILL), "{label}: {status}\n{}", srv.output());
                assert!(srv.output().contains(": SIGKILL"), "{label}: killed, but not by the failpoint");
            }
            Kill::After(delay) => {
                tokio::time::sleep(delay).await;
                srv.kill();
            }
        }
        let result = tokio::time::timeout(Duration::from_secs(60), task).await.expect("client gives up").unwrap();
        let committed = snapshot_dir(self.data_dir, id, time).join("index.json.blob").exists();
        if let Kill::Failpoint(_) = kill {
            assert!(result.is_err(), "{label}: the backup succeeded although the server died");
        } else if result.is_ok() {
            assert!(committed, "{label}: acknowledged but not on disk");
        }
        if committed {
            self.model.finished.entry(id.to_string()).or_default().push((time, self.generation));
        }
        let t = Instant::now();
        self.check_debris(id, label);
        self.add("check", t);
        let abandoned = unfinished_snapshots(&self.store()).len();
        self.found.snapshots += abandoned;
        let (chunk_tmps, other_tmps) = temp_files(&self.store());
        self.found.temp_files += other_tmps.len();
        self.found.chunk_temp_files += chunk_tmps.len();
        drop(srv);

        let t = Instant::now();
        let srv = Serve::start(self.data_dir, None);
        self.add("start", t);
        let t = Instant::now();
        self.check_recovered(&srv, label).await;
        self.add("check", t);
        let counted = srv.counter(r#"chunkyard_crash_leftovers_removed_total{kind="snapshot"}"#);
        assert_eq!(counted, abandoned as f64, "{label}: recovery metric");
        let t = Instant::now();
        assert_eq!(gc(&srv.client).await, "OK", "{label}");
        self.add("gc", t);
        assert_eq!(temp_files(&self.store()), (vec![], vec![]), "{label}: temp files after GC");
        if committed {
            assert_restores(&srv.client, id, time, &c).await;
        }
        self.next_backup_works(&srv, id, label).await;
        committed
    }

    /// A forget (`prune` false) or a prune keeping 3 of `main` dies at `spec` (a
    /// `snapshot.remove` point: the manifest of the snapshot being removed is gone, the rest
    /// not yet). `removed` is how many of the oldest snapshots must be gone after recovery.
    async fn removal(&mut self, spec: &str, prune: bool, removed: usize, label: &str) {
        use http::Method;
        let mut srv = Serve::start(self.data_dir, Some(spec));
        let oldest = self.model.finished["main"][0].0;
        let result = if prune {
            let q = [("backup-id", "main".to_string()), ("backup-type", "host".into()), ("keep-last", "3".into())];
            srv.client.call(Method::POST, &format!("admin/datastore/{STORE}/prune"), &q, None).await
        } else {
            let q = chunkyard::client::admin::snapshot_params("host", "main", oldest);
            srv.client.call(Method::DELETE, &format!("admin/datastore/{STORE}/snapshots"), &q, None).await
        };
        let status = srv.wait(Duration::from_secs(60)).await.unwrap_or_else(|| panic!("{label}: server survived"));
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{label}: {status}");
        assert!(result.is_err(), "{label}: answered although the server died");
        let gone: Vec<(i64, u64)> = self.model.finished.get_mut("main").unwrap().drain(..removed).collect();
        assert!(!snapshot_dir(self.data_dir, "main", gone[0].0).join("index.json.blob").exists(), "{label}");
        self.check_debris("main", label);
        self.found.snapshots += unfinished_snapshots(&self.store()).len();
        drop(srv);
        let srv = Serve::start(self.data_dir, None);
        self.check_recovered(&srv, label).await;
        for (t, _) in gone {
            assert!(!snapshot_dir(self.data_dir, "main", t).exists(), "{label}: {t} half removed");
        }
        assert_eq!(gc(&srv.client).await, "OK", "{label}");
        self.next_backup_works(&srv, "main", label).await;
    }

    /// Before any recovery, what the crash left is already harmless: the store's own readers
    /// (listing, file lists, base selection, prune) see the killed snapshot as unfinished, take
    /// the last finished one as the base, and never show a temp file.
    fn check_debris(&self, id: &str, label: &str) {
        let ds = Datastore::open(DatastoreName::parse(STORE).unwrap(), &self.store()).unwrap();
        let root = Namespace::root();
        let Some(group) = ds.groups(&root).unwrap().into_iter().find(|g| g.id.as_str() == id) else { return };
        let snapshots = ds.snapshots(&root, &group).unwrap();
        let unfinished: Vec<_> =
            snapshots.iter().filter(|s| !s.finished).map(|s| ds.snapshot_path(&root, &s.snapshot)).collect();
        let on_disk: Vec<_> =
            unfinished_snapshots(&self.store()).into_iter().filter(|p| p.parent().unwrap().ends_with(id)).collect();
        assert_eq!(unfinished, on_disk, "{label}: listing's idea of unfinished");
        let want = self.model.finished.get(id).and_then(|v| v.last()).map(|(t, _)| *t);
        let base = ds.last_finished(&root, &group).unwrap().map(|s| s.snapshot.time.epoch());
        assert_eq!(base, want, "{label}: base of the next backup");
        for s in &snapshots {
            for f in ds.snapshot_files(&root, &s.snapshot).unwrap() {
                assert!(!chunkyard::store::durable::is_tmp_name(&f.name), "{label}: {} lists {}", s.snapshot, f.name);
            }
        }
        let keep_last = KeepOptions { keep_last: Some(1), ..KeepOptions::default() };
        let marks = ds.prune_group(&root, &group, &keep_last, true).unwrap();
        let kept: Vec<i64> =
            marks.iter().filter(|(_, m)| *m == PruneMark::Keep).map(|(s, _)| s.snapshot.time.epoch()).collect();
        assert_eq!(kept, want.into_iter().collect::<Vec<_>>(), "{label}: prune keep-last=1 keeps {marks:?}");
        assert!(marks.iter().all(|(s, m)| s.finished || *m != PruneMark::Keep), "{label}");
    }

    /// Start-up recovery left only finished snapshots, the ones the model expects, all good.
    async fn check_recovered(&mut self, srv: &Serve, label: &str) {
        let store = self.store();
        assert_eq!(unfinished_snapshots(&store), Vec::<std::path::PathBuf>::new(), "{label}");
        assert_eq!(temp_files(&store).1, Vec::<std::path::PathBuf>::new(), "{label}: temp files after recovery");
        let listed = srv.client.snapshots(STORE, None).await.unwrap();
        let mut seen: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for s in listed.as_array().unwrap() {
            assert!(s.get("size").is_some(), "{label}: unfinished snapshot listed: {s}");
            seen.entry(s["backup-id"].as_str().unwrap().to_string())
                .or_default()
                .push(s["backup-time"].as_i64().unwrap());
        }
        let want: BTreeMap<String, Vec<i64>> = self
            .model
            .finished
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.clone(), v.iter().map(|(t, _)| *t).collect()))
            .collect();
        for v in seen.values_mut() {
            v.sort();
        }
        assert_eq!(seen, want, "{label}: listed snapshots");
        // Groups whose only backups crashed are gone with them.
        for ty in std::fs::read_dir(&store).unwrap().flatten().filter(|e| e.file_name() == "host") {
            for g in std::fs::read_dir(ty.path()).unwrap().flatten() {
                let id = g.file_name().to_string_lossy().into_owned();
                assert!(want.contains_key(&id), "{label}: group {id} left without a finished snapshot");
            }
        }
        // Each snapshot is immutable once finished, so each is verified once (the last pass of
        // the test verifies everything again).
        let ds = Datastore::open(DatastoreName::parse(STORE).unwrap(), &store).unwrap();
        let mut cache = VerifyCache::default();
        for info in ds.groups(&Namespace::root()).unwrap() {
            for s in ds.snapshots(&Namespace::root(), &info).unwrap() {
                let key = (info.id.to_string(), s.snapshot.time.epoch());
                if self.model.verified.contains(&key) {
                    continue;
                }
                let r = ds.verify_snapshot(&Namespace::root(), &s.snapshot, UPID, &mut cache).unwrap();
                assert_eq!(r, VerifyResult::Ok, "{label}: {key:?}");
                self.model.verified.insert(key);
            }
        }
    }

    /// The next backup of `id` succeeds, builds on the last finished snapshot, and restores.
    async fn next_backup_works(&mut self, srv: &Serve, id: &str, label: &str) {
        let (time, c) = self.next(id);
        let t = Instant::now();
        let done = backup(&srv.client, id, time, &c).await.unwrap_or_else(|e| panic!("{label}: next backup: {e}"));
        self.add("backup", t);
        let base = self.model.finished.get(id).and_then(|v| v.last()).map(|(t, _)| *t);
        assert_eq!(done.previous, base, "{label}: the next backup's base");
        if base.is_some() {
            assert!(done.reused > 0, "{label}: the next backup reused nothing of its base");
        }
        self.model.finished.entry(id.to_string()).or_default().push((time, self.generation));
        let t = Instant::now();
        assert_restores(&srv.client, id, time, &c).await;
        self.add("restore", t);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kill_point_leaves_a_consistent_store() {
    let started = Instant::now();
    let dir = tempfile::Builder::new().prefix("chunkyard-crash").tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(STORE).join(".chunks")).unwrap();
    let mut crash = Crash {
        data_dir: dir.path(),
        model: Model::default(),
        found: Found::default(),
        time: T0,
        generation: 0,
        phases: BTreeMap::new(),
    };
    {
        let srv = Serve::start(dir.path(), None);
        crash.next_backup_works(&srv, "main", "first backup").await;
    }

    let mut survived = Vec::new();
    for (i, (spec, fresh, commits)) in CASES.iter().enumerate() {
        let id = if *fresh { format!("new{i}") } else { "main".to_string() };
        let label = format!("#{i} {spec} ({})", if *fresh { "first backup of a group" } else { "incremental" });
        let committed = crash.run(&id, Kill::Failpoint(spec), &label).await;
        assert_eq!(committed, *commits, "{label}: committed");
        println!(
            "survived {label}{} [{:.1} s]",
            if committed { ", snapshot committed" } else { "" },
            started.elapsed().as_secs_f64()
        );
        survived.push(label);
    }
    // Forget and prune die between removing a snapshot's manifest and the rest of it.
    for (spec, prune, removed) in [("snapshot.remove=kill", false, 1), ("snapshot.remove=kill@2", true, 2)] {
        let label = format!("#{} {spec} ({})", survived.len(), if prune { "prune keep-last 3" } else { "forget" });
        crash.removal(spec, prune, removed, &label).await;
        println!("survived {label} [{:.1} s]", started.elapsed().as_secs_f64());
        survived.push(label);
    }
    let mut external = 0;
    for (i, ms) in EXTERNAL_KILLS_MS.iter().enumerate() {
        let id = if i % 2 == 0 { "main".to_string() } else { format!("ext{i}") };
        let label = format!("external SIGKILL {ms} ms into a backup of {id}");
        let committed = crash.run(&id, Kill::After(Duration::from_millis(*ms)), &label).await;
        println!("survived {label}{}", if committed { ", snapshot committed" } else { "" });
        external += 1;
    }

    // Finally everything verifies once more, all together.
    let ds = Datastore::open(DatastoreName::parse(STORE).unwrap(), &dir.path().join(STORE)).unwrap();
    let all = ds.verify_all(UPID).unwrap();
    assert_eq!(all.len(), crash.model.finished.values().map(Vec::len).sum::<usize>());
    assert!(all.iter().all(|(_, _, r)| *r == VerifyResult::Ok), "{all:?}");
    println!(
        "{} failpoint kills and {external} external kills survived in {:.1} s; recovery removed {} abandoned snapshots \
         and {} temp files, GC {} chunk temp files; {} finished snapshots verify",
        survived.len(),
        started.elapsed().as_secs_f64(),
        crash.found.snapshots,
        crash.found.temp_files,
        crash.found.chunk_temp_files,
        all.len()
    );
    println!("time by phase: {:?}", crash.phases);
    assert!(survived.len() >= 50);
}
