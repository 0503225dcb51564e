//! The event feed and the member listing, for the Retrac app (an `events` token), on the SCIM
//! listener outside the SCIM base path:
//!
//! - `GET /retrac/v1/events?after=SEQ&limit=N&wait=SECONDS`: the events after `SEQ`, in
//!   order; with `wait`, an empty answer waits for the next event (long poll); a cursor older
//!   than the oldest kept event answers 410 Gone.
//! - `GET /retrac/v1/members?page_token=…&limit=N`: every member, in pages; the first page
//!   carries `seq`, the last event committed before the listing began.
//!
//! A consumer lists, then follows the feed from the listing's `seq` (Kubernetes' list and
//! watch). Answers pass the router's durability middleware like SCIM's: no event is shown
//! before it is on disk.

use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde_json::json;

use super::ScimState;
use crate::member::MemberId;

/// Where the feed's routes live.
pub const PREFIX: &str = "/retrac/v1/";

/// Events per answer unless `limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 100;
/// The most events or members one answer holds.
pub const MAX_LIMIT: usize = 1_000;
/// The longest long poll.
pub const MAX_WAIT_SECS: u64 = 60;

/// A feed error: `{"error": CODE, "detail": TEXT, ...}`.
pub struct FeedError {
    status: StatusCode,
    body: serde_json::Value,
}

impl FeedError {
    fn bad(detail: impl Into<String>) -> FeedError {
        FeedError {
            status: StatusCode::BAD_REQUEST,
            body: json!({"error": "invalid_request", "detail": detail.into()}),
        }
    }

    /// 403: the token does not open this.
    pub fn forbidden(detail: &str) -> FeedError {
        FeedError {
            status: StatusCode::FORBIDDEN,
            body: json!({"error": "forbidden", "detail": detail}),
        }
    }

    fn internal(e: impl std::fmt::Display) -> FeedError {
        tracing::error!(error = %e, "the event feed failed");
        FeedError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            body: json!({"error": "internal", "detail": "the store could not be read; see the daemon's log"}),
        }
    }
}

impl IntoResponse for FeedError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// The query's `key=value` pairs; a key given twice, or one not in `known`, is refused.
fn params<'a>(
    query: Option<&'a str>,
    known: &[&str],
) -> Result<Vec<(&'a str, &'a str)>, FeedError> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if !known.contains(&k) {
            return Err(FeedError::bad(format!(
                "unknown parameter {:?} (known: {})",
                k.chars().take(40).collect::<String>(),
                known.join(", ")
            )));
        }
        if out.iter().any(|(seen, _)| *seen == k) {
            return Err(FeedError::bad(format!("{k} is given twice")));
        }
        out.push((k, v));
    }
    Ok(out)
}

fn number(params: &[(&str, &str)], key: &str) -> Result<Option<u64>, FeedError> {
    match params.iter().find(|(k, _)| *k == key) {
        None => Ok(None),
        Some((_, v)) => v
            .parse::<u64>()
            .map(Some)
            .map_err(|_| FeedError::bad(format!("{key} must be a whole number, not {v:?}"))),
    }
}

fn limit(params: &[(&str, &str)]) -> Result<usize, FeedError> {
    match number(params, "limit")? {
        None => Ok(DEFAULT_LIMIT),
        Some(0) => Err(FeedError::bad("limit must be at least 1")),
        Some(n) => Ok((n as usize).min(MAX_LIMIT)),
    }
}

/// `GET /retrac/v1/events`
pub async fn events(
    State(state): State<ScimState>,
    RawQuery(query): RawQuery,
) -> Result<Response, FeedError> {
    let p = params(query.as_deref(), &["after", "limit", "wait"])?;
    let after = number(&p, "after")?.unwrap_or(0);
    let limit = limit(&p)?;
    let wait = Duration::from_secs(number(&p, "wait")?.unwrap_or(0).min(MAX_WAIT_SECS));
    let store = state.store().clone();
    // Subscribed before the first read, so an event committed in between wakes the wait.
    let mut watch = store.subscribe_events();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let last = *watch.borrow_and_update();
        let s = store.clone();
        // The events first, then the oldest kept: a retention pass in between can only
        // make the check below stricter, never let a gap through.
        let (events, oldest) = tokio::task::spawn_blocking(move || {
            let events = s.events_after(after, limit)?;
            Ok::<_, crate::store::StoreError>((events, s.oldest_event_seq()?))
        })
        .await
        .map_err(FeedError::internal)?
        .map_err(FeedError::internal)?;
        // The first event this answer should start at is `after + 1`: if it was pruned, the
        // consumer missed events and must list again.
        let first_kept = oldest.unwrap_or(last + 1);
        let gap = events
            .first()
            .is_some_and(|e| e.seq != after.saturating_add(1));
        if gap || after.saturating_add(1) < first_kept || after > last {
            return Ok((
                StatusCode::GONE,
                Json(json!({
                    "error": "cursor_expired",
                    "detail": "events after this cursor are no longer kept (or it is from another store): list the members again (GET /retrac/v1/members) and follow the feed from the listing's seq",
                    "oldest_seq": first_kept,
                })),
            )
                .into_response());
        }
        if !events.is_empty() || tokio::time::Instant::now() >= deadline {
            let next_after = events.last().map_or(after, |e| e.seq);
            return Ok(Json(json!({"events": events, "next_after": next_after})).into_response());
        }
        match tokio::time::timeout_at(deadline, watch.changed()).await {
            Ok(Ok(())) => continue,
            // The store closed, or the wait is over: answer with nothing.
            _ => return Ok(Json(json!({"events": [], "next_after": after})).into_response()),
        }
    }
}

/// `GET /retrac/v1/members`
pub async fn members(
    State(state): State<ScimState>,
    RawQuery(query): RawQuery,
) -> Result<Response, FeedError> {
    let p = params(query.as_deref(), &["page_token", "limit"])?;
    let limit = limit(&p)?;
    let start = match p.iter().find(|(k, _)| *k == "page_token") {
        None => None,
        Some((_, t)) => Some(decode_token(t).ok_or_else(|| {
            FeedError::bad("page_token is not one this server gave (start again without it)")
        })?),
    };
    let store = state.store().clone();
    let (seq, page) = tokio::task::spawn_blocking(move || {
        // Read before the listing: every change up to `seq` is in what follows, and a later
        // one may be too (its event replays harmlessly: it carries the version).
        let seq = store.last_event_seq();
        store.members_page(start, limit + 1).map(|m| (seq, m))
    })
    .await
    .map_err(FeedError::internal)?
    .map_err(FeedError::internal)?;
    let more = page.len() > limit;
    let page = &page[..page.len().min(limit)];
    let next = if more {
        page.last().map(|m| encode_token(m.id))
    } else {
        None
    };
    let members: Vec<_> = page.iter().map(|m| m.to_view()).collect();
    let mut body = json!({"members": members, "next_page_token": next});
    if start.is_none() {
        body["seq"] = json!(seq);
    }
    Ok(Json(body).into_response())
}

fn encode_token(id: MemberId) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.as_bytes())
}

fn decode_token(t: &str) -> Option<MemberId> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .ok()?;
    uuid::Uuid::from_slice(&bytes).ok().map(MemberId)
}
