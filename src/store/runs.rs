//! Sync run records and held deactivations, in the `sync_runs` and `held_changes` trees.
//!
//! Run ids start with the UTC start time, so the keys sort in time order.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};
use crate::member::MemberId;

/// How many run records are kept; older ones are pruned.
const KEEP_RUNS: usize = 1000;

pub use crate::member::RunId;
use crate::member::RUN_ID_TIME;

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Every change applied (refusals are counted in `errors`/`skipped`).
    Ok,
    /// Creates and updates applied; deactivations held for approval.
    Held,
    /// Nothing written by this run after its failure point (a fetch failure writes nothing).
    Failed,
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RunStatus::Ok => "ok",
            RunStatus::Held => "held",
            RunStatus::Failed => "failed",
        })
    }
}

/// The counts of a run; serialized with the keys of `sync --json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCounts {
    /// Members created.
    pub created: u64,
    /// Members updated (renames, names, reactivations, relinks).
    pub updated: u64,
    /// Members made inactive.
    pub deactivated: u64,
    /// Members linked to their Google user.
    pub linked: u64,
    /// Members that already agreed.
    pub unchanged: u64,
    /// Deactivations held for approval.
    pub held: u64,
    /// Changes skipped because the member changed since the plan (taken up next run).
    pub skipped: u64,
    /// Changes refused, and Google users that could not be provisioned.
    pub errors: u64,
    /// Members revived or relinked to a different Google id: the owner's grants (role,
    /// locations) were removed, and the audit entry lists them.
    #[serde(default)]
    pub identity_changed: u64,
    /// Members missing from Google's listing that users.get found active and in scope:
    /// left as they were.
    #[serde(default)]
    pub verified_present: u64,
    /// Nested groups read under the scope groups.
    #[serde(default)]
    pub nested_groups: u64,
}

impl RunCounts {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &RunCounts) {
        self.created += other.created;
        self.updated += other.updated;
        self.deactivated += other.deactivated;
        self.linked += other.linked;
        self.unchanged += other.unchanged;
        self.held += other.held;
        self.skipped += other.skipped;
        self.errors += other.errors;
        self.identity_changed += other.identity_changed;
        self.verified_present += other.verified_present;
        self.nested_groups += other.nested_groups;
    }
}

/// One recorded run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyncRun {
    /// The run id (also the audit actor: `pull:RUN_ID`).
    pub run_id: RunId,
    /// `sync`, `user`, or `approve`.
    pub kind: String,
    /// When it started (the run id starts with it too).
    pub started: DateTime<Utc>,
    /// When it ended, whether it succeeded or not.
    pub finished: DateTime<Utc>,
    /// Whether it applied everything, held deactivations, or failed.
    pub status: RunStatus,
    /// What it did, at the record's top level (the keys of `sync --json`).
    #[serde(flatten)]
    pub counts: RunCounts,
    /// Directory API requests made.
    pub google_requests: u64,
    /// Why it failed.
    pub error: Option<String>,
    /// Individual refusals and problems (at most 50).
    #[serde(default)]
    pub problems: Vec<String>,
    /// Why deactivations were held.
    #[serde(default)]
    pub held_reasons: Vec<String>,
}

/// Deactivations held by a run, waiting for `sync approve` or `sync discard`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeldSet {
    /// The run that held them.
    pub run_id: RunId,
    /// When the run held them; `sync status` shows their age from it.
    pub held_at: DateTime<Utc>,
    /// The guard's reasons, one per limit passed, as `sync status` shows them.
    pub reasons: Vec<String>,
    /// The deactivations as planned.
    pub changes: Vec<HeldDeactivation>,
}

/// One held deactivation: the member, and its user name for `sync status`. That is all an
/// approval reads (it plans again against the directory as it is then).
///
/// The store keeps its own record rather than the planner's change, so that renaming a
/// field of the plan cannot make every stored held set unreadable. Sets held by earlier
/// versions stored the whole planned change, whose JSON has these two keys among others;
/// serde ignores the others, so those sets still read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldDeactivation {
    /// The member to deactivate.
    pub member: MemberId,
    /// Its user name when the run held it.
    pub user_name: String,
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

impl Store {
    /// A new run id: the start time and a sequence number, sortable.
    pub fn new_run_id(&self, now: DateTime<Utc>) -> Result<RunId, StoreError> {
        let id = format!(
            "{}-{:06}",
            now.format(RUN_ID_TIME),
            self.generate_id()? % 1_000_000
        );
        RunId::parse(&id).map_err(StoreError::Internal)
    }

    /// Records (or rewrites) a run, pruning the oldest beyond the last 1000.
    pub fn put_sync_run(&self, run: &SyncRun) -> Result<(), StoreError> {
        let tree = self.sync_runs_tree();
        self.io_checked(tree.insert(run.run_id.as_str().as_bytes(), encode(run)?))?;
        while tree.len() > KEEP_RUNS {
            match tree.pop_min()? {
                Some(_) => {}
                None => break,
            }
        }
        Ok(())
    }

    /// The most recent runs, newest first.
    pub fn sync_runs(&self, limit: usize) -> Result<Vec<SyncRun>, StoreError> {
        let mut out = Vec::new();
        for kv in self.sync_runs_tree().iter().rev().take(limit) {
            let (_, v) = kv?;
            out.push(decode("sync run", &v)?);
        }
        Ok(out)
    }

    /// One run by id.
    pub fn sync_run(&self, run_id: &RunId) -> Result<Option<SyncRun>, StoreError> {
        self.sync_runs_tree()
            .get(run_id.as_str().as_bytes())?
            .map(|v| decode("sync run", &v))
            .transpose()
    }

    /// Stores the deactivations a run held.
    ///
    /// With the set, the outbox gets a `sync.deactivations_held` event (so that someone
    /// approves them), in the same transaction.
    pub fn put_held(&self, held: &HeldSet) -> Result<(), StoreError> {
        let bytes = encode(held)?;
        let data = serde_json::json!({
            "runId": held.run_id.as_str(),
            "held": held.changes.len(),
            "reasons": held.reasons,
        });
        self.transact_side(self.held_changes_tree(), |tx| {
            tx.tree
                .insert(held.run_id.as_str().as_bytes(), bytes.as_slice())?;
            tx.append_event(&super::NewEvent {
                event_type: crate::events::EventType::SyncDeactivationsHeld,
                time: held.held_at,
                actor: format!("pull:{}", held.run_id.as_str()),
                changed: Vec::new(),
                member: None,
                data: Some(data.clone()),
            })
        })
    }

    /// The deactivations a run held.
    pub fn held(&self, run_id: &RunId) -> Result<Option<HeldSet>, StoreError> {
        self.held_changes_tree()
            .get(run_id.as_str().as_bytes())?
            .map(|v| decode("held changes", &v))
            .transpose()
    }

    /// Every held set, oldest first.
    pub fn held_all(&self) -> Result<Vec<HeldSet>, StoreError> {
        let mut out = Vec::new();
        for kv in self.held_changes_tree().iter() {
            let (_, v) = kv?;
            out.push(decode("held changes", &v)?);
        }
        Ok(out)
    }

    /// Drops a held set; returns it if it was there.
    pub fn remove_held(&self, run_id: &RunId) -> Result<Option<HeldSet>, StoreError> {
        self.io_checked(self.held_changes_tree().remove(run_id.as_str().as_bytes()))?
            .map(|v| decode("held changes", &v))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member::Change;
    use crate::reconcile::plan::{Action, PlannedChange};

    /// Sets held by earlier versions stored the planner's whole change; they still read,
    /// as the store's own record, so an upgrade keeps every held deactivation.
    #[test]
    fn a_held_set_stored_as_planned_changes_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let member = MemberId::new_random();
        let old = serde_json::json!({
            "run_id": "20261101T020000Z-000042",
            "held_at": "2026-11-01T02:00:00Z",
            "reasons": ["would deactivate 2 of 3"],
            "changes": [PlannedChange {
                action: Action::Deactivate,
                user_name: "ada@example.com".into(),
                member: Some(member),
                fields: vec![crate::member::Field::Active],
                manages: false,
                change: Change::Deactivate { id: member, expected_version: Some(3) },
            }],
        });
        store
            .held_changes_tree()
            .insert(
                b"20261101T020000Z-000042",
                serde_json::to_vec(&old).unwrap(),
            )
            .unwrap();
        let id = RunId::parse("20261101T020000Z-000042").unwrap();
        let held = store.held(&id).unwrap().unwrap();
        assert_eq!(
            held.changes,
            [HeldDeactivation {
                member,
                user_name: "ada@example.com".into()
            }]
        );
        // And the store's own record round-trips.
        store.put_held(&held).unwrap();
        assert_eq!(store.held_all().unwrap(), [held]);
    }

    #[test]
    fn run_ids_are_checked_when_read_and_the_stores_own_parse() {
        assert!(RunId::parse("20261101T020000Z-000042").is_ok());
        for bad in [
            "",
            "no-such-run",
            "20261101T020000Z",
            "20261101T020000Z-42",
            "20261341T020000Z-000042",
            "20261101T020000Z-00004x",
        ] {
            assert!(RunId::parse(bad).is_err(), "{bad}");
            assert!(
                serde_json::from_value::<RunId>(bad.into()).is_err(),
                "{bad}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let made = store.new_run_id(Utc::now()).unwrap();
        assert_eq!(RunId::parse(made.as_str()), Ok(made.clone()));
        // On the wire and on disk it is the plain string.
        let wire = serde_json::to_value(&made).unwrap();
        assert_eq!(wire, serde_json::Value::String(made.to_string()));
        assert_eq!(serde_json::from_value::<RunId>(wire).unwrap(), made);
    }
}
