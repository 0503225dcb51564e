//! SCIM bearer tokens: `rtsc_<id>_<secret>`, the secret 256 bits from the OS, only its
//! SHA-256 stored and compared in constant time. This module only checks tokens; the
//! owner's token commands (create, list, revoke, disconnect) are in [`crate::tokens`].

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::{Store, TokenRecord};

/// The prefix that makes a token recognisable (in secret scanners, in a config file).
pub const TOKEN_PREFIX: &str = "rtsc_";

/// `last used` is written at most this often per token.
const LAST_USED_EVERY: Duration = Duration::seconds(60);

/// The hex SHA-256 of a secret: what the store keeps of a token, and what a check compares.
pub(crate) fn sha256_hex(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks bearer tokens on each request.
pub struct Authenticator {
    store: Store,
    /// When `last used` was last written, per token id (coalescing).
    last_written: Mutex<HashMap<String, DateTime<Utc>>>,
    /// Compared against when a record cannot be read, so every path costs the same.
    dummy_hash: String,
    /// Decoded when the id is unknown, so both paths cost the same.
    dummy_record: Vec<u8>,
}

/// Why a request was not authenticated. The detail never holds the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization: Bearer` header.
    Missing,
    /// Not a token this server issued, or revoked.
    Invalid,
}

impl Authenticator {
    /// A checker over the store's tokens.
    pub fn new(store: Store) -> Self {
        let dummy_hash = sha256_hex("retrac-sync: no such token");
        let dummy_record = serde_json::to_vec(&TokenRecord {
            id: "0000000000000000".into(),
            label: "no such token".into(),
            created: DateTime::<Utc>::UNIX_EPOCH,
            revoked: None,
            secret_sha256: dummy_hash.clone(),
        })
        .unwrap_or_default();
        Authenticator {
            store,
            last_written: Mutex::new(HashMap::new()),
            dummy_hash,
            dummy_record,
        }
    }

    /// Checks an `Authorization` header value; returns the token's label.
    pub fn check(
        &self,
        authorization: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<String, AuthFailure> {
        let value = authorization.ok_or(AuthFailure::Missing)?.trim();
        let (scheme, token) = value.split_once(' ').ok_or(AuthFailure::Missing)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthFailure::Missing);
        }
        let token = token.trim();
        let rest = token
            .strip_prefix(TOKEN_PREFIX)
            .ok_or(AuthFailure::Invalid)?;
        let (id, secret) = rest.split_once('_').ok_or(AuthFailure::Invalid)?;
        if id.is_empty() || id.len() > 32 || secret.is_empty() || secret.len() > 128 {
            return Err(AuthFailure::Invalid);
        }
        let stored = self.store.token_bytes(id).map_err(|e| {
            tracing::error!(error = %e, "cannot read the SCIM tokens");
            AuthFailure::Invalid
        })?;
        // An unknown id goes through the same decode, hash and constant-time comparison
        // (against a dummy record), so the time taken does not tell whether the id exists.
        let known = stored.is_some();
        let bytes: &[u8] = stored.as_deref().unwrap_or(&self.dummy_record);
        let record: Option<TokenRecord> = serde_json::from_slice(bytes).ok();
        let presented = sha256_hex(secret);
        let expected = record
            .as_ref()
            .map(|r| r.secret_sha256.as_str())
            .unwrap_or(self.dummy_hash.as_str());
        let equal: bool = presented.as_bytes().ct_eq(expected.as_bytes()).into();
        let record = record.filter(|_| known);
        match record {
            Some(r) if equal && r.revoked.is_none() => {
                self.touch(&r.id, now);
                Ok(r.label)
            }
            _ => Err(AuthFailure::Invalid),
        }
    }

    /// Writes `last used` at most once a minute per token.
    fn touch(&self, id: &str, now: DateTime<Utc>) {
        let due = {
            let mut map = self.last_written.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(id) {
                Some(t) if now - *t < LAST_USED_EVERY => false,
                _ => {
                    map.insert(id.to_string(), now);
                    true
                }
            }
        };
        if due {
            if let Err(e) = self.store.set_token_last_used(id, now) {
                tracing::warn!(error = %e, token_id = id, "cannot record when a SCIM token was last used");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::{execute, TokenRequest};

    use crate::tokens::tests::create;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn two_tokens_work_during_a_rotation_and_a_revoked_one_fails() {
        let (_d, store) = store();
        let auth = Authenticator::new(store.clone());
        let (old_id, old) = create(&store, "old");
        let (_, new) = create(&store, "new");
        let now = Utc::now();
        assert_eq!(
            auth.check(Some(&format!("Bearer {old}")), now),
            Ok("old".into())
        );
        assert_eq!(
            auth.check(Some(&format!("bearer {new}")), now),
            Ok("new".into())
        );
        execute(&store, TokenRequest::Revoke { id: old_id }, None, now).unwrap();
        assert_eq!(
            auth.check(Some(&format!("Bearer {old}")), now),
            Err(AuthFailure::Invalid)
        );
        assert_eq!(
            auth.check(Some(&format!("Bearer {new}")), now),
            Ok("new".into())
        );
    }

    #[test]
    fn wrong_missing_and_malformed_tokens_fail() {
        let (_d, store) = store();
        let auth = Authenticator::new(store.clone());
        let (id, good) = create(&store, "g");
        let now = Utc::now();
        let tampered = format!("{}x", &good[..good.len() - 1]);
        for (header, want) in [
            (None, AuthFailure::Missing),
            (Some("Basic abc".to_string()), AuthFailure::Missing),
            (Some("Bearer".to_string()), AuthFailure::Missing),
            (Some(format!("Bearer {tampered}")), AuthFailure::Invalid),
            (Some(format!("Bearer rtsc_{id}")), AuthFailure::Invalid),
            (
                Some("Bearer rtsc_0000000000000000_abc".to_string()),
                AuthFailure::Invalid,
            ),
            (Some(good[5..].to_string()), AuthFailure::Missing),
        ] {
            assert_eq!(auth.check(header.as_deref(), now), Err(want), "{header:?}");
        }
    }

    #[test]
    fn last_used_is_written_at_most_once_a_minute() {
        let (_d, store) = store();
        let auth = Authenticator::new(store.clone());
        let (id, token) = create(&store, "g");
        let h = format!("Bearer {token}");
        let t0 = Utc::now();
        auth.check(Some(&h), t0).unwrap();
        assert_eq!(store.token_last_used(&id).unwrap(), Some(t0));
        auth.check(Some(&h), t0 + Duration::seconds(30)).unwrap();
        assert_eq!(store.token_last_used(&id).unwrap(), Some(t0));
        let t2 = t0 + Duration::seconds(61);
        auth.check(Some(&h), t2).unwrap();
        assert_eq!(store.token_last_used(&id).unwrap(), Some(t2));
    }
}
