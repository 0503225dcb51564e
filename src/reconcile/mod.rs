//! The pull: fetch the Google directory, scope it, plan the changes, guard against mass
//! deactivation, apply through [`crate::provision::apply_batch`], and record the run.
//!
//! The commands (`sync`, `sync user`, `sync status`, `sync approve`, `sync discard`) are
//! serde [`Request`]s executed by [`execute`], so the CLI and the daemon's admin socket
//! carry the same requests. `sync`, `sync user` and `sync approve` are one pipeline,
//! [`run()`], with a [`Target`].

pub mod decide;
pub mod guard;
pub mod plan;
pub mod run;
pub mod scope;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use run::{
    discard, run, Progress, ProgressFn, SyncContext, SyncError, SyncOptions, SyncOutcome,
    SyncReport, Target,
};

use crate::member::UserName;
use crate::store::{RunId, SyncRun};

/// A sync request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// `sync [--dry-run]`
    Sync {
        /// Plan only.
        dry_run: bool,
    },
    /// `sync user EMAIL [--dry-run]`
    SyncUser {
        /// The user's email.
        email: String,
        /// Plan only.
        dry_run: bool,
    },
    /// `sync status`
    Status {
        /// How many recent runs.
        limit: usize,
    },
    /// `sync approve RUN_ID`
    Approve {
        /// The run that held deactivations.
        run_id: RunId,
    },
    /// `sync discard RUN_ID`
    Discard {
        /// The run that held deactivations.
        run_id: RunId,
    },
}

/// Held deactivations, summarised for `sync status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeldSummary {
    /// The run that held them.
    pub run_id: RunId,
    /// When.
    pub held_at: DateTime<Utc>,
    /// How many.
    pub count: usize,
    /// Why.
    pub reasons: Vec<String>,
    /// The first few user names.
    pub sample: Vec<String>,
}

/// The answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Response {
    /// A run (or dry run).
    Run(Box<SyncOutcome>),
    /// Recent runs, newest first, and the held deactivations.
    Status {
        /// Recent runs.
        runs: Vec<SyncRun>,
        /// Held deactivations.
        held: Vec<HeldSummary>,
        /// Whether a run is in progress now.
        running: bool,
    },
    /// Held deactivations dropped.
    Discarded {
        /// The run.
        run_id: RunId,
        /// How many.
        count: usize,
    },
}

/// Executes one sync request; `now` is the time a run carries.
pub async fn execute(
    ctx: &SyncContext,
    request: Request,
    progress: Option<ProgressFn>,
    now: DateTime<Utc>,
) -> Result<Response, SyncError> {
    let run_target = |target, dry_run| async move {
        let opts = SyncOptions { dry_run, progress };
        let outcome = run(ctx, target, opts, now).await?;
        Ok(Response::Run(Box::new(outcome)))
    };
    match request {
        Request::Sync { dry_run } => run_target(Target::All, dry_run).await,
        Request::SyncUser { email, dry_run } => {
            let user = UserName::parse(&email).map_err(|e| SyncError::Invalid(e.to_string()))?;
            run_target(Target::User(user), dry_run).await
        }
        Request::Status { limit } => {
            let runs = ctx.store().sync_runs(limit)?;
            let held = ctx
                .store()
                .held_all()?
                .into_iter()
                .map(|h| HeldSummary {
                    count: h.changes.len(),
                    sample: h
                        .changes
                        .iter()
                        .take(5)
                        .map(|c| c.user_name.clone())
                        .collect(),
                    run_id: h.run_id,
                    held_at: h.held_at,
                    reasons: h.reasons,
                })
                .collect();
            Ok(Response::Status {
                runs,
                held,
                running: ctx.is_running(),
            })
        }
        Request::Approve { run_id } => run_target(Target::Approve(run_id), false).await,
        Request::Discard { run_id } => {
            let count = discard(ctx, &run_id)?;
            Ok(Response::Discarded { run_id, count })
        }
    }
}
#[cfg(test)]
mod tests;
