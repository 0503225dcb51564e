//! Domain-wide delegation without a key file (`[google].credentials = "metadata"` or
//! `"external_account"`).
//!
//! Google Cloud can forbid service account keys (`iam.disableServiceAccountKeyCreation`).
//! Delegation still works: the daemon takes its own token, from the metadata server of its
//! VM or pod (<https://cloud.google.com/compute/docs/access/authenticate-workloads#applications>)
//! or from the security token service for a Workload Identity Federation credential
//! (<https://cloud.google.com/iam/docs/workload-identity-federation>),
//! has the IAM Credentials API sign the delegation JWT for `[google].service_account`
//! (<https://cloud.google.com/iam/docs/reference/credentials/rest/v1/projects.serviceAccounts/signJwt>),
//! and exchanges that JWT at the token endpoint as a key would
//! (<https://developers.google.com/identity/protocols/oauth2/service-account#authorizingrequests>).
//! The private key never leaves Google. yup-oauth2 has no step that signs a JWT for another
//! subject through signJwt, so the three requests are made here.

use std::time::{Duration, Instant};

use http_body_util::BodyExt;

use super::auth::{check_url, HttpsClient};
use super::DirectoryError;

/// The scope the daemon's own token needs to call signJwt.
pub const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

/// Where the daemon's own token (the one that calls signJwt) comes from.
#[derive(Clone, Debug)]
pub enum OwnToken {
    /// The metadata server of the Compute Engine VM or GKE pod.
    Metadata {
        /// Its root (`http://metadata.google.internal`).
        url: String,
    },
    /// Workload Identity Federation: a credential configuration file whose subject token
    /// (an OIDC token in a file: AWS, Azure, GitHub, Kubernetes...) is exchanged at the
    /// security token service (<https://cloud.google.com/iam/docs/reference/sts/rest/v1/TopLevel/token>).
    ExternalAccount {
        /// The credential configuration file (`"type": "external_account"`).
        file: std::path::PathBuf,
        /// The STS root (`https://sts.googleapis.com`).
        sts_url: String,
    },
}

/// The parts of an `external_account` credential configuration file that are used.
#[derive(serde::Deserialize)]
struct ExternalAccountFile {
    #[serde(rename = "type")]
    kind: String,
    audience: String,
    subject_token_type: String,
    credential_source: CredentialSource,
}

#[derive(serde::Deserialize)]
struct CredentialSource {
    /// The file holding the subject token; other sources (AWS's signed request, a URL)
    /// are not supported.
    #[serde(default)]
    file: Option<std::path::PathBuf>,
    #[serde(default)]
    format: Option<SourceFormat>,
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
}

/// Access tokens for the delegated admin, made without a key; cached until a minute before
/// they expire.
pub struct KeylessAuth {
    http: HttpsClient,
    config: KeylessConfig,
    timeout: Duration,
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

impl KeylessAuth {
    /// Keyless credentials over `http`; each request may take at most `timeout`.
    pub fn new(
        http: HttpsClient,
        config: KeylessConfig,
        timeout: Duration,
    ) -> Result<KeylessAuth, DirectoryError> {
        match &config.own {
            OwnToken::Metadata { url } => check_metadata_url(url)?,
            OwnToken::ExternalAccount { sts_url, .. } => {
                check_url(sts_url)?;
            }
        }
        check_url(&config.iam_url)?;
        check_url(&config.token_url)?;
        Ok(KeylessAuth {
            http,
            config,
            timeout,
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
        let own = self.own_token().await?;
        let jwt = self.sign(&own).await?;
        let (token, lifetime) = self.exchange(&jwt).await?;
        *cache = Some((token.clone(), Instant::now() + lifetime));
        Ok(token)
    }

    /// Step 1: the daemon's own token.
    async fn own_token(&self) -> Result<String, DirectoryError> {
        match &self.config.own {
            OwnToken::Metadata { url } => self.metadata_token(url).await,
            OwnToken::ExternalAccount { file, sts_url } => self.sts_token(file, sts_url).await,
        }
    }

    /// The attached service account's token, from the metadata server.
    async fn metadata_token(&self, root: &str) -> Result<String, DirectoryError> {
        let url = format!(
            "{}/computeMetadata/v1/instance/service-accounts/default/token?scopes={}",
            root.trim_end_matches('/'),
            CLOUD_PLATFORM
        );
        let request = http::Request::get(url)
            .header("Metadata-Flavor", "Google")
            .body(String::new());
        let (status, body) = self.send("metadata", request).await?;
        if status != 200 {
            return Err(self.step_failed("metadata", status, &body));
        }
        let t: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| self.step_failed("metadata", status, e.to_string().as_bytes()))?;
        Ok(t.access_token)
    }

    /// A federated token: the credential file's subject token, exchanged at the STS.
    async fn sts_token(
        &self,
        file: &std::path::Path,
        sts_url: &str,
    ) -> Result<String, DirectoryError> {
        let bad = |detail: String| {
            DirectoryError::Keyless {
            step: "STS",
            detail,
            advice: "use the credential configuration file `gcloud iam workload-identity-pools create-cred-config` writes, with a file-sourced subject token",
        }
        };
        let text =
            std::fs::read(file).map_err(|e| bad(format!("cannot read {}: {e}", file.display())))?;
        // The file holds no secret, but keep only the position of a syntax error anyway.
        let conf: ExternalAccountFile = serde_json::from_slice(&text).map_err(|e| {
            bad(format!(
                "{} is not an external_account credential file (line {}, column {})",
                file.display(),
                e.line(),
                e.column()
            ))
        })?;
        if conf.kind != "external_account" {
            return Err(bad(format!(
                "{} has type {:?}, not \"external_account\"",
                file.display(),
                conf.kind
            )));
        }
        let Some(source) = &conf.credential_source.file else {
            return Err(bad(
                "only a credential_source with a \"file\" is supported".into()
            ));
        };
        let raw = std::fs::read_to_string(source).map_err(|e| {
            bad(format!(
                "cannot read the subject token {}: {e}",
                source.display()
            ))
        })?;
        let subject_token = match &conf.credential_source.format {
            Some(SourceFormat {
                kind: Some(k),
                subject_token_field_name: Some(field),
            }) if k == "json" => serde_json::from_str::<serde_json::Value>(&raw)
                .ok()
                .and_then(|v| v.get(field).and_then(|t| t.as_str()).map(str::to_string))
                .ok_or_else(|| {
                    bad(format!(
                        "the subject token file {} has no string field {field:?}",
                        source.display()
                    ))
                })?,
            _ => raw.trim().to_string(),
        };
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair(
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            )
            .append_pair("audience", &conf.audience)
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
            .map_err(|e| self.step_failed("STS", status, e.to_string().as_bytes()))?;
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
    /// `TokenUnavailable` (the caller retries it).
    async fn send(
        &self,
        step: &'static str,
        request: Result<http::Request<String>, http::Error>,
    ) -> Result<(u16, Vec<u8>), DirectoryError> {
        let request = request.map_err(|e| DirectoryError::Keyless {
            step,
            detail: e.to_string(),
            advice: "",
        })?;
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

    fn step_failed(&self, step: &'static str, status: u16, body: &[u8]) -> DirectoryError {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        let advice = match step {
            "metadata" => "run on Compute Engine or GKE with a service account attached to the VM or pod",
            "STS" => "check the workload identity pool provider (audience, attribute conditions) and that the subject token is current",
            "signJwt" => "grant the daemon's identity (the attached service account, or the workload identity pool's principal) roles/iam.serviceAccountTokenCreator on [google].service_account, and enable the IAM Service Account Credentials API",
            _ => "check [google].token_url",
        };
        DirectoryError::Keyless {
            step,
            detail: format!("HTTP {status}: {}", text.trim()),
            advice,
        }
    }
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
