//! What the Directory API sends, typed loosely enough to survive what Google really sends:
//! unknown fields are ignored, and `emails` may be any JSON shape (Google types it as `any`).

use serde::{Deserialize, Serialize};

/// The `fields=` partial response the pull asks users.list for: only what the plan uses.
pub const USER_FIELDS: &str =
    "nextPageToken,users(id,primaryEmail,name(givenName,familyName,fullName),suspended,archived,orgUnitPath,emails)";

/// The `fields=` partial response for members.list.
pub const MEMBER_FIELDS: &str = "nextPageToken,members(id,email,type,status)";

/// The single-user form of [`USER_FIELDS`], for users.get.
pub const ONE_USER_FIELDS: &str =
    "id,primaryEmail,name(givenName,familyName,fullName),suspended,archived,orgUnitPath,emails";

/// A user's name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserNameParts {
    /// First name.
    #[serde(default)]
    pub given_name: Option<String>,
    /// Last name.
    #[serde(default)]
    pub family_name: Option<String>,
    /// Full name.
    #[serde(default)]
    pub full_name: Option<String>,
}

/// One Google user (`admin#directory#user`), with the fields the plan reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GoogleUser {
    /// The immutable Google user id.
    pub id: String,
    /// The primary email, in the case Google stores it.
    pub primary_email: String,
    /// The name, when present.
    #[serde(default)]
    pub name: Option<UserNameParts>,
    /// Suspended by an admin (or automatically).
    #[serde(default)]
    pub suspended: Option<bool>,
    /// Archived (an archived user keeps its data but cannot sign in).
    #[serde(default)]
    pub archived: Option<bool>,
    /// The org unit, as `/Engineering/Kernel`.
    #[serde(default)]
    pub org_unit_path: Option<String>,
    /// Google types this as `any`: normally a list of `{address, primary, type}`. Only the
    /// addresses are kept, whatever the shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emails: Option<Emails>,
}

impl GoogleUser {
    /// Whether the user may sign in: not suspended and not archived.
    pub fn is_active(&self) -> bool {
        !self.suspended.unwrap_or(false) && !self.archived.unwrap_or(false)
    }

    /// Every address in `emails` other than the primary one, whatever shape `emails` has.
    pub fn other_addresses(&self) -> Vec<String> {
        use crate::member::normalize_email_cow;
        let mut out: Vec<String> = Vec::new();
        let primary = normalize_email_cow(&self.primary_email);
        for a in self.emails.iter().flat_map(|e| e.0.iter()) {
            let n = normalize_email_cow(a);
            if !a.trim().is_empty()
                && n != primary
                && !out.iter().any(|o| normalize_email_cow(o) == n)
            {
                out.push(a.trim().to_string());
            }
        }
        out
    }
}

/// The addresses of a user's `emails`, read from any JSON shape without building a JSON
/// tree: a string, an object with an `address` string, or a list of those. Anything else
/// (numbers, objects without an address, ...) is skipped. Serialized as a list of
/// `{"address": ...}`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Emails(pub Vec<String>);

impl Serialize for Emails {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        struct Addr<'a>(&'a str);
        impl Serialize for Addr<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("address", self.0)?;
                m.end()
            }
        }
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for a in &self.0 {
            seq.serialize_element(&Addr(a))?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Emails {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut out = Vec::new();
        d.deserialize_any(AddressVisitor {
            out: &mut out,
            at: At::Top,
        })?;
        Ok(Emails(out))
    }
}

/// Collects addresses from one JSON value into `out`.
struct AddressVisitor<'a> {
    out: &'a mut Vec<String>,
    at: At,
}

/// Where in `emails` a value is, which decides what counts as an address.
#[derive(Clone, Copy, PartialEq)]
enum At {
    /// `emails` itself: a string, an entry, or a list of entries.
    Top,
    /// An item of the list: a string or an object with an `address`.
    Entry,
    /// The value of `address`: only a string counts.
    Address,
}

impl<'de> serde::de::DeserializeSeed<'de> for AddressVisitor<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for AddressVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.out.push(v.to_string());
        Ok(())
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<(), E> {
        self.out.push(v);
        Ok(())
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.at == At::Top {
            while seq
                .next_element_seed(AddressVisitor {
                    out: &mut *self.out,
                    at: At::Entry,
                })?
                .is_some()
            {}
        } else {
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        }
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<EmailKey>()? {
            match key {
                EmailKey::Address if self.at != At::Address => {
                    // Only a string address counts: a nested list or object is not one.
                    map.next_value_seed(AddressVisitor {
                        out: &mut *self.out,
                        at: At::Address,
                    })?;
                }
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// The keys of an `emails` entry: only `address` matters.
enum EmailKey {
    Address,
    Other,
}

impl<'de> Deserialize<'de> for EmailKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = EmailKey;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<EmailKey, E> {
                Ok(if v == "address" {
                    EmailKey::Address
                } else {
                    EmailKey::Other
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

/// One page of users.list.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsersPage {
    /// The users (absent when there are none).
    #[serde(default)]
    pub users: Vec<GoogleUser>,
    /// The next page, absent on the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// One member of a group (`admin#directory#member`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupMember {
    /// The user's or group's id (for CUSTOMER, the customer id).
    #[serde(default)]
    pub id: Option<String>,
    /// Email; a CUSTOMER member has none.
    #[serde(default)]
    pub email: Option<String>,
    /// USER, GROUP or CUSTOMER.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// ACTIVE, SUSPENDED, ...
    #[serde(default)]
    pub status: Option<String>,
}

/// One page of members.list.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MembersPage {
    /// The members (absent when there are none).
    #[serde(default)]
    pub members: Vec<GroupMember>,
    /// The next page, absent on the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// Google's JSON error body: `{"error": {"code", "message", "errors": [{"reason", ...}]}}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The inside of [`ErrorBody`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// The HTTP status.
    #[serde(default)]
    pub code: u16,
    /// Google's message.
    #[serde(default)]
    pub message: String,
    /// The individual errors, each with a reason.
    #[serde(default)]
    pub errors: Vec<ErrorItem>,
    /// The gRPC-style status (`PERMISSION_DENIED`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// One reason of an error.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorItem {
    /// Message.
    #[serde(default)]
    pub message: String,
    /// `global`, `usageLimits`, ...
    #[serde(default)]
    pub domain: String,
    /// `rateLimitExceeded`, `backendError`, ...
    #[serde(default)]
    pub reason: String,
}

impl ErrorBody {
    /// A body in Google's shape.
    pub fn new(code: u16, reason: &str, message: &str) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code,
                message: message.to_string(),
                errors: vec![ErrorItem {
                    message: message.to_string(),
                    domain: if matches!(
                        reason,
                        "rateLimitExceeded" | "userRateLimitExceeded" | "quotaExceeded"
                    ) {
                        "usageLimits".into()
                    } else {
                        "global".into()
                    },
                    reason: reason.to_string(),
                }],
                status: None,
            },
        }
    }

    /// The first reason, if any.
    pub fn reason(&self) -> Option<&str> {
        self.error.errors.first().map(|e| e.reason.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/google/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn google_pages_parse_with_their_unknown_fields() {
        let p1: UsersPage = serde_json::from_str(&fixture("users-page-1.json")).unwrap();
        assert_eq!(p1.users.len(), 2);
        assert_eq!(p1.users[0].other_addresses(), vec!["ada@example.com"]);
        assert!(p1.users[0].is_active());
        assert!(!p1.users[1].is_active(), "suspended");
        assert!(p1.next_page_token.is_some());
        let p2: UsersPage = serde_json::from_str(&fixture("users-page-2.json")).unwrap();
        assert!(!p2.users[0].is_active(), "archived");
        assert!(p2.next_page_token.is_none());
        let m: MembersPage = serde_json::from_str(&fixture("members-page.json")).unwrap();
        assert_eq!(m.members.len(), 3);
        assert_eq!(m.members[2].email, None);
        assert_eq!(m.members[2].kind.as_deref(), Some("CUSTOMER"));
        for f in [
            "error-403-user-rate-limit.json",
            "error-429-rate-limit.json",
            "error-503-backend.json",
        ] {
            let e: ErrorBody = serde_json::from_str(&fixture(f)).unwrap();
            assert!(!e.reason().unwrap().is_empty());
        }
    }

    #[test]
    fn emails_of_any_shape_are_tolerated() {
        for emails in [
            serde_json::json!("x@example.com"),
            serde_json::json!({"address": "x@example.com"}),
            serde_json::json!(["x@example.com", 5, null, {"nope": 1}]),
            serde_json::json!(42),
        ] {
            let u: GoogleUser = serde_json::from_value(serde_json::json!({
                "id": "1", "primaryEmail": "a@example.com", "emails": emails,
                "externalIds": {"weird": true}, "organizations": "text"
            }))
            .unwrap();
            assert!(u.other_addresses().len() <= 1);
        }
    }

    #[test]
    fn emails_keep_only_string_addresses_at_the_places_google_puts_them() {
        let read = |v: serde_json::Value| -> Vec<String> {
            let e: Emails = serde_json::from_value(v.clone()).unwrap();
            // The same from bytes (the client's path), not only from a JSON tree.
            let b: Emails = serde_json::from_slice(&serde_json::to_vec(&v).unwrap()).unwrap();
            assert_eq!(e, b);
            e.0
        };
        assert_eq!(read(serde_json::json!("x@example.com")), ["x@example.com"]);
        assert_eq!(
            read(serde_json::json!({"primary": true, "address": "x@example.com", "type": "work"})),
            ["x@example.com"]
        );
        assert_eq!(
            read(serde_json::json!([
                {"address": "a@example.com", "primary": true},
                "b@example.com",
                {"address": {"address": "nested@example.com"}},
                {"address": 5},
                ["c@example.com"],
                {"nope": "d@example.com"},
                null, 1.5, true
            ])),
            ["a@example.com", "b@example.com"]
        );
        assert!(read(serde_json::json!(null)).is_empty());
        assert!(read(serde_json::json!({"address": ["x@example.com"]})).is_empty());
        // Written back as a list of {"address"}, which reads back the same.
        let e = Emails(vec!["a@example.com".into(), "b@example.com".into()]);
        let back: Emails = serde_json::from_slice(&serde_json::to_vec(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }
}
