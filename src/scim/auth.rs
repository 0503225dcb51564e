//! SCIM bearer tokens: `rtsc_<id>_<secret>`, the secret 256 bits from the OS, only its
//! SHA-256 stored and compared in constant time. This module only checks tokens; the
//! owner's token commands (create, list, revoke, disconnect) are in [`crate::tokens`].

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::{Store, TokenScope};

pub use crate::tokens::TOKEN_PREFIX;

/// `last used` is written at most this often per token.
const LAST_USED_EVERY: Duration = Duration::seconds(60);

/// Checks bearer tokens on each request, against an in-memory copy of the token records.
///
/// The copy is reloaded whenever a token is created or revoked through any handle of the
/// store (the admin socket, the CLI, [`crate::tokens::execute`]), so a revocation takes effect on the
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
    scope: TokenScope,
}

/// A request's token, once checked: its label (the audit actor) and what it opens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorized {
    /// The token's label.
    pub label: String,
    /// What it opens.
    pub scope: TokenScope,
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
            scope: TokenScope::Scim,
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
    ) -> Result<Authorized, Denied> {
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

    /// Checks an `Authorization` header value; returns the token's label and scope.
    pub fn check(
        &self,
        authorization: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Authorized, Denied> {
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
                let ok = Authorized {
                    label: r.label.clone(),
                    scope: r.scope,
                };
                drop(tokens);
                self.touch(id, now);
                Ok(ok)
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
                            scope: r.scope,
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
            // Off the async worker and never awaited: a full disk may hold the write, and it
            // must hold no request with it. A write past the deadline turns the store
            // read-only, as any other write does.
            let store = self.store.clone();
            let token_id = id.to_string();
            let write = async move {
                let result = store
                    .write_off_thread({
                        let token_id = token_id.clone();
                        move |s| s.set_token_last_used(&token_id, now)
                    })
                    .await;
                if let Err(e) = result {
                    tracing::warn!(error = %e, token_id = %token_id, "cannot record when a SCIM token was last used");
                }
            };
            match tokio::runtime::Handle::try_current() {
                Ok(h) => {
                    h.spawn(write);
                }
                // Outside a runtime (a unit test): write here.
                Err(_) => {
                    if let Err(e) = self.store.set_token_last_used(id, now) {
                        tracing::warn!(error = %e, token_id = %id, "cannot record when a SCIM token was last used");
                    }
                }
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
    use crate::tokens::{execute, TokenRequest};

    use crate::tokens::tests::create;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    /// A store with one token labelled "g": its authenticator, the token's id and the
    /// `Authorization` value that carries it.
    fn one_token() -> (tempfile::TempDir, Store, Authenticator, String, String) {
        let (d, store) = store();
        let auth = Authenticator::new(store.clone());
        let (id, token) = create(&store, "g");
        (d, store, auth, id, format!("Bearer {token}"))
    }

    /// `auth`'s answer to `Authorization: Bearer {token}`.
    fn bearer(auth: &Authenticator, token: &str, now: DateTime<Utc>) -> Result<String, Denied> {
        auth.check(Some(&format!("Bearer {token}")), now)
            .map(|a| a.label)
    }

    #[test]
    fn two_tokens_work_during_a_rotation_and_a_revoked_one_fails() {
        let (_d, store) = store();
        let auth = Authenticator::new(store.clone());
        let (old_id, old) = create(&store, "old");
        let (_, new) = create(&store, "new");
        let now = Utc::now();
        assert_eq!(bearer(&auth, &old, now), Ok("old".into()));
        assert_eq!(
            auth.check(Some(&format!("bearer {new}")), now)
                .map(|a| a.label),
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
            bearer(&auth, &old, now),
            Err(Denied {
                reason: AuthFailure::Revoked,
                token_id: Some(old_id)
            })
        );
        assert_eq!(bearer(&auth, &new, now), Ok("new".into()));
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
        assert_eq!(
            auth.check_headers(&headers, Utc::now()),
            Ok(Authorized {
                label: "g".into(),
                scope: TokenScope::Scim
            })
        );
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
        let (_d, store, auth, id, h) = one_token();
        let now = Utc::now();
        assert_eq!(
            auth.check(Some(&h), now),
            Ok(Authorized {
                label: "g".into(),
                scope: TokenScope::Scim
            })
        );
        // The copy in memory answers: damaging the stored record does not change the
        // answer until a token is written again.
        let key = [b"token:".as_slice(), id.as_bytes()].concat();
        let saved = store.replace_raw_token_record(&key, b"not json").unwrap();
        assert_eq!(
            auth.check(Some(&h), now),
            Ok(Authorized {
                label: "g".into(),
                scope: TokenScope::Scim
            })
        );
        store.replace_raw_token_record(&key, &saved);
        // A revocation straight through the store's token API, not through `execute`.
        store.revoke_token(&id, "owner", now).unwrap();
        assert_eq!(
            auth.check(Some(&h), now).unwrap_err().reason,
            AuthFailure::Revoked
        );
        // A token created by another handle of the store works on the next request.
        let other = Authenticator::new(store.clone());
        let (_, second) = create(&store, "second");
        assert_eq!(bearer(&auth, &second, now), Ok("second".into()));
        assert_eq!(bearer(&other, &second, now), Ok("second".into()));
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
        let (_d, store, auth, id, h) = one_token();
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
