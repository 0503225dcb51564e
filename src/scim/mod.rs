//! The SCIM 2.0 service provider (RFC 7643/7644) for Users: the push path.
//!
//! [`router`] builds the whole app (base path, body limit, bearer auth, SCIM errors,
//! metrics and request logs), so tests drive it with `oneshot`; [`serve`] runs it over
//! HTTP or HTTPS with graceful shutdown.

pub mod auth;
pub mod error;
pub mod filter;
pub mod patch;
pub mod resource;
pub mod schema;
pub mod tls;
pub mod users;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use chrono::Utc;
use serde_json::Value;

use crate::config::ScimConfig;
use crate::store::{Store, StoreError};
use error::{scim_json, ScimError};

/// A request that takes longer than this is answered with 503.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long shutdown waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

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
    base_path: String,
    public_base: Option<String>,
    max_body_bytes: usize,
    tls: bool,
}

impl ScimState {
    /// Prepares the SCIM state over an open store.
    pub fn new(store: Store, config: &ScimConfig) -> Result<ScimState, StoreError> {
        Ok(ScimState {
            inner: Arc::new(Inner {
                auth: auth::Authenticator::new(store.clone()),
                store,
                base_path: config.base_path.trim_end_matches('/').to_string(),
                public_base: config
                    .public_url
                    .as_deref()
                    .map(|u| scim_base_url(u, &config.base_path)),
                max_body_bytes: config.max_body_bytes,
                tls: config.tls_cert.is_some(),
            }),
        })
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Applies one change through `provision::apply`, at the current time.
    pub fn apply(
        &self,
        change: crate::member::Change,
        actor: &crate::member::Actor,
    ) -> Result<crate::provision::Outcome, crate::provision::ProvisionError> {
        // Member transactions are already one at a time: `Store::transact` holds the
        // store's writer lock for SCIM, the pull and the owner alike.
        crate::provision::apply(&self.inner.store, change, actor, Utc::now())
    }

    /// The absolute base URL of the endpoint: `[scim].public_url`, else from the Host header.
    pub fn base_url(&self, headers: &HeaderMap) -> String {
        if let Some(b) = &self.inner.public_base {
            return b.clone();
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
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
    let app = if base_path.is_empty() || base_path == "/" {
        api
    } else {
        Router::new().nest(&base_path, api).fallback(not_found)
    };
    app.layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::from_fn(observe))
        .with_state(state)
}

/// Reads a JSON request body: media type, size limit, UTF-8 and syntax, each with a
/// SCIM error that says what is wrong.
pub async fn read_json(
    state: &ScimState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Value, ScimError> {
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
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = source {
            if s.is::<http_body_util::LengthLimitError>() {
                return too_large();
            }
            source = s.source();
        }
        ScimError::invalid_syntax(format!("cannot read the request body: {e}"))
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
    serde_json::from_slice(&bytes)
        .map_err(|e| ScimError::invalid_syntax(format!("the body is not valid JSON: {e}")))
}

async fn authenticate(State(state): State<ScimState>, mut req: Request, next: Next) -> Response {
    let header_value = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match state.inner.auth.check(header_value, Utc::now()) {
        Ok(label) => {
            req.extensions_mut().insert(AuthLabel(label.clone()));
            let mut resp = next.run(req).await;
            resp.extensions_mut().insert(AuthLabel(label));
            resp
        }
        Err(auth::AuthFailure::Missing) => ScimError::new(
            StatusCode::UNAUTHORIZED,
            "an Authorization: Bearer token is required (make one with `retrac-sync token create`)",
        )
        .into_response(),
        Err(auth::AuthFailure::Invalid) => ScimError::new(
            StatusCode::UNAUTHORIZED,
            "the bearer token is not valid or has been revoked",
        )
        .into_response(),
    }
}

/// Metrics, the request log and the request timeout.
async fn observe(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    // The path only: a query may carry a filter with personal data, and never a token.
    let path = req.uri().path().to_string();
    let resp = match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ScimError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the request took too long; try again",
        )
        .into_response(),
    };
    let elapsed = started.elapsed();
    let status = resp.status().as_u16();
    let label = resp
        .extensions()
        .get::<AuthLabel>()
        .map(|l| l.0.clone())
        .unwrap_or_else(|| "-".into());
    metrics::counter!("retrac_scim_requests_total", "method" => method.to_string(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!("retrac_scim_request_duration_seconds", "method" => method.to_string())
        .record(elapsed.as_secs_f64());
    tracing::info!(
        method = %method,
        path = %path,
        status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        token = %label,
        "SCIM request"
    );
    resp
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

/// Serves `app` on `listener`, over TLS when `tls` is given, until `shutdown` completes;
/// then stops accepting and lets requests in flight finish (at most about 10 s).
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;

    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "SCIM listener cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let acceptor = acceptor.clone();
        let mut stop = stop_rx.clone();
        connections.spawn(async move {
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    app.clone().oneshot(req.map(Body::new))
                });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30));
            macro_rules! drive {
                ($io:expr) => {{
                    let conn = builder.serve_connection($io, service);
                    tokio::pin!(conn);
                    tokio::select! {
                        r = conn.as_mut() => r,
                        _ = stop.changed() => {
                            conn.as_mut().graceful_shutdown();
                            conn.await
                        }
                    }
                }};
            }
            let result = match acceptor {
                None => drive!(TokioIo::new(stream)),
                Some(acceptor) => {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls_stream)) => drive!(TokioIo::new(tls_stream)),
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "SCIM connection ended with an error");
            }
        });
        // Reap finished connections so the set does not grow.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "SCIM connections still open after the drain timeout; closing them"
        );
        connections.abort_all();
    }
    Ok(())
}
