//! What the write path accepts and records: [`Actor`] (who asks), [`Change`] (the only
//! thing `provision::apply` takes) and [`ChangeKind`] (what an applied change did).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::*;

/// Who asked for a change; recorded in the audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Actor {
    /// A SCIM client, named by its token's label.
    Scim(String),
    /// A pull run, named by its run id.
    Pull(#[serde(with = "super::run_id::as_recorded")] RunId),
    /// The workspace owner, through the CLI.
    Owner,
    /// A workspace owner signed in to the web console, named by their email address.
    Console(String),
}

impl Actor {
    /// Whether this actor speaks for the directory (SCIM or the pull).
    pub fn is_directory(&self) -> bool {
        matches!(self, Actor::Scim(_) | Actor::Pull(_))
    }

    /// Whether this actor is a workspace owner (the CLI, or the console): the owner's rules
    /// apply to both alike.
    pub fn is_owner(&self) -> bool {
        matches!(self, Actor::Owner | Actor::Console(_))
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Scim(label) => write!(f, "scim:{label}"),
            Actor::Pull(run) => write!(f, "pull:{run}"),
            Actor::Owner => f.write_str("owner"),
            Actor::Console(email) => write!(f, "console:{email}"),
        }
    }
}

/// A change to one member. Built by SCIM, the pull and the CLI; written only by
/// [`crate::provision::apply`].
///
/// In every variant, `id` is the member the change targets, and `expected_version` the
/// version its caller read: `None` applies to whatever is stored, another stored version
/// refuses the change as a conflict. Those two fields are not documented one by one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Change {
    /// A new member. `managed_by` is `Manual` only for an owner's invite.
    Create {
        attrs: DirectoryAttrs,
        managed_by: ManagedBy,
    },
    /// Replace the directory-owned attributes the actor writes; the owner's fields are kept.
    Update {
        id: MemberId,
        expected_version: Option<u64>,
        attrs: DirectoryAttrs,
    },
    /// `active = false`. Nothing is deleted.
    Deactivate {
        id: MemberId,
        expected_version: Option<u64>,
    },
    /// `active = true` again; locations come back with it.
    Reactivate {
        id: MemberId,
        expected_version: Option<u64>,
    },
    /// A SCIM DELETE: gone from the SCIM view, kept inactive and restorable.
    ScimDelete {
        id: MemberId,
        expected_version: Option<u64>,
    },
    /// Link a member to the Google user `google_id` (the pull matched it by email).
    Link {
        id: MemberId,
        google_id: String,
        expected_version: Option<u64>,
    },
    /// The owner brings back a deactivated or SCIM-deleted member.
    Restore { id: MemberId },
    /// The owner replaces a member's locations with `locations` (trimmed, deduplicated).
    SetLocations {
        id: MemberId,
        locations: Vec<String>,
    },
    /// The owner sets a member's role.
    SetRole { id: MemberId, role: Role },
}

impl Change {
    /// Its kind, for the audit log and the metrics. A create that takes over an existing
    /// record is recorded by [`crate::provision`] as [`ChangeKind::Link`] or
    /// [`ChangeKind::Revive`] instead.
    pub fn kind(&self) -> ChangeKind {
        match self {
            Change::Create { .. } => ChangeKind::Create,
            Change::Update { .. } => ChangeKind::Update,
            Change::Deactivate { .. } => ChangeKind::Deactivate,
            Change::Reactivate { .. } => ChangeKind::Reactivate,
            Change::ScimDelete { .. } => ChangeKind::ScimDelete,
            Change::Link { .. } => ChangeKind::Link,
            Change::Restore { .. } => ChangeKind::Restore,
            Change::SetLocations { .. } => ChangeKind::SetLocations,
            Change::SetRole { .. } => ChangeKind::SetRole,
        }
    }

    /// The member it targets, when it targets an existing one.
    pub fn target(&self) -> Option<MemberId> {
        match self {
            Change::Create { .. } => None,
            Change::Update { id, .. }
            | Change::Deactivate { id, .. }
            | Change::Reactivate { id, .. }
            | Change::ScimDelete { id, .. }
            | Change::Link { id, .. }
            | Change::Restore { id }
            | Change::SetLocations { id, .. }
            | Change::SetRole { id, .. } => Some(*id),
        }
    }
}

/// What an applied change did: the audit entry's `change` and the `kind` label of
/// `retrac_changes_total`.
///
/// Stored in the audit log as its snake_case name (`"scim_delete"`), the string every
/// earlier version wrote, so old entries read as they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// A new member.
    Create,
    /// The directory-owned attributes replaced.
    Update,
    /// Made inactive.
    Deactivate,
    /// Made active again.
    Reactivate,
    /// Hidden from SCIM by a SCIM DELETE.
    ScimDelete,
    /// Linked to the directory: the pull matched it by email, or a SCIM POST claimed an
    /// owner's invite.
    Link,
    /// A SCIM POST brought back a record that SCIM had deleted.
    Revive,
    /// The owner brought it back.
    Restore,
    /// The owner set its locations.
    SetLocations,
    /// The owner set its role.
    SetRole,
}

impl ChangeKind {
    /// Every kind.
    pub const ALL: [ChangeKind; 10] = [
        ChangeKind::Create,
        ChangeKind::Update,
        ChangeKind::Deactivate,
        ChangeKind::Reactivate,
        ChangeKind::ScimDelete,
        ChangeKind::Link,
        ChangeKind::Revive,
        ChangeKind::Restore,
        ChangeKind::SetLocations,
        ChangeKind::SetRole,
    ];

    /// Its name, as stored and shown.
    pub const fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Create => "create",
            ChangeKind::Update => "update",
            ChangeKind::Deactivate => "deactivate",
            ChangeKind::Reactivate => "reactivate",
            ChangeKind::ScimDelete => "scim_delete",
            ChangeKind::Link => "link",
            ChangeKind::Revive => "revive",
            ChangeKind::Restore => "restore",
            ChangeKind::SetLocations => "set_locations",
            ChangeKind::SetRole => "set_role",
        }
    }
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
