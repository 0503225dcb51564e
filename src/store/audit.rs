//! The audit log: one entry per applied change, in time order.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::member::{Actor, MemberId};

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
    /// The kind of change (`create`, `update`, `deactivate`, ...).
    pub change: String,
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

pub(super) fn query(
    audit: &sled::Tree,
    by_member: &sled::Tree,
    q: &AuditQuery,
) -> Result<Vec<AuditEntry>, StoreError> {
    let start = q.since.map(|t| key(t, 0)).unwrap_or([0u8; 16]);
    let limit = q.limit.unwrap_or(usize::MAX);
    let mut out = Vec::new();
    let decode = |v: &[u8]| {
        serde_json::from_slice::<AuditEntry>(v)
            .map_err(|e| StoreError::Corrupt(format!("audit entry: {e}")))
    };
    // Walk newest first so `limit` keeps the most recent, then put them back in order.
    match q.member {
        Some(id) => {
            let mut lo = id.as_bytes().to_vec();
            lo.extend_from_slice(&start);
            let mut hi = id.as_bytes().to_vec();
            hi.extend_from_slice(&[0xff; 16]);
            for kv in by_member.range(lo..=hi).rev() {
                if out.len() >= limit {
                    break;
                }
                let (k, _) = kv?;
                if let Some(v) = audit.get(&k[16..])? {
                    out.push(decode(&v)?);
                }
            }
        }
        None => {
            for kv in audit.range(start..).rev() {
                if out.len() >= limit {
                    break;
                }
                let (_, v) = kv?;
                out.push(decode(&v)?);
            }
        }
    }
    out.reverse();
    Ok(out)
}
