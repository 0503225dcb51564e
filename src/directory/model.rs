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
    /// Google types this as `any`: normally a list of `{address, primary, type}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emails: Option<serde_json::Value>,
}

impl GoogleUser {
    /// Whether the user may sign in: not suspended and not archived.
    pub fn is_active(&self) -> bool {
        !self.suspended.unwrap_or(false) && !self.archived.unwrap_or(false)
    }

    /// Every address in `emails` other than the primary one, whatever shape `emails` has.
    pub fn other_addresses(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let primary = crate::member::normalize_email(&self.primary_email);
        let mut push = |a: &str| {
            let n = crate::member::normalize_email(a);
            if !a.trim().is_empty() && n != primary && !out.iter().any(|o| o.to_lowercase() == n) {
                out.push(a.trim().to_string());
            }
        };
        match &self.emails {
            Some(serde_json::Value::Array(items)) => {
                for item in items {
                    match item {
                        serde_json::Value::String(s) => push(s),
                        serde_json::Value::Object(o) => {
                            if let Some(serde_json::Value::String(s)) = o.get("address") {
                                push(s);
                            }
                        }
                        _ => {}
                    }
                }
            }
            Some(serde_json::Value::Object(o)) => {
                if let Some(serde_json::Value::String(s)) = o.get("address") {
                    push(s);
                }
            }
            Some(serde_json::Value::String(s)) => push(s),
            _ => {}
        }
        out
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
}
