//! The guard: a plan that would deactivate too many members has its deactivations held
//! until an owner approves them. Creates and updates still go ahead.

use serde::{Deserialize, Serialize};

use super::plan::{Action, Plan};
use crate::config::SyncConfig;

/// The limits, from `[sync]`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// More deactivations than this are held.
    pub max_deactivations: u32,
    /// More deactivations than this percentage of active managed members are held.
    pub max_deactivation_percent: f64,
}

impl Limits {
    /// The limits of a config.
    pub fn from_config(c: &SyncConfig) -> Limits {
        Limits {
            max_deactivations: c.max_deactivations,
            max_deactivation_percent: c.max_deactivation_percent,
        }
    }
}

/// Why deactivations are held; empty = they may go ahead.
pub fn check(plan: &Plan, limits: &Limits) -> Vec<String> {
    let d = plan.count(Action::Deactivate);
    let mut reasons = Vec::new();
    if d == 0 {
        return reasons;
    }
    if d > limits.max_deactivations as usize {
        reasons.push(format!(
            "{d} deactivations exceed [sync].max_deactivations = {}",
            limits.max_deactivations
        ));
    }
    let active = plan.active_now;
    if active > 0 && (d as f64) * 100.0 > limits.max_deactivation_percent * active as f64 {
        reasons.push(format!(
            "{d} deactivations are {:.1}% of {active} active managed members, over [sync].max_deactivation_percent = {}",
            d as f64 * 100.0 / active as f64,
            limits.max_deactivation_percent
        ));
    }
    if plan.active_after == 0 {
        reasons.push("the plan would leave no managed member active".into());
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member::{Change, MemberId};
    use crate::reconcile::plan::PlannedChange;

    fn plan_with(deactivations: usize, active_now: usize, active_after: usize) -> Plan {
        Plan {
            changes: (0..deactivations)
                .map(|i| PlannedChange {
                    action: Action::Deactivate,
                    user_name: format!("u{i}@example.com"),
                    member: None,
                    fields: vec![],
                    manages: false,
                    change: Change::Deactivate {
                        id: MemberId::new_random(),
                        expected_version: None,
                    },
                })
                .collect(),
            active_now,
            active_after,
            ..Plan::default()
        }
    }

    const DEFAULTS: Limits = Limits {
        max_deactivations: 25,
        max_deactivation_percent: 10.0,
    };

    #[test]
    fn within_the_limits_nothing_is_held() {
        assert!(check(&plan_with(0, 0, 0), &DEFAULTS).is_empty());
        assert!(check(&plan_with(10, 100, 90), &DEFAULTS).is_empty());
        assert!(check(&plan_with(25, 1000, 975), &DEFAULTS).is_empty());
    }

    #[test]
    fn the_count_the_percentage_and_an_empty_workspace_each_hold() {
        assert_eq!(check(&plan_with(26, 1000, 974), &DEFAULTS).len(), 1);
        let r = check(&plan_with(11, 100, 89), &DEFAULTS);
        assert!(r[0].contains("11.0% of 100"), "{r:?}");
        let r = check(&plan_with(1, 1, 0), &DEFAULTS);
        assert!(
            r.iter().any(|r| r.contains("no managed member active")),
            "{r:?}"
        );
        assert_eq!(check(&plan_with(60, 100, 40), &DEFAULTS).len(), 2);
    }
}
