//! The owner's operations on members, as requests a CLI (or the admin socket) can carry.
//!
//! Each request is executed against the store; writes go through [`provision::apply`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::member::{Actor, Change, DirectoryAttrs, ManagedBy, Member, MemberView, Role, UserName};
use crate::provision::{self, Outcome, ProvisionError};
use crate::store::{AuditEntry, AuditQuery, Store, StoreError};

/// Which members `members list` shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActiveFilter {
    /// All of them.
    #[default]
    All,
    /// Active only.
    Active,
    /// Inactive only.
    Inactive,
}

impl ActiveFilter {
    /// Whether a member passes the filter (an unreadable one does: its error is reported).
    pub fn keeps(self, m: &Result<Member, StoreError>) -> bool {
        match (self, m) {
            (_, Err(_)) | (ActiveFilter::All, _) => true,
            (ActiveFilter::Active, Ok(m)) => m.dir.active,
            (ActiveFilter::Inactive, Ok(m)) => !m.dir.active,
        }
    }
}

/// How `members locations` changes the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LocationEdit {
    /// Replace the list.
    Set,
    /// Add to the list.
    Add,
    /// Remove from the list.
    Remove,
}

/// An owner's request, one per `members` command, with the command's arguments.
///
/// `who` names a member by email (any case) or by id, as the CLI takes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Request {
    /// `members list [--active|--inactive]`
    MembersList { filter: ActiveFilter },
    /// `members show WHO`
    MembersShow { who: String },
    /// `members add EMAIL --given G --family F`: a manual invite; both names are required.
    MembersAdd {
        email: String,
        given: String,
        family: String,
    },
    /// `members locations set|add|remove WHO LOCATION...`
    MembersLocations {
        who: String,
        edit: LocationEdit,
        locations: Vec<String>,
    },
    /// `members role set WHO owner|member`
    MembersRole { who: String, role: Role },
    /// `members restore WHO`
    MembersRestore { who: String },
    /// `audit`
    Audit {
        /// Only this member (email or id).
        member: Option<String>,
        /// Only entries at or after this time.
        since: Option<DateTime<Utc>>,
        /// At most this many, the most recent.
        limit: Option<usize>,
        /// Only entries older than this one (its time and `seq`): the console's next page.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<(DateTime<Utc>, u64)>,
    },
    /// The console's members page: in user-name order, after `after`, at most `limit`
    /// members that pass `filter` and whose user name or name holds `search`.
    MembersPage {
        filter: ActiveFilter,
        search: String,
        after: Option<String>,
        limit: usize,
    },
}

/// The answer to a [`Request`].
pub enum Response {
    /// Members, ordered by user name, produced one at a time from a snapshot taken when the
    /// request ran (a listing of a large store is never held whole as views).
    Members(Box<dyn Iterator<Item = Result<MemberView, StoreError>> + Send>),
    /// A member after a write, and whether the request changed it.
    Member {
        /// The member as it is now.
        member: Box<MemberView>,
        /// Whether anything was written.
        changed: bool,
    },
    /// A member that was read (`members show`): a read has no "changed" to report.
    Shown(Box<MemberView>),
    /// A page of members, and where the next starts (`None`: the last page).
    Page {
        /// In user-name order.
        members: Vec<MemberView>,
        /// The `after` of the next page.
        next: Option<String>,
    },
    /// Audit entries, oldest first.
    Audit {
        /// The entries asked for.
        entries: Vec<AuditEntry>,
        /// The time of the oldest entry the store still holds (older ones were removed by
        /// `[audit].retention_days`); `None` when it holds none.
        oldest_held: Option<DateTime<Utc>>,
    },
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Response::Members(_) => f.write_str("Members(..)"),
            Response::Member { member, changed } => f
                .debug_struct("Member")
                .field("member", member)
                .field("changed", changed)
                .finish(),
            Response::Shown(m) => f.debug_tuple("Shown").field(m).finish(),
            Response::Page { members, next } => f
                .debug_struct("Page")
                .field("members", members)
                .field("next", next)
                .finish(),
            Response::Audit {
                entries,
                oldest_held,
            } => f
                .debug_struct("Audit")
                .field("entries", entries)
                .field("oldest_held", oldest_held)
                .finish(),
        }
    }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    /// No member matches.
    #[error("no member {0:?} (give an email address or a member id)")]
    NotFound(String),
    /// The input is not valid.
    #[error("{0}")]
    Invalid(String),
    /// The change was refused.
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Executes one request for the owner at the CLI. `now` is the time recorded for any write.
pub fn execute(
    store: &Store,
    request: Request,
    now: DateTime<Utc>,
) -> Result<Response, OwnerError> {
    execute_as(store, request, &Actor::Owner, now)
}

/// Executes one request for `actor` (the CLI's owner, or an owner in the console), who is
/// recorded in the audit.
pub fn execute_as(
    store: &Store,
    request: Request,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<Response, OwnerError> {
    match request {
        Request::MembersList { filter } => {
            let members = store.members().filter(move |m| filter.keeps(m));
            Ok(Response::Members(Box::new(
                members.map(|m| m.map(|m| m.to_view())),
            )))
        }
        Request::MembersShow { who } => Ok(Response::Shown(Box::new(find(store, &who)?.to_view()))),
        Request::MembersAdd {
            email,
            given,
            family,
        } => {
            let user_name =
                UserName::parse(&email).map_err(|e| OwnerError::Invalid(e.to_string()))?;
            if let Some(why) = crate::member::lookalike_reason(user_name.as_str()) {
                return Err(OwnerError::Invalid(format!(
                    "{:?} is refused: {why}",
                    user_name.as_str().escape_debug().to_string()
                )));
            }
            let given = non_empty("--given", &given)?;
            let family = non_empty("--family", &family)?;
            let attrs = DirectoryAttrs::new(user_name, Some(given), Some(family));
            let change = Change::Create {
                attrs,
                managed_by: ManagedBy::Manual,
            };
            member_response(provision::apply(store, change, actor, now)?)
        }
        Request::MembersLocations {
            who,
            edit,
            locations,
        } => {
            let m = find(store, &who)?;
            let mut next = m.locations.clone();
            match edit {
                LocationEdit::Set => next = locations,
                LocationEdit::Add => next.extend(locations),
                LocationEdit::Remove => {
                    let gone: Vec<String> =
                        locations.iter().map(|l| l.trim().to_string()).collect();
                    next.retain(|l| !gone.contains(l));
                }
            }
            let change = Change::SetLocations {
                id: m.id,
                locations: next,
            };
            member_response(provision::apply(store, change, actor, now)?)
        }
        Request::MembersRole { who, role } => {
            let m = find(store, &who)?;
            let change = Change::SetRole { id: m.id, role };
            member_response(provision::apply(store, change, actor, now)?)
        }
        Request::MembersRestore { who } => {
            let m = find(store, &who)?;
            member_response(provision::apply(
                store,
                Change::Restore { id: m.id },
                actor,
                now,
            )?)
        }
        Request::MembersPage {
            filter,
            search,
            after,
            limit,
        } => {
            let page = store.browse(&crate::store::BrowseQuery {
                after,
                limit,
                active: match filter {
                    ActiveFilter::All => None,
                    ActiveFilter::Active => Some(true),
                    ActiveFilter::Inactive => Some(false),
                },
                search,
            })?;
            Ok(Response::Page {
                members: page.members.iter().map(|m| m.to_view()).collect(),
                next: page.next,
            })
        }
        Request::Audit {
            member,
            since,
            limit,
            before,
        } => {
            let member = match member {
                Some(who) => Some(find(store, &who)?.id),
                None => None,
            };
            Ok(Response::Audit {
                entries: store.audit(&AuditQuery {
                    member,
                    since,
                    limit,
                    before,
                })?,
                oldest_held: store.oldest_audit_entry()?,
            })
        }
    }
}

fn find(store: &Store, who: &str) -> Result<Member, OwnerError> {
    store
        .find(who)?
        .ok_or_else(|| OwnerError::NotFound(who.to_string()))
}

fn non_empty<'a>(flag: &str, value: &'a str) -> Result<&'a str, OwnerError> {
    let v = value.trim();
    if v.is_empty() {
        Err(OwnerError::Invalid(format!("{flag} must not be empty")))
    } else {
        Ok(v)
    }
}

fn member_response(outcome: Outcome) -> Result<Response, OwnerError> {
    Ok(Response::Member {
        changed: outcome.wrote(),
        member: Box::new(outcome.member().to_view()),
    })
}
