//! The writer thread: single member writes (SCIM's) queue for one thread of their own, which
//! commits the writes queued so far in one transaction and makes them durable with one
//! flush, on that same thread, before any of their callers hears back.
//!
//! Why: sled 0.34 writes its log buffer out twice for every transaction (`pin_log` rolls the
//! buffer before and after the transaction's manifest), each a `pwrite` and a
//! `sync_file_range` on its I/O threads. One transaction per SCIM write paid that, plus a
//! blocking-pool thread per request queueing on the writer lock and a task and a thread per
//! group flush: about two disk syncs and 18 context switches per write, which bounded
//! `POST /Users` on a small machine (the profile is in `docs/development.md`, "Writes").
//! Here the writes that queue while a batch commits and flushes share the next transaction
//! and the next flush.
//!
//! Each write succeeds or is refused on its own, as in [`crate::provision::apply_batch`]:
//! a refused one writes nothing. A store error in one write must not fail the others: the
//! batch's transaction then aborts, and each write of it runs again in a transaction of its
//! own. A write runs at the batch's time, so one transaction's audit entries share one
//! time.
//!
//! A caller that has waited [`super::WRITE_DEADLINE`] keeps waiting while the writer moves:
//! the store turns read-only ([`Store::fail`]) when one step of the writer thread (one
//! write in a transaction, a commit, a flush) has run for the deadline, as the blocking
//! pool's writes do. The wait for the writer lock counts as the step of the write that
//! waits for it (another writer, such as a pull's batch, holds it).

use std::sync::mpsc;
use std::sync::{Arc, Mutex, Weak};

use chrono::{DateTime, Utc};

use super::{Inner, MemberTx, Store, StoreError, WRITE_DEADLINE};

/// At most this many writes share one transaction and one flush.
const MAX_BATCH: usize = 64;

/// A write waiting in the queue, its answer's sender included.
trait Queued: Send {
    /// Runs the write in the batch's transaction, keeping its result for [`Queued::finish`].
    /// It may run more than once (sled retries a transaction on conflict; a batch that
    /// failed runs each write again alone): the last run's result counts.
    fn run(&self, tx: &MemberTx<'_>, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// Sends the answer: the kept result once `outcome` says the write is durable, else
    /// `outcome`'s error.
    fn finish(self: Box<Self>, outcome: Result<(), StoreError>);
}

struct Job<R, F> {
    write: F,
    result: Mutex<Option<R>>,
    answer: tokio::sync::oneshot::Sender<Result<R, StoreError>>,
}

impl<R, F> Queued for Job<R, F>
where
    R: Send,
    F: Fn(&MemberTx<'_>, DateTime<Utc>) -> Result<R, StoreError> + Send,
{
    fn run(&self, tx: &MemberTx<'_>, now: DateTime<Utc>) -> Result<(), StoreError> {
        // A write that panics aborts the transaction like one that fails: inside it, before
        // sled commits, so nothing of the batch is written and the others run again alone.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.write)(tx, now)))
            .unwrap_or_else(|_| Err(StoreError::Internal("a write panicked".into())))?;
        *self.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
        Ok(())
    }

    fn finish(self: Box<Self>, outcome: Result<(), StoreError>) {
        let result = self.result.into_inner().unwrap_or_else(|p| p.into_inner());
        let answer = match (outcome, result) {
            (Ok(()), Some(r)) => Ok(r),
            (Ok(()), None) => Err(StoreError::Internal("a queued write left no result".into())),
            (Err(e), _) => Err(e),
        };
        // The caller may have given up (its deadline, a client that hung up).
        let _ = self.answer.send(answer);
    }
}

/// The queue to the writer thread, started by the first write that needs it (a CLI command
/// that opens the store never starts one).
#[derive(Default)]
pub(super) struct WriterQueue {
    sender: Mutex<Option<mpsc::Sender<Box<dyn Queued>>>>,
}

/// Why a write could not be queued.
enum NotQueued {
    /// The writer thread could not be started (the system is out of threads for now).
    Spawn(StoreError),
    /// The writer thread has stopped: it cannot have ended but by a fault.
    Gone,
}

impl WriterQueue {
    fn send(&self, inner: &Arc<Inner>, job: Box<dyn Queued>) -> Result<(), NotQueued> {
        let mut sender = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        let tx = match &*sender {
            Some(tx) => tx.clone(),
            None => {
                let (tx, rx) = mpsc::channel();
                let weak = Arc::downgrade(inner);
                std::thread::Builder::new()
                    .name("retrac-writer".into())
                    .spawn(move || run(weak, rx))
                    .map_err(|e| {
                        NotQueued::Spawn(StoreError::Internal(format!(
                            "cannot start the writer: {e}"
                        )))
                    })?;
                *sender = Some(tx.clone());
                tx
            }
        };
        drop(sender);
        tx.send(job).map_err(|_| NotQueued::Gone)
    }
}

/// When the writer thread's current step (a transaction, a flush) started, in milliseconds
/// since `origin`, or 0 while it waits for work: a caller past its deadline turns the store
/// read-only only when this step is what holds it, not the writes queued before its own.
pub(super) struct WriterClock {
    origin: std::time::Instant,
    step_started: std::sync::atomic::AtomicU64,
}

impl Default for WriterClock {
    fn default() -> Self {
        WriterClock {
            origin: std::time::Instant::now(),
            step_started: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl WriterClock {
    fn start(&self) {
        let ms = self.origin.elapsed().as_millis() as u64 + 1;
        self.step_started
            .store(ms, std::sync::atomic::Ordering::Release);
    }

    fn idle(&self) {
        self.step_started
            .store(0, std::sync::atomic::Ordering::Release);
    }

    /// How long the current step has run, if one is running.
    fn step_age(&self) -> Option<std::time::Duration> {
        match self.step_started.load(std::sync::atomic::Ordering::Acquire) {
            0 => None,
            started => Some(
                self.origin
                    .elapsed()
                    .saturating_sub(std::time::Duration::from_millis(started - 1)),
            ),
        }
    }
}

/// The writer thread: takes the writes queued so far (at most [`MAX_BATCH`]), commits them,
/// flushes once, then answers each. It ends when the store is dropped (the queue's sender
/// lives in the store, and the thread holds it only while it works).
fn run(store: Weak<Inner>, rx: mpsc::Receiver<Box<dyn Queued>>) {
    while let Ok(first) = rx.recv() {
        let Some(inner) = store.upgrade() else { break };
        let store = Store { inner };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let answers = commit_batch(&store, batch);
        // Let the store go before anyone hears back: a caller that drops its last handle
        // on the answer can open the store again at once.
        drop(store);
        for (job, outcome) in answers {
            job.finish(outcome);
        }
    }
}

/// Commits a batch and flushes; returns each write with its outcome.
fn commit_batch(
    store: &Store,
    batch: Vec<Box<dyn Queued>>,
) -> Vec<(Box<dyn Queued>, Result<(), StoreError>)> {
    let clock = &store.inner.writer_clock;
    let now = Utc::now();
    clock.start();
    // Each write is a step of its own for the deadline: a batch of 64 slow writes must not
    // look like one stuck write.
    let together = commit(store, |tx| {
        batch.iter().try_for_each(|j| {
            clock.start();
            j.run(tx, now)
        })
    });
    let results: Vec<Result<(), StoreError>> = match together {
        Ok(()) => batch.iter().map(|_| Ok(())).collect(),
        Err(e) if batch.len() == 1 => vec![Err(e)],
        // A failed commit (`Store::settle`) or a panic around the writes (sled's commit, the
        // mirror's update after it) may have left a commit half written: nothing runs
        // again, the store is read-only.
        Err(e) if store.flush_failure().is_some() => {
            let why = e.to_string();
            batch
                .iter()
                .map(|_| Err(StoreError::Io(why.clone())))
                .collect()
        }
        // One write's store error (or panic) fails none of the others: each alone.
        Err(_) => batch
            .iter()
            .map(|j| {
                clock.start();
                commit(store, |tx| j.run(tx, now))
            })
            .collect(),
    };
    // Covers every write so far, these and any other writer's.
    clock.start();
    let flushed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        store.inner.flusher.flush_now()
    }))
    .unwrap_or_else(|_| Err("the flush panicked".into()));
    if let Err(why) = &flushed {
        store.fail(&format!("a flush failed: {why}"));
    }
    clock.idle();
    batch
        .into_iter()
        .zip(results)
        .map(|(job, result)| {
            let outcome = result.and_then(|()| {
                flushed
                    .clone()
                    .map_err(|why| StoreError::Io(format!("flush failed: {why}")))
            });
            (job, outcome)
        })
        .collect()
}

/// One member transaction of the writer. The writes catch their own panics
/// ([`Queued::run`]); a panic anywhere else in it (sled's commit, the mirror's update after
/// it) turns the store read-only, since what it published is not known.
fn commit(
    store: &Store,
    f: impl Fn(&MemberTx<'_>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.transact(|tx| f(tx)))) {
        Ok(r) => r,
        Err(_) => {
            let why = "a write transaction panicked outside its writes";
            store.fail(why);
            Err(StoreError::Io(why.into()))
        }
    }
}

impl Store {
    /// Queues `write` for the writer thread, which runs it in a transaction with the other
    /// writes queued meanwhile, at the batch's time, and answers once it is durable, with
    /// every write before it: an answer built from what `write` returned may leave at once.
    /// `write` may run more than once (see the module's comment); its last result counts.
    /// A step of the writer thread that runs past [`WRITE_DEADLINE`] while this waits makes
    /// the store read-only and answers [`StoreError::Io`], as does a failed flush.
    pub(crate) async fn write_queued<R, F>(&self, write: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: Fn(&MemberTx<'_>, DateTime<Utc>) -> Result<R, StoreError> + Send + 'static,
    {
        if let Some(why) = self.flush_failure() {
            return Err(StoreError::Io(format!("the store is read-only: {why}")));
        }
        let (answer, rx) = tokio::sync::oneshot::channel();
        let job = Box::new(Job {
            write,
            result: Mutex::new(None),
            answer,
        });
        match self.inner.writer_queue.send(&self.inner, job) {
            Ok(()) => {}
            // The next write tries to start it again.
            Err(NotQueued::Spawn(e)) => return Err(e),
            Err(NotQueued::Gone) => {
                let why = "the writer thread stopped";
                self.fail(why);
                return Err(StoreError::Io(why.into()));
            }
        }
        let mut rx = rx;
        let mut wait = WRITE_DEADLINE;
        loop {
            match tokio::time::timeout(wait, &mut rx).await {
                Ok(Ok(answer)) => return answer,
                Ok(Err(_)) => {
                    let why = "the writer thread stopped without answering a write";
                    self.fail(why);
                    return Err(StoreError::Io(why.into()));
                }
                // Still queued behind other writes, with the writer moving: keep waiting,
                // and look again when its current step would reach the deadline.
                Err(_) if !self.writer_stuck() => {
                    wait = self.until_writer_stuck();
                    continue;
                }
                Err(_) => {
                    let why = format!(
                        "a write did not finish within {} s (is the disk full or failing?)",
                        WRITE_DEADLINE.as_secs()
                    );
                    self.fail(&why);
                    return Err(StoreError::Io(why));
                }
            }
        }
    }

    /// Whether the writer thread's current step (a transaction, a flush) has run for
    /// [`WRITE_DEADLINE`] or more.
    fn writer_stuck(&self) -> bool {
        self.inner
            .writer_clock
            .step_age()
            .is_some_and(|age| age >= WRITE_DEADLINE)
    }

    /// How long until the writer thread's current step reaches [`WRITE_DEADLINE`] (a whole
    /// deadline while it waits for work), and at least a millisecond.
    fn until_writer_stuck(&self) -> std::time::Duration {
        let age = self.inner.writer_clock.step_age().unwrap_or_default();
        WRITE_DEADLINE
            .saturating_sub(age)
            .max(std::time::Duration::from_millis(1))
    }
}
