//! Sync: the last runs, a run now or a dry run, and the held deactivations to approve or
//! discard.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};

use super::{action_error, csrf, notice, page, when, Done, Nav};
use crate::admin::{self, AppError, Reply, Request};
use crate::console::session::Owner;
use crate::console::ConsoleState;
use crate::reconcile::{self, Response as SyncResponse, SyncOutcome};
use crate::store::RunId;

/// Runs the page lists.
const RUNS: usize = 20;
/// Held members listed per held set.
const HELD_SHOWN: usize = 200;

/// `GET /sync`.
pub async fn show(
    State(state): State<ConsoleState>,
    owner: Owner,
    Query(q): Query<Done>,
) -> Response {
    if state.ctx().sync.is_none() {
        return not_configured(&owner);
    }
    let req = Request::Sync(reconcile::Request::Status { limit: RUNS });
    let (runs, held, running) = match admin::execute_as(state.ctx(), req, owner.actor()).await {
        Ok(Reply::Sync(SyncResponse::Status {
            runs,
            held,
            running,
        })) => (runs, held, running),
        Ok(_) => return super::failure("unexpected answer"),
        Err(e) => return action_error(&owner, Nav::Sync, "/sync", &e),
    };
    // The members each held set holds (a read of the store; the summary above has five).
    let store = state.ctx().store.clone();
    let held_members: std::collections::HashMap<String, Vec<String>> =
        tokio::task::spawn_blocking(move || store.held_all())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
            .into_iter()
            .map(|h| {
                let names = h
                    .changes
                    .into_iter()
                    .take(HELD_SHOWN)
                    .map(|c| c.user_name)
                    .collect();
                (h.run_id.as_str().to_string(), names)
            })
            .collect();
    let body = html! {
        h1 { "Sync" }
        (notice(q.done.as_deref()))
        p { "The pull reads the Google directory on its schedule and corrects what SCIM missed." }
        @if running { p role="status" { "A run is in progress." } }
        div class="actions" {
            form method="post" action="/sync/run" {
                (csrf(&owner))
                button type="submit" { "Run now" }
            }
            form method="post" action="/sync/dry-run" {
                (csrf(&owner))
                button type="submit" { "Dry run" }
            }
        }
        h2 { "Held deactivations" }
        @if held.is_empty() {
            p { "None." }
        } @else {
            @for h in &held {
                section class="held" aria-labelledby={ "held-" (h.run_id.as_str()) } {
                    h3 id={ "held-" (h.run_id.as_str()) } { "Run " (h.run_id.as_str()) ": " (h.count) " deactivation(s) held" }
                    p { "Held " (when(&h.held_at)) ". " (h.reasons.join(" ")) }
                    p { "Members held:" }
                    @let names = held_members.get(h.run_id.as_str()).unwrap_or(&h.sample);
                    ul {
                        @for name in names { li { (name) } }
                        @if h.count > names.len() { li { "and " (h.count - names.len()) " more (" code { "retrac-sync sync status" } ")" } }
                    }
                    div class="actions" {
                        form method="post" action={ "/sync/held/" (h.run_id.as_str()) "/approve" } {
                            (csrf(&owner))
                            button type="submit" aria-describedby={ "held-" (h.run_id.as_str()) } { "Approve" }
                        }
                        form method="post" action={ "/sync/held/" (h.run_id.as_str()) "/discard" } {
                            (csrf(&owner))
                            button type="submit" aria-describedby={ "held-" (h.run_id.as_str()) } { "Discard" }
                        }
                    }
                }
            }
        }
        h2 { "Last runs" }
        @if runs.is_empty() {
            p { "No run yet." }
        } @else {
            table {
                caption { "Runs, newest first" }
                thead { tr {
                    th scope="col" { "Run" } th scope="col" { "Kind" } th scope="col" { "Finished" } th scope="col" { "Status" }
                    th scope="col" { "Created" } th scope="col" { "Updated" } th scope="col" { "Deactivated" } th scope="col" { "Held" } th scope="col" { "Errors" }
                } }
                tbody {
                    @for r in &runs {
                        tr {
                            td { code { (r.run_id.as_str()) } }
                            td { (r.kind) }
                            td { (when(&r.finished)) }
                            td { (r.status.to_string()) @if let Some(e) = &r.error { ": " (e) } }
                            td { (r.counts.created) } td { (r.counts.updated) } td { (r.counts.deactivated) }
                            td { (r.counts.held) } td { (r.counts.errors) }
                        }
                    }
                }
            }
        }
    };
    page(&owner, Nav::Sync, "Sync", body)
}

fn not_configured(owner: &Owner) -> Response {
    let body = html! {
        h1 { "Sync" }
        p { "The pull is not configured: set " code { "[google].subject" } " and the service account key (see docs/admin/google-setup.md). SCIM push works without it." }
    };
    page(owner, Nav::Sync, "Sync", body)
}

async fn run_sync(
    state: &ConsoleState,
    owner: &Owner,
    dry_run: bool,
) -> Result<SyncOutcome, Response> {
    let req = Request::Sync(reconcile::Request::Sync { dry_run });
    match admin::execute_as(state.ctx(), req, owner.actor()).await {
        Ok(Reply::Sync(SyncResponse::Run(o))) => Ok(*o),
        Ok(_) => Err(super::failure("unexpected answer")),
        Err(e) => Err(action_error(owner, Nav::Sync, "/sync", &e)),
    }
}

/// `POST /sync/run`: a run now, and its report.
pub async fn run(State(state): State<ConsoleState>, owner: Owner) -> Response {
    if state.ctx().sync.is_none() {
        return not_configured(&owner);
    }
    let o = match run_sync(&state, &owner, false).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let body = html! {
        p { a href="/sync" { "← Sync" } }
        h1 { "Run " (o.report.run_id.as_ref().map(RunId::as_str).unwrap_or("")) }
        (report(&o))
    };
    page(&owner, Nav::Sync, "Run", body)
}

/// `POST /sync/dry-run`: what a run would change, changing nothing.
pub async fn dry_run(State(state): State<ConsoleState>, owner: Owner) -> Response {
    if state.ctx().sync.is_none() {
        return not_configured(&owner);
    }
    let o = match run_sync(&state, &owner, true).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let changes = o.changes.clone().unwrap_or_default();
    let body = html! {
        p { a href="/sync" { "← Sync" } }
        h1 { "Dry run" }
        p role="status" { "Nothing was changed. A run now would make these changes:" }
        (report(&o))
        @if changes.is_empty() {
            p { "No change: the members agree with the directory." }
        } @else {
            table {
                caption { "Planned changes" }
                thead { tr { th scope="col" { "Action" } th scope="col" { "User name" } th scope="col" { "Fields" } } }
                tbody {
                    @for c in &changes {
                        tr { td { (c.action.as_str()) } td { (c.user_name) } td { (c.field_names().join(", ")) } }
                    }
                }
            }
        }
    };
    page(&owner, Nav::Sync, "Dry run", body)
}

fn report(o: &SyncOutcome) -> Markup {
    let c = &o.report.counts;
    html! {
        p { "Status: " strong { (o.report.status.to_string()) } @if let Some(e) = &o.error { " — " (e) } }
        ul class="counts" {
            li { (c.created) " created" } li { (c.updated) " updated" } li { (c.deactivated) " deactivated" }
            li { (c.linked) " linked" } li { (c.unchanged) " unchanged" } li { (c.held) " held" } li { (c.errors) " errors" }
        }
        @if !o.held_reasons.is_empty() {
            p { "Held: " (o.held_reasons.join(" ")) }
        }
        @if !o.problems.is_empty() {
            details { summary { (o.problems.len()) " problem(s)" } ul { @for p in &o.problems { li { (p) } } } }
        }
    }
}

/// `POST /sync/held/{run}/approve`: applies the held deactivations.
pub async fn approve(
    State(state): State<ConsoleState>,
    owner: Owner,
    Path(run): Path<String>,
) -> Response {
    held(&state, &owner, &run, true).await
}

/// `POST /sync/held/{run}/discard`.
pub async fn discard(
    State(state): State<ConsoleState>,
    owner: Owner,
    Path(run): Path<String>,
) -> Response {
    held(&state, &owner, &run, false).await
}

/// Approves or discards the held set of run `run`.
async fn held(state: &ConsoleState, owner: &Owner, run: &str, approve: bool) -> Response {
    let run_id = match RunId::parse(run) {
        Ok(r) => r,
        Err(e) => return action_error(owner, Nav::Sync, "/sync", &AppError::Usage(e.to_string())),
    };
    let req = Request::Sync(match approve {
        true => reconcile::Request::Approve { run_id },
        false => reconcile::Request::Discard { run_id },
    });
    match admin::execute_as(state.ctx(), req, owner.actor()).await {
        Ok(Reply::Sync(SyncResponse::Run(o))) if o.failed() => {
            let e = AppError::Failed(o.error.unwrap_or_else(|| "the approval run failed".into()));
            action_error(owner, Nav::Sync, "/sync", &e)
        }
        Ok(_) if approve => Redirect::to("/sync?done=approved").into_response(),
        Ok(_) => Redirect::to("/sync?done=discarded").into_response(),
        Err(e) => action_error(owner, Nav::Sync, "/sync", &e),
    }
}
