//! The one way the pipeline builds a bounded stage: a [`Stage`] is a fixed set of [`Worker`]s,
//! each on a dedicated thread, fed by one bounded queue. The hasher pool, the chunk writer, the
//! finish threads and the session file I/O are all stages; nothing else in `actors/` starts a
//! thread or uses the async runtime's blocking pool.
//!
//! What a stage guarantees, so that no stage has to think about it again:
//! - **Bounded**: the queue holds at most `queue` messages. An async sender (a connection
//!   thread) that finds it full *waits* for a slot ([`Stage::ask`]), which is the backpressure
//!   that reaches the client through HTTP/2 flow control; it never blocks its thread and the
//!   queue never grows. A stage thread handing its result to the next stage
//!   ([`Reply::forward`]) blocks instead, which is what a dedicated thread may do.
//! - **One reply per message**: every message travels with its [`Reply`]. A worker answers it,
//!   or forwards it with the next stage's message so the asker still awaits exactly one answer.
//!   A reply dropped unanswered (worker panic, stage stopped) reaches the asker as [`Stopped`].
//! - **Measured in one place**: `chunkyard_stage_queue_depth{stage}` counts messages queued
//!   or being handled; `chunkyard_stage_duration_seconds{stage}` records, per message, the time
//!   from being taken off the queue to being answered or forwarded. Workers record nothing.
//! - **Joinable**: the threads end once every handle is dropped and the queue is drained; their
//!   join handles go to the caller's [`Threads`], so shutdown can wait for queued writes.
//!
//! Why threads behind a bounded tokio channel, not actix's `SyncArbiter`: a `SyncArbiter`
//! queue is unbounded (hence the permit wrappers that used to sit in front of each pool), every
//! message to it is relayed by a future on the System's own thread (one more hand-off per
//! chunk, on the thread that runs the accept loop), it cannot hand a worker a batch, it needs a
//! running System, and its threads cannot be joined. tokio's bounded channel has all three
//! sides a stage needs: an async send that waits, a blocking send for stage-to-stage hand-off
//! and a blocking receive. actix stays where state belongs to a connection (`SessionActor`,
//! `IndexWriter`): those live on the connection's own thread, and they ask stages.
//!
//! To add a stage: name it in `metrics::Stage`; write a `Worker` whose `Msg` is a small struct
//! named for what it asks and whose `Reply` is what the asker needs back (a `Result`); build the
//! workers and call [`Stage::start`] from `Pipeline::start`, sized by configuration; hand out
//! clones of the `Stage`. Blocking work that is not a pipeline step of its own goes to the
//! `files` stage ([`Blocking`]) rather than to a new thread or to `spawn_blocking`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Stage as Label;

/// One kind of work, done by each of a stage's threads on messages taken off its queue.
pub trait Worker: Send + 'static {
    type Msg: Send + 'static;
    type Reply: Send + 'static;

    /// Handles one message; answers or forwards `job.reply`.
    fn handle(&mut self, job: Job<Self>);

    /// Handles the messages taken off the queue together (a stage started with `batch > 1`
    /// passes up to that many at once, so a worker can share one syscall among them).
    fn handle_batch(&mut self, jobs: Vec<Job<Self>>) {
        for job in jobs {
            self.handle(job);
        }
    }
}

/// How a stage is sized.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub label: Label,
    /// Messages that may wait in the queue (at least 1).
    pub queue: usize,
    /// Most messages one `handle_batch` call is given (1: `handle` one at a time).
    pub batch: usize,
}

/// A message with the means to answer it.
pub struct Job<W: Worker + ?Sized> {
    pub msg: W::Msg,
    pub reply: Reply<W::Reply>,
}

/// The answer channel of one message; also its slot in the stage's depth and latency metrics.
pub struct Reply<R> {
    tx: oneshot::Sender<R>,
    _slot: Slot,
}

/// The asker is gone or the stage has stopped (shutdown, or its workers panicked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{} stage stopped", .0.as_str())]
pub struct Stopped(pub Label);

/// Sending side of a stage; cheap to clone, `Send + Sync`.
pub struct Stage<W: Worker> {
    tx: mpsc::Sender<Job<W>>,
    meter: Arc<Meter>,
}

impl<W: Worker> Clone for Stage<W> {
    fn clone(&self) -> Self {
        Stage { tx: self.tx.clone(), meter: Arc::clone(&self.meter) }
    }
}

/// Join handles of the threads stages started.
#[derive(Debug, Default)]
pub struct Threads(Vec<JoinHandle<()>>);

impl<W: Worker> Stage<W> {
    /// Starts one thread per worker, all taking from one queue of `spec.queue` messages.
    pub fn start(spec: Spec, workers: Vec<W>, threads: &mut Threads) -> Stage<W> {
        assert!(!workers.is_empty(), "a stage needs at least one worker");
        let (tx, rx) = mpsc::channel(spec.queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let meter = Arc::new(Meter { label: spec.label, depth: AtomicUsize::new(0) });
        for (i, worker) in workers.into_iter().enumerate() {
            let rx = Arc::clone(&rx);
            let batch = spec.batch.max(1);
            let handle = std::thread::Builder::new()
                .name(format!("{}-{i}", spec.label.as_str()))
                .spawn(move || run(worker, &rx, batch))
                .unwrap_or_else(|e| panic!("spawn {} thread: {e}", spec.label.as_str()));
            threads.0.push(handle);
        }
        Stage { tx, meter }
    }

    /// Queues `msg`, waiting (not blocking) while the queue is full, and awaits its answer.
    pub async fn ask(&self, msg: W::Msg) -> Result<W::Reply, Stopped> {
        let stopped = Stopped(self.meter.label);
        let permit = self.tx.reserve().await.map_err(|_| stopped)?;
        let (tx, rx) = oneshot::channel();
        permit.send(Job { msg, reply: Reply { tx, _slot: self.meter.slot() } });
        rx.await.map_err(|_| stopped)
    }
}

impl<R> Reply<R> {
    /// Answers the asker (who may have gone meanwhile; then the answer is dropped).
    pub fn send(self, answer: R) {
        let _ = self.tx.send(answer);
    }

    /// Hands this message on to `next` (blocking while its queue is full: call from a stage
    /// thread only); `next` answers the original asker. If `next` has stopped, the asker
    /// learns that as [`Stopped`].
    pub fn forward<N: Worker<Reply = R>>(self, next: &Stage<N>, msg: N::Msg) {
        let Reply { tx, _slot } = self;
        // This stage is done with the message: its time and depth slot end here.
        drop(_slot);
        let _ = next.tx.blocking_send(Job { msg, reply: Reply { tx, _slot: next.meter.slot() } });
    }
}

impl Threads {
    /// Waits up to `deadline` for every thread to end; false if some are still running (a
    /// stage handle is still held somewhere, or a worker is stuck).
    pub fn join(self, deadline: Duration) -> bool {
        let until = Instant::now() + deadline;
        let mut all = true;
        for handle in self.0 {
            while !handle.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
            if handle.is_finished() {
                let _ = handle.join();
            } else {
                all = false;
            }
        }
        all
    }
}

/// The depth gauge and latency histogram of one stage.
struct Meter {
    label: Label,
    depth: AtomicUsize,
}

impl Meter {
    fn slot(self: &Arc<Self>) -> Slot {
        self.label.set_queue_depth(self.depth.fetch_add(1, Ordering::Relaxed) + 1);
        Slot { meter: Arc::clone(self), taken: None }
    }
}

/// A message's place in its stage's metrics, from queued to answered (or dropped).
struct Slot {
    meter: Arc<Meter>,
    /// When a worker took the message off the queue.
    taken: Option<Instant>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(taken) = self.taken {
            self.meter.label.observe(taken.elapsed());
        }
        self.meter.label.set_queue_depth(self.meter.depth.fetch_sub(1, Ordering::Relaxed) - 1);
    }
}

fn run<W: Worker>(mut worker: W, rx: &Mutex<mpsc::Receiver<Job<W>>>, batch: usize) {
    loop {
        let mut jobs = {
            // Held only while taking messages: the pool's threads take turns at the queue.
            let mut rx = rx.lock();
            let Some(first) = rx.blocking_recv() else { return };
            let mut jobs = vec![first];
            while jobs.len() < batch {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            jobs
        };
        let now = Instant::now();
        for job in &mut jobs {
            job.reply._slot.taken = Some(now);
        }
        if batch == 1 {
            jobs.into_iter().for_each(|job| worker.handle(job));
        } else {
            worker.handle_batch(jobs);
        }
    }
}

/// The `files` stage's worker: runs blocking file work of sessions (a transaction's begin, blob
/// and index writes, reads of the base snapshot, reader downloads) off the connection threads,
/// bounded like every other stage. Its messages are closures because each caller is already a
/// typed method of the pipeline (`Pipeline::begin_backup`, `reader::SnapshotFiles::chunk`, ...).
pub struct Blocking;

/// A closure for the `files` stage; it sends its own result.
pub type BlockingCall = Box<dyn FnOnce() + Send>;

impl Worker for Blocking {
    type Msg = BlockingCall;
    type Reply = ();

    fn handle(&mut self, job: Job<Self>) {
        (job.msg)();
        job.reply.send(());
    }
}

impl Stage<Blocking> {
    /// Runs `f` on the stage and returns its result.
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.ask(Box::new(move || {
            let _ = tx.send(f());
        }))
        .await?;
        rx.await.map_err(|_| Stopped(self.meter.label))
    }
}

#[cfg(test)]
#[path = "stage_tests.rs"]
mod tests;
