//! Service-account authentication with domain-wide delegation (yup-oauth2 12).
//!
//! yup-oauth2 caches the token and refreshes it a minute before it expires; the client asks
//! for a forced refresh once when the API answers 401 (a token revoked early).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use yup_oauth2::authenticator::Authenticator;
use yup_oauth2::error::AuthErrorCode;
use yup_oauth2::ServiceAccountKey;

use super::keyless::KeylessAuth;
use super::{DirectoryError, DELEGATION_PATH, SCOPE_GROUP_MEMBERS, SCOPE_USERS};

/// The HTTP client shared by the token exchange and the Directory API.
pub type HttpsClient = hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, String>;

/// Builds the HTTP client: rustls with ring and the webpki roots (the machine may have no
/// CA store), http/1.1, plain http allowed only where [`check_url`] allows it.
pub fn build_http_client() -> Result<HttpsClient, DirectoryError> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        .map_err(|e| DirectoryError::Token(format!("cannot set up TLS: {e}")))?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(30))
            .build(connector),
    )
}

/// Accepts https anywhere and plain http only to a loopback host (the fake directory).
pub fn check_url(url: &str) -> Result<url::Url, DirectoryError> {
    let bad = |reason: &str| DirectoryError::Url {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" => {
            let loopback = match parsed.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                Some(url::Host::Domain(d)) => d == "localhost",
                None => false,
            };
            if loopback {
                Ok(parsed)
            } else {
                Err(bad(
                    "plain http is only allowed to a loopback address; use https",
                ))
            }
        }
        _ => Err(bad("the scheme must be https")),
    }
}

/// Where the key file is: `[google].key_file`, else `$CREDENTIALS_DIRECTORY/google-key.json`.
pub fn key_path(
    key_file: Option<&Path>,
    credentials_directory: Option<&Path>,
) -> Result<PathBuf, DirectoryError> {
    if let Some(p) = key_file {
        return Ok(p.to_path_buf());
    }
    if let Some(dir) = credentials_directory {
        let p = dir.join("google-key.json");
        if p.exists() {
            return Ok(p);
        }
        return Err(DirectoryError::NoKeyFile {
            looked: format!(" ({} does not exist)", p.display()),
        });
    }
    Err(DirectoryError::NoKeyFile {
        looked: " ($CREDENTIALS_DIRECTORY is not set)".into(),
    })
}

/// Reads a service account key file. Errors never quote the file's content.
pub fn read_key(path: &Path) -> Result<ServiceAccountKey, DirectoryError> {
    let err = |reason: String| DirectoryError::KeyFile {
        path: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    // serde_json's messages can quote values, and this file holds a private key: keep only
    // the position.
    let key: ServiceAccountKey = serde_json::from_slice(&bytes).map_err(|e| {
        err(format!(
            "not a service account key in JSON (line {}, column {}); download a JSON key for the service account",
            e.line(),
            e.column()
        ))
    })?;
    if !key.private_key.contains("PRIVATE KEY") {
        return Err(err("private_key is not a PEM private key".into()));
    }
    check_url(&key.token_uri)?;
    Ok(key)
}

/// A service-account authenticator acting as the delegated admin.
#[derive(Clone)]
pub struct GoogleAuth {
    inner: Source,
    scopes: Arc<Vec<String>>,
    client_id: String,
    client_email: String,
    subject: String,
    timeout: Duration,
}

impl std::fmt::Debug for GoogleAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The authenticator holds the private key and the cached token: never print it.
        f.debug_struct("GoogleAuth")
            .field("client_id", &self.client_id)
            .field("subject", &self.subject)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// Where the tokens come from.
#[derive(Clone)]
enum Source {
    /// yup-oauth2 with a key file.
    Key(Authenticator<HttpsConnector<HttpConnector>>),
    /// The metadata server and signJwt.
    Keyless(Arc<KeylessAuth>),
}

/// Who asks for a token, for the messages of a refusal.
pub struct Identity<'a> {
    /// The service account's client id.
    pub client_id: &'a str,
    /// The service account.
    pub client_email: &'a str,
    /// The admin to act as.
    pub subject: &'a str,
    /// The scopes asked for.
    pub scopes: &'a [String],
}

/// What an OAuth error answer from the token endpoint means for the operator. The
/// descriptions are those Google sends (GAM `src/gam/gapi/errors.py`, GAM PR #1171,
/// googleapis/google-cloud-php#3622). An OAuth refusal is never retried: only codes that
/// mean Google's side failed are.
pub fn refusal(e: yup_oauth2::error::AuthError, who: &Identity<'_>) -> DirectoryError {
    let description = e.error_description.clone().unwrap_or_default();
    let subject_refused = || DirectoryError::SubjectRefused {
        subject: who.subject.to_string(),
        detail: format!("{}: {description}", e.error.as_str()),
    };
    match &e.error {
        AuthErrorCode::InvalidGrant if description.contains("Invalid email or User ID") => {
            DirectoryError::SubjectUnknown {
                subject: who.subject.to_string(),
            }
        }
        AuthErrorCode::InvalidGrant if description.contains("account not found") => {
            DirectoryError::ServiceAccountGone {
                client_email: who.client_email.to_string(),
                detail: description,
            }
        }
        AuthErrorCode::InvalidGrant
            if description.contains("The account has been deleted")
                || description.contains("Not a valid email") =>
        {
            subject_refused()
        }
        AuthErrorCode::InvalidRequest if description.contains("Invalid impersonation") => {
            subject_refused()
        }
        AuthErrorCode::InvalidGrant if description.contains("Invalid JWT Signature") => {
            DirectoryError::KeyRejected {
                client_email: who.client_email.to_string(),
            }
        }
        AuthErrorCode::InvalidGrant
            if description.contains("iat") || description.contains("exp") =>
        {
            DirectoryError::ClockSkew {
                detail: description,
            }
        }
        AuthErrorCode::InvalidClient => DirectoryError::AccountUnknown {
            client_email: who.client_email.to_string(),
        },
        AuthErrorCode::UnauthorizedClient
        | AuthErrorCode::AccessDenied
        | AuthErrorCode::InvalidScope => DirectoryError::Unauthorized {
            client_id: who.client_id.to_string(),
            scopes: who.scopes.join(","),
            subject: who.subject.to_string(),
            detail: e.to_string(),
            path: DELEGATION_PATH,
        },
        // Google's side failed: retried.
        AuthErrorCode::Other(code)
            if matches!(
                code.as_str(),
                "internal_failure" | "temporarily_unavailable" | "server_error"
            ) =>
        {
            DirectoryError::TokenUnavailable(e.to_string())
        }
        // An `invalid_grant` not recognised above, and every other refusal: Google's words,
        // no guess at the cause, no retry.
        _ => DirectoryError::TokenRefused {
            detail: e.to_string(),
        },
    }
}

/// The scopes the pull needs: users, and group members when groups are in scope.
pub fn scopes(with_groups: bool) -> Vec<String> {
    let mut s = vec![SCOPE_USERS.to_string()];
    if with_groups {
        s.push(SCOPE_GROUP_MEMBERS.to_string());
    }
    s
}

impl GoogleAuth {
    /// An authenticator for `key`, acting as `subject`, asking for `scopes`; each token
    /// request may take at most `timeout`.
    pub async fn new(
        key: ServiceAccountKey,
        subject: &str,
        scopes: Vec<String>,
        http: HttpsClient,
        timeout: Duration,
    ) -> Result<GoogleAuth, DirectoryError> {
        let client_id = key
            .client_id
            .clone()
            .unwrap_or_else(|| format!("(the client id of {})", key.client_email));
        let client_email = key.client_email.clone();
        let inner = yup_oauth2::ServiceAccountAuthenticator::with_client(
            key,
            yup_oauth2::CustomHyperClientBuilder::from(http),
        )
        .subject(subject)
        // yup-oauth2's own timeout covers the request until the answer's headers.
        .with_timeout(timeout)
        .build()
        .await
        .map_err(|e| DirectoryError::Token(format!("cannot use the service account key: {e}")))?;
        Ok(GoogleAuth {
            inner: Source::Key(inner),
            scopes: Arc::new(scopes),
            client_id,
            client_email,
            subject: subject.to_string(),
            timeout,
        })
    }

    /// An authenticator without a key: the metadata server's token, and signJwt.
    pub fn keyless(keyless: KeylessAuth, subject: &str, scopes: Vec<String>) -> GoogleAuth {
        let client_email = keyless.service_account().to_string();
        GoogleAuth {
            client_id: format!("(the unique id of {client_email})"),
            client_email,
            inner: Source::Keyless(Arc::new(keyless)),
            scopes: Arc::new(scopes),
            subject: subject.to_string(),
            timeout: Duration::ZERO,
        }
    }

    /// The admin this authenticator acts as.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The cached token, or a new one.
    pub async fn token(&self) -> Result<String, DirectoryError> {
        match &self.inner {
            Source::Key(a) => {
                let t = self.bounded(a.token(&self.scopes)).await;
                self.finish(t)
            }
            Source::Keyless(k) => k.token(false).await,
        }
    }

    /// A new token, ignoring the cache (after a 401).
    pub async fn refreshed_token(&self) -> Result<String, DirectoryError> {
        match &self.inner {
            Source::Key(a) => {
                let t = self.bounded(a.force_refreshed_token(&self.scopes)).await;
                self.finish(t)
            }
            Source::Keyless(k) => k.token(true).await,
        }
    }

    /// The whole token request, body included, under the timeout: yup-oauth2's timeout
    /// stops at the answer's headers, and a body that stalls would hang the run.
    async fn bounded(
        &self,
        f: impl std::future::Future<Output = Result<yup_oauth2::AccessToken, yup_oauth2::Error>>,
    ) -> Result<yup_oauth2::AccessToken, yup_oauth2::Error> {
        match tokio::time::timeout(self.timeout.saturating_add(Duration::from_millis(100)), f).await
        {
            Ok(r) => r,
            Err(_) => Err(yup_oauth2::Error::HttpClientError(
                yup_oauth2::client::SendError::Timeout,
            )),
        }
    }

    fn finish(
        &self,
        t: Result<yup_oauth2::AccessToken, yup_oauth2::Error>,
    ) -> Result<String, DirectoryError> {
        match t {
            Ok(t) => t
                .token()
                .map(str::to_string)
                .ok_or_else(|| DirectoryError::Token("the token endpoint sent no token".into())),
            Err(yup_oauth2::Error::AuthError(e)) => Err(refusal(
                e,
                &Identity {
                    client_id: &self.client_id,
                    client_email: &self.client_email,
                    subject: &self.subject,
                    scopes: &self.scopes,
                },
            )),
            // Not reached, timed out, or an answer that is not OAuth JSON (an HTML 503):
            // the token endpoint is unavailable for now, and the caller retries.
            Err(
                e @ (yup_oauth2::Error::HttpError(_)
                | yup_oauth2::Error::HttpClientError(_)
                | yup_oauth2::Error::JSONError(_)
                | yup_oauth2::Error::LowLevelError(_)),
            ) => Err(DirectoryError::TokenUnavailable(e.to_string())),
            Err(e) => Err(DirectoryError::Token(e.to_string())),
        }
    }
}
