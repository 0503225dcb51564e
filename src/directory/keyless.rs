//! Domain-wide delegation without a key file (`[google].credentials = "metadata"` or
//! `"external_account"`).
//!
//! Google Cloud can forbid service account keys (`iam.disableServiceAccountKeyCreation`).
//! Delegation still works: the daemon takes its own token, from the metadata server of its
//! VM or pod (<https://cloud.google.com/compute/docs/access/authenticate-workloads#applications>)
//! or from the security token service for a Workload Identity Federation credential
//! (<https://cloud.google.com/iam/docs/workload-identity-federation>, and the file's format in
//! <https://google.aip.dev/auth/4117>), has the IAM Credentials API sign the delegation JWT
//! for `[google].service_account`
//! (<https://cloud.google.com/iam/docs/reference/credentials/rest/v1/projects.serviceAccounts/signJwt>),
//! and exchanges that JWT at the token endpoint as a key would
//! (<https://developers.google.com/identity/protocols/oauth2/service-account#authorizingrequests>).
//! The private key never leaves Google.
//!
//! # What yup-oauth2 (12) does here, and what it cannot
//!
//! - **Metadata token: yup-oauth2.** Its instance-metadata flow takes the token URL as an
//!   option, so `[google].metadata_url` still points it at the fake. Two limits are handled
//!   here: it is only reachable through `ApplicationDefaultCredentialsAuthenticator`, which
//!   takes the key file in `GOOGLE_APPLICATION_CREDENTIALS` instead when that variable is set
//!   (so that is refused, see [`KeylessAuth::new`]); and it reads the answer's body without
//!   its status, so a 404 (no account attached) and a 503 both come back as "not a token".
//!   Such an answer fails that run with the metadata step named (the next run tries again);
//!   only a connection failure or a timeout is retried within the run.
//! - **Subject token, STS exchange, impersonation: written here.** yup-oauth2's
//!   `ExternalAccountFlow` does the three in one call, so a failure cannot be told apart by
//!   step (a failure must name its step and what to grant: docs/admin/google-setup.md), and there is no way to hand it a
//!   subject token. Its `credential_source` knows a file (without `format`) and a URL (with a
//!   mandatory `format`); it has no AWS source. Its impersonation
//!   (`service_account_impersonator`) is crate-private except behind an authorized-user
//!   refresh token, with `https://iamcredentials.googleapis.com` hard-coded, so
//!   `[google].iam_url` could not reach the fake.
//! - **signJwt, and the exchange of a JWT signed elsewhere: written here.** yup-oauth2 signs
//!   JWTs only with a local key.
//!
//! yup-oauth2 logs request and answer bodies (tokens included) at debug level through the
//! `log` crate. The daemon installs no `log` logger (tracing only, without its `log` bridge),
//! so those records go nowhere; keep it so.
//!
//! The hosts come from `[google].sts_url` and `[google].iam_url`. The credential file's
//! `token_url` is not used, and only the path of its `service_account_impersonation_url`
//! (which names the account) is: `gcloud` writes Google's public hosts there, and the keys
//! are where a test, the demo or a private endpoint points elsewhere.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;

use super::auth::{check_url, HttpsClient};
use super::DirectoryError;

/// The scope the daemon's own token needs to call signJwt.
pub const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

/// The subject token type of AWS's signed GetCallerIdentity request.
pub const AWS_TOKEN_TYPE: &str = "urn:ietf:params:aws:token-type:aws4_request";

/// Where the daemon's own token (the one that calls signJwt) comes from.
#[derive(Clone, Debug)]
pub enum OwnToken {
    /// The metadata server of the Compute Engine VM or GKE pod.
    Metadata {
        /// Its root (`http://metadata.google.internal`).
        url: String,
    },
    /// Workload Identity Federation: a credential configuration file whose subject token
    /// (a file, a URL, or AWS's signed request) is exchanged at the security token service
    /// (<https://cloud.google.com/iam/docs/reference/sts/rest/v1/TopLevel/token>).
    ExternalAccount {
        /// The credential configuration file (`"type": "external_account"`).
        file: std::path::PathBuf,
        /// The STS root (`https://sts.googleapis.com`).
        sts_url: String,
    },
}

/// Where environment variables (`AWS_*`, `GOOGLE_APPLICATION_CREDENTIALS`) are read: the
/// process's environment, or a fixed set (tests, which must not change the process's).
#[derive(Clone, Default)]
pub enum Environment {
    /// `std::env::var`.
    #[default]
    Process,
    /// These variables and no others.
    Fixed(Arc<BTreeMap<String, String>>),
}

impl Environment {
    /// A fixed environment of these variables.
    pub fn fixed<K: Into<String>, V: Into<String>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Environment {
        Environment::Fixed(Arc::new(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        ))
    }

    /// The variable's value; unset and empty are alike.
    pub fn var(&self, name: &str) -> Option<String> {
        let v = match self {
            Environment::Process => std::env::var(name).ok(),
            Environment::Fixed(vars) => vars.get(name).cloned(),
        };
        v.filter(|v| !v.is_empty())
    }
}

impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: the values include AWS secret keys.
        match self {
            Environment::Process => f.write_str("Environment::Process"),
            Environment::Fixed(vars) => f
                .debug_tuple("Environment::Fixed")
                .field(&vars.keys().collect::<Vec<_>>())
                .finish(),
        }
    }
}

/// The parts of an `external_account` credential configuration file that are used
/// (<https://google.aip.dev/auth/4117>).
#[derive(serde::Deserialize)]
struct ExternalAccountFile {
    #[serde(rename = "type")]
    kind: String,
    audience: String,
    subject_token_type: String,
    #[serde(default)]
    service_account_impersonation_url: Option<String>,
    #[serde(default)]
    service_account_impersonation: Option<ImpersonationOptions>,
    credential_source: CredentialSource,
}

#[derive(serde::Deserialize)]
struct ImpersonationOptions {
    #[serde(default)]
    token_lifetime_seconds: Option<u64>,
}

/// Every field of the sources AIP-4117 describes; which source it is follows from which
/// fields are there (`environment_id`: AWS; else `file`; else `url`).
#[derive(serde::Deserialize)]
struct CredentialSource {
    #[serde(default)]
    file: Option<std::path::PathBuf>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    format: Option<SourceFormat>,
    #[serde(default)]
    environment_id: Option<String>,
    #[serde(default)]
    region_url: Option<String>,
    #[serde(default)]
    regional_cred_verification_url: Option<String>,
    #[serde(default)]
    imdsv2_session_token_url: Option<String>,
    #[serde(default)]
    executable: Option<serde_json::Value>,
}

#[derive(serde::Deserialize)]
struct SourceFormat {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    subject_token_field_name: Option<String>,
}

/// Where keyless credentials come from and what they are for.
#[derive(Clone, Debug)]
pub struct KeylessConfig {
    /// The daemon's own token.
    pub own: OwnToken,
    /// The IAM Credentials API's root.
    pub iam_url: String,
    /// The OAuth token endpoint (the JWT's audience).
    pub token_url: String,
    /// The service account that signs (and whose delegation is used).
    pub service_account: String,
    /// The admin to act as.
    pub subject: String,
    /// The scopes asked for.
    pub scopes: Vec<String>,
    /// Where `AWS_*` and `GOOGLE_APPLICATION_CREDENTIALS` are read.
    pub env: Environment,
}

/// yup-oauth2's authenticator over our HTTP client.
type YupAuthenticator = yup_oauth2::authenticator::Authenticator<HttpsConnector<HttpConnector>>;

/// Access tokens for the delegated admin, made without a key; cached until a minute before
/// they expire.
pub struct KeylessAuth {
    http: HttpsClient,
    config: KeylessConfig,
    timeout: Duration,
    /// The metadata server's token (yup-oauth2), with `credentials = "metadata"`.
    metadata: Option<YupAuthenticator>,
    cache: tokio::sync::Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for KeylessAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the cached token.
        f.debug_struct("KeylessAuth")
            .field("service_account", &self.config.service_account)
            .field("subject", &self.config.subject)
            .finish_non_exhaustive()
    }
}

/// A token endpoint's answer.
#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// signJwt's answer.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignedJwt {
    signed_jwt: String,
}

/// generateAccessToken's answer.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct GeneratedToken {
    access_token: String,
}

/// AWS security credentials: from `AWS_*` variables or the instance metadata's role.
#[derive(Clone, PartialEq)]
pub struct AwsCredentials {
    /// The access key id (an identifier, not a secret).
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// The session token of temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"(redacted)")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "(redacted)"),
            )
            .finish()
    }
}

/// The role credentials the EC2 instance metadata serves
/// (<https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instance-metadata-security-credentials.html>).
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RoleCredentials {
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    token: Option<String>,
}

/// What each step's failure asks the operator to do.
fn advice(step: &'static str) -> &'static str {
    match step {
        "metadata" => "run on Compute Engine or GKE with a service account attached to the VM or pod",
        "credential file" => "use the credential configuration file `gcloud iam workload-identity-pools create-cred-config` writes (a file, URL or AWS credential_source), and check that the daemon can read it and its token file",
        "subject token URL" => "check credential_source.url and its headers: the local identity endpoint (Azure IMDS, or your own) must answer with the workload's token",
        "AWS metadata" => "run on EC2 with an instance profile (IAM role) attached, or set AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION; with IMDSv2 required, the file needs imdsv2_session_token_url (create-cred-config --enable-imdsv2)",
        "STS" => "check the workload identity pool provider (audience, attribute conditions; for AWS, the account id) and that the subject token is current",
        "generateAccessToken" => "grant the workload identity pool's principal roles/iam.workloadIdentityUser (any other caller: roles/iam.serviceAccountTokenCreator) on the service account in service_account_impersonation_url, and enable the IAM Service Account Credentials API",
        "signJwt" => "grant the daemon's identity (the attached service account, the impersonated service account, or the workload identity pool's principal) roles/iam.serviceAccountTokenCreator on [google].service_account, and enable the IAM Service Account Credentials API",
        _ => "check [google].token_url",
    }
}

/// What a signJwt refused with `ACCESS_TOKEN_SCOPE_INSUFFICIENT` asks for: the VM's access
/// scopes, not a role
/// (<https://cloud.google.com/compute/docs/access/service-accounts#accesscopesiam>).
const SCOPE_INSUFFICIENT_ADVICE: &str = "the daemon's own token lacks the access scope to call the IAM Credentials API (ACCESS_TOKEN_SCOPE_INSUFFICIENT), as on a Compute Engine VM created with the default access scopes. Stop the VM, set its access scopes to \"Allow full access to all Cloud APIs\" (the cloud-platform scope: gcloud compute instances set-service-account --scopes=cloud-platform), and start it again; a role grant does not fix this";

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A failure of `step`, with `detail` (never a secret).
fn failed(step: &'static str, detail: String) -> DirectoryError {
    DirectoryError::Keyless {
        step,
        detail,
        advice: advice(step),
    }
}

impl KeylessAuth {
    /// Keyless credentials over `http`; each request may take at most `timeout`.
    ///
    /// With `metadata`, `GOOGLE_APPLICATION_CREDENTIALS` must be unset: yup-oauth2's
    /// metadata flow is only reachable through its application-default lookup, which
    /// prefers that variable's key file, and this mode promises no key.
    pub async fn new(
        http: HttpsClient,
        config: KeylessConfig,
        timeout: Duration,
    ) -> Result<KeylessAuth, DirectoryError> {
        let metadata = match &config.own {
            OwnToken::Metadata { url } => {
                check_metadata_url(url)?;
                Some(yup_metadata(&http, url, &config.env, timeout).await?)
            }
            OwnToken::ExternalAccount { sts_url, .. } => {
                check_url(sts_url)?;
                None
            }
        };
        check_url(&config.iam_url)?;
        check_url(&config.token_url)?;
        Ok(KeylessAuth {
            http,
            config,
            timeout,
            metadata,
            cache: tokio::sync::Mutex::new(None),
        })
    }

    /// The service account that signs.
    pub fn service_account(&self) -> &str {
        &self.config.service_account
    }

    /// A token for the delegated admin: the cached one, or (`force`, or none, or about to
    /// expire) a new one.
    pub async fn token(&self, force: bool) -> Result<String, DirectoryError> {
        let mut cache = self.cache.lock().await;
        if let Some((t, until)) = cache.as_ref() {
            if !force && Instant::now() + Duration::from_secs(60) < *until {
                return Ok(t.clone());
            }
        }
        let own = self.own_token(force).await?;
        let jwt = self.sign(&own).await?;
        let (token, lifetime) = self.exchange(&jwt).await?;
        *cache = Some((token.clone(), Instant::now() + lifetime));
        Ok(token)
    }

    /// Step 1: the daemon's own token.
    async fn own_token(&self, force: bool) -> Result<String, DirectoryError> {
        match (&self.config.own, &self.metadata) {
            (OwnToken::Metadata { .. }, Some(yup)) => self.metadata_token(yup, force).await,
            (OwnToken::ExternalAccount { file, sts_url }, _) => {
                self.federated_token(file, sts_url).await
            }
            (OwnToken::Metadata { .. }, None) => Err(DirectoryError::Token(
                "the metadata server's authenticator was not built".into(),
            )),
        }
    }

    /// The attached service account's token, from the metadata server, through yup-oauth2
    /// (which caches it until a minute before it expires).
    async fn metadata_token(
        &self,
        yup: &YupAuthenticator,
        force: bool,
    ) -> Result<String, DirectoryError> {
        let scopes = [CLOUD_PLATFORM];
        let call = async {
            if force {
                yup.force_refreshed_token(&scopes).await
            } else {
                yup.token(&scopes).await
            }
        };
        // yup-oauth2's own timeout stops at the answer's headers; this one covers the body.
        let answer = tokio::time::timeout(
            self.timeout.saturating_add(Duration::from_millis(100)),
            call,
        )
        .await
        .map_err(|_| {
            DirectoryError::TokenUnavailable(format!(
                "metadata: no answer within {} s",
                self.timeout.as_secs_f64()
            ))
        })?;
        match answer {
            Ok(t) => t.token().map(str::to_string).ok_or_else(|| {
                failed(
                    "metadata",
                    "the metadata server sent no access token".into(),
                )
            }),
            // Not reached or timed out: retried like an API call.
            Err(
                e @ (yup_oauth2::Error::HttpError(_)
                | yup_oauth2::Error::HttpClientError(_)
                | yup_oauth2::Error::LowLevelError(_)),
            ) => Err(DirectoryError::TokenUnavailable(format!("metadata: {e}"))),
            // yup-oauth2 parses the body whatever the status: a 404 (no account attached)
            // or a 5xx page is "not JSON". serde_json's message gives only the position.
            Err(yup_oauth2::Error::JSONError(e)) => Err(failed(
                "metadata",
                format!("the metadata server's answer is not a token ({e})"),
            )),
            Err(e) => Err(failed("metadata", e.to_string())),
        }
    }

    /// A federated token: the credential file's subject token exchanged at the STS, then,
    /// when the file names one, exchanged again for the impersonated account's token.
    async fn federated_token(
        &self,
        file: &std::path::Path,
        sts_url: &str,
    ) -> Result<String, DirectoryError> {
        let conf = read_external_account(file)?;
        let subject_token = self.subject_token(&conf).await?;
        let impersonation = match &conf.service_account_impersonation_url {
            Some(u) => Some(impersonation_url(u, &self.config.iam_url)?),
            None => None,
        };
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair(
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            )
            .append_pair("audience", &conf.audience)
            // With or without impersonation the daemon only calls IAM Credentials, which
            // takes cloud-platform (AIP-4117: "the cloud platform or IAM scope").
            .append_pair("scope", CLOUD_PLATFORM)
            .append_pair(
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            )
            .append_pair("subject_token", &subject_token)
            .append_pair("subject_token_type", &conf.subject_token_type)
            .finish();
        drop(subject_token);
        let url = format!("{}/v1/token", sts_url.trim_end_matches('/'));
        let request = http::Request::post(url)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form);
        let (status, body) = self.send("STS", request).await?;
        if status != 200 {
            return Err(self.step_failed("STS", status, &body));
        }
        let t: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| failed("STS", format!("HTTP {status}: not a token answer ({e})")))?;
        match impersonation {
            None => Ok(t.access_token),
            Some(url) => {
                let lifetime = conf
                    .service_account_impersonation
                    .and_then(|o| o.token_lifetime_seconds)
                    .unwrap_or(3600);
                self.generate_access_token(&url, &t.access_token, lifetime)
                    .await
            }
        }
    }

    /// The subject token the credential file's `credential_source` describes
    /// (AIP-4117: AWS when `environment_id` is there, else a file, else a URL).
    async fn subject_token(&self, conf: &ExternalAccountFile) -> Result<String, DirectoryError> {
        let source = &conf.credential_source;
        if let Some(env_id) = &source.environment_id {
            if env_id != "aws1" {
                return Err(failed(
                    "credential file",
                    format!("credential_source.environment_id is {env_id:?}; this version knows \"aws1\" only"),
                ));
            }
            return self.aws_subject_token(source, &conf.audience).await;
        }
        if let Some(path) = &source.file {
            let raw = std::fs::read_to_string(path).map_err(|e| {
                failed(
                    "credential file",
                    format!("cannot read the subject token {}: {e}", path.display()),
                )
            })?;
            return extract_token(&raw, source.format.as_ref()).map_err(|why| {
                failed(
                    "credential file",
                    format!("the subject token file {} {why}", path.display()),
                )
            });
        }
        if let Some(url) = &source.url {
            return self
                .url_subject_token(url, source.headers.as_ref(), source.format.as_ref())
                .await;
        }
        let what = if source.executable.is_some() {
            "an executable credential_source is not supported (AIP-4117 gates it behind GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES); use a file, URL or AWS source"
        } else {
            "credential_source has none of file, url or environment_id"
        };
        Err(failed("credential file", what.into()))
    }

    /// A URL-sourced subject token (Azure's IMDS, or any local endpoint): GET with the
    /// file's headers, then the body as text or one JSON field.
    async fn url_subject_token(
        &self,
        url: &str,
        headers: Option<&BTreeMap<String, String>>,
        format: Option<&SourceFormat>,
    ) -> Result<String, DirectoryError> {
        const STEP: &str = "subject token URL";
        check_metadata_url(url).map_err(|e| failed(STEP, e.to_string()))?;
        let mut request = http::Request::get(url);
        for (name, value) in headers.into_iter().flatten() {
            request = request.header(name.as_str(), value.as_str());
        }
        // The header values may be credentials: an invalid one is named, never shown.
        let request = request.body(String::new()).map_err(|_| {
            failed(
                STEP,
                "credential_source.headers has a header name or value HTTP does not allow".into(),
            )
        })?;
        let (status, body) = self.send(STEP, Ok(request)).await?;
        if status != 200 {
            return Err(self.step_failed(STEP, status, &body));
        }
        let raw = String::from_utf8(body).map_err(|_| {
            failed(
                STEP,
                format!("{url} answered with a body that is not UTF-8"),
            )
        })?;
        extract_token(&raw, format)
            .map_err(|why| failed(STEP, format!("the answer of {url} {why}")))
    }

    /// AWS: a GetCallerIdentity request signed with the workload's AWS credentials
    /// (AIP-4117, "Determining the subject token in AWS"; the same request as Google's
    /// sample <https://cloud.google.com/iam/docs/samples/iam-workload-identity-aws-credential>).
    /// Region and credentials come from `AWS_*` variables when set, else from the EC2
    /// instance metadata URLs the file names.
    async fn aws_subject_token(
        &self,
        source: &CredentialSource,
        audience: &str,
    ) -> Result<String, DirectoryError> {
        const STEP: &str = "AWS metadata";
        let env = &self.config.env;
        let Some(verification) = &source.regional_cred_verification_url else {
            return Err(failed(
                "credential file",
                "an AWS credential_source needs regional_cred_verification_url".into(),
            ));
        };
        // Before anything is read, signed or sent: the signed request is a credential, so
        // it may only ever name AWS's own STS.
        check_aws_verification_url(verification)?;
        let region = env
            .var("AWS_REGION")
            .or_else(|| env.var("AWS_DEFAULT_REGION"));
        let credentials = match (
            env.var("AWS_ACCESS_KEY_ID"),
            env.var("AWS_SECRET_ACCESS_KEY"),
        ) {
            (Some(access_key_id), Some(secret_access_key)) => Some(AwsCredentials {
                access_key_id,
                secret_access_key,
                session_token: env.var("AWS_SESSION_TOKEN"),
            }),
            _ => None,
        };
        // IMDSv2: a session token first, and only when the metadata server is needed.
        let session = match (
            &source.imdsv2_session_token_url,
            region.is_none() || credentials.is_none(),
        ) {
            (Some(u), true) => Some(self.imds_session(u).await?),
            _ => None,
        };
        let region = match region {
            Some(r) => r,
            None => {
                let Some(u) = &source.region_url else {
                    return Err(failed(STEP, "neither AWS_REGION nor AWS_DEFAULT_REGION is set, and the file has no region_url".into()));
                };
                // The availability zone (`us-east-1d`): the region is all but its letter.
                let mut zone = self
                    .imds_get(u, session.as_deref())
                    .await?
                    .trim()
                    .to_string();
                zone.pop();
                zone
            }
        };
        if region.is_empty()
            || !region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(failed(STEP, format!("{region:?} is not an AWS region")));
        }
        let credentials = match credentials {
            Some(c) => c,
            None => {
                let Some(u) = &source.url else {
                    return Err(failed(STEP, "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set, and the file has no url for the instance's role".into()));
                };
                let role = self.imds_get(u, session.as_deref()).await?;
                let role = role.lines().next().unwrap_or("").trim().to_string();
                if role.is_empty() || role.contains('/') {
                    return Err(failed(
                        STEP,
                        format!("{u} names no IAM role (is an instance profile attached?)"),
                    ));
                }
                let body = self
                    .imds_get(
                        &format!("{}/{role}", u.trim_end_matches('/')),
                        session.as_deref(),
                    )
                    .await?;
                // serde_json can quote a value in its message; these are secrets: position only.
                let c: RoleCredentials = serde_json::from_str(&body).map_err(|e| {
                    failed(STEP, format!("the credentials of role {role} are not AWS's JSON (line {}, column {})", e.line(), e.column()))
                })?;
                AwsCredentials {
                    access_key_id: c.access_key_id,
                    secret_access_key: c.secret_access_key,
                    session_token: c.token.filter(|t| !t.is_empty()),
                }
            }
        };
        let url = verification.replace("{region}", &region);
        aws_signed_request(&credentials, &region, &url, audience, chrono::Utc::now())
            .map_err(|why| failed("credential file", why))
    }

    /// IMDSv2's session token (<https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/configuring-instance-metadata-service.html>).
    async fn imds_session(&self, url: &str) -> Result<String, DirectoryError> {
        const STEP: &str = "AWS metadata";
        check_aws_metadata_url(url)?;
        let request = http::Request::put(url)
            .header("x-aws-ec2-metadata-token-ttl-seconds", "300")
            .body(String::new());
        let (status, body) = self.send(STEP, request).await?;
        if status != 200 {
            return Err(self.step_failed(STEP, status, &body));
        }
        String::from_utf8(body)
            .map_err(|_| failed(STEP, format!("{url} sent a session token that is not text")))
    }

    /// One GET to the EC2 instance metadata, with the IMDSv2 session token if there is one.
    async fn imds_get(&self, url: &str, session: Option<&str>) -> Result<String, DirectoryError> {
        const STEP: &str = "AWS metadata";
        check_aws_metadata_url(url)?;
        let mut request = http::Request::get(url);
        if let Some(s) = session {
            request = request.header("x-aws-ec2-metadata-token", s);
        }
        let (status, body) = self.send(STEP, request.body(String::new())).await?;
        if status != 200 {
            return Err(self.step_failed(STEP, status, &body));
        }
        String::from_utf8(body).map_err(|_| {
            failed(
                STEP,
                format!("{url} answered with a body that is not UTF-8"),
            )
        })
    }

    /// Service account impersonation: the federated token for the account's own token
    /// (<https://cloud.google.com/iam/docs/reference/credentials/rest/v1/projects.serviceAccounts/generateAccessToken>).
    async fn generate_access_token(
        &self,
        url: &str,
        federated: &str,
        lifetime: u64,
    ) -> Result<String, DirectoryError> {
        const STEP: &str = "generateAccessToken";
        let body = serde_json::json!({
            "scope": [CLOUD_PLATFORM],
            "lifetime": format!("{lifetime}s"),
        })
        .to_string();
        let request = http::Request::post(url)
            .header(http::header::AUTHORIZATION, format!("Bearer {federated}"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body);
        let (status, body) = self.send(STEP, request).await?;
        if status != 200 {
            return Err(self.step_failed(STEP, status, &body));
        }
        let t: GeneratedToken = serde_json::from_slice(&body)
            .map_err(|e| failed(STEP, format!("HTTP {status}: not a token answer ({e})")))?;
        Ok(t.access_token)
    }

    /// Step 2: the delegation JWT, signed by the IAM Credentials API with the service
    /// account's Google-held key.
    async fn sign(&self, own: &str) -> Result<String, DirectoryError> {
        let now = chrono::Utc::now().timestamp();
        let claims = serde_json::json!({
            "iss": self.config.service_account,
            "sub": self.config.subject,
            "scope": self.config.scopes.join(" "),
            "aud": self.config.token_url,
            "iat": now,
            "exp": now + 3600,
        });
        let url = format!(
            "{}/v1/projects/-/serviceAccounts/{}:signJwt",
            self.config.iam_url.trim_end_matches('/'),
            self.config.service_account
        );
        let body = serde_json::json!({ "payload": claims.to_string() }).to_string();
        let request = http::Request::post(url)
            .header(http::header::AUTHORIZATION, format!("Bearer {own}"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body);
        let (status, body) = self.send("signJwt", request).await?;
        if status == 403 && contains(&body, b"ACCESS_TOKEN_SCOPE_INSUFFICIENT") {
            // The token lacks the access scope to call the IAM Credentials API (a Compute
            // Engine VM with the default access scopes): no role grant fixes that.
            let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            return Err(DirectoryError::Keyless {
                step: "signJwt",
                detail: format!("HTTP {status}: {}", text.trim()),
                advice: SCOPE_INSUFFICIENT_ADVICE,
            });
        }
        if status != 200 {
            return Err(self.step_failed("signJwt", status, &body));
        }
        let signed: SignedJwt = serde_json::from_slice(&body)
            .map_err(|e| self.step_failed("signJwt", status, e.to_string().as_bytes()))?;
        Ok(signed.signed_jwt)
    }

    /// Step 3: the signed JWT for an access token, as with a key file.
    async fn exchange(&self, jwt: &str) -> Result<(String, Duration), DirectoryError> {
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
            .append_pair("assertion", jwt)
            .finish();
        let request = http::Request::post(&self.config.token_url)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form);
        let (status, body) = self.send("token exchange", request).await?;
        if status == 200 {
            let t: TokenAnswer = serde_json::from_slice(&body).map_err(|e| {
                self.step_failed("token exchange", status, e.to_string().as_bytes())
            })?;
            return Ok((
                t.access_token,
                Duration::from_secs(t.expires_in.unwrap_or(3600)),
            ));
        }
        // An OAuth error answer means what it means with a key file.
        match serde_json::from_slice::<yup_oauth2::error::AuthError>(&body) {
            Ok(e) if status < 500 => Err(super::auth::refusal(
                e,
                &super::auth::Identity {
                    client_id: &format!("(the unique id of {})", self.config.service_account),
                    client_email: &self.config.service_account,
                    subject: &self.config.subject,
                    scopes: &self.config.scopes,
                },
            )),
            _ => Err(self.step_failed("token exchange", status, &body)),
        }
    }

    /// One request under the timeout; a connection failure, a timeout or a 5xx is
    /// `TokenUnavailable` (the caller retries it). A request that cannot be built is
    /// named by `step`; its text never includes header values.
    async fn send(
        &self,
        step: &'static str,
        request: Result<http::Request<String>, http::Error>,
    ) -> Result<(u16, Vec<u8>), DirectoryError> {
        // http::Error's text names what is wrong, never a header's value.
        let request = request.map_err(|e| failed(step, e.to_string()))?;
        let call = async {
            let r = self
                .http
                .request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = r.status().as_u16();
            let body = r.into_body().collect().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((status, body.to_bytes().to_vec()))
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok((status, _))) if status >= 500 => Err(DirectoryError::TokenUnavailable(format!(
                "{step}: HTTP {status}"
            ))),
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(DirectoryError::TokenUnavailable(format!("{step}: {e}"))),
            Err(_) => Err(DirectoryError::TokenUnavailable(format!(
                "{step}: no answer within {} s",
                self.timeout.as_secs_f64()
            ))),
        }
    }

    /// A refusal: the status and the start of the answer (a refusal carries no token).
    fn step_failed(&self, step: &'static str, status: u16, body: &[u8]) -> DirectoryError {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        failed(step, format!("HTTP {status}: {}", text.trim()))
    }
}

/// yup-oauth2's instance-metadata authenticator, pointed at `root`.
async fn yup_metadata(
    http: &HttpsClient,
    root: &str,
    env: &Environment,
    timeout: Duration,
) -> Result<YupAuthenticator, DirectoryError> {
    use yup_oauth2::authenticator::ApplicationDefaultCredentialsTypes;
    let refuse = |path: String| {
        DirectoryError::Keyless {
            step: "metadata",
            detail: format!("GOOGLE_APPLICATION_CREDENTIALS is set ({path})"),
            advice: "unset GOOGLE_APPLICATION_CREDENTIALS in the daemon's environment: with it, the metadata flow would use that key file instead; or use credentials = \"key\" with [google].key_file",
        }
    };
    if let Some(path) = env.var("GOOGLE_APPLICATION_CREDENTIALS") {
        return Err(refuse(path));
    }
    let opts = yup_oauth2::ApplicationDefaultCredentialsFlowOpts {
        metadata_url: Some(format!(
            "{}/computeMetadata/v1/instance/service-accounts/default/token",
            root.trim_end_matches('/')
        )),
    };
    let builder = yup_oauth2::ApplicationDefaultCredentialsAuthenticator::with_client(
        opts,
        yup_oauth2::CustomHyperClientBuilder::from(http.clone()),
    )
    .await;
    match builder {
        ApplicationDefaultCredentialsTypes::InstanceMetadata(b) => b
            .with_timeout(timeout)
            .build()
            .await
            .map_err(|e| failed("metadata", e.to_string())),
        // The process has the variable although the environment given did not say so.
        ApplicationDefaultCredentialsTypes::ServiceAccount(_) => Err(refuse(
            std::env::var("GOOGLE_APPLICATION_CREDENTIALS").unwrap_or_default(),
        )),
    }
}

/// Reads and checks the credential configuration file (it holds no secret, but an error
/// keeps to the position anyway).
fn read_external_account(file: &std::path::Path) -> Result<ExternalAccountFile, DirectoryError> {
    let text = std::fs::read(file).map_err(|e| {
        failed(
            "credential file",
            format!("cannot read {}: {e}", file.display()),
        )
    })?;
    let conf: ExternalAccountFile = serde_json::from_slice(&text).map_err(|e| {
        failed(
            "credential file",
            format!(
                "{} is not an external_account credential file (line {}, column {})",
                file.display(),
                e.line(),
                e.column()
            ),
        )
    })?;
    if conf.kind != "external_account" {
        return Err(failed(
            "credential file",
            format!(
                "{} has type {:?}, not \"external_account\"",
                file.display(),
                conf.kind
            ),
        ));
    }
    Ok(conf)
}

/// What the credential configuration file is, for `doctor`: its source, and the account it
/// impersonates. A file that cannot be read is described as such (the pull's own error
/// says why).
pub fn describe_external_account(file: &std::path::Path) -> String {
    let Ok(conf) = read_external_account(file) else {
        return format!(
            "Workload Identity Federation ({} cannot be used)",
            file.display()
        );
    };
    let s = &conf.credential_source;
    let source = if let Some(id) = &s.environment_id {
        format!("an AWS source ({id})")
    } else if let Some(f) = &s.file {
        format!("a token file {}", f.display())
    } else if let Some(u) = &s.url {
        let json = s.format.as_ref().and_then(|f| f.kind.as_deref()) == Some("json");
        format!("a token URL {u}{}", if json { " (JSON)" } else { "" })
    } else {
        "no usable credential_source".to_string()
    };
    let impersonating = conf
        .service_account_impersonation_url
        .as_deref()
        .and_then(|u| u.rsplit('/').next())
        .and_then(|last| last.strip_suffix(":generateAccessToken"))
        .map(|sa| format!(", impersonating {sa}"))
        .unwrap_or_default();
    format!("Workload Identity Federation from {source}{impersonating}")
}

/// The token in a file's or URL's text: all of it (`text`, the default), or one field of
/// its JSON. The error completes "the subject token file X ...".
fn extract_token(raw: &str, format: Option<&SourceFormat>) -> Result<String, String> {
    match format {
        Some(SourceFormat {
            kind: Some(k),
            subject_token_field_name,
        }) if k == "json" => {
            let Some(field) = subject_token_field_name else {
                return Err("is JSON, but format.subject_token_field_name is missing".into());
            };
            serde_json::from_str::<serde_json::Value>(raw)
                .ok()
                .and_then(|v| v.get(field).and_then(|t| t.as_str()).map(str::to_string))
                .filter(|t| !t.is_empty())
                .ok_or_else(|| format!("has no string field {field:?}"))
        }
        Some(SourceFormat { kind: Some(k), .. }) if k != "text" => {
            Err(format!("has format {k:?}; it must be \"text\" or \"json\""))
        }
        _ => {
            let t = raw.trim();
            if t.is_empty() {
                Err("is empty".into())
            } else {
                Ok(t.to_string())
            }
        }
    }
}

/// The file's `service_account_impersonation_url` on the `[google].iam_url` host: only
/// its path, which names the account, is taken.
fn impersonation_url(from_file: &str, iam_url: &str) -> Result<String, DirectoryError> {
    let bad = |why: &str| {
        failed(
            "credential file",
            format!("service_account_impersonation_url {from_file:?} {why}"),
        )
    };
    let parsed = url::Url::parse(from_file).map_err(|e| bad(&format!("is not a URL ({e})")))?;
    let path = parsed.path();
    let account = path
        .strip_prefix("/v1/projects/-/serviceAccounts/")
        .and_then(|rest| rest.strip_suffix(":generateAccessToken"))
        .unwrap_or("");
    if !account.contains('@') || account.contains('/') {
        return Err(bad(
            "is not .../v1/projects/-/serviceAccounts/EMAIL:generateAccessToken",
        ));
    }
    Ok(format!("{}{path}", iam_url.trim_end_matches('/')))
}

/// The metadata server speaks plain http by design: allow it for its own names, and
/// otherwise apply the usual rule.
pub fn check_metadata_url(url: &str) -> Result<(), DirectoryError> {
    let parsed = url::Url::parse(url).map_err(|e| DirectoryError::Url {
        url: url.to_string(),
        reason: e.to_string(),
    })?;
    let metadata_host = matches!(
        parsed.host_str(),
        Some("metadata.google.internal") | Some("169.254.169.254")
    );
    if parsed.scheme() == "http" && metadata_host {
        return Ok(());
    }
    check_url(url).map(|_| ())
}

/// AIP-4117: the AWS metadata URLs (`region_url`, `url`, `imdsv2_session_token_url`) must
/// be on the instance metadata's addresses, `169.254.169.254` or `fd00:ec2::254`, since
/// their answers are credentials. Loopback is allowed too (a local proxy, the fake).
fn check_aws_metadata_url(url: &str) -> Result<(), DirectoryError> {
    let bad = |reason: &str| failed("credential file", format!("{url:?} {reason}"));
    let parsed = url::Url::parse(url).map_err(|e| bad(&format!("is not a URL ({e})")))?;
    let allowed = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => {
            ip == std::net::Ipv4Addr::new(169, 254, 169, 254) || ip.is_loopback()
        }
        Some(url::Host::Ipv6(ip)) => {
            ip == std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) || ip.is_loopback()
        }
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    if !allowed || !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad(
            "is not on the EC2 instance metadata (169.254.169.254 or [fd00:ec2::254])",
        ));
    }
    Ok(())
}

/// AIP-4117: `regional_cred_verification_url` must be AWS STS's GetCallerIdentity,
/// `https://sts.amazonaws.com` or `https://sts.{region}.amazonaws.com` (the `{region}`
/// template, or a region's name), with `Action=GetCallerIdentity`. The request signed for it
/// proves the workload's AWS identity to whoever receives it, so a credential file that
/// names another host (or another action) is refused before anything is signed or sent.
fn check_aws_verification_url(url: &str) -> Result<(), DirectoryError> {
    let bad = |reason: &str| {
        failed(
            "credential file",
            format!("regional_cred_verification_url {url:?} {reason}"),
        )
    };
    let templated = url.replace("{region}", "region");
    let parsed = url::Url::parse(&templated).map_err(|e| bad(&format!("is not a URL ({e})")))?;
    if parsed.scheme() != "https" || parsed.port().is_some() || !parsed.username().is_empty() {
        return Err(bad("must be https://sts[.REGION].amazonaws.com"));
    }
    let host_ok = match parsed.host_str() {
        Some("sts.amazonaws.com") => true,
        Some(h) => h
            .strip_prefix("sts.")
            .and_then(|r| r.strip_suffix(".amazonaws.com"))
            .is_some_and(|r| {
                !r.is_empty()
                    && r.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            }),
        None => false,
    };
    if !host_ok {
        return Err(bad(
            "must be on AWS STS: https://sts[.REGION].amazonaws.com",
        ));
    }
    let action = parsed
        .query_pairs()
        .filter(|(k, _)| k == "Action")
        .map(|(_, v)| v.into_owned())
        .collect::<Vec<_>>();
    if action != ["GetCallerIdentity"] {
        return Err(bad("must ask for Action=GetCallerIdentity, once"));
    }
    Ok(())
}

/// The serialized, signed GetCallerIdentity request that is AWS's subject token
/// (AIP-4117): the request's URL, method and headers as JSON, URL-encoded. It is signed with
/// Signature Version 4
/// (<https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html>),
/// `x-goog-cloud-target-resource` (the pool provider) included among the signed headers, so
/// the token is good for that provider only. The request is never sent by us: Google's STS
/// sends it to AWS to learn who signed it.
pub fn aws_signed_request(
    credentials: &AwsCredentials,
    region: &str,
    url: &str,
    audience: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<String, String> {
    let parsed = url::Url::parse(url)
        .map_err(|e| format!("regional_cred_verification_url {url:?} is not a URL ({e})"))?;
    let host = match (parsed.scheme(), parsed.host_str()) {
        ("https", Some(h)) => h.to_string(),
        _ => {
            return Err(format!(
                "regional_cred_verification_url {url:?} must be an https URL"
            ))
        }
    };
    let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
    let mut headers = vec![
        ("host".to_string(), host),
        ("x-amz-date".to_string(), amz_date.clone()),
    ];
    if let Some(t) = &credentials.session_token {
        headers.push(("x-amz-security-token".to_string(), t.clone()));
    }
    headers.push((
        "x-goog-cloud-target-resource".to_string(),
        audience.to_string(),
    ));
    let authorization = sigv4::authorization(
        "POST",
        &parsed,
        &headers,
        b"",
        credentials,
        region,
        "sts",
        &amz_date,
    );
    let mut list = vec![serde_json::json!({"key": "Authorization", "value": authorization})];
    list.extend(
        headers
            .iter()
            .map(|(k, v)| serde_json::json!({"key": k, "value": v})),
    );
    let request = serde_json::json!({"url": url, "method": "POST", "headers": list});
    Ok(url::form_urlencoded::byte_serialize(request.to_string().as_bytes()).collect())
}

/// AWS Signature Version 4 with ring's HMAC-SHA256 and SHA-256
/// (<https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html>).
/// Written for the one request signed here (a POST to a path of `/` with a query); the
/// tests check it against AWS's own test-suite vectors and Google's GetCallerIdentity ones.
pub mod sigv4 {
    use super::AwsCredentials;
    use ring::{digest, hmac};

    /// RFC 3986 percent-encoding of everything but the unreserved characters, as SigV4
    /// wants it.
    fn encode(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn mac(key: &[u8], data: &str) -> hmac::Tag {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
    }

    /// The canonical request and the signed header list for `headers` (lower-case names,
    /// `host` among them).
    pub fn canonical_request(
        method: &str,
        url: &url::Url,
        headers: &[(String, String)],
        payload: &[u8],
    ) -> (String, String) {
        // Each path segment encoded again (every service but S3).
        let path = if url.path().is_empty() {
            "/"
        } else {
            url.path()
        };
        let path: Vec<String> = path.split('/').map(encode).collect();
        let mut query: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| (encode(&k), encode(&v)))
            .collect();
        query.sort();
        let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut sorted: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_ascii_lowercase(),
                    v.split_whitespace().collect::<Vec<_>>().join(" "),
                )
            })
            .collect();
        sorted.sort();
        let canonical_headers: String = sorted.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
        let signed: Vec<&str> = sorted.iter().map(|(k, _)| k.as_str()).collect();
        let signed = signed.join(";");
        let request = format!(
            "{method}\n{}\n{}\n{canonical_headers}\n{signed}\n{}",
            path.join("/"),
            query.join("&"),
            hex(digest::digest(&digest::SHA256, payload).as_ref())
        );
        (request, signed)
    }

    /// The `Authorization` header for the request.
    #[allow(clippy::too_many_arguments)]
    pub fn authorization(
        method: &str,
        url: &url::Url,
        headers: &[(String, String)],
        payload: &[u8],
        credentials: &AwsCredentials,
        region: &str,
        service: &str,
        amz_date: &str,
    ) -> String {
        let (request, signed) = canonical_request(method, url, headers, payload);
        let date = amz_date.get(..8).unwrap_or(amz_date);
        let scope = format!("{date}/{region}/{service}/aws4_request");
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex(digest::digest(&digest::SHA256, request.as_bytes()).as_ref())
        );
        let key = format!("AWS4{}", credentials.secret_access_key);
        let k = mac(key.as_bytes(), date);
        let k = mac(k.as_ref(), region);
        let k = mac(k.as_ref(), service);
        let k = mac(k.as_ref(), "aws4_request");
        let signature = hex(mac(k.as_ref(), &to_sign).as_ref());
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
            credentials.access_key_id
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUITE_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn suite(method: &str, url: &str) -> String {
        // AWS's SigV4 test suite (aws-sig-v4-test-suite): AKIDEXAMPLE, us-east-1, service
        // "service", 20150830T123600Z.
        let url = url::Url::parse(url).unwrap();
        let headers = [
            ("host".to_string(), "example.amazonaws.com".to_string()),
            ("x-amz-date".to_string(), "20150830T123600Z".to_string()),
        ];
        let c = AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: SUITE_KEY.into(),
            session_token: None,
        };
        sigv4::authorization(
            method,
            &url,
            &headers,
            b"",
            &c,
            "us-east-1",
            "service",
            "20150830T123600Z",
        )
    }

    #[test]
    fn sigv4_matches_the_aws_test_suite() {
        let prefix = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=";
        for (method, url, signature) in [
            (
                "GET",
                "https://example.amazonaws.com/",
                "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            ),
            (
                "POST",
                "https://example.amazonaws.com/",
                "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
            ),
            // get-vanilla-query-order-key-case: the query is sorted.
            (
                "GET",
                "https://example.amazonaws.com/?Param2=value2&Param1=value1",
                "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
            ),
        ] {
            assert_eq!(
                suite(method, url),
                format!("{prefix}{signature}"),
                "{method} {url}"
            );
        }
    }

    /// The GetCallerIdentity vectors of Google's own auth library
    /// (googleapis/google-auth-library-python, tests/test_aws.py), with and without a
    /// session token (AWS's documentation example credentials).
    #[test]
    fn sigv4_matches_googles_get_caller_identity_vectors() {
        const TOKEN: &str = "AQoEXAMPLEH4aoAH0gNCAPyJxz4BlCFFxWNE1OPTgk5TthT+FvwqnKwRcOIfrRh3c/LTo6UDdyJwOOvEVPvLXCrrrUtdnniCEXAMPLE/IvU1dYUg2RVAJBanLiHb4IgRmpRV3zrkuWJOgQs8IZZaIv2BXIa2R4OlgkBN9bkUDNCJiBeb/AXlzBBko7b15fjrBs2+cTQtpZ3CYWFXG8C5zqx37wnOE49mRl/+OtkIKGO7fAE";
        let url = url::Url::parse(
            "https://sts.us-east-2.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
        )
        .unwrap();
        let mut c = AwsCredentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        };
        let mut headers = vec![
            (
                "host".to_string(),
                "sts.us-east-2.amazonaws.com".to_string(),
            ),
            ("x-amz-date".to_string(), "20200811T065522Z".to_string()),
        ];
        let sign = |h: &[(String, String)], c: &AwsCredentials| {
            sigv4::authorization(
                "POST",
                &url,
                h,
                b"",
                c,
                "us-east-2",
                "sts",
                "20200811T065522Z",
            )
        };
        assert_eq!(
            sign(&headers, &c),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20200811/us-east-2/sts/aws4_request, SignedHeaders=host;x-amz-date, Signature=9e722e5b7bfa163447e2a14df118b45ebd283c5aea72019bdf921d6e7dc01a9a"
        );
        c.session_token = Some(TOKEN.into());
        headers.push(("x-amz-security-token".to_string(), TOKEN.to_string()));
        assert_eq!(
            sign(&headers, &c),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20200811/us-east-2/sts/aws4_request, SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=596aa990b792d763465d73703e684ca273c45536c6d322c31be01a41d02e5b60"
        );
    }

    #[test]
    fn the_aws_subject_token_is_the_url_encoded_signed_request_bound_to_the_provider() {
        let c = AwsCredentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "secret/KEY+value".into(),
            session_token: Some("session+token/value".into()),
        };
        let now = chrono::DateTime::parse_from_rfc3339("2020-08-11T06:55:22Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let audience = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/aws";
        let url = "https://sts.eu-west-3.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15";
        let token = aws_signed_request(&c, "eu-west-3", url, audience, now).unwrap();
        assert!(!token.contains('{') && !token.contains('"'), "{token}");
        let json: String = url::form_urlencoded::parse(token.as_bytes())
            .next()
            .unwrap()
            .0
            .into_owned();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["url"], url);
        assert_eq!(v["method"], "POST");
        let headers: BTreeMap<String, String> = v["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["key"].as_str().unwrap().to_string(),
                    h["value"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(headers["host"], "sts.eu-west-3.amazonaws.com");
        assert_eq!(headers["x-amz-date"], "20200811T065522Z");
        assert_eq!(headers["x-amz-security-token"], "session+token/value");
        assert_eq!(headers["x-goog-cloud-target-resource"], audience);
        assert!(headers["Authorization"].starts_with("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20200811/eu-west-3/sts/aws4_request, SignedHeaders=host;x-amz-date;x-amz-security-token;x-goog-cloud-target-resource, Signature="), "{headers:?}");
        // The secret key itself is not in the token.
        assert!(!json.contains("secret/KEY+value"));
        // A plain http verification URL is refused.
        assert!(aws_signed_request(&c, "eu-west-3", "http://sts.example", audience, now).is_err());
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let c = AwsCredentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "the-secret-key".into(),
            session_token: Some("the-session-token".into()),
        };
        let env = Environment::fixed([
            ("AWS_SECRET_ACCESS_KEY", "the-secret-key"),
            ("AWS_SESSION_TOKEN", "the-session-token"),
        ]);
        let config = KeylessConfig {
            own: OwnToken::Metadata {
                url: "http://metadata.google.internal".into(),
            },
            iam_url: "https://iamcredentials.googleapis.com".into(),
            token_url: "https://oauth2.googleapis.com/token".into(),
            service_account: "sa@p.iam.gserviceaccount.com".into(),
            subject: "admin@example.com".into(),
            scopes: vec![],
            env,
        };
        for text in [
            format!("{c:?}"),
            format!("{config:?}"),
            format!("{:?}", config.env),
        ] {
            assert!(
                !text.contains("the-secret-key") && !text.contains("the-session-token"),
                "{text}"
            );
        }
        assert!(format!("{c:?}").contains("AKIAIOSFODNN7EXAMPLE"));
        assert!(format!("{:?}", config.env).contains("AWS_SESSION_TOKEN"));
    }

    #[test]
    fn a_fixed_environment_is_the_only_one_read() {
        let env = Environment::fixed([("AWS_REGION", "eu-west-3"), ("EMPTY", "")]);
        assert_eq!(env.var("AWS_REGION").as_deref(), Some("eu-west-3"));
        assert_eq!(env.var("EMPTY"), None);
        assert_eq!(env.var("PATH"), None);
    }

    #[tokio::test]
    async fn metadata_mode_refuses_google_application_credentials() {
        let http = super::super::auth::build_http_client().unwrap();
        let config = KeylessConfig {
            own: OwnToken::Metadata {
                url: "http://127.0.0.1:9".into(),
            },
            iam_url: "http://127.0.0.1:9".into(),
            token_url: "http://127.0.0.1:9/token".into(),
            service_account: "sa@p.iam.gserviceaccount.com".into(),
            subject: "admin@example.com".into(),
            scopes: vec![],
            env: Environment::fixed([("GOOGLE_APPLICATION_CREDENTIALS", "/etc/key.json")]),
        };
        let e = KeylessAuth::new(http, config, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "keyless Google credentials: the metadata step failed (GOOGLE_APPLICATION_CREDENTIALS is set (/etc/key.json)): unset GOOGLE_APPLICATION_CREDENTIALS in the daemon's environment: with it, the metadata flow would use that key file instead; or use credentials = \"key\" with [google].key_file"
        );
    }

    #[test]
    fn sources_extract_text_or_one_json_field() {
        let json = |field: &str| SourceFormat {
            kind: Some("json".into()),
            subject_token_field_name: Some(field.into()),
        };
        assert_eq!(extract_token(" tok \n", None).unwrap(), "tok");
        assert_eq!(
            extract_token(r#"{"access_token":"a.b.c"}"#, Some(&json("access_token"))).unwrap(),
            "a.b.c"
        );
        assert_eq!(
            extract_token(r#"{"x":"a"}"#, Some(&json("access_token"))).unwrap_err(),
            "has no string field \"access_token\""
        );
        let xml = SourceFormat {
            kind: Some("xml".into()),
            subject_token_field_name: None,
        };
        assert!(extract_token("t", Some(&xml)).is_err());
        assert_eq!(extract_token("  ", None).unwrap_err(), "is empty");
    }

    #[test]
    fn the_impersonation_url_keeps_its_account_on_the_configured_host() {
        let u = impersonation_url(
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/sa@p.iam.gserviceaccount.com:generateAccessToken",
            "http://127.0.0.1:8080/",
        )
        .unwrap();
        assert_eq!(u, "http://127.0.0.1:8080/v1/projects/-/serviceAccounts/sa@p.iam.gserviceaccount.com:generateAccessToken");
        assert!(impersonation_url(
            "https://iamcredentials.googleapis.com/v1/other",
            "https://x"
        )
        .is_err());
    }

    #[test]
    fn the_verification_url_must_be_aws_sts_get_caller_identity() {
        for ok in [
            "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
            "https://sts.eu-west-3.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
            "https://sts.amazonaws.com/?Action=GetCallerIdentity",
        ] {
            assert!(check_aws_verification_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "https://evil.example?Action=GetCallerIdentity",
            "https://sts.amazonaws.com.evil.example?Action=GetCallerIdentity",
            "https://sts.{region}.amazonaws.com.evil.example/?Action=GetCallerIdentity",
            "http://sts.amazonaws.com?Action=GetCallerIdentity",
            "https://sts.amazonaws.com:8443?Action=GetCallerIdentity",
            "https://user@sts.amazonaws.com?Action=GetCallerIdentity",
            "https://sts.amazonaws.com?Action=AssumeRole",
            "https://sts.amazonaws.com?Action=GetCallerIdentity&Action=AssumeRole",
            "https://sts.amazonaws.com",
            "not a url",
        ] {
            let e = check_aws_verification_url(bad).unwrap_err().to_string();
            assert!(e.contains("regional_cred_verification_url"), "{bad}: {e}");
        }
    }

    #[test]
    fn aws_metadata_urls_must_be_the_instance_metadata() {
        for ok in [
            "http://169.254.169.254/latest/meta-data/placement/availability-zone",
            "http://[fd00:ec2::254]/latest/api/token",
            "http://127.0.0.1:1234/latest/meta-data/iam/security-credentials",
        ] {
            assert!(check_aws_metadata_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://evil.example/latest/api/token",
            "http://10.0.0.1/x",
            "file:///etc/passwd",
        ] {
            assert!(check_aws_metadata_url(bad).is_err(), "{bad}");
        }
    }
}
