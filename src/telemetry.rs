//! Logs (tracing, text or JSON lines) and metrics (Prometheus text from the `metrics` facade).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Sets up the global tracing subscriber: stderr, filtered by `[log].level`, in `[log].format`.
///
/// `RUST_LOG`, when set, wins over the config so an admin can turn up one module quickly.
/// Calling it twice keeps the first subscriber.
pub fn init_logging(log: &LogConfig) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_new(&log.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let _ = match log.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Seconds buckets for the latency and duration histograms.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
const SYNC_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// The process-wide Prometheus recorder, installed on first use.
///
/// The `metrics` facade has one global recorder, so every daemon in a process (tests run
/// several) shares it.
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("retrac_scim_request_duration_seconds".into()),
                LATENCY_BUCKETS,
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("retrac_sync_duration_seconds".into()),
                    SYNC_BUCKETS,
                )
            });
        let recorder = match builder {
            Ok(b) => b.build_recorder(),
            // Only an empty bucket list fails, and ours are constants.
            Err(_) => PrometheusBuilder::new().build_recorder(),
        };
        let handle = recorder.handle();
        // Fails only if another recorder was installed first; then ours stays private and
        // renders nothing, which the metrics test would catch.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "retrac_changes_total",
        "Member changes applied, by kind and source (push, pull, owner)"
    );
    describe_counter!(
        "retrac_scim_requests_total",
        "SCIM requests by method (GET, POST, PUT, PATCH, DELETE or other) and status"
    );
    describe_counter!(
        "retrac_scim_auth_failures_total",
        "SCIM requests refused with 401, by reason (missing, malformed, unknown, revoked)"
    );
    describe_histogram!(
        "retrac_scim_request_duration_seconds",
        Unit::Seconds,
        "SCIM request latency"
    );
    describe_counter!(
        "retrac_sync_runs_total",
        "Pull runs by status (ok, failed, held)"
    );
    describe_gauge!(
        "retrac_sync_last_success_timestamp_seconds",
        Unit::Seconds,
        "Unix time of the last successful pull"
    );
    describe_histogram!(
        "retrac_sync_duration_seconds",
        Unit::Seconds,
        "Pull run duration"
    );
    describe_counter!(
        "retrac_sync_drift_corrected_total",
        "Changes a pull applied that a push had missed, by kind"
    );
    describe_gauge!(
        "retrac_sync_held_changes",
        "Deactivations held for approval"
    );
    describe_gauge!("retrac_members", "Members by state (active, inactive)");
    describe_counter!(
        "retrac_google_requests_total",
        "Google API requests by endpoint and status"
    );
    describe_counter!(
        "retrac_google_retries_total",
        "Google API retries by reason"
    );
}
