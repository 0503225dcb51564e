//! The pull's mass-deactivation rules, driven through the in-memory directory
//! (`directory::memory`): no HTTP, a temporary store. What Google answers over HTTP (retries,
//! errors, paging tokens) is tested against the fake Google in `tests/it/pull_*.rs`.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};

use super::run::{run_with, SyncContext, SyncOptions, SyncOutcome, Target};
use crate::config::Config;
use crate::directory::memory::{user, Call, MemoryDirectory};
use crate::store::{RunStatus, Store};

/// A store in a temporary directory, a directory of `n` users (`u0@example.com`, id `g0`,
/// ...) in pages of 7, and a context with the guard's limits; the first full run has
/// created a member for each user.
struct World {
    _dir: tempfile::TempDir,
    store: Store,
    ctx: SyncContext,
    google: Arc<MemoryDirectory>,
    clock: u32,
}

fn email(i: usize) -> String {
    format!("u{i}@example.com")
}

impl World {
    async fn new(n: usize, max_deactivations: u32, max_percent: f64) -> World {
        World::with_config(
            n,
            |c| {
                c.sync.max_deactivations = max_deactivations;
                c.sync.max_deactivation_percent = max_percent;
            },
            |_| {},
        )
        .await
    }

    async fn with_config(
        n: usize,
        f: impl FnOnce(&mut Config),
        g: impl FnOnce(&MemoryDirectory),
    ) -> World {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let mut config = Config::default();
        f(&mut config);
        let ctx = SyncContext::new(store.clone(), config);
        let google = Arc::new(MemoryDirectory::new().with_page_sizes(7, 3));
        for i in 0..n {
            google.put_user(user(&format!("g{i}"), &email(i)));
        }
        g(&google);
        let mut w = World {
            _dir: dir,
            store,
            ctx,
            google,
            clock: 0,
        };
        let r = w.sync().await;
        assert_eq!(
            (r.report.status, r.report.counts.created),
            (RunStatus::Ok, n as u64),
            "{r:?}"
        );
        w
    }

    fn now(&mut self) -> DateTime<Utc> {
        self.clock += 1;
        Utc.with_ymd_and_hms(2026, 11, 1, 2, self.clock, 0).unwrap()
    }

    async fn run(&mut self, target: Target, dry_run: bool) -> SyncOutcome {
        let now = self.now();
        let opts = SyncOptions {
            dry_run,
            progress: None,
        };
        run_with(&self.ctx, &self.google, target, opts, now)
            .await
            .unwrap()
    }

    async fn sync(&mut self) -> SyncOutcome {
        self.run(Target::All, false).await
    }

    fn active(&self, i: usize) -> bool {
        self.store
            .get_by_user_name(&email(i))
            .unwrap()
            .unwrap()
            .dir
            .active
    }

    fn active_count(&self, n: usize) -> usize {
        (0..n).filter(|&i| self.active(i)).count()
    }

    /// The held sets: (run id, members held), oldest first.
    fn held(&self) -> Vec<(String, usize)> {
        let mut all: Vec<_> = self
            .store
            .held_all()
            .unwrap()
            .into_iter()
            .map(|h| (h.run_id.to_string(), h.changes.len()))
            .collect();
        all.sort();
        all
    }
}

/// The guard, table-driven: 20 members, `gone` of them removed from Google (users.get: 404).
/// Past `[sync].max_deactivations` or `max_deactivation_percent` the deactivations are held
/// (and stored as a held set) and nobody is deactivated; within them they are applied.
#[tokio::test]
async fn the_guard_holds_deactivations_over_its_limits_and_stores_the_held_set() {
    struct Case {
        max: u32,
        percent: f64,
        gone: usize,
        held: bool,
        reason: &'static str,
    }
    let cases = [
        Case {
            max: 25,
            percent: 10.0,
            gone: 2,
            held: false,
            reason: "",
        },
        Case {
            max: 25,
            percent: 10.0,
            gone: 3,
            held: true,
            reason: "max_deactivation_percent",
        },
        Case {
            max: 2,
            percent: 100.0,
            gone: 2,
            held: false,
            reason: "",
        },
        Case {
            max: 2,
            percent: 100.0,
            gone: 3,
            held: true,
            reason: "max_deactivations = 2",
        },
        Case {
            max: 25,
            percent: 100.0,
            gone: 20,
            held: true,
            reason: "no managed member active",
        },
    ];
    for c in cases {
        let name = format!("max {} / {}%, {} gone", c.max, c.percent, c.gone);
        let mut w = World::new(20, c.max, c.percent).await;
        for i in 0..c.gone {
            w.google.remove_user(&email(i)).unwrap();
        }
        let r = w.sync().await;
        let counts = &r.report.counts;
        if c.held {
            assert_eq!(r.report.status, RunStatus::Held, "{name}: {r:?}");
            assert_eq!(
                (counts.held, counts.deactivated),
                (c.gone as u64, 0),
                "{name}"
            );
            assert!(
                r.held_reasons.iter().any(|h| h.contains(c.reason)),
                "{name}: {r:?}"
            );
            let run_id = r.report.run_id.clone().unwrap();
            assert_eq!(w.held(), [(run_id.to_string(), c.gone)], "{name}");
            let held = w.store.held(&run_id).unwrap().unwrap();
            assert_eq!(
                held.held_at,
                Utc.with_ymd_and_hms(2026, 11, 1, 2, 2, 0).unwrap()
            );
            assert_eq!(w.active_count(20), 20, "{name}: nobody deactivated");
        } else {
            assert_eq!(r.report.status, RunStatus::Ok, "{name}: {r:?}");
            assert_eq!(
                (counts.held, counts.deactivated),
                (0, c.gone as u64),
                "{name}"
            );
            assert!(w.held().is_empty(), "{name}");
            assert_eq!(w.active_count(20), 20 - c.gone, "{name}");
        }
        // Every deactivation was checked with users.get first.
        assert_eq!(w.google.calls(Call::UsersGet), c.gone, "{name}");
    }
}

/// `sync approve` re-plans against Google as it is now: the held deactivations it still
/// wants are applied, one whose user came back is skipped, and the held set is removed.
#[tokio::test]
async fn an_approval_applies_the_held_deactivations_that_are_still_wanted() {
    let mut w = World::new(20, 2, 100.0).await;
    let back = w.google.remove_user(&email(0)).unwrap();
    for i in 1..4 {
        w.google.remove_user(&email(i)).unwrap();
    }
    let r = w.sync().await;
    assert_eq!(r.report.status, RunStatus::Held, "{r:?}");
    let held = r.report.run_id.unwrap();
    // u0 comes back, u4 leaves: the approval applies only what its run held.
    w.google.put_user(back);
    w.google.remove_user(&email(4)).unwrap();
    let r = w.run(Target::Approve(held.clone()), false).await;
    assert_eq!(r.report.status, RunStatus::Ok, "{r:?}");
    let c = &r.report.counts;
    assert_eq!((c.deactivated, c.skipped, c.held), (3, 1, 0), "{r:?}");
    assert!(w.active(0), "came back before the approval");
    assert!(!w.active(1) && !w.active(2) && !w.active(3));
    assert!(w.active(4), "not held by the approved run");
    assert!(w.store.held(&held).unwrap().is_none());
    // Approving it again: there is nothing to approve.
    let again = run_with(
        &w.ctx,
        &w.google,
        Target::Approve(held),
        SyncOptions::default(),
        Utc::now(),
    )
    .await;
    assert!(
        matches!(again, Err(super::SyncError::UnknownRun(_))),
        "{again:?}"
    );
}

/// The verification step, table-driven: a user missing from the listing is asked about
/// with users.get (and, after a 403, the deleted users) before its member is deactivated.
#[tokio::test]
async fn a_member_missing_from_the_listing_is_deactivated_only_when_google_says_it_is_gone() {
    type Setup = fn(&MemoryDirectory);
    struct Case {
        name: &'static str,
        setup: Setup,
        deactivated: bool,
        verified_present: u64,
        errors: u64,
    }
    let cases: [Case; 6] = [
        Case {
            name: "the search index lags: users.get finds it",
            setup: |g| g.lag("g5", true),
            deactivated: false,
            verified_present: 1,
            errors: 0,
        },
        Case {
            name: "removed: 404",
            setup: |g| drop(g.remove_user("g5")),
            deactivated: true,
            verified_present: 0,
            errors: 0,
        },
        Case {
            name: "deleted: 412, and listed among the deleted",
            setup: |g| assert!(g.delete_user("g5")),
            deactivated: true,
            verified_present: 0,
            errors: 0,
        },
        Case {
            name: "suspended and lagging: users.get says suspended",
            setup: |g| {
                g.lag("g5", true);
                g.suspend_user("g5", true);
            },
            deactivated: true,
            verified_present: 0,
            errors: 0,
        },
        Case {
            name: "403 and not among the deleted: cannot check",
            setup: |g| {
                g.lag("g5", true);
                g.forbid("g5");
            },
            deactivated: false,
            verified_present: 0,
            errors: 1,
        },
        Case {
            name: "users.get still failing after its retries: cannot check",
            setup: |g| {
                g.lag("g5", true);
                g.fail(Call::UsersGet, 0);
            },
            deactivated: false,
            verified_present: 0,
            errors: 1,
        },
    ];
    for c in cases {
        let mut w = World::new(20, 25, 10.0).await;
        (c.setup)(&w.google);
        let r = w.sync().await;
        let counts = &r.report.counts;
        assert_eq!(r.report.status, RunStatus::Ok, "{}: {r:?}", c.name);
        assert_eq!(w.active(5), !c.deactivated, "{}: {r:?}", c.name);
        assert_eq!(counts.deactivated, c.deactivated as u64, "{}", c.name);
        assert_eq!(counts.verified_present, c.verified_present, "{}", c.name);
        assert_eq!(counts.errors, c.errors, "{}: {r:?}", c.name);
        if c.errors > 0 {
            assert!(
                r.problems
                    .iter()
                    .any(|p| p.contains("u5@example.com") && p.contains("cannot check")),
                "{}: {r:?}",
                c.name
            );
        }
        assert_eq!(
            w.active_count(20),
            20 - c.deactivated as usize,
            "{}",
            c.name
        );
    }
}

/// A member in scope through a group that the group listing misses is asked about with
/// members.hasMember (which covers nested groups): found, it stays; Google cannot tell, it
/// is not deactivated and the run says why; not a member, it is deactivated.
#[tokio::test]
async fn a_group_member_missing_from_the_listing_is_checked_with_has_member() {
    for (name, answer, active, verified, errors) in [
        ("still a member (nested)", "nested", true, 1, 1),
        ("cannot tell", "cannot", true, 0, 1),
        ("left the group", "left", false, 0, 0),
    ] {
        let all: Vec<String> = (0..6).map(email).collect();
        let mut w = World::with_config(
            6,
            |c| {
                c.scope.groups = vec!["staff@example.com".into()];
                c.sync.max_deactivation_percent = 100.0;
            },
            |g| {
                g.set_group(
                    "staff@example.com",
                    &all.iter().map(String::as_str).collect::<Vec<_>>(),
                )
            },
        )
        .await;
        // u2 leaves the direct listing.
        w.google
            .remove_member("staff@example.com", "u2@example.com");
        match answer {
            // Still in through a nested group outside the customer, which members.list
            // cannot read (reported: one error) but members.hasMember sees through.
            "nested" => {
                w.google
                    .add_member("staff@example.com", "partners@example.org");
                w.google
                    .set_group("partners@example.org", &["u2@example.com"]);
                w.google.unreadable("partners@example.org");
            }
            "cannot" => w.google.cannot_tell("staff@example.com"),
            _ => {}
        }
        let r = w.sync().await;
        assert_eq!(r.report.status, RunStatus::Ok, "{name}: {r:?}");
        assert_eq!(w.active(2), active, "{name}: {r:?}");
        assert_eq!(r.report.counts.verified_present, verified, "{name}: {r:?}");
        assert_eq!(r.report.counts.errors, errors, "{name}: {r:?}");
        assert_eq!(w.google.calls(Call::HasMember), 1, "{name}");
        assert_eq!(w.active_count(6), 5 + active as usize, "{name}");
    }
}

/// The verification cap: a full run checks at most `[sync].max_deactivations` + 10 users
/// with users.get; the deactivations past it are held unchecked, with the reason.
#[tokio::test]
async fn past_the_verification_cap_deactivations_are_held_unchecked() {
    let mut w = World::new(20, 1, 100.0).await;
    for i in 0..13 {
        w.google.remove_user(&email(i)).unwrap();
    }
    let r = w.sync().await;
    assert_eq!(r.report.status, RunStatus::Held, "{r:?}");
    assert_eq!(
        w.google.calls(Call::UsersGet),
        11,
        "max_deactivations + 10 checks"
    );
    assert_eq!((r.report.counts.held, r.report.counts.deactivated), (13, 0));
    assert!(
        r.held_reasons
            .iter()
            .any(|h| h.contains("2 more deactivations") && h.contains("= 11 checks")),
        "{r:?}"
    );
    assert_eq!(w.held().len(), 1);
    assert_eq!(w.held()[0].1, 13);
    assert_eq!(w.active_count(20), 20);
}

/// A dry run plans (guard and verification included) and writes nothing: no member, no
/// held set, no run record.
#[tokio::test]
async fn a_dry_run_writes_nothing() {
    let mut w = World::new(20, 2, 100.0).await;
    for i in 0..3 {
        w.google.remove_user(&email(i)).unwrap();
    }
    w.google.put_user(user("new", "new@example.com"));
    let runs = w.store.sync_runs(100).unwrap().len();
    let r = w.run(Target::All, true).await;
    assert_eq!(r.report.run_id, None);
    assert_eq!(r.report.status, RunStatus::Held, "{r:?}");
    let c = &r.report.counts;
    assert_eq!((c.created, c.held, c.deactivated), (1, 3, 0), "{r:?}");
    assert_eq!(r.changes.as_ref().map(Vec::len), Some(4));
    assert!(w.held().is_empty());
    assert_eq!(w.store.sync_runs(100).unwrap().len(), runs);
    assert_eq!(w.active_count(20), 20);
    assert!(w
        .store
        .get_by_user_name("new@example.com")
        .unwrap()
        .is_none());
}

/// A later full run supersedes the sets earlier runs held: only its own is kept, and a run
/// with nothing to hold removes them all.
#[tokio::test]
async fn a_later_full_run_supersedes_older_held_sets() {
    let mut w = World::new(20, 2, 100.0).await;
    let gone: Vec<_> = (0..3)
        .map(|i| w.google.remove_user(&email(i)).unwrap())
        .collect();
    let first = w.sync().await.report.run_id.unwrap();
    assert_eq!(w.held(), [(first.to_string(), 3)]);
    w.google.remove_user(&email(3)).unwrap();
    let second = w.sync().await.report.run_id.unwrap();
    assert_eq!(
        w.held(),
        [(second.to_string(), 4)],
        "the first set is superseded"
    );
    // A one-user run holds nothing and supersedes nothing.
    let r = w
        .run(
            Target::User(crate::member::UserName::parse("u5@example.com").unwrap()),
            false,
        )
        .await;
    assert_eq!(r.report.status, RunStatus::Ok, "{r:?}");
    assert_eq!(w.held(), [(second.to_string(), 4)]);
    // Everyone is back: nothing to hold, and the held set is stale.
    for u in gone {
        w.google.put_user(u);
    }
    w.google.put_user(user("g3", &email(3)));
    let r = w.sync().await;
    assert_eq!(
        (r.report.status, r.report.counts.deactivated),
        (RunStatus::Ok, 0),
        "{r:?}"
    );
    assert!(w.held().is_empty());
    assert_eq!(w.active_count(20), 20);
}

/// A listing that fails (a users page, a scope group's members) fails the run before any
/// write: no member created or deactivated, no held set, a failed record.
#[tokio::test]
async fn a_failed_read_fails_the_run_before_any_write() {
    // The second users page, the scope group's first members page.
    for (call, from) in [(Call::UsersList, 1), (Call::MembersList, 0)] {
        let name = format!("{call:?} failing from call {from}");
        let mut w = World::with_config(
            20,
            |c| {
                c.scope.groups = vec!["staff@example.com".into()];
                c.sync.max_deactivations = 100;
                c.sync.max_deactivation_percent = 100.0;
            },
            |g| {
                let all: Vec<String> = (0..20).map(email).collect();
                g.set_group(
                    "staff@example.com",
                    &all.iter().map(String::as_str).collect::<Vec<_>>(),
                );
            },
        )
        .await;
        // Changes waiting: one user to create, one to deactivate.
        w.google.put_user(user("new", "new@example.com"));
        w.google.add_member("staff@example.com", "new@example.com");
        w.google.remove_user(&email(0)).unwrap();
        w.google.fail(call, w.google.calls(call) + from);
        let r = w.sync().await;
        assert_eq!(r.report.status, RunStatus::Failed, "{name}: {r:?}");
        assert!(
            r.error
                .as_deref()
                .is_some_and(|e| e.contains("nothing was written")),
            "{name}: {r:?}"
        );
        assert_eq!(w.google.calls(Call::UsersGet), 0, "{name}: no check either");
        let c = &r.report.counts;
        assert_eq!(
            (c.created, c.deactivated, c.held),
            (0, 0, 0),
            "{name}: {r:?}"
        );
        assert!(
            w.store
                .get_by_user_name("new@example.com")
                .unwrap()
                .is_none(),
            "{name}"
        );
        assert_eq!(w.active_count(20), 20, "{name}");
        assert!(w.held().is_empty(), "{name}");
        let run_id = r.report.run_id.unwrap();
        assert_eq!(
            w.store.sync_run(&run_id).unwrap().unwrap().status,
            RunStatus::Failed,
            "{name}"
        );
    }
}
