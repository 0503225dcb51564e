//! Settings → Security: the SCIM endpoint URL, the tokens (generate, shown once; revoke),
//! disconnecting SCIM, and the webhook endpoints.

use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use super::{action_error, csrf, notice, page, when, Done, Nav};
use crate::admin::{self, Reply, Request};
use crate::console::session::Owner;
use crate::console::ConsoleState;
use crate::store::TokenScope;
use crate::tokens::{TokenRequest, TokenResponse};
use crate::webhooks::{WebhookRequest, WebhookResponse};

/// How long a new token's secret waits for the page that shows it.
const FRESH_FOR: Duration = Duration::from_secs(300);

/// The rotation advice of Retrac's guide, under a new token.
const ROTATION: &str = "Copy it now into your identity provider (Google Workspace: the app's \
    provisioning settings; Entra ID or Okta: the SCIM connector's secret token). It is shown \
    once. To rotate a token, generate a new one, put it in the identity provider, check that \
    provisioning still works, and only then revoke the old one.";

/// `GET /security`.
pub async fn show(
    State(state): State<ConsoleState>,
    owner: Owner,
    Query(q): Query<Done>,
) -> Response {
    let ctx = state.ctx();
    let tokens =
        match admin::execute_as(ctx, Request::Token(TokenRequest::List), owner.actor()).await {
            Ok(Reply::Token(TokenResponse::Tokens { tokens })) => tokens,
            Ok(_) => return super::failure("unexpected answer"),
            Err(e) => return action_error(&owner, Nav::Security, "/security", &e),
        };
    let hooks =
        match admin::execute_as(ctx, Request::Webhook(WebhookRequest::List), owner.actor()).await {
            Ok(Reply::Webhook(WebhookResponse::Endpoints { endpoints })) => endpoints,
            Ok(_) => return super::failure("unexpected answer"),
            Err(e) => return action_error(&owner, Nav::Security, "/security", &e),
        };
    let body = html! {
        h1 { "Security" }
        (notice(q.done.as_deref()))
        h2 { "SCIM configuration" }
        @match &ctx.scim_url {
            Some(url) => {
                label for="scim-url" { "SCIM endpoint URL" }
                div class="copyable" {
                    input id="scim-url" readonly value=(url);
                    button type="button" class="copy" data-copy="scim-url" hidden { "Copy" }
                }
            }
            None => p { "The SCIM endpoint URL is not known: set " code { "[scim].public_url" } " in the configuration to the address your identity provider reaches." }
        }
        h2 { "Tokens" }
        @if tokens.is_empty() {
            p { "No token yet." }
        } @else {
            table {
                caption { "Bearer tokens" }
                thead { tr { th scope="col" { "Label" } th scope="col" { "Id" } th scope="col" { "Opens" } th scope="col" { "Created" } th scope="col" { "Last used" } th scope="col" { "State" } } }
                tbody {
                    @for t in &tokens {
                        tr {
                            td id={ "token-" (t.id) } { (t.label) }
                            td { code { (t.id) } }
                            td { (match t.scope { TokenScope::Scim => "SCIM", TokenScope::Events => "events feed" }) }
                            td { (when(&t.created)) }
                            td { (t.last_used.as_ref().map(when).unwrap_or_else(|| "never".into())) }
                            td {
                                @if let Some(r) = &t.revoked {
                                    "revoked " (when(r))
                                } @else {
                                    form method="post" action={ "/security/tokens/" (t.id) "/revoke" } {
                                        (csrf(&owner))
                                        button type="submit" aria-describedby={ "token-" (t.id) } { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        h3 { "Generate a token" }
        form method="post" action="/security/tokens" {
            (csrf(&owner))
            label for="label" { "Label" }
            input id="label" name="label" required maxlength="100" placeholder="google-workspace";
            button type="submit" { "Generate token" }
        }
        h2 { "Disconnect SCIM" }
        p { "Revokes every token: no identity provider can change members over SCIM until a new token is made. The pull goes on." }
        form method="get" action="/security/disconnect" {
            button type="submit" class="danger" { "Disconnect SCIM" }
        }
        h2 { "Webhook endpoints" }
        @if hooks.is_empty() {
            p { "None. Add one with " code { "retrac-sync webhook add URL" } "." }
        } @else {
            table {
                caption { "Webhook endpoints" }
                thead { tr { th scope="col" { "URL" } th scope="col" { "Id" } th scope="col" { "State" } th scope="col" { "Delivered through" } th scope="col" { "Failures" } } }
                tbody {
                    @for h in &hooks {
                        tr {
                            td { (h.url) }
                            td { code { (h.id) } }
                            td { @if h.enabled { "enabled" } @else { "disabled" @if let Some(r) = &h.disabled_reason { ": " (r) } } }
                            td { (h.delivered_through) }
                            td { (h.failures) }
                        }
                    }
                }
            }
        }
    };
    page(&owner, Nav::Security, "Security", body)
}

/// The generate form.
#[derive(Debug, Deserialize)]
pub struct GenerateForm {
    #[serde(default)]
    label: String,
}

/// `POST /security/tokens`: makes a token, keeps its secret for the page that shows it once,
/// and goes there (so a reload of that page shows only the token's id).
pub async fn generate(
    State(state): State<ConsoleState>,
    owner: Owner,
    Form(f): Form<GenerateForm>,
) -> Response {
    let req = Request::Token(TokenRequest::Create {
        label: f.label,
        scope: TokenScope::Scim,
    });
    match admin::execute_as(state.ctx(), req, owner.actor()).await {
        Ok(Reply::Token(TokenResponse::Created { token, secret, .. })) => {
            let mut fresh = fresh_tokens(&state);
            fresh.insert((owner.hash, token.id.clone()), (secret.0, Instant::now()));
            Redirect::to(&format!("/security/tokens/{}", token.id)).into_response()
        }
        Ok(_) => super::failure("unexpected answer"),
        Err(e) => action_error(&owner, Nav::Security, "/security", &e),
    }
}

/// The new tokens' secrets waiting to be shown, those past [`FRESH_FOR`] dropped.
fn fresh_tokens(state: &ConsoleState) -> std::sync::MutexGuard<'_, super::super::FreshTokens> {
    let mut fresh = state
        .inner
        .fresh_tokens
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    fresh.retain(|_, (_, at)| at.elapsed() < FRESH_FOR);
    fresh
}

/// `GET /security/tokens/{id}`: a new token, with its secret the first time only.
pub async fn fresh(
    State(state): State<ConsoleState>,
    owner: Owner,
    Path(id): Path<String>,
) -> Response {
    let secret = {
        fresh_tokens(&state)
            .remove(&(owner.hash, id.clone()))
            .map(|(s, _)| s)
    };
    let body = html! {
        p { a href="/security" { "← Security" } }
        h1 { "Token " code { (id) } }
        @match &secret {
            Some(s) => {
                p role="status" class="notice" { "Token generated." }
                label for="token" { "Bearer token" }
                div class="copyable" {
                    input id="token" readonly value=(s) autocomplete="off";
                    button type="button" class="copy" data-copy="token" hidden { "Copy" }
                }
                p { (ROTATION) }
                (scim_url(&state))
            }
            None => p { "This token's secret was shown once, when it was generated, and is not stored: it cannot be shown again. If it was lost, generate a new token and revoke this one." }
        }
        p { a href="/security" { "Back to Security" } }
    };
    let mut res = page(&owner, Nav::Security, "New token", body);
    res.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    res
}

fn scim_url(state: &ConsoleState) -> Markup {
    match &state.ctx().scim_url {
        Some(u) => html! { p { "SCIM endpoint URL: " code { (u) } } },
        None => html! {},
    }
}

/// `POST /security/tokens/{id}/revoke`.
pub async fn revoke(
    State(state): State<ConsoleState>,
    owner: Owner,
    Path(id): Path<String>,
) -> Response {
    let req = Request::Token(TokenRequest::Revoke { id });
    match admin::execute_as(state.ctx(), req, owner.actor()).await {
        Ok(_) => Redirect::to("/security?done=revoked").into_response(),
        Err(e) => action_error(&owner, Nav::Security, "/security", &e),
    }
}

/// `GET /security/disconnect`: asks first.
pub async fn disconnect_confirm(owner: Owner) -> Response {
    let body = html! {
        p { a href="/security" { "← Security" } }
        h1 { "Disconnect SCIM?" }
        p { "Every token is revoked: Google, Entra ID or Okta can no longer create, change or deactivate members over SCIM, until a new token is generated. Members stay as they are." }
        form method="post" action="/security/disconnect" {
            (csrf(&owner))
            button type="submit" class="danger" { "Disconnect SCIM" }
            " "
            a href="/security" { "Cancel" }
        }
    };
    page(&owner, Nav::Security, "Disconnect SCIM", body)
}

/// `POST /security/disconnect`: revokes every token, then offers the review of members.
pub async fn disconnect(State(state): State<ConsoleState>, owner: Owner) -> Response {
    let req = Request::Token(TokenRequest::Disconnect);
    let (revoked, active) = match admin::execute_as(state.ctx(), req, owner.actor()).await {
        Ok(Reply::Token(TokenResponse::Disconnected {
            revoked,
            active_members,
        })) => (revoked, active_members),
        Ok(_) => return super::failure("unexpected answer"),
        Err(e) => return action_error(&owner, Nav::Security, "/security", &e),
    };
    let body = html! {
        h1 { "SCIM disconnected" }
        p role="status" class="notice" { (revoked) " token(s) revoked. SCIM accepts no request until a new token is generated." }
        p { (active) " members are still active. SCIM will no longer deactivate them: review them, and deactivate in Google whoever has left (the pull still runs, where it is set up)." }
        p { a class="button" href="/members?status=active" { "Review active members" } }
    };
    page(&owner, Nav::Security, "SCIM disconnected", body)
}
