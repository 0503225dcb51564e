//! End to end: a fake Google with 1,200 users and groups, then `sync`, then each change in
//! Google followed by a sync that must reflect it.

mod common;

use common::*;
use retrac_sync::directory::fake::{FakeMember, FakeSeed, FakeUser};
use retrac_sync::reconcile::{self, Request, Response, SyncOptions};
use retrac_sync::store::Store;

const GROUPS: [&str; 2] = ["engineering", "sales"];

fn groups() -> Vec<String> {
    GROUPS.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_members_follow_google_through_every_kind_of_change() {
    let mut w = world(FakeSeed::sample(1200, "example.com")).await;
    scoped(&mut w.config);
    let store = Store::open(&w.config.store.path).unwrap();
    let ctx = context(&store, &w.config);
    let g = &w.google;
    let scope = |u: &FakeUser| in_scope(u, &groups());

    // First sync: exactly the scope.
    let first = sync(&ctx).await;
    assert_eq!(first.report.status, "ok", "{first:?}");
    let expected = g.users().iter().filter(|u| scope(u)).count() as u64;
    assert_eq!(first.report.counts.created, expected);
    assert_eq!(first.report.counts.errors, 0, "{:?}", first.problems);
    // users.list pages + group pages, nothing per user.
    assert_eq!(
        first.report.google_requests,
        g.requests("users.list") + g.requests("members.list")
    );
    assert_eq!(g.requests("users.list"), 3, "1200 users / 500 a page");
    assert_eq!(g.requests("users.get"), 0);
    assert_mirrors(&store, g, scope);

    // Nothing changed: nothing written.
    let audit = audit_len(&store);
    let again = sync(&ctx).await;
    assert_eq!(
        (
            again.report.counts.created,
            again.report.counts.updated,
            again.report.counts.deactivated
        ),
        (0, 0, 0)
    );
    assert_eq!(again.report.counts.unchanged, expected);
    assert_eq!(audit_len(&store), audit);

    let in_scope_users: Vec<FakeUser> = g
        .users()
        .into_iter()
        .filter(|u| scope(u) && !u.suspended && !u.archived)
        .collect();
    let pick = |i: usize| in_scope_users[i].primary_email.clone();

    // Suspend.
    let suspended = pick(0);
    assert!(g.suspend(&suspended));
    let r = sync(&ctx).await;
    assert_eq!(
        (r.report.counts.deactivated, r.report.status.as_str()),
        (1, "ok"),
        "{r:?}"
    );
    assert!(!store.get_by_user_name(&suspended).unwrap().unwrap().active);

    // Delete: deactivated, not deleted.
    let deleted = pick(1);
    let before = store.get_by_user_name(&deleted).unwrap().unwrap();
    g.delete(&deleted).unwrap();
    let r = sync(&ctx).await;
    assert_eq!(r.report.counts.deactivated, 1, "{r:?}");
    let after = store.get(before.id).unwrap().unwrap();
    assert!(!after.active);

    // Rename: the same member, a new user name.
    let old = pick(2);
    let member = store.get_by_user_name(&old).unwrap().unwrap();
    let new = format!("renamed.{old}");
    assert!(g.rename(&old, &new));
    let r = sync(&ctx).await;
    assert_eq!(
        (r.report.counts.updated, r.report.counts.created),
        (1, 0),
        "{r:?}"
    );
    let renamed = store.get(member.id).unwrap().unwrap();
    assert_eq!(renamed.user_name.as_str(), new);
    assert!(
        renamed.emails.iter().any(|e| e.value == old),
        "the old address stays as an alias"
    );

    // A name change.
    let named = pick(3);
    assert!(g.set_name(&named, "Augusta", "King"));
    let r = sync(&ctx).await;
    assert_eq!(r.report.counts.updated, 1, "{r:?}");
    let m = store.get_by_user_name(&named).unwrap().unwrap();
    assert_eq!(
        (m.given_name.as_deref(), m.family_name.as_deref()),
        (Some("Augusta"), Some("King"))
    );

    // A new user in a scope group.
    let id =
        g.add_user(FakeUser::new("", "new.hire@example.com", "New", "Hire").in_org_unit("/Sales"));
    g.group_add(
        "sales@example.com",
        FakeMember::User("new.hire@example.com".into()),
    );
    let r = sync(&ctx).await;
    assert_eq!(r.report.counts.created, 1, "{r:?}");
    assert_eq!(
        store
            .get_by_user_name("NEW.HIRE@example.com")
            .unwrap()
            .unwrap()
            .google_id
            .as_deref(),
        Some(id.as_str())
    );

    // Removed from a group (and not in a scope org unit): deactivated.
    let sales_user = g
        .users()
        .into_iter()
        .find(|u| u.org_unit_path == "/Sales" && !u.suspended && !u.archived && scope(u))
        .unwrap();
    assert!(g.group_remove("sales@example.com", &sales_user.primary_email));
    let r = sync(&ctx).await;
    assert_eq!(r.report.counts.deactivated, 1, "{r:?}");
    assert!(
        !store
            .get_by_user_name(&sales_user.primary_email)
            .unwrap()
            .unwrap()
            .active
    );

    // Unsuspend: back, as an update, with its locations.
    assert!(g.unsuspend(&suspended));
    let r = sync(&ctx).await;
    assert_eq!(r.report.counts.updated, 1, "{r:?}");
    assert!(store.get_by_user_name(&suspended).unwrap().unwrap().active);

    let scope_now = |u: &FakeUser| scope(u) && u.primary_email != sales_user.primary_email;
    assert_mirrors(&store, g, scope_now);

    // Every run is recorded, newest first, with its counts.
    let status = reconcile::execute(&ctx, Request::Status { limit: 3 }, None)
        .await
        .unwrap();
    let Response::Status {
        runs,
        held,
        running,
    } = status
    else {
        panic!()
    };
    assert_eq!(runs.len(), 3);
    assert!(runs[0].run_id > runs[1].run_id);
    assert_eq!(runs[0].counts.updated, 1);
    assert!(held.is_empty() && !running);
    // The audit actor is the run id.
    let entries = store
        .audit(&retrac_sync::store::AuditQuery {
            limit: Some(1),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        entries[0].actor,
        retrac_sync::member::Actor::Pull(runs[0].run_id.clone())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_plans_and_writes_nothing() {
    let w = world(FakeSeed::sample(50, "example.com")).await;
    let store = Store::open(&w.config.store.path).unwrap();
    let ctx = context(&store, &w.config);
    let out = reconcile::run_sync(
        &ctx,
        SyncOptions {
            dry_run: true,
            progress: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(out.report.counts.created, 50);
    assert_eq!(out.changes.as_ref().unwrap().len(), 50);
    assert_eq!(store.member_count(), 0);
    assert!(
        store.sync_runs(10).unwrap().is_empty(),
        "a dry run is not recorded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_members_are_linked_when_google_has_them_and_left_alone_otherwise() {
    let w = world(FakeSeed::sample(20, "example.com")).await;
    let store = Store::open(&w.config.store.path).unwrap();
    let target = w.google.users()[3].clone();
    let now = chrono::Utc::now();
    for (email, given) in [
        (target.primary_email.to_uppercase(), "X"),
        ("guest@example.com".into(), "Guest"),
        ("partner@other.org".into(), "P"),
    ] {
        retrac_sync::owner::execute(
            &store,
            retrac_sync::owner::Request::MembersAdd {
                email,
                given: given.into(),
                family: "Y".into(),
            },
            now,
        )
        .unwrap();
    }
    let ctx = context(&store, &w.config);
    let r = sync(&ctx).await;
    assert_eq!(
        (r.report.counts.created, r.report.counts.linked),
        (19, 1),
        "{r:?}"
    );
    let linked = store
        .get_by_user_name(&target.primary_email)
        .unwrap()
        .unwrap();
    assert_eq!(linked.google_id.as_deref(), Some(target.id.as_str()));
    assert_eq!(linked.managed_by, retrac_sync::member::ManagedBy::Google);
    assert!(
        store
            .get_by_user_name("guest@example.com")
            .unwrap()
            .unwrap()
            .active
    );
    assert!(
        store
            .get_by_user_name("partner@other.org")
            .unwrap()
            .unwrap()
            .active
    );
    assert_eq!(store.member_count(), 22, "no duplicate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_recreated_with_the_same_email_keeps_its_member_but_not_its_grants() {
    let w = world(FakeSeed::sample(20, "example.com")).await;
    let store = Store::open(&w.config.store.path).unwrap();
    let ctx = context(&store, &w.config);
    sync(&ctx).await;
    let u = w.google.users()[5].clone();
    let m = store.get_by_user_name(&u.primary_email).unwrap().unwrap();
    retrac_sync::owner::execute(
        &store,
        retrac_sync::owner::Request::MembersLocations {
            who: m.id.to_string(),
            edit: retrac_sync::owner::LocationEdit::Set,
            locations: vec!["Lyon".into()],
        },
        chrono::Utc::now(),
    )
    .unwrap();
    w.google.delete(&u.primary_email).unwrap();
    let mut again = u.clone();
    again.id = String::new();
    let new_id = w.google.add_user(again);
    let r = sync(&ctx).await;
    assert_eq!(
        (
            r.report.counts.updated,
            r.report.counts.created,
            r.report.counts.deactivated
        ),
        (1, 0, 0),
        "{r:?}"
    );
    assert_eq!(r.report.counts.identity_changed, 1, "{r:?}");
    let after = store.get(m.id).unwrap().unwrap();
    assert_eq!(after.google_id.as_deref(), Some(new_id.as_str()));
    // A new Google id is a new person as far as anyone can tell: the record and its history
    // stay, the owner's grants do not, and the audit entry says what was removed.
    assert!(after.locations.is_empty());
    assert!(after.active);
    let last = store
        .audit(&retrac_sync::store::AuditQuery {
            member: Some(m.id),
            ..Default::default()
        })
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(
        last.after["grantsRemoved"],
        serde_json::json!({"role": "member", "locations": ["Lyon"]})
    );
    // The next run with the same identity keeps what the owner gives back.
    retrac_sync::owner::execute(
        &store,
        retrac_sync::owner::Request::MembersLocations {
            who: m.id.to_string(),
            edit: retrac_sync::owner::LocationEdit::Set,
            locations: vec!["Lyon".into()],
        },
        chrono::Utc::now(),
    )
    .unwrap();
    let r = sync(&ctx).await;
    assert_eq!(r.report.counts.identity_changed, 0, "{r:?}");
    assert_eq!(store.get(m.id).unwrap().unwrap().locations, ["Lyon"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_user_provisions_one_user_on_demand() {
    let mut w = world(FakeSeed::sample(30, "example.com")).await;
    scoped(&mut w.config);
    w.config.scope.exclude.clear();
    let store = Store::open(&w.config.store.path).unwrap();
    let ctx = context(&store, &w.config);
    let users = w.google.users();
    let inside = users
        .iter()
        .find(|u| u.org_unit_path == "/Sales" && !u.suspended)
        .unwrap();
    let outside = users.iter().find(|u| u.org_unit_path == "/").unwrap();
    let dry = reconcile::sync_user(&ctx, &inside.primary_email, true)
        .await
        .unwrap();
    assert_eq!(dry.report.counts.created, 1);
    assert_eq!(store.member_count(), 0);
    let r = reconcile::sync_user(&ctx, &inside.primary_email.to_uppercase(), false)
        .await
        .unwrap();
    assert_eq!(
        (r.report.counts.created, r.report.status.as_str()),
        (1, "ok"),
        "{r:?}"
    );
    assert!(
        w.google.requests("users.list") == 0,
        "no listing for one user"
    );
    let r = reconcile::sync_user(&ctx, &outside.primary_email, false)
        .await
        .unwrap();
    assert_eq!(r.report.counts.created, 0, "out of scope");
    assert_eq!(store.member_count(), 1);
    // Suspended in Google: the member goes inactive at once.
    w.google.suspend(&inside.primary_email);
    let r = reconcile::sync_user(&ctx, &inside.primary_email, false)
        .await
        .unwrap();
    assert_eq!(r.report.counts.deactivated, 1);
    assert!(reconcile::sync_user(&ctx, "not an email", false)
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scope_query_is_passed_to_google() {
    let mut w = world(FakeSeed::sample(300, "example.com")).await;
    w.config.scope.query = Some("orgUnitPath='/Sales' isSuspended=false".into());
    let store = Store::open(&w.config.store.path).unwrap();
    let ctx = context(&store, &w.config);
    let r = sync(&ctx).await;
    assert_eq!(r.report.status, "ok", "{r:?}");
    assert!(w
        .google
        .last_query("users.list")
        .unwrap()
        .contains("query=orgUnitPath"));
    assert_mirrors(&store, &w.google, |u| {
        u.org_unit_path == "/Sales" && !u.suspended
    });
}
