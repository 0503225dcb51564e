//! What the webhook relay keeps in the store, in the `webhooks` tree:
//!
//! - `ep:ID` -> the endpoint ([`EndpointRecord`], JSON): its URL, filter, secrets and
//!   whether it is enabled. Written by the owner's commands and by the relay when it
//!   disables an endpoint.
//! - `st:ID` -> where its deliveries stand ([`DeliveryState`], JSON): the last delivered
//!   `seq`, the failed attempts on the next event and when the next attempt is due. The
//!   relay writes it after each attempt, without waiting for a flush: a crash may deliver an
//!   event again (with the same `webhook-id`), never skip one, because the cursor moves
//!   only after the 2xx.
//! - `log:ID:N` (N big endian) -> one attempt ([`DeliveryRecord`], JSON); the last
//!   [`DELIVERY_LOG_KEEP`] per endpoint are kept.
//!
//! The endpoint's signing secret must be stored in clear (it signs); it is a
//! [`WebhookSecret`], whose `Debug` is redacted, and no listing shows it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};
use crate::events::{EventFilter, EventType};

/// How many attempts the delivery log keeps per endpoint.
pub const DELIVERY_LOG_KEEP: u64 = 1000;

const ENDPOINT_PREFIX: &[u8] = b"ep:";
const STATE_PREFIX: &[u8] = b"st:";

/// A webhook signing secret, `whsec_` + base64 of 32 random bytes. Redacted in `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WebhookSecret(pub String);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// A secret replaced by `webhook rotate`, still signing beside the new one until `until`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousSecret {
    /// The old secret.
    pub secret: WebhookSecret,
    /// When it stops signing.
    pub until: DateTime<Utc>,
}

/// A webhook endpoint as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    /// Its id (`wh_` + 16 hex digits).
    pub id: String,
    /// Where deliveries are POSTed.
    pub url: String,
    /// The owner's note.
    #[serde(default)]
    pub description: Option<String>,
    /// Which event types it receives (empty: all).
    #[serde(default)]
    pub events: EventFilter,
    /// Whether the relay delivers to it.
    pub enabled: bool,
    /// Why it was disabled (by the owner, a 410, retries exhausted).
    #[serde(default)]
    pub disabled_reason: Option<String>,
    /// When it was disabled.
    #[serde(default)]
    pub disabled_at: Option<DateTime<Utc>>,
    /// When it was added.
    pub created: DateTime<Utc>,
    /// The signing secret.
    pub secret: WebhookSecret,
    /// The secret before the last rotation, while it still signs.
    #[serde(default)]
    pub previous: Option<PreviousSecret>,
}

/// Where an endpoint's deliveries stand.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryState {
    /// The last `seq` delivered or skipped by the filter; the next event to deliver is the
    /// first one after it.
    pub cursor: u64,
    /// Failed attempts so far on the next event.
    pub failures: u32,
    /// When the next attempt is due (after a failure).
    #[serde(default)]
    pub next_attempt: Option<DateTime<Utc>>,
    /// The number the next delivery log entry gets.
    #[serde(default)]
    pub log_next: u64,
}

/// One delivery attempt, as `webhook deliveries` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// When the attempt started.
    pub time: DateTime<Utc>,
    /// The event's id (`webhook-id`).
    pub event_id: String,
    /// The event's `seq` (0 for `webhook.test`).
    pub seq: u64,
    /// The event's type.
    pub event_type: EventType,
    /// 1 for the first attempt at this event.
    pub attempt: u32,
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    /// How long the attempt took, in milliseconds.
    pub latency_ms: u64,
    /// Why it failed, when it did (no answer, a non-2xx status).
    pub error: Option<String>,
    /// The first KiB of the answer's body (lossy UTF-8).
    pub response: String,
}

fn key(prefix: &[u8], id: &str) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

fn log_prefix(id: &str) -> Vec<u8> {
    let mut k = b"log:".to_vec();
    k.extend_from_slice(id.as_bytes());
    k.push(b':');
    k
}

fn log_key(id: &str, n: u64) -> Vec<u8> {
    let mut k = log_prefix(id);
    k.extend_from_slice(&n.to_be_bytes());
    k
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, v: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(v).map_err(|e| StoreError::Corrupt(format!("webhook {what}: {e}")))
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Internal(e.to_string()))
}

impl Store {
    /// Adds or replaces an endpoint (and tells the relay).
    pub fn put_webhook(&self, record: &EndpointRecord) -> Result<(), StoreError> {
        self.check_space()?;
        self.io_checked(
            self.inner
                .webhooks
                .insert(key(ENDPOINT_PREFIX, &record.id), encode(record)?),
        )?;
        self.inner.webhook_changes.send_modify(|n| *n += 1);
        Ok(())
    }

    /// One endpoint by id.
    pub fn webhook(&self, id: &str) -> Result<Option<EndpointRecord>, StoreError> {
        match self.inner.webhooks.get(key(ENDPOINT_PREFIX, id))? {
            Some(v) => decode("endpoint", &v).map(Some),
            None => Ok(None),
        }
    }

    /// Every endpoint, in id order.
    pub fn webhooks(&self) -> Result<Vec<EndpointRecord>, StoreError> {
        self.inner
            .webhooks
            .scan_prefix(ENDPOINT_PREFIX)
            .map(|kv| decode("endpoint", &kv?.1))
            .collect()
    }

    /// Removes an endpoint, its state and its delivery log. Whether it existed.
    pub fn remove_webhook(&self, id: &str) -> Result<bool, StoreError> {
        let existed = self
            .io_checked(self.inner.webhooks.remove(key(ENDPOINT_PREFIX, id)))?
            .is_some();
        self.io_checked(self.inner.webhooks.remove(key(STATE_PREFIX, id)))?;
        let mut batch = sled::Batch::default();
        for kv in self.inner.webhooks.scan_prefix(log_prefix(id)) {
            batch.remove(kv?.0);
        }
        self.io_checked(self.inner.webhooks.apply_batch(batch))?;
        self.inner.webhook_changes.send_modify(|n| *n += 1);
        Ok(existed)
    }

    /// Where an endpoint's deliveries stand (the default, cursor 0, if never written).
    pub fn webhook_state(&self, id: &str) -> Result<DeliveryState, StoreError> {
        match self.inner.webhooks.get(key(STATE_PREFIX, id))? {
            Some(v) => decode("state", &v),
            None => Ok(DeliveryState::default()),
        }
    }

    /// Writes where an endpoint's deliveries stand. Not flushed: see the module's header.
    pub fn put_webhook_state(&self, id: &str, state: &DeliveryState) -> Result<(), StoreError> {
        self.io_checked(
            self.inner
                .webhooks
                .insert(key(STATE_PREFIX, id), encode(state)?),
        )?;
        Ok(())
    }

    /// Appends an attempt to the endpoint's delivery log as number `state.log_next` (which
    /// it advances; the caller writes the state), dropping the entry
    /// [`DELIVERY_LOG_KEEP`] before it.
    pub fn log_delivery(
        &self,
        id: &str,
        state: &mut DeliveryState,
        record: &DeliveryRecord,
    ) -> Result<(), StoreError> {
        let n = state.log_next;
        let mut batch = sled::Batch::default();
        batch.insert(log_key(id, n), encode(record)?);
        if n >= DELIVERY_LOG_KEEP {
            batch.remove(log_key(id, n - DELIVERY_LOG_KEEP));
        }
        self.io_checked(self.inner.webhooks.apply_batch(batch))?;
        state.log_next = n + 1;
        Ok(())
    }

    /// The last `limit` attempts of an endpoint, newest first.
    pub fn webhook_deliveries(
        &self,
        id: &str,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.inner
            .webhooks
            .scan_prefix(log_prefix(id))
            .rev()
            .take(limit)
            .map(|kv| decode("delivery", &kv?.1))
            .collect()
    }

    /// The lock every read-modify-write of an endpoint or its state holds (the owner's
    /// commands and the relay's writes), so that a `replay`, `enable` or `rotate` is never
    /// undone by a relay that read the record before it. Never held across an `await`.
    pub fn lock_webhooks(&self) -> std::sync::MutexGuard<'_, ()> {
        self.inner
            .webhook_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes on each change of an endpoint (added, removed, enabled, disabled, rotated).
    pub fn subscribe_webhooks(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.webhook_changes.subscribe()
    }
}
