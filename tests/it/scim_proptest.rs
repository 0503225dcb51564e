//! Property tests: printing a filter parses back to the same tree; random filters (up to
//! 10,000 characters), PATCH bodies and User bodies never panic; the `sortBy` order is total.

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
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
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(Filter::and),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Filter::or),
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
    leaf.prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(Filter::and),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Filter::or),
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

/// Filter-like text up to 10,000 characters: filter words, operators, brackets and quotes in
/// any order, so that long chains, deep nesting and unbalanced input all come up.
fn long_filter_text() -> impl Strategy<Value = String> {
    const PIECES: &[&str] = &[
        "userName", "emails", "a", " ", " and ", " or ", "not ", " pr", " eq ", " gt ", "\"x\"",
        "\"", "1", "true", "(", ")", "[", "]", ".", "urn:x:", "\\",
    ];
    prop_oneof![
        // Anything, shaped like a filter: pieces, with now and then any character.
        prop::collection::vec((0..PIECES.len() + 1, any::<char>()), 0..2500).prop_map(|p| {
            p.into_iter()
                .map(|(i, c)| {
                    PIECES
                        .get(i)
                        .map_or_else(|| c.to_string(), |s| s.to_string())
                })
                .collect::<String>()
        }),
        // A chain or a nest of any length, around the limits and far past them.
        (1usize..2000, prop::bool::ANY)
            .prop_map(|(n, and)| { vec!["a pr"; n].join(if and { " and " } else { " or " }) }),
        (1usize..1000).prop_map(|n| format!("{}a pr{}", "(".repeat(n), ")".repeat(n))),
        (1usize..1000).prop_map(|n| format!("emails[{}]", vec!["type eq \"w\""; n].join(" and "))),
    ]
    .prop_map(|s| s.chars().take(10_000).collect())
}

/// JSON values with the number edge cases a `sortBy` key can meet.
fn sort_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        (-1.0e20f64..1.0e20).prop_map(|f| json!(f)),
        prop_oneof![
            Just(json!(0.0)),
            Just(json!(-0.0)),
            Just(json!(9007199254740992.0)),
            Just(json!(9007199254740993u64)),
            Just(json!(9007199254740992u64)),
            Just(json!(18446744073709551615u64)),
            Just(json!(18446744073709551616.0)),
            Just(json!(-9223372036854775808i64)),
            Just(json!(-9223372036854775808.0)),
            Just(json!(1)),
            Just(json!(1.0)),
        ],
        prop_oneof![
            Just("a".to_string()),
            Just("A".to_string()),
            any::<String>()
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-c]", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
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
    // The regressions file sits beside this file. proptest's default (`SourceParallel`)
    // would look for it in tests/proptest-regressions/, since tests/it/ holds a main.rs.
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

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
    fn any_filter_text_up_to_10000_chars_parses_or_fails_without_panic(s in long_filter_text()) {
        match filter::parse(&s) {
            Ok(f) => {
                let _ = filter::matches(&f, &grace());
                let _ = f.to_string();
            }
            Err(e) => prop_assert!(!e.detail.is_empty()),
        }
        let path = format!("emails[{s}]");
        if let Ok(p) = filter::parse_patch_path(&path) {
            if let Some(f) = p.filter {
                let _ = filter::matches(&f, &grace()["emails"][0]);
            }
        }
    }

    #[test]
    fn the_sort_order_is_a_total_order(a in sort_value(), b in sort_value(), c in sort_value()) {
        use std::cmp::Ordering::*;
        let o = filter::sort_order;
        // Reflexive and antisymmetric.
        prop_assert_eq!(o(&a, &a), Equal);
        prop_assert_eq!(o(&a, &b), o(&b, &a).reverse());
        // Transitive, for < and for =.
        if o(&a, &b) != Greater && o(&b, &c) != Greater {
            prop_assert_ne!(o(&a, &c), Greater, "{} <= {} <= {}", a, b, c);
        }
        if o(&a, &b) == Equal && o(&b, &c) == Equal {
            prop_assert_eq!(o(&a, &c), Equal);
        }
        // Types rank first: null < boolean < number < string < complex.
        let rank = |v: &Value| match v {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Number(_) => 2,
            Value::String(_) => 3,
            _ => 4,
        };
        if rank(&a) != rank(&b) {
            prop_assert_eq!(o(&a, &b), rank(&a).cmp(&rank(&b)));
        }
        // Numbers follow their value.
        if let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) {
            if x < y {
                prop_assert_ne!(o(&a, &b), Greater);
            }
        }
    }

    #[test]
    fn sorting_any_values_never_panics_and_is_sorted(mut vs in prop::collection::vec(sort_value(), 0..80)) {
        vs.sort_by(filter::sort_order);
        for w in vs.windows(2) {
            prop_assert_ne!(filter::sort_order(&w[0], &w[1]), std::cmp::Ordering::Greater);
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
