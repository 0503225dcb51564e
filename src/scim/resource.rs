//! A member as a SCIM User resource, and a SCIM User body as the directory-owned fields.
//!
//! The fields the project uses (userName, name, displayName, emails, active, externalId) live
//! in the member; every other attribute a client sends is kept verbatim in `scim_extra`, so
//! it comes back as it was sent. `name` and `emails` are also kept whole in `scim_extra`, so
//! their other sub-attributes (`formatted`, `display`, ...) survive; the member's own fields
//! win when the pull changed them since.
//!
//! The owner's locations and role are not SCIM attributes: they are never shown, and nothing
//! a client sends reaches them. A body that still carries the Retrac extension of earlier
//! versions (`urn:retrac:params:scim:schemas:extension:2.0:Member`) is treated like any other
//! extension this server does not declare: kept verbatim with the member's other attributes.

use serde_json::{json, Map, Value};

use crate::member::{DirectoryAttrs, Email, Field, Member, UserName};
use crate::scim::error::ScimError;
use crate::scim::filter::USER_SCHEMA;
use crate::scim::schema::Limits;

/// The Enterprise User extension (RFC 7643 §4.3).
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// The single-valued core attributes this server publishes, with their canonical spelling
/// (clients may use any case), but for the plain strings it keeps ([`KEPT_STRINGS`]); the
/// multi-valued ones are [`MULTI_VALUED`].
pub const SINGLE_VALUED: &[&str] = &[
    "id",
    "externalId",
    "meta",
    "schemas",
    "userName",
    "name",
    "displayName",
    "active",
];

/// Single-valued core string attributes the member has no field for: checked to be strings,
/// then kept verbatim.
const KEPT_STRINGS: &[&str] = &[
    "nickName",
    "profileUrl",
    "title",
    "userType",
    "preferredLanguage",
    "locale",
    "timezone",
];

/// Multi-valued core attributes: their values are arrays of objects.
pub const MULTI_VALUED: &[&str] = &[
    "emails",
    "phoneNumbers",
    "ims",
    "photos",
    "addresses",
    "entitlements",
    "roles",
    "x509Certificates",
];

/// Attributes the server never stores from a client: read-only ones it sets itself, and
/// ones it does not offer (no passwords are kept; groups are not served).
const NOT_STORED: &[&str] = &["id", "meta", "schemas", "password", "groups"];

/// Keys the member holds in its own fields.
const OWN_FIELDS: &[&str] = &["userName", "displayName", "active", "externalId"];

/// The canonical spelling of a top-level key, if it is a known attribute or schema URN.
pub fn canonical_key(key: &str) -> Option<&'static str> {
    SINGLE_VALUED
        .iter()
        .chain(KEPT_STRINGS)
        .chain(MULTI_VALUED)
        .chain(["password", "groups"].iter())
        .chain([ENTERPRISE_SCHEMA, USER_SCHEMA].iter())
        .find(|k| k.eq_ignore_ascii_case(key))
        .copied()
}

/// The prefix that names a core attribute by its schema: `urn:...:core:2.0:User:userName`.
fn strip_core_prefix(key: &str) -> &str {
    let n = USER_SCHEMA.len();
    match key.get(..n) {
        Some(head) if head.eq_ignore_ascii_case(USER_SCHEMA) && key[n..].starts_with(':') => {
            &key[n + 1..]
        }
        _ => key,
    }
}

/// Rewrites the top-level keys of a resource body to their canonical spelling: a known
/// attribute in any case, a core attribute named with its schema's URN
/// (`urn:...:core:2.0:User:password`), or nested under that URN as an object.
///
/// Two keys that name one attribute (`userName` and `USERNAME`, or `userName` and the same
/// under the core URN) are ambiguous: SCIM attribute names are case-insensitive (RFC 7643
/// §2.1), so the body gets 400 `invalidSyntax` naming the attribute, rather than one of them
/// winning in silence.
pub fn canonicalize(obj: Map<String, Value>) -> Result<Map<String, Value>, ScimError> {
    let mut out = Map::new();
    let put = |out: &mut Map<String, Value>, key: String, v: Value| {
        if out.keys().any(|k| k.eq_ignore_ascii_case(&key)) {
            return Err(ScimError::invalid_syntax(format!(
                "the attribute {key:?} is given twice in one object (attribute names are \
                 case-insensitive, and the core schema's URN names the same attribute)"
            )));
        }
        out.insert(key, v);
        Ok(())
    };
    for (k, v) in obj {
        let bare = strip_core_prefix(&k);
        let key = canonical_key(bare)
            .map(str::to_string)
            .unwrap_or_else(|| bare.to_string());
        // Attributes of the core schema may also be sent nested under its URN.
        if key == USER_SCHEMA {
            if let Value::Object(inner) = v {
                for (ik, iv) in canonicalize(inner)? {
                    put(&mut out, ik, iv)?;
                }
            }
            continue;
        }
        put(&mut out, key, scrub_passwords(v))?;
    }
    Ok(out)
}

/// Drops `password` (in any case, with or without the core URN) from the objects inside a
/// core attribute's value: the core schema says `returned: never` for it (RFC 7643 §4.1.1),
/// and this server keeps no password anywhere.
fn scrub_passwords(v: Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.into_iter()
                .filter(|(k, _)| !strip_core_prefix(k).eq_ignore_ascii_case("password"))
                .map(|(k, v)| (k, scrub_passwords(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(scrub_passwords).collect()),
        other => other,
    }
}

/// The SCIM JSON of a member. `location` is the absolute URL of the resource.
pub fn to_json(m: &Member, location: &str) -> Value {
    let mut obj = Map::new();
    let mut schemas = vec![json!(USER_SCHEMA)];
    obj.insert("id".into(), json!(m.id.to_string()));
    let mut name = match m.dir.scim_extra.get("name") {
        Some(Value::Object(n)) => n.clone(),
        _ => Map::new(),
    };
    for f in Field::ALL {
        let value = f.value(&m.dir);
        match f {
            // Not a SCIM attribute: the pull's key.
            Field::GoogleId => {}
            // Sub-attributes of `name`, set in the `name` the client sent.
            Field::GivenName | Field::FamilyName => set_or_remove(&mut name, f.name(), value),
            // The verbatim emails array wins only while it still says what the member holds.
            Field::Emails => {
                let emails = match m.dir.scim_extra.get("emails") {
                    Some(kept @ Value::Array(_))
                        if emails_of(kept).ok().as_ref() == Some(&m.dir.emails) =>
                    {
                        kept.clone()
                    }
                    _ => value,
                };
                if emails.as_array().is_some_and(|a| !a.is_empty()) {
                    obj.insert("emails".into(), emails);
                }
            }
            // The others by their name, when they have a value.
            _ if value.is_null() => {}
            _ => {
                obj.insert(f.name().into(), value);
            }
        }
    }
    if !name.is_empty() {
        obj.insert("name".into(), Value::Object(name));
    }
    for (k, v) in &m.dir.scim_extra {
        if k == "name" || k == "emails" || obj.contains_key(k) {
            continue;
        }
        if k.starts_with("urn:") && v.is_object() {
            schemas.push(json!(k));
        }
        obj.insert(k.clone(), v.clone());
    }
    obj.insert(
        "meta".into(),
        json!({
            "resourceType": "User",
            "created": m.created.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "lastModified": m.last_modified.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "location": location,
            "version": etag(m.version),
        }),
    );
    obj.insert("schemas".into(), Value::Array(schemas));
    Value::Object(obj)
}

/// The weak ETag of a version.
pub fn etag(version: u64) -> String {
    format!("W/\"{version}\"")
}

/// Sets `key` in `obj` (whatever the case of the key there), or removes it for `null`.
fn set_or_remove(obj: &mut Map<String, Value>, key: &str, value: Value) {
    obj.retain(|k, _| !k.eq_ignore_ascii_case(key));
    if !value.is_null() {
        obj.insert(key.into(), value);
    }
}

/// A body parsed into the directory-owned fields.
#[derive(Debug)]
pub struct ParsedUser {
    /// The fields to write.
    pub attrs: DirectoryAttrs,
}

/// Reads a User body (POST, PUT, or the result of a PATCH) under the default [`Limits`].
/// An absent `active` takes `keep_active` (the stored value on a replace), else true.
pub fn from_json(body: Value, keep_active: Option<bool>) -> Result<ParsedUser, ScimError> {
    from_json_with(body, keep_active, &Limits::default())
}

/// [`from_json`] under the given limits: a multi-valued attribute with more than
/// `max_values` values, or kept attributes larger than `max_extra_bytes`, get 400
/// `invalidValue` naming the limit.
pub fn from_json_with(
    body: Value,
    keep_active: Option<bool>,
    limits: &Limits,
) -> Result<ParsedUser, ScimError> {
    let Value::Object(obj) = body else {
        return Err(ScimError::invalid_syntax(
            "the request body must be a JSON object (a SCIM User)",
        ));
    };
    let mut obj = canonicalize(obj)?;
    // Unassigned attributes (RFC 7643 §2.5): null means "no value".
    obj.retain(|_, v| !v.is_null());
    let user_name = match obj.get("userName") {
        Some(Value::String(s)) => {
            let name = UserName::parse_identifier(s)
                .map_err(|e| ScimError::invalid_value(format!("userName: {e}")))?;
            if let Some(why) = crate::member::lookalike_reason(name.as_str()) {
                return Err(ScimError::invalid_value(format!(
                    "userName {:?} is refused: {why}",
                    name.as_str().escape_debug().to_string()
                )));
            }
            name
        }
        Some(other) => {
            return Err(ScimError::invalid_value(format!(
                "userName must be a string, not {}",
                kind(other)
            )))
        }
        None => return Err(ScimError::invalid_value("userName is required")),
    };
    let active = match obj.get("active") {
        None => keep_active.unwrap_or(true),
        Some(v) => boolean(v).ok_or_else(|| {
            ScimError::invalid_value(format!("active must be a boolean, not {}", kind(v)))
        })?,
    };
    let display_name = opt_string(&obj, "displayName")?;
    let external_id = opt_string(&obj, "externalId")?.filter(|s| !s.trim().is_empty());
    let (given_name, family_name) = match obj.get("name") {
        None => (None, None),
        Some(Value::Object(n)) => {
            let n = Value::Object(n.clone());
            (
                sub_string(&n, "name", "givenName")?,
                sub_string(&n, "name", "familyName")?,
            )
        }
        Some(other) => {
            return Err(ScimError::invalid_value(format!(
                "name must be an object, not {}",
                kind(other)
            )))
        }
    };
    for key in KEPT_STRINGS {
        opt_string(&obj, key)?;
    }
    check_value_counts(&obj, limits)?;
    for key in MULTI_VALUED {
        if let Some(v) = obj.get_mut(*key) {
            normalize_multi(key, v)?;
        }
    }
    if let Some(v) = obj.get(ENTERPRISE_SCHEMA) {
        if !v.is_object() {
            return Err(ScimError::invalid_value(format!(
                "{ENTERPRISE_SCHEMA} must be an object, not {}",
                kind(v)
            )));
        }
    }
    let emails = match obj.get("emails") {
        Some(v) => emails_of(v)?,
        None => Vec::new(),
    };
    for e in &emails {
        if let Some(why) = crate::member::lookalike_reason(&e.value) {
            return Err(ScimError::invalid_value(format!(
                "the email {:?} is refused: {why}",
                e.value.escape_debug().to_string()
            )));
        }
    }
    let mut extra = Map::new();
    for (k, v) in obj {
        if NOT_STORED.contains(&k.as_str()) || OWN_FIELDS.contains(&k.as_str()) {
            continue;
        }
        extra.insert(k, v);
    }
    let size = json_size(&extra);
    if size > limits.max_extra_bytes {
        return Err(ScimError::invalid_value(format!(
            "the attributes kept besides userName, displayName, active and externalId take \
             {size} bytes; at most {} are kept per user ([scim].max_extra_bytes)",
            limits.max_extra_bytes
        )));
    }
    Ok(ParsedUser {
        attrs: DirectoryAttrs {
            user_name,
            emails,
            given_name,
            family_name,
            display_name,
            active,
            google_id: None,
            external_id,
            scim_extra: extra,
        },
    })
}

/// Refuses an array attribute (top level, or inside an extension) with more values than
/// `[scim].max_values_per_attribute`.
fn check_value_counts(obj: &Map<String, Value>, limits: &Limits) -> Result<(), ScimError> {
    let arrays = obj.iter().flat_map(|(k, v)| match v {
        Value::Array(a) => vec![(k.clone(), a.len())],
        Value::Object(ext) if k.starts_with("urn:") => ext
            .iter()
            .filter_map(|(ik, iv)| iv.as_array().map(|a| (format!("{k}:{ik}"), a.len())))
            .collect(),
        _ => Vec::new(),
    });
    for (key, n) in arrays {
        if n > limits.max_values {
            return Err(too_many_values(&key, n, limits));
        }
    }
    Ok(())
}

/// The 400 for an attribute holding more than `[scim].max_values_per_attribute` values.
pub fn too_many_values(key: &str, n: usize, limits: &Limits) -> ScimError {
    ScimError::invalid_value(format!(
        "{key} has {n} values; at most {} are accepted per multi-valued attribute \
         ([scim].max_values_per_attribute)",
        limits.max_values
    ))
}

/// The length of a value's JSON, without building the text.
fn json_size(v: &Map<String, Value>) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing to a counter cannot fail; a failure would leave a smaller count.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// A boolean, also from the `"True"`/`"False"` strings some clients (Entra ID) send.
pub fn boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn opt_string(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, ScimError> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(ScimError::invalid_value(format!(
            "{key} must be a string, not {}",
            kind(other)
        ))),
    }
}

fn sub_string(obj: &Value, parent: &str, key: &str) -> Result<Option<String>, ScimError> {
    match crate::scim::filter::get_ci(obj, key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(ScimError::invalid_value(format!(
            "{parent}.{key} must be a string, not {}",
            kind(other)
        ))),
    }
}

/// Checks a multi-valued attribute: an array of objects (a lone object is taken as a list
/// of one), with `primary` as a boolean.
fn normalize_multi(key: &str, v: &mut Value) -> Result<(), ScimError> {
    if v.is_object() {
        *v = Value::Array(vec![v.take()]);
    }
    let Value::Array(items) = v else {
        return Err(ScimError::invalid_value(format!(
            "{key} must be an array, not {}",
            kind(v)
        )));
    };
    for item in items.iter_mut() {
        let Value::Object(o) = item else {
            return Err(ScimError::invalid_value(format!(
                "each value of {key} must be an object, not {}",
                kind(item)
            )));
        };
        let primary_key = o
            .keys()
            .find(|k| k.eq_ignore_ascii_case("primary"))
            .cloned();
        if let Some(pk) = primary_key {
            let p = o.remove(&pk).unwrap_or(Value::Null);
            if !p.is_null() {
                let b = boolean(&p).ok_or_else(|| {
                    ScimError::invalid_value(format!(
                        "{key}.primary must be a boolean, not {}",
                        kind(&p)
                    ))
                })?;
                o.insert("primary".into(), Value::Bool(b));
            }
        }
    }
    let primaries = items
        .iter()
        .filter(|i| i.get("primary") == Some(&Value::Bool(true)))
        .count();
    if primaries > 1 {
        return Err(ScimError::invalid_value(format!(
            "{key}: at most one value may be primary (RFC 7643 §2.4)"
        )));
    }
    Ok(())
}

/// The member's emails from a SCIM `emails` value.
fn emails_of(v: &Value) -> Result<Vec<Email>, ScimError> {
    let Value::Array(items) = v else {
        return Err(ScimError::invalid_value("emails must be an array"));
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let value = match crate::scim::filter::get_ci(item, "value") {
            Some(Value::String(s)) => s.clone(),
            None | Some(Value::Null) => continue,
            Some(other) => {
                return Err(ScimError::invalid_value(format!(
                    "emails.value must be a string, not {}",
                    kind(other)
                )))
            }
        };
        let kind_ = match crate::scim::filter::get_ci(item, "type") {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        let primary = crate::scim::filter::get_ci(item, "primary")
            .and_then(boolean)
            .unwrap_or(false);
        out.push(Email {
            value,
            kind: kind_,
            primary,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_key_is_spelled_canonically_whatever_its_case() {
        for (sent, canonical) in [
            ("USERNAME", "userName"),
            ("externalid", "externalId"),
            ("NickName", "nickName"),
            ("TIMEZONE", "timezone"),
            ("Emails", "emails"),
            ("x509certificates", "x509Certificates"),
            ("PASSWORD", "password"),
        ] {
            assert_eq!(canonical_key(sent), Some(canonical), "{sent}");
        }
        assert_eq!(canonical_key("favouriteColour"), None);
    }

    #[test]
    fn a_kept_string_attribute_must_be_a_string_and_is_kept_verbatim() {
        let err = from_json(json!({"userName": "ada@example.com", "Title": 5}), None).unwrap_err();
        assert!(
            format!("{err:?}").contains("title must be a string"),
            "{err:?}"
        );
        let ok = from_json(
            json!({"userName": "ada@example.com", "TITLE": "Engineer"}),
            None,
        )
        .unwrap();
        assert_eq!(ok.attrs.scim_extra["title"], "Engineer");
    }
}
