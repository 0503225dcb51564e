//! "Sign in with Google": OpenID Connect's authorization code flow with PKCE.
//!
//! The `oauth2` crate builds the authorization URL (state, PKCE S256 challenge) and makes
//! the code exchange; `jsonwebtoken` checks the ID token: its RS256 signature against the
//! issuer's JWKS, `iss`, `aud` and `exp`. Then this module checks what is the console's own
//! rule: the `nonce` of this sign-in, `email_verified`, the `hd` claim among
//! `[google].domains`, and that the address is an active owner's. (Why not the
//! `openidconnect` crate: docs/decisions/0004-console-oidc-crates.md.)
//!
//! A sign-in in progress is kept in memory for 10 minutes, under its `state`, bound to the
//! browser that started it by a cookie (`__Host-retrac_oidc`, `SameSite=Lax`, so that it
//! comes back with Google's redirect).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use http_body_util::BodyExt;
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    ExtraTokenFields, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    StandardRevocableToken, StandardTokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::pages;
use super::session::{self, cookie};
use super::ConsoleState;
use crate::access::{self, Secret};
use crate::config::OidcConfig;
use crate::directory::auth::HttpsClient;

/// The cookie that binds a sign-in in progress to its browser.
pub const FLOW_COOKIE: &str = "__Host-retrac_oidc";

/// How long a sign-in may take between the console and Google.
const FLOW_LIFETIME: Duration = Duration::from_secs(600);
/// At most this many sign-ins in progress (older ones are dropped first).
const MAX_FLOWS: usize = 1000;
/// How long the discovery document and the JWKS are kept.
const CACHE_FOR: Duration = Duration::from_secs(3600);
/// The JWKS is fetched again for an unknown key id at most this often.
const REFETCH_AFTER: Duration = Duration::from_secs(60);
/// How long one request to the issuer may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The ID token in the token response.
#[derive(Clone, Serialize, Deserialize)]
struct IdTokenField {
    id_token: String,
}

impl std::fmt::Debug for IdTokenField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdTokenField(<redacted>)")
    }
}
impl ExtraTokenFields for IdTokenField {}

type TokenResponse = StandardTokenResponse<IdTokenField, BasicTokenType>;
type Client = oauth2::Client<
    BasicErrorResponse,
    TokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// The issuer's discovery document (the fields used).
#[derive(Clone, Debug, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

/// A sign-in in progress.
struct Flow {
    verifier: String,
    nonce: String,
    browser: [u8; 32],
    started: Instant,
}

/// The console's OpenID Connect client.
pub struct Oidc {
    issuer: String,
    client_id: String,
    client_secret: Secret,
    redirect: String,
    /// Caseless keys of the domains whose accounts may sign in.
    domains: Vec<String>,
    http: HttpsClient,
    discovery: tokio::sync::Mutex<Option<(Discovery, Instant)>>,
    jwks: tokio::sync::Mutex<Option<(jsonwebtoken::jwk::JwkSet, Instant)>>,
    flows: Mutex<HashMap<String, Flow>>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl Oidc {
    /// The client of `[console.oidc]`; reads the client secret's file now.
    pub fn new(config: &OidcConfig, origin: &str, domains: &[String]) -> Result<Oidc, String> {
        let file = config
            .client_secret_file
            .as_deref()
            .ok_or("[console.oidc].client_secret_file is not set")?;
        let secret = std::fs::read_to_string(file).map_err(|e| {
            format!(
                "cannot read [console.oidc].client_secret_file {}: {e}",
                file.display()
            )
        })?;
        let secret = secret.trim().to_string();
        if secret.is_empty() {
            return Err(format!(
                "[console.oidc].client_secret_file {} is empty",
                file.display()
            ));
        }
        crate::directory::auth::check_url(&config.issuer).map_err(|e| e.to_string())?;
        let http = crate::directory::auth::build_http_client().map_err(|e| e.to_string())?;
        Ok(Oidc {
            issuer: config.issuer.trim_end_matches('/').to_string(),
            client_id: config.client_id.clone(),
            client_secret: Secret(secret),
            redirect: format!("{origin}/login/google/callback"),
            domains: domains
                .iter()
                .map(|d| crate::member::domain_key(d).into_owned())
                .collect(),
            http,
            discovery: tokio::sync::Mutex::new(None),
            jwks: tokio::sync::Mutex::new(None),
            flows: Mutex::new(HashMap::new()),
        })
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(&self, url: &str) -> Result<T, String> {
        crate::directory::auth::check_url(url).map_err(|e| e.to_string())?;
        let req = http::Request::get(url)
            .header(header::ACCEPT, "application/json")
            .body(String::new())
            .map_err(|e| e.to_string())?;
        let res = tokio::time::timeout(REQUEST_TIMEOUT, self.http.request(req))
            .await
            .map_err(|_| format!("{url} did not answer in {REQUEST_TIMEOUT:?}"))?
            .map_err(|e| format!("{url}: {e}"))?;
        let status = res.status();
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{url}: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("{url} answered {status}"));
        }
        serde_json::from_slice(&body).map_err(|e| format!("{url}: not the JSON expected: {e}"))
    }

    async fn discovery(&self) -> Result<Discovery, String> {
        let mut cached = self.discovery.lock().await;
        if let Some((d, at)) = cached.as_ref() {
            if at.elapsed() < CACHE_FOR {
                return Ok(d.clone());
            }
        }
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let d: Discovery = self.get_json(&url).await?;
        if d.issuer.trim_end_matches('/') != self.issuer {
            return Err(format!(
                "the discovery document names the issuer {:?}, not {:?}",
                d.issuer, self.issuer
            ));
        }
        *cached = Some((d.clone(), Instant::now()));
        Ok(d)
    }

    async fn key(
        &self,
        d: &Discovery,
        kid: Option<&str>,
    ) -> Result<jsonwebtoken::DecodingKey, String> {
        let mut cached = self.jwks.lock().await;
        let fresh = |at: &Instant| at.elapsed() < CACHE_FOR;
        let find = |set: &jsonwebtoken::jwk::JwkSet| match kid {
            Some(k) => set.find(k).cloned(),
            None if set.keys.len() == 1 => set.keys.first().cloned(),
            None => None,
        };
        if let Some((set, at)) = cached.as_ref() {
            if fresh(at) {
                if let Some(k) = find(set) {
                    return jsonwebtoken::DecodingKey::from_jwk(&k).map_err(|e| e.to_string());
                }
                if at.elapsed() < REFETCH_AFTER {
                    return Err("the ID token's key is not in the issuer's JWKS".into());
                }
            }
        }
        let set: jsonwebtoken::jwk::JwkSet = self.get_json(&d.jwks_uri).await?;
        let k = find(&set);
        *cached = Some((set, Instant::now()));
        let k = k.ok_or("the ID token's key is not in the issuer's JWKS")?;
        jsonwebtoken::DecodingKey::from_jwk(&k).map_err(|e| e.to_string())
    }

    /// The discovery document and the OAuth client made from it, or the page that says why
    /// Google's sign-in cannot be used now.
    async fn ready(&self) -> Result<(Discovery, Client), Box<Response>> {
        let d = self
            .discovery()
            .await
            .map_err(|e| Box::new(unreachable(&e)))?;
        let client = self.client(&d).map_err(|e| Box::new(pages::failure(&e)))?;
        Ok((d, client))
    }

    fn client(&self, d: &Discovery) -> Result<Client, String> {
        Ok(oauth2::Client::new(ClientId::new(self.client_id.clone()))
            .set_client_secret(ClientSecret::new(self.client_secret.0.clone()))
            .set_auth_uri(
                AuthUrl::new(d.authorization_endpoint.clone()).map_err(|e| e.to_string())?,
            )
            .set_token_uri(TokenUrl::new(d.token_endpoint.clone()).map_err(|e| e.to_string())?)
            .set_redirect_uri(RedirectUrl::new(self.redirect.clone()).map_err(|e| e.to_string())?))
    }
}

/// Sends one request of the code exchange (oauth2's HTTP client, over ours).
async fn send(
    http: HttpsClient,
    req: oauth2::HttpRequest,
) -> Result<oauth2::HttpResponse, std::io::Error> {
    {
        let (parts, body) = req.into_parts();
        let body = String::from_utf8(body).map_err(std::io::Error::other)?;
        let url = parts.uri.to_string();
        crate::directory::auth::check_url(&url)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let req = http::Request::from_parts(parts, body);
        let res = tokio::time::timeout(REQUEST_TIMEOUT, http.request(req))
            .await
            .map_err(|_| std::io::Error::other(format!("{url} did not answer in time")))?
            .map_err(std::io::Error::other)?;
        let (parts, body) = res.into_parts();
        let body = body
            .collect()
            .await
            .map_err(std::io::Error::other)?
            .to_bytes();
        Ok(http::Response::from_parts(parts, body.to_vec()))
    }
}

impl Oidc {
    /// Checks an ID token; the email address it signs in, and the Google user's id (`sub`).
    async fn verify(
        &self,
        d: &Discovery,
        id_token: &str,
        nonce: &str,
    ) -> Result<(String, String), String> {
        let head = jsonwebtoken::decode_header(id_token)
            .map_err(|e| format!("the ID token is not a JWT: {e}"))?;
        let key = self.key(d, head.kid.as_deref()).await?;
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        // Google writes `iss` with or without the scheme.
        let bare = self.issuer.trim_start_matches("https://").to_string();
        v.set_issuer(&[self.issuer.as_str(), bare.as_str()]);
        v.set_audience(&[self.client_id.as_str()]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = 60;
        let data = jsonwebtoken::decode::<Claims>(id_token, &key, &v)
            .map_err(|e| format!("the ID token was refused: {e}"))?;
        let c = data.claims;
        let same_nonce = c
            .nonce
            .as_deref()
            .is_some_and(|n| bool::from(n.as_bytes().ct_eq(nonce.as_bytes())));
        if !same_nonce {
            return Err("the ID token's nonce is not this sign-in's".into());
        }
        let verified = matches!(&c.email_verified, Some(serde_json::Value::Bool(true)))
            || matches!(&c.email_verified, Some(serde_json::Value::String(s)) if s == "true");
        if !verified {
            return Err("Google has not verified this account's email address".into());
        }
        let email = c.email.ok_or("the ID token carries no email address")?;
        let hd = c.hd.map(|h| crate::member::domain_key(&h).into_owned());
        if !hd.as_ref().is_some_and(|h| self.domains.contains(h)) {
            return Err(format!(
                "{email} is not an account of the workspace's Google domains ([google].domains)"
            ));
        }
        Ok((email, c.sub))
    }

    fn keep_flow(&self, state: String, flow: Flow) {
        let mut flows = self.flows.lock().unwrap_or_else(|e| e.into_inner());
        flows.retain(|_, f| f.started.elapsed() < FLOW_LIFETIME);
        if flows.len() >= MAX_FLOWS {
            if let Some(oldest) = flows
                .iter()
                .min_by_key(|(_, f)| f.started)
                .map(|(k, _)| k.clone())
            {
                flows.remove(&oldest);
            }
        }
        flows.insert(state, flow);
    }

    fn take_flow(&self, state: &str) -> Option<Flow> {
        let mut flows = self.flows.lock().unwrap_or_else(|e| e.into_inner());
        flows
            .remove(state)
            .filter(|f| f.started.elapsed() < FLOW_LIFETIME)
    }
}

/// The ID token's claims the console reads.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    email: Option<String>,
    email_verified: Option<serde_json::Value>,
    hd: Option<String>,
    nonce: Option<String>,
}

/// `GET /login/google`: to Google's sign-in.
pub async fn start(
    State(state): State<ConsoleState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let Some(oidc) = state.inner.oidc.as_ref() else {
        return pages::refused(StatusCode::NOT_FOUND, "Sign-in with Google is not set up.");
    };
    if !state.allow_start(peer, &headers) {
        return pages::too_many();
    }
    let (_, client) = match oidc.ready().await {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let (Ok(nonce), Ok(browser)) = (Secret::generate(), Secret::generate()) else {
        return pages::failure("the random source failed");
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut auth = client
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new("openid".into()))
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .add_extra_param("nonce", nonce.0.clone())
        .add_extra_param("prompt", "select_account");
    if let [one] = oidc.domains.as_slice() {
        auth = auth.add_extra_param("hd", one.clone());
    }
    let (url, csrf) = auth.url();
    oidc.keep_flow(
        csrf.secret().clone(),
        Flow {
            verifier: verifier.secret().clone(),
            nonce: nonce.0,
            browser: browser.hash().0,
            started: Instant::now(),
        },
    );
    let mut res = Redirect::to(url.as_str()).into_response();
    let cookie = format!(
        "{FLOW_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Secure; Max-Age={}",
        browser.0,
        FLOW_LIFETIME.as_secs()
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

fn unreachable(e: &str) -> Response {
    tracing::warn!(error = %e, "console: the OpenID Connect issuer cannot be used");
    pages::refused(
        StatusCode::BAD_GATEWAY,
        "Google's sign-in cannot be reached now. An administrator of the server can make a one-time link: retrac-sync console login EMAIL.",
    )
}

/// `GET /login/google/callback` parameters (no `Debug`: the code is a secret).
#[derive(Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /login/google/callback`: Google's answer.
pub async fn callback(
    State(state): State<ConsoleState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(cb): Query<Callback>,
) -> Response {
    let Some(oidc) = state.inner.oidc.as_ref() else {
        return pages::refused(StatusCode::NOT_FOUND, "Sign-in with Google is not set up.");
    };
    if !state.allow_sign_in(peer, &headers) {
        return pages::too_many();
    }
    let client = state.client(peer, &headers);
    let refuse = |why: &str| {
        tracing::info!(%client, why, "console: a Google sign-in was refused");
        pages::refused(StatusCode::FORBIDDEN, &format!("Sign-in refused: {why}"))
    };
    if let Some(e) = cb.error.as_deref() {
        return refuse(&format!("Google answered {e:?}"));
    }
    let (Some(code), Some(flow_state)) = (cb.code, cb.state) else {
        return refuse("the answer has no code or state");
    };
    let Some(flow) = oidc.take_flow(&flow_state) else {
        return refuse("this sign-in is unknown or took longer than 10 minutes; start again");
    };
    let browser = cookie(&headers, FLOW_COOKIE).map(|c| Secret(c.to_string()).hash().0);
    if !browser.is_some_and(|b| bool::from(b.ct_eq(&flow.browser))) {
        return refuse("this sign-in was started in another browser");
    }
    let (d, client) = match oidc.ready().await {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let http = oidc.http.clone();
    let send = move |req| send(http.clone(), req);
    let token = client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(PkceCodeVerifier::new(flow.verifier))
        .request_async(&send)
        .await;
    let token = match token {
        Ok(t) => t,
        Err(e) => return refuse(&format!("the code exchange failed: {e}")),
    };
    let id_token = &token.extra_fields().id_token;
    let (email, sub) = match oidc.verify(&d, id_token, &flow.nonce).await {
        Ok(v) => v,
        Err(e) => return refuse(&e),
    };
    let store = state.ctx().store.clone();
    let who = email.clone();
    let owner = tokio::task::spawn_blocking(move || access::active_owner(&store, &who)).await;
    let member = match owner {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => return refuse(&e.to_string()),
        Err(e) => return pages::failure(&e.to_string()),
    };
    // A member the pull linked to a Google user signs in only as that user: an address
    // given to someone else since keeps its old member's link until the pull moves it.
    if member.dir.google_id.as_ref().is_some_and(|g| *g != sub) {
        return refuse("this Google account is not the Google user the member is linked to");
    }
    let mut res = session::start(&state, member, "google").await;
    res.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "__Host-retrac_oidc=; Path=/; HttpOnly; SameSite=Lax; Secure; Max-Age=0",
        ),
    );
    res
}
