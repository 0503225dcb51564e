//! The pull: fetch the Google directory, scope it, plan the changes, guard against mass
//! deactivation, apply through [`crate::provision::apply_batch`], and record the run.
//!
//! The commands (`sync`, `sync user`, `sync status`, `sync approve`, `sync discard`) are
//! serde [`Request`]s executed by [`execute`], so the CLI and the daemon's admin socket
//! carry the same requests.

pub mod guard;
pub mod plan;
pub mod run;
pub mod scope;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use run::{
    approve, discard, run_sync, sync_user, Progress, ProgressFn, SyncContext, SyncError,
    SyncOptions, SyncOutcome, SyncReport,
};

use crate::store::SyncRun;

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
        run_id: String,
    },
    /// `sync discard RUN_ID`
    Discard {
        /// The run that held deactivations.
        run_id: String,
    },
}

/// Held deactivations, summarised for `sync status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeldSummary {
    /// The run that held them.
    pub run_id: String,
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
        run_id: String,
        /// How many.
        count: usize,
    },
}

/// Executes one sync request.
pub async fn execute(
    ctx: &SyncContext,
    request: Request,
    progress: Option<ProgressFn>,
) -> Result<Response, SyncError> {
    match request {
        Request::Sync { dry_run } => {
            let outcome = run_sync(ctx, SyncOptions { dry_run, progress }).await?;
            Ok(Response::Run(Box::new(outcome)))
        }
        Request::SyncUser { email, dry_run } => Ok(Response::Run(Box::new(
            sync_user(ctx, &email, dry_run).await?,
        ))),
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
        Request::Approve { run_id } => Ok(Response::Run(Box::new(approve(ctx, &run_id).await?))),
        Request::Discard { run_id } => {
            let count = discard(ctx, &run_id)?;
            Ok(Response::Discarded { run_id, count })
        }
    }
}
