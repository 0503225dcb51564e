//! The outbox's vocabulary: what an event is, its types, and its JSON.
//!
//! Every write that changes a member or a token appends one event in the same sled
//! transaction as the change (`store::MemberTx::append_event`, called only by
//! `provision`), numbered by a gap-free `seq`. Consumers read them from the feed
//! (`GET /retrac/v1/events`) or receive them as Standard Webhooks deliveries. This module
//! depends on nothing but the member's vocabulary, so the contract does not depend on sled.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What an event says happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    /// A new member.
    MemberCreated,
    /// Directory attributes changed (names, address inside one domain, ...).
    MemberUpdated,
    /// The member lost access: end its sessions.
    MemberDeactivated,
    /// The member got access back.
    MemberReactivated,
    /// A SCIM client deleted it: hidden from SCIM, and without access.
    MemberDeleted,
    /// The owner restored it, or a SCIM client created it again.
    MemberRestored,
    /// The owner changed its locations or role.
    MemberAccessChanged,
    /// It became another person (another Google id, external id or domain): its grants were
    /// removed.
    MemberIdentityChanged,
    /// The directory linked an existing member (the pull matched it, or SCIM claimed an
    /// owner's invite).
    MemberLinked,
    /// A SCIM or events token was created.
    TokenCreated,
    /// A token was revoked (one, or all by a disconnect).
    TokenRevoked,
    /// A pull held deactivations back for the owner's approval.
    SyncDeactivationsHeld,
    /// `webhook test`: never stored in the outbox, sent to one endpoint with `seq` 0.
    WebhookTest,
}

impl EventType {
    /// Every type, in the order the documentation lists them.
    pub const ALL: [EventType; 13] = [
        EventType::MemberCreated,
        EventType::MemberUpdated,
        EventType::MemberDeactivated,
        EventType::MemberReactivated,
        EventType::MemberDeleted,
        EventType::MemberRestored,
        EventType::MemberAccessChanged,
        EventType::MemberIdentityChanged,
        EventType::MemberLinked,
        EventType::TokenCreated,
        EventType::TokenRevoked,
        EventType::SyncDeactivationsHeld,
        EventType::WebhookTest,
    ];

    /// Its name on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::MemberCreated => "member.created",
            EventType::MemberUpdated => "member.updated",
            EventType::MemberDeactivated => "member.deactivated",
            EventType::MemberReactivated => "member.reactivated",
            EventType::MemberDeleted => "member.deleted",
            EventType::MemberRestored => "member.restored",
            EventType::MemberAccessChanged => "member.access_changed",
            EventType::MemberIdentityChanged => "member.identity_changed",
            EventType::MemberLinked => "member.linked",
            EventType::TokenCreated => "token.created",
            EventType::TokenRevoked => "token.revoked",
            EventType::SyncDeactivationsHeld => "sync.deactivations_held",
            EventType::WebhookTest => "webhook.test",
        }
    }

    /// The type named `s`, if there is one.
    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Its one-byte code in the store (stable: never renumber).
    pub const fn code(self) -> u8 {
        match self {
            EventType::MemberCreated => 1,
            EventType::MemberUpdated => 2,
            EventType::MemberDeactivated => 3,
            EventType::MemberReactivated => 4,
            EventType::MemberDeleted => 5,
            EventType::MemberRestored => 6,
            EventType::MemberAccessChanged => 7,
            EventType::MemberIdentityChanged => 8,
            EventType::MemberLinked => 9,
            EventType::TokenCreated => 10,
            EventType::TokenRevoked => 11,
            EventType::SyncDeactivationsHeld => 12,
            EventType::WebhookTest => 13,
        }
    }

    /// The type of a stored code.
    pub fn from_code(code: u8) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.code() == code)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        EventType::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown event type {s:?}")))
    }
}

/// A filter of event types, as `webhook add --events` takes it: exact types, or a prefix
/// ending in `.*` (`member.*`). Empty: every type.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventFilter(pub Vec<String>);

impl EventFilter {
    /// Parses a comma-separated list; refuses a name that matches no type.
    pub fn parse(list: &str) -> Result<EventFilter, String> {
        let mut out = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let known = match item.strip_suffix(".*") {
                Some(prefix) => EventType::ALL
                    .iter()
                    .any(|t| t.as_str().starts_with(&format!("{prefix}."))),
                None => item == "*" || EventType::parse(item).is_some(),
            };
            if !known {
                return Err(format!(
                    "{item:?} is not an event type or a prefix of one (types: {})",
                    EventType::ALL.map(EventType::as_str).join(", ")
                ));
            }
            out.push(item.to_string());
        }
        Ok(EventFilter(out))
    }

    /// Whether an event of type `t` passes. `webhook.test` always does.
    pub fn matches(&self, t: EventType) -> bool {
        if self.0.is_empty() || t == EventType::WebhookTest {
            return true;
        }
        let name = t.as_str();
        self.0.iter().any(|f| {
            f == "*"
                || f == name
                || f.strip_suffix(".*")
                    .is_some_and(|p| name.strip_prefix(p).is_some_and(|r| r.starts_with('.')))
        })
    }
}

/// One event as consumers see it: the feed's items and a webhook delivery's body.
///
/// ```json
/// {"id": "evt_…", "seq": 1234, "type": "member.deactivated",
///  "timestamp": "2026-12-07T10:00:00Z",
///  "data": {"member": {…}, "changed": ["active"], "actor": "pull:…"}}
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique, the same on every delivery (`webhook-id`).
    pub id: String,
    /// Gap-free, growing by one per event.
    pub seq: u64,
    /// What happened.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// When the change was committed.
    pub timestamp: DateTime<Utc>,
    /// What changed: `member` (the member as `members show -o json` prints it), `changed`
    /// (its changed fields) and `actor`; `token` for token events; `run_id`, `held` for
    /// `sync.deactivations_held`.
    pub data: serde_json::Value,
}

impl Event {
    /// The event's JSON, as a delivery sends it.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing a struct of strings, numbers and a `Value` cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The id of the event `seq` of the store `instance` (8 random bytes chosen when the store
/// was made): unique across stores, so a consumer that keeps ids never confuses two.
pub fn event_id(instance: u64, seq: u64) -> String {
    format!("evt_{instance:016x}{seq:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_round_trip_by_name_and_code() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            assert_eq!(EventType::from_code(t.code()), Some(t));
        }
        assert_eq!(EventType::parse("member.gone"), None);
    }

    #[test]
    fn a_filter_takes_exact_types_and_prefixes() {
        let f = EventFilter::parse("member.deactivated, token.*").unwrap();
        assert!(f.matches(EventType::MemberDeactivated));
        assert!(f.matches(EventType::TokenRevoked));
        assert!(!f.matches(EventType::MemberCreated));
        assert!(f.matches(EventType::WebhookTest));
        assert!(EventFilter::parse("member.gone").is_err());
        assert!(EventFilter::parse("mem.*").is_err());
        assert!(EventFilter::default().matches(EventType::SyncDeactivationsHeld));
    }

    #[test]
    fn an_event_serializes_with_the_documented_keys() {
        let e = Event {
            id: event_id(1, 2),
            seq: 2,
            event_type: EventType::MemberDeactivated,
            timestamp: DateTime::from_timestamp(0, 0).unwrap(),
            data: serde_json::json!({"changed": ["active"]}),
        };
        let v: serde_json::Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(v["type"], "member.deactivated");
        assert_eq!(v["id"], "evt_00000000000000010000000000000002");
        assert_eq!(v["seq"], 2);
        assert_eq!(v["timestamp"], "1970-01-01T00:00:00Z");
        let back: Event = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(back, e);
    }
}
