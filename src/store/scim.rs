//! What the SCIM module keeps in the store: bearer tokens (hashes only) in the `tokens`
//! tree.
//!
//! A token's `last used` time lives under its own key, so the coalesced write from a
//! request can never race a revoke into un-revoking the token.

use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{NewEvent, Store, StoreError};
use crate::events::EventType;

const TOKEN_PREFIX: &[u8] = b"token:";

const USED_PREFIX: &[u8] = b"used:";

/// A stored SCIM token: never the secret, only its SHA-256.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The public id, the middle part of `rtsc_<id>_<secret>`.
    pub id: String,
    /// Who it is for (e.g. "google-workspace"); the audit actor.
    pub label: String,
    /// When it was made.
    pub created: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked: Option<DateTime<Utc>>,
    /// SHA-256 of the secret, lower-case hex.
    pub secret_sha256: String,
    /// What it may read: SCIM, or the event feed and the member listing.
    #[serde(default)]
    pub scope: TokenScope,
}

/// What a token opens: the SCIM endpoint, or the events feed and member listing
/// (`/retrac/v1/...`). Never both: a leaked SCIM token shows no locations or roles, and a
/// leaked events token writes nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenScope {
    /// The SCIM endpoint (the identity provider's token).
    #[default]
    Scim,
    /// `GET /retrac/v1/events` and `GET /retrac/v1/members`.
    Events,
}

impl TokenScope {
    /// Its name, as `--scope` takes it.
    pub const fn as_str(self) -> &'static str {
        match self {
            TokenScope::Scim => "scim",
            TokenScope::Events => "events",
        }
    }
}

impl std::fmt::Debug for TokenRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hash is not the secret, but it has no business in logs either.
        f.debug_struct("TokenRecord")
            .field("id", &self.id)
            .field("label", &self.label)
            .field("created", &self.created)
            .field("revoked", &self.revoked)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// A token event: the token's id, label, scope and times (never its hash).
fn token_event(
    t: EventType,
    r: &TokenRecord,
    actor: &str,
    time: DateTime<Utc>,
) -> NewEvent<'static> {
    NewEvent {
        event_type: t,
        time,
        actor: actor.to_string(),
        changed: Vec::new(),
        member: None,
        data: Some(serde_json::json!({"token": {
            "id": r.id,
            "label": r.label,
            "scope": r.scope,
            "created": r.created,
            "revoked": r.revoked,
        }})),
    }
}

fn key(prefix: &[u8], id: &str) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

impl Store {
    /// Stores a new token record, with its `token.created` event naming `actor` (`owner`, or
    /// `console:EMAIL`).
    pub fn put_token(&self, record: &TokenRecord, actor: &str) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.transact_side(&self.inner.tokens, |tx| {
            tx.tree
                .insert(key(TOKEN_PREFIX, &record.id), bytes.as_slice())?;
            tx.append_event(&token_event(
                EventType::TokenCreated,
                record,
                actor,
                record.created,
            ))
        })?;
        self.inner.token_writes.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// One token by id.
    pub fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        match self.inner.tokens.get(key(TOKEN_PREFIX, id))? {
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("token record: {e}"))),
            None => Ok(None),
        }
    }

    /// Changes whenever a token record is written through this store (every handle of the
    /// daemon's store shares it, and sled lets no other process write the store while the
    /// daemon runs); a copy of the records made when it had some value is current while it
    /// keeps that value.
    pub fn token_generation(&self) -> u64 {
        self.inner.token_writes.load(Ordering::Acquire)
    }

    /// Every token, in id order.
    pub fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let mut out = Vec::new();
        for kv in self.inner.tokens.scan_prefix(TOKEN_PREFIX) {
            let (_, v) = kv?;
            out.push(
                serde_json::from_slice(&v)
                    .map_err(|e| StoreError::Corrupt(format!("token record: {e}")))?,
            );
        }
        Ok(out)
    }

    /// Marks a token revoked (atomically, so concurrent revokes keep the first time), with
    /// its `token.revoked` event when it was not revoked before. Returns the record as it is
    /// now, or None for an unknown id.
    pub fn revoke_token(
        &self,
        id: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let k = key(TOKEN_PREFIX, id);
        let record = self.transact_side(&self.inner.tokens, |tx| {
            let Some(old) = tx.tree.get(&k)? else {
                return Ok(None);
            };
            let mut r: TokenRecord = serde_json::from_slice(&old)
                .map_err(|e| StoreError::Corrupt(format!("token record: {e}")))?;
            if r.revoked.is_none() {
                r.revoked = Some(now);
                let bytes =
                    serde_json::to_vec(&r).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                tx.tree.insert(k.as_slice(), bytes)?;
                tx.append_event(&token_event(EventType::TokenRevoked, &r, actor, now))?;
            }
            Ok(Some(r))
        })?;
        self.inner.token_writes.fetch_add(1, Ordering::Release);
        Ok(record)
    }

    /// Records when a token was last used.
    pub fn set_token_last_used(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.io_checked(
            self.inner
                .tokens
                .insert(key(USED_PREFIX, id), at.to_rfc3339().as_bytes()),
        )?;
        Ok(())
    }

    /// When a token was last used, if ever.
    pub fn token_last_used(&self, id: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self
            .inner
            .tokens
            .get(key(USED_PREFIX, id))?
            .and_then(|v| std::str::from_utf8(&v).ok().map(str::to_string))
            .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
            .map(|t| t.with_timezone(&Utc)))
    }
}
