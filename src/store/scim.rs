//! What the SCIM module keeps in the store: bearer tokens (hashes only) in the `tokens`
//! tree.
//!
//! A token's `last used` time lives under its own key, so the coalesced write from a
//! request can never race a revoke into un-revoking the token.

use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

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
}

impl std::fmt::Debug for TokenRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hash is not the secret, but it has no business in logs either.
        f.debug_struct("TokenRecord")
            .field("id", &self.id)
            .field("label", &self.label)
            .field("created", &self.created)
            .field("revoked", &self.revoked)
            .finish_non_exhaustive()
    }
}

fn key(prefix: &[u8], id: &str) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

impl Store {
    /// Stores a new token record.
    pub fn put_token(&self, record: &TokenRecord) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.io_checked(
            self.inner
                .tokens
                .insert(key(TOKEN_PREFIX, &record.id), bytes),
        )?;
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

    /// Marks a token revoked (atomically, so concurrent revokes keep the first time).
    /// Returns the record as it is now, or None for an unknown id.
    pub fn revoke_token(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let k = key(TOKEN_PREFIX, id);
        let mut corrupt = None;
        let updated = self.inner.tokens.update_and_fetch(&k, |old| {
            let old = old?;
            match serde_json::from_slice::<TokenRecord>(old) {
                Ok(mut r) => {
                    r.revoked.get_or_insert(now);
                    serde_json::to_vec(&r).ok()
                }
                Err(e) => {
                    corrupt = Some(e.to_string());
                    Some(old.to_vec())
                }
            }
        })?;
        self.inner.token_writes.fetch_add(1, Ordering::Release);
        if let Some(e) = corrupt {
            return Err(StoreError::Corrupt(format!("token record: {e}")));
        }
        match updated {
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("token record: {e}"))),
            None => Ok(None),
        }
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
