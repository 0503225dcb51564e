//! The audit's retention (`[audit].retention_days`): a background task that removes entries
//! older than the retention, in small batches ([`Store::prune_audit`]), at start and then
//! every hour.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Store;

/// How often the retention pass runs.
pub const AUDIT_PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Starts the retention task; it ends when `stopped` resolves. `retention_days = 0` keeps
/// every entry (no task runs). `clock` gives the time each pass measures the age from.
pub fn spawn_audit_retention(
    store: Store,
    retention_days: u32,
    clock: fn() -> DateTime<Utc>,
    stopped: impl Future<Output = ()> + Send + 'static,
) -> Option<tokio::task::JoinHandle<()>> {
    if retention_days == 0 {
        return None;
    }
    Some(tokio::spawn(async move {
        tokio::pin!(stopped);
        loop {
            let s = store.clone();
            let pass =
                tokio::task::spawn_blocking(move || s.prune_audit(clock(), retention_days)).await;
            match pass {
                Ok(Ok(r)) if r.removed_keys > 0 => tracing::info!(
                    removed_groups = r.removed_keys,
                    batches = r.batches,
                    longest_hold_us = r.longest_hold.as_micros() as u64,
                    oldest_left = ?r.oldest_left,
                    retention_days,
                    "removed audit entries older than the retention"
                ),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "the audit retention pass failed"),
                Err(e) => tracing::warn!(error = %e, "the audit retention pass stopped"),
            }
            tokio::select! {
                _ = &mut stopped => return,
                _ = tokio::time::sleep(AUDIT_PRUNE_EVERY) => {}
            }
        }
    }))
}

/// How often the outbox's retention pass runs.
pub const EVENT_PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Starts the outbox's retention task (`[events]`); it ends when `stopped` resolves.
/// `keep_from` tells the first event some enabled webhook endpoint still waits for (kept
/// until `max_retention_days`).
pub fn spawn_event_retention(
    store: Store,
    config: crate::config::EventsConfig,
    keep_from: fn(&Store) -> Option<u64>,
    clock: fn() -> DateTime<Utc>,
    stopped: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::pin!(stopped);
        loop {
            let s = store.clone();
            let pass = tokio::task::spawn_blocking(move || {
                s.prune_events(
                    clock(),
                    chrono::Duration::days(i64::from(config.retention_days)),
                    chrono::Duration::days(i64::from(config.max_retention_days)),
                    keep_from(&s),
                )
            })
            .await;
            match pass {
                Ok(Ok(r)) if r.removed > 0 => tracing::info!(
                    removed = r.removed,
                    oldest_left = ?r.oldest_left,
                    retention_days = config.retention_days,
                    "removed events older than the retention"
                ),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "the event retention pass failed"),
                Err(e) => tracing::warn!(error = %e, "the event retention pass stopped"),
            }
            tokio::select! {
                _ = &mut stopped => return,
                _ = tokio::time::sleep(EVENT_PRUNE_EVERY) => {}
            }
        }
    })
}
