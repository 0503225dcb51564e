//! The audit log: one entry per applied change, in time order.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::member::{Actor, ChangeKind, MemberId};

/// One applied change: who, when, which member, and the changed fields before and after.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Unique, growing sequence number.
    pub seq: u64,
    /// When the change was applied.
    pub time: DateTime<Utc>,
    /// Who asked for it.
    pub actor: Actor,
    /// Which member.
    pub member_id: MemberId,
    /// The member's user name after the change.
    pub user_name: String,
    /// What the change did.
    pub change: ChangeKind,
    /// The changed fields before (absent for a create).
    pub before: BTreeMap<String, serde_json::Value>,
    /// The changed fields after.
    pub after: BTreeMap<String, serde_json::Value>,
}

/// Which audit entries to read.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    /// Only this member's entries.
    pub member: Option<MemberId>,
    /// Only entries at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// At most this many, the most recent ones.
    pub limit: Option<usize>,
}

/// The key of an entry: time in microseconds then the sequence, both big endian.
pub(super) fn key(time: DateTime<Utc>, seq: u64) -> [u8; 16] {
    let micros = time.timestamp_micros().max(0) as u64;
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&micros.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Reads audit entries, newest first, so `limit` keeps the most recent ones.
///
/// Every key holds the entries of one transaction, which share one time (the key's), so
/// the walk stops at the first key older than `since`. A member's entries are found by
/// scanning: a group is decoded only if its bytes hold the member's id.
pub(super) fn query(audit: &sled::Tree, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
    let start = q.since.map(|t| key(t, 0)).unwrap_or([0u8; 16]);
    let limit = q.limit.unwrap_or(usize::MAX);
    let member = q.member.map(|id| id.to_string());
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    for kv in audit.range(start..).rev() {
        let (_, v) = kv?;
        if let Some(id) = &member {
            if !contains(&v, id.as_bytes()) {
                continue;
            }
        }
        for entry in decode_group(&v)?.into_iter().rev() {
            if q.member.is_some_and(|id| entry.member_id != id)
                || q.since.is_some_and(|t| entry.time < t)
            {
                continue;
            }
            out.push(entry);
            if out.len() >= limit {
                out.reverse();
                return Ok(out);
            }
        }
    }
    out.reverse();
    Ok(out)
}

/// The entries under one key: a JSON array (schema 2), or one entry (schema 1).
fn decode_group(bytes: &[u8]) -> Result<Vec<AuditEntry>, StoreError> {
    let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("audit entry: {e}"));
    if bytes.first() == Some(&b'[') {
        serde_json::from_slice(bytes).map_err(corrupt)
    } else {
        serde_json::from_slice::<AuditEntry>(bytes)
            .map(|e| vec![e])
            .map_err(corrupt)
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// For every member whose `externalId` an audit entry set, whether the last such entry was
/// the pull's (schemas 1 and 2 kept the Google id and SCIM's `externalId` in that one field).
/// Read once, by the upgrade to schema 3, in key (time) order.
pub(super) fn external_id_setters(
    audit: &sled::Tree,
) -> Result<std::collections::HashMap<MemberId, bool>, StoreError> {
    let mut out = std::collections::HashMap::new();
    for kv in audit.iter() {
        let (_, v) = kv?;
        if !contains(&v, b"\"externalId\"") {
            continue;
        }
        for entry in decode_group(&v)? {
            if entry.after.contains_key("externalId") {
                out.insert(entry.member_id, matches!(entry.actor, Actor::Pull(_)));
            }
        }
    }
    Ok(out)
}

/// The time of the oldest entry still held.
pub(super) fn oldest(audit: &sled::Tree) -> Result<Option<DateTime<Utc>>, StoreError> {
    let Some((k, _)) = audit.first()? else {
        return Ok(None);
    };
    Ok(time_of_key(&k))
}

fn time_of_key(k: &[u8]) -> Option<DateTime<Utc>> {
    let micros: [u8; 8] = k.get(..8)?.try_into().ok()?;
    let micros = i64::try_from(u64::from_be_bytes(micros)).ok()?;
    chrono::TimeZone::timestamp_micros(&Utc, micros).single()
}

/// Removes audit keys older than `before`, oldest first: at most `max_keys`, and no more once
/// `budget` has passed. Returns how many keys (groups of entries) were removed.
pub(super) fn prune_some(
    audit: &sled::Tree,
    before: DateTime<Utc>,
    max_keys: usize,
    budget: std::time::Duration,
) -> Result<usize, StoreError> {
    let started = std::time::Instant::now();
    let end = key(before, 0);
    let mut removed = 0;
    while removed < max_keys && started.elapsed() < budget {
        match audit.first()? {
            Some((k, _)) if k.as_ref() < &end[..] => {
                audit.remove(k)?;
                removed += 1;
            }
            _ => break,
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries as earlier versions stored them, with `change` as a string: a group of
    /// every kind they ever wrote (schema 2), and one lone entry (schema 1).
    #[test]
    fn stored_entries_of_every_kind_still_read() {
        let entry = |kind: &str| {
            serde_json::json!({
                "seq": 1,
                "time": "2026-09-21T10:00:00Z",
                "actor": {"kind": "scim", "name": "google"},
                "member_id": "0192a3b4-c5d6-7e8f-9a0b-1c2d3e4f5a6b",
                "user_name": "ada@example.com",
                "change": kind,
                "before": {},
                "after": {"active": true}
            })
        };
        // The strings themselves are pinned by
        // `member::tests::change_kinds_are_stored_as_the_strings_earlier_versions_wrote`.
        let kinds = ChangeKind::ALL.map(ChangeKind::as_str);
        let group = serde_json::Value::Array(kinds.iter().map(|k| entry(k)).collect());
        let read = decode_group(&serde_json::to_vec(&group).unwrap()).unwrap();
        let read: Vec<&str> = read.iter().map(|e| e.change.as_str()).collect();
        assert_eq!(read, kinds);
        let lone = decode_group(&serde_json::to_vec(&entry("revive")).unwrap()).unwrap();
        assert_eq!(lone[0].change, ChangeKind::Revive);
        // And an entry written now is the same JSON.
        let back = serde_json::to_value(&lone[0]).unwrap();
        assert_eq!(back, entry("revive"));
    }

    /// A pull's entries name its run id as `{"kind": "pull", "name": ID}`, as when the actor
    /// held the id as a string; an entry whose name is not in today's run id shape (an
    /// older version's, or a test's) still reads, as it was written.
    #[test]
    fn a_pull_entry_reads_and_writes_its_run_id_as_the_string_it_stored() {
        let entry = |name: &str| {
            serde_json::json!([{
                "seq": 1,
                "time": "2026-09-21T10:00:00Z",
                "actor": {"kind": "pull", "name": name},
                "member_id": "0192a3b4-c5d6-7e8f-9a0b-1c2d3e4f5a6b",
                "user_name": "ada@example.com",
                "change": "deactivate",
                "before": {"active": true},
                "after": {"active": false}
            }])
        };
        for name in ["20261101T020000Z-000042", "run-1", ""] {
            let stored = serde_json::to_vec(&entry(name)).unwrap();
            let read = decode_group(&stored).unwrap();
            assert_eq!(read[0].actor.to_string(), format!("pull:{name}"));
            assert!(matches!(&read[0].actor, Actor::Pull(id) if id.as_str() == name));
            let back = serde_json::to_value(&read).unwrap();
            assert_eq!(
                back,
                entry(name),
                "{name:?} is written back as it was stored"
            );
        }
        let id = crate::member::RunId::parse("20261101T020000Z-000042").unwrap();
        assert_eq!(
            serde_json::to_value(Actor::Pull(id)).unwrap(),
            serde_json::json!({"kind": "pull", "name": "20261101T020000Z-000042"})
        );
    }
}
