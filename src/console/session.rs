//! Sessions: the cookie, the signed-in owner of each request, signing in with a one-time
//! link, and signing out.
//!
//! A session id is a random secret in the `__Host-retrac_session` cookie (`HttpOnly`,
//! `SameSite=Strict`, `Path=/`, `Secure`); the store keeps its SHA-256, so a session
//! survives a restart and ends when its record goes. A session ends after `session_idle`
//! unused or `session_max` after sign-in, and at the first request once its member is no
//! longer an active owner.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use maud::html;

use super::pages::{self, page_bare};
use super::ConsoleState;
use crate::access::{self, Secret};
use crate::member::{Actor, Member};
use crate::store::{ConsoleSession, SecretHash};

/// The session cookie's name. The `__Host-` prefix makes the browser keep it only when it is
/// `Secure`, for this host alone, on `/`.
pub const SESSION_COOKIE: &str = "__Host-retrac_session";

/// How often a session's last use is written (a click a second does not write a second).
const TOUCH_EVERY: chrono::Duration = chrono::Duration::seconds(60);

/// The signed-in owner of a request.
pub struct Owner {
    /// The member, as stored now.
    pub member: Member,
    /// The session's key in the store.
    pub hash: SecretHash,
    /// The CSRF token every form of this session carries.
    pub csrf: String,
}

impl Owner {
    /// The audit's actor for this owner: `console:EMAIL`.
    pub fn actor(&self) -> Actor {
        Actor::Console(self.member.dir.user_name.to_string())
    }

    /// The owner's email address.
    pub fn email(&self) -> String {
        self.member.dir.user_name.to_string()
    }
}

/// The value of the cookie `name` in `headers`.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The session secret of a request, when it has one.
pub fn session_secret(headers: &HeaderMap) -> Option<Secret> {
    cookie(headers, SESSION_COOKIE)
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(|v| Secret(v.to_string()))
}

/// The CSRF token of a session.
pub fn csrf_of(secret: &Secret) -> String {
    secret.derive("retrac-console-csrf")
}

impl FromRequestParts<ConsoleState> for Owner {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        let Some(secret) = session_secret(&parts.headers) else {
            return Err(to_login(false));
        };
        let state = state.clone();
        let found = tokio::task::spawn_blocking(move || check(&state, &secret)).await;
        match found {
            Ok(Ok(Some(owner))) => Ok(owner),
            Ok(Ok(None)) => Err(to_login(true)),
            Ok(Err(e)) => Err(pages::failure(&e.to_string())),
            Err(e) => Err(pages::failure(&e.to_string())),
        }
    }
}

/// The owner of the session `secret`, when the session holds: known, not idle past
/// `session_idle` nor older than `session_max`, and its member still an active owner.
/// A session that no longer holds is removed.
fn check(state: &ConsoleState, secret: &Secret) -> Result<Option<Owner>, crate::store::StoreError> {
    let store = &state.ctx().store;
    let hash = secret.hash();
    let Some(mut s) = store.console_session(&hash)? else {
        return Ok(None);
    };
    let now = Utc::now();
    let member = store.get(s.member_id)?;
    let holds = now - s.last_seen < state.inner.idle
        && now - s.created < state.inner.max
        && member.as_ref().is_some_and(access::is_active_owner);
    let Some(member) = member.filter(|_| holds) else {
        if let Err(e) = store.remove_console_session(&hash) {
            tracing::warn!(error = %e, "cannot remove an ended console session");
        }
        tracing::info!(email = %s.email, "console session ended (idle, too old, or no longer an active owner)");
        return Ok(None);
    };
    if now - s.last_seen >= TOUCH_EVERY {
        // A store that cannot write (a full disk) still lets an owner look: the session's
        // use is then not recorded, and it ends at its idle time.
        match store.touch_console_session(&hash, now) {
            Ok(true) => s.last_seen = now,
            Ok(false) => return Ok(None),
            Err(e) => tracing::warn!(error = %e, "cannot record a console session's use"),
        }
    }
    Ok(Some(Owner {
        member,
        hash,
        csrf: csrf_of(secret),
    }))
}

/// To the sign-in page; `ended` clears the cookie of a session that no longer holds.
fn to_login(ended: bool) -> Response {
    let mut res = Redirect::to("/login").into_response();
    if ended {
        res.headers_mut().insert(header::SET_COOKIE, clear_cookie());
    }
    res
}

fn clear_cookie() -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Secure; Max-Age=0"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Starts a session for `member` and answers with its cookie and a page that moves on to
/// the members page. The move is a `<meta>` refresh from this origin, not a redirect: after
/// a sign-in that came from Google, a redirect would still be part of a cross-site chain,
/// and the browser would withhold the `SameSite=Strict` cookie from the next page.
pub async fn start(state: &ConsoleState, member: Member, method: &str) -> Response {
    let secret = match Secret::generate() {
        Ok(s) => s,
        Err(e) => return pages::failure(&e.to_string()),
    };
    let now = Utc::now();
    let session = ConsoleSession {
        member_id: member.id,
        email: member.dir.user_name.to_string(),
        method: method.to_string(),
        created: now,
        last_seen: now,
    };
    let store = state.ctx().store.clone();
    let hash = secret.hash();
    let (idle, max) = (state.inner.idle, state.inner.max);
    let saved = tokio::task::spawn_blocking(move || {
        // Ended sessions and used-up links go at each sign-in.
        let _ = store.prune_console(now, |s| now - s.last_seen >= idle || now - s.created >= max);
        store.put_console_session(&hash, &session)
    })
    .await;
    match saved {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return pages::failure(&e.to_string()),
        Err(e) => return pages::failure(&e.to_string()),
    }
    if let Err(e) = state.ctx().store.flush().await {
        return pages::failure(&e.to_string());
    }
    tracing::info!(email = %member.dir.user_name, method, "console sign-in");
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Secure",
        secret.0
    );
    let body = page_bare(
        "Signed in",
        html! {
            meta http-equiv="refresh" content="0;url=/members";
        },
        html! {
            h1 { "Signed in" }
            p { "Signed in as " (member.dir.user_name.as_str()) ". " a href="/members" { "Continue to Members" } }
        },
    );
    let mut res = (StatusCode::OK, body).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

/// `GET /login`: the ways in.
pub async fn login_page(State(state): State<ConsoleState>) -> Response {
    let google = state.inner.oidc.is_some();
    page_bare(
        "Sign in",
        html! {},
        html! {
            h1 { "Sign in to retrac-sync" }
            p { "Only workspace owners sign in." }
            @if google {
                p { a class="button" href="/login/google" { "Sign in with Google" } }
            } @else {
                p { "Sign-in with Google is not set up ([console.oidc] in the configuration)." }
            }
            p {
                "Without Google, an administrator of the server makes a one-time link: "
                code { "retrac-sync console login EMAIL" } "."
            }
        },
    )
    .into_response()
}

/// `GET /login/link/SECRET`: a page with the button that uses the link. Opening the link
/// uses nothing, so a mail scanner or a link preview cannot spend it.
pub async fn link_page(Path(secret): Path<String>) -> Response {
    if !access::looks_like_secret(&secret) {
        return pages::not_found().await;
    }
    page_bare(
        "Sign in",
        html! {},
        html! {
            h1 { "Sign in to retrac-sync" }
            p { "This one-time link signs you in once." }
            form method="post" action={ "/login/link/" (secret) } {
                button type="submit" { "Sign in" }
            }
        },
    )
    .into_response()
}

/// `POST /login/link/SECRET`: uses the link (its origin was checked by the guard).
pub async fn link_redeem(
    State(state): State<ConsoleState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(secret): Path<String>,
) -> Response {
    if !state.allow_sign_in(peer, &headers) {
        return pages::too_many();
    }
    if !access::looks_like_secret(&secret) {
        return pages::refused(
            StatusCode::FORBIDDEN,
            &access::AccessError::BadLink.to_string(),
        );
    }
    let store = state.ctx().store.clone();
    let redeemed = tokio::task::spawn_blocking(move || {
        access::redeem_link(&store, &Secret(secret), Utc::now())
    })
    .await;
    match redeemed {
        Ok(Ok(member)) => start(&state, member, "link").await,
        Ok(Err(e @ (access::AccessError::BadLink | access::AccessError::NotOwner(_)))) => {
            tracing::info!(client = %state.client(peer, &headers), "console sign-in link refused");
            pages::refused(StatusCode::FORBIDDEN, &e.to_string())
        }
        Ok(Err(e)) => pages::failure(&e.to_string()),
        Err(e) => pages::failure(&e.to_string()),
    }
}

/// `POST /logout`: ends the session.
pub async fn logout(State(state): State<ConsoleState>, headers: HeaderMap) -> Response {
    if let Some(secret) = session_secret(&headers) {
        let store = state.ctx().store.clone();
        let hash = secret.hash();
        let removed =
            tokio::task::spawn_blocking(move || store.remove_console_session(&hash)).await;
        let flushed = state.ctx().store.flush().await;
        match (removed, flushed) {
            (Ok(Ok(_)), Ok(())) => {}
            (Ok(Err(e)), _) | (_, Err(e)) => {
                return pages::failure(&format!(
                    "the session could not be ended ({e}); it ends by itself after [console].session_idle"
                ))
            }
            (Err(e), _) => return pages::failure(&e.to_string()),
        }
        // A token made in this session and not yet shown is dropped with it.
        state
            .inner
            .fresh_tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(h, _), _| *h != hash);
    }
    let mut res = Redirect::to("/login").into_response();
    res.headers_mut().insert(header::SET_COOKIE, clear_cookie());
    res
}
