//! Webhooks of the event outbox, after Standard Webhooks 1.0: the owner's commands
//! (`webhook add|list|remove|enable|disable|rotate|test|deliveries|replay`) as serde
//! requests executed like the token commands, the signatures ([`sign`]), and the relay that
//! delivers each endpoint's events in order with retries ([`relay`]).
//!
//! The endpoints live in the store's `webhooks` tree (`store/webhooks.rs`); the relay runs
//! in the daemon, and a command that changes an endpoint wakes it through the store
//! ([`Store::subscribe_webhooks`]). This module never writes the outbox.

pub mod relay;
pub mod sign;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::events::{Event, EventFilter, EventType};
use crate::store::{
    DeliveryRecord, DeliveryState, EndpointRecord, PreviousSecret, Store, StoreError, WebhookSecret,
};

/// How long a rotated-out secret keeps signing beside the new one.
pub const ROTATION_OVERLAP_HOURS: i64 = 24;
/// The longest URL accepted.
const MAX_URL: usize = 2048;
/// The longest description accepted, in characters.
const MAX_DESCRIPTION: usize = 200;

/// What went wrong with a webhook request.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
    /// No endpoint with that id.
    #[error("no webhook endpoint with id {0:?} (see `retrac-sync webhook list`)")]
    NotFound(String),
    /// The request cannot be done in the endpoint's state.
    #[error("{0}")]
    Conflict(String),
    /// Something failed around it (the random source, the HTTP client).
    #[error("{0}")]
    Failed(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An endpoint as `webhook list` shows it: never a secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointView {
    /// Its id.
    pub id: String,
    /// Where deliveries go.
    pub url: String,
    /// The owner's note.
    pub description: Option<String>,
    /// The event types it receives (empty: all).
    pub events: EventFilter,
    /// Whether the relay delivers to it.
    pub enabled: bool,
    /// Why it is disabled.
    pub disabled_reason: Option<String>,
    /// When it was disabled.
    pub disabled_at: Option<DateTime<Utc>>,
    /// When it was added.
    pub created: DateTime<Utc>,
    /// The last `seq` delivered (or skipped by its filter).
    pub delivered_through: u64,
    /// Failed attempts at the next event.
    pub failures: u32,
    /// When the next attempt is due, after a failure.
    pub next_attempt: Option<DateTime<Utc>>,
    /// Until when the secret before the last rotation still signs.
    pub previous_secret_until: Option<DateTime<Utc>>,
}

/// An owner's webhook request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum WebhookRequest {
    /// `webhook add URL [--events ...] [--description ...]`
    Add {
        /// Where to POST.
        url: String,
        /// Which types (empty: all).
        #[serde(default)]
        events: EventFilter,
        /// A note.
        #[serde(default)]
        description: Option<String>,
    },
    /// `webhook list`
    List,
    /// `webhook remove ID`
    Remove {
        /// The endpoint.
        id: String,
    },
    /// `webhook enable ID`
    Enable {
        /// The endpoint.
        id: String,
    },
    /// `webhook disable ID`
    Disable {
        /// The endpoint.
        id: String,
    },
    /// `webhook rotate ID`
    Rotate {
        /// The endpoint.
        id: String,
    },
    /// `webhook test ID`
    Test {
        /// The endpoint.
        id: String,
    },
    /// `webhook deliveries ID [--limit N]`
    Deliveries {
        /// The endpoint.
        id: String,
        /// How many, newest first.
        limit: usize,
    },
    /// `webhook replay ID --since TIME`
    Replay {
        /// The endpoint.
        id: String,
        /// Deliver again every kept event from this time on.
        since: DateTime<Utc>,
    },
}

/// The answer to a [`WebhookRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WebhookResponse {
    /// A new endpoint and its secret, shown this once.
    Added {
        /// The endpoint.
        endpoint: EndpointView,
        /// Its signing secret.
        secret: WebhookSecret,
    },
    /// Every endpoint.
    Endpoints {
        /// In id order.
        endpoints: Vec<EndpointView>,
    },
    /// An endpoint after a change (remove, enable, disable, replay).
    Endpoint {
        /// What was done: `removed`, `enabled`, `disabled`, `replayed`.
        action: String,
        /// The endpoint as it is now (as it was, for `removed`).
        endpoint: EndpointView,
        /// More to say (where a replay starts, where an enable resumes).
        note: Option<String>,
    },
    /// A new secret, shown this once; the old one signs beside it until `previous_until`.
    Rotated {
        /// The endpoint.
        endpoint: EndpointView,
        /// The new secret.
        secret: WebhookSecret,
        /// Until when the old one still signs.
        previous_until: DateTime<Utc>,
    },
    /// A `webhook.test` delivery's result.
    Tested {
        /// The endpoint.
        id: String,
        /// The attempt.
        delivery: DeliveryRecord,
    },
    /// The delivery log.
    Deliveries {
        /// The endpoint.
        id: String,
        /// Newest first.
        deliveries: Vec<DeliveryRecord>,
    },
}

fn view(store: &Store, r: &EndpointRecord) -> Result<EndpointView, StoreError> {
    let st = store.webhook_state(&r.id)?;
    Ok(EndpointView {
        id: r.id.clone(),
        url: r.url.clone(),
        description: r.description.clone(),
        events: r.events.clone(),
        enabled: r.enabled,
        disabled_reason: r.disabled_reason.clone(),
        disabled_at: r.disabled_at,
        created: r.created,
        delivered_through: st.cursor,
        failures: st.failures,
        next_attempt: st.next_attempt,
        previous_secret_until: r.previous.as_ref().map(|p| p.until),
    })
}

/// Checks an endpoint's URL: http or https, a host, no user name or password.
pub fn check_url(raw: &str) -> Result<url::Url, WebhookError> {
    let bad = |why: &str| WebhookError::Invalid(format!("webhook URL {raw:?}: {why}"));
    let raw_trimmed = raw.trim();
    if raw_trimmed.len() > MAX_URL {
        return Err(bad(&format!("longer than {MAX_URL} characters")));
    }
    let url = url::Url::parse(raw_trimmed).map_err(|e| bad(&format!("not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(&format!(
            "the scheme is {:?}; only http and https are allowed",
            url.scheme()
        )));
    }
    if url.host().is_none() {
        return Err(bad("it has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "it carries a user name or password; put no credentials in the URL (the signature authenticates each delivery)",
        ));
    }
    if url.fragment().is_some() {
        return Err(bad("it has a #fragment, which is never sent"));
    }
    Ok(url)
}

fn new_id() -> Result<String, WebhookError> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| WebhookError::Failed(format!("random source: {e}")))?;
    Ok(format!(
        "wh_{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    ))
}

fn endpoint(store: &Store, id: &str) -> Result<EndpointRecord, WebhookError> {
    let id = id.trim();
    store
        .webhook(id)?
        .ok_or_else(|| WebhookError::NotFound(id.to_string()))
}

/// The smallest first-undelivered `seq` over the enabled endpoints (`None`: no enabled
/// endpoint): the outbox's retention keeps every event from there on.
pub fn min_undelivered_seq(store: &Store) -> Result<Option<u64>, StoreError> {
    let mut min = None;
    for ep in store.webhooks()? {
        if ep.enabled {
            let next = store.webhook_state(&ep.id)?.cursor + 1;
            min = Some(min.map_or(next, |m: u64| m.min(next)));
        }
    }
    Ok(min)
}

/// The first kept event at or after `since` (events are numbered in commit order and stamped
/// with a time that grows with it, so a binary search on `seq` finds it).
fn first_seq_since(store: &Store, since: DateTime<Utc>) -> Result<Option<u64>, StoreError> {
    let Some(oldest) = store.oldest_event_seq()? else {
        return Ok(None);
    };
    let last = store.last_event_seq();
    let (mut lo, mut hi) = (oldest, last + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match store.event_time_after(mid - 1)? {
            Some(t) if t < since => lo = mid + 1,
            _ => hi = mid,
        }
    }
    Ok((lo <= last).then_some(lo))
}

/// Executes one webhook request at `now`. `test` sends one delivery (with `retry`'s timeout).
pub async fn execute(
    store: &Store,
    request: WebhookRequest,
    retry: &relay::Retry,
    now: DateTime<Utc>,
) -> Result<WebhookResponse, WebhookError> {
    match request {
        WebhookRequest::Add {
            url,
            events,
            description,
        } => add(store, &url, &events, description, now),
        WebhookRequest::List => {
            let endpoints = store
                .webhooks()?
                .iter()
                .map(|r| view(store, r))
                .collect::<Result<_, _>>()?;
            Ok(WebhookResponse::Endpoints { endpoints })
        }
        WebhookRequest::Remove { id } => {
            let _lock = store.lock_webhooks();
            let ep = endpoint(store, &id)?;
            let v = view(store, &ep)?;
            store.remove_webhook(&ep.id)?;
            Ok(WebhookResponse::Endpoint {
                action: "removed".into(),
                endpoint: v,
                note: None,
            })
        }
        WebhookRequest::Disable { id } => {
            let _lock = store.lock_webhooks();
            let mut ep = endpoint(store, &id)?;
            if ep.enabled {
                ep.enabled = false;
                ep.disabled_reason = Some("disabled by the owner".into());
                ep.disabled_at = Some(now);
                store.put_webhook(&ep)?;
            }
            Ok(WebhookResponse::Endpoint {
                action: "disabled".into(),
                endpoint: view(store, &ep)?,
                note: None,
            })
        }
        WebhookRequest::Enable { id } => enable(store, &id),
        WebhookRequest::Rotate { id } => {
            let _lock = store.lock_webhooks();
            let mut ep = endpoint(store, &id)?;
            let secret = sign::new_secret().map_err(WebhookError::Failed)?;
            let until = now + chrono::Duration::hours(ROTATION_OVERLAP_HOURS);
            ep.previous = Some(PreviousSecret {
                secret: std::mem::replace(&mut ep.secret, secret.clone()),
                until,
            });
            store.put_webhook(&ep)?;
            Ok(WebhookResponse::Rotated {
                endpoint: view(store, &ep)?,
                secret,
                previous_until: until,
            })
        }
        WebhookRequest::Test { id } => test(store, &id, retry, now).await,
        WebhookRequest::Deliveries { id, limit } => {
            let ep = endpoint(store, &id)?;
            Ok(WebhookResponse::Deliveries {
                deliveries: store.webhook_deliveries(&ep.id, limit)?,
                id: ep.id,
            })
        }
        WebhookRequest::Replay { id, since } => replay(store, &id, since),
    }
}

/// `webhook add`: a new endpoint with a new secret, starting after the last event committed
/// now.
fn add(
    store: &Store,
    url: &str,
    events: &EventFilter,
    description: Option<String>,
    now: DateTime<Utc>,
) -> Result<WebhookResponse, WebhookError> {
    let url = check_url(url)?;
    // Checked again here: the request may come over the socket from anywhere.
    let events = EventFilter::parse(&events.0.join(",")).map_err(WebhookError::Invalid)?;
    let description = description
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty());
    if let Some(d) = &description {
        if d.chars().count() > MAX_DESCRIPTION || d.chars().any(char::is_control) {
            return Err(WebhookError::Invalid(format!(
                "--description must be at most {MAX_DESCRIPTION} characters, without control characters"
            )));
        }
    }
    let secret = sign::new_secret().map_err(WebhookError::Failed)?;
    let record = EndpointRecord {
        id: new_id()?,
        url: url.to_string(),
        description,
        events,
        enabled: true,
        disabled_reason: None,
        disabled_at: None,
        created: now,
        secret: secret.clone(),
        previous: None,
    };
    // It starts after the last event committed now: no history (`replay` gives it).
    let state = DeliveryState {
        cursor: store.last_event_seq(),
        ..DeliveryState::default()
    };
    store.put_webhook_state(&record.id, &state)?;
    store.put_webhook(&record)?;
    Ok(WebhookResponse::Added {
        endpoint: view(store, &record)?,
        secret,
    })
}

/// `webhook enable`: resumes from the endpoint's cursor, unless its first undelivered event
/// is no longer kept.
fn enable(store: &Store, id: &str) -> Result<WebhookResponse, WebhookError> {
    let _lock = store.lock_webhooks();
    let mut ep = endpoint(store, id)?;
    let mut state = store.webhook_state(&ep.id)?;
    let next = state.cursor + 1;
    let last = store.last_event_seq();
    if next <= last {
        let oldest = store.oldest_event_seq()?;
        if oldest.is_none_or(|o| o > next) {
            return Err(WebhookError::Conflict(format!(
                "cannot enable {}: its first undelivered event (seq {next}) is no longer kept ({}). The consumer must list the members again (GET /retrac/v1/members); then `retrac-sync webhook replay {} --since TIME` sends what is kept from TIME on",
                ep.id,
                match oldest {
                    Some(o) => format!("the oldest kept is seq {o}"),
                    None => "no event is kept".into(),
                },
                ep.id
            )));
        }
    }
    state.failures = 0;
    state.next_attempt = None;
    store.put_webhook_state(&ep.id, &state)?;
    ep.enabled = true;
    ep.disabled_reason = None;
    ep.disabled_at = None;
    store.put_webhook(&ep)?;
    Ok(WebhookResponse::Endpoint {
        action: "enabled".into(),
        endpoint: view(store, &ep)?,
        note: Some(if next <= last {
            format!(
                "resumes from seq {next} ({} events after it)",
                last + 1 - next
            )
        } else {
            "nothing waits: it receives the next event".into()
        }),
    })
}

/// `webhook test`: one delivery of a test event, logged with the endpoint's deliveries.
async fn test(
    store: &Store,
    id: &str,
    retry: &relay::Retry,
    now: DateTime<Utc>,
) -> Result<WebhookResponse, WebhookError> {
    let ep = endpoint(store, id)?;
    let client = relay::build_client().map_err(WebhookError::Failed)?;
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|e| WebhookError::Failed(format!("random source: {e}")))?;
    let event = Event {
        id: format!(
            "evt_test_{}",
            nonce.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
        seq: 0,
        event_type: EventType::WebhookTest,
        timestamp: now,
        data: serde_json::json!({"endpoint": ep.id}),
    };
    let answer = relay::attempt(&client, &ep, &event, now, retry.timeout).await;
    metrics::counter!("retrac_webhook_deliveries_total", "outcome" => answer.outcome.as_str())
        .increment(1);
    let delivery = relay::record_of(&event, 1, now, &answer);
    {
        let _lock = store.lock_webhooks();
        let mut state = store.webhook_state(&ep.id)?;
        store.log_delivery(&ep.id, &mut state, &delivery)?;
        store.put_webhook_state(&ep.id, &state)?;
    }
    Ok(WebhookResponse::Tested {
        id: ep.id,
        delivery,
    })
}

/// `webhook replay`: moves the endpoint's cursor back to the first kept event at or after
/// `since`.
fn replay(store: &Store, id: &str, since: DateTime<Utc>) -> Result<WebhookResponse, WebhookError> {
    let _lock = store.lock_webhooks();
    let ep = endpoint(store, id)?;
    let Some(from) = first_seq_since(store, since)? else {
        return Err(WebhookError::Conflict(format!(
            "no kept event is at or after {since}: nothing to replay"
        )));
    };
    let oldest = store.oldest_event_seq()?.unwrap_or(from);
    let mut state = store.webhook_state(&ep.id)?;
    state.cursor = from - 1;
    state.failures = 0;
    state.next_attempt = None;
    store.put_webhook_state(&ep.id, &state)?;
    // Wakes the relay's task for it, which reads its new cursor.
    store.put_webhook(&ep)?;
    let mut note = format!(
        "delivers again from seq {from} through {} (then what follows)",
        store.last_event_seq()
    );
    if from == oldest {
        note.push_str(&format!(
            "; seq {oldest} is the oldest event kept: events before it are gone"
        ));
    }
    if !ep.enabled {
        note.push_str(&format!(
            "; the endpoint is disabled: `retrac-sync webhook enable {}` starts it",
            ep.id
        ));
    }
    Ok(WebhookResponse::Endpoint {
        action: "replayed".into(),
        endpoint: view(store, &ep)?,
        note: Some(note),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_http_or_https_without_credentials() {
        assert!(check_url("https://hooks.example.com/retrac").is_ok());
        assert!(check_url("http://127.0.0.1:9000/hook").is_ok());
        for (bad, why) in [
            ("ftp://example.com/x", "only http and https"),
            ("https://user:pw@example.com/", "user name or password"),
            ("https://user@example.com/", "user name or password"),
            ("not a url", "not a URL"),
            ("https://example.com/#x", "fragment"),
        ] {
            match check_url(bad) {
                Err(WebhookError::Invalid(m)) => assert!(m.contains(why), "{bad}: {m}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        // The message never repeats a password (only the URL as typed, which the owner
        // typed): here it is the user's own input, so it may; the log never sees it.
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    fn add(store: &Store) -> (String, WebhookSecret) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        match rt
            .block_on(execute(
                store,
                WebhookRequest::Add {
                    url: "http://127.0.0.1:9/hook".into(),
                    events: EventFilter::default(),
                    description: Some("test".into()),
                },
                &relay::Retry::default(),
                Utc::now(),
            ))
            .unwrap()
        {
            WebhookResponse::Added { endpoint, secret } => (endpoint.id, secret),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_listing_and_its_debug_never_show_a_secret() {
        let (_d, store) = store();
        let (id, secret) = add(&store);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let list = rt
            .block_on(execute(
                &store,
                WebhookRequest::List,
                &relay::Retry::default(),
                Utc::now(),
            ))
            .unwrap();
        let json = serde_json::to_string(&list).unwrap();
        let raw = &secret.0["whsec_".len()..];
        assert!(json.contains(&id));
        assert!(!json.contains(raw), "{json}");
        assert!(!format!("{list:?}").contains(raw));
        let added = WebhookResponse::Added {
            endpoint: match &list {
                WebhookResponse::Endpoints { endpoints } => endpoints[0].clone(),
                _ => unreachable!(),
            },
            secret: secret.clone(),
        };
        assert!(!format!("{added:?}").contains(raw));
        assert!(!format!("{:?}", store.webhook(&id).unwrap()).contains(raw));
        assert_eq!(min_undelivered_seq(&store).unwrap(), Some(1));
    }
}
