//! `/healthz` and `/metrics`, on their own listener apart from the public SCIM one.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::store::{RunId, RunStatus, Store};

/// After this many failed pulls in a row, `/healthz` reports unhealthy.
pub const MAX_CONSECUTIVE_SYNC_FAILURES: u32 = 3;

/// Says why the pull's run in progress is overdue (longer than `[sync].run_timeout`), if it is.
pub type OverdueProbe = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// The daemon's view of its own health, updated as pulls finish.
#[derive(Default)]
pub struct Health {
    consecutive_sync_failures: AtomicU32,
    last_sync: Mutex<Option<LastSync>>,
    overdue: Mutex<Option<OverdueProbe>>,
}

/// The outcome of the last pull, as health reports it.
#[derive(Clone, Debug, Serialize)]
pub struct LastSync {
    /// The run id.
    pub run_id: RunId,
    /// ok, held or failed.
    pub status: RunStatus,
    /// When it finished.
    pub finished: DateTime<Utc>,
    /// Why it failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Health {
    /// Records a finished pull.
    pub fn record_sync(&self, last: LastSync) {
        if last.status == RunStatus::Failed {
            self.consecutive_sync_failures
                .fetch_add(1, Ordering::Relaxed);
        } else {
            self.consecutive_sync_failures.store(0, Ordering::Relaxed);
        }
        *self.last_sync.lock().unwrap_or_else(|p| p.into_inner()) = Some(last);
    }

    /// Asks `probe` on each `/healthz` whether a run is stuck past its deadline.
    pub fn set_overdue_probe(&self, probe: OverdueProbe) {
        *self.overdue.lock().unwrap_or_else(|p| p.into_inner()) = Some(probe);
    }

    /// Why the run in progress is overdue, if it is.
    pub fn overdue(&self) -> Option<String> {
        let probe = self
            .overdue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        probe.and_then(|p| p())
    }

    /// How many pulls in a row have failed.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_sync_failures.load(Ordering::Relaxed)
    }

    /// The last pull, if any finished.
    pub fn last_sync(&self) -> Option<LastSync> {
        self.last_sync
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// What the health listener reads.
#[derive(Clone)]
pub struct HealthState {
    /// The open store.
    pub store: Store,
    /// Pull outcomes.
    pub health: Arc<Health>,
}

#[derive(Serialize)]
struct HealthBody {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    version: &'static str,
    members: MemberCounts,
    consecutive_sync_failures: u32,
    last_sync: Option<LastSync>,
}

#[derive(Serialize)]
struct MemberCounts {
    active: usize,
    inactive: usize,
}

/// The router of the health and metrics listener.
pub fn router(state: HealthState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn healthz(State(state): State<HealthState>) -> Response {
    // The last pull before the counts: a pull records itself after its writes, so a pull
    // that ends meanwhile is then either not shown or shown with its writes counted, never
    // "ok" beside the counts from before it.
    let last_sync = state.health.last_sync();
    let failures = state.health.consecutive_failures();
    let (active, inactive) = state.store.member_counts();
    let store_ok = state.store.schema_version().is_ok();
    // Too little space: writes are refused, reads go on.
    let low_space = match state.store.check_space() {
        Err(e @ crate::store::StoreError::NoSpace { .. }) => Some(e.to_string()),
        _ => None,
    };
    let reason = if let Some(why) = state.store.flush_failure() {
        Some(format!(
            "the store could not write to disk ({why}); it is read-only and the daemon is stopping so that systemd restarts it"
        ))
    } else if !store_ok {
        Some("the store cannot be read".to_string())
    } else if failures >= MAX_CONSECUTIVE_SYNC_FAILURES {
        Some(format!(
            "the last {failures} pulls from Google failed; see `retrac-sync sync status`"
        ))
    } else {
        // A stuck run blocks every later tick: say so rather than stay green.
        state.health.overdue()
    };
    let code = if reason.is_some() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let status = match (&reason, &low_space) {
        (Some(_), _) => "unhealthy",
        (None, Some(_)) => "degraded",
        (None, None) => "ok",
    };
    let body = HealthBody {
        status,
        reason: reason.or(low_space),
        version: env!("CARGO_PKG_VERSION"),
        members: MemberCounts { active, inactive },
        consecutive_sync_failures: failures,
        last_sync,
    };
    (code, Json(body)).into_response()
}

async fn metrics(State(state): State<HealthState>) -> Response {
    // The recorder first: a gauge set before it is installed would be lost.
    let handle = crate::telemetry::metrics();
    let _ = state.store.free_bytes();
    metrics::gauge!("retrac_store_min_free_bytes").set(state.store.min_free_bytes() as f64);
    let (active, inactive) = state.store.member_counts();
    metrics::gauge!("retrac_members", "state" => "active").set(active as f64);
    metrics::gauge!("retrac_members", "state" => "inactive").set(inactive as f64);
    let text = handle.render();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pull that ends while `/healthz` builds its answer is either wholly in the answer or
    /// wholly out of it: never "the last pull was ok" beside the member counts from before
    /// that pull. The overdue probe, which `/healthz` calls while it answers, plays the end
    /// of the run (its writes, then its record, in the daemon's order).
    #[tokio::test]
    async fn a_pull_ending_during_a_health_answer_is_never_half_shown() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let health = Arc::new(Health::default());
        let run = {
            let store = store.clone();
            let health = Arc::downgrade(&health);
            move || {
                let health = health.upgrade()?;
                if health.last_sync().is_none() {
                    crate::owner::execute(
                        &store,
                        crate::owner::Request::MembersAdd {
                            email: "ada@example.com".into(),
                            given: "Ada".into(),
                            family: "Lovelace".into(),
                        },
                        Utc::now(),
                    )
                    .unwrap();
                    health.record_sync(LastSync {
                        run_id: crate::store::RunId::parse("20261101T020000Z-000001").unwrap(),
                        status: RunStatus::Ok,
                        finished: Utc::now(),
                        error: None,
                    });
                }
                None
            }
        };
        health.set_overdue_probe(Arc::new(run));
        let answer = |state: HealthState| async move {
            let r = healthz(State(state)).await;
            let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            (
                v["last_sync"]["status"].clone(),
                v["members"]["active"].clone(),
                v,
            )
        };
        let state = HealthState {
            store: store.clone(),
            health: health.clone(),
        };
        let (status, active, v) = answer(state.clone()).await;
        assert!(
            health.last_sync().is_some(),
            "the run ended during the answer"
        );
        assert!(
            (status.is_null() && active == 0) || (status == "ok" && active == 1),
            "a half-shown run: {v}"
        );
        // The next answer has all of it.
        let (status, active, v) = answer(state).await;
        assert!(status == "ok" && active == 1, "{v}");
    }
}
