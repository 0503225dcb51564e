//! What a run does with its verified plan: the mass-deactivation policy as one pure function.
//!
//! [`decide`] takes plain values (the kind of target, whether the run writes, the guard's
//! limits, the plan after verification and the deactivations left unchecked) and says what
//! to apply, what to hold for an owner's approval, what the run counts now, its status, and
//! what happens to the held sets afterwards. Nothing here reads a store, Google or a clock,
//! so each rule is tested with a table (`decide/tests.rs`). The two rules that act before
//! verification are here too: [`verification_cap`] (how many users a run may check) and
//! [`keep_approved`] (what an approval re-plans).

use std::collections::HashSet;

use super::guard::{self, Limits};
use super::plan::{Action, Plan, PlannedChange};
use crate::member::MemberId;
use crate::store::{RunCounts, RunStatus};

/// What kind of target a run reconciles, as its record names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetKind {
    /// Every user in scope (`sync`): the guard and the verification cap apply.
    All,
    /// One user (`sync user EMAIL`): an owner asked for it, so neither applies.
    User,
    /// The deactivations an earlier run held (`sync approve RUN_ID`): an owner approved
    /// them, so neither applies again.
    Approve,
}

impl TargetKind {
    /// The run's kind in its record (`sync status`).
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::All => "sync",
            TargetKind::User => "user",
            TargetKind::Approve => "approve",
        }
    }
}

/// The most users.get checks of absent users in one full run: `[sync].max_deactivations`
/// + 10. A user or an approval (an owner asked) checks them all: `None`.
pub fn verification_cap(kind: TargetKind, limits: &Limits) -> Option<usize> {
    (kind == TargetKind::All).then(|| max_checks(limits))
}

/// `[sync].max_deactivations` + 10, the cap of [`verification_cap`].
fn max_checks(limits: &Limits) -> usize {
    limits.max_deactivations as usize + 10
}

/// An approval applies only the deactivations its run held (`approved`) that the new plan
/// still wants; the rest of the plan is the next run's.
pub fn keep_approved(plan: &mut Plan, approved: &HashSet<MemberId>) {
    plan.changes.retain(|c| {
        c.action == Action::Deactivate && c.member.is_some_and(|m| approved.contains(&m))
    });
    plan.unchanged = 0;
}

/// What [`decide`] is given.
#[derive(Clone, Debug)]
pub struct Input {
    /// The kind of target.
    pub kind: TargetKind,
    /// A dry run: the plan is reported and nothing is written.
    pub dry_run: bool,
    /// The guard's limits.
    pub limits: Limits,
    /// The plan, after verification.
    pub plan: Plan,
    /// Deactivations past the verification cap, not checked with Google.
    pub unchecked: Vec<PlannedChange>,
    /// For an approval, how many deactivations its held set had (0 otherwise).
    pub approved: usize,
}

/// What happens to the stored held sets once the run has applied its changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Afterwards {
    /// Nothing (a one-user run, or a dry run).
    Nothing,
    /// A full run planned against the latest state: the sets earlier runs held are stale
    /// and only this run's (if any) is kept.
    SupersedeOlder,
    /// An approval applied its set: the set is removed.
    RemoveApproved,
}

/// What a run does with its plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// `ok`, or `held` when any deactivation waits for an owner.
    pub status: RunStatus,
    /// Why deactivations are held (the guard's reasons, then the verification cap's).
    pub reasons: Vec<String>,
    /// The changes to apply, in the plan's order (none for a dry run).
    pub apply: Vec<PlannedChange>,
    /// The deactivations to store as the run's held set (none for a dry run).
    pub hold: Vec<PlannedChange>,
    /// A dry run's report: the plan's changes, then the unchecked deactivations.
    pub report: Option<Vec<PlannedChange>>,
    /// What the run counts now: a dry run counts its plan as if applied; a run that writes
    /// counts the unchanged members, what it holds and what an approval skips (the changes
    /// it applies are counted as they are applied).
    pub counts: RunCounts,
    /// What happens to the held sets after the changes are applied.
    pub then: Afterwards,
}

/// Decides what a run does with its verified plan:
/// - only a full run (`All`) is held back by the guard's limits ([`guard::check`]); then
///   every deactivation of the plan is held, and creates and updates still go ahead;
/// - deactivations past the verification cap are held whatever the guard says, with a
///   reason of their own;
/// - a run with any reason is `held`, else `ok`;
/// - a dry run writes nothing: it reports the plan (the unchecked deactivations last) and
///   counts it as if applied, the held deactivations as held;
/// - an approval counts as skipped the held deactivations the new plan no longer wants;
/// - after applying, a full run supersedes the older held sets and an approval removes
///   its own.
pub fn decide(input: Input) -> Decision {
    let Input {
        kind,
        dry_run,
        limits,
        plan,
        unchecked,
        approved,
    } = input;
    let mut counts = RunCounts {
        skipped: approved.saturating_sub(plan.changes.len()) as u64,
        ..RunCounts::default()
    };
    let mut reasons = match kind {
        TargetKind::All => guard::check(&plan, &limits),
        TargetKind::User | TargetKind::Approve => Vec::new(),
    };
    let hold_deactivations = !reasons.is_empty();
    if !unchecked.is_empty() {
        reasons.push(format!(
            "{} more deactivations of users missing from the listing were not checked with users.get (at most [sync].max_deactivations + 10 = {} checks a run)",
            unchecked.len(),
            max_checks(&limits)
        ));
    }
    let status = if reasons.is_empty() {
        RunStatus::Ok
    } else {
        RunStatus::Held
    };
    counts.unchanged = plan.unchanged as u64;
    if dry_run {
        count_as_applied(&mut counts, &plan, hold_deactivations);
        counts.held += unchecked.len() as u64;
        let mut report = plan.changes;
        report.extend(unchecked);
        return Decision {
            status,
            reasons,
            apply: Vec::new(),
            hold: Vec::new(),
            report: Some(report),
            counts,
            then: Afterwards::Nothing,
        };
    }
    let (apply, mut hold): (Vec<_>, Vec<_>) = plan
        .changes
        .into_iter()
        .partition(|c| !hold_deactivations || c.action != Action::Deactivate);
    hold.extend(unchecked);
    counts.held = hold.len() as u64;
    Decision {
        status,
        reasons,
        apply,
        hold,
        report: None,
        counts,
        then: match kind {
            TargetKind::All => Afterwards::SupersedeOlder,
            TargetKind::Approve => Afterwards::RemoveApproved,
            TargetKind::User => Afterwards::Nothing,
        },
    }
}

/// Counts a dry run's plan as if it were applied, its deactivations as held when `held`.
fn count_as_applied(c: &mut RunCounts, plan: &Plan, held: bool) {
    c.created += plan.count(Action::Create) as u64;
    c.updated += plan.count(Action::Update) as u64;
    c.linked += plan.count(Action::Link) as u64;
    let d = plan.count(Action::Deactivate) as u64;
    if held {
        c.held += d;
    } else {
        c.deactivated += d;
    }
}

#[cfg(test)]
mod tests;
