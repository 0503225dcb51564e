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
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
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
/// Sign-ins with Google one address may start in [`LIMIT_WINDOW`] (each keeps a small
/// record in memory until Google answers).
pub const START_LIMIT: u32 = 30;
/// The window of [`SIGN_IN_LIMIT`].
pub const LIMIT_WINDOW: Duration = Duration::from_secs(60);
/// At most this many addresses are counted at once; past that, an address not yet counted
/// is let through uncounted (the secrets behind a sign-in are 256-bit: the limit slows a
/// flood, it does not guard them).
const MAX_COUNTED: usize = 10_000;

/// New tokens' secrets by (session hash, token id), with when they were made.
type FreshTokens = HashMap<(crate::store::SecretHash, String), (String, Instant)>;

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
    starts: Mutex<RateLimiter>,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    trusted_proxies: Vec<IpAddr>,
    /// New tokens' secrets, between the POST that made one and the page that shows it
    /// once: (session hash, token id) -> secret and when it was made.
    fresh_tokens: Mutex<FreshTokens>,
}

impl ConsoleState {
    /// The console over `ctx`, configured by `[console]`; `domains` are the Google domains
    /// whose accounts may sign in with Google (`[google].domains`).
    pub fn new(
        ctx: admin::Context,
        config: &ConsoleConfig,
        domains: &[String],
    ) -> Result<ConsoleState, String> {
        // The origin as a browser writes it (lower-case host, no default port).
        let origin = match url::Url::parse(&config.url()) {
            Ok(u) => u.origin().ascii_serialization(),
            Err(e) => return Err(format!("[console].public_url: {e}")),
        };
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
                limiter: Mutex::new(RateLimiter::new(SIGN_IN_LIMIT)),
                starts: Mutex::new(RateLimiter::new(START_LIMIT)),
                trusted_proxies: config
                    .trusted_proxies
                    .iter()
                    .filter_map(|p| p.trim().parse().ok())
                    .collect(),
                fresh_tokens: Mutex::new(HashMap::new()),
            }),
        })
    }

    fn ctx(&self) -> &admin::Context {
        &self.inner.ctx
    }

    /// The client's address: the peer's, or, when the peer is a trusted proxy, the last
    /// address of `X-Forwarded-For` (the one that proxy appended).
    fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        if !self.inner.trusted_proxies.contains(&peer.ip()) {
            return peer.ip();
        }
        headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .next_back()
            .and_then(|a| a.trim().parse().ok())
            .unwrap_or(peer.ip())
    }

    /// Counts one sign-in attempt from this request's client; false when it is over the
    /// limit.
    fn allow_sign_in(&self, peer: SocketAddr, headers: &HeaderMap) -> bool {
        let ip = self.client(peer, headers);
        let mut l = self.inner.limiter.lock().unwrap_or_else(|e| e.into_inner());
        l.allow(ip, Instant::now())
    }

    /// Counts one start of a Google sign-in; false when it is over the limit.
    fn allow_start(&self, peer: SocketAddr, headers: &HeaderMap) -> bool {
        let ip = self.client(peer, headers);
        let mut l = self.inner.starts.lock().unwrap_or_else(|e| e.into_inner());
        l.allow(ip, Instant::now())
    }
}

/// Attempts per address in a fixed window. IPv6 addresses count by their /64, the block
/// one subscriber usually holds.
struct RateLimiter {
    limit: u32,
    seen: HashMap<IpAddr, (Instant, u32)>,
    purged: Instant,
}

impl RateLimiter {
    fn new(limit: u32) -> RateLimiter {
        RateLimiter {
            limit,
            seen: HashMap::new(),
            purged: Instant::now(),
        }
    }

    fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        let key = match ip {
            IpAddr::V6(v6) => {
                let mut o = v6.octets();
                o[8..].fill(0);
                IpAddr::V6(o.into())
            }
            v4 => v4,
        };
        if !self.seen.contains_key(&key) && self.seen.len() >= MAX_COUNTED {
            // Expired counts go at most once a window, so a flood of new addresses costs
            // one pass a minute, not one a request.
            if now.duration_since(self.purged) >= LIMIT_WINDOW {
                self.seen
                    .retain(|_, (start, _)| now.duration_since(*start) < LIMIT_WINDOW);
                self.purged = now;
            }
            if self.seen.len() >= MAX_COUNTED {
                return true;
            }
        }
        let e = self.seen.entry(key).or_insert((now, 0));
        if now.duration_since(e.0) >= LIMIT_WINDOW {
            *e = (now, 0);
        }
        e.1 = e.1.saturating_add(1);
        e.1 <= self.limit
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
