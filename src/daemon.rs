//! The daemon: one process serving SCIM, running the pull on its schedule, answering the
//! owner's CLI on the admin socket and exposing health and metrics, with systemd
//! notification and a graceful shutdown.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;

use crate::admin;
use crate::config::Config;
use crate::health::{self, Health, HealthState, LastSync};
use crate::reconcile::{SyncContext, SyncOutcome};
use crate::schedule;
use crate::store::{Store, StoreError};

/// How long shutdown waits for in-flight requests.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the daemon could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The store could not be opened (in use, newer schema, ...).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A listener could not be bound.
    #[error("cannot listen on {what} {addr}: {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// Where.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The admin socket could not be set up.
    #[error(transparent)]
    Admin(#[from] admin::server::BindError),
    /// Something else failed at start.
    #[error("{0}")]
    Start(String),
    /// A flush failed: the store turned read-only and the daemon stopped, so that systemd
    /// restarts it and the store recovers from its log.
    #[error("stopped because the store could not write to disk: {0}")]
    ReadOnly(String),
}

/// The listeners the daemon serves on, bound by the caller (tests bind port 0).
pub struct Listeners {
    /// The public SCIM listener.
    pub scim: TcpListener,
    /// The private health and metrics listener.
    pub metrics: TcpListener,
    /// The admin socket.
    pub admin: UnixListener,
    /// The admin socket's path, removed at shutdown.
    pub admin_path: PathBuf,
    /// The owner's console (`None`: turned off).
    pub console: Option<TcpListener>,
}

/// Binds every listener named in the config.
pub async fn bind(config: &Config) -> Result<Listeners, DaemonError> {
    let tcp = |what: &'static str, addr: String| async move {
        crate::listener::bind_tcp(&addr)
            .await
            .map_err(|source| DaemonError::Bind { what, addr, source })
    };
    Ok(Listeners {
        scim: tcp("the SCIM address", config.scim.listen.clone()).await?,
        metrics: tcp("the metrics address", config.metrics.listen.clone()).await?,
        admin: admin::server::bind(&config.admin.socket)?,
        admin_path: config.admin.socket.clone(),
        console: match config.console.enabled() {
            // The console is a convenience: a port taken by something else must not stop
            // the pull and SCIM, which offboarding depends on. It is logged, loudly.
            true => match tcp(
                "the console address",
                config.console.listen.trim().to_string(),
            )
            .await
            {
                Ok(l) => Some(l),
                Err(e) => {
                    tracing::error!(error = %e, "the console is off: its address cannot be bound (change [console].listen, or set it to \"\" to turn the console off)");
                    None
                }
            },
            false => None,
        },
    })
}

/// Runs the daemon on the given listeners until `shutdown` resolves, then stops cleanly:
/// stop accepting, drain requests (bounded), let a running sync finish its batch, flush.
pub async fn launch(
    config: Config,
    store: Store,
    listeners: Listeners,
    options: LaunchOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let _ = crate::telemetry::metrics();
    zero_series();
    store.set_min_free_bytes(config.store.min_free_bytes);
    let _ = store.free_bytes();
    let health = Arc::new(Health::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopping = stop_rx.clone();
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    let metrics_addr = listeners.metrics.local_addr().ok();
    let metrics_task = tokio::spawn(crate::listener::serve_http(
        listeners.metrics,
        None,
        health::router(HealthState {
            store: store.clone(),
            health: health.clone(),
        }),
        crate::listener::ConnLimits::metrics(),
        stopped(),
    ));

    let Pull {
        ctx: sync_ctx,
        on_sync,
        schedule,
    } = start_pull(&config, &store, &health, options.first_sync_delay).await?;

    let admin = admin_context(&config, &store, &sync_ctx, &on_sync, &options, stopping);
    let console_addr = listeners.console.as_ref().and_then(|l| l.local_addr().ok());
    let console_task = match listeners.console {
        Some(listener) => Some(spawn_console(&config, admin.clone(), listener, stopped())?),
        None => None,
    };
    let admin_task = tokio::spawn(admin::server::serve(listeners.admin, admin, stopped()));

    let scim_addr = listeners.scim.local_addr().ok();
    let tls = config.scim.tls_cert.is_some() && config.scim.tls_key.is_some();
    let scim_task = spawn_scim(&config, &store, listeners.scim, stopped())?;

    let audit_task = crate::store::spawn_audit_retention(
        store.clone(),
        config.audit.retention_days,
        chrono::Utc::now,
        stopped(),
    );

    // The webhook relay: one task per enabled endpoint, woken by each commit of events and
    // each change of an endpoint; it stops with the rest.
    let relay_task =
        crate::webhooks::relay::spawn(store.clone(), options.webhooks.clone(), stopped());

    let event_task = spawn_event_retention(&store, &config, stopped());

    tracing::info!(
        store = %config.store.path.display(),
        scim = %show_addr(scim_addr),
        scim_tls = tls,
        base_path = %config.scim.base_path,
        pull = sync_ctx.is_some(),
        schedule = %config.sync.schedule,
        metrics = %show_addr(metrics_addr),
        admin = %listeners.admin_path.display(),
        console = %console_addr.map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
        "retrac-sync is running"
    );
    notify_systemd(&[sd_notify::NotifyState::Ready]);
    let watchdog = spawn_watchdog(store.clone());

    let failed = until_shutdown(&store, shutdown).await;
    notify_systemd(&[sd_notify::NotifyState::Stopping]);
    let _ = stop_tx.send(true);
    let drain = async {
        let _ = scim_task.await;
        let _ = metrics_task.await;
        let _ = admin_task.await;
        let _ = relay_task.await;
        if let Some(c) = console_task {
            let _ = c.await;
        }
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
        tracing::warn!("some requests were still running after {DRAIN_TIMEOUT:?}; stopping anyway");
    }
    if let Some(schedule) = schedule {
        // Lets a running sync finish its current batch, then stops.
        schedule.shutdown().await;
    }
    if let Some(w) = watchdog {
        w.abort();
    }
    if let Some(a) = audit_task {
        // It stops at `stopped`; a pass in progress finishes its batch on its own thread.
        let _ = a.await;
    }
    let _ = event_task.await;
    let _ = std::fs::remove_file(&listeners.admin_path);
    if let Some(why) = failed {
        return Err(DaemonError::ReadOnly(why));
    }
    store.flush().await?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// The pull, where Google is configured: its context, the callback that records each run
/// for `/healthz`, and the schedule that starts it.
struct Pull {
    ctx: Option<Arc<SyncContext>>,
    on_sync: schedule::OnSync,
    schedule: Option<schedule::ScheduleHandle>,
}

/// Starts the pull's schedule (none without `[google].subject`).
async fn start_pull(
    config: &Config,
    store: &Store,
    health: &Arc<Health>,
    first_sync_delay: std::time::Duration,
) -> Result<Pull, DaemonError> {
    // The pull runs only where Google is configured; a push-only install needs no key.
    let sync_ctx = if config.google.subject.is_some() {
        Some(Arc::new(SyncContext::new(store.clone(), config.clone())))
    } else {
        tracing::warn!(
            "the pull is disabled: [google].subject is not set (push over SCIM still works)"
        );
        None
    };
    if let Some(ctx) = &sync_ctx {
        pull_gauges(store, Utc::now());
        let ctx = ctx.clone();
        health.set_overdue_probe(Arc::new(move || ctx.overdue()));
    }
    let on_sync: schedule::OnSync = {
        let health = health.clone();
        Arc::new(move |o: &SyncOutcome| record_sync(&health, o))
    };
    let schedule = match &sync_ctx {
        Some(ctx) => Some(
            schedule::start(
                &config.sync.schedule,
                Arc::new(schedule::SyncRunner {
                    ctx: ctx.clone(),
                    on_sync: Some(on_sync.clone()),
                }),
                first_sync_delay,
            )
            .await
            .map_err(|e| DaemonError::Start(e.to_string()))?,
        ),
        None => None,
    };
    Ok(Pull {
        ctx: sync_ctx,
        on_sync,
        schedule,
    })
}

/// Serves the owner's console (with TLS when `[console]` names a certificate) on
/// `listener` until `stopped`; its actions go through the admin context's `execute`.
fn spawn_console(
    config: &Config,
    admin: admin::server::AdminContext,
    listener: TcpListener,
    stopped: impl Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>, DaemonError> {
    let state = crate::console::ConsoleState::new(admin, &config.console, &config.google.domains)
        .map_err(DaemonError::Start)?;
    let tls = match (&config.console.tls_cert, &config.console.tls_key) {
        (Some(cert), Some(key)) => Some(
            crate::scim::tls::server_config(cert, key)
                .map_err(|e| DaemonError::Start(e.to_string()))?,
        ),
        _ => None,
    };
    Ok(tokio::spawn(crate::listener::serve_http(
        listener,
        tls,
        crate::console::router(state),
        crate::console::conn_limits(),
        stopped,
    )))
}

/// Serves SCIM (with TLS when `[scim]` names a certificate) on `listener` until `stopped`.
fn spawn_scim(
    config: &Config,
    store: &Store,
    listener: tokio::net::TcpListener,
    stopped: impl Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>, DaemonError> {
    let tls = match (&config.scim.tls_cert, &config.scim.tls_key) {
        (Some(cert), Some(key)) => Some(
            crate::scim::tls::server_config(cert, key)
                .map_err(|e| DaemonError::Start(e.to_string()))?,
        ),
        _ => None,
    };
    let scim_state = crate::scim::ScimState::new(store.clone(), &config.scim)?
        .with_domains(config.scim_domains());
    let scim_task = tokio::spawn(crate::scim::serve(
        listener,
        tls,
        // The size limits of [scim] reach the handlers as an extension (scim::schema::Limits).
        crate::scim::router(scim_state).layer(axum::Extension(
            crate::scim::schema::Limits::from_config(&config.scim),
        )),
        crate::scim::conn_limits(&config.scim),
        stopped,
    ));
    Ok(scim_task)
}

/// What the admin socket serves with: the store, the SCIM URL it prints, the pull.
fn admin_context(
    config: &Config,
    store: &Store,
    sync: &Option<Arc<SyncContext>>,
    on_sync: &schedule::OnSync,
    options: &LaunchOptions,
    stopping: watch::Receiver<bool>,
) -> admin::server::AdminContext {
    admin::server::AdminContext {
        store: store.clone(),
        console_url: config.console.enabled().then(|| config.console.url()),
        scim_url: config
            .scim
            .public_url
            .as_deref()
            .map(|u| crate::scim::scim_base_url(u, &config.scim.base_path)),
        sync: sync.clone(),
        on_sync: Some(on_sync.clone()),
        progress: None,
        webhook_retry: options.webhooks.retry.clone(),
        stopping: Some(stopping),
    }
}

/// Starts the outbox's retention, which keeps what an enabled webhook endpoint still
/// waits for.
fn spawn_event_retention(
    store: &Store,
    config: &Config,
    stopped: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    crate::store::spawn_event_retention(
        store.clone(),
        config.events.clone(),
        // An error reading the endpoints keeps everything this pass (none is older than
        // `max_retention_days` past which nothing is kept anyway): never prune blind.
        |s| crate::webhooks::min_undelivered_seq(s).unwrap_or(Some(0)),
        chrono::Utc::now,
        stopped,
    )
}

/// Waits for `shutdown`, or for a failed flush (the store is read-only: the daemon stops so
/// that the service restarts); returns why the store failed, if it did.
async fn until_shutdown(store: &Store, shutdown: impl Future<Output = ()>) -> Option<String> {
    let failed = tokio::select! {
        _ = shutdown => None,
        why = store.flush_failed() => Some(why),
    };
    match &failed {
        None => tracing::info!("shutting down: no new requests, draining those in flight"),
        Some(why) => tracing::error!(
            error = %why,
            "a flush failed: the store is read-only; stopping so that the service restarts and recovers from the store's log"
        ),
    }
    failed
}

fn show_addr(a: Option<std::net::SocketAddr>) -> String {
    a.map(|a| a.to_string()).unwrap_or_else(|| "?".into())
}

/// `retrac-sync run`: opens the store, binds from the config, runs until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<(), DaemonError> {
    let store = Store::open(&config.store.path)?;
    let listeners = bind(&config).await?;
    let kept = store.clone();
    let result = launch(
        config,
        store,
        listeners,
        LaunchOptions::default(),
        shutdown_signal(),
    )
    .await;
    if matches!(result, Err(DaemonError::ReadOnly(_))) {
        // sled flushes when its last handle is dropped, which on a full or failing disk can
        // wait for ever: the process keeps this handle and exits without that flush (a
        // restart recovers from the store's log).
        std::mem::forget(kept);
    }
    result
}

/// Knobs the daemon's callers (tests, the demo) may turn.
#[derive(Clone, Debug)]
pub struct LaunchOptions {
    /// How long after start the first pull comes.
    pub first_sync_delay: Duration,
    /// The webhook relay's retry schedule and clock (tests shorten the schedule).
    pub webhooks: crate::webhooks::relay::RelayOptions,
}

impl Default for LaunchOptions {
    fn default() -> Self {
        LaunchOptions {
            first_sync_delay: schedule::FIRST_RUN_DELAY,
            webhooks: Default::default(),
        }
    }
}

/// Records a finished pull in health and in systemd's STATUS=. A dry run, which is not
/// recorded, is not a pull that health counts.
fn record_sync(health: &Health, o: &SyncOutcome) {
    let r = &o.report;
    let Some(run_id) = &r.run_id else {
        return;
    };
    health.record_sync(LastSync {
        run_id: run_id.clone(),
        status: r.status,
        finished: chrono::Utc::now(),
        error: o.error.clone(),
    });
    let status = format!(
        "last sync {} ({}): {} created, {} updated, {} deactivated, {} held, {} errors",
        r.status,
        run_id,
        r.counts.created,
        r.counts.updated,
        r.counts.deactivated,
        r.counts.held,
        r.counts.errors
    );
    notify_systemd(&[sd_notify::NotifyState::Status(&status)]);
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("SIGINT received"),
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Tells systemd about our state; a no-op outside systemd.
pub fn notify_systemd(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// Pings the systemd watchdog at half its interval, when `WatchdogSec=` is set.
/// Pings systemd's watchdog at half its interval, each time only after a no-op has gone
/// through the store's writer path ([`Store::writer_alive`]) and this task has run: a daemon
/// whose store or runtime cannot make progress stops pinging, and systemd restarts it. A
/// plain timer would keep a stuck daemon alive.
fn spawn_watchdog(store: Store) -> Option<tokio::task::JoinHandle<()>> {
    let mut usec = 0u64;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return None;
    }
    let every = Duration::from_micros(usec / 2);
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            match store.writer_alive().await {
                Ok(()) => notify_systemd(&[sd_notify::NotifyState::Watchdog]),
                Err(e) => {
                    tracing::error!(error = %e, "the store's writer makes no progress: not pinging the watchdog");
                }
            }
        }
    }))
}

/// Every counter whose label values are known in advance, at 0 from the start, and the
/// histograms registered, so that a fresh daemon's `/metrics` already holds every series the
/// alert rules and the dashboard query (Prometheus instrumentation practice: "avoid missing
/// metrics"; a `rate()` or an alert over a series that does not exist yet says nothing).
/// Counters whose labels come from outside (Google's retry reasons) start with the values
/// known here.
pub fn zero_series() {
    use metrics::{counter, histogram};
    for reason in ["missing", "malformed", "unknown", "revoked"] {
        counter!("retrac_scim_auth_failures_total", "reason" => reason).increment(0);
    }
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "other"] {
        for status in crate::scim::STATUS_LABELS {
            counter!("retrac_scim_requests_total", "method" => method, "status" => *status)
                .increment(0);
        }
        let _ = histogram!("retrac_scim_request_duration_seconds", "method" => method);
    }
    counter!("retrac_scim_body_budget_refusals_total").increment(0);
    for source in ["push", "pull", "owner"] {
        for kind in crate::member::ChangeKind::ALL {
            counter!("retrac_changes_total", "kind" => kind.as_str(), "source" => source)
                .increment(0);
        }
    }
    for t in crate::events::EventType::ALL {
        if t != crate::events::EventType::WebhookTest {
            counter!("retrac_events_total", "type" => t.as_str()).increment(0);
        }
    }
    for status in ["ok", "held", "failed"] {
        counter!("retrac_sync_runs_total", "status" => status).increment(0);
    }
    let _ = histogram!("retrac_sync_duration_seconds");
    for kind in ["create", "link", "update", "deactivate"] {
        counter!("retrac_sync_drift_corrected_total", "kind" => kind).increment(0);
    }
    for endpoint in ["users.list", "members.list", "users.get"] {
        counter!("retrac_google_requests_total", "endpoint" => endpoint, "status" => "200")
            .increment(0);
    }
    counter!("retrac_google_retries_total", "reason" => "unauthorized").increment(0);
    for outcome in crate::webhooks::relay::OUTCOMES {
        counter!("retrac_webhook_deliveries_total", "outcome" => outcome.as_str()).increment(0);
    }
}

/// The pull's gauges from the store, at start: the held deactivations, and the time of the
/// last successful run, or the daemon's start when the store has none (so that the alert on
/// a pull that does not succeed also fires for one that never has, 30 minutes after start).
/// Only where the pull is configured: a push-only daemon has no pull to be late.
fn pull_gauges(store: &Store, now: chrono::DateTime<Utc>) {
    let held: usize = store
        .held_all()
        .map(|all| all.iter().map(|h| h.changes.len()).sum())
        .unwrap_or(0);
    metrics::gauge!("retrac_sync_held_changes").set(held as f64);
    let last_success = store
        .sync_runs(1000)
        .ok()
        .and_then(|runs| {
            runs.iter()
                .filter(|r| r.status != crate::store::RunStatus::Failed)
                .map(|r| r.finished)
                .max()
        })
        .unwrap_or(now);
    metrics::gauge!("retrac_sync_last_success_timestamp_seconds")
        .set(last_success.timestamp() as f64);
}
