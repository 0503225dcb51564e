//! Audit: the audit entries, newest first, filtered by member and time, in pages.

use axum::extract::{Query, State};
use axum::response::Response;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use maud::{html, Markup};
use serde::Deserialize;

use super::{action_error, page, when, Nav};
use crate::admin::{self, AppError, Reply, Request};
use crate::console::session::Owner;
use crate::console::ConsoleState;
use crate::owner;
use crate::store::AuditEntry;

/// Entries a page shows.
pub const PAGE: usize = 50;

/// `GET /audit` parameters.
#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    /// Email or member id.
    #[serde(default)]
    member: String,
    /// `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM` (UTC).
    #[serde(default)]
    since: String,
    /// The page's cursor: `TIME_MICROS.SEQ` of the last entry of the previous page.
    before: Option<String>,
}

fn parse_since(s: &str) -> Result<Option<DateTime<Utc>>, AppError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M") {
        return Ok(Some(t.and_utc()));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).map(|t| t.and_utc()));
    }
    Err(AppError::Usage(format!("{s:?} is not a time: give a date (2026-12-07) or a date and time in UTC (2026-12-07T09:30)")))
}

fn parse_cursor(s: &str) -> Option<(DateTime<Utc>, u64)> {
    let (t, seq) = s.split_once('.')?;
    let t = chrono::TimeZone::timestamp_micros(&Utc, t.parse().ok()?).single()?;
    Some((t, seq.parse().ok()?))
}

/// `GET /audit`.
pub async fn list(
    State(state): State<ConsoleState>,
    owner: Owner,
    Query(q): Query<AuditQuery>,
) -> Response {
    let since = match parse_since(&q.since) {
        Ok(s) => s,
        Err(e) => return action_error(&owner, Nav::Audit, "/audit", &e),
    };
    let member = q.member.trim();
    let req = Request::Owner(owner::Request::Audit {
        member: (!member.is_empty()).then(|| member.to_string()),
        since,
        limit: Some(PAGE + 1),
        before: q.before.as_deref().and_then(parse_cursor),
    });
    let (mut entries, oldest) = match admin::execute_as(state.ctx(), req, owner.actor()).await {
        Ok(Reply::Audit { items, oldest_held }) => {
            let entries: Result<Vec<_>, _> = items.collect();
            match entries {
                Ok(e) => (e, oldest_held),
                Err(e) => return action_error(&owner, Nav::Audit, "/audit", &e),
            }
        }
        Ok(_) => return super::failure("unexpected answer"),
        Err(e) => return action_error(&owner, Nav::Audit, "/audit", &e),
    };
    // Oldest first from the store; newest first here. One more than a page says whether
    // an older page exists.
    entries.reverse();
    let more = entries.len() > PAGE;
    entries.truncate(PAGE);
    let next = more
        .then(|| {
            entries
                .last()
                .map(|e| format!("{}.{}", e.time.timestamp_micros(), e.seq))
        })
        .flatten();
    let body = html! {
        h1 { "Audit" }
        form class="filters" method="get" action="/audit" role="search" {
            label for="member" { "Member" }
            input id="member" name="member" value=(member) placeholder="email or member id";
            label for="since" { "Since" }
            input id="since" name="since" value=(q.since.trim()) placeholder="2026-12-01 or 2026-12-01T09:30 (UTC)";
            button type="submit" { "Show" }
        }
        @if let Some(o) = oldest { p class="hint" { "The audit holds entries from " (when(&o)) "." } }
        @if entries.is_empty() { p { "No entry." } } @else { (table(&entries, true)) }
        nav aria-label="Pages" class="pages" {
            @if q.before.is_some() {
                a href={ "/audit?" (query(member, q.since.trim(), None)) } { "Newest entries" }
            }
            @if let Some(n) = &next {
                a href={ "/audit?" (query(member, q.since.trim(), Some(n))) } { "Older entries" }
            }
        }
    };
    page(&owner, Nav::Audit, "Audit", body)
}

fn query(member: &str, since: &str, before: Option<&str>) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("member", member).append_pair("since", since);
    if let Some(b) = before {
        q.append_pair("before", b);
    }
    q.finish()
}

/// Entries as a table, newest first; `with_member` adds the member's column.
pub fn table(entries: &[AuditEntry], with_member: bool) -> Markup {
    html! {
        table {
            caption { "Audit entries, newest first" }
            thead { tr {
                th scope="col" { "Time" } th scope="col" { "Actor" }
                @if with_member { th scope="col" { "Member" } }
                th scope="col" { "Change" } th scope="col" { "Fields" }
            } }
            tbody {
                @for e in entries {
                    tr {
                        td { (when(&e.time)) }
                        td { (e.actor.to_string()) }
                        @if with_member { td { a href={ "/members/" (e.member_id) } { (e.user_name) } } }
                        td { (e.change.as_str()) }
                        td {
                            @for (k, after) in &e.after {
                                div {
                                    code { (k) } ": "
                                    @if let Some(b) = e.before.get(k) { (b.to_string()) " → " }
                                    (after.to_string())
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
