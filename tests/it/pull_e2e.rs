//! End to end: a fake Google with 1,200 users and groups, then `sync`, then each change in
//! Google followed by a sync that must reflect it.

use crate::common;

use common::*;
use fake_google::{FakeMember, FakeSeed, FakeUser, Fault};
use retrac_sync::reconcile::{self, Request, Response, SyncOptions, Target};
use retrac_sync::store::{RunStatus, Store};

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
    assert_eq!(first.report.status, RunStatus::Ok, "{first:?}");
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
        (r.report.counts.deactivated, r.report.status),
        (1, RunStatus::Ok),
        "{r:?}"
    );
    assert!(
        !store
            .get_by_user_name(&suspended)
            .unwrap()
            .unwrap()
            .dir
            .active
    );

    // Delete: deactivated, not deleted.
    let deleted = pick(1);
    let before = store.get_by_user_name(&deleted).unwrap().unwrap();
    g.delete(&deleted).unwrap();
    let r = sync(&ctx).await;
    assert_eq!(r.report.counts.deactivated, 1, "{r:?}");
    let after = store.get(before.id).unwrap().unwrap();
    assert!(!after.dir.active);

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
    assert_eq!(renamed.dir.user_name.as_str(), new);
    assert!(
        renamed.dir.emails.iter().any(|e| e.value == old),
        "the old address stays as an alias"
    );

    // A name change.
    let named = pick(3);
    assert!(g.set_name(&named, "Augusta", "King"));
    let r = sync(&ctx).await;
    assert_eq!(r.report.counts.updated, 1, "{r:?}");
    let m = store.get_by_user_name(&named).unwrap().unwrap();
    assert_eq!(
        (m.dir.given_name.as_deref(), m.dir.family_name.as_deref()),
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
            .dir
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
            .dir
            .active
    );

    // Unsuspend: back, as an update, with its locations.
    assert!(g.unsuspend(&suspended));
    let r = sync(&ctx).await;
    assert_eq!(r.report.counts.updated, 1, "{r:?}");
    assert!(
        store
            .get_by_user_name(&suspended)
            .unwrap()
            .unwrap()
            .dir
            .active
    );

    let scope_now = |u: &FakeUser| scope(u) && u.primary_email != sales_user.primary_email;
    assert_mirrors(&store, g, scope_now);

    // Every run is recorded, newest first, with its counts.
    let status = reconcile::execute(&ctx, Request::Status { limit: 3 }, None, chrono::Utc::now())
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
    let out = pull(&ctx, Target::All, true).await.unwrap();
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
    assert_eq!(linked.dir.google_id.as_deref(), Some(target.id.as_str()));
    assert_eq!(linked.managed_by, retrac_sync::member::ManagedBy::Google);
    assert!(
        store
            .get_by_user_name("guest@example.com")
            .unwrap()
            .unwrap()
            .dir
            .active
    );
    assert!(
        store
            .get_by_user_name("partner@other.org")
            .unwrap()
            .unwrap()
            .dir
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
    assert_eq!(after.dir.google_id.as_deref(), Some(new_id.as_str()));
    // A new Google id is a new person as far as anyone can tell: the record and its history
    // stay, the owner's grants do not, and the audit entry says what was removed.
    assert!(after.locations.is_empty());
    assert!(after.dir.active);
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
    let dry = pull(&ctx, one(&inside.primary_email), true).await.unwrap();
    assert_eq!(dry.report.counts.created, 1);
    assert_eq!(store.member_count(), 0);
    let r = pull(&ctx, one(&inside.primary_email.to_uppercase()), false)
        .await
        .unwrap();
    assert_eq!(
        (r.report.counts.created, r.report.status),
        (1, RunStatus::Ok),
        "{r:?}"
    );
    assert!(
        w.google.requests("users.list") == 0,
        "no listing for one user"
    );
    let r = pull(&ctx, one(&outside.primary_email), false)
        .await
        .unwrap();
    assert_eq!(r.report.counts.created, 0, "out of scope");
    assert_eq!(store.member_count(), 1);
    // Suspended in Google: the member goes inactive at once.
    w.google.suspend(&inside.primary_email);
    let r = pull(&ctx, one(&inside.primary_email), false).await.unwrap();
    assert_eq!(r.report.counts.deactivated, 1);
    let bad = Request::SyncUser {
        email: "not an email".into(),
        dry_run: false,
    };
    assert!(matches!(
        reconcile::execute(&ctx, bad, None, chrono::Utc::now()).await,
        Err(reconcile::SyncError::Invalid(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scope_query_is_passed_to_google() {
    let mut w = world(FakeSeed::sample(300, "example.com")).await;
    w.config.scope.query = Some("orgUnitPath='/Sales' isSuspended=false".into());
    let store = Store::open(&w.config.store.path).unwrap();
    let ctx = context(&store, &w.config);
    let r = sync(&ctx).await;
    assert_eq!(r.report.status, RunStatus::Ok, "{r:?}");
    assert!(w
        .google
        .last_query("users.list")
        .unwrap()
        .contains("query=orgUnitPath"));
    assert_mirrors(&store, &w.google, |u| {
        u.org_unit_path == "/Sales" && !u.suspended
    });
}

/// Every active user of the fake is an active member, and no other member is active.
fn all_active_mirrored(store: &Store, g: &fake_google::FakeGoogle) {
    assert_mirrors(store, g, |_| true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_missing_from_one_listing_but_found_by_users_get_stays_active() {
    let w = world(FakeSeed::sample(200, "example.com")).await;
    let store = Store::open(&w.config.store.path).unwrap();
    let ctx = context(&store, &w.config);
    let g = &w.google;
    assert_eq!(sync(&ctx).await.report.status, RunStatus::Ok);
    let lagging = g
        .users()
        .into_iter()
        .find(|u| !u.suspended && !u.archived)
        .unwrap();
    // Google's search index has not caught up with this user: users.list leaves it out.
    g.inject(Fault::SearchLag(lagging.primary_email.clone()));
    let (list, members, get) = (
        g.requests("users.list"),
        g.requests("members.list"),
        g.requests("users.get"),
    );
    let r = sync(&ctx).await;
    assert_eq!(r.report.status, RunStatus::Ok, "{r:?}");
    assert_eq!(r.report.counts.deactivated, 0, "{r:?}");
    assert_eq!(r.report.counts.verified_present, 1);
    assert!(
        store
            .get_by_user_name(&lagging.primary_email)
            .unwrap()
            .unwrap()
            .dir
            .active
    );
    // The check is one users.get, counted with the listing.
    assert_eq!(g.requests("users.get") - get, 1);
    assert_eq!(
        r.report.google_requests,
        (g.requests("users.list") - list)
            + (g.requests("members.list") - members)
            + (g.requests("users.get") - get)
    );
    assert!(g.last_query("users.get").unwrap().contains("fields="));
    // The next listing has it again: nothing to check.
    let r = sync(&ctx).await;
    assert_eq!(
        (
            r.report.counts.verified_present,
            r.report.counts.deactivated
        ),
        (0, 0)
    );
    all_active_mirrored(&store, g);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_users_get_does_not_find_is_deactivated() {
    let w = world(FakeSeed::sample(200, "example.com")).await;
    let store = Store::open(&w.config.store.path).unwrap();
    let ctx = context(&store, &w.config);
    let g = &w.google;
    assert_eq!(sync(&ctx).await.report.status, RunStatus::Ok);
    let gone = g
        .users()
        .into_iter()
        .find(|u| !u.suspended && !u.archived)
        .unwrap();
    g.delete(&gone.primary_email).unwrap();
    let get = g.requests("users.get");
    let r = sync(&ctx).await;
    assert_eq!(
        (
            r.report.counts.deactivated,
            r.report.counts.verified_present
        ),
        (1, 0),
        "{r:?}"
    );
    assert_eq!(g.requests("users.get") - get, 1, "Google answered 404");
    assert!(
        !store
            .get_by_user_name(&gone.primary_email)
            .unwrap()
            .unwrap()
            .dir
            .active
    );
    // Suspended in Google while missing from the listing: the answer of users.get decides.
    let suspended = g
        .users()
        .into_iter()
        .find(|u| !u.suspended && !u.archived)
        .unwrap();
    g.suspend(&suspended.primary_email);
    g.inject(Fault::SearchLag(suspended.primary_email.clone()));
    let r = sync(&ctx).await;
    assert_eq!(
        (
            r.report.counts.deactivated,
            r.report.counts.verified_present
        ),
        (1, 0),
        "{r:?}"
    );
    all_active_mirrored(&store, g);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_during_paging_deactivates_nobody() {
    let w = world(FakeSeed::sample(1200, "example.com")).await;
    let store = Store::open(&w.config.store.path).unwrap();
    let ctx = context(&store, &w.config);
    let g = &w.google;
    assert_eq!(sync(&ctx).await.report.status, RunStatus::Ok);
    // The last user by id (page 3) is renamed to an address that sorts first by email
    // (page 1), just after page 1 is read: in email order it would be on no page.
    let moved = g
        .users()
        .into_iter()
        .filter(|u| !u.suspended && !u.archived)
        .max_by(|a, b| a.id.cmp(&b.id))
        .unwrap();
    let member = store
        .get_by_user_name(&moved.primary_email)
        .unwrap()
        .unwrap();
    g.inject(Fault::RenameAfterPage {
        page: 1,
        old: moved.primary_email.clone(),
        new: "aaa.renamed@example.com".into(),
    });
    let r = sync(&ctx).await;
    assert_eq!(r.report.status, RunStatus::Ok, "{r:?}");
    assert_eq!(r.report.counts.deactivated, 0, "{r:?}");
    let after = store.get(member.id).unwrap().unwrap();
    assert!(after.dir.active);
    assert_eq!(after.dir.user_name.as_str(), "aaa.renamed@example.com");
    assert_eq!(g.requests("users.list"), 6, "3 pages a run");
    all_active_mirrored(&store, g);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_get_exactly_the_persons_addresses_and_a_second_pull_changes_nothing() {
    let mut seed = FakeSeed::sample(40, "example.com");
    let mut ada = FakeUser::new("900", "ada@example.com", "Ada", "Lovelace");
    ada.aliases = vec![
        "a.lovelace@example.com".into(),
        "ada@example.org".into(),
        "ada@partner.net".into(),
    ];
    ada.typed_emails = vec![
        ("ada.lovelace@gmail.com".into(), "home".into()),
        ("ada.desk@example.com".into(), "work".into()),
        ("ada.custom@example.com".into(), "custom".into()),
    ];
    seed.users.push(ada);
    let mut w = world(seed).await;
    w.config.google.domains = vec!["example.com".into(), "example.org".into()];
    let store = Store::open(&w.config.store.path).unwrap();
    let ctx = context(&store, &w.config);
    let r = sync(&ctx).await;
    assert_eq!(r.report.status, RunStatus::Ok, "{r:?}");
    let emails = |name: &str| -> Vec<String> {
        store
            .get_by_user_name(name)
            .unwrap()
            .unwrap()
            .dir
            .emails
            .iter()
            .map(|e| e.value.clone())
            .collect()
    };
    // Primary, aliases in the managed domains, the work address; never the personal
    // address, the custom one, the partner alias or Google's test-google-a.com address.
    assert_eq!(
        emails("ada@example.com"),
        [
            "ada@example.com",
            "a.lovelace@example.com",
            "ada@example.org",
            "ada.desk@example.com"
        ]
    );
    // The sample's shapes too: user 0 has a personal address and two aliases.
    let first = w
        .google
        .users()
        .into_iter()
        .find(|u| u.id == format!("1{:020}", 0))
        .unwrap();
    assert_eq!(first.typed_emails.len(), 1);
    assert_eq!(
        emails(&first.primary_email),
        [
            first.primary_email.clone(),
            first.aliases[0].clone(),
            first.aliases[1].clone()
        ]
    );
    for m in store.members().map(|m| m.unwrap()) {
        for e in &m.dir.emails {
            assert!(
                !e.value.ends_with("gmail.com") && !e.value.contains("test-google-a.com"),
                "{}: {}",
                m.dir.user_name,
                e.value
            );
        }
    }
    let audit = audit_len(&store);
    let again = sync(&ctx).await;
    assert_eq!(
        (
            again.report.counts.updated,
            again.report.counts.created,
            again.report.counts.linked
        ),
        (0, 0, 0),
        "{again:?}"
    );
    assert_eq!(audit_len(&store), audit, "nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_member_inside_a_nested_group_puts_everyone_in_scope() {
    let mut seed = FakeSeed::sample(60, "example.com");
    seed.groups.push(fake_google::FakeGroup {
        email: "all-hands@example.com".into(),
        members: vec![FakeMember::Customer],
    });
    seed.groups.push(fake_google::FakeGroup {
        email: "staff@example.com".into(),
        members: vec![FakeMember::Group("all-hands@example.com".into())],
    });
    let mut w = world(seed).await;
    w.config.scope.groups = vec!["staff@example.com".into()];
    let store = Store::open(&w.config.store.path).unwrap();
    let ctx = context(&store, &w.config);
    let r = sync(&ctx).await;
    assert_eq!(r.report.status, RunStatus::Ok, "{r:?}");
    assert_eq!(r.report.counts.created, 60, "{r:?}");
    all_active_mirrored(&store, &w.google);
}

/// A config that reaches Google without a key file: the fake's metadata server, signJwt and
/// token endpoint.
fn keyless(w: &mut common::World) {
    use retrac_sync::config::CredentialsKind;
    let g = &w.google;
    w.config.google.key_file = None;
    w.config.google.credentials = CredentialsKind::Metadata;
    w.config.google.service_account = Some(g.service_account());
    w.config.google.metadata_url = g.base_url();
    w.config.google.iam_url = g.base_url();
    w.config.google.token_url = g.token_uri();
    w.config.validate().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_credentials_pull_without_a_key_file() {
    let mut w = world(FakeSeed::sample(120, "example.com")).await;
    keyless(&mut w);
    std::fs::remove_file(w.dir.path().join("google-key.json")).unwrap();
    let store = Store::open(&w.config.store.path).unwrap();
    let ctx = context(&store, &w.config);
    let r = sync(&ctx).await;
    assert_eq!(r.report.status, RunStatus::Ok, "{r:?}");
    assert_eq!(r.report.counts.created, 120);
    let g = &w.google;
    // One own token from the metadata server, one signature, one delegated token.
    assert_eq!((g.requests("metadata"), g.requests("signJwt")), (1, 1));
    assert_eq!(g.tokens_issued(), 1);
    // Cached: the next run asks for nothing new.
    let r = sync(&ctx).await;
    assert_eq!(r.report.counts.unchanged, 120);
    assert_eq!((g.requests("metadata"), g.requests("signJwt")), (1, 1));
    all_active_mirrored(&store, g);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_keyless_step_that_fails_says_which_and_what_to_grant() {
    let mut w = world(FakeSeed::sample(10, "example.com")).await;
    keyless(&mut w);
    let store = Store::open(&w.config.store.path).unwrap();
    async fn failed_run(store: &Store, config: &retrac_sync::config::Config) -> String {
        let r = sync(&context(store, config)).await;
        assert_eq!(r.report.status, RunStatus::Failed, "{r:?}");
        assert_eq!(store.member_count(), 0);
        r.error.unwrap()
    }
    let failed = |w: &common::World| {
        let config = w.config.clone();
        let store = store.clone();
        async move { failed_run(&store, &config).await }
    };
    w.google.inject(Fault::KeylessRefuses("metadata"));
    assert_eq!(
        failed(&w).await,
        // yup-oauth2 reads the metadata server's 404 page as a token that is not JSON.
        "keyless Google credentials: the metadata step failed (the metadata server's answer is not a token (expected value at line 1 column 1)): run on Compute Engine or GKE with a service account attached to the VM or pod; nothing was written"
    );
    w.google.clear_faults();
    w.google.inject(Fault::KeylessRefuses("signJwt"));
    let sa = w.google.service_account();
    let e = failed(&w).await;
    assert!(
        e.starts_with("keyless Google credentials: the signJwt step failed (HTTP 403: "),
        "{e}"
    );
    assert!(e.contains(&format!("Permission 'iam.serviceAccounts.signJwt' denied on resource (or it may not exist): projects/-/serviceAccounts/{sa}")), "{e}");
    assert!(
        e.ends_with("grant the daemon's identity (the attached service account, the impersonated service account, or the workload identity pool's principal) roles/iam.serviceAccountTokenCreator on [google].service_account, and enable the IAM Service Account Credentials API; nothing was written"),
        "{e}"
    );
    w.google.clear_faults();
    // A VM with the default access scopes: its token may not call signJwt at all. The fix is
    // the cloud-platform access scope, not a role.
    w.google.inject(Fault::KeylessRefuses("signJwt scope"));
    let e = failed(&w).await;
    assert!(
        e.starts_with("keyless Google credentials: the signJwt step failed (HTTP 403: "),
        "{e}"
    );
    assert!(e.contains("ACCESS_TOKEN_SCOPE_INSUFFICIENT"), "{e}");
    assert!(e.contains("cloud-platform"), "{e}");
    assert!(!e.contains("roles/iam.serviceAccountTokenCreator"), "{e}");
    w.google.clear_faults();
    // The exchange: delegation not granted to the service account.
    w.google.inject(Fault::DenyDelegation);
    let e = failed(&w).await;
    assert!(
        e.starts_with("Google refused a token (unauthorized_client: ")
            && e.contains(&format!("add client id (the unique id of {sa})")),
        "{e}"
    );
    w.google.clear_faults();
    // The exchange: a subject Google does not know.
    w.config.google.subject = Some("nobody@example.com".into());
    assert_eq!(
        failed(&w).await,
        "Google does not know [google].subject nobody@example.com (invalid_grant: Invalid email or User ID): set it to the primary email of an existing Google Workspace super admin; nothing was written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_account_credentials_pull_through_sts_and_sign_jwt() {
    use retrac_sync::config::CredentialsKind;
    let mut w = world(FakeSeed::sample(30, "example.com")).await;
    keyless(&mut w);
    let file = w.google.write_external_account_file(w.dir.path()).unwrap();
    w.config.google.credentials = CredentialsKind::ExternalAccount;
    w.config.google.key_file = Some(file.clone());
    w.config.google.sts_url = w.google.base_url();
    w.config.validate().unwrap();
    let store = Store::open(&w.config.store.path).unwrap();
    let ctx = context(&store, &w.config);
    let r = sync(&ctx).await;
    assert_eq!(r.report.status, RunStatus::Ok, "{r:?}");
    assert_eq!(r.report.counts.created, 30);
    let g = &w.google;
    assert_eq!(
        (
            g.requests("sts"),
            g.requests("signJwt"),
            g.requests("metadata")
        ),
        (1, 1, 0)
    );
    // The STS refuses the subject token: the step is named.
    g.inject(Fault::KeylessRefuses("STS"));
    let ctx = context(&store, &w.config);
    let r = sync(&ctx).await;
    assert_eq!(
        r.error.as_deref(),
        Some("keyless Google credentials: the STS step failed (HTTP 400: {\"error\":\"invalid_grant\",\"error_description\":\"The audience in ID Token does not match the expected audience.\"}): check the workload identity pool provider (audience, attribute conditions; for AWS, the account id) and that the subject token is current; nothing was written")
    );
    g.clear_faults();
    // A file that is not an external_account credential.
    std::fs::write(&file, r#"{"type": "service_account"}"#).unwrap();
    let ctx = context(&store, &w.config);
    let e = sync(&ctx).await.error.unwrap();
    assert!(
        e.starts_with("keyless Google credentials: the credential file step failed ("),
        "{e}"
    );
    assert!(
        e.contains("is not an external_account credential file"),
        "{e}"
    );
}

/// Workload Identity Federation with the credential file `file`: the fake's STS and IAM
/// Credentials hosts (the file itself names Google's).
fn federated(w: &mut common::World, file: std::path::PathBuf) {
    use retrac_sync::config::CredentialsKind;
    keyless(w);
    w.config.google.credentials = CredentialsKind::ExternalAccount;
    w.config.google.key_file = Some(file);
    w.config.google.sts_url = w.google.base_url();
    w.config.validate().unwrap();
}

/// A world of 20 users pulled with Workload Identity Federation from `source`, and its store.
async fn federated_world(
    source: fake_google::SubjectTokenSource,
    impersonate: bool,
) -> (common::World, Store) {
    let mut w = world(FakeSeed::sample(20, "example.com")).await;
    let file = w
        .google
        .write_federation_file(w.dir.path(), source, impersonate)
        .unwrap();
    federated(&mut w, file);
    let store = Store::open(&w.config.store.path).unwrap();
    (w, store)
}

/// One pull with keyless credentials reading `AWS_*` from `env` (never the process's).
async fn sync_in(
    store: &Store,
    config: &retrac_sync::config::Config,
    env: &[(&str, String)],
) -> retrac_sync::reconcile::SyncOutcome {
    let env = retrac_sync::directory::keyless::Environment::fixed(
        env.iter().map(|(k, v)| (k.to_string(), v.clone())),
    );
    sync(&context(store, config).with_environment(env)).await
}

/// No AWS secret, session token or IMDSv2 token the fake uses is in `text`.
fn no_aws_secret_in(g: &fake_google::FakeGoogle, text: &str) {
    for secret in g.aws_secrets() {
        assert!(!text.contains(secret), "a secret in {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_sourced_subject_tokens_pull_as_text_and_as_json() {
    use fake_google::SubjectTokenSource;
    let mut w = world(FakeSeed::sample(20, "example.com")).await;
    let store = Store::open(&w.config.store.path).unwrap();
    for (i, source) in [SubjectTokenSource::UrlText, SubjectTokenSource::UrlJson]
        .into_iter()
        .enumerate()
    {
        let file = w
            .google
            .write_federation_file(w.dir.path(), source, false)
            .unwrap();
        federated(&mut w, file);
        let r = sync_in(&store, &w.config, &[]).await;
        assert_eq!(r.report.status, RunStatus::Ok, "{source:?}: {r:?}");
        let n = i as u64 + 1;
        let g = &w.google;
        assert_eq!((g.requests("subject token"), g.requests("sts")), (n, n));
        assert_eq!(g.last_sign_jwt_caller().as_deref(), Some("federated"));
    }
    assert_eq!(store.member_count(), 20);
    // The identity endpoint refuses: the step is named, with what to check.
    w.google.inject(Fault::KeylessRefuses("subject token URL"));
    let e = sync_in(&store, &w.config, &[]).await.error.unwrap();
    assert_eq!(
        e,
        "keyless Google credentials: the subject token URL step failed (HTTP 400: {\"error\":\"invalid_request\",\"error_description\":\"Identity not found\"}): check credential_source.url and its headers: the local identity endpoint (Azure IMDS, or your own) must answer with the workload's token; nothing was written"
    );
    assert_eq!(
        w.google.requests("sts"),
        2,
        "no STS call without a subject token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_credentials_from_the_instance_metadata_pull_through_a_signed_request() {
    use fake_google::SubjectTokenSource;
    let (mut w, store) = federated_world(SubjectTokenSource::Aws { imdsv2: true }, false).await;
    let r = sync_in(&store, &w.config, &[]).await;
    assert_eq!(r.report.status, RunStatus::Ok, "{r:?}");
    assert_eq!(r.report.counts.created, 20);
    let g = &w.google;
    // IMDSv2 session, zone, role name, role credentials; then one STS exchange that
    // checked the signature.
    assert_eq!(
        (
            g.requests("aws metadata"),
            g.requests("sts"),
            g.requests("signJwt")
        ),
        (4, 1, 1)
    );

    // No instance profile: the AWS metadata step fails and says what to attach.
    g.inject(Fault::KeylessRefuses("AWS metadata"));
    let e = sync_in(&store, &w.config, &[]).await.error.unwrap();
    assert!(
        e.starts_with("keyless Google credentials: the AWS metadata step failed (HTTP 404: ): run on EC2 with an instance profile (IAM role) attached, or set AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION"),
        "{e}"
    );
    g.clear_faults();

    // IMDSv2 is required and the file has no session token URL.
    let file = g
        .write_federation_file(
            w.dir.path(),
            SubjectTokenSource::Aws { imdsv2: false },
            false,
        )
        .unwrap();
    federated(&mut w, file);
    let e = sync_in(&store, &w.config, &[]).await.error.unwrap();
    assert!(
        e.starts_with("keyless Google credentials: the AWS metadata step failed (HTTP 401: ): ")
            && e.contains(
                "the file needs imdsv2_session_token_url (create-cred-config --enable-imdsv2)"
            ),
        "{e}"
    );
    no_aws_secret_in(&w.google, &e);
    assert_eq!(store.member_count(), 20);
}

/// A credential file whose `regional_cred_verification_url` is not AWS STS's
/// GetCallerIdentity is refused with a clear message before anything is read, signed or
/// sent: no metadata request, no STS exchange.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aws_verification_url_off_aws_sts_is_refused_before_anything_is_sent() {
    use fake_google::SubjectTokenSource;
    let (mut w, store) = federated_world(SubjectTokenSource::Aws { imdsv2: true }, false).await;
    let file = w
        .google
        .write_federation_file(
            w.dir.path(),
            SubjectTokenSource::Aws { imdsv2: true },
            false,
        )
        .unwrap();
    let text = std::fs::read_to_string(&file).unwrap().replace(
        "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity",
        "https://collector.evil.example?Action=GetCallerIdentity",
    );
    assert!(text.contains("evil.example"));
    std::fs::write(&file, text).unwrap();
    federated(&mut w, file);
    let (metadata, sts) = (w.google.requests("aws metadata"), w.google.requests("sts"));
    let e = sync_in(&store, &w.config, &[]).await.error.unwrap();
    assert!(
        e.contains("regional_cred_verification_url") && e.contains("sts[.REGION].amazonaws.com"),
        "{e}"
    );
    assert_eq!(
        (w.google.requests("aws metadata"), w.google.requests("sts")),
        (metadata, sts),
        "nothing was read or sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_credentials_from_the_environment_need_no_instance_metadata() {
    use fake_google::SubjectTokenSource;
    let (w, store) = federated_world(SubjectTokenSource::Aws { imdsv2: true }, false).await;
    let env = w.google.aws_user_environment();
    let r = sync_in(&store, &w.config, &env).await;
    assert_eq!(r.report.status, RunStatus::Ok, "{r:?}");
    assert_eq!(r.report.counts.created, 20);
    assert_eq!(
        (w.google.requests("aws metadata"), w.google.requests("sts")),
        (0, 1)
    );

    // Keys but no region: only the session token and the zone are asked for.
    let keys: Vec<(&str, String)> = env
        .iter()
        .filter(|(k, _)| *k != "AWS_REGION")
        .cloned()
        .collect();
    let r = sync_in(&store, &w.config, &keys).await;
    assert_eq!(r.report.status, RunStatus::Ok, "{r:?}");
    assert_eq!(w.google.requests("aws metadata"), 2);

    // A wrong secret key: the signature does not verify, the STS step says so, and
    // neither secret is in the message.
    let wrong: Vec<(&str, String)> = env
        .iter()
        .map(|(k, v)| match *k {
            "AWS_SECRET_ACCESS_KEY" => (*k, "not-the-secret-key-0123456789".to_string()),
            _ => (*k, v.clone()),
        })
        .collect();
    let e = sync_in(&store, &w.config, &wrong).await.error.unwrap();
    assert_eq!(
        e,
        "keyless Google credentials: the STS step failed (HTTP 400: {\"error\":\"invalid_grant\",\"error_description\":\"The request signature we calculated does not match the signature you provided.\"}): check the workload identity pool provider (audience, attribute conditions; for AWS, the account id) and that the subject token is current; nothing was written"
    );
    assert!(!e.contains("not-the-secret-key"));
    no_aws_secret_in(&w.google, &e);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impersonation_url_trades_the_federated_token_for_the_service_accounts() {
    use fake_google::SubjectTokenSource;
    let (w, store) = federated_world(SubjectTokenSource::File, true).await;
    let r = sync_in(&store, &w.config, &[]).await;
    assert_eq!(r.report.status, RunStatus::Ok, "{r:?}");
    assert_eq!(r.report.counts.created, 20);
    let g = &w.google;
    assert_eq!(
        (
            g.requests("sts"),
            g.requests("generateAccessToken"),
            g.requests("signJwt")
        ),
        (1, 1, 1)
    );
    // signJwt was called with the impersonated account's token, not the STS's.
    assert_eq!(g.last_sign_jwt_caller().as_deref(), Some("impersonated"));

    // The pool's principal may not impersonate the account.
    g.inject(Fault::KeylessRefuses("generateAccessToken"));
    let e = sync_in(&store, &w.config, &[]).await.error.unwrap();
    let sa = g.service_account();
    assert_eq!(
        e,
        format!("keyless Google credentials: the generateAccessToken step failed (HTTP 403: {{\"error\":{{\"code\":403,\"message\":\"Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist): projects/-/serviceAccounts/{sa}\",\"status\":\"PERMISSION_DENIED\"}}}}): grant the workload identity pool's principal roles/iam.workloadIdentityUser (any other caller: roles/iam.serviceAccountTokenCreator) on the service account in service_account_impersonation_url, and enable the IAM Service Account Credentials API; nothing was written")
    );
    assert_eq!(
        g.requests("signJwt"),
        1,
        "no signJwt without the account's token"
    );
}

/// `sync`, `sync user` and `sync approve` are one pipeline with a target: each runs, is
/// recorded under its kind, and stamps its record, its held set and each member it writes
/// with the `now` it was given (the clock is read once, by the caller).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_target_runs_the_one_pipeline_at_the_time_it_is_given() {
    let w = world(FakeSeed::sample(40, "example.com")).await;
    let store = Store::open(&w.config.store.path).unwrap();
    let ctx = context(&store, &w.config);
    let at = |day: u32| {
        use chrono::TimeZone;
        chrono::Utc.with_ymd_and_hms(2031, 1, day, 2, 0, 0).unwrap()
    };
    let opts = SyncOptions::default;
    let by_kind = |kind: &str, now| {
        let runs = store.sync_runs(10).unwrap();
        let run = runs.into_iter().find(|r| r.started == now).unwrap();
        assert_eq!(run.kind, kind);
        assert!(run.finished >= now && run.finished < now + chrono::Duration::hours(1));
        run
    };

    // Every user in scope.
    let r = reconcile::run(&ctx, Target::All, opts(), at(1))
        .await
        .unwrap();
    assert_eq!(
        (r.report.status, r.report.counts.created),
        (RunStatus::Ok, 40)
    );
    let first = r.report.run_id.clone().unwrap();
    assert!(first.as_str().starts_with("20310101T020000Z-"), "{first}");
    assert_eq!(by_kind("sync", at(1)).run_id, first);
    assert!(store.members().all(|m| m.unwrap().last_modified == at(1)));
    let entries = store.audit(&Default::default()).unwrap();
    assert_eq!(entries.len(), 40);
    assert!(entries.iter().all(|e| e.time == at(1)));

    // Past the guard: the deactivations are held, at the run's time.
    let active: Vec<_> = w
        .google
        .users()
        .into_iter()
        .filter(|u| !u.suspended && !u.archived)
        .collect();
    for u in active.iter().take(20) {
        w.google.delete(&u.primary_email).unwrap();
    }
    let r = reconcile::run(&ctx, Target::All, opts(), at(2))
        .await
        .unwrap();
    assert_eq!(
        (r.report.status, r.report.counts.held),
        (RunStatus::Held, 20)
    );
    let held = r.report.run_id.clone().unwrap();
    assert_eq!(store.held(&held).unwrap().unwrap().held_at, at(2));
    by_kind("sync", at(2));

    // One user: suspended in Google, deactivated at once; the guard does not apply.
    let one_user = &active[30].primary_email;
    w.google.suspend(one_user);
    let r = reconcile::run(&ctx, one(one_user), opts(), at(3))
        .await
        .unwrap();
    assert_eq!(
        (r.report.status, r.report.counts.deactivated),
        (RunStatus::Ok, 1)
    );
    by_kind("user", at(3));
    let m = store.get_by_user_name(one_user).unwrap().unwrap();
    assert!(!m.dir.active && m.last_modified == at(3));

    // The held run, approved.
    let r = reconcile::run(&ctx, Target::Approve(held.clone()), opts(), at(4))
        .await
        .unwrap();
    assert_eq!(
        (r.report.status, r.report.counts.deactivated),
        (RunStatus::Ok, 20)
    );
    by_kind("approve", at(4));
    assert!(store.held(&held).unwrap().is_none());
    let gone = store
        .get_by_user_name(&active[0].primary_email)
        .unwrap()
        .unwrap();
    assert!(!gone.dir.active && gone.last_modified == at(4));
    let kinds: Vec<_> = store
        .sync_runs(10)
        .unwrap()
        .into_iter()
        .map(|r| r.kind)
        .collect();
    assert_eq!(kinds, ["approve", "user", "sync", "sync"]);
}

/// A dry run has no run id and is never recorded, however it ends; its JSON still says
/// `"run_id": ""`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_has_no_run_id_and_is_never_recorded() {
    let mut w = world(FakeSeed::sample(10, "example.com")).await;
    let store = Store::open(&w.config.store.path).unwrap();
    let ctx = context(&store, &w.config);
    let r = pull(&ctx, Target::All, true).await.unwrap();
    assert_eq!(
        (r.report.run_id.as_ref(), r.report.counts.created),
        (None, 10)
    );
    assert_eq!(serde_json::to_value(&r.report).unwrap()["run_id"], "");
    let r = pull(&ctx, one(&w.google.users()[0].primary_email), true)
        .await
        .unwrap();
    assert_eq!(
        (r.report.run_id.as_ref(), r.report.counts.created),
        (None, 1)
    );
    // A dry run that fails before reading Google (no subject to act as) is still a dry run.
    w.config.google.subject = None;
    let ctx = context(&store, &w.config);
    let r = pull(&ctx, Target::All, true).await.unwrap();
    assert!(r.failed(), "{r:?}");
    assert_eq!(r.report.run_id, None);
    assert_eq!(r.changes, Some(Vec::new()));
    assert!(store.sync_runs(10).unwrap().is_empty(), "nothing recorded");
    assert_eq!(store.member_count(), 0);
}

/// Sets a member's locations, as its owner would.
fn set_locations(store: &Store, email: &str, locations: &[&str]) {
    let m = store.get_by_user_name(email).unwrap().unwrap();
    retrac_sync::owner::execute(
        store,
        retrac_sync::owner::Request::MembersLocations {
            who: m.id.to_string(),
            edit: retrac_sync::owner::LocationEdit::Set,
            locations: locations.iter().map(|l| l.to_string()).collect(),
        },
        chrono::Utc::now(),
    )
    .unwrap();
}

fn is_active(store: &Store, email: &str) -> bool {
    store.get_by_user_name(email).unwrap().unwrap().dir.active
}

/// Deleting a user is the usual offboarding step. For the 20 days in which it can be
/// restored, Google answers users.get with 412 conditionNotMet, not 404: the member must
/// lose access on the next run all the same, and come back, locations kept, when an admin
/// restores the user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_user_is_deactivated_at_once_and_restored_with_its_locations_after_an_undelete() {
    let w = world(FakeSeed::sample(40, "example.com")).await;
    let store = Store::open(&w.config.store.path).unwrap();
    let ctx = context(&store, &w.config);
    let g = &w.google;
    assert_eq!(sync(&ctx).await.report.status, RunStatus::Ok);
    let u = g
        .users()
        .into_iter()
        .find(|u| !u.suspended && !u.archived)
        .unwrap();
    set_locations(&store, &u.primary_email, &["Lyon", "Nantes"]);
    let member = store.get_by_user_name(&u.primary_email).unwrap().unwrap();

    g.delete(&u.primary_email).unwrap();
    let get = g.requests("users.get");
    let r = sync(&ctx).await;
    assert_eq!(
        (
            r.report.counts.deactivated,
            r.report.counts.errors,
            r.report.status
        ),
        (1, 0, RunStatus::Ok),
        "{r:?}"
    );
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(g.requests("users.get") - get, 1, "Google answered 412");
    assert!(!is_active(&store, &u.primary_email));

    // Restored by an admin: listed again with the same id, the member comes back as it was.
    assert!(g.undelete(&u.primary_email));
    let r = sync(&ctx).await;
    assert_eq!(
        (
            r.report.counts.updated,
            r.report.counts.created,
            r.report.counts.identity_changed
        ),
        (1, 0, 0),
        "{r:?}"
    );
    let back = store.get(member.id).unwrap().unwrap();
    assert!(back.dir.active);
    assert_eq!(back.dir.google_id, member.dir.google_id);
    assert_eq!(back.locations, ["Lyon", "Nantes"]);

    // Deleted again and past the 20 days: Google answers 404, still gone, and no undelete.
    g.delete(&u.primary_email).unwrap();
    g.advance_clock(std::time::Duration::from_secs(21 * 24 * 3600));
    let r = sync(&ctx).await;
    assert_eq!(
        (r.report.counts.deactivated, r.report.counts.errors),
        (1, 0),
        "{r:?}"
    );
    assert!(!g.undelete(&u.primary_email));
    all_active_mirrored(&store, g);
}

/// Google's derived group listing has returned too few members (GAM-team/GAM#1210): a
/// member a listing leaves out is asked about with members.hasMember before anything is
/// done, and stays active.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_member_missing_from_one_listing_is_left_active() {
    let mut w = world(FakeSeed::sample(200, "example.com")).await;
    scoped(&mut w.config);
    let store = Store::open(&w.config.store.path).unwrap();
    let ctx = context(&store, &w.config);
    let g = &w.google;
    let scope = |u: &FakeUser| in_scope(u, &groups());
    let first = sync(&ctx).await;
    assert_eq!(first.report.status, RunStatus::Ok, "{first:?}");
    assert_eq!(
        first.report.counts.nested_groups, 1,
        "kernel@ in engineering@"
    );
    let pick = |ou: &str| {
        g.users()
            .into_iter()
            .find(|u| u.org_unit_path == ou && scope(u) && !u.suspended && !u.archived)
            .unwrap()
            .primary_email
    };
    // A direct member of sales@, and a member of kernel@ (nested in engineering@).
    let direct = pick("/Sales");
    let nested = pick("/Engineering/Kernel");
    g.inject(Fault::OmitMember {
        group: "sales@example.com".into(),
        email: direct.clone(),
    });
    g.inject(Fault::OmitMember {
        group: "kernel@example.com".into(),
        email: nested.clone(),
    });
    let asked = g.requests("members.hasMember");
    let r = sync(&ctx).await;
    assert_eq!(r.report.status, RunStatus::Ok, "{r:?}");
    assert_eq!(
        (
            r.report.counts.deactivated,
            r.report.counts.verified_present,
            r.report.counts.errors
        ),
        (0, 2, 0),
        "{r:?}"
    );
    assert!(g.requests("members.hasMember") > asked);
    assert!(is_active(&store, &direct) && is_active(&store, &nested));
    g.clear_faults();

    // Really removed from the group (and in no scope org unit): hasMember says no, and the
    // member is deactivated.
    assert!(g.group_remove("sales@example.com", &direct));
    let r = sync(&ctx).await;
    assert_eq!(
        (
            r.report.counts.deactivated,
            r.report.counts.verified_present
        ),
        (1, 0),
        "{r:?}"
    );
    assert!(!is_active(&store, &direct));
}

/// members.hasMember cannot judge a membership nested across domains (Google answers 400
/// Invalid input): such a deactivation is skipped and reported, never made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_membership_has_member_cannot_check_skips_the_deactivation_and_says_why() {
    let mut seed = FakeSeed::sample(20, "example.com");
    seed.users
        .push(FakeUser::new("800", "zed@example.org", "Zed", "Other"));
    seed.groups.push(fake_google::FakeGroup {
        email: "staff@example.com".into(),
        members: vec![FakeMember::Group("team@example.com".into())],
    });
    seed.groups.push(fake_google::FakeGroup {
        email: "team@example.com".into(),
        members: vec![FakeMember::User("zed@example.org".into())],
    });
    let mut w = world(seed).await;
    w.config.google.domains = vec!["example.com".into(), "example.org".into()];
    w.config.scope.groups = vec!["staff@example.com".into()];
    let store = Store::open(&w.config.store.path).unwrap();
    let ctx = context(&store, &w.config);
    let r = sync(&ctx).await;
    assert_eq!(r.report.counts.created, 1, "{r:?}");
    w.google.inject(Fault::OmitMember {
        group: "team@example.com".into(),
        email: "zed@example.org".into(),
    });
    let r = sync(&ctx).await;
    assert_eq!(
        (r.report.counts.deactivated, r.report.counts.errors),
        (0, 1),
        "{r:?}"
    );
    assert_eq!(
        r.problems,
        ["zed@example.org: cannot check with Google that the user is gone (members.hasMember cannot tell whether zed@example.org is in staff@example.com: Google answers 400 Invalid input for a membership nested across domains); not deactivated, the next run takes it up"]
    );
    assert!(is_active(&store, "zed@example.org"));
}

/// An apostrophe is legal in a Google user name. The address is escaped in the narrowed
/// search (`email='o\'brien@example.com'`), where Google would refuse it bare.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o_brien_is_checked_under_a_query_like_anyone_else() {
    let mut seed = FakeSeed::sample(20, "example.com");
    seed.users.push(
        FakeUser::new("700", "o'brien@example.com", "Siobhan", "O'Brien").in_org_unit("/Sales"),
    );
    let mut w = world(seed).await;
    // Its familyName clause goes to Google's search; orgUnitPath is judged from users.get.
    w.config.scope.query = Some(r"orgUnitPath='/Sales' familyName='O\'Brien'".into());
    let store = Store::open(&w.config.store.path).unwrap();
    let ctx = context(&store, &w.config);
    let g = &w.google;
    let r = sync(&ctx).await;
    assert_eq!(
        (r.report.counts.created, r.report.status),
        (1, RunStatus::Ok),
        "{r:?}"
    );
    // The search index lags: the listing leaves the user out, the check finds it.
    g.inject(Fault::SearchLag("o'brien@example.com".into()));
    let r = sync(&ctx).await;
    assert_eq!(
        (
            r.report.counts.deactivated,
            r.report.counts.verified_present,
            r.report.counts.errors
        ),
        (0, 1, 0),
        "{r:?}"
    );
    let q = g.last_query("users.list").unwrap();
    assert!(
        q.contains(
            "query=familyName%3D%27O%5C%27Brien%27+email%3D%27o%5C%27brien%40example.com%27"
        ),
        "only the clause users.get cannot decide, and the escaped address: {q}"
    );
    assert!(is_active(&store, "o'brien@example.com"));
    // `sync user` for that address too.
    let r = pull(&ctx, one("o'brien@example.com"), false).await.unwrap();
    assert_eq!(
        (r.report.status, r.report.counts.unchanged),
        (RunStatus::Ok, 1),
        "{r:?}"
    );
    // Moved out of /Sales: judged from users.get, no search needed to deactivate.
    g.set_org_unit("o'brien@example.com", "/Support");
    let list = g.requests("users.list");
    let r = pull(&ctx, one("o'brien@example.com"), false).await.unwrap();
    assert_eq!(r.report.counts.deactivated, 1, "{r:?}");
    assert_eq!(g.requests("users.list"), list);
}

/// A 403 from users.get (a key outside the customer) is not proof that a user is gone: the
/// customer's deleted users are read once, and only an id listed there is deactivated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_403_from_users_get_deactivates_only_a_user_listed_as_deleted() {
    let w = world(FakeSeed::sample(30, "example.com")).await;
    let store = Store::open(&w.config.store.path).unwrap();
    let ctx = context(&store, &w.config);
    let g = &w.google;
    assert_eq!(sync(&ctx).await.report.status, RunStatus::Ok);
    let active: Vec<FakeUser> = g
        .users()
        .into_iter()
        .filter(|u| !u.suspended && !u.archived)
        .collect();
    let (deleted_a, deleted_b, moved) = (&active[0], &active[1], &active[2]);
    for u in [deleted_a, deleted_b] {
        g.delete(&u.primary_email).unwrap();
        g.inject(Fault::UsersGetForbidden(u.id.clone()));
    }
    g.move_to_other_customer(&moved.primary_email).unwrap();
    let list = g.requests("users.list");
    let r = sync(&ctx).await;
    assert_eq!(
        (r.report.counts.deactivated, r.report.counts.errors),
        (2, 1),
        "{r:?}"
    );
    assert_eq!(
        g.requests("users.list") - list,
        2,
        "the listing, and the deleted users once for three 403s"
    );
    assert_eq!(
        r.problems,
        [format!(
            "{}: cannot check with Google that the user is gone ({} is not in this Google customer, or the admin's role does not cover it (Google users.get answered 403 Not Authorized to access this resource/api)); not deactivated, the next run takes it up",
            moved.primary_email, moved.id
        )]
    );
    assert!(!is_active(&store, &deleted_a.primary_email));
    assert!(!is_active(&store, &deleted_b.primary_email));
    assert!(is_active(&store, &moved.primary_email));
}

/// Guest accounts (users.createGuest) are ordinary users to the Directory API: they are
/// left out of scope unless `[scope].include_guests`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_are_left_out_unless_included() {
    let mut seed = FakeSeed::sample(10, "example.com");
    let mut guest = FakeUser::new("600", "visitor@example.com", "Vi", "Sitor");
    guest.guest = true;
    seed.users.push(guest);
    let mut w = world(seed).await;
    let store = Store::open(&w.config.store.path).unwrap();
    let r = sync(&context(&store, &w.config)).await;
    assert_eq!(r.report.counts.created, 10, "{r:?}");
    assert!(store
        .get_by_user_name("visitor@example.com")
        .unwrap()
        .is_none());
    w.config.scope.include_guests = true;
    let r = sync(&context(&store, &w.config)).await;
    assert_eq!(r.report.counts.created, 1, "{r:?}");
    assert!(is_active(&store, "visitor@example.com"));
    // Excluded again: the guest's member is deactivated.
    w.config.scope.include_guests = false;
    let r = sync(&context(&store, &w.config)).await;
    assert_eq!(r.report.counts.deactivated, 1, "{r:?}");
}

/// A `work` address is free text Google does not verify. With `[google].domains` empty,
/// one is kept only in a domain that some user's primary address or alias uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_addresses_outside_the_listings_domains_are_left_out() {
    let mut seed = FakeSeed::sample(10, "example.com");
    let mut ada = FakeUser::new("500", "ada@example.com", "Ada", "Lovelace");
    ada.typed_emails = vec![
        ("ada.desk@example.com".into(), "work".into()),
        ("ada@partner.net".into(), "work".into()),
        ("ada@example.org".into(), "work".into()),
    ];
    seed.users.push(ada);
    let mut bob = FakeUser::new("501", "bob@example.com", "Bob", "Builder");
    bob.aliases = vec!["bob@example.org".into()];
    seed.users.push(bob);
    let mut w = world(seed).await;
    w.config.google.domains = Vec::new();
    let store = Store::open(&w.config.store.path).unwrap();
    let ctx = context(&store, &w.config);
    let r = sync(&ctx).await;
    assert_eq!(r.report.status, RunStatus::Ok, "{r:?}");
    let emails = |name: &str| -> Vec<String> {
        let m = store.get_by_user_name(name).unwrap().unwrap();
        m.dir.emails.iter().map(|e| e.value.clone()).collect()
    };
    // example.org is bob's alias domain; partner.net is nobody's.
    assert_eq!(
        emails("ada@example.com"),
        ["ada@example.com", "ada.desk@example.com", "ada@example.org"]
    );
    // One user at a time judges with the domains the last listing used.
    let r = pull(&ctx, one("ada@example.com"), false).await.unwrap();
    assert_eq!(r.report.counts.unchanged, 1, "{r:?}");
    assert_eq!(
        emails("ada@example.com"),
        ["ada@example.com", "ada.desk@example.com", "ada@example.org"]
    );
}
