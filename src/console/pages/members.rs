//! Settings → Members: who was provisioned, each member's attributes and audit trail, and
//! the owner's own fields (locations, role), restore.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;
use serde::Deserialize;

use super::{action_error, csrf, notice, page, when, Done, Nav};
use crate::admin::{self, Reply, Request};
use crate::console::session::Owner;
use crate::console::ConsoleState;
use crate::member::{ManagedBy, MemberView, Role};
use crate::owner::{self, ActiveFilter, LocationEdit};

/// Members a page shows.
pub const PAGE: usize = 50;

/// `GET /members` parameters.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    /// The search box.
    #[serde(default)]
    q: String,
    /// `active`, `inactive` or `all`.
    #[serde(default)]
    status: String,
    /// Where the page starts.
    after: Option<String>,
}

fn filter_of(status: &str) -> ActiveFilter {
    match status {
        "active" => ActiveFilter::Active,
        "inactive" => ActiveFilter::Inactive,
        _ => ActiveFilter::All,
    }
}

/// `GET /members`.
pub async fn list(
    State(state): State<ConsoleState>,
    owner: Owner,
    Query(q): Query<ListQuery>,
) -> Response {
    let filter = filter_of(&q.status);
    let search: String = q.q.chars().take(200).collect();
    let req = Request::Owner(owner::Request::MembersPage {
        filter,
        search: search.clone(),
        after: q.after.clone(),
        limit: PAGE,
    });
    let (members, next) = match admin::execute_as(state.ctx(), req, owner.actor()).await {
        Ok(Reply::Page { members, next }) => (members, next),
        Ok(_) => return super::failure("unexpected answer"),
        Err(e) => return action_error(&owner, Nav::Members, "/members", &e),
    };
    let status = match filter {
        ActiveFilter::Active => "active",
        ActiveFilter::Inactive => "inactive",
        ActiveFilter::All => "all",
    };
    let (active, inactive) = state.ctx().store.member_counts();
    let total = active + inactive;
    let body = html! {
        h1 { "Members" }
        p { (total) " members, " (active) " active." }
        form class="filters" method="get" action="/members" role="search" {
            label for="q" { "Search" }
            input id="q" type="search" name="q" value=(search) placeholder="user name or name";
            label for="status" { "Status" }
            select id="status" name="status" {
                @for (v, label) in [("all", "All"), ("active", "Active"), ("inactive", "Inactive")] {
                    option value=(v) selected[v == status] { (label) }
                }
            }
            button type="submit" { "Show" }
        }
        @if members.is_empty() {
            p { "No member matches." }
        } @else {
            table {
                caption { "Members, by user name" }
                thead { tr { th scope="col" { "User name" } th scope="col" { "Name" } th scope="col" { "Status" } th scope="col" { "Role" } th scope="col" { "Managed by" } th scope="col" { "Locations" } } }
                tbody {
                    @for m in &members {
                        tr {
                            td { a href={ "/members/" (m.id) } { (m.dir.user_name.as_str()) } }
                            td { (full_name(m)) }
                            td { (status_of(m)) }
                            td { (role_name(m.role)) }
                            td { (managed_name(m.managed_by)) }
                            td { (m.locations.join(", ")) }
                        }
                    }
                }
            }
        }
        nav aria-label="Pages" class="pages" {
            @if q.after.is_some() {
                a href={ "/members?" (query(&search, status, None)) } { "First page" }
            }
            @if let Some(n) = &next {
                a href={ "/members?" (query(&search, status, Some(n))) } { "Next page" }
            }
        }
    };
    page(&owner, Nav::Members, "Members", body)
}

fn query(search: &str, status: &str, after: Option<&str>) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("q", search).append_pair("status", status);
    if let Some(a) = after {
        q.append_pair("after", a);
    }
    q.finish()
}

fn full_name(m: &MemberView) -> String {
    [m.dir.given_name.as_deref(), m.dir.family_name.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ")
}

fn status_of(m: &MemberView) -> &'static str {
    match (m.dir.active, m.scim_deleted) {
        (_, true) => "deleted over SCIM",
        (true, false) => "active",
        (false, false) => "inactive",
    }
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Owner => "owner",
        Role::Member => "member",
    }
}

fn managed_name(m: ManagedBy) -> &'static str {
    match m {
        ManagedBy::Google => "Google (the directory)",
        ManagedBy::Manual => "an owner's invite",
    }
}

/// `GET /members/{id}`: every attribute, who manages it, the owner's fields, the audit.
pub async fn show(
    State(state): State<ConsoleState>,
    owner: Owner,
    Path(id): Path<String>,
    Query(q): Query<Done>,
) -> Response {
    let ctx = state.ctx();
    let actor = owner.actor();
    let m = match admin::execute_as(
        ctx,
        Request::Owner(owner::Request::MembersShow { who: id.clone() }),
        actor.clone(),
    )
    .await
    {
        Ok(Reply::Shown(m)) => m,
        Ok(_) => return super::failure("unexpected answer"),
        Err(e) => return action_error(&owner, Nav::Members, "/members", &e),
    };
    let audit = match admin::execute_as(
        ctx,
        Request::Owner(owner::Request::Audit {
            member: Some(m.id.clone()),
            since: None,
            limit: Some(50),
            before: None,
        }),
        actor,
    )
    .await
    {
        Ok(Reply::Audit { items, .. }) => {
            let mut v: Vec<_> = items.filter_map(Result::ok).collect();
            v.reverse();
            v
        }
        Ok(_) => return super::failure("unexpected answer"),
        Err(e) => return action_error(&owner, Nav::Members, "/members", &e),
    };
    let base = format!("/members/{}", m.id);
    let d = &m.dir;
    let body = html! {
        p { a href="/members" { "← Members" } }
        h1 { (d.user_name.as_str()) }
        (notice(q.done.as_deref()))
        h2 { "Attributes" }
        p class="hint" {
            @match m.managed_by {
                ManagedBy::Google => "The directory (Google, over SCIM or the pull) manages the attributes below; change them in Google.",
                ManagedBy::Manual => "An owner invited this member; no directory changes it.",
            }
        }
        dl {
            dt { "User name" } dd { (d.user_name.as_str()) }
            dt { "Given name" } dd { (d.given_name.as_deref().unwrap_or("—")) }
            dt { "Family name" } dd { (d.family_name.as_deref().unwrap_or("—")) }
            dt { "Display name" } dd { (d.display_name.as_deref().unwrap_or("—")) }
            dt { "Emails" } dd { (d.emails.iter().map(|e| e.value.as_str()).collect::<Vec<_>>().join(", ")) }
            dt { "Status" } dd { (status_of(&m)) }
            dt { "Managed by" } dd { (managed_name(m.managed_by)) }
            dt { "Google id" } dd { (d.google_id.as_deref().unwrap_or("—")) }
            dt { "External id (SCIM)" } dd { (d.external_id.as_deref().unwrap_or("—")) }
            dt { "Member id" } dd { code { (m.id) } }
            dt { "Created" } dd { (when(&m.created)) }
            dt { "Last changed" } dd { (when(&m.last_modified)) " (version " (m.version) ")" }
        }
        h2 { "Owner settings" }
        p class="hint" { "Provisioning never changes these." }
        form method="post" action={ (base) "/locations" } {
            (csrf(&owner))
            label for="locations" { "Locations" }
            input id="locations" name="locations" value=(m.locations.join(", ")) aria-describedby="locations-hint";
            span id="locations-hint" class="hint" { "Separated by commas." }
            button type="submit" { "Save locations" }
        }
        form method="post" action={ (base) "/role" } {
            (csrf(&owner))
            label for="role" { "Role" }
            select id="role" name="role" {
                option value="member" selected[m.role == Role::Member] { "member" }
                option value="owner" selected[m.role == Role::Owner] { "owner" }
            }
            button type="submit" { "Save role" }
        }
        @if m.scim_deleted {
            form method="post" action={ (base) "/restore" } {
                (csrf(&owner))
                p { "A SCIM client deleted this member: SCIM and the pull leave it alone until it is restored." }
                button type="submit" { "Restore" }
            }
        }
        h2 { "Audit trail" }
        @if audit.is_empty() {
            p { "No audit entry." }
        } @else {
            (super::audit::table(&audit, false))
        }
    };
    page(&owner, Nav::Members, d.user_name.as_str(), body)
}

/// The locations form.
#[derive(Debug, Deserialize)]
pub struct LocationsForm {
    #[serde(default)]
    locations: String,
}

/// `POST /members/{id}/locations`: sets the list (comma separated).
pub async fn locations(
    State(state): State<ConsoleState>,
    owner: Owner,
    Path(id): Path<String>,
    Form(f): Form<LocationsForm>,
) -> Response {
    let locations: Vec<String> = f
        .locations
        .split([',', '\n'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let req = owner::Request::MembersLocations {
        who: id.clone(),
        edit: LocationEdit::Set,
        locations,
    };
    act(&state, &owner, &id, req, "locations").await
}

/// The role form.
#[derive(Debug, Deserialize)]
pub struct RoleForm {
    role: String,
}

/// `POST /members/{id}/role`.
pub async fn role(
    State(state): State<ConsoleState>,
    owner: Owner,
    Path(id): Path<String>,
    Form(f): Form<RoleForm>,
) -> Response {
    let role = match f.role.parse::<Role>() {
        Ok(r) => r,
        Err(e) => {
            return action_error(
                &owner,
                Nav::Members,
                &format!("/members/{id}"),
                &admin::AppError::Usage(e.to_string()),
            )
        }
    };
    act(
        &state,
        &owner,
        &id,
        owner::Request::MembersRole {
            who: id.clone(),
            role,
        },
        "role",
    )
    .await
}

/// `POST /members/{id}/restore`.
pub async fn restore(
    State(state): State<ConsoleState>,
    owner: Owner,
    Path(id): Path<String>,
) -> Response {
    act(
        &state,
        &owner,
        &id,
        owner::Request::MembersRestore { who: id.clone() },
        "restore",
    )
    .await
}

async fn act(
    state: &ConsoleState,
    owner: &Owner,
    id: &str,
    req: owner::Request,
    done: &str,
) -> Response {
    let back = format!("/members/{id}");
    match admin::execute_as(state.ctx(), Request::Owner(req), owner.actor()).await {
        Ok(_) => Redirect::to(&format!("{back}?done={done}")).into_response(),
        Err(e) => action_error(owner, Nav::Members, &back, &e),
    }
}
