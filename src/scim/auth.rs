//! SCIM bearer tokens: `rtsc_<id>_<secret>`, the secret 256 bits from the OS, only its
//! SHA-256 stored and compared in constant time; and the owner's token requests
//! (create, list, revoke, disconnect) as serde types, like [`crate::owner`].

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

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

/// Checks bearer tokens on each request, against an in-memory copy of the token records.
///
/// The copy is reloaded whenever a token is created or revoked through any handle of the
/// store (the admin socket, the CLI, [`execute`]), so a revocation takes effect on the
/// next request without a store read and a JSON decode per request.
pub struct Authenticator {
    store: Store,
    tokens: RwLock<TokenCache>,
    /// When `last used` was last written, per token id (coalescing).
    last_written: Mutex<HashMap<String, DateTime<Utc>>>,
    /// Compared against when the id is unknown, so both paths cost the same.
    dummy: CachedToken,
}

#[derive(Default)]
struct TokenCache {
    /// The store's token generation this copy was loaded at; None before the first load.
    generation: Option<u64>,
    by_id: HashMap<String, CachedToken>,
}

#[derive(Clone)]
struct CachedToken {
    label: String,
    sha256: [u8; 32],
    revoked: bool,
}

/// Why a request was not authenticated: the `reason` label of
/// `retrac_scim_auth_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization` header.
    Missing,
    /// Not one `Authorization: Bearer rtsc_<id>_<secret>` header.
    Malformed,
    /// Not a token this server issued (an unknown id or a wrong secret).
    Unknown,
    /// A token this server issued, since revoked.
    Revoked,
}

impl AuthFailure {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Malformed => "malformed",
            AuthFailure::Unknown => "unknown",
            AuthFailure::Revoked => "revoked",
        }
    }
}

/// A refused request: why, and the token id that was tried (the public part, never the
/// secret), when the header held one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// Why.
    pub reason: AuthFailure,
    /// The id part of the token tried.
    pub token_id: Option<String>,
}

impl Denied {
    fn new(reason: AuthFailure) -> Self {
        Denied {
            reason,
            token_id: None,
        }
    }
}

/// The SHA-256 of a hex digest as bytes; a malformed digest gives None.
fn digest_bytes(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Authenticator {
    /// A checker over the store's tokens.
    pub fn new(store: Store) -> Self {
        let dummy = CachedToken {
            label: "no such token".into(),
            sha256: Sha256::digest(b"retrac-sync: no such token").into(),
            revoked: false,
        };
        Authenticator {
            store,
            tokens: RwLock::new(TokenCache::default()),
            last_written: Mutex::new(HashMap::new()),
            dummy,
        }
    }

    /// Checks a request's `Authorization` headers: exactly one is allowed.
    pub fn check_headers(
        &self,
        headers: &http::HeaderMap,
        now: DateTime<Utc>,
    ) -> Result<String, Denied> {
        let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
        let first = values.next();
        if values.next().is_some() {
            // Which one would count is ambiguous: refuse rather than pick one.
            return Err(Denied::new(AuthFailure::Malformed));
        }
        match first {
            None => Err(Denied::new(AuthFailure::Missing)),
            Some(v) => match v.to_str() {
                Ok(v) => self.check(Some(v), now),
                Err(_) => Err(Denied::new(AuthFailure::Malformed)),
            },
        }
    }

    /// Checks an `Authorization` header value; returns the token's label.
    pub fn check(&self, authorization: Option<&str>, now: DateTime<Utc>) -> Result<String, Denied> {
        let value = authorization
            .ok_or(Denied::new(AuthFailure::Missing))?
            .trim();
        let malformed = || Denied::new(AuthFailure::Malformed);
        let (scheme, token) = value.split_once(' ').ok_or_else(malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(malformed());
        }
        let rest = token
            .trim()
            .strip_prefix(TOKEN_PREFIX)
            .ok_or_else(malformed)?;
        let (id, secret) = rest.split_once('_').ok_or_else(malformed)?;
        // Ids are hex; anything else is not ours, and is not echoed into the log.
        if id.is_empty()
            || id.len() > 32
            || !id.bytes().all(|b| b.is_ascii_hexdigit())
            || secret.is_empty()
            || secret.len() > 128
        {
            return Err(malformed());
        }
        let denied = |reason| Denied {
            reason,
            token_id: Some(id.to_string()),
        };
        self.refresh();
        let tokens = self.tokens.read().unwrap_or_else(|p| p.into_inner());
        // An unknown id goes through the same hash and constant-time comparison (against a
        // dummy record), so the time taken does not tell whether the id exists.
        let found = tokens.by_id.get(id);
        let record = found.unwrap_or(&self.dummy);
        let presented: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let equal: bool = presented[..].ct_eq(&record.sha256[..]).into();
        match found {
            Some(r) if equal && !r.revoked => {
                let label = r.label.clone();
                drop(tokens);
                self.touch(id, now);
                Ok(label)
            }
            Some(r) if equal && r.revoked => Err(denied(AuthFailure::Revoked)),
            _ => Err(denied(AuthFailure::Unknown)),
        }
    }

    /// Reloads the copy of the token records if any token was written since it was made.
    fn refresh(&self) {
        let current = self.store.token_generation();
        if self
            .tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .generation
            == Some(current)
        {
            return;
        }
        // `current` was read before the records: a write racing this load bumps the
        // generation again, and the next request reloads.
        match self.store.tokens() {
            Ok(records) => {
                let mut by_id = HashMap::with_capacity(records.len());
                for r in records {
                    let Some(sha256) = digest_bytes(&r.secret_sha256) else {
                        tracing::error!(token_id = %r.id, "a stored SCIM token has a malformed hash; it cannot be used");
                        continue;
                    };
                    by_id.insert(
                        r.id.clone(),
                        CachedToken {
                            label: r.label,
                            sha256,
                            revoked: r.revoked.is_some(),
                        },
                    );
                }
                *self.tokens.write().unwrap_or_else(|p| p.into_inner()) = TokenCache {
                    generation: Some(current),
                    by_id,
                };
            }
            Err(e) => {
                // Keep failing closed: clear the copy, and try again on the next request.
                tracing::error!(error = %e, "cannot read the SCIM tokens");
                *self.tokens.write().unwrap_or_else(|p| p.into_inner()) = TokenCache::default();
            }
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

/// The log of refused requests: at most one line per second per client address, with the
/// number of refusals it left out since the last line.
pub struct FailureLog {
    by_client: Mutex<HashMap<Option<std::net::IpAddr>, LogWindow>>,
}

struct LogWindow {
    logged: std::time::Instant,
    suppressed: u64,
}

/// Addresses remembered at once; past it, windows older than a second are forgotten.
const FAILURE_LOG_CLIENTS: usize = 4096;

impl Default for FailureLog {
    fn default() -> Self {
        FailureLog {
            by_client: Mutex::new(HashMap::new()),
        }
    }
}

impl FailureLog {
    /// Counts a refusal in `retrac_scim_auth_failures_total{reason}` and logs it, unless
    /// this client had a line in the last second. Returns whether it logged.
    pub fn record(
        &self,
        client: Option<std::net::SocketAddr>,
        denied: &Denied,
        now: std::time::Instant,
    ) -> bool {
        metrics::counter!("retrac_scim_auth_failures_total", "reason" => denied.reason.as_str())
            .increment(1);
        let ip = client.map(|c| c.ip());
        let suppressed = {
            let mut map = self.by_client.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(w) = map.get_mut(&ip) {
                if now.duration_since(w.logged) < std::time::Duration::from_secs(1) {
                    w.suppressed += 1;
                    return false;
                }
                let s = w.suppressed;
                *w = LogWindow {
                    logged: now,
                    suppressed: 0,
                };
                s
            } else {
                if map.len() >= FAILURE_LOG_CLIENTS {
                    map.retain(|_, w| {
                        now.duration_since(w.logged) < std::time::Duration::from_secs(1)
                    });
                    if map.len() >= FAILURE_LOG_CLIENTS {
                        // A flood from many addresses: start over rather than grow.
                        map.clear();
                    }
                }
                map.insert(
                    ip,
                    LogWindow {
                        logged: now,
                        suppressed: 0,
                    },
                );
                0
            }
        };
        let client = client.map_or_else(|| "-".to_string(), |c| c.ip().to_string());
        tracing::warn!(
            client = %client,
            reason = denied.reason.as_str(),
            token_id = denied.token_id.as_deref().unwrap_or("-"),
            suppressed,
            status = 401,
            "SCIM authentication failed"
        );
        true
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
        execute(
            &store,
            TokenRequest::Revoke { id: old_id.clone() },
            None,
            now,
        )
        .unwrap();
        assert_eq!(
            auth.check(Some(&format!("Bearer {old}")), now),
            Err(Denied {
                reason: AuthFailure::Revoked,
                token_id: Some(old_id)
            })
        );
        assert_eq!(
            auth.check(Some(&format!("Bearer {new}")), now),
            Ok("new".into())
        );
    }

    #[test]
    fn wrong_missing_and_malformed_tokens_fail_with_their_reason() {
        let (_d, store) = store();
        let auth = Authenticator::new(store.clone());
        let (id, good) = create(&store, "g");
        let now = Utc::now();
        let tampered = format!("{}x", &good[..good.len() - 1]);
        let with_id = |reason, id: &str| Denied {
            reason,
            token_id: Some(id.to_string()),
        };
        for (header, want) in [
            (None, Denied::new(AuthFailure::Missing)),
            (
                Some("Basic abc".to_string()),
                Denied::new(AuthFailure::Malformed),
            ),
            (
                Some("Bearer".to_string()),
                Denied::new(AuthFailure::Malformed),
            ),
            (
                Some(format!("Bearer {tampered}")),
                with_id(AuthFailure::Unknown, &id),
            ),
            (
                Some(format!("Bearer rtsc_{id}")),
                Denied::new(AuthFailure::Malformed),
            ),
            (
                Some("Bearer rtsc_0000000000000000_abc".to_string()),
                with_id(AuthFailure::Unknown, "0000000000000000"),
            ),
            // An id that is not hex is not ours, and is not echoed into the log.
            (
                Some("Bearer rtsc_<script>_abc".to_string()),
                Denied::new(AuthFailure::Malformed),
            ),
            (
                Some(good[5..].to_string()),
                Denied::new(AuthFailure::Malformed),
            ),
        ] {
            assert_eq!(auth.check(header.as_deref(), now), Err(want), "{header:?}");
        }
    }

    #[test]
    fn two_authorization_headers_are_malformed_even_when_both_are_good() {
        let (_d, store) = store();
        let auth = Authenticator::new(store.clone());
        let (_, good) = create(&store, "g");
        let mut headers = http::HeaderMap::new();
        let value = http::HeaderValue::from_str(&format!("Bearer {good}")).unwrap();
        headers.append(http::header::AUTHORIZATION, value.clone());
        assert_eq!(auth.check_headers(&headers, Utc::now()), Ok("g".into()));
        headers.append(http::header::AUTHORIZATION, value);
        assert_eq!(
            auth.check_headers(&headers, Utc::now()),
            Err(Denied::new(AuthFailure::Malformed))
        );
        let mut latin1 = http::HeaderMap::new();
        latin1.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_bytes(b"Bearer \xe9").unwrap(),
        );
        assert_eq!(
            auth.check_headers(&latin1, Utc::now()),
            Err(Denied::new(AuthFailure::Malformed))
        );
    }

    #[test]
    fn tokens_are_checked_from_memory_and_a_revocation_through_the_store_counts_at_once() {
        let (_d, store) = store();
        let auth = Authenticator::new(store.clone());
        let (id, token) = create(&store, "g");
        let h = format!("Bearer {token}");
        let now = Utc::now();
        assert_eq!(auth.check(Some(&h), now), Ok("g".into()));
        // The copy in memory answers: damaging the stored record does not change the
        // answer until a token is written again.
        let key = [b"token:".as_slice(), id.as_bytes()].concat();
        let saved = store.tokens_tree().get(&key).unwrap().unwrap();
        store.tokens_tree().insert(&key, &b"not json"[..]).unwrap();
        assert_eq!(auth.check(Some(&h), now), Ok("g".into()));
        store.tokens_tree().insert(&key, saved).unwrap();
        // A revocation straight through the store's token API, not through `execute`.
        store.revoke_token(&id, now).unwrap();
        assert_eq!(
            auth.check(Some(&h), now).unwrap_err().reason,
            AuthFailure::Revoked
        );
        // A token created by another handle of the store works on the next request.
        let other = Authenticator::new(store.clone());
        let (_, second) = create(&store, "second");
        assert_eq!(
            auth.check(Some(&format!("Bearer {second}")), now),
            Ok("second".into())
        );
        assert_eq!(
            other.check(Some(&format!("Bearer {second}")), now),
            Ok("second".into())
        );
    }

    #[test]
    fn failures_are_logged_once_a_second_per_client_with_a_count_of_the_rest() {
        let log = FailureLog::default();
        let a: std::net::SocketAddr = "192.0.2.1:1000".parse().unwrap();
        let a2: std::net::SocketAddr = "192.0.2.1:2000".parse().unwrap();
        let b: std::net::SocketAddr = "192.0.2.2:1000".parse().unwrap();
        let d = Denied::new(AuthFailure::Missing);
        let t0 = std::time::Instant::now();
        assert!(log.record(Some(a), &d, t0));
        // Another connection from the same address shares the window.
        assert!(!log.record(Some(a2), &d, t0 + std::time::Duration::from_millis(10)));
        assert!(!log.record(Some(a), &d, t0 + std::time::Duration::from_millis(900)));
        assert!(log.record(Some(b), &d, t0 + std::time::Duration::from_millis(900)));
        assert!(log.record(Some(a), &d, t0 + std::time::Duration::from_millis(1001)));
        assert_eq!(
            log.by_client.lock().unwrap()[&Some(a.ip())].suppressed,
            0,
            "the count restarts after a line"
        );
        // Many addresses do not grow the map past its bound.
        for i in 0..(FAILURE_LOG_CLIENTS as u32 + 10) {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            log.record(Some((ip, 1).into()), &d, t0);
        }
        assert!(log.by_client.lock().unwrap().len() <= FAILURE_LOG_CLIENTS);
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
