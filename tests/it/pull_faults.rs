//! Faults: an incomplete fetch writes nothing; mass deactivations are held until approved;
//! a member changed over SCIM between plan and apply is skipped, not overwritten; a crashed
//! run converges.

use crate::common;

use std::sync::Arc;

use common::*;
use fake_google::{FakeSeed, FakeUser, Fault};
use retrac_sync::member::{Actor, Change, ManagedBy};
use retrac_sync::provision;
use retrac_sync::reconcile::{self, Request, Response, Target};
use retrac_sync::store::{RunId, RunStatus, Store};

/// `sync approve` of the run `r` held.
async fn approve(
    ctx: &reconcile::SyncContext,
    r: &reconcile::SyncOutcome,
) -> Result<reconcile::SyncOutcome, reconcile::SyncError> {
    pull(
        ctx,
        Target::Approve(r.report.run_id.clone().unwrap()),
        false,
    )
    .await
}

async fn synced(n: usize) -> (World, Store) {
    let w = world(FakeSeed::sample(n, "example.com")).await;
    let store = Store::open(&w.config.store.path).unwrap();
    let r = sync(&context(&store, &w.config)).await;
    assert_eq!(r.report.status, RunStatus::Ok);
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
    assert_eq!(r.report.status, RunStatus::Failed);
    assert!(r.failed());
    assert!(
        r.error.as_deref().unwrap().contains("nothing was written"),
        "{r:?}"
    );
    assert_eq!(r.report.google_requests, 1 + 7);
    assert_eq!((audit_len(&store), members(&store)), before, "zero writes");
    let run = store
        .sync_run(r.report.run_id.as_ref().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(run.status, retrac_sync::store::RunStatus::Failed);
    // Google recovers: the next run applies the drift.
    w.google.clear_faults();
    let r = sync(&ctx).await;
    assert_eq!(
        (
            r.report.status,
            r.report.counts.created,
            r.report.counts.updated,
            r.report.counts.deactivated
        ),
        (RunStatus::Ok, 1, 1, 1),
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
    assert_eq!(r.report.status, RunStatus::Failed, "{r:?}");
    assert_eq!((audit_len(&store), members(&store)), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_failure_or_a_failing_group_fails_the_run_with_zero_writes() {
    let (mut w, store) = synced(300).await;
    drift(&w);
    let before = (audit_len(&store), members(&store));
    w.google.inject(Fault::DenyDelegation);
    let r = sync(&context(&store, &w.config)).await;
    assert_eq!(r.report.status, RunStatus::Failed);
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
    assert_eq!(r.report.status, RunStatus::Failed, "{r:?}");
    // And a scope group Google does not know.
    w.google.clear_faults();
    w.config.scope.groups = vec!["no-such-group@example.com".into()];
    let r = sync(&context(&store, &w.config)).await;
    assert_eq!(r.report.status, RunStatus::Failed, "{r:?}");
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
    assert_eq!(r.report.status, RunStatus::Held, "{r:?}");
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
        .filter(|e| store.get_by_user_name(e).unwrap().unwrap().dir.active)
        .count() as u64;
    assert_eq!(still_active, was_active, "nobody deactivated while held");
    let Response::Status { held, .. } =
        reconcile::execute(&ctx, Request::Status { limit: 5 }, None, chrono::Utc::now())
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
        (r2.report.status, r2.report.counts.held),
        (RunStatus::Held, was_active)
    );
    assert!(store
        .held(r.report.run_id.as_ref().unwrap())
        .unwrap()
        .is_none());
    assert!(matches!(
        approve(&ctx, &r).await,
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
    let approved = approve(&ctx, &r).await.unwrap();
    assert_eq!(approved.report.status, RunStatus::Ok, "{approved:?}");
    assert_eq!(approved.report.counts.deactivated, was_active - 1);
    assert_eq!(approved.report.counts.skipped, 1, "the one that came back");
    assert!(
        store
            .get_by_user_name(&back.primary_email)
            .unwrap()
            .unwrap()
            .dir
            .active
    );
    assert!(gone
        .iter()
        .filter(|e| **e != back.primary_email)
        .all(|e| !store.get_by_user_name(e).unwrap().unwrap().dir.active));
    assert!(store
        .held(r.report.run_id.as_ref().unwrap())
        .unwrap()
        .is_none());
    assert!(matches!(
        approve(&ctx, &r).await,
        Err(reconcile::SyncError::UnknownRun(_))
    ));
    // Everything is in step now: a plain run holds nothing and deactivates nothing.
    let r = sync(&ctx).await;
    assert_eq!(
        (
            r.report.status,
            r.report.counts.deactivated,
            r.report.counts.held
        ),
        (RunStatus::Ok, 0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discard_drops_held_deactivations() {
    let (w, store) = synced(100).await;
    let ctx = context(&store, &w.config);
    let active_before = store
        .members()
        .filter(|m| m.as_ref().unwrap().dir.active)
        .count();
    for u in w.google.users().iter().take(70) {
        w.google.delete(&u.primary_email).unwrap();
    }
    let r = sync(&ctx).await;
    assert_eq!(r.report.status, RunStatus::Held);
    let Response::Discarded { count, .. } = reconcile::execute(
        &ctx,
        Request::Discard {
            run_id: r.report.run_id.clone().unwrap(),
        },
        None,
        chrono::Utc::now(),
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
            .filter(|m| m.as_ref().unwrap().dir.active)
            .count(),
        active_before,
        "nobody was deactivated"
    );
    let unknown = RunId::parse("20000101T000000Z-000000").unwrap();
    assert!(reconcile::discard(&ctx, &unknown).is_err());
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
        let mut attrs = m.dir.clone();
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
        m.dir.display_name.as_deref(),
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
            .dir
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
    let plan = pull(&ctx, Target::All, true).await.unwrap();
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
        &Actor::Pull(retrac_sync::member::RunId::parse("20261101T020000Z-000005").unwrap()),
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
        async move { pull(&ctx, Target::All, false).await }
    });
    wait_until(
        std::time::Duration::from_secs(10),
        "the first run to start",
        async || ctx.is_running(),
    )
    .await;
    assert!(matches!(
        pull(&ctx, Target::All, false).await,
        Err(reconcile::SyncError::Busy)
    ));
    assert!(matches!(
        pull(&ctx, one("a@example.com"), false).await,
        Err(reconcile::SyncError::Busy)
    ));
    assert_eq!(first.await.unwrap().unwrap().report.counts.created, 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_of_absent_users_stop_at_the_cap_and_the_rest_are_held() {
    let (mut w, store) = synced(300).await;
    w.config.sync.max_deactivations = 2;
    w.config.sync.max_deactivation_percent = 100.0;
    let ctx = context(&store, &w.config);
    let gone: Vec<String> = w
        .google
        .users()
        .into_iter()
        .filter(|u| !u.suspended && !u.archived)
        .take(15)
        .map(|u| u.primary_email)
        .collect();
    for e in &gone {
        w.google.delete(e).unwrap();
    }
    let get = w.google.requests("users.get");
    let r = sync(&ctx).await;
    // 2 + 10 users.get checks; the 3 left are held, as are the 12 confirmed ones (over
    // max_deactivations).
    assert_eq!(w.google.requests("users.get") - get, 12);
    assert_eq!(r.report.status, RunStatus::Held, "{r:?}");
    assert_eq!((r.report.counts.held, r.report.counts.deactivated), (15, 0));
    assert!(
        r.held_reasons.iter().any(
            |h| h.contains("3 more deactivations") && h.contains("max_deactivations + 10 = 12")
        ),
        "{:?}",
        r.held_reasons
    );
    // Approved: every one is checked now (an owner asked), then deactivated.
    let get = w.google.requests("users.get");
    let a = approve(&ctx, &r).await.unwrap();
    assert_eq!(a.report.counts.deactivated, 15, "{a:?}");
    assert_eq!(w.google.requests("users.get") - get, 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_that_fails_skips_that_deactivation_only_until_the_next_run() {
    let (w, store) = synced(100).await;
    let ctx = context(&store, &w.config);
    let users: Vec<String> = w
        .google
        .users()
        .into_iter()
        .filter(|u| !u.suspended && !u.archived)
        .map(|u| u.primary_email)
        .collect();
    w.google.delete(&users[0]).unwrap();
    w.google.suspend(&users[1]);
    // users.get keeps failing past every retry.
    w.google.inject(Fault::FailPage {
        endpoint: "users.get",
        page: 1,
        times: 100,
        status: 503,
        reason: "backendError",
    });
    let r = sync(&ctx).await;
    assert_eq!(r.report.status, RunStatus::Ok, "{r:?}");
    // The suspension came in the listing: applied. The deletion could not be checked.
    assert_eq!(
        (r.report.counts.deactivated, r.report.counts.errors),
        (1, 1),
        "{r:?}"
    );
    assert!(
        r.problems[0].contains("cannot check with Google"),
        "{:?}",
        r.problems
    );
    assert!(
        store
            .get_by_user_name(&users[0])
            .unwrap()
            .unwrap()
            .dir
            .active
    );
    w.google.clear_faults();
    let r = sync(&ctx).await;
    assert_eq!(
        (r.report.counts.deactivated, r.report.counts.errors),
        (1, 0),
        "{r:?}"
    );
    assert!(
        !store
            .get_by_user_name(&users[0])
            .unwrap()
            .unwrap()
            .dir
            .active
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_past_its_deadline_fails_with_nothing_written() {
    let w = world(FakeSeed::sample(50, "example.com")).await;
    let store = Store::open(&w.config.store.path).unwrap();
    let ctx = context(&store, &w.config).with_run_timeout(std::time::Duration::from_millis(800));
    w.google
        .inject(Fault::Delay(std::time::Duration::from_secs(5)));
    let t0 = std::time::Instant::now();
    let r = sync(&ctx).await;
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(4),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(r.report.status, RunStatus::Failed);
    let e = r.error.unwrap();
    assert!(
        e.contains("[sync].run_timeout = 0.8 s") && e.contains("nothing was written"),
        "{e}"
    );
    assert_eq!(store.member_count(), 0);
    assert_eq!(audit_len(&store), 0);
    assert!(ctx.overdue().is_none(), "the run is over");
    // And the next run, on time, goes through.
    w.google.clear_faults();
    assert_eq!(sync(&ctx).await.report.counts.created, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn healthz_turns_503_while_a_run_is_past_its_deadline() {
    use retrac_sync::health::{self, Health, HealthState};
    use tower::ServiceExt;
    let w = world(FakeSeed::sample(20, "example.com")).await;
    let store = Store::open(&w.config.store.path).unwrap();
    // The apply step hangs (a store that does not answer): Google was read in time, but the
    // run as a whole overruns.
    let ctx = Arc::new(
        context(&store, &w.config)
            .with_run_timeout(std::time::Duration::from_secs(1))
            .with_before_apply(Arc::new(|_| {
                std::thread::sleep(std::time::Duration::from_millis(2500))
            })),
    );
    let h = Arc::new(Health::default());
    let probe = ctx.clone();
    h.set_overdue_probe(Arc::new(move || probe.overdue()));
    let app = health::router(HealthState {
        store: store.clone(),
        health: h.clone(),
    });
    let status = |app: axum::Router| async move {
        let r = app
            .oneshot(
                axum::http::Request::get("/healthz")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let code = r.status().as_u16();
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (code, String::from_utf8_lossy(&body).into_owned())
    };
    assert_eq!(status(app.clone()).await.0, 200);
    let run = tokio::spawn({
        let ctx = ctx.clone();
        async move { sync(&ctx).await }
    });
    // Wait until the run is past its deadline (it sits in the hook).
    let mut seen = None;
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let (code, body) = status(app.clone()).await;
        if code == 503 {
            seen = Some(body);
            break;
        }
    }
    let body = seen.expect("healthz never turned 503");
    assert!(
        body.contains("longer than [sync].run_timeout = 1 s"),
        "{body}"
    );
    run.await.unwrap();
    assert_eq!(status(app).await.0, 200, "green again once the run is over");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_user_asks_for_the_exact_address_and_never_deactivates_on_the_search_alone() {
    let mut w = world(FakeSeed::sample(40, "example.com")).await;
    w.config.scope.query = Some("isSuspended=false".into());
    let store = Store::open(&w.config.store.path).unwrap();
    let ctx = context(&store, &w.config);
    let user = w
        .google
        .users()
        .into_iter()
        .find(|u| !u.suspended && !u.archived)
        .unwrap();
    let r = pull(&ctx, one(&user.primary_email), false).await.unwrap();
    assert_eq!(r.report.counts.created, 1, "{r:?}");
    // isSuspended= is judged from users.get's answer: Google's search, which can lag, is
    // not asked at all.
    assert_eq!(w.google.requests("users.list"), 0);
    // The search index lags: it makes no difference, the search is not asked. One users.get
    // by the address decides.
    w.google
        .inject(Fault::SearchLag(user.primary_email.clone()));
    let get = w.google.requests("users.get");
    let r = pull(&ctx, one(&user.primary_email), false).await.unwrap();
    assert_eq!(r.report.counts.deactivated, 0, "{r:?}");
    assert_eq!(r.report.counts.unchanged, 1, "{r:?}");
    assert_eq!(w.google.requests("users.get") - get, 1, "by email");
    assert_eq!(w.google.requests("users.list"), 0);
    assert!(w
        .google
        .last_query("users.get")
        .is_some_and(|q| q.contains("fields=")));
    assert!(
        store
            .get_by_user_name(&user.primary_email)
            .unwrap()
            .unwrap()
            .dir
            .active
    );
    // Suspended: the query no longer matches, users.get agrees: deactivated.
    w.google.suspend(&user.primary_email);
    let r = pull(&ctx, one(&user.primary_email), false).await.unwrap();
    assert_eq!(r.report.counts.deactivated, 1, "{r:?}");
    // Renamed: users.get finds the user by its old address (an alias now): followed.
    w.google.unsuspend(&user.primary_email);
    w.google
        .rename(&user.primary_email, "renamed.one@example.com");
    let r = pull(&ctx, one(&user.primary_email), false).await.unwrap();
    assert_eq!(
        (r.report.counts.updated, r.report.counts.deactivated),
        (1, 0),
        "{r:?}"
    );
    assert!(
        store
            .get_by_user_name("renamed.one@example.com")
            .unwrap()
            .unwrap()
            .dir
            .active
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_narrowed_search_google_refuses_fails_sync_user_and_says_why() {
    let mut w = world(FakeSeed::sample(10, "example.com")).await;
    // name: is a clause the fake (like any search it does not know) refuses with a 400.
    w.config.scope.query = Some("isSuspended=false name:'Ada'".into());
    let store = Store::open(&w.config.store.path).unwrap();
    let ctx = context(&store, &w.config);
    let user = w.google.users()[0].primary_email.clone();
    let r = pull(&ctx, one(&user), false).await.unwrap();
    assert!(r.failed(), "{r:?}");
    let e = r.error.unwrap();
    assert!(
        e.starts_with("Google's search refused [scope].query narrowed to this user: Google users.list failed with HTTP 400"),
        "{e}"
    );
    assert!(e.ends_with("; nothing was written"), "{e}");
    assert_eq!(store.member_count(), 0);
}
