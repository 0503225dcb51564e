//! Google's own names and shapes that the fake sends. They are Google's, not retrac-sync's:
//! the fake keeps its copy so that it depends on nothing of the daemon it tests.

use serde::Serialize;

/// The Directory API's read-only scope for users.
pub const SCOPE_USERS: &str = "https://www.googleapis.com/auth/admin.directory.user.readonly";

/// The Directory API's read-only scope for group members.
pub const SCOPE_GROUP_MEMBERS: &str =
    "https://www.googleapis.com/auth/admin.directory.group.member.readonly";

/// Google's JSON error body: `{"error": {"code", "message", "errors": [{"message",
/// "domain", "reason"}]}}` (<https://cloud.google.com/apis/design/errors#http_mapping>;
/// samples in `tests/fixtures/google/error-*.json`).
#[derive(Serialize)]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize)]
struct ErrorDetail {
    code: u16,
    message: String,
    errors: Vec<ErrorItem>,
}

#[derive(Serialize)]
struct ErrorItem {
    message: String,
    domain: &'static str,
    reason: String,
}

impl ErrorBody {
    /// A body with one error of `reason`; quota reasons are in the `usageLimits` domain.
    pub(crate) fn new(code: u16, reason: &str, message: &str) -> ErrorBody {
        let domain = match reason {
            "rateLimitExceeded"
            | "userRateLimitExceeded"
            | "quotaExceeded"
            | "dailyLimitExceeded"
            | "limitExceeded" => "usageLimits",
            _ => "global",
        };
        ErrorBody {
            error: ErrorDetail {
                code,
                message: message.to_string(),
                errors: vec![ErrorItem {
                    message: message.to_string(),
                    domain,
                    reason: reason.to_string(),
                }],
            },
        }
    }
}
