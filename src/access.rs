//! Who may open the owner's console, and the secrets that let them in: the one-time links
//! of `retrac-sync console login`, and session ids. Only an active member whose role is
//! `owner` signs in, by either way, and a session holds only while that stays true.
//!
//! Secrets are 32 random bytes from the operating system, written base64url; the store
//! keeps only their SHA-256 ([`SecretHash`]).

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::member::{Member, Role};
use crate::store::{ConsoleLink, SecretHash, Store, StoreError};

/// How long a one-time link works.
pub const LINK_LIFETIME: Duration = Duration::minutes(10);

/// The path of a one-time link below the console's URL.
pub const LINK_PATH: &str = "/login/link/";

/// A secret: a session id or a link's. Its `Debug` is redacted.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// A new random secret.
    pub fn generate() -> Result<Secret, AccessError> {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).map_err(|e| AccessError::Random(e.to_string()))?;
        Ok(Secret(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b),
        ))
    }

    /// What the store keeps of it.
    pub fn hash(&self) -> SecretHash {
        SecretHash(Sha256::digest(self.0.as_bytes()).into())
    }

    /// A value derived from this secret for `purpose` (the CSRF token of a session): the
    /// base64url SHA-256 of the purpose and the secret. It reveals nothing of the secret.
    pub fn derive(&self, purpose: &str) -> String {
        let mut h = Sha256::new();
        h.update(purpose.as_bytes());
        h.update([0u8]);
        h.update(self.0.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.finalize())
    }
}

/// Whether `s` has the shape of a [`Secret`]: 43 characters of base64url.
pub fn looks_like_secret(s: &str) -> bool {
    s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Why a sign-in or a link was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The address is not an active owner's.
    #[error("{0} is not an active member with the owner role: only owners sign in to the console (see `retrac-sync members role set EMAIL owner`)")]
    NotOwner(String),
    /// The link is unknown, used, or expired.
    #[error("this sign-in link is unknown, was used already, or has expired (links work once, for 10 minutes): make a new one with `retrac-sync console login EMAIL`")]
    BadLink,
    /// The console is off.
    #[error("the console is turned off ([console].listen is empty)")]
    Off,
    /// The OS random source failed.
    #[error("cannot read the operating system's random source: {0}")]
    Random(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `console login EMAIL`: run locally or through the admin socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginRequest {
    /// The owner to sign in.
    pub email: String,
}

/// The answer: the link, shown once.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginLink {
    /// The owner it signs in.
    pub email: String,
    /// The URL to open.
    pub url: String,
    /// When it stops working.
    pub expires: DateTime<Utc>,
}

impl std::fmt::Debug for LoginLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginLink")
            .field("email", &self.email)
            .field("url", &"<redacted>")
            .field("expires", &self.expires)
            .finish()
    }
}

/// The member `who` names (email or id) when they are an active owner.
pub fn active_owner(store: &Store, who: &str) -> Result<Member, AccessError> {
    match store.find(who)? {
        Some(m) if is_active_owner(&m) => Ok(m),
        _ => Err(AccessError::NotOwner(who.to_string())),
    }
}

/// Whether `m` may use the console.
pub fn is_active_owner(m: &Member) -> bool {
    m.dir.active && m.role == Role::Owner && !m.scim_deleted
}

/// Makes a one-time link for an active owner, valid for [`LINK_LIFETIME`]. `console_url`
/// is the console's URL (`[console].public_url`, or its listen address).
pub fn create_link(
    store: &Store,
    req: &LoginRequest,
    console_url: Option<&str>,
    now: DateTime<Utc>,
) -> Result<LoginLink, AccessError> {
    let base = console_url.ok_or(AccessError::Off)?;
    let owner = active_owner(store, req.email.trim())?;
    let secret = Secret::generate()?;
    let expires = now + LINK_LIFETIME;
    let email = owner.dir.user_name.to_string();
    store.put_console_link(
        &secret.hash(),
        &ConsoleLink {
            email: email.clone(),
            expires,
        },
    )?;
    Ok(LoginLink {
        email,
        url: format!("{base}{LINK_PATH}{}", secret.0),
        expires,
    })
}

/// `console logout EMAIL|--all`: ends a member's console sessions, or every session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoutRequest {
    /// The member (email or id); `None` ends every session.
    pub who: Option<String>,
}

/// Ends the sessions `req` names; how many ended. A member who is not (or no longer) an
/// owner may still hold one, so any member can be named.
pub fn end_sessions(store: &Store, req: &LogoutRequest) -> Result<usize, AccessError> {
    let id = match &req.who {
        Some(who) => Some(
            store
                .find(who.trim())?
                .ok_or_else(|| AccessError::NotOwner(who.clone()))?
                .id,
        ),
        None => None,
    };
    Ok(store.remove_console_sessions_of(id)?)
}

/// Takes a link: the owner it signs in, once, before it expires, while they are still an
/// active owner.
pub fn redeem_link(
    store: &Store,
    secret: &Secret,
    now: DateTime<Utc>,
) -> Result<Member, AccessError> {
    let link = store
        .take_console_link(&secret.hash(), now)?
        .ok_or(AccessError::BadLink)?;
    active_owner(store, &link.email)
}
