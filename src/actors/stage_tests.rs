//! The stage mechanism on its own: bounded waits, one answer per message, forwarding, batches,
//! stopping.

use std::sync::mpsc as std_mpsc;

use super::*;

/// Answers each number doubled, but only once the test lets it go.
struct Gated {
    go: std_mpsc::Receiver<()>,
}

impl Worker for Gated {
    type Msg = u32;
    type Reply = u32;
    fn handle(&mut self, job: Job<Self>) {
        let _ = self.go.recv();
        job.reply.send(job.msg * 2);
    }
}

fn spec(queue: usize, batch: usize) -> Spec {
    Spec { label: Label::Hasher, queue, batch }
}

#[tokio::test]
async fn a_full_queue_makes_the_sender_wait_until_a_slot_frees() {
    let (go, rx) = std_mpsc::channel();
    let mut threads = Threads::default();
    let stage = Stage::start(spec(1, 1), vec![Gated { go: rx }], &mut threads);
    // One message in the worker, one in the queue: the third sender has to wait.
    let asks: Vec<_> = (1..=3)
        .map(|n| {
            tokio::spawn({
                let stage = stage.clone();
                async move { stage.ask(n).await }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(stage.tx.capacity(), 0, "the queue is full");
    assert!(asks.iter().all(|a| !a.is_finished()));
    for _ in 0..3 {
        go.send(()).unwrap();
    }
    let mut answers = Vec::new();
    for a in asks {
        answers.push(a.await.unwrap().unwrap());
    }
    answers.sort();
    assert_eq!(answers, [2, 4, 6]);
    drop(stage);
    assert!(threads.join(Duration::from_secs(5)), "threads end once the last handle is gone");
}

struct AddOne {
    next: Stage<Double>,
}

impl Worker for AddOne {
    type Msg = u32;
    type Reply = Result<u32, &'static str>;
    fn handle(&mut self, job: Job<Self>) {
        match job.msg {
            0 => job.reply.send(Err("zero")),
            n => job.reply.forward(&self.next, n + 1),
        }
    }
}

struct Double;

impl Worker for Double {
    type Msg = u32;
    type Reply = Result<u32, &'static str>;
    fn handle(&mut self, job: Job<Self>) {
        job.reply.send(Ok(job.msg * 2));
    }
}

#[tokio::test]
async fn a_forwarded_message_is_answered_by_the_next_stage() {
    let mut threads = Threads::default();
    let double = Stage::start(spec(2, 1), vec![Double], &mut threads);
    let add = Stage::start(spec(2, 1), vec![AddOne { next: double.clone() }, AddOne { next: double }], &mut threads);
    let answers = futures_util::future::join_all((0..20).map(|n| add.ask(n))).await;
    assert_eq!(answers[0], Ok(Err("zero")));
    for (n, a) in answers.into_iter().enumerate().skip(1) {
        assert_eq!(a, Ok(Ok((n as u32 + 1) * 2)));
    }
    drop(add);
    // The first stage's workers hold the second stage's handle: both end in order.
    assert!(threads.join(Duration::from_secs(5)));
}

/// Answers each message with the size of the batch it came in.
struct Sizes;

impl Worker for Sizes {
    type Msg = ();
    type Reply = usize;
    fn handle(&mut self, job: Job<Self>) {
        job.reply.send(1);
    }
    fn handle_batch(&mut self, jobs: Vec<Job<Self>>) {
        let n = jobs.len();
        jobs.into_iter().for_each(|job| job.reply.send(n));
    }
}

#[tokio::test]
async fn queued_messages_reach_a_batching_worker_together() {
    let mut threads = Threads::default();
    let stage = Stage::start(spec(64, 8), vec![Sizes], &mut threads);
    let sizes = futures_util::future::join_all((0..64).map(|_| stage.ask(()))).await;
    let sizes: Vec<usize> = sizes.into_iter().map(Result::unwrap).collect();
    assert!(sizes.iter().all(|&n| (1..=8).contains(&n)), "{sizes:?}");
    assert!(sizes.iter().any(|&n| n > 1), "64 queued messages never came as a batch: {sizes:?}");
}

struct Drops;

impl Worker for Drops {
    type Msg = ();
    type Reply = ();
    fn handle(&mut self, job: Job<Self>) {
        drop(job);
    }
}

#[tokio::test]
async fn an_unanswered_message_and_a_stopped_stage_are_reported_as_stopped() {
    let mut threads = Threads::default();
    let stage = Stage::start(spec(1, 1), vec![Drops], &mut threads);
    assert_eq!(stage.ask(()).await, Err(Stopped(Label::Hasher)));
    let files = Stage::start(Spec { label: Label::Files, queue: 1, batch: 1 }, vec![Blocking], &mut threads);
    assert_eq!(files.run(|| 7).await, Ok(7));
    let err = files.run(|| -> u32 { panic!("worker panics") }).await.unwrap_err();
    assert_eq!(err.to_string(), "files stage stopped");
    // The only worker died with the panic: later messages are refused, not lost in a queue.
    assert_eq!(files.run(|| 1).await, Err(Stopped(Label::Files)));
}
