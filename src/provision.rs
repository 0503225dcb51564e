//! `apply`: the one write path for members, and its rules.
//!
//! SCIM, the pull and the owner's CLI build [`Change`]s; only this module turns them into
//! writes. The rules (ARCHITECTURE.md, "The write path"; docs/admin/pull.md; docs/admin/scim.md,
//! "Who may change a member"):
//!
//! - a user name is unique case-insensitively (NFKC and full case folding); a collision is a
//!   conflict, except that a create from the pull that meets a member not yet linked to
//!   another Google user links it, and a create from SCIM that meets a SCIM-deleted record
//!   revives that record, or that meets an owner's unclaimed invite links it;
//! - the Google id belongs to the pull and `externalId` to the SCIM client: each is written
//!   by its own actor only, and kept when another actor writes the member;
//! - a record revived or relinked to a different identity (another Google id, or another
//!   non-empty `externalId`) keeps its id and history but not the owner's grants: role back to
//!   member, locations emptied, both listed in the audit entry under `grantsRemoved`;
//! - an owner's invite (`managedBy: manual`) is invisible to SCIM until claimed;
//! - an expected version that is no longer current is a precondition failure;
//! - SCIM and the pull write directory-owned fields only; locations and role are the owner's;
//! - nothing is ever deleted: a deactivation sets `active = false`, and a SCIM delete hides
//!   the record from SCIM and keeps it, inactive and restorable;
//! - a change that differs in nothing writes nothing and reports [`Outcome::Unchanged`];
//! - every applied change appends an audit entry in the same transaction.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::events::EventType;
use crate::member::{
    Actor, Change, ChangeKind, DirectoryAttrs, Field, ManagedBy, Member, MemberId, Role,
};
use crate::store::{AuditEntry, MemberTx, NewEvent, Store, StoreError};

/// What `apply` did.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// A new member (or, for SCIM, a SCIM-deleted record brought back).
    Created(Member),
    /// An existing member changed.
    Updated {
        /// As it was.
        before: Box<Member>,
        /// As it is now.
        after: Box<Member>,
        /// Whether the write changed the member's identity ([`is_identity_change`]), which
        /// took the owner's grants off it.
        identity_changed: bool,
    },
    /// Nothing differed; nothing was written.
    Unchanged(Member),
}

/// Whether a write by `actor` changes the identity of a member from `before` to `after`:
/// the one rule, for SCIM and the pull alike, that decides whether the owner's grants stay.
///
/// A member's identity is its Google id when it has one, else the last non-empty
/// `externalId` it ever had ([`Member::identity_external_id`], kept after a client clears
/// the field), else its user name's domain. It changes when:
/// - a Google id replaces another one;
/// - a non-empty `externalId` replaces another one, current or prior (a member linked to a
///   Google user is identified by that, so its `externalId` does not count);
/// - the user name moves to another domain, unless the pull writes it for the member's own
///   Google user (Google is the source of truth for a linked member: a company that renames
///   its domain keeps everyone's grants). A SCIM client moving a linked member to another
///   domain is a change: the address is how a person signs in.
///
/// A first Google id, or a first `externalId`, is no change: that is how an owner's invite is
/// claimed. A rename inside one domain is no change either: people change names.
pub fn is_identity_change(before: &Member, after: &Member, actor: &Actor) -> bool {
    match (&before.dir.google_id, &after.dir.google_id) {
        (Some(a), Some(b)) if a != b => return true,
        (Some(_), Some(_)) => {
            return !matches!(actor, Actor::Pull(_))
                && before.dir.user_name.domain() != after.dir.user_name.domain();
        }
        _ => {}
    }
    if let (Some(a), Some(b)) = (before.identity_external_id(), after.identity_external_id()) {
        if a != b {
            return true;
        }
    }
    before.dir.user_name.domain() != after.dir.user_name.domain()
}

impl Outcome {
    /// Whether this write gave the record a different identity ([`is_identity_change`]:
    /// its grants were removed). A SCIM revival answers [`Outcome::Created`] and is not
    /// counted here; its audit entry says it.
    pub fn identity_changed(&self) -> bool {
        matches!(
            self,
            Outcome::Updated {
                identity_changed: true,
                ..
            }
        )
    }

    /// The member as it is after the change.
    pub fn member(&self) -> &Member {
        match self {
            Outcome::Created(m) | Outcome::Unchanged(m) => m,
            Outcome::Updated { after, .. } => after,
        }
    }

    /// Whether anything was written.
    pub fn wrote(&self) -> bool {
        !matches!(self, Outcome::Unchanged(_))
    }
}

/// Why a change was refused. A refused change writes nothing.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// Another member already has this user name (compared case-insensitively).
    #[error("another member already has the user name {user_name} (member {existing})")]
    UserNameTaken {
        /// The name asked for.
        user_name: String,
        /// Who has it.
        existing: MemberId,
    },
    /// Another member already has this SCIM `externalId`, or is linked to this Google id.
    #[error("another member is already linked to external id {external_id} (member {existing})")]
    ExternalIdTaken {
        /// The external id asked for.
        external_id: String,
        /// Who has it.
        existing: MemberId,
    },
    /// The member changed since the caller read it.
    #[error("member {id} is at version {actual}, not the expected {expected}")]
    VersionMismatch {
        /// Which member.
        id: MemberId,
        /// What the caller expected.
        expected: u64,
        /// What is stored.
        actual: u64,
    },
    /// No such member (or, for a directory actor, hidden by a SCIM delete).
    #[error("no member {0}")]
    NotFound(MemberId),
    /// This actor may not make this change (owner-owned fields, manual invites).
    #[error("{actor} may not {what}")]
    Forbidden {
        /// Who asked.
        actor: String,
        /// What it asked.
        what: &'static str,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Applies one change atomically and returns what it did.
pub fn apply(
    store: &Store,
    change: Change,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<Outcome, ProvisionError> {
    let mut results = apply_batch(store, std::slice::from_ref(&change), actor, now)?;
    results
        .pop()
        .unwrap_or_else(|| Err(ProvisionError::NotFound(MemberId(uuid::Uuid::nil()))))
}

/// Applies a batch of changes in one transaction.
///
/// Each change succeeds or is refused on its own (a refused one writes nothing); all the
/// accepted ones are committed together, or none is if the store fails. Later changes
/// see the effect of earlier ones in the same batch.
pub fn apply_batch(
    store: &Store,
    changes: &[Change],
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<Vec<Result<Outcome, ProvisionError>>, StoreError> {
    // The store keeps microseconds; cut here so memory and disk agree exactly.
    let now = chrono::SubsecRound::trunc_subsecs(now, 6);
    let results = store.transact(|tx| {
        let mut results = Vec::with_capacity(changes.len());
        for change in changes {
            match apply_one(tx, change, actor, now) {
                Ok(outcome) => results.push(Ok(outcome)),
                Err(ProvisionError::Store(e)) => return Err(e),
                Err(refused) => results.push(Err(refused)),
            }
        }
        Ok(results)
    })?;
    // Counted after the commit: sled may run the closure more than once.
    for (change, result) in changes.iter().zip(&results) {
        count(change.kind(), actor, result);
    }
    Ok(results)
}

/// Applies one change on the store's writer thread ([`Store::write_queued`]): in one
/// transaction with the other changes queued meanwhile (each succeeds or is refused on its
/// own, as in [`apply_batch`]), at the time that transaction runs, and durable, with every
/// write before it, when this returns. SCIM's writes come this way.
pub async fn apply_queued(
    store: &Store,
    change: Change,
    actor: Actor,
) -> Result<Outcome, ProvisionError> {
    let kind = change.kind();
    let counted = actor.clone();
    let result = store
        .write_queued(move |tx, now| {
            let now = chrono::SubsecRound::trunc_subsecs(now, 6);
            match apply_one(tx, &change, &actor, now) {
                Err(ProvisionError::Store(e)) => Err(e),
                other => Ok(other),
            }
        })
        .await?;
    count(kind, &counted, &result);
    result
}

/// Counts an applied change that wrote (`retrac_changes_total`), after its commit.
fn count(kind: ChangeKind, actor: &Actor, result: &Result<Outcome, ProvisionError>) {
    let source = match actor {
        Actor::Scim(_) => "push",
        Actor::Pull(_) => "pull",
        Actor::Owner | Actor::Console(_) => "owner",
    };
    if let Ok(outcome) = result {
        if outcome.wrote() {
            metrics::counter!("retrac_changes_total", "kind" => kind.as_str(), "source" => source)
                .increment(1);
        }
    }
}

fn apply_one(
    tx: &MemberTx<'_>,
    change: &Change,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<Outcome, ProvisionError> {
    match change {
        Change::Create { attrs, managed_by } => create(tx, attrs, *managed_by, actor, now),
        Change::Update {
            id,
            expected_version,
            attrs,
        } => {
            let before = load(tx, *id, *expected_version, actor)?;
            let mut after = before.clone();
            write_directory_attrs(tx, &mut after, attrs, actor)?;
            if actor.is_directory() {
                after.managed_by = ManagedBy::Google;
            }
            commit(tx, before, after, change.kind(), actor, now)
        }
        Change::Deactivate {
            id: _,
            expected_version,
        } => edit(tx, change, *expected_version, actor, now, |m| {
            m.dir.active = false;
        }),
        Change::Reactivate {
            id: _,
            expected_version,
        } => edit(tx, change, *expected_version, actor, now, |m| {
            m.dir.active = true;
        }),
        Change::ScimDelete {
            id: _,
            expected_version,
        } => edit(tx, change, *expected_version, actor, now, |m| {
            m.dir.active = false;
            m.scim_deleted = true;
        }),
        Change::Link {
            id,
            google_id,
            expected_version,
        } => {
            if !matches!(actor, Actor::Pull(_)) {
                return Err(ProvisionError::Forbidden {
                    actor: actor.to_string(),
                    what: "link a member to a Google id",
                });
            }
            let before = load(tx, *id, *expected_version, actor)?;
            check_google_id_free(tx, google_id, *id)?;
            let mut after = before.clone();
            after.dir.google_id = Some(google_id.clone());
            after.managed_by = ManagedBy::Google;
            commit(tx, before, after, change.kind(), actor, now)
        }
        Change::Restore { .. } => {
            owner_only(actor, "restore a member")?;
            edit(tx, change, None, actor, now, |m| {
                m.dir.active = true;
                m.scim_deleted = false;
            })
        }
        Change::SetLocations { locations, .. } => {
            owner_only(actor, "assign locations")?;
            let locations = clean_locations(locations);
            edit(tx, change, None, actor, now, |m| m.locations = locations)
        }
        Change::SetRole { role, .. } => {
            owner_only(actor, "assign roles")?;
            edit(tx, change, None, actor, now, |m| m.role = *role)
        }
    }
}

/// Loads the member `change` targets, lets `f` change a copy, and commits the copy: the
/// changes that set a field or two.
fn edit(
    tx: &MemberTx<'_>,
    change: &Change,
    expected_version: Option<u64>,
    actor: &Actor,
    now: DateTime<Utc>,
    f: impl FnOnce(&mut Member),
) -> Result<Outcome, ProvisionError> {
    let id = change
        .target()
        .ok_or(ProvisionError::NotFound(MemberId(uuid::Uuid::nil())))?;
    let before = load(tx, id, expected_version, actor)?;
    let mut after = before.clone();
    f(&mut after);
    commit(tx, before, after, change.kind(), actor, now)
}

fn create(
    tx: &MemberTx<'_>,
    attrs: &DirectoryAttrs,
    managed_by: ManagedBy,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<Outcome, ProvisionError> {
    if managed_by == ManagedBy::Manual && actor.is_directory() {
        return Err(ProvisionError::Forbidden {
            actor: actor.to_string(),
            what: "create a manually managed member",
        });
    }
    if let Some(existing_id) = tx.id_by_user_name(attrs.user_name.as_str())? {
        let existing = tx
            .get(existing_id)?
            .ok_or(ProvisionError::NotFound(existing_id))?;
        let same_google_user = match (&existing.dir.google_id, &attrs.google_id) {
            (None, _) => true,
            (Some(a), Some(b)) => a == b,
            (Some(_), None) => false,
        };
        let takeover = match actor {
            // The pull found a member it has not linked yet: link it, never duplicate it.
            // A SCIM-deleted record stays hidden from the pull until the owner restores it.
            Actor::Pull(_) => same_google_user && !existing.scim_deleted,
            // A SCIM client re-creates a user it deleted: bring the record back rather than
            // refuse the name forever. Or it claims an owner's invite (Entra and Okta search,
            // then create): link it, as the pull would.
            Actor::Scim(_) => existing.scim_deleted || existing.managed_by == ManagedBy::Manual,
            Actor::Owner | Actor::Console(_) => false,
        };
        if !takeover {
            return Err(ProvisionError::UserNameTaken {
                user_name: attrs.user_name.to_string(),
                existing: existing_id,
            });
        }
        let mut after = existing.clone();
        write_directory_attrs(tx, &mut after, attrs, actor)?;
        after.managed_by = ManagedBy::Google;
        after.scim_deleted = false;
        let kind = if existing.scim_deleted {
            ChangeKind::Revive
        } else {
            ChangeKind::Link
        };
        let outcome = commit(tx, existing.clone(), after, kind, actor, now)?;
        return Ok(match (existing.scim_deleted, outcome) {
            (true, Outcome::Updated { after, .. }) => Outcome::Created(*after),
            (_, other) => other,
        });
    }
    let mut member = Member {
        id: MemberId::new_random(),
        dir: DirectoryAttrs::new(attrs.user_name.clone(), None, None),
        locations: Vec::new(),
        role: Role::Member,
        managed_by,
        scim_deleted: false,
        created: now,
        last_modified: now,
        version: 1,
        prior_external_id: None,
    };
    write_directory_attrs(tx, &mut member, attrs, actor)?;
    let set: FieldMap = fields(&member)
        .into_iter()
        .filter(|(_, v)| !is_empty_value(v))
        .collect();
    tx.put_with_event(
        None,
        &member,
        &NewEvent {
            event_type: EventType::MemberCreated,
            time: now,
            actor: actor.to_string(),
            changed: set.keys().map(String::as_str).collect(),
            member: Some(&member),
            data: None,
        },
    )?;
    tx.append_audit(AuditEntry {
        seq: 0,
        time: now,
        actor: actor.clone(),
        member_id: member.id,
        user_name: member.dir.user_name.to_string(),
        change: ChangeKind::Create,
        before: BTreeMap::new(),
        // A create records only the fields it set, which keeps the entry small.
        after: set,
    })?;
    Ok(Outcome::Created(member))
}

/// Loads the target of a change and checks the version the caller expects.
fn load(
    tx: &MemberTx<'_>,
    id: MemberId,
    expected_version: Option<u64>,
    actor: &Actor,
) -> Result<Member, ProvisionError> {
    let member = tx.get(id)?.ok_or(ProvisionError::NotFound(id))?;
    // A SCIM-deleted member is gone as far as the directory is concerned; only the
    // owner's restore brings it back. An owner's unclaimed invite does not exist for SCIM
    // (a POST of its user name claims it); the pull links it by email.
    if member.scim_deleted && actor.is_directory()
        || matches!(actor, Actor::Scim(_)) && !member.visible_to_scim()
    {
        return Err(ProvisionError::NotFound(id));
    }
    if let Some(expected) = expected_version {
        if expected != member.version {
            return Err(ProvisionError::VersionMismatch {
                id,
                expected,
                actual: member.version,
            });
        }
    }
    Ok(member)
}

/// When a write by `actor` gives the member a different identity ([`is_identity_change`]),
/// takes the owner's grants off `after` and returns what was removed, for the audit entry.
/// Only SCIM and the pull write what identifies a member.
fn drop_grants_on_new_identity(
    before: &Member,
    after: &mut Member,
    actor: &Actor,
) -> Option<serde_json::Value> {
    if !actor.is_directory() || !is_identity_change(before, after, actor) {
        return None;
    }
    let removed = serde_json::json!({
        "role": after.role,
        "locations": after.locations,
    });
    after.role = Role::Member;
    after.locations.clear();
    Some(removed)
}

/// Keeps the last non-empty `externalId` in the record once a client clears it, so that it
/// still identifies the member ([`Member::prior_external_id`]).
fn remember_external_id(before: &Member, after: &mut Member) {
    after.prior_external_id = if after
        .dir
        .external_id
        .as_deref()
        .is_some_and(|e| !e.is_empty())
    {
        None
    } else {
        before.identity_external_id().map(str::to_string)
    };
}

/// Copies the directory-owned fields that `actor` writes onto `member` ([`Field::written_by`]:
/// the Google id from the pull only, `externalId` and the kept SCIM attributes from SCIM
/// only; the others are kept), after checking that the identifiers it writes are free.
fn write_directory_attrs(
    tx: &MemberTx<'_>,
    member: &mut Member,
    attrs: &DirectoryAttrs,
    actor: &Actor,
) -> Result<(), ProvisionError> {
    if let Some(holder) = tx.id_by_user_name(attrs.user_name.as_str())? {
        if holder != member.id {
            return Err(ProvisionError::UserNameTaken {
                user_name: attrs.user_name.to_string(),
                existing: holder,
            });
        }
    }
    let writes = |f: Field| f.written_by(actor);
    if let Some(ext) = attrs
        .external_id
        .as_ref()
        .filter(|_| writes(Field::ExternalId))
    {
        check_external_id_free(tx, ext, member.id)?;
    }
    if let Some(g) = attrs.google_id.as_ref().filter(|_| writes(Field::GoogleId)) {
        check_google_id_free(tx, g, member.id)?;
    }
    for f in Field::ALL.into_iter().filter(|f| writes(*f)) {
        f.copy(attrs, &mut member.dir);
    }
    if matches!(actor, Actor::Scim(_)) {
        member.dir.scim_extra = attrs.scim_extra.clone();
    }
    Ok(())
}

fn check_external_id_free(
    tx: &MemberTx<'_>,
    external_id: &str,
    id: MemberId,
) -> Result<(), ProvisionError> {
    id_free(tx.id_by_external_id(external_id)?, external_id, id)
}

fn check_google_id_free(
    tx: &MemberTx<'_>,
    google_id: &str,
    id: MemberId,
) -> Result<(), ProvisionError> {
    id_free(tx.id_by_google_id(google_id)?, google_id, id)
}

/// `value` is free for member `id` unless another member (`holder`) has it.
fn id_free(holder: Option<MemberId>, value: &str, id: MemberId) -> Result<(), ProvisionError> {
    match holder {
        Some(holder) if holder != id => Err(ProvisionError::ExternalIdTaken {
            external_id: value.to_string(),
            existing: holder,
        }),
        _ => Ok(()),
    }
}

fn owner_only(actor: &Actor, what: &'static str) -> Result<(), ProvisionError> {
    if actor.is_owner() {
        Ok(())
    } else {
        Err(ProvisionError::Forbidden {
            actor: actor.to_string(),
            what,
        })
    }
}

/// Trims, drops empty entries and duplicates, keeps the owner's order.
fn clean_locations(locations: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(locations.len());
    for l in locations {
        let l = l.trim();
        if !l.is_empty() && !out.iter().any(|o| o == l) {
            out.push(l.to_string());
        }
    }
    out
}

/// Writes `after` if it differs from `before`, with a new version and an audit entry.
///
/// Every update passes here, so the identity rule is applied here once: when the write
/// changes the member's identity ([`is_identity_change`]), the owner's grants are taken off
/// and listed in the audit entry's `after` under `grantsRemoved` (the owner restores them
/// from there if it is the same person).
fn commit(
    tx: &MemberTx<'_>,
    before: Member,
    mut after: Member,
    kind: ChangeKind,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<Outcome, ProvisionError> {
    remember_external_id(&before, &mut after);
    let grants_removed = drop_grants_on_new_identity(&before, &mut after, actor);
    let identity_changed = grants_removed.is_some();
    let (old_fields, mut new_fields) = diff(&before, &after);
    if new_fields.is_empty() {
        return Ok(Outcome::Unchanged(before));
    }
    if let Some(removed) = grants_removed {
        new_fields.insert("grantsRemoved".into(), removed);
    }
    after.version = before.version + 1;
    after.last_modified = now;
    tx.put_with_event(
        Some(&before),
        &after,
        &NewEvent {
            event_type: event_type(kind, &before, &after, identity_changed),
            time: now,
            actor: actor.to_string(),
            changed: new_fields.keys().map(String::as_str).collect(),
            member: Some(&after),
            data: None,
        },
    )?;
    tx.append_audit(AuditEntry {
        seq: 0,
        time: now,
        actor: actor.clone(),
        member_id: after.id,
        user_name: after.dir.user_name.to_string(),
        change: kind,
        before: old_fields,
        after: new_fields,
    })?;
    Ok(Outcome::Updated {
        before: Box::new(before),
        after: Box::new(after),
        identity_changed,
    })
}

/// What the event of an update says happened. A write can do several things at once (a
/// pull that links a suspended user also deactivates it); the type names the one a
/// consumer must not miss, in this order: identity, deletion, loss of access, return,
/// link, grants, anything else. `changed` lists every field either way.
fn event_type(kind: ChangeKind, before: &Member, after: &Member, identity: bool) -> EventType {
    if identity {
        EventType::MemberIdentityChanged
    } else if kind == ChangeKind::ScimDelete {
        EventType::MemberDeleted
    } else if before.dir.active && !after.dir.active {
        EventType::MemberDeactivated
    } else if matches!(kind, ChangeKind::Restore | ChangeKind::Revive) {
        EventType::MemberRestored
    } else if !before.dir.active && after.dir.active {
        EventType::MemberReactivated
    } else if kind == ChangeKind::Link {
        EventType::MemberLinked
    } else if matches!(kind, ChangeKind::SetLocations | ChangeKind::SetRole) {
        EventType::MemberAccessChanged
    } else {
        EventType::MemberUpdated
    }
}

/// The fields of a member that an audit entry records, by name.
fn fields(m: &Member) -> FieldMap {
    use serde_json::json;
    let mut f: FieldMap = Field::ALL
        .into_iter()
        .map(|field| (field.name().to_string(), field.value(&m.dir)))
        .collect();
    f.insert("scimExtra".into(), json!(m.dir.scim_extra));
    f.insert("locations".into(), json!(m.locations));
    f.insert("role".into(), json!(m.role));
    f.insert("managedBy".into(), json!(m.managed_by));
    f.insert("scimDeleted".into(), json!(m.scim_deleted));
    f
}

type FieldMap = BTreeMap<String, serde_json::Value>;

fn is_empty_value(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// The fields that differ, as (before, after).
fn diff(before: &Member, after: &Member) -> (FieldMap, FieldMap) {
    let (b, a) = (fields(before), fields(after));
    let mut old = BTreeMap::new();
    let mut new = BTreeMap::new();
    for (k, av) in a {
        let bv = b.get(&k).cloned().unwrap_or(serde_json::Value::Null);
        if bv != av {
            old.insert(k.clone(), bv);
            new.insert(k, av);
        }
    }
    (old, new)
}

#[cfg(test)]
mod tests;
