//! Discovery documents (RFC 7643 §5-§7): ServiceProviderConfig, ResourceTypes and Schemas.
//!
//! Everything published here round-trips: attributes the member does not hold are kept
//! verbatim (see `resource`). `password` and `groups` are not published: no password is
//! ever stored, and groups are not served. The owner's locations and role are not part of
//! the SCIM surface at all: they belong to the workspace owner (CLI), not to the identity
//! provider.

use serde_json::{json, Value};

use crate::config::ScimConfig;
use crate::scim::filter::USER_SCHEMA;
use crate::scim::resource::ENTERPRISE_SCHEMA;

/// Most resources one list or search returns by default (advertised as `filter.maxResults`).
pub const MAX_RESULTS: usize = 1000;

/// The size limits on what a SCIM client may store and ask for (`[scim]` keys; the "Limits"
/// table of docs/admin/scim.md). The daemon adds them to the app as an `Extension`; without
/// one, the defaults apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most values in one multi-valued attribute (`[scim].max_values_per_attribute`).
    pub max_values: usize,
    /// Most bytes of JSON kept per member besides its own fields (`[scim].max_extra_bytes`).
    pub max_extra_bytes: usize,
    /// Most resources per list or search answer (`[scim].max_results`).
    pub max_results: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from_config(&ScimConfig::default())
    }
}

impl Limits {
    /// The limits a `[scim]` section sets.
    pub fn from_config(c: &ScimConfig) -> Limits {
        Limits {
            max_values: c.max_values_per_attribute,
            max_extra_bytes: c.max_extra_bytes,
            max_results: c.max_results,
        }
    }
}

/// The ListResponse message schema.
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// The ServiceProviderConfig document.
pub fn service_provider_config(base_url: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://github.com/retrac/retrac-sync#scim",
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": false},
        "sort": {"supported": true},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "A token made with `retrac-sync token create`, sent as `Authorization: Bearer rtsc_...`",
            "primary": true
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base_url}/ServiceProviderConfig")
        }
    })
}

/// The User resource type.
pub fn user_resource_type(base_url: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "A member of the Retrac workspace",
        "schema": USER_SCHEMA,
        "schemaExtensions": [
            {"schema": ENTERPRISE_SCHEMA, "required": false}
        ],
        "meta": {"resourceType": "ResourceType", "location": format!("{base_url}/ResourceTypes/User")}
    })
}

struct A {
    v: Value,
}

fn attr(name: &str, ty: &str) -> A {
    A {
        v: json!({
            "name": name,
            "type": ty,
            "multiValued": false,
            "description": name,
            "required": false,
            "caseExact": false,
            "mutability": "readWrite",
            "returned": "default",
            "uniqueness": "none"
        }),
    }
}

impl A {
    fn set(mut self, k: &str, v: Value) -> A {
        if let Some(o) = self.v.as_object_mut() {
            o.insert(k.into(), v);
        }
        self
    }
    fn multi(self) -> A {
        self.set("multiValued", json!(true))
    }
    fn required(self) -> A {
        self.set("required", json!(true))
    }
    fn read_only(self) -> A {
        self.set("mutability", json!("readOnly"))
    }
    fn subs(self, subs: Vec<A>) -> A {
        self.set(
            "subAttributes",
            Value::Array(subs.into_iter().map(|a| a.v).collect()),
        )
    }
    fn canonical(self, values: &[&str]) -> A {
        self.set("canonicalValues", json!(values))
    }
    fn refs(self, types: &[&str]) -> A {
        self.set("referenceTypes", json!(types))
    }
}

/// The usual sub-attributes of a multi-valued attribute.
fn multi_subs(value_type: &str, kinds: &[&str]) -> Vec<A> {
    vec![
        attr("value", value_type),
        attr("display", "string"),
        attr("type", "string").canonical(kinds),
        attr("primary", "boolean"),
    ]
}

fn schema_doc(id: &str, name: &str, description: &str, attrs: Vec<A>, base_url: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": id,
        "name": name,
        "description": description,
        "attributes": attrs.into_iter().map(|a| a.v).collect::<Vec<_>>(),
        "meta": {"resourceType": "Schema", "location": format!("{base_url}/Schemas/{id}")}
    })
}

/// The core User schema, as served.
pub fn user_schema(base_url: &str) -> Value {
    let attrs = vec![
        attr("userName", "string")
            .required()
            .set("uniqueness", json!("server"))
            .set(
                "description",
                json!("The member's primary email address; unique, compared case-insensitively"),
            ),
        attr("name", "complex").subs(vec![
            attr("formatted", "string"),
            attr("familyName", "string"),
            attr("givenName", "string"),
            attr("middleName", "string"),
            attr("honorificPrefix", "string"),
            attr("honorificSuffix", "string"),
        ]),
        attr("displayName", "string"),
        attr("nickName", "string"),
        attr("profileUrl", "reference").refs(&["external"]),
        attr("title", "string"),
        attr("userType", "string"),
        attr("preferredLanguage", "string"),
        attr("locale", "string"),
        attr("timezone", "string"),
        // Every member has an `active` value, so it cannot be unassigned; a create without
        // it makes an active member (a default, RFC 7644 §3.3).
        attr("active", "boolean").required().set(
            "description",
            json!("false = deactivated: the member keeps its record but loses workspace access"),
        ),
        attr("emails", "complex")
            .multi()
            .subs(multi_subs("string", &["work", "home", "other"])),
        attr("phoneNumbers", "complex").multi().subs(multi_subs(
            "string",
            &["work", "home", "mobile", "fax", "pager", "other"],
        )),
        attr("ims", "complex").multi().subs(multi_subs(
            "string",
            &["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"],
        )),
        attr("photos", "complex").multi().subs(vec![
            attr("value", "reference").refs(&["external"]),
            attr("display", "string"),
            attr("type", "string").canonical(&["photo", "thumbnail"]),
            attr("primary", "boolean"),
        ]),
        attr("addresses", "complex").multi().subs(vec![
            attr("formatted", "string"),
            attr("streetAddress", "string"),
            attr("locality", "string"),
            attr("region", "string"),
            attr("postalCode", "string"),
            attr("country", "string"),
            attr("type", "string").canonical(&["work", "home", "other"]),
            attr("primary", "boolean"),
        ]),
        attr("entitlements", "complex")
            .multi()
            .subs(multi_subs("string", &[])),
        attr("roles", "complex")
            .multi()
            .subs(multi_subs("string", &[])),
        attr("x509Certificates", "complex")
            .multi()
            .subs(multi_subs("binary", &[])),
    ];
    schema_doc(USER_SCHEMA, "User", "User Account", attrs, base_url)
}

/// The Enterprise User extension schema.
pub fn enterprise_schema(base_url: &str) -> Value {
    let attrs = vec![
        attr("employeeNumber", "string"),
        attr("costCenter", "string"),
        attr("organization", "string"),
        attr("division", "string"),
        attr("department", "string"),
        attr("manager", "complex").subs(vec![
            attr("value", "string"),
            attr("$ref", "reference").refs(&["User"]),
            attr("displayName", "string").read_only(),
        ]),
    ];
    schema_doc(
        ENTERPRISE_SCHEMA,
        "EnterpriseUser",
        "Enterprise User",
        attrs,
        base_url,
    )
}

/// Every schema served, in a stable order.
pub fn all_schemas(base_url: &str) -> Vec<Value> {
    vec![user_schema(base_url), enterprise_schema(base_url)]
}

/// A ListResponse of discovery documents (not paged: there are only a few).
pub fn list(resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": resources.len(),
        "startIndex": 1,
        "itemsPerPage": resources.len(),
        "Resources": resources
    })
}
