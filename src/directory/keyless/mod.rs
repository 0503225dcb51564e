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
//!   step (a failure must name its step and what to grant: docs/admin/google-setup.md),
//!   and there is no way to hand it a subject token. Its `credential_source` knows a file
//!   (without `format`) and a URL (with a mandatory `format`); it has no AWS source. Its
//!   impersonation (`service_account_impersonator`) is crate-private except behind an
//!   authorized-user refresh token, with `https://iamcredentials.googleapis.com` hard-coded, so
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
//!
//! # The modules
//!
//! This file has the types, the daemon's own token (`own_token`), impersonation
//! (`generateAccessToken`, when the credential file names an account to impersonate), and
//! the steps every keyless flow ends with: the delegation JWT signed by the IAM Credentials
//! API (`signJwt`) and its exchange at the token endpoint. `metadata` reads the metadata
//! servers (Google's, and EC2's for AWS); `sts` reads the credential configuration file,
//! gets its subject token and exchanges it at the security token service; `sigv4` signs
//! AWS's GetCallerIdentity request; `url` checks the URLs the credential file names.

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

mod metadata;
pub mod sigv4;
mod sts;
mod url;

use metadata::yup_metadata;
pub use sts::{aws_signed_request, describe_external_account};
pub use url::check_metadata_url;

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
        let form = ::url::form_urlencoded::Serializer::new(String::new())
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

#[cfg(test)]
mod tests {
    use super::sts::extract_token;
    use super::url::{check_aws_metadata_url, check_aws_verification_url, impersonation_url};
    use super::*;

    const SUITE_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn suite(method: &str, url: &str) -> String {
        // AWS's SigV4 test suite (aws-sig-v4-test-suite): AKIDEXAMPLE, us-east-1, service
        // "service", 20150830T123600Z.
        let url = ::url::Url::parse(url).unwrap();
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
        let url = ::url::Url::parse(
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
        let json: String = ::url::form_urlencoded::parse(token.as_bytes())
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
