//! The owner's commands, executed one way: [`execute`] runs a [`Request`] against a
//! [`Context`], in the CLI's own process when no daemon runs, or in the daemon when the CLI
//! reaches it over the admin socket (the daemon holds sled's lock).
//!
//! The protocol on the socket: the CLI sends one request line (JSON, at most
//! [`MAX_REQUEST`] bytes); the daemon answers with JSON lines, [`Frame`]s. A single answer
//! is one frame. A listing (`members list`, `audit`) is a `begin` frame, one frame per member
//! or entry written as it is produced from a snapshot, and an `end` frame with the count, so
//! an answer has no size limit and neither side holds it whole. A failure is an `error` frame
//! carrying the [`AppError`]'s kind and message. Access is guarded by the socket's mode (0600)
//! and the peer's uid (see [`server`]).

pub mod client;
mod error;
pub mod server;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use error::AppError;

use crate::member::MemberView;
use crate::owner;
use crate::reconcile::{self, ProgressFn};
use crate::store::{AuditEntry, Store};
use crate::tokens::{self, TokenRequest, TokenResponse};
use crate::webhooks::{self, WebhookRequest, WebhookResponse};

/// A request: what the CLI asks, run locally or sent over the socket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "request", rename_all = "snake_case")]
pub enum Request {
    /// A member command (`members ...`, `audit`).
    Owner(owner::Request),
    /// A pull command (`sync ...`).
    Sync(reconcile::Request),
    /// A token command (`token ...`, `scim disconnect`).
    Token(TokenRequest),
    /// A webhook command (`webhook ...`).
    Webhook(WebhookRequest),
    /// An outbox command (`events list`, `events tail`).
    Events(EventsRequest),
    /// `console login EMAIL`: a one-time sign-in link.
    ConsoleLogin(crate::access::LoginRequest),
    /// `console logout EMAIL|--all`: end console sessions.
    ConsoleLogout(crate::access::LogoutRequest),
    /// Is the daemon there, and which version is it?
    Ping,
}

/// `events list` and each step of `events tail`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsRequest {
    /// Events after this `seq`.
    pub after: u64,
    /// At most this many.
    pub limit: usize,
    /// When none is there yet, wait up to this many seconds for one (`events tail`).
    #[serde(default)]
    pub wait_secs: u64,
}

/// The answer to an [`EventsRequest`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventsResponse {
    /// In `seq` order.
    pub events: Vec<crate::events::Event>,
    /// The last committed `seq`.
    pub last_seq: u64,
    /// The oldest kept `seq` (`None`: none is kept).
    pub oldest_seq: Option<u64>,
}

/// The most events one `events list` answer carries.
pub const MAX_EVENTS_PAGE: usize = 1000;

/// The answer to a [`Request`]. A listing is read as it is produced.
#[derive(Debug)]
pub enum Reply {
    /// `members list`: members ordered by user name.
    Members(Listing<MemberView>),
    /// `audit`: entries, oldest first, and the time of the oldest entry the store holds.
    Audit {
        /// The entries.
        items: Listing<AuditEntry>,
        /// The oldest entry still held (`None`: the audit is empty).
        oldest_held: Option<DateTime<Utc>>,
    },
    /// A member after a write, and whether anything was written.
    Member {
        /// The member as it is now.
        member: Box<MemberView>,
        /// Whether the request changed it.
        changed: bool,
    },
    /// A member that was read (`members show`).
    Shown(Box<MemberView>),
    /// A page of members (the console's listing).
    Page {
        /// In user-name order.
        members: Vec<MemberView>,
        /// The `after` of the next page (`None`: the last page).
        next: Option<String>,
    },
    /// A one-time sign-in link (shown once).
    ConsoleLink(crate::access::LoginLink),
    /// How many console sessions ended.
    SessionsEnded(usize),
    /// The answer to a pull command.
    Sync(reconcile::Response),
    /// The answer to a token command (a new token's secret travels only on this socket).
    Token(TokenResponse),
    /// The answer to a webhook command (a new secret travels only on this socket).
    Webhook(WebhookResponse),
    /// Events of the outbox.
    Events(EventsResponse),
    /// The answer to a ping.
    Pong {
        /// The daemon's version.
        version: String,
    },
}

/// The items of a listing, read as they are produced: from a snapshot of the store in the
/// process that executes the request, or from the socket in the CLI. An item fails when the
/// daemon reports an error or the connection breaks mid-listing.
pub struct Listing<T> {
    items: Box<dyn Iterator<Item = Result<T, AppError>> + Send>,
}

impl<T> Listing<T> {
    /// A listing over `items`.
    pub fn new(items: impl Iterator<Item = Result<T, AppError>> + Send + 'static) -> Self {
        Listing {
            items: Box::new(items),
        }
    }
}

impl<T> Iterator for Listing<T> {
    type Item = Result<T, AppError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.items.next()
    }
}

impl<T> std::fmt::Debug for Listing<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Listing(..)")
    }
}

/// What a listing lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListingKind {
    /// `members list`: [`Frame::Member`] lines.
    Members,
    /// `audit`: [`Frame::Audit`] lines.
    Audit,
}

/// One line of an answer on the socket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Frame {
    /// A member after a write, and whether anything was written.
    Written {
        /// The member as it is now.
        member: Box<MemberView>,
        /// Whether the request changed it.
        changed: bool,
    },
    /// A member that was read.
    Shown(Box<MemberView>),
    /// A page of members.
    Page {
        /// In user-name order.
        members: Vec<MemberView>,
        /// The `after` of the next page.
        next: Option<String>,
    },
    /// A one-time sign-in link.
    ConsoleLink(crate::access::LoginLink),
    /// How many console sessions ended.
    SessionsEnded {
        /// The count.
        count: usize,
    },
    /// A token command's answer.
    Token(TokenResponse),
    /// A pull command's answer.
    Sync(reconcile::Response),
    /// A webhook command's answer.
    Webhook(WebhookResponse),
    /// Events of the outbox.
    Events(EventsResponse),
    /// A ping's answer.
    Pong {
        /// The daemon's version.
        version: String,
    },
    /// The header of a listing.
    Begin {
        /// What follows.
        listing: ListingKind,
        /// An `audit` listing: the time of the oldest entry the store still holds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        oldest_held: Option<DateTime<Utc>>,
    },
    /// One member of a `members` listing.
    Member(Box<MemberView>),
    /// One entry of an `audit` listing.
    Audit(Box<AuditEntry>),
    /// The trailer of a listing: how many items were sent.
    End {
        /// The number of items.
        count: u64,
    },
    /// The command failed (also after a `begin`: the listing is cut short).
    Error(AppError),
}

/// The largest request line accepted, in bytes. Answers have no limit.
pub const MAX_REQUEST: usize = 1024 * 1024;

/// What [`execute`] needs: the store, and the pull when it is configured.
#[derive(Clone)]
pub struct Context {
    /// The open store.
    pub store: Store,
    /// The SCIM URL printed with new tokens (`[scim].public_url` + base path).
    pub scim_url: Option<String>,
    /// The console's URL, for sign-in links (`None`: the console is off).
    pub console_url: Option<String>,
    /// The pull, when `[google]` is configured.
    pub sync: Option<Arc<reconcile::SyncContext>>,
    /// Called after a pull requested here finishes (the daemon's health, systemd status).
    pub on_sync: Option<OnSync>,
    /// Fetch progress of a pull (a local run on a terminal).
    pub progress: Option<ProgressFn>,
    /// The timeout of `webhook test` (the relay's retry settings).
    pub webhook_retry: webhooks::relay::Retry,
    /// Turns true when the daemon stops: a long poll (`events tail`) answers at once then,
    /// so that it does not hold the shutdown's drain.
    pub stopping: Option<tokio::sync::watch::Receiver<bool>>,
}

/// The events after `req.after`; with `wait_secs`, waits that long for one when none is
/// there yet.
async fn events(
    store: &Store,
    req: EventsRequest,
    stopping: Option<tokio::sync::watch::Receiver<bool>>,
) -> Result<EventsResponse, AppError> {
    let limit = req.limit.clamp(1, MAX_EVENTS_PAGE);
    let mut watch = store.subscribe_events();
    if req.wait_secs > 0 {
        let wait = std::time::Duration::from_secs(req.wait_secs.min(300));
        let stop = async move {
            match stopping {
                Some(mut s) => {
                    let _ = s.wait_for(|s| *s).await;
                }
                None => std::future::pending().await,
            }
        };
        // Returns when a commit takes the last seq past `after`, when the time is up, or
        // when the daemon stops.
        tokio::select! {
            _ = tokio::time::timeout(wait, watch.wait_for(|last| *last > req.after)) => {}
            _ = stop => {}
        }
    }
    let s = store.clone();
    let events = blocking(move || s.events_after(req.after, limit)).await?;
    // Nothing shown before it is on disk, as the feed and the webhooks.
    if !events.is_empty() && store.flush_pending() {
        store.flush().await?;
    }
    Ok(EventsResponse {
        events,
        last_seq: store.last_event_seq(),
        oldest_seq: store.oldest_event_seq()?,
    })
}

/// A callback told about each finished pull.
pub use crate::schedule::OnSync;

/// Executes one request: the daemon for each socket request, the CLI when no daemon runs.
pub async fn execute(ctx: &Context, request: Request) -> Result<Reply, AppError> {
    execute_as(ctx, request, crate::member::Actor::Owner).await
}

/// As [`execute`], for `actor`, whom the audit records for a member change (the console
/// passes the signed-in owner).
pub async fn execute_as(
    ctx: &Context,
    request: Request,
    actor: crate::member::Actor,
) -> Result<Reply, AppError> {
    if actor != crate::member::Actor::Owner {
        if let Some(what) = command_summary(&request) {
            // The audit names the actor of a member change; the log names the actor of
            // every other command (a run started, a held set approved, a token revoked).
            tracing::info!(actor = %actor, command = %what, "an owner's command");
        }
    }
    match request {
        Request::Ping => Ok(Reply::Pong {
            version: env!("CARGO_PKG_VERSION").to_string(),
        }),
        Request::Owner(req) => {
            let store = ctx.store.clone();
            let reply =
                blocking(move || owner::execute_as(&store, req, &actor, Utc::now())).await?;
            ctx.store.flush().await?;
            Ok(match reply {
                owner::Response::Members(items) => {
                    Reply::Members(Listing::new(items.map(|m| m.map_err(AppError::from))))
                }
                owner::Response::Audit {
                    entries,
                    oldest_held,
                } => Reply::Audit {
                    items: Listing::new(entries.into_iter().map(Ok)),
                    oldest_held,
                },
                owner::Response::Member { member, changed } => Reply::Member { member, changed },
                owner::Response::Shown(member) => Reply::Shown(member),
                owner::Response::Page { members, next } => Reply::Page { members, next },
            })
        }
        Request::ConsoleLogin(req) => {
            let store = ctx.store.clone();
            let url = ctx.console_url.clone();
            let link = blocking(move || {
                crate::access::create_link(&store, &req, url.as_deref(), Utc::now())
            })
            .await?;
            ctx.store.flush().await?;
            Ok(Reply::ConsoleLink(link))
        }
        Request::ConsoleLogout(req) => {
            let store = ctx.store.clone();
            let n = blocking(move || crate::access::end_sessions(&store, &req)).await?;
            ctx.store.flush().await?;
            Ok(Reply::SessionsEnded(n))
        }
        Request::Token(req) => {
            let store = ctx.store.clone();
            let url = ctx.scim_url.clone();
            let reply = blocking(move || {
                tokens::execute_as(&store, req, url.as_deref(), &actor, Utc::now())
            })
            .await?;
            ctx.store.flush().await?;
            Ok(Reply::Token(reply))
        }
        Request::Webhook(req) => {
            let reply = webhooks::execute(&ctx.store, req, &ctx.webhook_retry, Utc::now()).await?;
            ctx.store.flush().await?;
            Ok(Reply::Webhook(reply))
        }
        Request::Events(req) => Ok(Reply::Events(
            events(&ctx.store, req, ctx.stopping.clone()).await?,
        )),
        Request::Sync(req) => {
            let sync = ctx.sync.as_ref().ok_or_else(|| {
                AppError::Config("the pull is not configured: set [google].subject and the service account key (see docs/admin/google-setup.md)".into())
            })?;
            let response = reconcile::execute(sync, req, ctx.progress.clone(), Utc::now()).await?;
            if let (reconcile::Response::Run(outcome), Some(hook)) = (&response, &ctx.on_sync) {
                // A dry run is not recorded: health and systemd hear of recorded runs only.
                if outcome.report.run_id.is_some() {
                    hook(outcome);
                }
            }
            Ok(Reply::Sync(response))
        }
    }
}

/// A state-changing command in a few words, for the log; `None` for a read.
fn command_summary(request: &Request) -> Option<String> {
    use crate::reconcile::Request as S;
    match request {
        Request::Sync(S::Sync { dry_run: false }) => Some("sync".into()),
        Request::Sync(S::SyncUser {
            email,
            dry_run: false,
        }) => Some(format!("sync user {email}")),
        Request::Sync(S::Approve { run_id }) => Some(format!("sync approve {run_id}")),
        Request::Sync(S::Discard { run_id }) => Some(format!("sync discard {run_id}")),
        Request::Token(TokenRequest::Create { label, .. }) => {
            Some(format!("token create --label {label:?}"))
        }
        Request::Token(TokenRequest::Revoke { id }) => {
            // Someone may paste a whole token: only its id part is logged.
            let id = id.trim().trim_start_matches(tokens::TOKEN_PREFIX);
            Some(format!(
                "token revoke {}",
                id.split('_').next().unwrap_or_default()
            ))
        }
        Request::Token(TokenRequest::Disconnect) => Some("scim disconnect".into()),
        Request::Owner(owner::Request::MembersLocations { who, .. }) => {
            Some(format!("members locations set {who}"))
        }
        Request::Owner(owner::Request::MembersRole { who, role }) => {
            Some(format!("members role set {who} {role}"))
        }
        Request::Owner(owner::Request::MembersRestore { who }) => {
            Some(format!("members restore {who}"))
        }
        _ => None,
    }
}

async fn blocking<T: Send + 'static, E: Into<AppError> + Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, AppError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AppError::Failed(format!("internal error: {e}")))?
        .map_err(Into::into)
}

impl Reply {
    /// The reply as the frames the daemon writes, in order (a listing's items are produced
    /// as the iterator is read).
    pub fn into_frames(self) -> Box<dyn Iterator<Item = Frame> + Send> {
        match self {
            Reply::Members(items) => listing_frames(
                Frame::Begin {
                    listing: ListingKind::Members,
                    oldest_held: None,
                },
                items,
                |m| Frame::Member(Box::new(m)),
            ),
            Reply::Audit { items, oldest_held } => listing_frames(
                Frame::Begin {
                    listing: ListingKind::Audit,
                    oldest_held,
                },
                items,
                |e| Frame::Audit(Box::new(e)),
            ),
            Reply::Member { member, changed } => {
                Box::new(std::iter::once(Frame::Written { member, changed }))
            }
            Reply::Shown(member) => Box::new(std::iter::once(Frame::Shown(member))),
            Reply::Page { members, next } => {
                Box::new(std::iter::once(Frame::Page { members, next }))
            }
            Reply::ConsoleLink(l) => Box::new(std::iter::once(Frame::ConsoleLink(l))),
            Reply::SessionsEnded(count) => {
                Box::new(std::iter::once(Frame::SessionsEnded { count }))
            }
            Reply::Sync(r) => Box::new(std::iter::once(Frame::Sync(r))),
            Reply::Token(r) => Box::new(std::iter::once(Frame::Token(r))),
            Reply::Webhook(r) => Box::new(std::iter::once(Frame::Webhook(r))),
            Reply::Events(r) => Box::new(std::iter::once(Frame::Events(r))),
            Reply::Pong { version } => Box::new(std::iter::once(Frame::Pong { version })),
        }
    }
}

/// `begin`, one frame per item, then `end` with the count, or `error` where an item fails.
fn listing_frames<T: Send + 'static>(
    begin: Frame,
    items: Listing<T>,
    frame: fn(T) -> Frame,
) -> Box<dyn Iterator<Item = Frame> + Send> {
    let mut count = 0u64;
    let mut items = Some(items);
    let body = std::iter::from_fn(move || {
        let next = items.as_mut()?.next();
        match next {
            Some(Ok(item)) => {
                count += 1;
                Some(frame(item))
            }
            Some(Err(e)) => {
                items = None;
                Some(Frame::Error(e))
            }
            None => {
                items = None;
                Some(Frame::End { count })
            }
        }
    });
    Box::new(std::iter::once(begin).chain(body))
}
