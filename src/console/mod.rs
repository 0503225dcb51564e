//! The owner's web console: server-rendered pages for what Retrac's SCIM guide asks an
//! owner to do in Settings (Security: the SCIM URL and tokens; Members: who was provisioned,
//! their locations and role), plus the pull (Sync) and the audit (Audit).
//!
//! Every action goes through [`admin::execute_as`], as the CLI's do, with the signed-in
//! owner as the actor (`console:EMAIL` in the audit). Only an active owner signs in, with
//! Google (OpenID Connect, [`oidc`]) or a one-time link from `retrac-sync console login`
//! ([`crate::access`]); each request checks again that they still are one ([`session`]).
//!
//! The pages work without JavaScript; one small script of our own (`console.js`) adds the
//! copy buttons. Every page is sent with a strict Content-Security-Policy and no inline
//! script or style; every state-changing request is a POST from the console's own origin
//! carrying the session's CSRF token ([`guard`]).

mod guard;
pub mod oidc;
mod pages;
mod session;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::admin;
use crate::config::ConsoleConfig;

pub use session::SESSION_COOKIE;

/// The stylesheet, served from the binary.
const STYLE: &str = include_str!("assets/console.css");
/// The copy buttons' script, served from the binary (the only script; no inline script).
const SCRIPT: &str = include_str!("assets/console.js");

/// Sign-in attempts (a link used, or Google's answer) one address may make in
/// [`LIMIT_WINDOW`].
pub const SIGN_IN_LIMIT: u32 = 20;
/// The window of [`SIGN_IN_LIMIT`].
pub const LIMIT_WINDOW: Duration = Duration::from_secs(60);

/// Everything the console's handlers share.
#[derive(Clone)]
pub struct ConsoleState {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: admin::Context,
    /// The origin owners open, without a trailing slash.
    origin: String,
    idle: chrono::Duration,
    max: chrono::Duration,
    oidc: Option<oidc::Oidc>,
    limiter: Mutex<RateLimiter>,
    /// New tokens' secrets, between the POST that made one and the page that shows it
    /// once: (session hash, token id) -> secret and when it was made.
    fresh_tokens: Mutex<HashMap<(crate::store::SecretHash, String), (String, Instant)>>,
}

impl ConsoleState {
    /// The console over `ctx`, configured by `[console]`; `domains` are the Google domains
    /// whose accounts may sign in with Google (`[google].domains`).
    pub fn new(
        ctx: admin::Context,
        config: &ConsoleConfig,
        domains: &[String],
    ) -> Result<ConsoleState, String> {
        let origin = config.url();
        let oidc = match config.oidc.enabled() {
            true => Some(oidc::Oidc::new(&config.oidc, &origin, domains)?),
            false => None,
        };
        Ok(ConsoleState {
            inner: Arc::new(Inner {
                ctx,
                origin,
                idle: chrono::Duration::seconds(config.session_idle as i64),
                max: chrono::Duration::seconds(config.session_max as i64),
                oidc,
                limiter: Mutex::new(RateLimiter::default()),
                fresh_tokens: Mutex::new(HashMap::new()),
            }),
        })
    }

    fn ctx(&self) -> &admin::Context {
        &self.inner.ctx
    }

    /// Counts one sign-in attempt from `ip`; false when it is over the limit.
    fn allow_sign_in(&self, ip: Option<IpAddr>) -> bool {
        let ip = ip.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let mut l = self.inner.limiter.lock().unwrap_or_else(|e| e.into_inner());
        l.allow(ip, Instant::now())
    }
}

/// Sign-in attempts per address in a fixed window.
#[derive(Default)]
struct RateLimiter {
    seen: HashMap<IpAddr, (Instant, u32)>,
}

impl RateLimiter {
    fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.seen.len() > 10_000 {
            self.seen
                .retain(|_, (start, _)| now.duration_since(*start) < LIMIT_WINDOW);
        }
        let e = self.seen.entry(ip).or_insert((now, 0));
        if now.duration_since(e.0) >= LIMIT_WINDOW {
            *e = (now, 0);
        }
        e.1 += 1;
        e.1 <= SIGN_IN_LIMIT
    }
}

/// The console's routes, with its headers and its guard on every POST.
pub fn router(state: ConsoleState) -> Router {
    Router::new()
        .route("/", get(pages::home))
        .route("/login", get(session::login_page))
        .route("/login/google", get(oidc::start))
        .route("/login/google/callback", get(oidc::callback))
        .route(
            "/login/link/{secret}",
            get(session::link_page).post(session::link_redeem),
        )
        .route("/logout", post(session::logout))
        .route("/members", get(pages::members::list))
        .route("/members/{id}", get(pages::members::show))
        .route("/members/{id}/locations", post(pages::members::locations))
        .route("/members/{id}/role", post(pages::members::role))
        .route("/members/{id}/restore", post(pages::members::restore))
        .route("/security", get(pages::security::show))
        .route("/security/tokens", post(pages::security::generate))
        .route("/security/tokens/{id}", get(pages::security::fresh))
        .route(
            "/security/tokens/{id}/revoke",
            post(pages::security::revoke),
        )
        .route(
            "/security/disconnect",
            get(pages::security::disconnect_confirm).post(pages::security::disconnect),
        )
        .route("/sync", get(pages::sync::show))
        .route("/sync/run", post(pages::sync::run))
        .route("/sync/dry-run", post(pages::sync::dry_run))
        .route("/sync/held/{run}/approve", post(pages::sync::approve))
        .route("/sync/held/{run}/discard", post(pages::sync::discard))
        .route("/audit", get(pages::audit::list))
        .route("/static/console.css", get(style))
        .route("/static/console.js", get(script))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .layer(axum::middleware::map_response(headers))
        .with_state(state)
}

/// The headers every answer carries.
async fn headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// The console's connection limits: a handful of owners' browsers.
pub fn conn_limits() -> crate::listener::ConnLimits {
    crate::listener::ConnLimits {
        name: "console",
        max_connections: 256,
        idle_timeout: Duration::from_secs(60),
        header_timeout: crate::listener::HEADER_TIMEOUT,
        max_connections_per_ip: 64,
        drain_timeout: crate::listener::DRAIN_TIMEOUT,
    }
}

#[cfg(test)]
mod tests;
