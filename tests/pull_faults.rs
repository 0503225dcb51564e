//! Faults: an incomplete fetch writes nothing; mass deactivations are held until approved;
//! a member changed over SCIM between plan and apply is skipped, not overwritten; a crashed
//! run converges.

mod common;

use std::sync::Arc;

use common::*;
use retrac_sync::directory::fake::{FakeSeed, FakeUser, Fault};
use retrac_sync::member::{Actor, Change, ManagedBy};
use retrac_sync::provision;
use retrac_sync::reconcile::{self, Request, Response, SyncOptions};
use retrac_sync::store::Store;

async fn synced(n: usize) -> (World, Store) {
    let w = world(FakeSeed::sample(n, "example.com")).await;
    let store = Store::open(&w.config.store.path).unwrap();
    let r = sync(&context(&store, &w.config)).await;
    assert_eq!(r.report.status, "ok");
    (w, store)
}

/// Changes Google so that the next sync would write: a suspension, a new user, a rename.
fn drift(w: &World) {
    let users = w.google.users();
    w.google.suspend(&users[1].primary_email);
    w.google
        .add_user(FakeUser::new("", "zz.new@example.com", "Zz", "New"));
    w.google
        .rename(&users[2].primary_email, "renamed@example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_two_failing_after_its_retries_fails_the_run_with_zero_writes() {
    let (w, store) = synced(1200).await;
    drift(&w);
    w.google.inject(Fault::FailPage {
        endpoint: "users.list",
        page: 2,
        times: 1000,
        status: 503,
        reason: "backendError",
    });
    let before = (audit_len(&store), members(&store));
    let ctx = context(&store, &w.config);
    let r = sync(&ctx).await;
    assert_eq!(r.report.status, "failed");
    assert!(r.failed());
    assert!(
        r.error.as_deref().unwrap().contains("nothing was written"),
        "{r:?}"
    );
    assert_eq!(r.report.google_requests, 1 + 7);
    assert_eq!((audit_len(&store), members(&store)), before, "zero writes");
    let run = store.sync_run(&r.report.run_id).unwrap().unwrap();
    assert_eq!(run.status, retrac_sync::store::RunStatus::Failed);
    // Google recovers: the next run applies the drift.
    w.google.clear_faults();
    let r = sync(&ctx).await;
    assert_eq!(
        (
            r.report.status.as_str(),
            r.report.counts.created,
            r.report.counts.updated,
            r.report.counts.deactivated
        ),
        ("ok", 1, 1, 1),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_page_fails_the_run_with_zero_writes() {
    let (w, store) = synced(1200).await;
    drift(&w);
    w.google.inject(Fault::TruncatePage { page: 3, times: 1 });
    let before = (audit_len(&store), members(&store));
    let r = sync(&context(&store, &w.config)).await;
    assert_eq!(r.report.status, "failed", "{r:?}");
    assert_eq!((audit_len(&store), members(&store)), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_failure_or_a_failing_group_fails_the_run_with_zero_writes() {
    let (mut w, store) = synced(300).await;
    drift(&w);
    let before = (audit_len(&store), members(&store));
    w.google.inject(Fault::DenyDelegation);
    let r = sync(&context(&store, &w.config)).await;
    assert_eq!(r.report.status, "failed");
    assert!(
        r.error
            .as_deref()
            .unwrap()
            .contains("Domain-wide delegation"),
        "{r:?}"
    );
    w.google.clear_faults();
    // A scope group whose second page keeps failing: it must not look like an emptier group.
    w.config.scope.groups = vec![
        "everyone@example.com".into(),
        "engineering@example.com".into(),
    ];
    w.google.inject(Fault::FailPage {
        endpoint: "members.list",
        page: 1,
        times: 1000,
        status: 500,
        reason: "backendError",
    });
    let r = sync(&context(&store, &w.config)).await;
    assert_eq!(r.report.status, "failed", "{r:?}");
    // And a scope group Google does not know.
    w.google.clear_faults();
    w.config.scope.groups = vec!["no-such-group@example.com".into()];
    let r = sync(&context(&store, &w.config)).await;
    assert_eq!(r.report.status, "failed", "{r:?}");
    assert!(r.error.as_deref().unwrap().contains("404"), "{r:?}");
    assert_eq!((audit_len(&store), members(&store)), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_percent_deleted_holds_the_deactivations_until_approved() {
    let (w, store) = synced(200).await;
    let ctx = context(&store, &w.config);
    let users = w.google.users();
    let gone: Vec<String> = users
        .iter()
        .take(120)
        .map(|u| u.primary_email.clone())
        .collect();
    for e in &gone {
        w.google.delete(e).unwrap();
    }
    w.google
        .add_user(FakeUser::new("", "zz.new@example.com", "Zz", "New"));
    let r = sync(&ctx).await;
    assert_eq!(r.report.status, "held", "{r:?}");
    let was_active = users
        .iter()
        .take(120)
        .filter(|u| !u.suspended && !u.archived)
        .count() as u64;
    assert_eq!(r.report.counts.held, was_active);
    assert_eq!(r.report.counts.deactivated, 0);
    assert_eq!(r.report.counts.created, 1, "creates still go ahead");
    assert!(
        r.held_reasons
            .iter()
            .any(|h| h.contains("max_deactivations")),
        "{:?}",
        r.held_reasons
    );
    let still_active = gone
        .iter()
        .filter(|e| store.get_by_user_name(e).unwrap().unwrap().active)
        .count() as u64;
    assert_eq!(still_active, was_active, "nobody deactivated while held");
    let Response::Status { held, .. } =
        reconcile::execute(&ctx, Request::Status { limit: 5 }, None)
            .await
            .unwrap()
    else {
        panic!()
    };
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].count as u64, was_active);
    // A newer run holds them again and supersedes the first hold.
    let r2 = sync(&ctx).await;
    assert_eq!(
        (r2.report.status.as_str(), r2.report.counts.held),
        ("held", was_active)
    );
    assert!(store.held(&r.report.run_id).unwrap().is_none());
    assert!(matches!(
        reconcile::approve(&ctx, &r.report.run_id).await,
        Err(reconcile::SyncError::UnknownRun(_))
    ));
    let r = r2;
    // One of them comes back before approval: it is not deactivated.
    let back = users
        .iter()
        .take(120)
        .find(|u| !u.suspended && !u.archived)
        .unwrap()
        .clone();
    w.google.add_user(back.clone());
    let approved = reconcile::approve(&ctx, &r.report.run_id).await.unwrap();
    assert_eq!(approved.report.status, "ok", "{approved:?}");
    assert_eq!(approved.report.counts.deactivated, was_active - 1);
    assert_eq!(approved.report.counts.skipped, 1, "the one that came back");
    assert!(
        store
            .get_by_user_name(&back.primary_email)
            .unwrap()
            .unwrap()
            .active
    );
    assert!(gone
        .iter()
        .filter(|e| **e != back.primary_email)
        .all(|e| !store.get_by_user_name(e).unwrap().unwrap().active));
    assert!(store.held(&r.report.run_id).unwrap().is_none());
    assert!(matches!(
        reconcile::approve(&ctx, &r.report.run_id).await,
        Err(reconcile::SyncError::UnknownRun(_))
    ));
    // Everything is in step now: a plain run holds nothing and deactivates nothing.
    let r = sync(&ctx).await;
    assert_eq!(
        (
            r.report.status.as_str(),
            r.report.counts.deactivated,
            r.report.counts.held
        ),
        ("ok", 0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discard_drops_held_deactivations() {
    let (w, store) = synced(100).await;
    let ctx = context(&store, &w.config);
    let active_before = store
        .members()
        .filter(|m| m.as_ref().unwrap().active)
        .count();
    for u in w.google.users().iter().take(70) {
        w.google.delete(&u.primary_email).unwrap();
    }
    let r = sync(&ctx).await;
    assert_eq!(r.report.status, "held");
    let Response::Discarded { count, .. } = reconcile::execute(
        &ctx,
        Request::Discard {
            run_id: r.report.run_id.clone(),
        },
        None,
    )
    .await
    .unwrap() else {
        panic!()
    };
    assert_eq!(count as u64, r.report.counts.held);
    assert!(store.held_all().unwrap().is_empty());
    assert_eq!(
        store
            .members()
            .filter(|m| m.as_ref().unwrap().active)
            .count(),
        active_before,
        "nobody was deactivated"
    );
    assert!(reconcile::discard(&ctx, "nope").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_patched_over_scim_between_plan_and_apply_is_skipped_not_overwritten() {
    let (w, store) = synced(50).await;
    let target = w.google.users()[7].clone();
    w.google
        .set_name(&target.primary_email, "FromGoogle", "Name");
    let email = target.primary_email.clone();
    let hook = Arc::new(move |store: &Store| {
        let m = store.get_by_user_name(&email).unwrap().unwrap();
        let mut attrs = m.directory_attrs();
        attrs.display_name = Some("Set over SCIM".into());
        provision::apply(
            store,
            Change::Update {
                id: m.id,
                expected_version: Some(m.version),
                attrs,
            },
            &Actor::Scim("google".into()),
            chrono::Utc::now(),
        )
        .unwrap();
    });
    let ctx = context(&store, &w.config).with_before_apply(hook);
    let r = sync(&ctx).await;
    assert_eq!(
        (
            r.report.counts.skipped,
            r.report.counts.updated,
            r.report.counts.errors
        ),
        (1, 0, 0),
        "{r:?}"
    );
    let m = store
        .get_by_user_name(&target.primary_email)
        .unwrap()
        .unwrap();
    assert_eq!(
        m.display_name.as_deref(),
        Some("Set over SCIM"),
        "not overwritten"
    );
    // The next run takes it up.
    let r = sync(&context(&store, &w.config)).await;
    assert_eq!(r.report.counts.updated, 1);
    assert_eq!(
        store
            .get_by_user_name(&target.primary_email)
            .unwrap()
            .unwrap()
            .given_name
            .as_deref(),
        Some("FromGoogle")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_midway_the_next_run_converges_without_duplicates() {
    let w = world(FakeSeed::sample(700, "example.com")).await;
    let store = Store::open(&w.config.store.path).unwrap();
    let ctx = context(&store, &w.config);
    let plan = reconcile::run_sync(
        &ctx,
        SyncOptions {
            dry_run: true,
            progress: None,
        },
    )
    .await
    .unwrap();
    let changes: Vec<Change> = plan
        .changes
        .unwrap()
        .into_iter()
        .take(300)
        .map(|c| c.change)
        .collect();
    // The crashed run got 300 creates in before it died.
    provision::apply_batch(
        &store,
        &changes,
        &Actor::Pull("crashed".into()),
        chrono::Utc::now(),
    )
    .unwrap();
    let r = sync(&ctx).await;
    assert_eq!(
        (r.report.counts.created, r.report.counts.unchanged),
        (400, 300),
        "{r:?}"
    );
    assert_eq!(store.member_count(), 700);
    assert_mirrors(&store, &w.google, |_| true);
    // A pull create that meets an unlinked member of the same name links it.
    assert!(store
        .members()
        .all(|m| m.unwrap().managed_by == ManagedBy::Google));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_never_overlap() {
    let w = world(FakeSeed::sample(600, "example.com")).await;
    let store = Store::open(&w.config.store.path).unwrap();
    let ctx = Arc::new(context(&store, &w.config));
    w.google
        .inject(Fault::Delay(std::time::Duration::from_millis(300)));
    let first = tokio::spawn({
        let ctx = ctx.clone();
        async move { reconcile::run_sync(&ctx, SyncOptions::default()).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(ctx.is_running());
    assert!(matches!(
        reconcile::run_sync(&ctx, SyncOptions::default()).await,
        Err(reconcile::SyncError::Busy)
    ));
    assert!(matches!(
        reconcile::sync_user(&ctx, "a@example.com", false).await,
        Err(reconcile::SyncError::Busy)
    ));
    assert_eq!(first.await.unwrap().unwrap().report.counts.created, 600);
}
