//! PATCH (RFC 7644 §3.5.2) over a resource's JSON.
//!
//! The operations run on a copy, so a request applies whole or not at all. Besides the
//! RFC's shapes it takes what real clients send (fixtures in `tests/fixtures/scim/`):
//! `op` in any case, path-less values whose keys are paths (`"name.givenName"`, Okta's
//! `{"active": false}`), booleans as `"True"`/`"False"` (coerced when the resource is read
//! back), and a `replace` on a value path that matches nothing, which adds the value.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::scim::error::ScimError;
use crate::scim::filter::{self, AttrPath, CompValue, CompareOp, Filter, PatchPath};
use crate::scim::resource::{canonical_key, too_many_values, MULTI_VALUED};
use crate::scim::schema::Limits;

/// Most operations accepted in one request.
const MAX_OPERATIONS: usize = 1000;

/// One PATCH operation kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `add`
    Add,
    /// `replace`
    Replace,
    /// `remove`
    Remove,
}

/// Applies a PatchOp body to `resource` (a JSON object) under the default [`Limits`]. On
/// error `resource` is unchanged.
pub fn apply(resource: &mut Value, body: &Value) -> Result<(), ScimError> {
    apply_with(resource, body, &Limits::default())
}

/// [`apply`] under the given limits. A value with more than `max_values` values is refused
/// before any work, and so is an operation that would grow an attribute past it, so the
/// cost of a request stays linear in its size.
pub fn apply_with(resource: &mut Value, body: &Value, limits: &Limits) -> Result<(), ScimError> {
    let ops = match filter::get_ci(body, "Operations") {
        Some(Value::Array(ops)) => ops,
        Some(_) => return Err(ScimError::invalid_syntax("Operations must be an array")),
        None if body.is_object() => {
            return Err(ScimError::invalid_syntax(
                "a PATCH body needs an Operations array (RFC 7644 §3.5.2)",
            ))
        }
        None => {
            return Err(ScimError::invalid_syntax(
                "a PATCH body must be a JSON object",
            ))
        }
    };
    if ops.is_empty() {
        return Err(ScimError::invalid_syntax("Operations is empty"));
    }
    if ops.len() > MAX_OPERATIONS {
        return Err(ScimError::bad_request(
            crate::scim::error::ScimType::TooMany,
            format!("at most {MAX_OPERATIONS} operations per PATCH"),
        ));
    }
    for (i, op) in ops.iter().enumerate() {
        if let Some((what, n)) = oversized_value(op, limits) {
            let mut e = too_many_values(&what, n, limits);
            e.detail = format!("operation {}: {}", i + 1, e.detail);
            return Err(e);
        }
    }
    let mut work = resource.clone();
    for (i, op) in ops.iter().enumerate() {
        apply_op(&mut work, op, limits).map_err(|mut e| {
            e.detail = format!("operation {}: {}", i + 1, e.detail);
            e
        })?;
    }
    *resource = work;
    Ok(())
}

/// An array in an operation's value (the value itself, or one level inside a path-less
/// object) longer than `max_values`: what holds it and how long it is.
fn oversized_value(op: &Value, limits: &Limits) -> Option<(String, usize)> {
    let path = || match filter::get_ci(op, "path") {
        Some(Value::String(p)) => p.clone(),
        _ => "value".to_string(),
    };
    match filter::get_ci(op, "value")? {
        Value::Array(a) if a.len() > limits.max_values => Some((path(), a.len())),
        Value::Object(o) => o.iter().find_map(|(k, v)| match v {
            Value::Array(a) if a.len() > limits.max_values => Some((k.clone(), a.len())),
            _ => None,
        }),
        _ => None,
    }
}

fn apply_op(resource: &mut Value, op: &Value, limits: &Limits) -> Result<(), ScimError> {
    if !op.is_object() {
        return Err(ScimError::invalid_syntax(
            "each operation must be an object",
        ));
    }
    let kind = match filter::get_ci(op, "op") {
        Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "add" => Op::Add,
            "replace" => Op::Replace,
            "remove" => Op::Remove,
            _ => {
                return Err(ScimError::invalid_syntax(format!(
                    "op {s:?} is not add, replace or remove"
                )))
            }
        },
        _ => {
            return Err(ScimError::invalid_syntax(
                "op is required (add, replace or remove)",
            ))
        }
    };
    let path = match filter::get_ci(op, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(filter::parse_patch_path(s).map_err(path_error)?),
        Some(_) => return Err(ScimError::invalid_syntax("path must be a string")),
    };
    let value = filter::get_ci(op, "value").cloned();
    // A path naming a whole extension (`urn:...:enterprise:2.0:User`) targets its object.
    if let Some(Value::String(raw)) = filter::get_ci(op, "path") {
        if let Some(urn) = extension_key(resource, raw.trim()) {
            return whole_extension(resource, kind, &urn, value);
        }
    }
    match (kind, path) {
        (Op::Remove, None) => Err(ScimError::no_target("remove needs a path")),
        (Op::Remove, Some(p)) => remove(resource, &p, value.as_ref()),
        (_, Some(p)) => {
            let value = value
                .ok_or_else(|| ScimError::invalid_syntax(format!("{kind:?} needs a value")))?;
            set(resource, kind, &p, value, limits)
        }
        (_, None) => {
            let Some(Value::Object(map)) = value else {
                return Err(ScimError::invalid_syntax(
                    "an operation without a path needs an object value",
                ));
            };
            for (k, v) in map {
                let p = key_as_path(resource, &k, &v)?;
                match p {
                    KeyPath::Extension(urn) => {
                        let Value::Object(inner) = v else { continue };
                        for (ik, iv) in inner {
                            let attr = AttrPath::parse(&ik).map_err(path_error)?;
                            let pp = PatchPath {
                                attr: AttrPath {
                                    urn: Some(urn.clone()),
                                    ..attr
                                },
                                filter: None,
                                sub_after_filter: None,
                            };
                            set(resource, kind, &pp, iv, limits)?;
                        }
                    }
                    KeyPath::Path(pp) => set(resource, kind, &pp, v, limits)?,
                }
            }
            Ok(())
        }
    }
}

/// A refused PATCH path: `invalidPath`, or `invalidFilter` when its value filter passes a
/// size limit: a filter gets the same answer however it arrives (query, `.search` body or
/// PATCH path; docs/decisions/0001-scim-input-limits.md).
fn path_error(e: filter::FilterError) -> ScimError {
    if e.limit {
        ScimError::invalid_filter(format!("path: {}", e.detail))
    } else {
        ScimError::bad_request(crate::scim::error::ScimType::InvalidPath, e.detail)
    }
}

/// The resource key of an extension a path names as a whole, if it does.
fn extension_key(resource: &Value, raw: &str) -> Option<String> {
    if !filter::has_urn_prefix(raw) {
        return None;
    }
    if let Some(k) = canonical_key(raw).filter(|k| k.starts_with("urn:")) {
        if !k.eq_ignore_ascii_case(crate::scim::filter::USER_SCHEMA) {
            return Some(k.to_string());
        }
    }
    resource
        .as_object()?
        .iter()
        .find(|(k, v)| k.eq_ignore_ascii_case(raw) && v.is_object())
        .map(|(k, _)| k.clone())
}

fn whole_extension(
    resource: &mut Value,
    kind: Op,
    urn: &str,
    value: Option<Value>,
) -> Result<(), ScimError> {
    let Some(root) = resource.as_object_mut() else {
        return Err(ScimError::no_target("the resource is not an object"));
    };
    match kind {
        Op::Remove => {
            root.remove(urn);
            Ok(())
        }
        Op::Add | Op::Replace => {
            let Some(Value::Object(new)) = value else {
                return Err(ScimError::invalid_value(format!(
                    "{urn} takes an object of its attributes"
                )));
            };
            let slot = root
                .entry(urn.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            match slot {
                Value::Object(have) => {
                    for (k, v) in new {
                        if k.eq_ignore_ascii_case("schemas") {
                            continue;
                        }
                        let key = key_in(have, &k);
                        have.insert(key, v);
                    }
                }
                other => *other = Value::Object(new),
            }
            Ok(())
        }
    }
}

enum KeyPath {
    Extension(String),
    Path(PatchPath),
}

/// A key of a path-less value: a schema URN holding an extension's attributes, or a path.
fn key_as_path(resource: &Value, key: &str, v: &Value) -> Result<KeyPath, ScimError> {
    if filter::has_urn_prefix(key) && v.is_object() {
        let known = canonical_key(key).filter(|k| k.starts_with("urn:"));
        let present = resource
            .as_object()
            .and_then(|o| o.keys().find(|k| k.eq_ignore_ascii_case(key)).cloned());
        if let Some(urn) = known.map(str::to_string).or(present) {
            return Ok(KeyPath::Extension(urn));
        }
        if !key.contains('.') && AttrPath::parse(key).is_err() {
            return Ok(KeyPath::Extension(key.to_string()));
        }
    }
    filter::parse_patch_path(key)
        .map(KeyPath::Path)
        .map_err(path_error)
}

fn read_only(attr: &AttrPath) -> Result<(), ScimError> {
    if attr.in_core()
        && ["id", "meta", "schemas", "groups"]
            .iter()
            .any(|n| attr.name.eq_ignore_ascii_case(n))
    {
        return Err(ScimError::mutability(format!("{attr} is read-only")));
    }
    Ok(())
}

/// The object holding the path's attribute (the resource, or an extension object), created
/// when `create` is set.
fn container<'a>(
    resource: &'a mut Value,
    attr: &AttrPath,
    create: bool,
) -> Option<&'a mut Map<String, Value>> {
    let root = resource.as_object_mut()?;
    match &attr.urn {
        Some(u) if !attr.in_core() => {
            let key = root
                .keys()
                .find(|k| k.eq_ignore_ascii_case(u))
                .cloned()
                .or_else(|| canonical_key(u).map(str::to_string))
                .unwrap_or_else(|| u.clone());
            if create && !root.get(&key).is_some_and(Value::is_object) {
                root.insert(key.clone(), Value::Object(Map::new()));
            }
            root.get_mut(&key)?.as_object_mut()
        }
        _ => Some(root),
    }
}

/// The key under which `name` lives in `obj`: the existing spelling, else the canonical one.
fn key_in(obj: &Map<String, Value>, name: &str) -> String {
    obj.keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .or_else(|| {
            canonical_key(name)
                .filter(|k| !k.starts_with("urn:"))
                .map(str::to_string)
        })
        .unwrap_or_else(|| name.to_string())
}

fn is_multi(attr: &AttrPath, existing: Option<&Value>, value: &Value) -> bool {
    (attr.in_core()
        && MULTI_VALUED
            .iter()
            .any(|m| m.eq_ignore_ascii_case(&attr.name)))
        || existing.is_some_and(Value::is_array)
        || (existing.is_none() && value.is_array())
}

fn set(
    resource: &mut Value,
    kind: Op,
    p: &PatchPath,
    value: Value,
    limits: &Limits,
) -> Result<(), ScimError> {
    read_only(&p.attr)?;
    let attr = &p.attr;
    let obj = container(resource, attr, true)
        .ok_or_else(|| ScimError::no_target(format!("{attr} has no place in this resource")))?;
    let key = key_in(obj, &attr.name);
    let multi = is_multi(attr, obj.get(&key), &value);
    if let Some(f) = &p.filter {
        let items = obj
            .entry(key.clone())
            .or_insert_with(|| Value::Array(Vec::new()));
        let Value::Array(items) = items else {
            return Err(ScimError::no_target(format!("{key} is not multi-valued")));
        };
        let mut hit = false;
        for item in items.iter_mut().filter(|i| filter::matches(f, i)) {
            hit = true;
            write_into_item(item, p.sub_after_filter.as_deref(), value.clone(), kind);
        }
        if !hit {
            // Nothing matched: build the value the filter describes and add it (what
            // Entra ID expects from `replace emails[type eq "work"].value`).
            let mut item = Value::Object(equalities(f));
            write_into_item(&mut item, p.sub_after_filter.as_deref(), value, Op::Replace);
            items.push(item);
            if items.len() > limits.max_values {
                return Err(too_many_values(&key, items.len(), limits));
            }
        }
        fix_primary(items);
        return Ok(());
    }
    match &attr.sub {
        Some(sub) => {
            let slot = obj.entry(key.clone()).or_insert_with(|| {
                if multi {
                    Value::Array(Vec::new())
                } else {
                    Value::Object(Map::new())
                }
            });
            match slot {
                Value::Object(o) => {
                    let sk = key_in(o, sub);
                    o.insert(sk, value);
                }
                Value::Array(items) => {
                    if items.is_empty() {
                        items.push(Value::Object(Map::new()));
                    }
                    for item in items.iter_mut() {
                        write_into_item(item, Some(sub), value.clone(), kind);
                    }
                }
                other => {
                    return Err(ScimError::invalid_value(format!(
                        "{key} is not complex, so {key}.{sub} cannot be set (it holds {other})"
                    )))
                }
            }
        }
        None if multi => {
            let new_items = match value {
                Value::Array(a) => a,
                Value::Null => Vec::new(),
                other => vec![other],
            };
            if new_items.len() > limits.max_values {
                return Err(too_many_values(&key, new_items.len(), limits));
            }
            match (kind, obj.get_mut(&key)) {
                (Op::Add, Some(Value::Array(items))) => {
                    // Values already there are not added again (RFC 7644 §3.5.2.1); the
                    // check is a set lookup, so an add stays linear in its size.
                    let mut seen: HashSet<String> = items.iter().map(identity).collect();
                    for n in new_items {
                        if n.get("primary").and_then(crate::scim::resource::boolean) == Some(true) {
                            for i in items.iter_mut() {
                                if let Some(o) = i.as_object_mut() {
                                    o.remove("primary");
                                }
                            }
                            seen = items.iter().map(identity).collect();
                        }
                        if seen.insert(identity(&n)) {
                            items.push(n);
                            if items.len() > limits.max_values {
                                return Err(too_many_values(&key, items.len(), limits));
                            }
                        }
                    }
                }
                _ => {
                    obj.insert(key, Value::Array(new_items));
                }
            }
        }
        None => match (obj.get_mut(&key), value) {
            // A complex attribute takes the sub-attributes given and keeps the others
            // (RFC 7644 §3.5.2.1 and §3.5.2.3).
            (Some(Value::Object(existing)), Value::Object(new)) => {
                for (k, v) in new {
                    let sk = key_in(existing, &k);
                    existing.insert(sk, v);
                }
            }
            (_, v) => {
                obj.insert(key, v);
            }
        },
    }
    Ok(())
}

fn write_into_item(item: &mut Value, sub: Option<&str>, value: Value, _kind: Op) {
    if !item.is_object() {
        *item = Value::Object(Map::new());
    }
    let Some(o) = item.as_object_mut() else {
        return;
    };
    match (sub, value) {
        (Some(sub), v) => {
            let sk = key_in(o, sub);
            o.insert(sk, v);
        }
        (None, Value::Object(new)) => {
            for (k, v) in new {
                let sk = key_in(o, &k);
                o.insert(sk, v);
            }
        }
        (None, v) => {
            o.insert("value".into(), v);
        }
    }
}

/// At most one value may be primary; keep the last one set.
fn fix_primary(items: &mut [Value]) {
    let primaries: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, i)| i.get("primary").and_then(crate::scim::resource::boolean) == Some(true))
        .map(|(n, _)| n)
        .collect();
    if primaries.len() > 1 {
        for n in &primaries[..primaries.len() - 1] {
            if let Some(o) = items[*n].as_object_mut() {
                o.insert("primary".into(), Value::Bool(false));
            }
        }
    }
}

/// The `sub eq value` terms of an `and` chain: what a new value must hold to match.
fn equalities(f: &Filter) -> Map<String, Value> {
    let mut out = Map::new();
    fn walk(f: &Filter, out: &mut Map<String, Value>) {
        match f {
            Filter::And(terms) => {
                for t in terms {
                    walk(t, out);
                }
            }
            Filter::Compare(p, CompareOp::Eq, v) if p.urn.is_none() && p.sub.is_none() => {
                let v = match v {
                    CompValue::Str(s) => Value::String(s.clone()),
                    CompValue::Bool(b) => Value::Bool(*b),
                    CompValue::Num(n) => Value::Number(n.clone()),
                    CompValue::Null => return,
                };
                out.insert(p.name.clone(), v);
            }
            _ => {}
        }
    }
    walk(f, &mut out);
    out
}

fn remove(resource: &mut Value, p: &PatchPath, value: Option<&Value>) -> Result<(), ScimError> {
    read_only(&p.attr)?;
    let attr = &p.attr;
    let Some(obj) = container(resource, attr, false) else {
        return Ok(());
    };
    let key = key_in(obj, &attr.name);
    if let Some(f) = &p.filter {
        let Some(Value::Array(items)) = obj.get_mut(&key) else {
            return Err(ScimError::no_target(format!(
                "{key} has no values to filter"
            )));
        };
        let before = items.len();
        let mut hit = false;
        match &p.sub_after_filter {
            None => items.retain(|i| !filter::matches(f, i)),
            Some(sub) => {
                for item in items.iter_mut().filter(|i| filter::matches(f, i)) {
                    hit = true;
                    if let Some(o) = item.as_object_mut() {
                        let sk = key_in(o, sub);
                        o.remove(&sk);
                    }
                }
            }
        }
        if items.len() == before && !hit {
            return Err(ScimError::no_target(format!(
                "no value of {key} matches the filter"
            )));
        }
        if items.is_empty() {
            obj.remove(&key);
        }
        return Ok(());
    }
    match &attr.sub {
        Some(sub) => match obj.get_mut(&key) {
            Some(Value::Object(o)) => {
                let sk = key_in(o, sub);
                o.remove(&sk);
            }
            Some(Value::Array(items)) => {
                for item in items.iter_mut() {
                    if let Some(o) = item.as_object_mut() {
                        let sk = key_in(o, sub);
                        o.remove(&sk);
                    }
                }
            }
            _ => {}
        },
        None => match (obj.get_mut(&key), value) {
            // Entra ID removes given values of a multi-valued attribute this way.
            (Some(Value::Array(items)), Some(Value::Array(gone))) if !gone.is_empty() => {
                let whole: HashSet<String> = gone.iter().map(identity).collect();
                let values: HashSet<String> = gone
                    .iter()
                    .filter_map(|g| g.get("value"))
                    .map(identity)
                    .collect();
                items.retain(|i| {
                    !(whole.contains(&identity(i))
                        || i.get("value")
                            .is_some_and(|v| values.contains(&identity(v))))
                });
                if items.is_empty() {
                    obj.remove(&key);
                }
            }
            _ => {
                obj.remove(&key);
            }
        },
    }
    Ok(())
}

/// A text that is equal for equal JSON values (object keys sorted), for set lookups:
/// `serde_json::Value` has no `Hash`.
fn identity(v: &Value) -> String {
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Object(o) => {
                let mut entries: Vec<(&String, &Value)> = o.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                out.push('{');
                for (k, v) in entries {
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    write(v, out);
                    out.push(',');
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for i in items {
                    write(i, out);
                    out.push(',');
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(v, &mut out);
    out
}
