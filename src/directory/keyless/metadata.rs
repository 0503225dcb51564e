//! The metadata servers: the token of the service account attached to a Compute Engine VM
//! or GKE pod (yup-oauth2, pointed at `[google].metadata_url`), and the EC2 instance
//! metadata (with an IMDSv2 session token when the credential file asks for one).

use super::url::check_aws_metadata_url;
use super::*;

impl KeylessAuth {
    /// The attached service account's token, from the metadata server, through yup-oauth2
    /// (which caches it until a minute before it expires).
    pub(super) async fn metadata_token(
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

    /// IMDSv2's session token (<https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/configuring-instance-metadata-service.html>).
    pub(super) async fn imds_session(&self, url: &str) -> Result<String, DirectoryError> {
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
    pub(super) async fn imds_get(
        &self,
        url: &str,
        session: Option<&str>,
    ) -> Result<String, DirectoryError> {
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
}

/// yup-oauth2's instance-metadata authenticator, pointed at `root`.
pub(super) async fn yup_metadata(
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
