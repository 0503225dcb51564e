//! The fake's OpenID Connect issuer, as Google's "Sign in with Google" for a web app: the
//! discovery document, the JWKS, an authorization endpoint that signs in the test user the
//! test chose ([`FakeGoogle::oidc_sign_in`]) at once, and the token endpoint of the
//! authorization code flow with PKCE (S256). ID tokens are RS256, signed with the fixed test
//! key, with Google's claims (`iss`, `aud`, `sub`, `email`, `email_verified`, `hd`, `nonce`).

use std::collections::HashMap;
use std::sync::Arc;

use self::sha2_free::s256;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::json;

use super::{FakeGoogle, Shared};

/// The console's OAuth client, as registered with the fake.
pub const CLIENT_ID: &str = "fake-console.apps.googleusercontent.com";
/// TEST ONLY: its secret.
pub const CLIENT_SECRET: &str = "TEST-ONLY-fake-console-secret";
/// The key id the JWKS and the ID tokens carry.
const KID: &str = "fake-google-test-key";

/// Who the authorization endpoint signs in, and how Google would describe them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcLogin {
    /// The account's address.
    pub email: String,
    /// Google's `email_verified`.
    pub email_verified: bool,
    /// Google's `hd`: the Workspace domain, absent for a consumer account.
    pub hd: Option<String>,
}

struct Grant {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    nonce: Option<String>,
    login: OidcLogin,
}

pub(crate) struct OidcState {
    issuer: String,
    login: Option<OidcLogin>,
    codes: HashMap<String, Grant>,
    /// ID tokens issued.
    issued: u64,
}

impl OidcState {
    pub(crate) fn new(issuer: String) -> OidcState {
        OidcState {
            issuer,
            login: None,
            codes: HashMap::new(),
            issued: 0,
        }
    }
}

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/oauth2/v3/certs", get(jwks))
        .route("/o/oauth2/v2/auth", get(authorize))
        .route("/oidc/token", post(token))
}

impl FakeGoogle {
    /// The OAuth client id the fake knows (put it in `[console.oidc].client_id`).
    pub fn oidc_client_id(&self) -> &'static str {
        CLIENT_ID
    }

    /// TEST ONLY: that client's secret (the content of `client_secret_file`).
    pub fn oidc_client_secret(&self) -> &'static str {
        CLIENT_SECRET
    }

    /// Makes the authorization endpoint sign in `email` (a verified account of its domain),
    /// or refuse everyone (`None`).
    pub fn oidc_sign_in(&self, email: Option<&str>) {
        self.oidc_sign_in_as(email.map(|e| OidcLogin {
            email: e.to_string(),
            email_verified: true,
            hd: e.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()),
        }));
    }

    /// As [`FakeGoogle::oidc_sign_in`], with every claim chosen.
    pub fn oidc_sign_in_as(&self, login: Option<OidcLogin>) {
        let mut s = self.shared.oidc.lock().unwrap_or_else(|p| p.into_inner());
        s.login = login;
    }

    /// How many ID tokens the fake issued.
    pub fn oidc_tokens_issued(&self) -> u64 {
        self.shared
            .oidc
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .issued
    }
}

fn oidc(shared: &Shared) -> std::sync::MutexGuard<'_, OidcState> {
    shared.oidc.lock().unwrap_or_else(|p| p.into_inner())
}

async fn discovery(State(shared): State<Arc<Shared>>) -> Response {
    let issuer = oidc(&shared).issuer.clone();
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/o/oauth2/v2/auth"),
        "token_endpoint": format!("{issuer}/oidc/token"),
        "jwks_uri": format!("{issuer}/oauth2/v3/certs"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "profile"],
        "code_challenge_methods_supported": ["plain", "S256"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
    }))
    .into_response()
}

async fn jwks(State(shared): State<Arc<Shared>>) -> Response {
    let (n, e) = shared.key.jwk_components();
    Json(
        json!({"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": KID, "n": n, "e": e}]}),
    )
    .into_response()
}

fn random_text() -> String {
    let mut b = [0u8; 24];
    let _ = getrandom::fill(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

async fn authorize(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    let bad = |why: &str| {
        (
            StatusCode::BAD_REQUEST,
            format!("fake Google sign-in: {why}"),
        )
            .into_response()
    };
    if get("client_id") != CLIENT_ID {
        return bad("unknown client_id (Error 401: invalid_client)");
    }
    if get("response_type") != "code" {
        return bad("response_type must be code");
    }
    if !get("scope").split(' ').any(|s| s == "openid") {
        return bad("the scope must include openid");
    }
    if get("code_challenge_method") != "S256" || get("code_challenge").is_empty() {
        return bad("this fake wants PKCE with S256");
    }
    let redirect = get("redirect_uri");
    let Ok(mut back) = url::Url::parse(&redirect) else {
        return bad("redirect_uri is not a URL");
    };
    let mut s = oidc(&shared);
    let Some(login) = s.login.clone() else {
        return (
            StatusCode::FORBIDDEN,
            "fake Google: no test user is signed in (FakeGoogle::oidc_sign_in)",
        )
            .into_response();
    };
    let code = random_text();
    s.codes.insert(
        code.clone(),
        Grant {
            client_id: CLIENT_ID.into(),
            redirect_uri: redirect,
            challenge: get("code_challenge"),
            nonce: q.get("nonce").cloned(),
            login,
        },
    );
    back.query_pairs_mut()
        .append_pair("state", &get("state"))
        .append_pair("code", &code)
        .append_pair("scope", "email openid");
    Redirect::to(back.as_str()).into_response()
}

fn token_error(error: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    // The client authenticates with HTTP Basic (client_secret_basic) or in the form.
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.split_once(':')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        });
    let (id, secret) = match basic {
        Some((id, secret)) => (
            url::form_urlencoded::parse(id.as_bytes())
                .map(|(k, v)| format!("{k}{v}"))
                .collect::<String>(),
            url::form_urlencoded::parse(secret.as_bytes())
                .map(|(k, v)| format!("{k}{v}"))
                .collect::<String>(),
        ),
        None => (
            form.get("client_id").cloned().unwrap_or_default(),
            form.get("client_secret").cloned().unwrap_or_default(),
        ),
    };
    if id != CLIENT_ID || secret != CLIENT_SECRET {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client", "error_description": "Unauthorized"})),
        )
            .into_response();
    }
    if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return token_error("unsupported_grant_type", "Invalid grant_type");
    }
    let code = form.get("code").cloned().unwrap_or_default();
    let mut s = oidc(&shared);
    // A code works once.
    let Some(grant) = s.codes.remove(&code) else {
        return token_error("invalid_grant", "Malformed auth code.");
    };
    if form.get("redirect_uri") != Some(&grant.redirect_uri) || grant.client_id != id {
        return token_error("redirect_uri_mismatch", "Bad Request");
    }
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    if s256(&verifier) != grant.challenge {
        return token_error("invalid_grant", "Invalid code verifier.");
    }
    let now = chrono::Utc::now().timestamp();
    // `sub` is the Google user's id, as the Directory API shows it.
    let sub = shared
        .lock()
        .users
        .get(&grant.login.email.to_lowercase())
        .map(|u| u.id.clone())
        .unwrap_or_else(|| format!("1{:020}", grant.login.email.len()));
    let mut claims = json!({
        "iss": s.issuer,
        "azp": CLIENT_ID,
        "aud": CLIENT_ID,
        "sub": sub,
        "email": grant.login.email,
        "email_verified": grant.login.email_verified,
        "at_hash": "fake",
        "iat": now,
        "exp": now + 3600,
    });
    if let Some(hd) = &grant.login.hd {
        claims["hd"] = json!(hd);
    }
    if let Some(n) = &grant.nonce {
        claims["nonce"] = json!(n);
    }
    s.issued += 1;
    drop(s);
    let Ok(id_token) = sign(&shared, &claims) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "signing failed").into_response();
    };
    Json(json!({
        "access_token": format!("ya29.fake-{}", random_text()),
        "expires_in": 3599,
        "scope": "openid https://www.googleapis.com/auth/userinfo.email",
        "token_type": "Bearer",
        "id_token": id_token,
    }))
    .into_response()
}

/// An RS256 JWT of `claims` by the fake's key, with its key id.
pub(crate) fn sign(shared: &Shared, claims: &serde_json::Value) -> Result<String, String> {
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let head = json!({"alg": "RS256", "kid": KID, "typ": "JWT"});
    let signed = format!(
        "{}.{}",
        b64(head.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = shared.key.sign(signed.as_bytes())?;
    Ok(format!("{signed}.{}", b64(&sig)))
}

/// PKCE's S256: base64url(SHA-256(verifier)), with ring's SHA-256.
mod sha2_free {
    use base64::Engine;

    pub fn s256(verifier: &str) -> String {
        let d = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d.as_ref())
    }
}
