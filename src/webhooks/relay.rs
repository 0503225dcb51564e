//! The relay: one task per enabled endpoint, delivering the outbox's events in `seq` order,
//! one at a time, each retried on the schedule of [`Retry`] until a 2xx (or the endpoint is
//! disabled). The supervisor ([`spawn`]) starts and stops the tasks as endpoints change.
//!
//! The cursor (`DeliveryState::cursor`) moves only after a 2xx, and is written without
//! waiting for a flush: after a crash an event may be delivered again, with the same
//! `webhook-id`, but none is skipped. An event is sent only once it is on disk (the relay
//! waits for the store's flush when one is pending), so no receiver hears of a change that a
//! crash could still undo.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::sync::watch;

use crate::store::DeliveryState;

use super::sign;
use crate::events::Event;
use crate::store::{DeliveryRecord, EndpointRecord, Store};

/// The HTTP client of the deliveries: keep-alive connections, http and https.
pub type WebhookClient =
    hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// At most this much of an answer's body is read.
pub const MAX_RESPONSE_READ: usize = 64 * 1024;
/// At most this much of it is kept in the delivery log.
pub const MAX_RESPONSE_KEPT: usize = 1024;
/// The longest `Retry-After` honoured (the schedule's longest wait).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(10 * 3600);
/// Events read from the outbox at a time.
const BATCH: usize = 256;
/// How often the gauges of an endpoint that waits are refreshed.
const GAUGE_EVERY: Duration = Duration::from_secs(15);

/// Builds the client: rustls with ring and the webpki roots, http/1.1, no redirects followed
/// (the legacy client never follows one: a 3xx is an answer like any other).
pub fn build_client() -> Result<WebhookClient, String> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector),
    )
}

/// The retry schedule and the timeout of one attempt.
#[derive(Clone, Debug)]
pub struct Retry {
    /// The wait after the first failed attempt, the second, ...; once every wait is used
    /// and the next attempt fails too, the endpoint is disabled.
    pub delays: Vec<Duration>,
    /// Each wait is moved by up to this fraction, either way (so that endpoints that
    /// failed together do not retry together).
    pub jitter: f64,
    /// How long one attempt may take (connect, send, answer, body).
    pub timeout: Duration,
}

impl Default for Retry {
    /// 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h, with 10 % jitter; 15 s an attempt.
    fn default() -> Self {
        let m = 60;
        let h = 3600;
        Retry {
            delays: [5, 5 * m, 30 * m, 2 * h, 5 * h, 10 * h, 10 * h]
                .map(Duration::from_secs)
                .to_vec(),
            jitter: 0.1,
            timeout: Duration::from_secs(15),
        }
    }
}

impl Retry {
    /// The wait after the `failures`-th failed attempt (1-based), `None` when the schedule
    /// is used up. A `Retry-After` replaces the scheduled wait (capped at
    /// [`MAX_RETRY_AFTER`]).
    pub fn wait(&self, failures: u32, retry_after: Option<Duration>) -> Option<Duration> {
        let base = *self.delays.get((failures as usize).checked_sub(1)?)?;
        if let Some(ra) = retry_after {
            return Some(ra.min(MAX_RETRY_AFTER));
        }
        let mut r = [0u8; 4];
        let unit = match getrandom::fill(&mut r) {
            Ok(()) => u32::from_le_bytes(r) as f64 / u32::MAX as f64,
            Err(_) => 0.5,
        };
        let factor = 1.0 + self.jitter * (2.0 * unit - 1.0);
        Some(base.mul_f64(factor.max(0.0)))
    }
}

/// A clock, injected so that tests control time.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// What the relay runs with.
#[derive(Clone)]
pub struct RelayOptions {
    /// The retry schedule.
    pub retry: Retry,
    /// The time (the rotation's 24 hours, the attempts' timestamps).
    pub clock: Clock,
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions {
            retry: Retry::default(),
            clock: Arc::new(Utc::now),
        }
    }
}

impl std::fmt::Debug for RelayOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayOptions")
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx.
    Delivered,
    /// A 410: the endpoint is disabled at once.
    Gone,
    /// Anything else: retried.
    Failed,
}

/// Every outcome, for the counter's zero series.
pub const OUTCOMES: [Outcome; 3] = [Outcome::Delivered, Outcome::Gone, Outcome::Failed];

impl Outcome {
    /// Its `outcome` label on `retrac_webhook_deliveries_total`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Gone => "gone",
            Outcome::Failed => "failed",
        }
    }
}

/// The answer to one attempt.
#[derive(Clone, Debug)]
pub struct Answer {
    /// How it ended.
    pub outcome: Outcome,
    /// The status, when an answer came.
    pub status: Option<u16>,
    /// `Retry-After` of a 429 or 503.
    pub retry_after: Option<Duration>,
    /// Why it failed.
    pub error: Option<String>,
    /// The first KiB of the body.
    pub body: String,
    /// How long it took.
    pub latency: Duration,
}

/// Sends `event` to `endpoint` once, signed at `now`.
pub async fn attempt(
    client: &WebhookClient,
    endpoint: &EndpointRecord,
    event: &Event,
    now: DateTime<Utc>,
    timeout: Duration,
) -> Answer {
    let started = Instant::now();
    let body = event.to_json();
    let timestamp = now.timestamp();
    let fail = |error: String, status: Option<u16>| Answer {
        outcome: Outcome::Failed,
        status,
        retry_after: None,
        error: Some(error),
        body: String::new(),
        latency: started.elapsed(),
    };
    let signature = match sign::signature_header(
        &sign::signing_secrets(endpoint, now),
        &event.id,
        timestamp,
        &body,
    ) {
        Ok(s) => s,
        Err(e) => return fail(e, None),
    };
    let request = http::Request::post(endpoint.url.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("retrac-sync/", env!("CARGO_PKG_VERSION")),
        )
        .header("webhook-id", event.id.as_str())
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(Full::new(Bytes::from(body)));
    let request = match request {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot build the request: {e}"), None),
    };
    let exchange = async {
        let response = client.request(request).await.map_err(|e| {
            // The client's error alone says "client error (Connect)"; its source says why.
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg = format!("{msg}: {s}");
                source = s.source();
            }
            msg
        })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, now));
        let mut body = response.into_body();
        let mut read = Vec::new();
        while read.len() < MAX_RESPONSE_READ {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        let room = MAX_RESPONSE_READ - read.len();
                        read.extend_from_slice(&data[..data.len().min(room)]);
                    }
                }
                // A body that breaks off after the status: the status still counts.
                Some(Err(_)) | None => break,
            }
        }
        Ok::<_, String>((status, retry_after, read))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Err(_) => fail(
            format!("no answer within {} s", timeout.as_secs_f64()),
            None,
        ),
        Ok(Err(e)) => fail(e, None),
        Ok(Ok((status, retry_after, read))) => {
            let kept = &read[..read.len().min(MAX_RESPONSE_KEPT)];
            let body = String::from_utf8_lossy(kept).into_owned();
            let code = status.as_u16();
            let (outcome, error) = if status.is_success() {
                (Outcome::Delivered, None)
            } else if code == 410 {
                (Outcome::Gone, Some("410 Gone".to_string()))
            } else if status.is_redirection() {
                (
                    Outcome::Failed,
                    Some(format!("{code}: redirects are not followed")),
                )
            } else {
                (Outcome::Failed, Some(format!("status {code}")))
            };
            Answer {
                outcome,
                status: Some(code),
                retry_after: if matches!(code, 429 | 503) {
                    retry_after
                } else {
                    None
                },
                error,
                body,
                latency: started.elapsed(),
            }
        }
    }
}

/// `Retry-After`: seconds, or an HTTP date (RFC 9110, section 10.2.3).
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = DateTime::parse_from_rfc2822(v).ok()?.with_timezone(&Utc);
    Some((when - now).to_std().unwrap_or(Duration::ZERO))
}

/// The delivery log's entry for an attempt.
pub fn record_of(event: &Event, attempt: u32, time: DateTime<Utc>, a: &Answer) -> DeliveryRecord {
    DeliveryRecord {
        time,
        event_id: event.id.clone(),
        seq: event.seq,
        event_type: event.event_type,
        attempt,
        status: a.status,
        latency_ms: a.latency.as_millis() as u64,
        error: a.error.clone(),
        response: a.body.clone(),
    }
}

/// Starts the relay: it runs until `stopped` resolves.
pub fn spawn(
    store: Store,
    options: RelayOptions,
    stopped: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    // Every endpoint's series from the start, so that a scrape right after start sees them.
    if let Ok(endpoints) = store.webhooks() {
        let now = (options.clock)();
        for ep in endpoints {
            metrics::gauge!("retrac_webhook_endpoint_enabled", "endpoint" => ep.id.clone())
                .set(if ep.enabled { 1.0 } else { 0.0 });
            match store.webhook_state(&ep.id) {
                Ok(st) if ep.enabled => set_gauges(&store, &ep.id, st.cursor, now),
                _ => clear_gauges(&ep.id),
            }
        }
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        let supervisor = supervise(store, options, stop_rx);
        tokio::select! {
            _ = stopped => {}
            _ = supervisor => {}
        }
        let _ = stop_tx.send(true);
    })
}

async fn supervise(store: Store, options: RelayOptions, stop: watch::Receiver<bool>) {
    let client = match build_client() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "the webhook relay cannot start");
            return;
        }
    };
    let mut tasks: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut changes = store.subscribe_webhooks();
    let mut known: Vec<String> = Vec::new();
    let mut stop_rx = stop.clone();
    loop {
        changes.borrow_and_update();
        tasks.retain(|_, t| !t.is_finished());
        match store.webhooks() {
            Ok(endpoints) => {
                for gone in known
                    .iter()
                    .filter(|k| !endpoints.iter().any(|e| &e.id == *k))
                {
                    clear_gauges(gone);
                }
                known = endpoints.iter().map(|e| e.id.clone()).collect();
                for ep in endpoints {
                    metrics::gauge!("retrac_webhook_endpoint_enabled", "endpoint" => ep.id.clone())
                        .set(if ep.enabled { 1.0 } else { 0.0 });
                    if !ep.enabled {
                        clear_gauges(&ep.id);
                        continue;
                    }
                    if tasks.contains_key(&ep.id) {
                        continue;
                    }
                    let task = endpoint_task(
                        store.clone(),
                        client.clone(),
                        options.clone(),
                        ep.id.clone(),
                        stop.clone(),
                    );
                    tasks.insert(ep.id, tokio::spawn(task));
                }
            }
            Err(e) => tracing::error!(error = %e, "the webhook relay cannot read its endpoints"),
        }
        // Also every second: a task that saw its endpoint disabled just before it was
        // enabled again has ended, and must be started again.
        tokio::select! {
            _ = changes.changed() => {}
            _ = stop_rx.wait_for(|s| *s) => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    for (_, t) in tasks {
        t.abort();
        let _ = t.await;
    }
}

fn clear_gauges(id: &str) {
    metrics::gauge!("retrac_webhook_backlog_events", "endpoint" => id.to_string()).set(0.0);
    metrics::gauge!("retrac_webhook_oldest_undelivered_seconds", "endpoint" => id.to_string())
        .set(0.0);
}

/// The backlog and age gauges of an endpoint whose cursor is `cursor`.
fn set_gauges(store: &Store, id: &str, cursor: u64, now: DateTime<Utc>) {
    let backlog = store.last_event_seq().saturating_sub(cursor);
    metrics::gauge!("retrac_webhook_backlog_events", "endpoint" => id.to_string())
        .set(backlog as f64);
    let age = match store.event_time_after(cursor) {
        Ok(Some(t)) => (now - t).num_milliseconds().max(0) as f64 / 1000.0,
        _ => 0.0,
    };
    metrics::gauge!("retrac_webhook_oldest_undelivered_seconds", "endpoint" => id.to_string())
        .set(age);
}

async fn endpoint_task(
    store: Store,
    client: WebhookClient,
    options: RelayOptions,
    id: String,
    mut stop: watch::Receiver<bool>,
) {
    let work = deliver_loop(&store, &client, &options, &id);
    tokio::select! {
        r = work => {
            if let Err(e) = r {
                tracing::error!(endpoint = %id, error = %e, "webhook delivery stopped on a store error");
            }
        }
        _ = stop.wait_for(|s| *s) => {}
    }
}

/// Disables an endpoint for `reason` (the relay's own decisions: a 410, retries used up,
/// events gone).
pub fn disable(
    store: &Store,
    id: &str,
    reason: String,
    now: DateTime<Utc>,
) -> Result<(), crate::store::StoreError> {
    let _lock = store.lock_webhooks();
    if let Some(mut ep) = store.webhook(id)? {
        tracing::warn!(endpoint = %id, url = %ep.url, reason = %reason, "webhook endpoint disabled");
        ep.enabled = false;
        ep.disabled_reason = Some(reason);
        ep.disabled_at = Some(now);
        store.put_webhook(&ep)?;
    }
    Ok(())
}

/// Writes the relay's `state` unless the owner changed where the endpoint stands since the
/// relay read it as `base` (a `replay`, an `enable`): then nothing is written, and the relay
/// starts again from what is stored. Under the store's webhook lock, like the owner's
/// commands.
fn commit_state(
    store: &Store,
    id: &str,
    base: &mut DeliveryState,
    state: &DeliveryState,
) -> Result<bool, crate::store::StoreError> {
    let _lock = store.lock_webhooks();
    let current = store.webhook_state(id)?;
    let stands = |s: &DeliveryState| (s.cursor, s.failures, s.next_attempt);
    if stands(&current) != stands(base) {
        return Ok(false);
    }
    let mut next = state.clone();
    next.log_next = next.log_next.max(current.log_next);
    store.put_webhook_state(id, &next)?;
    *base = next;
    Ok(true)
}

/// What the relay does after one delivery attempt.
enum AfterAttempt {
    /// Delivered: on to the next event.
    Next,
    /// Failed, to be retried at `next_attempt`: the loop waits.
    Wait,
    /// The owner changed the endpoint meanwhile: the loop reads it again.
    Reread,
    /// The endpoint is disabled, for this reason.
    Disable(String),
}

/// Delivers `event` once to `ep`, logs the attempt and stores the endpoint's new state
/// (unless the owner changed it since `base`): the cursor moves only after a 2xx.
async fn deliver_one(
    store: &Store,
    client: &WebhookClient,
    options: &RelayOptions,
    ep: &EndpointRecord,
    event: &Event,
    state: &mut DeliveryState,
    base: &mut DeliveryState,
) -> Result<AfterAttempt, crate::store::StoreError> {
    let id = ep.id.as_str();
    let clock = &options.clock;
    let attempt_no = state.failures + 1;
    let started = clock();
    let answer = attempt(client, ep, event, started, options.retry.timeout).await;
    metrics::counter!("retrac_webhook_deliveries_total", "outcome" => answer.outcome.as_str())
        .increment(1);
    {
        let _lock = store.lock_webhooks();
        // The log's counter as stored (a `webhook test` may have used one).
        state.log_next = state.log_next.max(store.webhook_state(id)?.log_next);
        store.log_delivery(id, state, &record_of(event, attempt_no, started, &answer))?;
    }
    match answer.outcome {
        Outcome::Delivered => {
            state.cursor = event.seq;
            state.failures = 0;
            state.next_attempt = None;
            if !commit_state(store, id, base, state)? {
                return Ok(AfterAttempt::Reread);
            }
            Ok(AfterAttempt::Next)
        }
        Outcome::Gone => {
            if !commit_state(store, id, base, state)? {
                return Ok(AfterAttempt::Reread);
            }
            let reason = format!(
                "the endpoint answered 410 Gone to event {} (seq {})",
                event.id, event.seq
            );
            Ok(AfterAttempt::Disable(reason))
        }
        Outcome::Failed => {
            state.failures = attempt_no;
            let error = answer.error.clone().unwrap_or_default();
            tracing::info!(endpoint = %id, seq = event.seq, attempt = attempt_no, error = %error, "webhook delivery failed");
            match options.retry.wait(attempt_no, answer.retry_after) {
                Some(wait) => {
                    state.next_attempt =
                        Some(clock() + chrono::Duration::from_std(wait).unwrap_or_default());
                    if !commit_state(store, id, base, state)? {
                        return Ok(AfterAttempt::Reread);
                    }
                    Ok(AfterAttempt::Wait)
                }
                None => {
                    state.next_attempt = None;
                    if !commit_state(store, id, base, state)? {
                        return Ok(AfterAttempt::Reread);
                    }
                    let reason = format!(
                        "gave up after {attempt_no} attempts at event {} (seq {}): {error}",
                        event.id, event.seq
                    );
                    Ok(AfterAttempt::Disable(reason))
                }
            }
        }
    }
}

async fn deliver_loop(
    store: &Store,
    client: &WebhookClient,
    options: &RelayOptions,
    id: &str,
) -> Result<(), crate::store::StoreError> {
    let mut events_rx = store.subscribe_events();
    let mut changes = store.subscribe_webhooks();
    let clock = &options.clock;
    'outer: loop {
        changes.borrow_and_update();
        let Some(ep) = store.webhook(id)? else {
            return Ok(());
        };
        if !ep.enabled {
            return Ok(());
        }
        let mut state = store.webhook_state(id)?;
        // What was read: a write below goes through only if the owner changed nothing since.
        let mut base = state.clone();
        let now = clock();
        set_gauges(store, id, state.cursor, now);
        if let Some(due) = state.next_attempt {
            if let Ok(wait) = (due - now).to_std() {
                if !wait.is_zero() {
                    tokio::select! {
                        _ = tokio::time::sleep(wait.min(GAUGE_EVERY)) => {}
                        _ = changes.changed() => {}
                    }
                    continue;
                }
            }
        }
        events_rx.borrow_and_update();
        let batch = store.events_after(state.cursor, BATCH)?;
        if batch.is_empty() {
            tokio::select! {
                _ = events_rx.changed() => {}
                _ = changes.changed() => {}
                _ = tokio::time::sleep(GAUGE_EVERY) => {}
            }
            continue;
        }
        // No delivery shows an event before it is on disk (a crash could otherwise lose a
        // change its consumer was told of): the same rule as the feed's answers.
        if store.flush_pending() {
            store.flush().await?;
        }
        let mut skipped = false;
        for event in batch {
            if event.seq != state.cursor + 1 {
                // Retention removed events this endpoint still needed (older than
                // `max_keep`): delivering the next ones would break the order's promise.
                let reason = format!(
                    "events {} to {} were removed from the outbox before they were delivered: the consumer must list the members again (GET /retrac/v1/members)",
                    state.cursor + 1,
                    event.seq - 1
                );
                if !commit_state(store, id, &mut base, &state)? {
                    continue 'outer;
                }
                return disable(store, id, reason, clock());
            }
            if !ep.events.matches(event.event_type) {
                state.cursor = event.seq;
                skipped = true;
                continue;
            }
            match deliver_one(store, client, options, &ep, &event, &mut state, &mut base).await? {
                AfterAttempt::Next => skipped = false,
                AfterAttempt::Wait => break,
                AfterAttempt::Reread => continue 'outer,
                AfterAttempt::Disable(reason) => return disable(store, id, reason, clock()),
            }
            if changes.has_changed().unwrap_or(true) {
                break;
            }
        }
        // Whether or not the owner changed the state meanwhile, the loop reads it again.
        if skipped {
            commit_state(store, id, &mut base, &state)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_is_the_documented_one_with_bounded_jitter() {
        let r = Retry::default();
        let expected = [5u64, 300, 1800, 7200, 18000, 36000, 36000];
        for (i, secs) in expected.iter().enumerate() {
            let w = r.wait(i as u32 + 1, None).unwrap().as_secs_f64();
            let s = *secs as f64;
            assert!(w >= s * 0.9 - 0.001 && w <= s * 1.1 + 0.001, "{i}: {w}");
        }
        assert_eq!(r.wait(8, None), None);
        assert_eq!(r.wait(0, None), None);
        // Retry-After replaces the scheduled wait, capped at the longest.
        assert_eq!(
            r.wait(1, Some(Duration::from_secs(120))),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            r.wait(1, Some(Duration::from_secs(10 * 86400))),
            Some(Duration::from_secs(36000))
        );
    }

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
