//! The pull's schedule: a cron job (tokio-cron-scheduler), a first run shortly after start,
//! a manual trigger, and no overlap.
//!
//! The cron job only sends ticks; a driver task hands each one to the runner. The pull's own
//! lock (in `SyncContext`) is the one guarantee that runs never overlap: a tick that arrives
//! while a run is in progress is refused there and logged, not queued, so a slow run never
//! causes a burst of runs.
//! Shutdown stops the cron job, asks the running sync to stop after its current batch, and
//! waits for it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::reconcile::{self, SyncContext, SyncError, SyncOptions, Target};

/// How long after start the first run comes.
pub const FIRST_RUN_DELAY: Duration = Duration::from_secs(5);

/// What started a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The first run after start.
    Startup,
    /// A cron tick.
    Cron,
    /// [`ScheduleHandle::trigger_now`]. Nothing in the daemon calls it: `sync` over the admin
    /// socket runs the pull itself, under the same lock. The schedule's tests use it.
    Manual,
}

/// A boxed future.
pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// What the schedule runs.
pub trait Runner: Send + Sync + 'static {
    /// Performs one run.
    fn run(&self, trigger: Trigger) -> BoxFuture;
    /// Asks a run in progress to stop at its next safe point (shutdown).
    fn stop(&self) {}
}

/// Told about each finished run (the daemon updates health and systemd's status).
pub type OnSync = Arc<dyn Fn(&reconcile::SyncOutcome) + Send + Sync>;

/// The pull as a [`Runner`].
#[derive(Clone)]
pub struct SyncRunner {
    /// The pull.
    pub ctx: Arc<SyncContext>,
    /// Called with each run's outcome.
    pub on_sync: Option<OnSync>,
}

impl Runner for SyncRunner {
    fn run(&self, trigger: Trigger) -> BoxFuture {
        let ctx = self.ctx.clone();
        let on_sync = self.on_sync.clone();
        Box::pin(async move {
            let now = chrono::Utc::now();
            match reconcile::run(&ctx, Target::All, SyncOptions::default(), now).await {
                // The run logs and records itself.
                Ok(outcome) => {
                    if let Some(f) = on_sync {
                        f(&outcome);
                    }
                }
                Err(SyncError::Busy) => {
                    tracing::info!(?trigger, "sync skipped: another run is in progress")
                }
                Err(e) => tracing::error!(?trigger, error = %e, "sync could not run"),
            }
        })
    }

    fn stop(&self) {
        self.ctx.request_stop();
    }
}

/// Why the schedule could not start.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// The cron expression is not valid.
    #[error("invalid [sync].schedule {expr:?}: {message}")]
    Cron {
        /// The expression.
        expr: String,
        /// What is wrong.
        message: String,
    },
    /// tokio-cron-scheduler failed.
    #[error("the scheduler failed: {0}")]
    Scheduler(String),
}

/// A running schedule.
pub struct ScheduleHandle {
    triggers: mpsc::Sender<Trigger>,
    shutdown: watch::Sender<bool>,
    driver: tokio::task::JoinHandle<()>,
    scheduler: Option<JobScheduler>,
    runner: Arc<dyn Runner>,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for ScheduleHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScheduleHandle")
            .field("triggers", &self.stats.triggers.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Stats {
    triggers: AtomicU64,
}

/// Checks a cron expression with seconds, as `[sync].schedule` needs it.
pub fn check(expr: &str) -> Result<(), ScheduleError> {
    crate::config::check_cron(expr).map_err(|e| ScheduleError::Cron {
        expr: expr.to_string(),
        message: e.to_string(),
    })
}

/// Starts the schedule: cron ticks from `schedule` (with seconds), a first run after
/// `first_run` (normally [`FIRST_RUN_DELAY`]), and manual triggers.
pub async fn start(
    schedule: &str,
    runner: Arc<dyn Runner>,
    first_run: Duration,
) -> Result<ScheduleHandle, ScheduleError> {
    check(schedule)?;
    let mut handle = start_driver(runner, Some(first_run));
    let scheduler = JobScheduler::new()
        .await
        .map_err(|e| ScheduleError::Scheduler(e.to_string()))?;
    let tx = handle.triggers.clone();
    let job = Job::new_async(schedule, move |_id, _lock| {
        let tx = tx.clone();
        Box::pin(async move {
            // Never wait on a full channel: a pending tick is as good as two.
            let _ = tx.try_send(Trigger::Cron);
        })
    })
    .map_err(|e| ScheduleError::Cron {
        expr: schedule.to_string(),
        message: e.to_string(),
    })?;
    scheduler
        .add(job)
        .await
        .map_err(|e| ScheduleError::Scheduler(e.to_string()))?;
    scheduler
        .start()
        .await
        .map_err(|e| ScheduleError::Scheduler(e.to_string()))?;
    handle.scheduler = Some(scheduler);
    tracing::info!(
        schedule,
        first_run_in_s = first_run.as_secs(),
        "sync schedule started"
    );
    Ok(handle)
}

/// The driver alone, without the cron job: ticks come from `trigger_now` and (tests) `tick`.
fn start_driver(runner: Arc<dyn Runner>, first_run: Option<Duration>) -> ScheduleHandle {
    let (tx, mut rx) = mpsc::channel::<Trigger>(4);
    let (shutdown, mut shutdown_rx) = watch::channel(false);
    let stats = Arc::new(Stats::default());
    if let Some(delay) = first_run {
        let tx = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(Trigger::Startup).await;
        });
    }
    let driver = {
        let runner = runner.clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            let mut runs = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    biased;
                    _ = shutdown_rx.changed() => break,
                    Some(_) = runs.join_next(), if !runs.is_empty() => {}
                    trigger = rx.recv() => {
                        let Some(trigger) = trigger else { break };
                        stats.triggers.fetch_add(1, Ordering::Relaxed);
                        // No check here: the runner refuses a tick while a run goes on.
                        runs.spawn(runner.run(trigger));
                    }
                }
            }
            while runs.join_next().await.is_some() {}
        })
    };
    ScheduleHandle {
        triggers: tx,
        shutdown,
        driver,
        scheduler: None,
        runner,
        stats,
    }
}

impl ScheduleHandle {
    /// Starts a run now, unless one is in progress (then the runner refuses it and logs).
    pub fn trigger_now(&self) {
        let _ = self.triggers.try_send(Trigger::Manual);
    }

    /// Triggers handed to the runner so far.
    pub fn triggers(&self) -> u64 {
        self.stats.triggers.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    fn tick(&self) {
        let _ = self.triggers.try_send(Trigger::Cron);
    }

    /// Stops the cron job, asks a running sync to stop after its current batch, and waits.
    pub async fn shutdown(mut self) {
        if let Some(mut s) = self.scheduler.take() {
            if let Err(e) = s.shutdown().await {
                tracing::warn!(error = %e, "stopping the cron scheduler");
            }
        }
        self.runner.stop();
        let _ = self.shutdown.send(true);
        let _ = (&mut self.driver).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Mutex;

    /// A runner that records its triggers and takes `duration` (in tokio time), and, like
    /// `SyncContext`, refuses a run while one is in progress.
    struct Recorder {
        duration: Duration,
        log: Mutex<Vec<(Trigger, tokio::time::Instant)>>,
        stopped: AtomicBool,
        busy: AtomicBool,
        refused: AtomicU64,
    }

    impl Runner for Arc<Recorder> {
        fn run(&self, trigger: Trigger) -> BoxFuture {
            let me = self.clone();
            Box::pin(async move {
                if me.busy.swap(true, Ordering::SeqCst) {
                    me.refused.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                me.log
                    .lock()
                    .unwrap()
                    .push((trigger, tokio::time::Instant::now()));
                tokio::time::sleep(me.duration).await;
                me.busy.store(false, Ordering::SeqCst);
            })
        }
        fn stop(&self) {
            self.stopped.store(true, Ordering::SeqCst);
        }
    }

    fn recorder(duration: Duration) -> Arc<Recorder> {
        Arc::new(Recorder {
            duration,
            log: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
            busy: AtomicBool::new(false),
            refused: AtomicU64::new(0),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_run_comes_shortly_after_start() {
        let rec = recorder(Duration::from_secs(1));
        let t0 = tokio::time::Instant::now();
        let h = start_driver(Arc::new(rec.clone()), Some(FIRST_RUN_DELAY));
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(rec.log.lock().unwrap().is_empty());
        tokio::time::sleep(Duration::from_secs(2)).await;
        let log = rec.log.lock().unwrap().clone();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].0, Trigger::Startup);
        assert_eq!(log[0].1 - t0, FIRST_RUN_DELAY);
        h.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn ticks_during_a_run_are_refused_by_the_runner_not_queued() {
        let rec = recorder(Duration::from_secs(600));
        let h = start_driver(Arc::new(rec.clone()), None);
        h.trigger_now();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(rec.busy.load(Ordering::SeqCst));
        // Three cron ticks and a manual trigger while the ten-minute run goes on.
        for _ in 0..3 {
            h.tick();
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        h.trigger_now();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(rec.refused.load(Ordering::SeqCst), 4);
        assert_eq!(rec.log.lock().unwrap().len(), 1);
        // After the run, nothing queued starts; the next tick runs.
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(!rec.busy.load(Ordering::SeqCst));
        assert_eq!(rec.log.lock().unwrap().len(), 1);
        h.tick();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let log = rec.log.lock().unwrap().clone();
        assert_eq!(
            log.iter().map(|l| l.0).collect::<Vec<_>>(),
            [Trigger::Manual, Trigger::Cron]
        );
        assert_eq!(h.triggers(), 6);
        h.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_asks_the_run_to_stop_and_waits_for_it() {
        let rec = recorder(Duration::from_secs(30));
        let h = start_driver(Arc::new(rec.clone()), None);
        h.trigger_now();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let t0 = tokio::time::Instant::now();
        h.shutdown().await;
        assert!(rec.stopped.load(Ordering::SeqCst));
        // It waited for the run in progress to end.
        assert!(tokio::time::Instant::now() - t0 >= Duration::from_secs(29));
    }

    #[tokio::test]
    async fn an_invalid_schedule_is_refused_clearly() {
        let rec = recorder(Duration::from_secs(1));
        let err = start("*/15 * * * *", Arc::new(rec), FIRST_RUN_DELAY)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("cron expression with seconds"),
            "{err}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_cron_job_sends_ticks() {
        // tokio-cron-scheduler reads the wall clock, so this one runs in real time.
        let rec = recorder(Duration::from_millis(1));
        let h = start(
            "* * * * * *",
            Arc::new(rec.clone()),
            Duration::from_secs(3600),
        )
        .await
        .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while rec.log.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            rec.log.lock().unwrap().first().map(|l| l.0),
            Some(Trigger::Cron)
        );
        h.shutdown().await;
    }
}
