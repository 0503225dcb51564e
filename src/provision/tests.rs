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
        &Actor::Pull(crate::member::RunId::parse(run).unwrap()),
        at,
    )
}

fn set_locations(store: &Store, id: MemberId, locations: &[&str], at: DateTime<Utc>) -> Outcome {
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
    assert!(matches!(err, ProvisionError::UserNameTaken { existing, .. } if existing == first.id));
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
    let out = pull_create(&store, a, "20261101T020000Z-000002", t(1)).unwrap();
    let m = out.member();
    assert_eq!(m.id, invited.id, "linked, not duplicated");
    assert_eq!(m.dir.google_id.as_deref(), Some("g-ada"));
    assert_eq!(m.managed_by, ManagedBy::Google);
    assert_eq!(store.member_count(), 1);
    // A pull create for a different Google user with the same email is still a conflict.
    let mut other = attrs("ada@example.com");
    other.google_id = Some("g-other".into());
    let err = pull_create(&store, other, "20261101T020000Z-000004", t(2)).unwrap_err();
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
        &Actor::Pull(crate::member::RunId::parse("20261101T020000Z-000001").unwrap()),
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
    for actor in [
        scim(),
        Actor::Pull(crate::member::RunId::parse("20261101T020000Z-000001").unwrap()),
    ] {
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
        &Actor::Pull(crate::member::RunId::parse("20261101T020000Z-000001").unwrap()),
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
        &Actor::Pull(crate::member::RunId::parse("20261101T020000Z-000001").unwrap()),
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
    let pull = Actor::Pull(crate::member::RunId::parse("20261101T020000Z-000001").unwrap());
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
        &Actor::Pull(crate::member::RunId::parse("20261101T020000Z-000003").unwrap()),
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
    assert_eq!(
        entries[1].actor,
        Actor::Pull(crate::member::RunId::parse("20261101T020000Z-000003").unwrap())
    );
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
        &Actor::Pull(crate::member::RunId::parse("20261101T020000Z-000001").unwrap()),
        t(2),
    )
    .unwrap()
}

#[test]
fn a_pull_relink_to_another_google_id_drops_the_grants_and_the_same_id_keeps_them() {
    let (_d, store) = store();
    let mut a = attrs("ada@example.com");
    a.google_id = Some("g-1".into());
    let m = pull_create(&store, a, "20261101T020000Z-000001", t(0))
        .unwrap()
        .member()
        .clone();
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
        &Actor::Pull(crate::member::RunId::parse("20261101T020000Z-000001").unwrap()),
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
        &Actor::Pull(crate::member::RunId::parse("20261101T020000Z-000001").unwrap()),
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

mod queued;
