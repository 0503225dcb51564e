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

/// The first byte of a group in the binary form: postcard, with each changed value as JSON
/// text. Groups written before it are JSON, which starts with `[` (a group) or `{` (one
/// entry, schema 1); both forms read back the same (`decode_group`).
const BINARY: u8 = 0x01;

/// An entry as the binary form writes it: the entry's own fields, the actor and the values
/// as their JSON text (serde_json's `Value` and the actor's tagged form need a
/// self-describing format to read back), the member id in its hyphenated form (so a query
/// for one member can skip a group whose bytes do not hold it, in either form).
#[derive(Serialize)]
struct PackedRef<'a> {
    seq: u64,
    time_micros: i64,
    actor: String,
    member_id: String,
    user_name: &'a str,
    change: &'static str,
    before: Vec<(&'a str, String)>,
    after: Vec<(&'a str, String)>,
}

/// [`PackedRef`] as it reads back.
#[derive(Deserialize)]
struct Packed {
    seq: u64,
    time_micros: i64,
    actor: String,
    member_id: String,
    user_name: String,
    change: String,
    before: Vec<(String, String)>,
    after: Vec<(String, String)>,
}

/// A group of entries in the binary form.
pub(super) fn encode_group(group: &[AuditEntry]) -> Result<Vec<u8>, StoreError> {
    let json = |v: &serde_json::Value| v.to_string();
    let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt(format!("audit entry: {e}"));
    let mut packed = Vec::with_capacity(group.len());
    for e in group {
        packed.push(PackedRef {
            seq: e.seq,
            time_micros: e.time.timestamp_micros(),
            actor: serde_json::to_string(&e.actor).map_err(|e| corrupt(&e))?,
            member_id: e.member_id.to_string(),
            user_name: &e.user_name,
            change: e.change.as_str(),
            before: e
                .before
                .iter()
                .map(|(k, v)| (k.as_str(), json(v)))
                .collect(),
            after: e.after.iter().map(|(k, v)| (k.as_str(), json(v))).collect(),
        });
    }
    let mut out = vec![BINARY];
    out.extend(postcard::to_stdvec(&packed).map_err(|e| corrupt(&e))?);
    Ok(out)
}

fn unpack(p: Packed) -> Result<AuditEntry, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("audit entry {}: {what}", p.seq));
    let value = |s: &str| serde_json::from_str(s).map_err(|_| corrupt("a value is not JSON"));
    let fields =
        |kv: &[(String, String)]| -> Result<BTreeMap<String, serde_json::Value>, StoreError> {
            kv.iter().map(|(k, v)| Ok((k.clone(), value(v)?))).collect()
        };
    Ok(AuditEntry {
        seq: p.seq,
        time: chrono::TimeZone::timestamp_micros(&Utc, p.time_micros)
            .single()
            .ok_or_else(|| corrupt("its time is out of range"))?,
        actor: serde_json::from_str(&p.actor).map_err(|_| corrupt("its actor"))?,
        member_id: MemberId::parse(&p.member_id).ok_or_else(|| corrupt("its member id"))?,
        change: ChangeKind::ALL
            .into_iter()
            .find(|k| k.as_str() == p.change)
            .ok_or_else(|| corrupt("its kind of change"))?,
        before: fields(&p.before)?,
        after: fields(&p.after)?,
        user_name: p.user_name,
    })
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
    /// Only entries older than this one (its time and `seq`): the next page of a listing
    /// read newest first.
    pub before: Option<(DateTime<Utc>, u64)>,
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
    let end = match q.before {
        Some((time, _)) => std::ops::Bound::Included(key(time, u64::MAX)),
        None => std::ops::Bound::Unbounded,
    };
    for kv in audit
        .range::<[u8; 16], _>((std::ops::Bound::Included(start), end))
        .rev()
    {
        let (_, v) = kv?;
        if let Some(id) = &member {
            if !contains(&v, id.as_bytes()) {
                continue;
            }
        }
        for entry in decode_group(&v)?.into_iter().rev() {
            if q.member.is_some_and(|id| entry.member_id != id)
                || q.since.is_some_and(|t| entry.time < t)
                || q.before.is_some_and(|b| (entry.time, entry.seq) >= b)
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

/// The entries under one key: the binary form, a JSON array (schema 2 on, until the binary
/// form), or one entry (schema 1).
pub(super) fn decode_group(bytes: &[u8]) -> Result<Vec<AuditEntry>, StoreError> {
    let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("audit entry: {e}"));
    if let Some(packed) = bytes.strip_prefix(&[BINARY]) {
        let group: Vec<Packed> = postcard::from_bytes(packed)
            .map_err(|e| StoreError::Corrupt(format!("audit entry: {e}")))?;
        return group.into_iter().map(unpack).collect();
    }
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
        // The field's name, quoted in the JSON form, plain in the binary one.
        if !contains(&v, b"externalId") {
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

    /// The binary form reads back every field of every kind of entry, for every actor, and
    /// is smaller than the JSON it replaces.
    #[test]
    fn the_binary_form_reads_back_what_was_written() {
        let id = MemberId::parse("0192a3b4-c5d6-7e8f-9a0b-1c2d3e4f5a6b").unwrap();
        let actors = [
            Actor::Scim("google: \"prod\"".into()),
            Actor::Pull(crate::member::RunId::parse("20261207T080000Z-000001").unwrap()),
            Actor::Owner,
            Actor::Console("boss@example.com".into()),
        ];
        let group: Vec<AuditEntry> = ChangeKind::ALL
            .into_iter()
            .zip(actors.iter().cycle())
            .enumerate()
            .map(|(i, (change, actor))| AuditEntry {
                seq: 7 + i as u64,
                time: chrono::TimeZone::timestamp_micros(&Utc, 1_765_094_400_123_456).unwrap(),
                actor: actor.clone(),
                member_id: id,
                user_name: "ådа@example.com".into(),
                change,
                before: BTreeMap::from([(
                    "locations".into(),
                    serde_json::json!(["Paris", "Lyon"]),
                )]),
                after: BTreeMap::from([
                    ("locations".into(), serde_json::json!([])),
                    ("active".into(), serde_json::json!(false)),
                    (
                        "name".into(),
                        serde_json::json!({"givenName": "<img>", "n": null, "x": 1.5}),
                    ),
                ]),
            })
            .collect();
        let bytes = encode_group(&group).unwrap();
        assert_eq!(bytes[0], BINARY);
        assert_eq!(decode_group(&bytes).unwrap(), group);
        // A query for the member finds its id among the bytes, as in the JSON form.
        assert!(contains(&bytes, id.to_string().as_bytes()));
        let json = serde_json::to_vec(&group).unwrap();
        assert!(
            bytes.len() < json.len(),
            "{} bytes, JSON {}",
            bytes.len(),
            json.len()
        );
        // A cut or damaged group is an error, not a panic.
        assert!(decode_group(&bytes[..bytes.len() / 2]).is_err());
        assert!(decode_group(&[BINARY, 0xff, 0xff]).is_err());
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
