//! The guard in front of every handler: a state-changing request is a POST whose `Origin`
//! is the console's own, and, once signed in, whose form carries the session's CSRF token.
//! A cross-site form post is refused before any handler runs.
//!
//! Under `Referrer-Policy: no-referrer`, which every page is sent with, a browser writes
//! `Origin: null` on its form posts, its own origin's included (the Fetch standard,
//! "serializing a request origin"). So `null` is taken for the console's own only when the
//! browser's `Sec-Fetch-Site` says the request came from this very origin: a page elsewhere
//! (or a sandboxed frame, whose origin is also `null`) gets `cross-site` or `same-site` there,
//! and no page can set that header itself.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use super::pages;
use super::session::{csrf_of, session_secret};
use super::ConsoleState;

/// The largest form accepted (locations are the longest field).
pub const MAX_FORM: usize = 64 * 1024;

/// The form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf";

/// A path as the log may show it: a one-time link's secret is left out.
pub fn loggable(path: &str) -> &str {
    if path.starts_with(crate::access::LINK_PATH) {
        "/login/link/<secret>"
    } else {
        path
    }
}

/// Lets GET and HEAD through; checks every other method as above.
pub async fn guard(State(state): State<ConsoleState>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    if method == Method::GET || method == Method::HEAD {
        return next.run(req).await;
    }
    if method != Method::POST {
        return pages::refused(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and POST are used here",
        );
    }
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    let fetch_site = req
        .headers()
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok());
    let own = match origin {
        Some("null") => fetch_site == Some("same-origin"),
        Some(o) => o == state.inner.origin,
        None => false,
    };
    if !own {
        tracing::info!(
            origin = ?origin,
            fetch_site = ?fetch_site,
            path = %loggable(req.uri().path()),
            "console: a POST from another origin was refused"
        );
        return pages::refused(
            StatusCode::FORBIDDEN,
            "This form was not sent from the console's own page, so it was refused.",
        );
    }
    // A one-time link is used before there is a session: its secret is its own check.
    if req.uri().path().starts_with(crate::access::LINK_PATH) {
        return next.run(req).await;
    }
    let Some(secret) = session_secret(req.headers()) else {
        return pages::refused(StatusCode::FORBIDDEN, "You are not signed in.");
    };
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM).await else {
        return pages::refused(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.");
    };
    let sent = url::form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == CSRF_FIELD)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let want = csrf_of(&secret);
    if !bool::from(sent.as_bytes().ct_eq(want.as_bytes())) {
        tracing::info!(
            path = %loggable(parts.uri.path()),
            "console: a POST without the session's CSRF token was refused"
        );
        return pages::refused(
            StatusCode::FORBIDDEN,
            "This form's security token does not match your session. Reload the page and try again.",
        );
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
