//! The on-disk encoding of a member record.
//!
//! A compact binary record (postcard) rather than JSON: sled 0.34 copies a node on every
//! insert, so the record size sets the write cost (measured here: 400-byte values insert at
//! about half the rate of 100-byte ones). The first byte is the record format, so a later
//! format can be read alongside this one.
//!
//! Formats:
//! - 1 (schemas 1 and 2): one `external_id` that held the Google id or a SCIM client's
//!   `externalId`, whichever wrote last;
//! - 2 (schema 3): `google_id` (the pull's) and `external_id` (SCIM's) apart. A format-1
//!   record is converted when the store upgrades to schema 3 ([`super::upgrade`]), which
//!   decides with the audit trail which of the two its `external_id` was.
//!
//! A format-2 record may end with a trailer: the member's prior `externalId` (the last
//! non-empty one, after a client cleared it: [`Member::prior_external_id`]), as a postcard
//! `String`. It is written only when there is one, so nearly every record has none, and a
//! build that predates it reads the record as before (postcard ignores trailing bytes).

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::member::{DirectoryAttrs, Email, ManagedBy, Member, MemberId, Role, UserName};

const FORMAT_V1: u8 = 1;
const FORMAT_V2: u8 = 2;

/// Format 1, read only by the upgrade.
#[derive(Serialize, Deserialize)]
struct RecordV1 {
    head: Head,
    tail: Tail,
}

/// Format 2: format 1 with `google_id` after `external_id`. The first two fields (id, then
/// user name) stay where they are, so [`peek_user_name`] reads every format.
#[derive(Serialize, Deserialize)]
struct RecordV2 {
    head: Head,
    google_id: Option<String>,
    tail: Tail,
}

/// The fields every format starts with. Postcard writes a nested struct's fields in place,
/// with no length or tag, so `head`, `google_id`, `tail` is the flat field list of format 2.
#[derive(Serialize, Deserialize)]
struct Head {
    id: [u8; 16],
    user_name: String,
    emails: Vec<(String, Option<String>, bool)>,
    given_name: Option<String>,
    family_name: Option<String>,
    display_name: Option<String>,
    active: bool,
    external_id: Option<String>,
}

/// The fields every format ends with.
#[derive(Serialize, Deserialize)]
struct Tail {
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
    let rec = record_of(m)?;
    let out = vec![FORMAT_V2];
    let out = postcard::to_extend(&rec, out).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    match &m.prior_external_id {
        Some(prior) => {
            postcard::to_extend(prior, out).map_err(|e| StoreError::Corrupt(e.to_string()))
        }
        None => Ok(out),
    }
}

/// The trailer after a record's fields: the prior `externalId`, if any.
fn trailer(rest: &[u8]) -> Result<Option<String>, StoreError> {
    if rest.is_empty() {
        return Ok(None);
    }
    postcard::from_bytes::<String>(rest)
        .map(Some)
        .map_err(|e| bad(format!("the prior externalId after the record: {e}")))
}

/// A member as a record of the current format.
fn record_of(m: &Member) -> Result<RecordV2, StoreError> {
    let scim_extra = if m.dir.scim_extra.is_empty() {
        String::new()
    } else {
        serde_json::to_string(&m.dir.scim_extra).map_err(|e| StoreError::Corrupt(e.to_string()))?
    };
    let head = Head {
        id: *m.id.as_bytes(),
        user_name: m.dir.user_name.as_str().to_string(),
        emails: m
            .dir
            .emails
            .iter()
            .map(|e| (e.value.clone(), e.kind.clone(), e.primary))
            .collect(),
        given_name: m.dir.given_name.clone(),
        family_name: m.dir.family_name.clone(),
        display_name: m.dir.display_name.clone(),
        active: m.dir.active,
        external_id: m.dir.external_id.clone(),
    };
    let tail = Tail {
        locations: m.locations.clone(),
        owner: m.role == Role::Owner,
        manual: m.managed_by == ManagedBy::Manual,
        scim_deleted: m.scim_deleted,
        scim_extra,
        created_micros: m.created.timestamp_micros(),
        last_modified_micros: m.last_modified.timestamp_micros(),
        version: m.version,
    };
    Ok(RecordV2 {
        head,
        google_id: m.dir.google_id.clone(),
        tail,
    })
}

/// Which record format a record is in (its first byte).
pub(super) fn format(bytes: &[u8]) -> Option<u8> {
    bytes.first().copied()
}

/// Whether a record is in the format this build writes.
pub(super) fn is_current(bytes: &[u8]) -> bool {
    format(bytes) == Some(FORMAT_V2)
}

/// Decodes a member record of the current format.
pub(super) fn decode(bytes: &[u8]) -> Result<Member, StoreError> {
    match format(bytes) {
        Some(FORMAT_V2) => decode_v2(&bytes[1..]),
        Some(FORMAT_V1) => Err(bad(
            "a record of format 1 in a schema 3 store (it should have been upgraded)".into(),
        )),
        Some(other) => Err(bad(format!("unknown record format {other}"))),
        None => Err(bad("empty record".into())),
    }
}

/// Decodes a format-1 record (for the upgrade). Its one `external_id` is returned in
/// `external_id`, `google_id` is `None`: the caller decides which it was.
pub(super) fn decode_v1(bytes: &[u8]) -> Result<Member, StoreError> {
    let body = match bytes.split_first() {
        Some((&FORMAT_V1, body)) => body,
        _ => return Err(bad("not a format 1 record".into())),
    };
    let r: RecordV1 = postcard::from_bytes(body).map_err(|e| bad(e.to_string()))?;
    member_of(RecordV2 {
        head: r.head,
        google_id: None,
        tail: r.tail,
    })
}

/// The user name of a record of any format, without decoding the rest: postcard writes the
/// 16 id bytes as they are, then the name as a varint length and its UTF-8 bytes.
pub(super) fn peek_user_name(bytes: &[u8]) -> Option<&str> {
    let rest = bytes.get(17..)?;
    let mut len: usize = 0;
    let mut shift = 0u32;
    let mut i = 0;
    loop {
        let b = *rest.get(i)?;
        len |= usize::from(b & 0x7f).checked_shl(shift)?;
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
    std::str::from_utf8(rest.get(i..i.checked_add(len)?)?).ok()
}

fn bad(why: String) -> StoreError {
    StoreError::Corrupt(format!("member record: {why}"))
}

fn decode_v2(body: &[u8]) -> Result<Member, StoreError> {
    let (rec, rest) = postcard::take_from_bytes(body).map_err(|e| bad(e.to_string()))?;
    let mut m = member_of(rec)?;
    m.prior_external_id = trailer(rest)?;
    Ok(m)
}

fn member_of(rec: RecordV2) -> Result<Member, StoreError> {
    let RecordV2 {
        head,
        google_id,
        tail,
    } = rec;
    let time = |micros: i64| -> Result<DateTime<Utc>, StoreError> {
        Utc.timestamp_micros(micros)
            .single()
            .ok_or_else(|| bad(format!("bad time {micros}")))
    };
    let scim_extra = if tail.scim_extra.is_empty() {
        serde_json::Map::new()
    } else {
        serde_json::from_str(&tail.scim_extra).map_err(|e| bad(e.to_string()))?
    };
    Ok(Member {
        id: MemberId::from_slice(&head.id).ok_or_else(|| bad("bad id".into()))?,
        dir: DirectoryAttrs {
            user_name: UserName::parse_identifier(&head.user_name)
                .map_err(|e| bad(e.to_string()))?,
            emails: head
                .emails
                .into_iter()
                .map(|(value, kind, primary)| Email {
                    value,
                    kind,
                    primary,
                })
                .collect(),
            given_name: head.given_name,
            family_name: head.family_name,
            display_name: head.display_name,
            active: head.active,
            google_id,
            external_id: head.external_id,
            scim_extra,
        },
        locations: tail.locations,
        role: if tail.owner {
            Role::Owner
        } else {
            Role::Member
        },
        managed_by: if tail.manual {
            ManagedBy::Manual
        } else {
            ManagedBy::Google
        },
        scim_deleted: tail.scim_deleted,
        created: time(tail.created_micros)?,
        last_modified: time(tail.last_modified_micros)?,
        version: tail.version,
        prior_external_id: None,
    })
}

/// A record of the current format read in place: its strings borrow the record's bytes.
/// The mirror is built from these at open, without a `Member` (nor its `scim_extra` parsed)
/// on the way. Same fields, in the same order, as [`RecordV2`].
#[derive(Deserialize)]
pub(super) struct RecordRef<'a> {
    pub(super) id: [u8; 16],
    pub(super) user_name: &'a str,
    #[serde(borrow)]
    pub(super) emails: Vec<(&'a str, Option<&'a str>, bool)>,
    pub(super) given_name: Option<&'a str>,
    pub(super) family_name: Option<&'a str>,
    pub(super) display_name: Option<&'a str>,
    pub(super) active: bool,
    pub(super) external_id: Option<&'a str>,
    pub(super) google_id: Option<&'a str>,
    #[serde(borrow)]
    pub(super) locations: Vec<&'a str>,
    pub(super) owner: bool,
    pub(super) manual: bool,
    pub(super) scim_deleted: bool,
    pub(super) scim_extra: &'a str,
    pub(super) created_micros: i64,
    pub(super) last_modified_micros: i64,
    pub(super) version: u64,
    /// Whether the record ends with a trailer (the prior `externalId`), which the mirror
    /// leaves out: its member is then read from the record, as one with extra attributes.
    #[serde(skip)]
    pub(super) has_trailer: bool,
}

/// Reads a record of the current format in place.
pub(super) fn decode_ref(bytes: &[u8]) -> Result<RecordRef<'_>, StoreError> {
    match bytes.split_first() {
        Some((&FORMAT_V2, body)) => {
            let (mut rec, rest): (RecordRef<'_>, _) =
                postcard::take_from_bytes(body).map_err(|e| bad(e.to_string()))?;
            rec.has_trailer = !rest.is_empty();
            Ok(rec)
        }
        // Any other format: the error the ordinary decoder gives.
        _ => Err(decode(bytes)
            .err()
            .unwrap_or_else(|| bad("not a format 2 record".into()))),
    }
}

/// Encodes a member as format 1 wrote it (tests of the upgrade build old stores with it).
#[cfg(test)]
pub(super) fn encode_v1(m: &Member, external_id: Option<&str>) -> Vec<u8> {
    let r = record_of(m).unwrap();
    let rec = RecordV1 {
        head: Head {
            external_id: external_id.map(str::to_string),
            ..r.head
        },
        tail: Tail {
            scim_extra: String::new(),
            ..r.tail
        },
    };
    postcard::to_extend(&rec, vec![FORMAT_V1]).unwrap()
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
            dir: DirectoryAttrs {
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
                google_id: Some("104598721934561234567".into()),
                external_id: Some("entra-object-1".into()),
                scim_extra: extra,
            },
            locations: vec!["Paris".into(), "Lyon".into()],
            role: Role::Owner,
            managed_by: ManagedBy::Manual,
            scim_deleted: true,
            created: now,
            last_modified: now,
            version: 42,
            prior_external_id: None,
        };
        let bytes = encode(&m).unwrap();
        assert_eq!(decode(&bytes).unwrap(), m);
        let mut plain = m.clone();
        plain.dir.scim_extra.clear();
        assert!(encode(&plain).unwrap().len() < 200, "compact");
        assert!(decode(&[]).is_err());
        assert!(decode(&[9, 1, 2]).is_err());
        assert!(decode(&bytes[..bytes.len() / 2]).is_err());
        assert_eq!(peek_user_name(&bytes), Some("Ada.Lovelace@Example.com"));
        assert_eq!(peek_user_name(&bytes[..20]), None);

        // A format-1 record reads (for the upgrade) with its one id in `external_id`, and
        // is refused by the ordinary decoder.
        let old = encode_v1(&plain, Some("104598721934561234567"));
        assert!(!is_current(&old) && is_current(&bytes));
        assert_eq!(peek_user_name(&old), Some("Ada.Lovelace@Example.com"));
        let back = decode_v1(&old).unwrap();
        assert_eq!(
            back.dir.external_id.as_deref(),
            Some("104598721934561234567")
        );
        assert_eq!(back.dir.google_id, None);
        assert_eq!(back.locations, plain.locations);
        assert!(decode(&old).is_err());
    }
    /// The bytes of one format-2 record, written out by hand from the positional layout
    /// (postcard: the id's 16 bytes, varint lengths, 0/1 option tags and booleans, zigzag
    /// times). The member's shape in memory may change; these bytes may not.
    const FORMAT_2_RECORD: &str = "020102030405060708090a0b0c0d0e0f10184164612e4c6f76656c61636540\
        4578616d706c652e636f6d02184164612e4c6f76656c616365404578616d706c652e636f6d0104776f726b\
        010f616461406578616d706c652e636f6d0000010341646101084c6f76656c6163650000010e656e747261\
        2d6f626a6563742d31011531303435393837323139333435363132333435363702055061726973044c796f\
        6e010101147b227469746c65223a22456e67696e656572227d8089bea2dbffad068084de81dcffad062a";

    #[test]
    fn the_record_format_is_byte_for_byte_what_it_was() {
        let hex: String = FORMAT_2_RECORD.split_whitespace().collect();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let m = decode(&bytes).unwrap();
        assert_eq!(
            m.id,
            MemberId(uuid::Uuid::from_bytes(
                core::array::from_fn(|i| i as u8 + 1)
            ))
        );
        assert_eq!(m.dir.user_name.as_str(), "Ada.Lovelace@Example.com");
        assert_eq!(m.dir.emails.len(), 2);
        assert_eq!(
            m.dir.emails[0],
            Email::primary_work("Ada.Lovelace@Example.com")
        );
        assert_eq!(m.dir.given_name.as_deref(), Some("Ada"));
        assert_eq!(m.dir.display_name, None);
        assert!(!m.dir.active);
        assert_eq!(m.dir.external_id.as_deref(), Some("entra-object-1"));
        assert_eq!(m.dir.google_id.as_deref(), Some("104598721934561234567"));
        assert_eq!(m.dir.scim_extra["title"], "Engineer");
        assert_eq!(m.locations, ["Paris", "Lyon"]);
        assert_eq!(
            (m.role, m.managed_by, m.scim_deleted),
            (Role::Owner, ManagedBy::Manual, true)
        );
        assert_eq!(m.created.timestamp_micros(), 1_790_000_000_123_456);
        assert_eq!(m.last_modified.timestamp_micros(), 1_790_000_100_000_000);
        assert_eq!(m.version, 42);
        assert_eq!(encode(&m).unwrap(), bytes, "re-encoded to the same bytes");
    }

    /// Format 1 is format 2 without the `google_id` field (and, as `encode_v1` writes it,
    /// without kept SCIM attributes): checked byte for byte against the format-2 record.
    #[test]
    fn the_format_1_record_is_format_2_without_the_google_id() {
        let hex_of = |s: &str| -> String { s.bytes().map(|b| format!("{b:02x}")).collect() };
        let v2: String = FORMAT_2_RECORD.split_whitespace().collect();
        let google_id = format!("0115{}", hex_of("104598721934561234567"));
        let extra = format!("14{}", hex_of(r#"{"title":"Engineer"}"#));
        assert!(v2.starts_with("02") && v2.contains(&google_id) && v2.contains(&extra));
        let v1 = format!("01{}", &v2[2..])
            .replacen(&google_id, "", 1)
            .replacen(&extra, "00", 1);
        let bytes = |hex: &str| -> Vec<u8> {
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect()
        };
        let m = decode(&bytes(&v2)).unwrap();
        assert_eq!(encode_v1(&m, Some("entra-object-1")), bytes(&v1));
    }
}
