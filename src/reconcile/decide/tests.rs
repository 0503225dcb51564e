use super::*;
use crate::member::{Change, DirectoryAttrs, ManagedBy, UserName};

const LIMITS: Limits = Limits {
    max_deactivations: 2,
    max_deactivation_percent: 50.0,
};

fn change(action: Action, i: usize) -> PlannedChange {
    let id = MemberId::new_random();
    let user_name = format!("u{i}@example.com");
    let change = match action {
        Action::Deactivate => Change::Deactivate {
            id,
            expected_version: None,
        },
        _ => Change::Create {
            attrs: DirectoryAttrs::new(UserName::parse(&user_name).unwrap(), None, None),
            managed_by: ManagedBy::Google,
        },
    };
    PlannedChange {
        action,
        user_name,
        member: (action != Action::Create).then_some(id),
        fields: Vec::new(),
        manages: false,
        change,
    }
}

/// A verified plan of `creates` creates, `updates` updates and `deactivations`
/// deactivations, over `active_now` active managed members; the plan leaves
/// `active_now - deactivations` of them active.
fn plan(creates: usize, updates: usize, deactivations: usize, active_now: usize) -> Plan {
    let mut changes = Vec::new();
    let mut i = 0;
    for (action, n) in [
        (Action::Update, updates),
        (Action::Create, creates),
        (Action::Deactivate, deactivations),
    ] {
        for _ in 0..n {
            changes.push(change(action, i));
            i += 1;
        }
    }
    Plan {
        changes,
        unchanged: 7,
        active_now,
        active_after: active_now - deactivations + creates,
        ..Plan::default()
    }
}

fn unchecked(n: usize) -> Vec<PlannedChange> {
    (100..100 + n)
        .map(|i| change(Action::Deactivate, i))
        .collect()
}

fn actions(changes: &[PlannedChange]) -> Vec<Action> {
    changes.iter().map(|c| c.action).collect()
}

use Action::{Create as C, Deactivate as D, Update as U};

/// One row: the run, and what it must decide.
struct Row {
    name: &'static str,
    kind: TargetKind,
    dry_run: bool,
    /// (creates, updates, deactivations, active managed members now)
    plan: (usize, usize, usize, usize),
    unchecked: usize,
    approved: usize,
    status: RunStatus,
    /// How many reasons, and a piece of each, in order.
    reasons: &'static [&'static str],
    apply: &'static [Action],
    hold: usize,
    report: Option<&'static [Action]>,
    /// (created, updated, deactivated, held, skipped, unchanged)
    counts: (u64, u64, u64, u64, u64, u64),
    then: Afterwards,
}

const ROWS: &[Row] = &[
    Row {
        name: "a full run within the limits applies everything and supersedes older held sets",
        kind: TargetKind::All,
        dry_run: false,
        plan: (1, 1, 2, 100),
        unchecked: 0,
        approved: 0,
        status: RunStatus::Ok,
        reasons: &[],
        apply: &[U, C, D, D],
        hold: 0,
        report: None,
        counts: (0, 0, 0, 0, 0, 7),
        then: Afterwards::SupersedeOlder,
    },
    Row {
        name: "at exactly max_deactivations nothing is held",
        kind: TargetKind::All,
        dry_run: false,
        plan: (0, 0, 2, 10),
        unchecked: 0,
        approved: 0,
        status: RunStatus::Ok,
        reasons: &[],
        apply: &[D, D],
        hold: 0,
        report: None,
        counts: (0, 0, 0, 0, 0, 7),
        then: Afterwards::SupersedeOlder,
    },
    Row {
        name: "one past max_deactivations holds every deactivation; creates and updates go ahead",
        kind: TargetKind::All,
        dry_run: false,
        plan: (1, 1, 3, 100),
        unchecked: 0,
        approved: 0,
        status: RunStatus::Held,
        reasons: &["3 deactivations exceed [sync].max_deactivations = 2"],
        apply: &[U, C],
        hold: 3,
        report: None,
        counts: (0, 0, 0, 3, 0, 7),
        then: Afterwards::SupersedeOlder,
    },
    Row {
        name: "over the percentage holds",
        kind: TargetKind::All,
        dry_run: false,
        plan: (0, 0, 2, 3),
        unchecked: 0,
        approved: 0,
        status: RunStatus::Held,
        reasons: &["66.7% of 3 active managed members"],
        apply: &[],
        hold: 2,
        report: None,
        counts: (0, 0, 0, 2, 0, 7),
        then: Afterwards::SupersedeOlder,
    },
    Row {
        name: "leaving no managed member active holds, whatever the other limits",
        kind: TargetKind::All,
        dry_run: false,
        plan: (0, 0, 1, 1),
        unchecked: 0,
        approved: 0,
        status: RunStatus::Held,
        reasons: &["100.0% of 1", "no managed member active"],
        apply: &[],
        hold: 1,
        report: None,
        counts: (0, 0, 0, 1, 0, 7),
        then: Afterwards::SupersedeOlder,
    },
    Row {
        name: "past the verification cap the unchecked are held with a reason of their own",
        kind: TargetKind::All,
        dry_run: false,
        plan: (1, 0, 1, 100),
        unchecked: 2,
        approved: 0,
        status: RunStatus::Held,
        reasons: &["2 more deactivations of users missing from the listing were not checked with users.get (at most [sync].max_deactivations + 10 = 12 checks a run)"],
        apply: &[C, D],
        hold: 2,
        report: None,
        counts: (0, 0, 0, 2, 0, 7),
        then: Afterwards::SupersedeOlder,
    },
    Row {
        name: "the guard's reasons come before the cap's, and both sets are held",
        kind: TargetKind::All,
        dry_run: false,
        plan: (0, 0, 3, 100),
        unchecked: 1,
        approved: 0,
        status: RunStatus::Held,
        reasons: &["exceed [sync].max_deactivations", "1 more deactivations"],
        apply: &[],
        hold: 4,
        report: None,
        counts: (0, 0, 0, 4, 0, 7),
        then: Afterwards::SupersedeOlder,
    },
    Row {
        name: "a dry run reports the plan, counts it as applied and writes nothing",
        kind: TargetKind::All,
        dry_run: true,
        plan: (1, 1, 2, 100),
        unchecked: 0,
        approved: 0,
        status: RunStatus::Ok,
        reasons: &[],
        apply: &[],
        hold: 0,
        report: Some(&[U, C, D, D]),
        counts: (1, 1, 2, 0, 0, 7),
        then: Afterwards::Nothing,
    },
    Row {
        name: "a held dry run counts its deactivations and the unchecked as held, listed last",
        kind: TargetKind::All,
        dry_run: true,
        plan: (1, 0, 3, 100),
        unchecked: 1,
        approved: 0,
        status: RunStatus::Held,
        reasons: &["exceed", "not checked"],
        apply: &[],
        hold: 0,
        report: Some(&[C, D, D, D, D]),
        counts: (1, 0, 0, 4, 0, 7),
        then: Afterwards::Nothing,
    },
    Row {
        name: "one user is never held by the guard, and touches no held set",
        kind: TargetKind::User,
        dry_run: false,
        plan: (0, 0, 1, 1),
        unchecked: 0,
        approved: 0,
        status: RunStatus::Ok,
        reasons: &[],
        apply: &[D],
        hold: 0,
        report: None,
        counts: (0, 0, 0, 0, 0, 7),
        then: Afterwards::Nothing,
    },
    Row {
        name: "a dry run of one user",
        kind: TargetKind::User,
        dry_run: true,
        plan: (1, 0, 0, 0),
        unchecked: 0,
        approved: 0,
        status: RunStatus::Ok,
        reasons: &[],
        apply: &[],
        hold: 0,
        report: Some(&[C]),
        counts: (1, 0, 0, 0, 0, 7),
        then: Afterwards::Nothing,
    },
    Row {
        name: "an approval is not held again, and removes its held set",
        kind: TargetKind::Approve,
        dry_run: false,
        plan: (0, 0, 5, 5),
        unchecked: 0,
        approved: 5,
        status: RunStatus::Ok,
        reasons: &[],
        apply: &[D, D, D, D, D],
        hold: 0,
        report: None,
        counts: (0, 0, 0, 0, 0, 7),
        then: Afterwards::RemoveApproved,
    },
    Row {
        name: "an approval skips the held deactivations the new plan no longer wants",
        kind: TargetKind::Approve,
        dry_run: false,
        plan: (0, 0, 2, 5),
        unchecked: 0,
        approved: 5,
        status: RunStatus::Ok,
        reasons: &[],
        apply: &[D, D],
        hold: 0,
        report: None,
        counts: (0, 0, 0, 0, 3, 7),
        then: Afterwards::RemoveApproved,
    },
];

#[test]
fn each_rule_of_the_table() {
    for row in ROWS {
        let (creates, updates, deactivations, active_now) = row.plan;
        let d = decide(Input {
            kind: row.kind,
            dry_run: row.dry_run,
            limits: LIMITS,
            plan: plan(creates, updates, deactivations, active_now),
            unchecked: unchecked(row.unchecked),
            approved: row.approved,
        });
        let name = row.name;
        assert_eq!(d.status, row.status, "{name}");
        assert_eq!(
            d.reasons.len(),
            row.reasons.len(),
            "{name}: {:?}",
            d.reasons
        );
        for (got, want) in d.reasons.iter().zip(row.reasons) {
            assert!(got.contains(want), "{name}: {got:?} lacks {want:?}");
        }
        assert_eq!(actions(&d.apply), row.apply, "{name}");
        assert_eq!(d.hold.len(), row.hold, "{name}");
        assert!(
            d.hold.iter().all(|c| c.action == Action::Deactivate),
            "{name}: only deactivations are held"
        );
        assert_eq!(
            d.report.as_deref().map(actions),
            row.report.map(<[_]>::to_vec),
            "{name}"
        );
        let c = &d.counts;
        assert_eq!(
            (
                c.created,
                c.updated,
                c.deactivated,
                c.held,
                c.skipped,
                c.unchanged
            ),
            row.counts,
            "{name}"
        );
        assert_eq!(d.then, row.then, "{name}");
    }
}

#[test]
fn the_held_set_is_the_guards_deactivations_then_the_unchecked() {
    let p = plan(0, 0, 3, 100);
    let guarded: Vec<_> = p.changes.iter().map(|c| c.member).collect();
    let late = unchecked(2);
    let late_ids: Vec<_> = late.iter().map(|c| c.member).collect();
    let d = decide(Input {
        kind: TargetKind::All,
        dry_run: false,
        limits: LIMITS,
        plan: p,
        unchecked: late,
        approved: 0,
    });
    let held: Vec<_> = d.hold.iter().map(|c| c.member).collect();
    assert_eq!(held, [guarded, late_ids].concat());
}

#[test]
fn only_a_full_run_has_a_verification_cap() {
    assert_eq!(verification_cap(TargetKind::All, &LIMITS), Some(12));
    let none = Limits {
        max_deactivations: 0,
        ..LIMITS
    };
    assert_eq!(verification_cap(TargetKind::All, &none), Some(10));
    assert_eq!(verification_cap(TargetKind::User, &LIMITS), None);
    assert_eq!(verification_cap(TargetKind::Approve, &LIMITS), None);
}

#[test]
fn an_approval_keeps_only_its_held_deactivations() {
    let mut p = plan(1, 1, 3, 100);
    let wanted: HashSet<MemberId> = p.changes[2..4].iter().filter_map(|c| c.member).collect();
    // An update of a held member is not a deactivation: it is the next run's.
    let update_of_held = p.changes[0].member.unwrap();
    let mut approved = wanted.clone();
    approved.insert(update_of_held);
    keep_approved(&mut p, &approved);
    assert_eq!(actions(&p.changes), [D, D]);
    assert!(p
        .changes
        .iter()
        .all(|c| wanted.contains(&c.member.unwrap())));
    assert_eq!(p.unchanged, 0, "the rest of the plan is the next run's");
}

#[test]
fn the_kinds_keep_their_names_in_the_record() {
    let names = [TargetKind::All, TargetKind::User, TargetKind::Approve].map(TargetKind::as_str);
    assert_eq!(names, ["sync", "user", "approve"]);
}
