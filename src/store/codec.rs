//! The on-disk encoding of a member record.
//!
//! A compact binary record (postcard) rather than JSON: sled 0.34 copies a node on every
//! insert, so the record size sets the write cost (measured here: 400-byte values insert at
//! about half the rate of 100-byte ones). The first byte is the record format, so a later
//! format can be read alongside this one.

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::member::{Email, ManagedBy, Member, MemberId, Role, UserName};

const FORMAT_V1: u8 = 1;

#[derive(Serialize, Deserialize)]
struct RecordV1 {
    id: [u8; 16],
    user_name: String,
    emails: Vec<(String, Option<String>, bool)>,
    given_name: Option<String>,
    family_name: Option<String>,
    display_name: Option<String>,
    active: bool,
    external_id: Option<String>,
    locations: Vec<String>,
    owner: bool,
    manual: bool,
    scim_deleted: bool,
    /// Kept SCIM attributes as JSON text ("" when none): postcard cannot hold free-form JSON.
    scim_extra: String,
    created_micros: i64,
    last_modified_micros: i64,
    version: u64,
}

/// Encodes a member record.
pub(super) fn encode(m: &Member) -> Result<Vec<u8>, StoreError> {
    let scim_extra = if m.scim_extra.is_empty() {
        String::new()
    } else {
        serde_json::to_string(&m.scim_extra).map_err(|e| StoreError::Corrupt(e.to_string()))?
    };
    let rec = RecordV1 {
        id: *m.id.as_bytes(),
        user_name: m.user_name.as_str().to_string(),
        emails: m
            .emails
            .iter()
            .map(|e| (e.value.clone(), e.kind.clone(), e.primary))
            .collect(),
        given_name: m.given_name.clone(),
        family_name: m.family_name.clone(),
        display_name: m.display_name.clone(),
        active: m.active,
        external_id: m.external_id.clone(),
        locations: m.locations.clone(),
        owner: m.role == Role::Owner,
        manual: m.managed_by == ManagedBy::Manual,
        scim_deleted: m.scim_deleted,
        scim_extra,
        created_micros: m.created.timestamp_micros(),
        last_modified_micros: m.last_modified.timestamp_micros(),
        version: m.version,
    };
    let out = vec![FORMAT_V1];
    postcard::to_extend(&rec, out).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Decodes a member record.
pub(super) fn decode(bytes: &[u8]) -> Result<Member, StoreError> {
    let bad = |why: String| StoreError::Corrupt(format!("member record: {why}"));
    let (format, body) = bytes
        .split_first()
        .ok_or_else(|| bad("empty record".into()))?;
    if *format != FORMAT_V1 {
        return Err(bad(format!("unknown record format {format}")));
    }
    let rec: RecordV1 = postcard::from_bytes(body).map_err(|e| bad(e.to_string()))?;
    let time = |micros: i64| -> Result<DateTime<Utc>, StoreError> {
        Utc.timestamp_micros(micros)
            .single()
            .ok_or_else(|| bad(format!("bad time {micros}")))
    };
    Ok(Member {
        id: MemberId::from_slice(&rec.id).ok_or_else(|| bad("bad id".into()))?,
        user_name: UserName::parse_identifier(&rec.user_name).map_err(|e| bad(e.to_string()))?,
        emails: rec
            .emails
            .into_iter()
            .map(|(value, kind, primary)| Email {
                value,
                kind,
                primary,
            })
            .collect(),
        given_name: rec.given_name,
        family_name: rec.family_name,
        display_name: rec.display_name,
        active: rec.active,
        external_id: rec.external_id,
        locations: rec.locations,
        role: if rec.owner { Role::Owner } else { Role::Member },
        managed_by: if rec.manual {
            ManagedBy::Manual
        } else {
            ManagedBy::Google
        },
        scim_deleted: rec.scim_deleted,
        scim_extra: if rec.scim_extra.is_empty() {
            serde_json::Map::new()
        } else {
            serde_json::from_str(&rec.scim_extra).map_err(|e| bad(e.to_string()))?
        },
        created: time(rec.created_micros)?,
        last_modified: time(rec.last_modified_micros)?,
        version: rec.version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_round_trips_and_is_compact() {
        let mut extra = serde_json::Map::new();
        extra.insert("title".into(), serde_json::json!("Engineer"));
        extra.insert(
            "phoneNumbers".into(),
            serde_json::json!([{"value": "+33 1", "type": "work"}]),
        );
        let now = Utc
            .timestamp_micros(1_790_000_000_123_456)
            .single()
            .unwrap();
        let m = Member {
            id: MemberId::new_random(),
            user_name: UserName::parse("Ada.Lovelace@Example.com").unwrap(),
            emails: vec![
                Email::primary_work("Ada.Lovelace@Example.com"),
                Email {
                    value: "ada@example.com".into(),
                    kind: None,
                    primary: false,
                },
            ],
            given_name: Some("Ada".into()),
            family_name: Some("Lovelace".into()),
            display_name: None,
            active: false,
            external_id: Some("104598721934561234567".into()),
            locations: vec!["Paris".into(), "Lyon".into()],
            role: Role::Owner,
            managed_by: ManagedBy::Manual,
            scim_deleted: true,
            scim_extra: extra,
            created: now,
            last_modified: now,
            version: 42,
        };
        let bytes = encode(&m).unwrap();
        assert_eq!(decode(&bytes).unwrap(), m);
        let mut plain = m.clone();
        plain.scim_extra.clear();
        assert!(encode(&plain).unwrap().len() < 200, "compact");
        assert!(decode(&[]).is_err());
        assert!(decode(&[9, 1, 2]).is_err());
        assert!(decode(&bytes[..bytes.len() / 2]).is_err());
    }
}
