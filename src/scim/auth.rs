//! SCIM bearer tokens: `rtsc_<id>_<secret>`, the secret 256 bits from the OS, only its
//! SHA-256 stored and compared in constant time; and the owner's token requests
//! (create, list, revoke, disconnect) as serde types, like [`crate::owner`].

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::{Store, StoreError, TokenRecord};

/// The prefix that makes a token recognisable (in secret scanners, in a config file).
pub const TOKEN_PREFIX: &str = "rtsc_";

/// `last used` is written at most this often per token.
const LAST_USED_EVERY: Duration = Duration::seconds(60);

/// A whole token, shown once at creation. Its `Debug` is redacted.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretToken(pub String);

impl std::fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretToken(<redacted>)")
    }
}

/// What went wrong with a token request.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
    /// No token with that id.
    #[error("no token with id {0:?} (see `retrac-sync token list`)")]
    NotFound(String),
    /// The OS random source failed.
    #[error("cannot read the operating system's random source: {0}")]
    Random(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A token as `token list` shows it: never the secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    /// The public id.
    pub id: String,
    /// Its label.
    pub label: String,
    /// When it was made.
    pub created: DateTime<Utc>,
    /// When it was last used (coalesced to the minute).
    pub last_used: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked: Option<DateTime<Utc>>,
}

/// An owner's token request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum TokenRequest {
    /// `token create --label L`
    Create {
        /// Who the token is for.
        label: String,
    },
    /// `token list`
    List,
    /// `token revoke ID`
    Revoke {
        /// The token id.
        id: String,
    },
    /// `scim disconnect`: revoke every token.
    Disconnect,
}

/// The answer to a [`TokenRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TokenResponse {
    /// A new token, shown this once.
    Created {
        /// The token's record.
        token: TokenView,
        /// The bearer token to give the SCIM client.
        secret: SecretToken,
        /// The SCIM base URL from `[scim].public_url`, when set.
        scim_url: Option<String>,
    },
    /// Every token.
    Tokens {
        /// Oldest first.
        tokens: Vec<TokenView>,
    },
    /// A revoked token.
    Revoked {
        /// As it is now.
        token: TokenView,
        /// Whether it was already revoked before.
        already: bool,
    },
    /// Every token revoked.
    Disconnected {
        /// How many tokens this revoked (already revoked ones are not counted).
        revoked: usize,
        /// Members still active: SCIM will not deactivate them any more.
        active_members: usize,
    },
}

fn random_bytes<const N: usize>() -> Result<[u8; N], TokenError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| TokenError::Random(e.to_string()))?;
    Ok(buf)
}

fn sha256_hex(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn view(store: &Store, r: &TokenRecord) -> Result<TokenView, StoreError> {
    Ok(TokenView {
        id: r.id.clone(),
        label: r.label.clone(),
        created: r.created,
        last_used: store.token_last_used(&r.id)?,
        revoked: r.revoked,
    })
}

/// Executes one token request. `scim_url` is printed with a new token.
pub fn execute(
    store: &Store,
    request: TokenRequest,
    scim_url: Option<&str>,
    now: DateTime<Utc>,
) -> Result<TokenResponse, TokenError> {
    match request {
        TokenRequest::Create { label } => {
            let label = label.trim().to_string();
            if label.is_empty() {
                return Err(TokenError::Invalid("--label must not be empty".into()));
            }
            if label.chars().count() > 64 || label.chars().any(char::is_control) {
                return Err(TokenError::Invalid(
                    "--label must be at most 64 characters, without control characters".into(),
                ));
            }
            let id: String = random_bytes::<8>()?
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            // 32 bytes = 256 bits from the OS; base64url has no '_'-free guarantee, but the
            // id (hex) never holds '_', so the first '_' after the id ends it.
            let secret =
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>()?);
            let record = TokenRecord {
                id: id.clone(),
                label,
                created: now,
                revoked: None,
                secret_sha256: sha256_hex(&secret),
            };
            store.put_token(&record)?;
            Ok(TokenResponse::Created {
                token: view(store, &record)?,
                secret: SecretToken(format!("{TOKEN_PREFIX}{id}_{secret}")),
                scim_url: scim_url.map(str::to_string),
            })
        }
        TokenRequest::List => {
            let mut records = store.tokens()?;
            records.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
            let tokens = records
                .iter()
                .map(|r| view(store, r))
                .collect::<Result<_, _>>()?;
            Ok(TokenResponse::Tokens { tokens })
        }
        TokenRequest::Revoke { id } => {
            let id = id.trim().trim_start_matches(TOKEN_PREFIX).to_string();
            // Someone may paste the whole token: revoke by its id part.
            let id = id.split('_').next().unwrap_or_default().to_string();
            let before = store
                .token(&id)?
                .ok_or_else(|| TokenError::NotFound(id.clone()))?;
            let after = store
                .revoke_token(&id, now)?
                .ok_or_else(|| TokenError::NotFound(id.clone()))?;
            Ok(TokenResponse::Revoked {
                token: view(store, &after)?,
                already: before.revoked.is_some(),
            })
        }
        TokenRequest::Disconnect => {
            let mut revoked = 0;
            for r in store.tokens()? {
                if r.revoked.is_none() {
                    store.revoke_token(&r.id, now)?;
                    revoked += 1;
                }
            }
            let mut active_members = 0;
            for m in store.members_by_id() {
                let m = m?;
                if m.active && !m.scim_deleted {
                    active_members += 1;
                }
            }
            Ok(TokenResponse::Disconnected {
                revoked,
                active_members,
            })
        }
    }
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

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    fn create(store: &Store, label: &str) -> (String, String) {
        match execute(
            store,
            TokenRequest::Create {
                label: label.into(),
            },
            None,
            Utc::now(),
        )
        .unwrap()
        {
            TokenResponse::Created { token, secret, .. } => (token.id, secret.0),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_token_has_the_prefix_an_id_and_256_bits_and_only_its_hash_is_stored() {
        let (_d, store) = store();
        let (id, token) = create(&store, "google");
        assert!(token.starts_with(&format!("rtsc_{id}_")));
        let secret = token.rsplit_once(&format!("{id}_")).unwrap().1;
        // 32 bytes in unpadded base64 = 43 characters.
        assert_eq!(secret.len(), 43);
        let record = store.token(&id).unwrap().unwrap();
        assert_eq!(record.secret_sha256, sha256_hex(secret));
        let raw: Vec<u8> = store
            .tokens_tree()
            .iter()
            .flat_map(|kv| kv.unwrap().1.to_vec())
            .collect();
        assert!(!String::from_utf8_lossy(&raw).contains(secret));
        assert!(!format!("{record:?}").contains(&record.secret_sha256));
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

    #[test]
    fn disconnect_revokes_every_token_and_counts_active_members() {
        let (_d, store) = store();
        create(&store, "a");
        create(&store, "b");
        let now = Utc::now();
        match execute(&store, TokenRequest::Disconnect, None, now).unwrap() {
            TokenResponse::Disconnected {
                revoked,
                active_members,
            } => {
                assert_eq!(revoked, 2);
                assert_eq!(active_members, 0);
            }
            other => panic!("{other:?}"),
        }
        assert!(store.tokens().unwrap().iter().all(|t| t.revoked.is_some()));
        assert!(matches!(
            execute(
                &store,
                TokenRequest::Revoke { id: "nope".into() },
                None,
                now
            ),
            Err(TokenError::NotFound(_))
        ));
        assert!(matches!(
            execute(
                &store,
                TokenRequest::Create { label: " ".into() },
                None,
                now
            ),
            Err(TokenError::Invalid(_))
        ));
    }

    #[test]
    fn the_secret_never_shows_in_debug_output() {
        let s = SecretToken("rtsc_abc_supersecret".into());
        assert!(!format!("{s:?}").contains("supersecret"));
        let resp = TokenResponse::Created {
            token: TokenView {
                id: "abc".into(),
                label: "l".into(),
                created: Utc::now(),
                last_used: None,
                revoked: None,
            },
            secret: s,
            scim_url: None,
        };
        assert!(!format!("{resp:?}").contains("supersecret"));
    }
}
