//! Property tests: printing a filter parses back to the same tree, and random filters,
//! PATCH bodies and User bodies never panic.

use proptest::prelude::*;
use retrac_sync::scim::filter::{self, AttrPath, CompValue, CompareOp, Filter};
use retrac_sync::scim::{patch, resource};
use serde_json::{json, Value};

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("userName".to_string()),
        Just("emails".to_string()),
        Just("active".to_string()),
        Just("meta".to_string()),
        "[a-zA-Z][a-zA-Z0-9_-]{0,8}",
    ]
}

fn attr_path() -> impl Strategy<Value = AttrPath> {
    (
        prop::option::of(prop_oneof![
            Just("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".to_string()),
            Just("urn:ietf:params:scim:schemas:core:2.0:User".to_string()),
        ]),
        name(),
        prop::option::of(prop_oneof![
            Just("value".to_string()),
            Just("$ref".to_string()),
            name()
        ]),
    )
        .prop_map(|(urn, name, sub)| AttrPath { urn, name, sub })
}

fn comp_value() -> impl Strategy<Value = CompValue> {
    prop_oneof![
        any::<String>().prop_map(CompValue::Str),
        any::<i64>().prop_map(|n| CompValue::Num(n.into())),
        (-1.0e6f64..1.0e6).prop_map(|f| CompValue::Num(
            serde_json::Number::from_f64(f).unwrap_or_else(|| 0.into())
        )),
        any::<bool>().prop_map(CompValue::Bool),
        Just(CompValue::Null),
    ]
}

fn op() -> impl Strategy<Value = CompareOp> {
    prop_oneof![
        Just(CompareOp::Eq),
        Just(CompareOp::Ne),
        Just(CompareOp::Co),
        Just(CompareOp::Sw),
        Just(CompareOp::Ew),
        Just(CompareOp::Gt),
        Just(CompareOp::Ge),
        Just(CompareOp::Lt),
        Just(CompareOp::Le),
    ]
}

/// A comparison the parser accepts (co/sw/ew need strings; order needs no bool/null).
fn comparison() -> impl Strategy<Value = Filter> {
    (attr_path(), op(), comp_value()).prop_map(|(p, op, v)| {
        let v = match (op, v) {
            (CompareOp::Co | CompareOp::Sw | CompareOp::Ew, CompValue::Str(s)) => CompValue::Str(s),
            (CompareOp::Co | CompareOp::Sw | CompareOp::Ew, _) => CompValue::Str("x".into()),
            (
                CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le,
                CompValue::Bool(_) | CompValue::Null,
            ) => CompValue::Num(1.into()),
            (_, v) => v,
        };
        Filter::Compare(p, op, v)
    })
}

fn sub_only(p: AttrPath) -> AttrPath {
    AttrPath {
        urn: None,
        sub: None,
        ..p
    }
}

fn inner_filter() -> impl Strategy<Value = Filter> {
    let leaf = prop_oneof![
        comparison().prop_map(|f| match f {
            Filter::Compare(p, op, v) => Filter::Compare(sub_only(p), op, v),
            other => other,
        }),
        attr_path().prop_map(|p| Filter::Present(sub_only(p))),
    ];
    leaf.prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::Or(Box::new(a), Box::new(b))),
            inner.prop_map(|a| Filter::Not(Box::new(a))),
        ]
    })
}

fn any_filter() -> impl Strategy<Value = Filter> {
    let leaf = prop_oneof![
        comparison(),
        attr_path().prop_map(Filter::Present),
        (attr_path(), inner_filter())
            .prop_map(|(p, f)| Filter::ValuePath(AttrPath { sub: None, ..p }, Box::new(f))),
    ];
    leaf.prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::Or(Box::new(a), Box::new(b))),
            inner.prop_map(|a| Filter::Not(Box::new(a))),
        ]
    })
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        prop_oneof![
            Just("True".to_string()),
            Just("work".to_string()),
            Just("a@example.com".to_string()),
            any::<String>()
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("value".to_string()),
                    Just("type".to_string()),
                    Just("primary".to_string()),
                    Just("givenName".to_string()),
                    Just("name.givenName".to_string()),
                    Just("active".to_string()),
                    Just("emails".to_string()),
                    Just("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".to_string()),
                    Just("urn:retrac:params:scim:schemas:extension:2.0:Member".to_string()),
                    any::<String>(),
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn patch_path() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("emails[type eq \"work\"].value".to_string()),
        Just("emails[value co \"@\"]".to_string()),
        Just("name.givenName".to_string()),
        Just("active".to_string()),
        Just("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".to_string()),
        Just(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value".to_string()
        ),
        Just("urn:retrac:params:scim:schemas:extension:2.0:Member:locations".to_string()),
        Just("id".to_string()),
        any::<String>(),
    ]
}

fn operation() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just("add"), Just("Replace"), Just("REMOVE"), Just("bogus")],
        prop::option::of(patch_path()),
        prop::option::of(json_value()),
    )
        .prop_map(|(op, path, value)| {
            let mut o = serde_json::Map::new();
            o.insert("op".into(), json!(op));
            if let Some(p) = path {
                o.insert("path".into(), json!(p));
            }
            if let Some(v) = value {
                o.insert("value".into(), v);
            }
            Value::Object(o)
        })
}

fn grace() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": "x",
        "userName": "grace@example.com",
        "name": {"givenName": "Grace"},
        "emails": [{"value": "grace@example.com", "type": "work", "primary": true}],
        "active": true,
        "urn:retrac:params:scim:schemas:extension:2.0:Member": {"locations": [], "role": "member"}
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parse_of_print_is_the_same_filter(f in any_filter()) {
        let printed = f.to_string();
        let back = filter::parse(&printed);
        prop_assert_eq!(back.as_ref(), Ok(&f), "printed as {}", printed);
    }

    #[test]
    fn random_filter_text_never_panics(s in any::<String>()) {
        let _ = filter::parse(&s);
        let _ = filter::parse_patch_path(&s);
    }

    #[test]
    fn filter_like_text_never_panics(s in "[a-zA-Z.\\[\\]()\" :$0-9-]{0,60}") {
        if let Ok(f) = filter::parse(&s) {
            let _ = filter::matches(&f, &grace());
        }
    }

    #[test]
    fn random_patch_bodies_never_panic(ops in prop::collection::vec(operation(), 0..5)) {
        let mut doc = grace();
        let before = doc.clone();
        match patch::apply(&mut doc, &json!({"Operations": ops})) {
            Ok(()) => { let _ = resource::from_json(doc, Some(true)); }
            Err(_) => prop_assert_eq!(doc, before),
        }
    }

    #[test]
    fn random_user_bodies_never_panic(body in json_value()) {
        let _ = resource::from_json(body, None);
    }
}
