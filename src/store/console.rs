//! What the owner's console keeps in the store, in the `console` tree: its sessions and the
//! one-time sign-in links of `console login`. Only the SHA-256 of each secret is stored (a
//! copy of the store opens no session), and both survive a restart.
//!
//! The records are the console's own: neither is a member, an event or a grant, so they are
//! written here and not through `provision::apply`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};
use crate::member::MemberId;

const SESSION_PREFIX: &[u8] = b"session:";
const LINK_PREFIX: &[u8] = b"link:";

/// The SHA-256 of a session id or a link's secret: the key it is stored under.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretHash(pub [u8; 32]);

impl std::fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretHash(..)")
    }
}

/// A signed-in owner's session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleSession {
    /// The member signed in.
    pub member_id: MemberId,
    /// Their email address when they signed in (the audit names them by it).
    pub email: String,
    /// How they signed in: `google` or `link`.
    pub method: String,
    /// When they signed in.
    pub created: DateTime<Utc>,
    /// When the session was last used (kept to the minute).
    pub last_seen: DateTime<Utc>,
}

/// A one-time sign-in link made by `console login`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleLink {
    /// Who it signs in.
    pub email: String,
    /// When it stops working.
    pub expires: DateTime<Utc>,
}

fn key(prefix: &[u8], hash: &SecretHash) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&hash.0);
    k
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode<T: for<'de> Deserialize<'de>>(what: &str, v: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(v).map_err(|e| StoreError::Corrupt(format!("console {what}: {e}")))
}

impl Store {
    /// Stores a new session (or replaces one, to record its use).
    pub fn put_console_session(
        &self,
        hash: &SecretHash,
        session: &ConsoleSession,
    ) -> Result<(), StoreError> {
        let bytes = encode(session)?;
        self.transact_side(&self.inner.console, |tx| {
            tx.tree
                .insert(key(SESSION_PREFIX, hash), bytes.as_slice())?;
            Ok(())
        })
    }

    /// The session stored under `hash`.
    pub fn console_session(&self, hash: &SecretHash) -> Result<Option<ConsoleSession>, StoreError> {
        match self.inner.console.get(key(SESSION_PREFIX, hash))? {
            Some(v) => decode("session", &v).map(Some),
            None => Ok(None),
        }
    }

    /// Records that a session was used at `now`, only if it still exists (a sign-out that
    /// removed it in between stays done); whether it exists.
    pub fn touch_console_session(
        &self,
        hash: &SecretHash,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let k = key(SESSION_PREFIX, hash);
        self.transact_side(&self.inner.console, |tx| {
            let Some(v) = tx.tree.get(&k)? else {
                return Ok(false);
            };
            let mut s: ConsoleSession = decode("session", &v)?;
            s.last_seen = now;
            tx.tree.insert(k.as_slice(), encode(&s)?)?;
            Ok(true)
        })
    }

    /// Ends every session of the member `id`; how many there were.
    pub fn remove_console_sessions_of(
        &self,
        id: Option<crate::member::MemberId>,
    ) -> Result<usize, StoreError> {
        let mut gone = Vec::new();
        for kv in self.inner.console.scan_prefix(SESSION_PREFIX) {
            let (k, v) = kv?;
            let s: Option<ConsoleSession> = decode("session", &v).ok();
            if id.is_none() || s.is_none_or(|s| Some(s.member_id) == id) {
                gone.push(k);
            }
        }
        self.remove_console_keys(&gone)
    }

    /// Removes `keys` in one transaction; how many there were.
    fn remove_console_keys(&self, keys: &[sled::IVec]) -> Result<usize, StoreError> {
        if !keys.is_empty() {
            self.transact_side(&self.inner.console, |tx| {
                for k in keys {
                    tx.tree.remove(k.as_ref())?;
                }
                Ok(())
            })?;
        }
        Ok(keys.len())
    }

    /// Ends a session; whether there was one.
    pub fn remove_console_session(&self, hash: &SecretHash) -> Result<bool, StoreError> {
        self.transact_side(&self.inner.console, |tx| {
            Ok(tx.tree.remove(key(SESSION_PREFIX, hash))?.is_some())
        })
    }

    /// Stores a one-time link.
    pub fn put_console_link(
        &self,
        hash: &SecretHash,
        link: &ConsoleLink,
    ) -> Result<(), StoreError> {
        let bytes = encode(link)?;
        self.transact_side(&self.inner.console, |tx| {
            tx.tree.insert(key(LINK_PREFIX, hash), bytes.as_slice())?;
            Ok(())
        })
    }

    /// Takes the link stored under `hash`: it is removed in the same transaction, so it
    /// works once, and only before it expires.
    pub fn take_console_link(
        &self,
        hash: &SecretHash,
        now: DateTime<Utc>,
    ) -> Result<Option<ConsoleLink>, StoreError> {
        let taken = self.transact_side(&self.inner.console, |tx| {
            match tx.tree.remove(key(LINK_PREFIX, hash))? {
                Some(v) => Ok(Some(v.to_vec())),
                None => Ok(None),
            }
        })?;
        match taken {
            Some(v) => {
                let link: ConsoleLink = decode("link", &v)?;
                Ok((link.expires > now).then_some(link))
            }
            None => Ok(None),
        }
    }

    /// Removes the sessions that `expired` says have ended and the links past their time;
    /// how many records went.
    pub fn prune_console(
        &self,
        now: DateTime<Utc>,
        expired: impl Fn(&ConsoleSession) -> bool,
    ) -> Result<usize, StoreError> {
        let mut gone = Vec::new();
        for kv in self.inner.console.iter() {
            let (k, v) = kv?;
            let stale = if k.starts_with(SESSION_PREFIX) {
                decode::<ConsoleSession>("session", &v).map_or(true, |s| expired(&s))
            } else {
                decode::<ConsoleLink>("link", &v).map_or(true, |l| l.expires <= now)
            };
            if stale {
                gone.push(k);
            }
        }
        self.remove_console_keys(&gone)
    }
}
