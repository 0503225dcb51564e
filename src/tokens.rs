//! The owner's token commands (create, list, revoke, disconnect) as serde requests, like
//! [`crate::owner`]: they run locally or through the daemon's admin socket. Checking a token
//! on a SCIM request is [`crate::scim::auth`]'s job; this module makes and revokes them, and owns
//! the token format (`rtsc_<id>_<secret>`, only the secret's SHA-256 stored).

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use sha2::{Digest, Sha256};

use crate::member::Actor;
use crate::store::{Store, StoreError, TokenRecord, TokenScope};

/// The prefix that makes a token recognisable (in secret scanners, in a config file).
pub const TOKEN_PREFIX: &str = "rtsc_";

/// The hex SHA-256 of a secret: what the store keeps of a token, and what a check compares.
pub(crate) fn sha256_hex(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

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
    /// What it opens: `scim`, or `events` (the feed and the member listing).
    #[serde(default)]
    pub scope: TokenScope,
}

/// An owner's token request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum TokenRequest {
    /// `token create --label L`
    Create {
        /// Who the token is for.
        label: String,
        /// What it opens (`--scope`, default `scim`).
        #[serde(default)]
        scope: TokenScope,
    },
    /// `token list`
    List,
    /// `token revoke ID`
    Revoke {
        /// The token id.
        id: String,
    },
    /// `token revoke --all` or `scim disconnect`: revoke every token.
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

fn view(store: &Store, r: &TokenRecord) -> Result<TokenView, StoreError> {
    Ok(TokenView {
        id: r.id.clone(),
        label: r.label.clone(),
        created: r.created,
        last_used: store.token_last_used(&r.id)?,
        revoked: r.revoked,
        scope: r.scope,
    })
}

/// Executes one token request. `scim_url` is printed with a new token.
pub fn execute(
    store: &Store,
    request: TokenRequest,
    scim_url: Option<&str>,
    now: DateTime<Utc>,
) -> Result<TokenResponse, TokenError> {
    execute_as(store, request, scim_url, &Actor::Owner, now)
}

/// As [`execute`], for `actor` (the CLI's owner, or an owner in the console), whom the
/// token's event names.
pub fn execute_as(
    store: &Store,
    request: TokenRequest,
    scim_url: Option<&str>,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<TokenResponse, TokenError> {
    let actor = actor.to_string();
    match request {
        TokenRequest::Create { label, scope } => {
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
                scope,
            };
            store.put_token(&record, &actor)?;
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
                .revoke_token(&id, &actor, now)?
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
                    store.revoke_token(&r.id, &actor, now)?;
                    revoked += 1;
                }
            }
            let mut active_members = 0;
            for m in store.members_by_id() {
                let m = m?;
                if m.dir.active && !m.scim_deleted {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    /// Makes a token; returns its id and the whole bearer token.
    pub(crate) fn create(store: &Store, label: &str) -> (String, String) {
        match execute(
            store,
            TokenRequest::Create {
                label: label.into(),
                scope: TokenScope::Scim,
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
        let raw: Vec<u8> = store.raw_token_records().concat();
        assert!(!String::from_utf8_lossy(&raw).contains(secret));
        assert!(!format!("{record:?}").contains(&record.secret_sha256));
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
                TokenRequest::Create {
                    label: " ".into(),
                    scope: TokenScope::Scim,
                },
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
                scope: TokenScope::Scim,
            },
            secret: s,
            scim_url: None,
        };
        assert!(!format!("{resp:?}").contains("supersecret"));
    }
}
