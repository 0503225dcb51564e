//! Workload Identity Federation: the credential configuration file, the subject token its
//! `credential_source` describes (a file, a URL, or AWS's signed GetCallerIdentity request),
//! and its exchange at the security token service (<https://google.aip.dev/auth/4117>).

use super::url::{check_aws_verification_url, impersonation_url};
use super::*;

impl KeylessAuth {
    /// A federated token: the credential file's subject token exchanged at the STS, then,
    /// when the file names one, exchanged again for the impersonated account's token.
    pub(super) async fn federated_token(
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
        let form = ::url::form_urlencoded::Serializer::new(String::new())
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
    pub(super) async fn subject_token(
        &self,
        conf: &ExternalAccountFile,
    ) -> Result<String, DirectoryError> {
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
    pub(super) async fn url_subject_token(
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
    pub(super) async fn aws_subject_token(
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
}

/// Reads and checks the credential configuration file (it holds no secret, but an error
/// keeps to the position anyway).
pub(super) fn read_external_account(
    file: &std::path::Path,
) -> Result<ExternalAccountFile, DirectoryError> {
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
pub(super) fn extract_token(raw: &str, format: Option<&SourceFormat>) -> Result<String, String> {
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
    let parsed = ::url::Url::parse(url)
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
    Ok(::url::form_urlencoded::byte_serialize(request.to_string().as_bytes()).collect())
}
