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
    let source = match actor {
        Actor::Scim(_) => "push",
        Actor::Pull(_) => "pull",
        Actor::Owner => "owner",
    };
    for (change, result) in changes.iter().zip(&results) {
        if let Ok(outcome) = result {
            if outcome.wrote() {
                metrics::counter!("retrac_changes_total", "kind" => change.kind().as_str(), "source" => source)
                    .increment(1);
            }
        }
    }
    Ok(results)
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
            Actor::Owner => false,
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
    if *actor == Actor::Owner {
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
mod tests {
    use super::*;
    use crate::member::{Email, UserName};
    use crate::store::{AuditEntry, AuditQuery};
    use chrono::TimeZone;

    fn t(sec: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_790_000_000 + sec, 0).unwrap()
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        (dir, store)
    }

    fn attrs(email: &str) -> DirectoryAttrs {
        DirectoryAttrs::new(
            UserName::parse(email).unwrap(),
            Some("Ada"),
            Some("Lovelace"),
        )
    }

    fn create(store: &Store, email: &str, actor: &Actor) -> Member {
        let outcome = create_as(store, attrs(email), ManagedBy::Google, actor, t(0)).unwrap();
        assert!(matches!(outcome, Outcome::Created(_)));
        outcome.member().clone()
    }

    fn create_as(
        store: &Store,
        attrs: DirectoryAttrs,
        managed_by: ManagedBy,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<Outcome, ProvisionError> {
        apply(store, Change::Create { attrs, managed_by }, actor, at)
    }

    fn scim_create(
        store: &Store,
        attrs: DirectoryAttrs,
        at: DateTime<Utc>,
    ) -> Result<Outcome, ProvisionError> {
        create_as(store, attrs, ManagedBy::Google, &scim(), at)
    }

    fn pull_create(
        store: &Store,
        attrs: DirectoryAttrs,
        run: &str,
        at: DateTime<Utc>,
    ) -> Result<Outcome, ProvisionError> {
        create_as(
            store,
            attrs,
            ManagedBy::Google,
            &Actor::Pull(run.into()),
            at,
        )
    }

    fn set_locations(
        store: &Store,
        id: MemberId,
        locations: &[&str],
        at: DateTime<Utc>,
    ) -> Outcome {
        let locations = locations.iter().map(|l| l.to_string()).collect();
        apply(
            store,
            Change::SetLocations { id, locations },
            &Actor::Owner,
            at,
        )
        .unwrap()
    }

    /// The audit entries of one member, oldest first.
    fn audit_of(store: &Store, id: MemberId) -> Vec<AuditEntry> {
        store
            .audit(&AuditQuery {
                member: Some(id),
                ..Default::default()
            })
            .unwrap()
    }

    fn last_audit(store: &Store, id: MemberId) -> AuditEntry {
        audit_of(store, id).pop().unwrap()
    }

    /// An owner's invite (manual, unlinked) of `email` at t(0).
    fn invite(store: &Store, email: &str) -> Member {
        create_as(store, attrs(email), ManagedBy::Manual, &Actor::Owner, t(0))
            .unwrap()
            .member()
            .clone()
    }

    fn scim() -> Actor {
        Actor::Scim("google".into())
    }

    #[test]
    fn create_then_read_back_by_id_name_and_external_id() {
        let (_d, store) = store();
        let mut a = attrs("Ada@Example.com");
        a.external_id = Some("g-1".into());
        let m = scim_create(&store, a, t(0)).unwrap().member().clone();
        assert_eq!(m.version, 1);
        assert_eq!(store.get(m.id).unwrap().unwrap(), m);
        assert_eq!(
            store
                .get_by_user_name("ada@EXAMPLE.com")
                .unwrap()
                .unwrap()
                .id,
            m.id
        );
        assert_eq!(store.get_by_external_id("g-1").unwrap().unwrap().id, m.id);
        assert_eq!(
            m.dir.user_name.as_str(),
            "Ada@Example.com",
            "stored as given"
        );
    }

    #[test]
    fn a_create_that_differs_only_in_case_is_a_conflict() {
        let (_d, store) = store();
        let first = create(&store, "grace@example.com", &scim());
        let err = scim_create(&store, attrs("Grace@Example.COM"), t(1)).unwrap_err();
        assert!(
            matches!(err, ProvisionError::UserNameTaken { existing, .. } if existing == first.id)
        );
        assert_eq!(store.member_count(), 1);
    }

    #[test]
    fn an_owner_invite_with_a_taken_name_is_a_conflict_too() {
        let (_d, store) = store();
        create(&store, "grace@example.com", &scim());
        let err = create_as(
            &store,
            attrs("GRACE@example.com"),
            ManagedBy::Manual,
            &Actor::Owner,
            t(1),
        )
        .unwrap_err();
        assert!(matches!(err, ProvisionError::UserNameTaken { .. }));
    }

    #[test]
    fn a_pull_create_that_meets_an_unlinked_member_links_it() {
        let (_d, store) = store();
        let invited = invite(&store, "ada@example.com");
        let mut a = attrs("Ada@example.com");
        a.google_id = Some("g-ada".into());
        let out = pull_create(&store, a, "run-1", t(1)).unwrap();
        let m = out.member();
        assert_eq!(m.id, invited.id, "linked, not duplicated");
        assert_eq!(m.dir.google_id.as_deref(), Some("g-ada"));
        assert_eq!(m.managed_by, ManagedBy::Google);
        assert_eq!(store.member_count(), 1);
        // A pull create for a different Google user with the same email is still a conflict.
        let mut other = attrs("ada@example.com");
        other.google_id = Some("g-other".into());
        let err = pull_create(&store, other, "run-2", t(2)).unwrap_err();
        assert!(matches!(err, ProvisionError::UserNameTaken { .. }));
    }

    #[test]
    fn a_stale_expected_version_is_refused_and_writes_nothing() {
        let (_d, store) = store();
        let m = create(&store, "ada@example.com", &scim());
        let mut a = attrs("ada@example.com");
        a.family_name = Some("King".into());
        let ok = apply(
            &store,
            Change::Update {
                id: m.id,
                expected_version: Some(1),
                attrs: a.clone(),
            },
            &scim(),
            t(1),
        )
        .unwrap();
        assert_eq!(ok.member().version, 2);
        a.family_name = Some("Byron".into());
        let err = apply(
            &store,
            Change::Update {
                id: m.id,
                expected_version: Some(1),
                attrs: a,
            },
            &scim(),
            t(2),
        )
        .unwrap_err();
        assert!(matches!(
            err,
            ProvisionError::VersionMismatch {
                expected: 1,
                actual: 2,
                ..
            }
        ));
        let now = store.get(m.id).unwrap().unwrap();
        assert_eq!(now.dir.family_name.as_deref(), Some("King"));
        assert_eq!(now.version, 2);
    }

    #[test]
    fn directory_updates_never_touch_locations_or_role() {
        let (_d, store) = store();
        let m = create(&store, "ada@example.com", &scim());
        set_locations(&store, m.id, &["Paris", " Lyon ", "Paris", ""], t(1));
        apply(
            &store,
            Change::SetRole {
                id: m.id,
                role: Role::Owner,
            },
            &Actor::Owner,
            t(2),
        )
        .unwrap();
        let mut a = attrs("ada.king@example.com");
        a.given_name = Some("Augusta".into());
        let out = apply(
            &store,
            Change::Update {
                id: m.id,
                expected_version: None,
                attrs: a,
            },
            &Actor::Pull("r".into()),
            t(3),
        )
        .unwrap();
        let after = out.member();
        assert_eq!(
            after.locations,
            vec!["Paris".to_string(), "Lyon".to_string()]
        );
        assert_eq!(after.role, Role::Owner);
        assert_eq!(after.dir.user_name.as_str(), "ada.king@example.com");
        assert!(
            store.get_by_user_name("ada@example.com").unwrap().is_none(),
            "old name freed"
        );
        assert_eq!(
            store
                .get_by_user_name("ADA.KING@example.com")
                .unwrap()
                .unwrap()
                .id,
            m.id
        );
    }

    #[test]
    fn scim_and_the_pull_may_not_write_owner_fields() {
        let (_d, store) = store();
        let m = create(&store, "ada@example.com", &scim());
        for actor in [scim(), Actor::Pull("r".into())] {
            for change in [
                Change::SetLocations {
                    id: m.id,
                    locations: vec!["X".into()],
                },
                Change::SetRole {
                    id: m.id,
                    role: Role::Owner,
                },
                Change::Restore { id: m.id },
                Change::Create {
                    attrs: attrs("new@example.com"),
                    managed_by: ManagedBy::Manual,
                },
            ] {
                let err = apply(&store, change, &actor, t(1)).unwrap_err();
                assert!(matches!(err, ProvisionError::Forbidden { .. }), "{err}");
            }
        }
        assert_eq!(store.get(m.id).unwrap().unwrap().version, 1);
    }

    #[test]
    fn a_no_op_writes_nothing_and_says_unchanged() {
        let (_d, store) = store();
        let m = create(&store, "ada@example.com", &scim());
        let audit_before = store.audit(&AuditQuery::default()).unwrap().len();
        let out = apply(
            &store,
            Change::Update {
                id: m.id,
                expected_version: Some(1),
                attrs: m.dir.clone(),
            },
            &scim(),
            t(5),
        )
        .unwrap();
        assert!(matches!(out, Outcome::Unchanged(_)));
        let out = apply(
            &store,
            Change::Reactivate {
                id: m.id,
                expected_version: None,
            },
            &scim(),
            t(6),
        )
        .unwrap();
        assert!(!out.wrote());
        let now = store.get(m.id).unwrap().unwrap();
        assert_eq!(now.version, 1);
        assert_eq!(now.last_modified, t(0));
        assert_eq!(
            store.audit(&AuditQuery::default()).unwrap().len(),
            audit_before
        );
    }

    #[test]
    fn deactivate_keeps_everything_and_reactivate_brings_locations_back() {
        let (_d, store) = store();
        let m = create(&store, "ada@example.com", &scim());
        set_locations(&store, m.id, &["Paris"], t(1));
        let out = apply(
            &store,
            Change::Deactivate {
                id: m.id,
                expected_version: None,
            },
            &Actor::Pull("r".into()),
            t(2),
        )
        .unwrap();
        assert!(!out.member().dir.active);
        assert_eq!(store.member_count(), 1);
        assert!(store.get_by_user_name("ada@example.com").unwrap().is_some());
        let out = apply(
            &store,
            Change::Reactivate {
                id: m.id,
                expected_version: None,
            },
            &Actor::Pull("r".into()),
            t(3),
        )
        .unwrap();
        assert!(out.member().dir.active);
        assert_eq!(out.member().locations, vec!["Paris".to_string()]);
    }

    /// ada@example.com, created over SCIM, given the location Paris by the owner, then
    /// deleted over SCIM (at t(2)).
    fn scim_deleted_with_a_location(store: &Store) -> Member {
        let m = create(store, "ada@example.com", &scim());
        set_locations(store, m.id, &["Paris"], t(1));
        apply(
            store,
            Change::ScimDelete {
                id: m.id,
                expected_version: None,
            },
            &scim(),
            t(2),
        )
        .unwrap();
        m
    }

    #[test]
    fn a_scim_delete_hides_the_member_from_the_directory_and_the_owner_can_restore_it() {
        let (_d, store) = store();
        let m = scim_deleted_with_a_location(&store);
        let kept = store.get(m.id).unwrap().unwrap();
        assert!(kept.scim_deleted && !kept.dir.active);
        assert_eq!(kept.locations, vec!["Paris".to_string()]);
        // Gone for SCIM: a second delete or an update is "not found".
        let err = apply(
            &store,
            Change::ScimDelete {
                id: m.id,
                expected_version: None,
            },
            &scim(),
            t(3),
        )
        .unwrap_err();
        assert!(matches!(err, ProvisionError::NotFound(_)));
        let restored = apply(&store, Change::Restore { id: m.id }, &Actor::Owner, t(4)).unwrap();
        let r = restored.member();
        assert!(r.dir.active && !r.scim_deleted);
        assert_eq!(r.locations, vec!["Paris".to_string()]);
    }

    #[test]
    fn a_scim_create_of_a_scim_deleted_name_revives_the_record() {
        let (_d, store) = store();
        let m = scim_deleted_with_a_location(&store);
        let out = scim_create(&store, attrs("ADA@example.com"), t(3)).unwrap();
        assert!(matches!(out, Outcome::Created(_)));
        let m2 = out.member();
        assert_eq!(m2.id, m.id);
        assert!(m2.dir.active && !m2.scim_deleted);
        assert_eq!(m2.locations, vec!["Paris".to_string()]);
        assert_eq!(store.member_count(), 1);
    }

    #[test]
    fn a_rename_onto_a_taken_name_is_a_conflict() {
        let (_d, store) = store();
        let a = create(&store, "ada@example.com", &scim());
        create(&store, "grace@example.com", &scim());
        let err = apply(
            &store,
            Change::Update {
                id: a.id,
                expected_version: None,
                attrs: attrs("Grace@example.com"),
            },
            &scim(),
            t(1),
        )
        .unwrap_err();
        assert!(matches!(err, ProvisionError::UserNameTaken { .. }));
        // A change of case of one's own name is fine.
        let out = apply(
            &store,
            Change::Update {
                id: a.id,
                expected_version: None,
                attrs: attrs("ADA@example.com"),
            },
            &scim(),
            t(2),
        )
        .unwrap();
        assert_eq!(out.member().dir.user_name.as_str(), "ADA@example.com");
    }

    #[test]
    fn link_sets_the_external_id_and_refuses_one_already_taken() {
        let (_d, store) = store();
        let a = create(&store, "ada@example.com", &scim());
        let b = create(&store, "grace@example.com", &scim());
        let pull = Actor::Pull("r".into());
        apply(
            &store,
            Change::Link {
                id: a.id,
                google_id: "g-1".into(),
                expected_version: Some(1),
            },
            &pull,
            t(1),
        )
        .unwrap();
        let err = apply(
            &store,
            Change::Link {
                id: b.id,
                google_id: "g-1".into(),
                expected_version: None,
            },
            &pull,
            t(2),
        )
        .unwrap_err();
        assert!(matches!(err, ProvisionError::ExternalIdTaken { .. }));
        assert_eq!(store.get_by_google_id("g-1").unwrap().unwrap().id, a.id);
    }

    #[test]
    fn every_write_is_audited_with_actor_and_changed_fields() {
        let (_d, store) = store();
        let m = create(&store, "ada@example.com", &scim());
        let mut a = attrs("ada@example.com");
        a.family_name = Some("King".into());
        apply(
            &store,
            Change::Update {
                id: m.id,
                expected_version: None,
                attrs: a,
            },
            &Actor::Pull("run-7".into()),
            t(1),
        )
        .unwrap();
        let entries = audit_of(&store, m.id);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].change, ChangeKind::Create);
        assert_eq!(entries[0].actor, scim());
        assert!(entries[0].before.is_empty());
        assert_eq!(entries[0].after["userName"], "ada@example.com");
        assert_eq!(entries[0].after["active"], true);
        assert!(
            !entries[0].after.contains_key("displayName"),
            "unset fields are left out"
        );
        assert_eq!(entries[1].change, ChangeKind::Update);
        assert_eq!(entries[1].actor, Actor::Pull("run-7".into()));
        assert_eq!(
            entries[1].before.len(),
            1,
            "only the changed field: {:?}",
            entries[1]
        );
        assert_eq!(entries[1].before["familyName"], "Lovelace");
        assert_eq!(entries[1].after["familyName"], "King");
        let since = store
            .audit(&AuditQuery {
                since: Some(t(1)),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(since.len(), 1);
        let last = store
            .audit(&AuditQuery {
                limit: Some(1),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(last[0].change, ChangeKind::Update);
    }

    #[test]
    fn a_batch_commits_the_accepted_changes_and_the_indexes_agree() {
        let (_d, store) = store();
        let mut changes = Vec::new();
        for i in 0..200 {
            let mut a = attrs(&format!("user{i}@example.com"));
            a.external_id = Some(format!("g-{i}"));
            changes.push(Change::Create {
                attrs: a,
                managed_by: ManagedBy::Google,
            });
        }
        // Two refused ones in the middle: a case-only duplicate and a taken external id.
        changes.push(Change::Create {
            attrs: attrs("USER7@example.com"),
            managed_by: ManagedBy::Google,
        });
        let mut dup_ext = attrs("someone@example.com");
        dup_ext.external_id = Some("g-3".into());
        changes.push(Change::Create {
            attrs: dup_ext,
            managed_by: ManagedBy::Google,
        });
        let results = apply_batch(&store, &changes, &scim(), t(0)).unwrap();
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 200);
        assert_eq!(results.iter().filter(|r| r.is_err()).count(), 2);
        assert_eq!(store.member_count(), 200);
        assert!(store.check_consistency().unwrap().is_empty());

        // Renames and relinks in one batch keep the indexes right.
        let m7 = store
            .get_by_user_name("user7@example.com")
            .unwrap()
            .unwrap();
        let m8 = store
            .get_by_user_name("user8@example.com")
            .unwrap()
            .unwrap();
        let mut a7 = m7.dir.clone();
        a7.user_name = UserName::parse("renamed7@example.com").unwrap();
        a7.emails = vec![Email::primary_work("renamed7@example.com")];
        a7.external_id = Some("g-7b".into());
        let mut a8 = m8.dir.clone();
        a8.user_name = UserName::parse("user7@example.com").unwrap(); // takes 7's old name
        let results = apply_batch(
            &store,
            &[
                Change::Update {
                    id: m7.id,
                    expected_version: Some(m7.version),
                    attrs: a7,
                },
                Change::Update {
                    id: m8.id,
                    expected_version: Some(m8.version),
                    attrs: a8,
                },
            ],
            &scim(),
            t(1),
        )
        .unwrap();
        assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
        assert!(store.check_consistency().unwrap().is_empty());
        assert_eq!(
            store
                .get_by_user_name("user7@example.com")
                .unwrap()
                .unwrap()
                .id,
            m8.id
        );
        assert!(store.get_by_external_id("g-7").unwrap().is_none());
        assert_eq!(store.get_by_external_id("g-7b").unwrap().unwrap().id, m7.id);
    }

    fn grant(store: &Store, id: MemberId) {
        for change in [
            Change::SetLocations {
                id,
                locations: vec!["Paris".into()],
            },
            Change::SetRole {
                id,
                role: Role::Owner,
            },
        ] {
            apply(store, change, &Actor::Owner, t(1)).unwrap();
        }
    }

    fn pull_update(store: &Store, id: MemberId, google_id: &str) -> Outcome {
        let mut a = store.get(id).unwrap().unwrap().dir.clone();
        a.google_id = Some(google_id.into());
        a.family_name = Some("King".into());
        apply(
            store,
            Change::Update {
                id,
                expected_version: None,
                attrs: a,
            },
            &Actor::Pull("r".into()),
            t(2),
        )
        .unwrap()
    }

    #[test]
    fn a_pull_relink_to_another_google_id_drops_the_grants_and_the_same_id_keeps_them() {
        let (_d, store) = store();
        let mut a = attrs("ada@example.com");
        a.google_id = Some("g-1".into());
        let m = pull_create(&store, a, "r", t(0)).unwrap().member().clone();
        grant(&store, m.id);

        let same = pull_update(&store, m.id, "g-1");
        assert!(!same.identity_changed());
        assert_eq!(same.member().role, Role::Owner);
        assert_eq!(same.member().locations, ["Paris"]);

        let other = pull_update(&store, m.id, "g-2");
        assert!(other.identity_changed());
        let after = other.member();
        assert_eq!(after.id, m.id, "the record is kept");
        assert_eq!(after.role, Role::Member);
        assert!(after.locations.is_empty());
        assert_eq!(after.dir.google_id.as_deref(), Some("g-2"));
        let last = last_audit(&store, m.id);
        assert_eq!(
            last.after["grantsRemoved"],
            serde_json::json!({"role": "owner", "locations": ["Paris"]})
        );
        assert_eq!(last.before["role"], "owner");
        assert_eq!(last.before["googleId"], "g-1");

        // A Link to another Google id is a relink too.
        grant(&store, m.id);
        let out = apply(
            &store,
            Change::Link {
                id: m.id,
                google_id: "g-3".into(),
                expected_version: None,
            },
            &Actor::Pull("r".into()),
            t(3),
        )
        .unwrap();
        assert!(out.identity_changed());
        assert!(out.member().locations.is_empty());
    }

    #[test]
    fn the_google_id_is_the_pulls_and_the_external_id_is_scims() {
        let (_d, store) = store();
        // SCIM creates with its own externalId; a Google id it sends is ignored.
        let mut a = attrs("ada@example.com");
        a.external_id = Some("entra-1".into());
        a.google_id = Some("forged".into());
        let m = scim_create(&store, a, t(0)).unwrap().member().clone();
        assert_eq!(m.dir.external_id.as_deref(), Some("entra-1"));
        assert_eq!(m.dir.google_id, None);
        // The pull links it; the SCIM externalId survives, and an externalId the pull
        // sends is ignored.
        let mut p = m.dir.clone();
        p.google_id = Some("g-1".into());
        p.external_id = None;
        let out = apply(
            &store,
            Change::Update {
                id: m.id,
                expected_version: None,
                attrs: p,
            },
            &Actor::Pull("r".into()),
            t(1),
        )
        .unwrap();
        assert_eq!(out.member().dir.google_id.as_deref(), Some("g-1"));
        assert_eq!(out.member().dir.external_id.as_deref(), Some("entra-1"));
        // A SCIM PUT without externalId clears SCIM's own and keeps the Google link.
        let mut s = out.member().dir.clone();
        s.external_id = None;
        s.google_id = None;
        let out = apply(
            &store,
            Change::Update {
                id: m.id,
                expected_version: None,
                attrs: s,
            },
            &scim(),
            t(2),
        )
        .unwrap();
        assert_eq!(out.member().dir.google_id.as_deref(), Some("g-1"));
        assert_eq!(out.member().dir.external_id, None);
        assert_eq!(store.get_by_google_id("g-1").unwrap().unwrap().id, m.id);
        assert!(store.get_by_external_id("entra-1").unwrap().is_none());
        // Only the pull links.
        let err = apply(
            &store,
            Change::Link {
                id: m.id,
                google_id: "g-9".into(),
                expected_version: None,
            },
            &scim(),
            t(3),
        )
        .unwrap_err();
        assert!(matches!(err, ProvisionError::Forbidden { .. }), "{err}");
        assert!(store.check_consistency().unwrap().is_empty());
    }

    #[test]
    fn scim_cannot_touch_an_unclaimed_invite_but_its_post_links_it() {
        let (_d, store) = store();
        let invited = invite(&store, "ada@example.com");
        grant(&store, invited.id);
        assert_eq!(store.scim_listing_len(), 0);
        for change in [
            Change::Update {
                id: invited.id,
                expected_version: None,
                attrs: attrs("ada@example.com"),
            },
            Change::Deactivate {
                id: invited.id,
                expected_version: None,
            },
            Change::ScimDelete {
                id: invited.id,
                expected_version: None,
            },
        ] {
            let err = apply(&store, change, &scim(), t(1)).unwrap_err();
            assert!(matches!(err, ProvisionError::NotFound(_)), "{err}");
        }
        let out = scim_create(&store, attrs("Ada@Example.com"), t(2)).unwrap();
        let m = out.member();
        assert_eq!(m.id, invited.id);
        assert_eq!(m.managed_by, ManagedBy::Google);
        assert_eq!(m.role, Role::Owner);
        assert_eq!(m.locations, ["Paris"]);
        assert_eq!(store.scim_listing_page(0, 10, false), [m.id]);
        let last = last_audit(&store, m.id);
        assert_eq!(last.change, ChangeKind::Link);
        assert_eq!(last.actor, scim());
    }

    #[test]
    fn names_that_fold_together_are_one_name() {
        let (_d, store) = store();
        let sigma = create(&store, "ΣΑΣ@example.com", &scim());
        let dz = create(&store, "ǅa@example.com", &scim());
        let kelvin = create(&store, "\u{212A}im@example.com", &scim());
        for (taken, by) in [
            ("σασ@example.com", sigma.id),
            ("ǆa@example.com", dz.id),
            ("kim@example.com", kelvin.id),
        ] {
            let err = scim_create(&store, attrs(taken), t(1)).unwrap_err();
            assert!(
                matches!(err, ProvisionError::UserNameTaken { existing, .. } if existing == by),
                "{taken}: {err}"
            );
            assert_eq!(store.id_by_user_name(taken).unwrap(), Some(by));
        }
        assert_eq!(
            store.get(sigma.id).unwrap().unwrap().dir.user_name.as_str(),
            "ΣΑΣ@example.com",
            "stored as given"
        );
    }

    #[test]
    fn everything_is_there_after_close_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let id;
        {
            let store = Store::open(&path).unwrap();
            id = create(&store, "ada@example.com", &scim()).id;
            apply(
                &store,
                Change::SetLocations {
                    id,
                    locations: vec!["Paris".into()],
                },
                &Actor::Owner,
                t(1),
            )
            .unwrap();
            store.flush_blocking().unwrap();
        }
        let store = Store::open(&path).unwrap();
        let m = store.get_by_user_name("ADA@example.com").unwrap().unwrap();
        assert_eq!(m.id, id);
        assert_eq!(m.locations, vec!["Paris".to_string()]);
        assert_eq!(m.version, 2);
        assert_eq!(store.audit(&AuditQuery::default()).unwrap().len(), 2);
        assert!(store.check_consistency().unwrap().is_empty());
    }
}
