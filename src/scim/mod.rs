//! The SCIM 2.0 service provider (RFC 7643/7644) for Users: the push path.
//!
//! [`router`] builds the whole app (base path, body limit, bearer auth, SCIM errors,
//! metrics and request logs), so tests drive it with `oneshot`; [`serve`] runs it over
//! HTTP or HTTPS within the connection limits of [`crate::listener`], with graceful
//! shutdown.
//!
//! The limits are written here rather than taken from tower-http's layers: its body limit
//! answers 413 before reading the body (a client still writing gets a broken pipe instead
//! of the answer) and its timeout answers with a bare 408; SCIM wants its own error body
//! for both.

pub mod auth;
pub mod error;
pub mod feed;
pub mod filter;
pub mod json;
pub mod patch;
pub mod resource;
pub mod schema;
pub mod tls;
pub mod users;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use chrono::Utc;
use serde_json::Value;

use crate::config::ScimConfig;
use crate::listener::ConnLimits;
use crate::store::{Store, StoreError, TokenScope};
use error::{scim_json, ScimError};

/// A request that takes longer than this is answered with 503.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A body over the limit is read and thrown away up to this many bytes, for at most
/// [`MAX_DRAIN_TIME`], before the 413 (nginx's lingering close), so that a client that writes
/// its whole body before reading sees the answer rather than a broken pipe; past either
/// bound the connection is cut.
const MAX_DRAIN_BYTES: usize = 16 * 1024 * 1024;

/// How long a body over the limit is read and thrown away ([`MAX_DRAIN_BYTES`]).
const MAX_DRAIN_TIME: Duration = Duration::from_secs(5);

/// The label of the token that authenticated a request (the audit actor). Never the token.
#[derive(Clone, Debug)]
pub struct AuthLabel(pub String);

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct ScimState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    auth: auth::Authenticator,
    failures: auth::FailureLog,
    base_path: String,
    public_base: Option<String>,
    max_body_bytes: usize,
    tls: bool,
    /// The domains SCIM may provision (caseless keys; empty = any): [`crate::config::Config::scim_domains`].
    domains: Vec<String>,
    /// Request bodies in flight, in bytes: `[scim].max_inflight_body_bytes`.
    body_budget: Arc<tokio::sync::Semaphore>,
    max_inflight_body_bytes: usize,
}

/// A share of `[scim].max_inflight_body_bytes`, held while a request's body (and what was
/// parsed from it) is alive.
pub struct BodyPermit {
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// How long a request waits for its share of `[scim].max_inflight_body_bytes` before it is
/// answered 503 with `Retry-After`.
const BODY_BUDGET_WAIT: Duration = Duration::from_secs(2);

impl ScimState {
    /// Prepares the SCIM state over an open store.
    pub fn new(store: Store, config: &ScimConfig) -> Result<ScimState, StoreError> {
        Ok(ScimState {
            inner: Arc::new(Inner {
                auth: auth::Authenticator::new(store.clone()),
                failures: auth::FailureLog::default(),
                store,
                base_path: config.base_path.trim_end_matches('/').to_string(),
                public_base: config
                    .public_url
                    .as_deref()
                    .map(|u| scim_base_url(u, &config.base_path)),
                max_body_bytes: config.max_body_bytes,
                tls: config.tls_cert.is_some(),
                domains: config
                    .domains
                    .iter()
                    .flatten()
                    .map(|d| crate::member::domain_key(d).into_owned())
                    .collect(),
                body_budget: Arc::new(tokio::sync::Semaphore::new(
                    config
                        .max_inflight_body_bytes
                        .min(tokio::sync::Semaphore::MAX_PERMITS),
                )),
                max_inflight_body_bytes: config.max_inflight_body_bytes,
            }),
        })
    }

    /// The same state, provisioning only addresses in `domains` (caseless keys; empty =
    /// any): the daemon passes [`crate::config::Config::scim_domains`], which falls back on
    /// `[google].domains`.
    pub fn with_domains(self, domains: Vec<String>) -> ScimState {
        let inner = &*self.inner;
        ScimState {
            inner: Arc::new(Inner {
                store: inner.store.clone(),
                auth: auth::Authenticator::new(inner.store.clone()),
                failures: auth::FailureLog::default(),
                base_path: inner.base_path.clone(),
                public_base: inner.public_base.clone(),
                max_body_bytes: inner.max_body_bytes,
                tls: inner.tls,
                domains,
                body_budget: inner.body_budget.clone(),
                max_inflight_body_bytes: inner.max_inflight_body_bytes,
            }),
        }
    }

    /// Refuses a SCIM write whose `userName` is outside `[scim].domains`: a create or a
    /// claim (`before` is `None`), or a rename into another domain. A member already outside
    /// them (made before the key was set) can still be updated or deactivated by its client
    /// as long as its domain stays. The warning names the token's label, since a client
    /// sending such names is misconfigured or its token is in the wrong hands.
    pub fn check_domain(
        &self,
        label: &str,
        before: Option<&crate::member::UserName>,
        after: &crate::member::UserName,
    ) -> Result<(), error::ScimError> {
        let domains = &self.inner.domains;
        if domains.is_empty() || crate::member::in_domains(domains, after.as_str()) {
            return Ok(());
        }
        if before.is_some_and(|b| b.domain() == after.domain()) {
            return Ok(());
        }
        let domain = match after.as_str().rsplit_once('@') {
            Some((_, d)) => d.to_string(),
            None => String::new(),
        };
        tracing::warn!(
            token = %label,
            domain = %domain,
            "refused a SCIM write of a userName outside [scim].domains"
        );
        let shown = if domain.is_empty() {
            "has no domain".to_string()
        } else {
            format!("is in the domain {domain:?}")
        };
        Err(error::ScimError::invalid_value(format!(
            "userName {shown}, which SCIM may not provision here: [scim].domains (by default \
             [google].domains) allows {}",
            domains.join(", ")
        )))
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Applies one change through `provision::apply_queued`, on the store's writer thread:
    /// never on an async worker (a full or failing disk can hold a write for ever), within
    /// the store's write deadline, in one transaction with the writes queued meanwhile, and
    /// durable, with every write before it, when it answers. The request's answer, built
    /// from what this returns, then needs no flush of its own ([`durable_answers`]).
    pub async fn apply(
        &self,
        change: crate::member::Change,
        actor: &crate::member::Actor,
    ) -> Result<crate::provision::Outcome, crate::provision::ProvisionError> {
        let result = crate::provision::apply_queued(&self.inner.store, change, actor.clone()).await;
        // The writer's flush covered everything the write saw. Only a write that succeeded
        // says so: every handler answers from its outcome at once, while a refused one may
        // be followed by more reads (a PATCH reads the member again and retries), whose
        // answer the middleware's own check must cover.
        if result.is_ok() {
            let _ = ANSWER_DURABLE.try_with(|d| d.set(true));
        }
        result
    }

    /// The absolute base URL of the endpoint: `[scim].public_url`, else from the Host header.
    pub fn base_url(&self, headers: &HeaderMap) -> String {
        if let Some(b) = &self.inner.public_base {
            return b.clone();
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| valid_host(h))
            .unwrap_or("localhost");
        let scheme = if self.inner.tls { "https" } else { "http" };
        format!("{scheme}://{host}{}", self.inner.base_path)
    }
}

/// The SCIM base URL from `[scim].public_url`: the URL itself when it already ends with
/// the base path, else the URL with the base path appended.
pub fn scim_base_url(public_url: &str, base_path: &str) -> String {
    let u = public_url.trim_end_matches('/');
    let bp = base_path.trim_end_matches('/');
    if u.ends_with(bp) {
        u.to_string()
    } else {
        format!("{u}{bp}")
    }
}

/// The complete SCIM app: routes under `[scim].base_path`, auth, limits and SCIM errors.
pub fn router(state: ScimState) -> Router {
    let api = Router::new()
        .route("/Users", get(users::get_list).post(users::create))
        .route("/Users/.search", post(users::search))
        .route(
            "/Users/{id}",
            get(users::get_one)
                .put(users::replace)
                .patch(users::modify)
                .delete(users::delete),
        )
        .route("/.search", post(users::search))
        .route("/ServiceProviderConfig", get(service_provider_config))
        .route("/ResourceTypes", get(resource_types))
        .route("/ResourceTypes/{id}", get(resource_type))
        .route("/Schemas", get(schemas))
        .route("/Schemas/{id}", get(schema_one))
        .route("/Bulk", any(bulk))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found);
    let base_path = state.inner.base_path.clone();
    let feed = Router::new()
        .route("/retrac/v1/events", get(feed::events))
        .route("/retrac/v1/members", get(feed::members));
    let app = if base_path.is_empty() || base_path == "/" {
        api.merge(feed)
    } else {
        Router::new()
            .nest(&base_path, api)
            .merge(feed)
            .fallback(not_found)
    };
    app.layer(middleware::from_fn_with_state(
        state.clone(),
        durable_answers,
    ))
    .layer(middleware::from_fn_with_state(state.clone(), authenticate))
    .layer(middleware::from_fn(check_host))
    .layer(middleware::from_fn(observe))
    .with_state(state)
}

/// Refuses a request whose `Host` is not `host[:port]`: without `[scim].public_url` the
/// answer's own URLs (`Location`, `meta.location`) are built from it, and a `Host` such as
/// `evil.example:443/phish?` must not reach them.
async fn check_host(req: Request, next: Next) -> Response {
    if let Some(h) = req.headers().get(header::HOST) {
        if !h.to_str().is_ok_and(valid_host) {
            return ScimError::invalid_syntax(
                "the Host header must be a host name or an IP address, with an optional port",
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// Whether `h` is `host[:port]`: an IP literal in brackets, an IPv4 address or a host name
/// of RFC 3986's unreserved characters (letters, digits, `-`, `.`, `_`, `~`: every name DNS
/// serves), and a port of one to five digits.
pub fn valid_host(h: &str) -> bool {
    let (host, port) = match h.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((ip, after)) => {
                if ip.parse::<std::net::Ipv6Addr>().is_err() {
                    return false;
                }
                match after {
                    "" => return true,
                    p => match p.strip_prefix(':') {
                        Some(port) => ("", port),
                        None => return false,
                    },
                }
            }
            None => return false,
        },
        None => match h.rsplit_once(':') {
            Some((host, port)) => (host, port),
            None => (h, ""),
        },
    };
    let port_ok = port.is_empty() && !h.ends_with(':')
        || (1..=5).contains(&port.len()) && port.bytes().all(|b| b.is_ascii_digit());
    let host_ok = h.starts_with('[')
        || !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    port_ok && host_ok
}

/// The connection limits of the SCIM listener from `[scim]`.
pub fn conn_limits(config: &ScimConfig) -> ConnLimits {
    ConnLimits {
        name: "SCIM",
        max_connections: config.max_connections,
        idle_timeout: Duration::from_secs(config.idle_timeout),
        header_timeout: crate::listener::HEADER_TIMEOUT,
        max_connections_per_ip: config.max_connections_per_ip,
        drain_timeout: crate::listener::DRAIN_TIMEOUT,
    }
}

/// The answer to every request once the store is read-only.
fn read_only() -> Response {
    ScimError::read_only().into_response()
}

tokio::task_local! {
    /// Set by [`ScimState::apply`] once the request's write succeeded and it, and every
    /// write before it, is durable: a handler that reads the store again after a successful
    /// write must not answer from those reads (none does: each answers from the outcome).
    static ANSWER_DURABLE: std::cell::Cell<bool>;
}

/// Answers only from durable state, for every request in one place: a write's answer waits
/// for the flush that covers it, and a read, a 409 or a PUT that changed nothing, which may
/// show another request's write, waits until every write before it is on disk (concurrent
/// requests share the flush). With nothing pending, no flush is asked for, and a request
/// whose write went through [`ScimState::apply`] already waited for the writer thread's
/// flush, which covers everything its answer shows. Once the store has failed, every
/// request gets 503.
async fn durable_answers(State(state): State<ScimState>, req: Request, next: Next) -> Response {
    if state.store().flush_failure().is_some() {
        return read_only();
    }
    let (resp, durable) = ANSWER_DURABLE
        .scope(std::cell::Cell::new(false), async {
            let resp = next.run(req).await;
            (resp, ANSWER_DURABLE.with(|d| d.get()))
        })
        .await;
    // The one durability point: an answer that may show a write not yet on disk (its own,
    // or another request's) waits for the flush that covers it; with nothing pending it
    // takes no part in the group commit at all.
    if durable && state.store().flush_failure().is_none() || !state.store().flush_pending() {
        return resp;
    }
    // Its own task: hyper drops a request's future when the client hangs up.
    let store = state.store().clone();
    match tokio::spawn(async move { store.flush().await }).await {
        Ok(Ok(())) => resp,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "a flush failed: the store is read-only");
            read_only()
        }
        Err(e) => ScimError::internal(e).into_response(),
    }
}

/// Reads a JSON request body: media type, size limit, UTF-8 and syntax, each with a
/// SCIM error that says what is wrong. The permit is the body's share of
/// `[scim].max_inflight_body_bytes`: keep it while the value is alive.
pub async fn read_json(
    state: &ScimState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Value, BodyPermit), ScimError> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or_default().to_ascii_lowercase();
        let essence = ct.split(';').next().unwrap_or_default().trim().to_string();
        if essence != "application/scim+json" && essence != "application/json" {
            return Err(ScimError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "the body must be application/scim+json or application/json, not {essence:?}"
                ),
            ));
        }
    }
    let limit = state.inner.max_body_bytes;
    let too_large = || {
        ScimError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than the limit of {limit} bytes ([scim].max_body_bytes)"),
        )
    };
    let drain = MAX_DRAIN_BYTES.max(limit);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > drain as u64) {
        // Too big to read and throw away: answer now; the connection is cut.
        return Err(too_large());
    }
    // The body's share of the budget: its declared length, or the limit when it has none
    // (chunked). A body over the limit is thrown away as it is read, so it holds no more.
    let share = declared
        .map_or(limit, |n| usize::try_from(n).unwrap_or(limit).min(limit))
        .clamp(1, state.inner.max_inflight_body_bytes.max(1));
    let permit = match u32::try_from(share) {
        Ok(n) => {
            match tokio::time::timeout(
                BODY_BUDGET_WAIT,
                state.inner.body_budget.clone().acquire_many_owned(n),
            )
            .await
            {
                Ok(Ok(p)) => Some(p),
                _ => {
                    metrics::counter!("retrac_scim_body_budget_refusals_total").increment(1);
                    return Err(ScimError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!(
                            "too many request bodies are being read at once \
                             ([scim].max_inflight_body_bytes = {} bytes); retry shortly",
                            state.inner.max_inflight_body_bytes
                        ),
                    ));
                }
            }
        }
        Err(_) => None,
    };
    let permit = BodyPermit { _permit: permit };
    let bytes = read_limited(body, limit, drain, MAX_DRAIN_TIME)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge => too_large(),
            BodyError::Read(e) => {
                ScimError::invalid_syntax(format!("cannot read the request body: {e}"))
            }
        })?;
    if bytes.is_empty() {
        return Err(ScimError::invalid_syntax(
            "the request body is empty; a JSON object is expected",
        ));
    }
    if let Err(e) = std::str::from_utf8(&bytes) {
        return Err(ScimError::invalid_syntax(format!(
            "the body is not valid UTF-8 (at byte {})",
            e.valid_up_to()
        )));
    }
    let value = json::parse(&bytes).map_err(|e| ScimError::invalid_syntax(e.to_string()))?;
    Ok((value, permit))
}

enum BodyError {
    TooLarge,
    Read(axum::Error),
}

/// Reads a body of at most `limit` bytes. A longer one is read on and thrown away up to
/// `drain` bytes and for at most `drain_time` after it passed the limit, so the client is
/// reading by the time the 413 goes out.
async fn read_limited(
    body: Body,
    limit: usize,
    drain: usize,
    drain_time: Duration,
) -> Result<Vec<u8>, BodyError> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut out = Vec::new();
    let mut seen = 0usize;
    let mut over_since: Option<tokio::time::Instant> = None;
    loop {
        let next = match over_since {
            None => body.frame().await,
            Some(t0) => match tokio::time::timeout_at(t0 + drain_time, body.frame()).await {
                Ok(f) => f,
                Err(_) => return Err(BodyError::TooLarge),
            },
        };
        let Some(frame) = next else { break };
        let frame = frame.map_err(BodyError::Read)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len());
        if seen > drain {
            return Err(BodyError::TooLarge);
        }
        if seen <= limit {
            out.extend_from_slice(&data);
        } else {
            over_since.get_or_insert_with(tokio::time::Instant::now);
            if !out.is_empty() {
                out = Vec::new();
            }
        }
    }
    if seen > limit {
        return Err(BodyError::TooLarge);
    }
    Ok(out)
}

async fn authenticate(State(state): State<ScimState>, mut req: Request, next: Next) -> Response {
    match state.inner.auth.check_headers(req.headers(), Utc::now()) {
        Ok(ok) => {
            // A token opens SCIM or the event feed, never both.
            let feed = req.uri().path().starts_with(feed::PREFIX);
            match (feed, ok.scope) {
                (true, TokenScope::Scim) => {
                    return feed::FeedError::forbidden(
                        "a SCIM token cannot read the event feed: make one with `retrac-sync token create --scope events`",
                    )
                    .into_response()
                }
                (false, TokenScope::Events) => {
                    return ScimError::new(
                        StatusCode::FORBIDDEN,
                        "an events token reads /retrac/v1/events and /retrac/v1/members only",
                    )
                    .into_response()
                }
                _ => {}
            }
            let label = ok.label;
            req.extensions_mut().insert(AuthLabel(label.clone()));
            let mut resp = next.run(req).await;
            resp.extensions_mut().insert(AuthLabel(label));
            resp
        }
        Err(denied) => {
            let client = req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0);
            state.inner.failures.record(client, &denied, Instant::now());
            let detail = match denied.reason {
                auth::AuthFailure::Missing => "an Authorization: Bearer token is required (make one with `retrac-sync token create`)",
                auth::AuthFailure::Malformed => "the request must carry one Authorization: Bearer header with a token from `retrac-sync token create`",
                auth::AuthFailure::Unknown | auth::AuthFailure::Revoked => "the bearer token is not valid or has been revoked",
            };
            ScimError::new(StatusCode::UNAUTHORIZED, detail).into_response()
        }
    }
}

/// The `method` label: a closed set, so a client cannot grow the metrics with method
/// names of its own.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        _ => "other",
    }
}

/// Metrics, the request log and the request timeout.
async fn observe(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method());
    // The path only: a query may carry a filter with personal data, and never a token.
    let path = req.uri().path().to_string();
    let mut resp = match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ScimError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the request took too long; try again",
        )
        .into_response(),
    };
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE {
        // The rest of an oversized body may still be on its way: do not read it as the
        // next request.
        resp.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    let elapsed = started.elapsed();
    let status = resp.status();
    let label = resp
        .extensions()
        .get::<AuthLabel>()
        .map(|l| l.0.clone())
        .unwrap_or_else(|| "-".into());
    metrics::counter!("retrac_scim_requests_total", "method" => method, "status" => status_label(status))
        .increment(1);
    metrics::histogram!("retrac_scim_request_duration_seconds", "method" => method)
        .record(elapsed.as_secs_f64());
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    let status = status.as_u16();
    if status == 401 {
        // Refusals have their own line, at most one a second per client.
        tracing::debug!(method, path = %path, status, latency_ms, "SCIM request");
    } else {
        tracing::info!(
            method,
            path = %path,
            status,
            latency_ms,
            token = %label,
            "SCIM request"
        );
    }
    resp
}

/// Every value of the `status` label of `retrac_scim_requests_total`.
pub const STATUS_LABELS: &[&str] = &[
    "200", "201", "204", "304", "400", "401", "403", "404", "405", "409", "412", "413", "415",
    "500", "501", "503", "other",
];

/// The `status` label: the code, from a fixed table so that rendering it allocates nothing.
fn status_label(status: StatusCode) -> &'static str {
    // Every status the app answers with; any other is "other".
    const KNOWN: &[(u16, &str)] = &[
        (200, "200"),
        (201, "201"),
        (204, "204"),
        (304, "304"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (409, "409"),
        (412, "412"),
        (413, "413"),
        (415, "415"),
        (500, "500"),
        (501, "501"),
        (503, "503"),
    ];
    KNOWN
        .iter()
        .find(|(c, _)| *c == status.as_u16())
        .map_or("other", |(_, l)| l)
}

async fn service_provider_config(State(state): State<ScimState>, headers: HeaderMap) -> Response {
    scim_json(&schema::service_provider_config(&state.base_url(&headers)))
}

async fn resource_types(State(state): State<ScimState>, headers: HeaderMap) -> Response {
    scim_json(&schema::list(vec![schema::user_resource_type(
        &state.base_url(&headers),
    )]))
}

async fn resource_type(
    State(state): State<ScimState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    if id == "User" {
        Ok(scim_json(&schema::user_resource_type(
            &state.base_url(&headers),
        )))
    } else {
        Err(ScimError::not_found(format!("ResourceType {id}")))
    }
}

async fn schemas(State(state): State<ScimState>, headers: HeaderMap) -> Response {
    scim_json(&schema::list(schema::all_schemas(
        &state.base_url(&headers),
    )))
}

async fn schema_one(
    State(state): State<ScimState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    schema::all_schemas(&state.base_url(&headers))
        .into_iter()
        .find(|s| s.get("id").and_then(Value::as_str) == Some(id.as_str()))
        .map(|s| scim_json(&s))
        .ok_or_else(|| ScimError::not_found(format!("Schema {id}")))
}

async fn bulk() -> ScimError {
    ScimError::new(
        StatusCode::NOT_IMPLEMENTED,
        "Bulk is not supported (ServiceProviderConfig says bulk.supported = false)",
    )
}

async fn method_not_allowed(method: Method) -> ScimError {
    ScimError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on this endpoint"),
    )
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ScimError {
    ScimError::new(
        StatusCode::NOT_FOUND,
        format!("no SCIM endpoint {method} {}", uri.path()),
    )
}

/// Serves `app` on `listener`, over TLS when `tls` is given, within `limits`, until
/// `shutdown` completes; then stops accepting and lets requests in flight finish (at most
/// about 10 s).
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::listener::serve_http(listener, tls, app, limits, shutdown).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_labels_come_from_closed_sets() {
        for (m, want) in [
            ("GET", "GET"),
            ("PATCH", "PATCH"),
            ("get", "other"),
            ("XYZZY", "other"),
            ("OPTIONS", "other"),
        ] {
            let method = Method::from_bytes(m.as_bytes()).unwrap();
            assert_eq!(method_label(&method), want, "{m}");
        }
        assert_eq!(status_label(StatusCode::OK), "200");
        assert_eq!(status_label(StatusCode::IM_A_TEAPOT), "other");
    }

    #[tokio::test]
    async fn an_oversized_body_is_read_to_the_drain_bound_then_refused() {
        let body = |n: usize| Body::from(vec![b'x'; n]);
        assert_eq!(
            read_limited(body(10), 10, 40, MAX_DRAIN_TIME).await.ok(),
            Some(vec![b'x'; 10])
        );
        assert!(matches!(
            read_limited(body(11), 10, 40, MAX_DRAIN_TIME).await,
            Err(BodyError::TooLarge)
        ));
        assert!(matches!(
            read_limited(body(41), 10, 40, MAX_DRAIN_TIME).await,
            Err(BodyError::TooLarge)
        ));
    }
}
