//! What the Directory API sends, typed loosely enough to survive what Google really sends:
//! unknown fields are ignored, and `emails` may be any JSON shape (Google types it as `any`).

use serde::{Deserialize, Serialize};

/// The `fields=` partial response the pull asks users.list for: only what the plan uses.
/// `nextPageToken` must be in it: Google leaves out whatever the mask does not name, and a
/// page without its token reads as the last page.
pub const USER_FIELDS: &str =
    "nextPageToken,users(id,primaryEmail,name(givenName,familyName,fullName),suspended,archived,orgUnitPath,isAdmin,isGuestUser,emails(address,primary,type),aliases)";

/// The `fields=` partial response for members.list.
pub const MEMBER_FIELDS: &str = "nextPageToken,members(id,email,type,status)";

/// The single-user form of [`USER_FIELDS`], for users.get.
pub const ONE_USER_FIELDS: &str =
    "id,primaryEmail,name(givenName,familyName,fullName),suspended,archived,orgUnitPath,isAdmin,isGuestUser,emails(address,primary,type),aliases";

/// The `fields=` partial response for the listing of deleted users (`showDeleted=true`):
/// only their ids.
pub const DELETED_USER_FIELDS: &str = "nextPageToken,users(id)";

/// Google's own address of every user (`user@<domain>.test-google-a.com`): listed in
/// `emails` and `nonEditableAliases`, never a mailbox the person uses.
pub const TEST_DOMAIN_SUFFIX: &str = ".test-google-a.com";

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
    /// An administrator of the customer (`isAdmin`), for `[scope].query`'s `isAdmin=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_admin: Option<bool>,
    /// A guest account (`users.createGuest`): an ordinary directory user to the API, left
    /// out of scope unless `[scope].include_guests`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_guest_user: Option<bool>,
    /// Google types this as `any`: normally a list of `{address, primary, type}`, where
    /// `type` is `home`, `work`, `other` or `custom` and personal addresses appear too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emails: Option<Emails>,
    /// The user's alias addresses (read with the same tolerance as `emails`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aliases: Option<Emails>,
}

impl GoogleUser {
    /// Whether the user may sign in: not suspended and not archived.
    pub fn is_active(&self) -> bool {
        !self.suspended.unwrap_or(false) && !self.archived.unwrap_or(false)
    }

    /// Whether the user is a guest account.
    pub fn is_guest(&self) -> bool {
        self.is_guest_user.unwrap_or(false)
    }

    /// The addresses besides the primary one that belong to the person in the organisation:
    /// the aliases and the `emails` entries typed `work`, whose domain is one of `domains`
    /// (lower case; empty = any), never a `*.test-google-a.com` address. Personal (`home`),
    /// `other`, `custom` and untyped entries are left out. Each address once, in Google's
    /// order (aliases first), never the primary.
    pub fn secondary_addresses(&self, domains: &[String]) -> Vec<String> {
        use crate::member::normalize_email_cow;
        let mut out: Vec<String> = Vec::new();
        let primary = normalize_email_cow(&self.primary_email);
        let aliases = self.aliases.iter().flat_map(|e| e.0.iter());
        let work = self
            .emails
            .iter()
            .flat_map(|e| e.0.iter())
            .filter(|e| e.kind.as_deref() == Some("work"));
        for e in aliases.chain(work) {
            let a = e.address.trim();
            let n = normalize_email_cow(a);
            if a.is_empty()
                || n == primary
                || !kept_domain(&n, domains)
                || out.iter().any(|o| normalize_email_cow(o) == n)
            {
                continue;
            }
            out.push(a.to_string());
        }
        out
    }
}

/// Whether a normalised address is in one of `domains` (empty = any) and is not Google's
/// `test-google-a.com` address.
fn kept_domain(address: &str, domains: &[String]) -> bool {
    let Some((_, domain)) = address.rsplit_once('@') else {
        return false;
    };
    if domain.ends_with(TEST_DOMAIN_SUFFIX) || domain == &TEST_DOMAIN_SUFFIX[1..] {
        return false;
    }
    domains.is_empty() || domains.iter().any(|d| d == domain)
}

/// One entry of `emails` (or one alias): the address, whether it is the primary one, and
/// its type when Google gives one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EmailEntry {
    /// The address.
    pub address: String,
    /// `primary: true`.
    pub primary: bool,
    /// `type`: `home`, `work`, `other`, `custom`.
    pub kind: Option<String>,
}

impl EmailEntry {
    /// An entry with only an address.
    pub fn address(a: &str) -> EmailEntry {
        EmailEntry {
            address: a.to_string(),
            ..EmailEntry::default()
        }
    }
}

/// The entries of a user's `emails` (or `aliases`), read from any JSON shape without
/// building a JSON tree: a string, an object with an `address` string (and `primary`,
/// `type` when they are a bool and a string), or a list of those. Anything else (numbers,
/// objects without an address, ...) is skipped. Serialized as a list of
/// `{"address", "primary"?, "type"?}`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Emails(pub Vec<EmailEntry>);

impl Emails {
    /// Entries with only addresses.
    pub fn addresses<S: AsRef<str>>(list: &[S]) -> Emails {
        Emails(
            list.iter()
                .map(|a| EmailEntry::address(a.as_ref()))
                .collect(),
        )
    }
}

impl Serialize for Emails {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        struct Addr<'a>(&'a EmailEntry);
        impl Serialize for Addr<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(None)?;
                m.serialize_entry("address", &self.0.address)?;
                if self.0.primary {
                    m.serialize_entry("primary", &true)?;
                }
                if let Some(k) = &self.0.kind {
                    m.serialize_entry("type", k)?;
                }
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

/// Collects entries from one JSON value into `out`.
struct AddressVisitor<'a> {
    out: &'a mut Vec<EmailEntry>,
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
        self.out.push(EmailEntry::address(v));
        Ok(())
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<(), E> {
        self.out.push(EmailEntry {
            address: v,
            ..EmailEntry::default()
        });
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
        if self.at == At::Address {
            // An object where the address string should be: not an address.
            while map
                .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                .is_some()
            {}
            return Ok(());
        }
        let mut entry = EmailEntry::default();
        let mut address = false;
        while let Some(key) = map.next_key::<EmailKey>()? {
            match key {
                EmailKey::Address => {
                    // Only a string address counts: a nested list or object is not one.
                    let mut found = Vec::new();
                    map.next_value_seed(AddressVisitor {
                        out: &mut found,
                        at: At::Address,
                    })?;
                    if let Some(a) = found.pop() {
                        entry.address = a.address;
                        address = true;
                    }
                }
                EmailKey::Primary => {
                    entry.primary = matches!(map.next_value::<Loose>()?, Loose::Bool(true));
                }
                EmailKey::Type => {
                    if let Loose::Str(t) = map.next_value::<Loose>()? {
                        entry.kind = Some(t);
                    }
                }
                EmailKey::Other => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        if address {
            self.out.push(entry);
        }
        Ok(())
    }
}

/// A JSON value where only a string or a bool is meaningful; anything else is skipped.
enum Loose {
    Str(String),
    Bool(bool),
    Other,
}

impl<'de> Deserialize<'de> for Loose {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Loose;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Loose, E> {
                Ok(Loose::Str(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Loose, E> {
                Ok(Loose::Bool(v))
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Loose, E> {
                Ok(Loose::Other)
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Loose, E> {
                Ok(Loose::Other)
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Loose, E> {
                Ok(Loose::Other)
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Loose, E> {
                Ok(Loose::Other)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Loose, A::Error> {
                while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Loose::Other)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Loose, A::Error> {
                while a
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Loose::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// The keys of an `emails` entry that matter.
enum EmailKey {
    Address,
    Primary,
    Type,
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
                Ok(match v {
                    "address" => EmailKey::Address,
                    "primary" => EmailKey::Primary,
                    "type" => EmailKey::Type,
                    _ => EmailKey::Other,
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
    /// The first reason, if any.
    pub fn reason(&self) -> Option<&str> {
        self.error.errors.first().map(|e| e.reason.as_str())
    }

    /// Whether an error is in the `usageLimits` domain: a quota or a rate, whatever its
    /// reason (GAM's `checkGAPIError` retries them all).
    pub fn usage_limits(&self) -> bool {
        self.error.errors.iter().any(|e| e.domain == "usageLimits")
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
        assert_eq!(
            p1.users[0].secondary_addresses(&["example.com".into()]),
            vec!["ada@example.com", "ada.desk@example.com"]
        );
        assert_eq!(
            p1.users[0].secondary_addresses(&[]),
            vec!["ada@example.com", "ada@example.org", "ada.desk@example.com"]
        );
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
            assert!(
                u.secondary_addresses(&[]).is_empty(),
                "untyped entries are not kept"
            );
        }
    }

    #[test]
    fn emails_keep_only_string_addresses_at_the_places_google_puts_them() {
        let read = |v: serde_json::Value| -> Vec<String> {
            let e: Emails = serde_json::from_value(v.clone()).unwrap();
            // The same from bytes (the client's path), not only from a JSON tree.
            let b: Emails = serde_json::from_slice(&serde_json::to_vec(&v).unwrap()).unwrap();
            assert_eq!(e, b);
            e.0.into_iter().map(|e| e.address).collect()
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
        // Written back as a list of {"address", "primary", "type"}, which reads back the same.
        let mut e = Emails::addresses(&["a@example.com", "b@example.com"]);
        e.0[0].primary = true;
        e.0[1].kind = Some("work".into());
        let back: Emails = serde_json::from_slice(&serde_json::to_vec(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn entries_keep_their_type_and_primary_mark() {
        let e: Emails = serde_json::from_value(serde_json::json!([
            {"address": "ada@example.com", "primary": true},
            {"address": "ada@gmail.com", "type": "home"},
            {"address": "x@example.com", "type": 5, "primary": "yes"},
        ]))
        .unwrap();
        assert_eq!(
            e.0,
            [
                EmailEntry {
                    address: "ada@example.com".into(),
                    primary: true,
                    kind: None
                },
                EmailEntry {
                    address: "ada@gmail.com".into(),
                    primary: false,
                    kind: Some("home".into())
                },
                EmailEntry::address("x@example.com"),
            ]
        );
    }

    /// The shapes real captures show: a personal address, Google's test-google-a.com
    /// address, aliases in two domains, a work address, a custom one.
    fn real_shapes() -> GoogleUser {
        serde_json::from_value(serde_json::json!({
            "id": "1", "primaryEmail": "Ada@example.com",
            "emails": [
                {"address": "Ada@example.com", "primary": true},
                {"address": "ada.lovelace@gmail.com", "type": "home"},
                {"address": "ada@example.com.test-google-a.com"},
                {"address": "ada@example.org"},
                {"address": "a.l@example.com"},
                {"address": "ada.work@example.com", "type": "work"},
                {"address": "ada@partner.net", "type": "work"},
                {"address": "ada.custom@example.com", "type": "custom", "customType": "x"},
                {"address": "ada.other@example.com", "type": "other"}
            ],
            "aliases": ["a.l@example.com", "ada@example.org", "ADA@example.com"],
            "nonEditableAliases": ["ada@example.com.test-google-a.com"]
        }))
        .unwrap()
    }

    #[test]
    fn only_aliases_and_work_addresses_in_the_managed_domains_are_kept() {
        let u = real_shapes();
        assert_eq!(
            u.secondary_addresses(&["example.com".into()]),
            ["a.l@example.com", "ada.work@example.com"]
        );
        assert_eq!(
            u.secondary_addresses(&["example.com".into(), "example.org".into()]),
            ["a.l@example.com", "ada@example.org", "ada.work@example.com"]
        );
        // No domains configured: every domain, but never Google's test-google-a.com one.
        assert_eq!(
            u.secondary_addresses(&[]),
            [
                "a.l@example.com",
                "ada@example.org",
                "ada.work@example.com",
                "ada@partner.net"
            ]
        );
        let mut odd = real_shapes();
        odd.aliases = Some(Emails::addresses(&[
            "x@dom.test-google-a.com",
            "y@test-google-a.com",
        ]));
        odd.emails = None;
        assert!(odd.secondary_addresses(&[]).is_empty());
    }
}
