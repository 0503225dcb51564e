//! The run's book: its counts, problems and record, and how it finishes.

use super::*;

/// Reads a directory's request count ([`Directory::requests`]).
pub(super) type RequestCount = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Whether a run writes, and so is recorded under an id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// Plans and writes nothing; not recorded.
    DryRun,
    /// Writes, and is recorded under this id (the audit's `pull:RUN_ID`).
    Record(RunId),
}

/// A run being put together.
pub(super) struct RunBook {
    pub(super) mode: Mode,
    pub(super) kind: TargetKind,
    /// The run's time, read once by the caller: the record's start, and the time of every
    /// write the run makes.
    pub(super) started: DateTime<Utc>,
    /// For the run's duration (a monotonic clock, not a record time).
    pub(super) t0: Instant,
    pub(super) counts: RunCounts,
    pub(super) problems: Vec<String>,
    pub(super) held_reasons: Vec<String>,
    /// The directory's request count, and its value when this run took the directory.
    pub(super) google: Option<(RequestCount, u64)>,
    /// Time spent reading Google, then planning, in ms (logged: where a slow run spends it).
    pub(super) fetch_ms: u64,
    pub(super) plan_ms: u64,
}

impl RunBook {
    pub(super) fn new(
        ctx: &SyncContext,
        kind: TargetKind,
        dry_run: bool,
        now: DateTime<Utc>,
    ) -> Result<RunBook, SyncError> {
        let mode = if dry_run {
            Mode::DryRun
        } else {
            Mode::Record(ctx.store.new_run_id(now)?)
        };
        Ok(RunBook {
            mode,
            kind,
            started: now,
            t0: Instant::now(),
            counts: RunCounts::default(),
            problems: Vec::new(),
            held_reasons: Vec::new(),
            google: None,
            fetch_ms: 0,
            plan_ms: 0,
        })
    }

    /// Counts the Directory API requests `client` makes from now on as this run's.
    pub(super) fn uses<D: Directory + 'static>(&mut self, client: &Arc<D>) {
        let client = client.clone();
        let before = client.requests();
        self.google = Some((Arc::new(move || client.requests()), before));
    }

    /// Directory API requests made so far (retries included).
    pub(super) fn google_requests(&self) -> u64 {
        self.google
            .as_ref()
            .map_or(0, |(requests, before)| requests() - before)
    }

    pub(super) fn millis(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }

    pub(super) fn problem(&mut self, p: String) {
        self.counts.errors += 1;
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(p);
        }
    }

    /// Ends the run as failed, with why.
    pub(super) fn fail(self, ctx: &SyncContext, error: String) -> Result<SyncOutcome, SyncError> {
        self.finish(ctx, RunStatus::Failed, Some(error), Vec::new())
    }

    /// Records the run (unless dry), emits metrics and a log line, and builds the outcome;
    /// a dry run's outcome carries `changes`, the plan.
    pub(super) fn finish(
        self,
        ctx: &SyncContext,
        status: RunStatus,
        error: Option<String>,
        changes: Vec<PlannedChange>,
    ) -> Result<SyncOutcome, SyncError> {
        let elapsed = self.t0.elapsed();
        // The end is the run's time plus the time it took: the clock is not read again.
        let finished = self.started + TimeDelta::from_std(elapsed).unwrap_or(TimeDelta::zero());
        let google_requests = self.google_requests();
        let run_id = match self.mode {
            Mode::DryRun => None,
            Mode::Record(run_id) => Some(run_id),
        };
        let dry = run_id.is_none();
        let kind = self.kind.as_str();
        if let Some(run_id) = &run_id {
            ctx.store.put_sync_run(&SyncRun {
                run_id: run_id.clone(),
                kind: kind.to_string(),
                started: self.started,
                finished,
                status,
                counts: self.counts.clone(),
                google_requests,
                error: error.clone(),
                problems: self.problems.clone(),
                held_reasons: self.held_reasons.clone(),
            })?;
            metrics::counter!("retrac_sync_runs_total", "status" => status.to_string())
                .increment(1);
            metrics::histogram!("retrac_sync_duration_seconds").record(elapsed.as_secs_f64());
            if status != RunStatus::Failed {
                metrics::gauge!("retrac_sync_last_success_timestamp_seconds")
                    .set(finished.timestamp() as f64);
            }
            if let Ok(held) = ctx.store.held_all() {
                let n: usize = held.iter().map(|h| h.changes.len()).sum();
                metrics::gauge!("retrac_sync_held_changes").set(n as f64);
            }
        }
        let c = &self.counts;
        let shown_id = run_id.as_ref().map_or("", RunId::as_str);
        match &error {
            Some(e) => {
                tracing::error!(run_id = %shown_id, kind, %status, error = %e,
                google_requests, "sync run failed")
            }
            None => tracing::info!(run_id = %shown_id, kind, %status, dry_run = dry,
                created = c.created, updated = c.updated, deactivated = c.deactivated,
                linked = c.linked, unchanged = c.unchanged, held = c.held, skipped = c.skipped,
                errors = c.errors, google_requests,
                fetch_ms = self.fetch_ms, plan_ms = self.plan_ms,
                duration_ms = elapsed.as_millis() as u64, "sync run finished"),
        }
        Ok(SyncOutcome {
            report: SyncReport {
                run_id,
                status,
                counts: self.counts,
                google_requests,
                duration_ms: elapsed.as_millis() as u64,
            },
            error,
            problems: self.problems,
            held_reasons: self.held_reasons,
            changes: dry.then_some(changes),
        })
    }
}
