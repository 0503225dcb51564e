//! The Google side of the pull: service-account auth with domain-wide delegation, a thin
//! typed Directory API client (paging, partial responses, gzip, Google's backoff), the
//! response models. The fake Google that tests, the demo and the benchmarks use is its own
//! crate, `crates/fake-google`.
//!
//! There is no maintained generated crate for the Admin SDK (`google-admin1_directory` was
//! last released in 2020 on hyper 0.10 and yup-oauth2 1.x), so the calls the pull needs
//! are written here on the same hyper/rustls stack yup-oauth2 uses.

pub mod auth;
pub mod client;
pub mod keyless;
#[cfg(any(test, feature = "test-support"))]
pub mod memory;
pub mod model;
pub mod source;

pub use auth::{GoogleAuth, HttpsClient};
pub use client::{Backoff, DirectoryClient, RawUsersPage, UserListTarget};
pub use source::Directory;

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
    /// `unauthorized_client`: domain-wide delegation is missing, or lacks a scope.
    #[error("Google refused a token ({detail}): domain-wide delegation is missing or lacks a scope. In the {path}, add client id {client_id} with exactly these scopes: {scopes}. A delegation just granted can take up to 24 hours to apply")]
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
    /// `invalid_grant` "Invalid email or User ID": the subject is not a user Google knows.
    #[error("Google does not know [google].subject {subject} (invalid_grant: Invalid email or User ID): set it to the primary email of an existing Google Workspace super admin")]
    SubjectUnknown {
        /// The admin the service account was to act as.
        subject: String,
    },
    /// `invalid_grant` "The account has been deleted" or "Not a valid email", or
    /// `invalid_request` "Invalid impersonation \"sub\" field": the subject cannot be acted as.
    #[error("Google refused [google].subject {subject} ({detail}): the admin was deleted, or the setting is not a user's primary email address. Set it to the primary email of an existing Google Workspace super admin")]
    SubjectRefused {
        /// The admin the service account was to act as.
        subject: String,
        /// Google's error code and description.
        detail: String,
    },
    /// `invalid_grant` "Invalid grant: account not found": the service account was deleted or
    /// disabled (its key still signs, but nobody holds the account any more).
    #[error("Google refused a token for the service account {client_email} (invalid_grant: {detail}): the service account was deleted or disabled. Enable it again in the Google Cloud console (IAM & Admin → Service Accounts), or create a new one with a JSON key, point [google].key_file at it and grant its client id the domain-wide delegation")]
    ServiceAccountGone {
        /// The service account.
        client_email: String,
        /// Google's description.
        detail: String,
    },
    /// Any other refusal of the token endpoint (an OAuth 4xx, never retried): Google's own
    /// words.
    #[error("Google refused the token request ({detail}); nothing in its answer names the cause. Check [google].subject, the key file and the domain-wide delegation, then run `retrac-sync doctor`")]
    TokenRefused {
        /// Google's error code and description.
        detail: String,
    },
    /// `invalid_grant` "Invalid JWT Signature": the key was deleted or rotated.
    #[error("Google rejected the key's signature (invalid_grant: Invalid JWT Signature): the key was deleted or rotated. Create a new JSON key for {client_email} and point [google].key_file at it")]
    KeyRejected {
        /// The service account.
        client_email: String,
    },
    /// `invalid_client`: the service account itself is unknown.
    #[error("Google does not know the service account {client_email} (invalid_client): it was deleted, or the key file belongs to another project. Create a JSON key for an existing service account and point [google].key_file at it")]
    AccountUnknown {
        /// The service account.
        client_email: String,
    },
    /// `invalid_grant` about `iat`/`exp`: this machine's clock is off.
    #[error("Google refused the token request's time (invalid_grant: {detail}): this machine's clock is off. Synchronise it (chrony, systemd-timesyncd or ntpd) and run again")]
    ClockSkew {
        /// Google's description.
        detail: String,
    },
    /// A good token, then 403 "Not Authorized to access this resource/api": the subject
    /// is a user but not an admin.
    #[error("Google issued a token for {subject}, then the Directory API answered 403 Not Authorized to access this resource/api: [google].subject is not an admin. Set it to a super admin, or to an admin whose role may read users and groups")]
    NotAdmin {
        /// The admin impersonated.
        subject: String,
    },
    /// `domainCannotUseApis`: the account may not use the Admin SDK.
    #[error("Google answered domainCannotUseApis: this Google account may not use the Directory API. Check that its edition includes the Admin SDK and that API access is not turned off (Admin console → Security → Access and data control → API controls)")]
    DomainCannotUseApis,
    /// members.list answered 404 or 403 for a scope group.
    #[error("Google does not know the scope group {group} (members.list answered {status}): check the address in [scope].groups; it must be a group of this customer (its address or one of its aliases), not a user")]
    GroupNotFound {
        /// The group, as configured.
        group: String,
        /// Google's answer (404, or 403 for a group outside the customer).
        status: u16,
    },
    /// A keyed call (users.get, members.hasMember) answered 403 "Not Authorized to access
    /// this resource/api": Google's answer for a key outside the customer as for one the
    /// admin's role does not cover.
    #[error("{key} is not in this Google customer, or the admin's role does not cover it (Google {endpoint} answered 403 Not Authorized to access this resource/api)")]
    NotInCustomer {
        /// The user or group key asked for.
        key: String,
        /// Which call.
        endpoint: &'static str,
    },
    /// A step of keyless credentials failed (metadata, credential file, subject token URL,
    /// AWS metadata, STS, generateAccessToken, signJwt, token exchange).
    #[error("keyless Google credentials: the {step} step failed ({detail}): {advice}")]
    Keyless {
        /// The step, as listed above.
        step: &'static str,
        /// What Google answered.
        detail: String,
        /// What to do.
        advice: &'static str,
    },
    /// The token endpoint could not be reached, timed out or failed on its side (retried).
    #[error("the Google token endpoint is unavailable: {0}")]
    TokenUnavailable(String),
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
    /// Google's search answered 400 to `[scope].query` narrowed to one address: whether the
    /// user matches cannot be checked.
    #[error("Google's search refused [scope].query narrowed to this user: {detail}")]
    SearchRefused {
        /// Google's answer.
        detail: String,
    },
    /// The scope groups hold more nested groups than `[scope].max_nested_groups`.
    #[error("the scope groups hold more than {limit} nested groups ([scope].max_nested_groups; {last} is one past it), so nothing was written: raise [scope].max_nested_groups if they are all meant to be in scope, or put the users in fewer groups")]
    TooManyNestedGroups {
        /// The limit.
        limit: usize,
        /// The nested group that went past it.
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

impl DirectoryError {
    /// A short stable name of the failure, for metrics and `doctor`.
    pub fn kind(&self) -> &'static str {
        match self {
            DirectoryError::NoKeyFile { .. } => "no_key_file",
            DirectoryError::KeyFile { .. } => "key_file",
            DirectoryError::Unauthorized { .. } => "delegation",
            DirectoryError::SubjectUnknown { .. } => "subject_unknown",
            DirectoryError::SubjectRefused { .. } => "subject_refused",
            DirectoryError::ServiceAccountGone { .. } => "service_account_gone",
            DirectoryError::TokenRefused { .. } => "token_refused",
            DirectoryError::NotInCustomer { .. } => "not_in_customer",
            DirectoryError::KeyRejected { .. } => "key_rejected",
            DirectoryError::AccountUnknown { .. } => "account_unknown",
            DirectoryError::ClockSkew { .. } => "clock_skew",
            DirectoryError::NotAdmin { .. } => "not_admin",
            DirectoryError::DomainCannotUseApis => "domain_cannot_use_apis",
            DirectoryError::GroupNotFound { .. } => "group_not_found",
            DirectoryError::Keyless { .. } => "keyless",
            DirectoryError::TokenUnavailable(_) => "token_unavailable",
            DirectoryError::Token(_) => "token",
            DirectoryError::Url { .. } => "url",
            DirectoryError::Api { .. } => "api",
            DirectoryError::GaveUp { .. } => "gave_up",
            DirectoryError::BadResponse { .. } => "bad_response",
            DirectoryError::TooManyNestedGroups { .. } => "too_many_nested_groups",
            DirectoryError::SearchRefused { .. } => "search_refused",
        }
    }
}

/// What to tell the operator about a failure: what Google answered and what to change.
/// Each setup mistake Google can tell apart has its own advice (`doctor` prints this).
pub fn diagnose(e: &DirectoryError) -> String {
    e.to_string()
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
    connect_with_timeout(
        key_file,
        subject,
        with_groups,
        base_url,
        backoff,
        client::REQUEST_TIMEOUT,
    )
    .await
}

/// Builds the Directory client that `[google]` asks for: from a key file, or keyless
/// (`credentials = "metadata"` or `"external_account"`). The pull and `doctor` both use it,
/// so the doctor checks exactly the credentials the pull will use. `env` is where keyless
/// credentials read `AWS_*` and `GOOGLE_APPLICATION_CREDENTIALS`.
pub async fn connect_configured(
    g: &crate::config::GoogleConfig,
    subject: &str,
    with_groups: bool,
    credentials_dir: Option<&std::path::Path>,
    backoff: Backoff,
    timeout: std::time::Duration,
    env: &keyless::Environment,
) -> Result<DirectoryClient, DirectoryError> {
    use crate::config::CredentialsKind;
    let own = match g.credentials {
        CredentialsKind::Key => None,
        CredentialsKind::Metadata => Some(keyless::OwnToken::Metadata {
            url: g.metadata_url.clone(),
        }),
        CredentialsKind::ExternalAccount => Some(keyless::OwnToken::ExternalAccount {
            file: g.key_file.clone().unwrap_or_default(),
            sts_url: g.sts_url.clone(),
        }),
    };
    if let Some(own) = own {
        return connect_keyless(
            keyless::KeylessConfig {
                own,
                iam_url: g.iam_url.clone(),
                token_url: g.token_url.clone(),
                service_account: g.service_account.clone().unwrap_or_default(),
                subject: subject.to_string(),
                scopes: auth::scopes(with_groups),
                env: env.clone(),
            },
            &g.api_base_url,
            backoff,
            timeout,
        )
        .await;
    }
    let key = auth::key_path(g.key_file.as_deref(), credentials_dir)?;
    connect_with_timeout(
        &key,
        subject,
        with_groups,
        &g.api_base_url,
        backoff,
        timeout,
    )
    .await
}

/// Builds a Directory client without a key file: the daemon's own token (metadata server
/// or Workload Identity Federation), and the IAM Credentials API to sign the delegation JWT.
pub async fn connect_keyless(
    config: keyless::KeylessConfig,
    base_url: &str,
    backoff: Backoff,
    timeout: std::time::Duration,
) -> Result<DirectoryClient, DirectoryError> {
    let http = auth::build_http_client()?;
    let subject = config.subject.clone();
    let scopes = config.scopes.clone();
    let k = keyless::KeylessAuth::new(http.clone(), config, timeout).await?;
    let auth = GoogleAuth::keyless(k, &subject, scopes);
    Ok(DirectoryClient::new(http, auth, base_url, backoff)?.with_request_timeout(timeout))
}

/// As [`connect`], with another timeout for each token and API request (tests shorten it).
pub async fn connect_with_timeout(
    key_file: &std::path::Path,
    subject: &str,
    with_groups: bool,
    base_url: &str,
    backoff: Backoff,
    timeout: std::time::Duration,
) -> Result<DirectoryClient, DirectoryError> {
    let key = auth::read_key(key_file)?;
    let http = auth::build_http_client()?;
    let auth = GoogleAuth::new(
        key,
        subject,
        auth::scopes(with_groups),
        http.clone(),
        timeout,
    )
    .await?;
    Ok(DirectoryClient::new(http, auth, base_url, backoff)?.with_request_timeout(timeout))
}
