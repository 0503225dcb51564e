//! SCIM error responses (RFC 7644 §3.12): every failure the endpoint returns has an
//! `urn:ietf:params:scim:api:messages:2.0:Error` body, never a bare status or internals.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::provision::ProvisionError;
use crate::store::StoreError;

/// The SCIM error message schema.
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// The media type of every SCIM response body.
pub const SCIM_CONTENT_TYPE: &str = "application/scim+json";

/// The `scimType` detail of a 400 (RFC 7644 Table 9) or 409.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScimType {
    /// The filter is malformed or not supported.
    InvalidFilter,
    /// The request body is not valid JSON or not a valid SCIM message.
    InvalidSyntax,
    /// A value has the wrong type or is not acceptable.
    InvalidValue,
    /// A PATCH path selects nothing, or a remove has no path.
    NoTarget,
    /// The request tries to change a read-only or immutable attribute.
    Mutability,
    /// The request would return or touch too many resources.
    TooMany,
    /// A unique value is already taken.
    Uniqueness,
    /// The path is not a valid attribute path.
    InvalidPath,
}

impl ScimType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ScimType::InvalidFilter => "invalidFilter",
            ScimType::InvalidSyntax => "invalidSyntax",
            ScimType::InvalidValue => "invalidValue",
            ScimType::NoTarget => "noTarget",
            ScimType::Mutability => "mutability",
            ScimType::TooMany => "tooMany",
            ScimType::Uniqueness => "uniqueness",
            ScimType::InvalidPath => "invalidPath",
        }
    }
}

/// An error to answer with: a status, an optional `scimType` and a human `detail`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScimError {
    /// HTTP status.
    pub status: StatusCode,
    /// The 400/409 refinement.
    pub scim_type: Option<ScimType>,
    /// What went wrong, for the admin reading the client's log. Never internals.
    pub detail: String,
}

impl ScimError {
    /// Any status with a detail.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        ScimError {
            status,
            scim_type: None,
            detail: detail.into(),
        }
    }

    /// A 400 with a `scimType`.
    pub fn bad_request(scim_type: ScimType, detail: impl Into<String>) -> Self {
        ScimError {
            status: StatusCode::BAD_REQUEST,
            scim_type: Some(scim_type),
            detail: detail.into(),
        }
    }

    /// 400 invalidFilter.
    pub fn invalid_filter(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidFilter, detail)
    }

    /// 400 invalidValue.
    pub fn invalid_value(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidValue, detail)
    }

    /// 400 invalidSyntax.
    pub fn invalid_syntax(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidSyntax, detail)
    }

    /// 400 mutability.
    pub fn mutability(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::Mutability, detail)
    }

    /// 400 noTarget.
    pub fn no_target(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::NoTarget, detail)
    }

    /// 404 for a resource id.
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("{what} not found"))
    }

    /// 500 without internals; the cause is logged, not returned.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "SCIM request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; the server log has the details",
        )
    }

    /// 503 once the store cannot write to disk: the daemon stops so that systemd restarts
    /// it, and the client may retry. The cause is logged, not returned.
    pub fn read_only() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server could not write to its disk and is restarting; try again shortly",
        )
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        let mut body = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let (Some(t), Some(obj)) = (self.scim_type, body.as_object_mut()) {
            obj.insert("scimType".into(), json!(t.as_str()));
        }
        body
    }
}

impl std::fmt::Display for ScimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.detail)
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, scim_json(&self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"retrac-sync SCIM\""),
            );
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // Every 503 here is a moment's state (a busy budget, a restart): say when to retry.
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

/// A JSON body with the SCIM media type.
pub fn scim_json(value: &serde_json::Value) -> Response {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(SCIM_CONTENT_TYPE),
        )],
        bytes,
    )
        .into_response()
}

impl From<StoreError> for ScimError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Io(_) => {
                tracing::error!(error = %e, "SCIM request failed: the store is read-only");
                ScimError::read_only()
            }
            StoreError::NoSpace { .. } => {
                tracing::warn!(error = %e, "SCIM write refused: the disk is nearly full");
                ScimError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            e => ScimError::internal(e),
        }
    }
}

impl From<ProvisionError> for ScimError {
    fn from(e: ProvisionError) -> Self {
        match e {
            ProvisionError::UserNameTaken { user_name, .. } => ScimError {
                status: StatusCode::CONFLICT,
                scim_type: Some(ScimType::Uniqueness),
                detail: format!(
                    "userName {user_name:?} is already taken (compared case-insensitively)"
                ),
            },
            ProvisionError::ExternalIdTaken { external_id, .. } => ScimError {
                status: StatusCode::CONFLICT,
                scim_type: Some(ScimType::Uniqueness),
                detail: format!("externalId {external_id:?} is already linked to another user"),
            },
            ProvisionError::VersionMismatch {
                expected, actual, ..
            } => ScimError::new(
                StatusCode::PRECONDITION_FAILED,
                format!("the resource is at version W/\"{actual}\", not W/\"{expected}\""),
            ),
            ProvisionError::NotFound(id) => ScimError::not_found(format!("User {id}")),
            ProvisionError::Forbidden { what, .. } => {
                ScimError::new(StatusCode::FORBIDDEN, format!("SCIM may not {what}"))
            }
            ProvisionError::Store(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_failure_is_a_500_that_hides_its_cause() {
        let e = ScimError::from(StoreError::Corrupt(
            "member record at /var/lib/secret".into(),
        ));
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        let body = e.body().to_string();
        assert!(!body.contains("/var/lib/secret"), "{body}");
        assert!(body.contains("\"status\":\"500\""), "{body}");
    }

    #[test]
    fn a_store_that_cannot_write_is_a_503_and_an_internal_failure_a_500() {
        let io = || StoreError::Io("flush failed: EIO at /var/lib/secret".into());
        for e in [
            ScimError::from(io()),
            ScimError::from(ProvisionError::Store(io())),
        ] {
            assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
            let body = e.body().to_string();
            assert!(!body.contains("/var/lib/secret"), "{body}");
            assert!(body.contains("restarting"), "{body}");
        }
        let e = ScimError::from(StoreError::Internal("task panicked".into()));
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!e.body().to_string().contains("panicked"));
    }

    #[test]
    fn provision_refusals_map_to_scim_statuses() {
        use crate::member::MemberId;
        let id = MemberId::new_random();
        let cases = [
            (
                ProvisionError::UserNameTaken {
                    user_name: "a@b.co".into(),
                    existing: id,
                },
                StatusCode::CONFLICT,
                Some(ScimType::Uniqueness),
            ),
            (
                ProvisionError::ExternalIdTaken {
                    external_id: "x".into(),
                    existing: id,
                },
                StatusCode::CONFLICT,
                Some(ScimType::Uniqueness),
            ),
            (
                ProvisionError::VersionMismatch {
                    id,
                    expected: 1,
                    actual: 2,
                },
                StatusCode::PRECONDITION_FAILED,
                None,
            ),
            (ProvisionError::NotFound(id), StatusCode::NOT_FOUND, None),
            (
                ProvisionError::Forbidden {
                    actor: "scim:x".into(),
                    what: "assign roles",
                },
                StatusCode::FORBIDDEN,
                None,
            ),
        ];
        for (e, status, t) in cases {
            let s = ScimError::from(e);
            assert_eq!((s.status, s.scim_type), (status, t));
        }
    }
}
