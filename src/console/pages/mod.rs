//! The pages: one layout, one navigation, and the answers shared by every handler (a
//! refusal, a failure, an action's error). Every value is written through maud, which
//! escapes it: a member named `<script>` is shown as text.

pub mod audit;
pub mod members;
pub mod security;
pub mod sync;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};

use super::guard::CSRF_FIELD;
use super::session::Owner;
use crate::admin::AppError;

/// The pages of the navigation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// Settings → Members.
    Members,
    /// Settings → Security.
    Security,
    /// The pull.
    Sync,
    /// The audit log.
    Audit,
}

impl Nav {
    const ALL: [(Nav, &'static str, &'static str); 4] = [
        (Nav::Members, "Members", "/members"),
        (Nav::Security, "Security", "/security"),
        (Nav::Sync, "Sync", "/sync"),
        (Nav::Audit, "Audit", "/audit"),
    ];
}

fn head(title: &str, extra: Markup) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="referrer" content="no-referrer";
            title { (title) " · retrac-sync" }
            link rel="stylesheet" href="/static/console.css";
            script src="/static/console.js" defer {}
            (extra)
        }
    }
}

/// A page of a signed-in owner: the navigation, the sign-out button, and `body`.
pub fn page(owner: &Owner, current: Nav, title: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, html! {}))
            body {
                a class="skip" href="#main" { "Skip to content" }
                header {
                    span class="brand" { "retrac-sync" }
                    nav aria-label="Settings" {
                        ul {
                            @for (nav, label, href) in Nav::ALL {
                                li {
                                    @if nav == current {
                                        a href=(href) aria-current="page" { (label) }
                                    } @else {
                                        a href=(href) { (label) }
                                    }
                                }
                            }
                        }
                    }
                    form class="signout" method="post" action="/logout" {
                        (csrf(owner))
                        span { (owner.email()) }
                        " "
                        button type="submit" { "Sign out" }
                    }
                }
                main id="main" {
                    (body)
                }
            }
        }
    };
    Html(markup.into_string()).into_response()
}

/// A page without a session (sign-in, refusals).
pub fn page_bare(title: &str, head_extra: Markup, body: Markup) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, head_extra))
            body {
                header { span class="brand" { "retrac-sync" } }
                main id="main" { (body) }
            }
        }
    };
    Html(markup.into_string())
}

/// The hidden field with the session's CSRF token, in every form of a signed-in page.
pub fn csrf(owner: &Owner) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(owner.csrf); }
}

/// A refusal before any handler (a cross-site form, a bad token, too many attempts).
pub fn refused(status: StatusCode, message: &str) -> Response {
    let body = page_bare(
        "Refused",
        html! {},
        html! {
            h1 { "Refused" }
            p role="alert" { (message) }
            p { a href="/" { "Back to the console" } }
        },
    );
    (status, body).into_response()
}

/// Too many sign-in attempts from one address.
pub fn too_many() -> Response {
    refused(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many sign-in attempts from your address. Wait a minute and try again.",
    )
}

/// Something failed on the server's side.
pub fn failure(message: &str) -> Response {
    tracing::warn!(error = %message, "console request failed");
    refused(StatusCode::INTERNAL_SERVER_ERROR, message)
}

/// `GET /`: the members page.
pub async fn home() -> Response {
    Redirect::to("/members").into_response()
}

/// Any other path.
pub async fn not_found() -> Response {
    refused(StatusCode::NOT_FOUND, "There is no such page.")
}

/// An action's error as a page: the same message the CLI prints, with its status.
pub fn action_error(owner: &Owner, current: Nav, back: &str, e: &AppError) -> Response {
    let status = match e {
        AppError::Usage(_) | AppError::Config(_) => StatusCode::BAD_REQUEST,
        AppError::NotFound(_) => StatusCode::NOT_FOUND,
        AppError::Conflict(_) => StatusCode::CONFLICT,
        AppError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let body = html! {
        h1 { "That did not work" }
        p role="alert" class="error" { (e.to_string()) }
        p { a href=(back) { "Back" } }
    };
    (status, page(owner, current, "Error", body)).into_response()
}

/// A time as the pages show it.
pub fn when(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// The query of a page that an action redirects to: `?done=WHAT` picks its notice.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Done {
    /// What was done.
    pub done: Option<String>,
}

/// A notice after an action (`?done=...`): only these fixed texts are ever shown.
pub fn notice(done: Option<&str>) -> Markup {
    let text = match done {
        Some("locations") => "Locations saved.",
        Some("role") => "Role saved.",
        Some("restore") => "Member restored.",
        Some("revoked") => "Token revoked.",
        Some("approved") => "The held deactivations were approved and applied.",
        Some("discarded") => "The held deactivations were discarded.",
        _ => return html! {},
    };
    html! { p role="status" class="notice" { (text) } }
}
