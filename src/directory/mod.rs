//! The Google side of the pull: service-account auth with domain-wide delegation, a thin
//! typed Directory API client (paging, partial responses, gzip, Google's backoff), the
//! response models, and a fake Google directory for tests, the demo and the benchmarks.
//!
//! There is no maintained generated crate for the Admin SDK (`google-admin1_directory` was
//! last released in 2020 on hyper 0.10 and yup-oauth2 1.x), so the three calls the pull needs
//! are written here on the same hyper/rustls stack yup-oauth2 uses.

pub mod auth;
pub mod client;
pub mod fake;
pub mod model;

pub use auth::{GoogleAuth, HttpsClient};
pub use client::{Backoff, DirectoryClient, RawUsersPage, UserListTarget};

/// The read-only scope for users.
pub const SCOPE_USERS: &str = "https://www.googleapis.com/auth/admin.directory.user.readonly";
/// The read-only scope for group members.
pub const SCOPE_GROUP_MEMBERS: &str =
    "https://www.googleapis.com/auth/admin.directory.group.member.readonly";

/// Where the Admin console grants domain-wide delegation.
pub const DELEGATION_PATH: &str =
    "Admin console → Security → Access and data control → API controls → Domain-wide delegation";

/// What can go wrong talking to Google. No variant carries a key or a token.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// Neither `[google].key_file` nor `$CREDENTIALS_DIRECTORY/google-key.json` is there.
    #[error("no Google service account key: set [google].key_file (or RETRAC_SYNC_GOOGLE__KEY_FILE), or run under systemd with LoadCredential=google-key.json:/path/to/key.json{looked}")]
    NoKeyFile {
        /// Where it looked, for the message.
        looked: String,
    },
    /// The key file cannot be read or is not a service account key.
    #[error("cannot use the Google key file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: String,
        /// Why (never the key itself).
        reason: String,
    },
    /// Google refused to hand out a token for this client, subject and scopes.
    #[error("Google refused a token ({detail}). In the {path}, grant client id {client_id} the scopes {scopes}, and check that [google].subject ({subject}) is an active super admin")]
    Unauthorized {
        /// The service account's client id (from the key file).
        client_id: String,
        /// The scopes asked for, comma separated.
        scopes: String,
        /// The admin impersonated.
        subject: String,
        /// Google's error code and description.
        detail: String,
        /// [`DELEGATION_PATH`].
        path: &'static str,
    },
    /// The token endpoint failed in another way.
    #[error("cannot get a Google access token: {0}")]
    Token(String),
    /// A URL is not acceptable (plain http is only allowed to loopback).
    #[error("invalid Google URL {url}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// Google answered with an error that retrying cannot fix.
    #[error("Google {endpoint} failed with HTTP {status} {reason}: {message}")]
    Api {
        /// users.list, users.get, members.list.
        endpoint: &'static str,
        /// HTTP status.
        status: u16,
        /// Google's reason.
        reason: String,
        /// Google's message.
        message: String,
    },
    /// Still failing after every retry.
    #[error("Google {endpoint} still failing after {attempts} attempts: {last}")]
    GaveUp {
        /// Which call.
        endpoint: &'static str,
        /// How many attempts were made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// A response that is not what Google sends (truncated, not JSON, not gzip).
    #[error("Google {endpoint} sent a response that cannot be read: {detail}")]
    BadResponse {
        /// Which call.
        endpoint: &'static str,
        /// What was wrong.
        detail: String,
    },
}

/// Builds a Directory client from a key file: one HTTP client for the token exchange and
/// the API, acting as `subject`, with the users scope and (when `with_groups`) the group
/// members scope.
pub async fn connect(
    key_file: &std::path::Path,
    subject: &str,
    with_groups: bool,
    base_url: &str,
    backoff: Backoff,
) -> Result<DirectoryClient, DirectoryError> {
    let key = auth::read_key(key_file)?;
    let http = auth::build_http_client()?;
    let auth = GoogleAuth::new(key, subject, auth::scopes(with_groups), http.clone()).await?;
    DirectoryClient::new(http, auth, base_url, backoff)
}
