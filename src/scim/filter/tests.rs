use super::*;
use serde_json::json;

fn p(s: &str) -> Filter {
    parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn cmp(name: &str, op: CompareOp, v: CompValue) -> Filter {
    Filter::Compare(AttrPath::parse(name).unwrap(), op, v)
}

fn s(v: &str) -> CompValue {
    CompValue::Str(v.into())
}

fn grace() -> Value {
    json!({
        "schemas": [USER_SCHEMA],
        "id": "2819c223-7f76-453a-919d-413861904646",
        "externalId": "Ext-1",
        "userName": "Grace@Example.com",
        "title": "Rear Admiral",
        "active": true,
        "name": {"givenName": "Grace", "familyName": "Hopper"},
        "emails": [
            {"value": "grace@example.com", "type": "work", "primary": true},
            {"value": "g@home.org", "type": "home"}
        ],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "701984", "manager": {"value": "26118915"}},
        "meta": {"created": "2026-01-01T10:00:00Z", "lastModified": "2026-06-01T10:00:00Z", "version": "W/\"3\""}
    })
}

#[test]
fn and_binds_tighter_than_or_and_not_tighter_than_and() {
    let a = || cmp("a", CompareOp::Eq, s("1"));
    let b = || cmp("b", CompareOp::Eq, s("2"));
    let c = || cmp("c", CompareOp::Eq, s("3"));
    assert_eq!(
        p(r#"a eq "1" or b eq "2" and c eq "3""#),
        Filter::Or(vec![a(), Filter::And(vec![b(), c()])])
    );
    assert_eq!(
        p(r#"a eq "1" and b eq "2" or c eq "3""#),
        Filter::Or(vec![Filter::And(vec![a(), b()]), c()])
    );
    assert_eq!(
        p(r#"(a eq "1" or b eq "2") and c eq "3""#),
        Filter::And(vec![Filter::Or(vec![a(), b()]), c()])
    );
    assert_eq!(
        p(r#"not (a eq "1") and b eq "2""#),
        Filter::And(vec![Filter::Not(Box::new(a())), b()])
    );
    // Chains are one flat node, parenthesised or not.
    assert_eq!(
        p(r#"a eq "1" or b eq "2" or c eq "3""#),
        Filter::Or(vec![a(), b(), c()])
    );
    assert_eq!(
        p(r#"(a eq "1" and b eq "2") and (c eq "3")"#),
        Filter::And(vec![a(), b(), c()])
    );
}

#[test]
fn a_long_chain_is_one_flat_node_not_a_deep_tree() {
    // 64 comparisons, the most allowed: one node with 64 terms, depth 1.
    let chain = vec!["a pr"; MAX_COMPARISONS].join(" and ");
    match p(&chain) {
        Filter::And(terms) => {
            assert_eq!(terms.len(), MAX_COMPARISONS);
            assert!(terms.iter().all(|t| matches!(t, Filter::Present(_))));
        }
        other => panic!("{other:?}"),
    }
    let chain = vec!["a pr"; MAX_COMPARISONS].join(" or ");
    assert!(matches!(p(&chain), Filter::Or(t) if t.len() == MAX_COMPARISONS));
}

#[test]
fn each_size_limit_is_refused_and_named() {
    // The 12,000-term chain of docs/decisions/0001 (108 KB): refused on its length, before any work.
    let attack = vec!["a pr"; 12_000].join(" and ");
    let e = parse(&attack).unwrap_err();
    assert!(e.limit && e.detail.contains("at most 4096"), "{e}");
    let e = parse_patch_path(&format!("emails[{}]", attack)).unwrap_err();
    assert!(e.limit && e.detail.contains("4096"), "{e}");
    // Exactly 4096 characters is fine; one more is not.
    let pad = format!("userName eq \"{}\"", "x".repeat(MAX_FILTER_CHARS - 14));
    assert_eq!(pad.chars().count(), MAX_FILTER_CHARS);
    assert!(parse(&pad).is_ok());
    let over = format!("userName eq \"{}\"", "x".repeat(MAX_FILTER_CHARS - 13));
    assert!(parse(&over).unwrap_err().limit);
    // Characters, not bytes: 4,000 two-byte characters are under the limit.
    assert!(parse(&format!("userName eq \"{}\"", "é".repeat(4000))).is_ok());

    // 65 comparisons, short enough to pass the length limit.
    let many = vec!["a pr"; MAX_COMPARISONS + 1].join(" and ");
    assert!(many.len() < MAX_FILTER_CHARS);
    let e = parse(&many).unwrap_err();
    assert!(e.limit && e.detail.contains("64 comparisons"), "{e}");
    let e = parse_patch_path(&format!(
        "emails[{}]",
        vec!["type eq \"w\""; MAX_COMPARISONS + 1].join(" and ")
    ))
    .unwrap_err();
    assert!(e.limit && e.detail.contains("64 comparisons"), "{e}");

    // 32 levels of parentheses are fine, 33 are not; `not` and value filters count.
    let nest = |n: usize| format!("{}a pr{}", "(".repeat(n), ")".repeat(n));
    assert!(parse(&nest(MAX_NESTING)).is_ok());
    let e = parse(&nest(MAX_NESTING + 1)).unwrap_err();
    assert!(e.limit && e.detail.contains("32 levels"), "{e}");
    let nots = |n: usize| format!("{}a pr{}", "not (".repeat(n), ")".repeat(n));
    assert!(parse(&nots(MAX_NESTING)).is_ok());
    assert!(parse(&nots(MAX_NESTING + 1)).unwrap_err().limit);
    assert!(parse(&format!("emails[{}]", nest(MAX_NESTING - 1))).is_ok());
    assert!(
        parse(&format!("emails[{}]", nest(MAX_NESTING)))
            .unwrap_err()
            .limit
    );
    assert!(
        parse_patch_path(&format!("emails[{}]", nest(MAX_NESTING)))
            .unwrap_err()
            .limit
    );
    // A malformed filter is not a limit.
    assert!(!parse("userName eq").unwrap_err().limit);
}

#[test]
fn the_largest_filter_evaluates_and_drops_without_deep_recursion() {
    // A thread with a small stack: the widest and the deepest filters allowed both run.
    let wide = vec!["a pr"; MAX_COMPARISONS].join(" and ");
    let deep = format!(
        "{}a pr{}",
        "not (".repeat(MAX_NESTING),
        ")".repeat(MAX_NESTING)
    );
    let done = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let g = json!({"a": 1});
            let w = parse(&wide).map(|f| matches(&f, &g));
            let d = parse(&deep).map(|f| matches(&f, &g));
            (w, d)
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(done, (Ok(true), Ok(true)));
}

#[test]
fn operators_and_attribute_names_are_case_insensitive() {
    let g = grace();
    for f in [
        r#"USERNAME EQ "grace@example.com""#,
        r#"userName Eq "GRACE@EXAMPLE.COM""#,
        r#"name.FAMILYNAME sw "hop""#,
        r#"userName eq "x" OR Active Eq true"#,
    ] {
        assert!(matches(&p(f), &g), "{f}");
    }
}

#[test]
fn every_operator_on_strings() {
    let g = grace();
    let yes = [
        r#"userName eq "grace@example.com""#,
        r#"userName ne "ada@example.com""#,
        r#"userName co "E@EXAM""#,
        r#"userName sw "gr""#,
        r#"userName ew ".COM""#,
        r#"userName gt "a""#,
        r#"userName ge "grace@example.com""#,
        r#"userName lt "z""#,
        r#"userName le "grace@example.com""#,
        r#"title pr"#,
        r#"name.givenName pr"#,
    ];
    let no = [
        r#"userName eq "ada@example.com""#,
        r#"userName ne "GRACE@example.com""#,
        r#"userName co "zz""#,
        r#"userName sw "race""#,
        r#"userName ew ".org""#,
        r#"userName gt "h""#,
        r#"userName lt "a""#,
        r#"nickName pr"#,
        r#"name.middleName pr"#,
    ];
    for f in yes {
        assert!(matches(&p(f), &g), "{f} should match");
    }
    for f in no {
        assert!(!matches(&p(f), &g), "{f} should not match");
    }
}

#[test]
fn case_exact_attributes_compare_exactly() {
    let g = grace();
    assert!(matches(&p(r#"externalId eq "Ext-1""#), &g));
    assert!(!matches(&p(r#"externalId eq "ext-1""#), &g));
    assert!(!matches(
        &p(r#"id eq "2819C223-7F76-453A-919D-413861904646""#),
        &g
    ));
}

#[test]
fn booleans_and_datetimes_compare_as_typed_values() {
    let g = grace();
    assert!(matches(&p("active eq true"), &g));
    assert!(!matches(&p("active eq false"), &g));
    assert!(matches(&p("active ne false"), &g));
    // Same instant written with an offset: typed comparison, not text.
    assert!(matches(
        &p(r#"meta.lastModified eq "2026-06-01T12:00:00+02:00""#),
        &g
    ));
    assert!(matches(
        &p(r#"meta.lastModified gt "2026-05-31T23:59:59Z""#),
        &g
    ));
    assert!(!matches(
        &p(r#"meta.lastModified gt "2026-06-01T10:00:00Z""#),
        &g
    ));
    assert!(matches(
        &p(r#"meta.created le "2026-01-01T10:00:00.000Z""#),
        &g
    ));
    assert!(parse("active gt true").is_err());
}

#[test]
fn value_paths_filter_inside_multi_valued_attributes() {
    let g = grace();
    assert!(matches(
        &p(r#"emails[type eq "work" and value co "@example.com"]"#),
        &g
    ));
    assert!(!matches(
        &p(r#"emails[type eq "home" and value co "@example.com"]"#),
        &g
    ));
    assert!(matches(&p(r#"emails.value eq "G@HOME.org""#), &g));
    assert!(matches(
        &p(r#"emails[type eq "work"].value eq "grace@example.com""#),
        &g
    ));
    assert!(!matches(
        &p(r#"emails[type eq "home"].value eq "grace@example.com""#),
        &g
    ));
    assert!(matches(&p(r#"emails[not (primary eq true)]"#), &g));
}

#[test]
fn extension_attributes_are_reached_through_their_urn() {
    let g = grace();
    assert!(matches(
        &p(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "701984""#
        ),
        &g
    ));
    assert!(matches(
        &p(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "26118915""#
        ),
        &g
    ));
    assert!(matches(
        &p(r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "grace""#),
        &g
    ));
}

#[test]
fn numbers_and_null() {
    let v = json!({"n": 5, "x": null});
    assert!(matches(&p("n gt 4"), &v));
    assert!(matches(&p("n le 5.0"), &v));
    assert!(!matches(&p("n lt -1"), &v));
    assert!(matches(&p("x eq null"), &v));
    assert!(matches(&p("missing eq null"), &v));
    assert!(!matches(&p("x pr"), &v));
}

#[test]
fn bad_filters_are_refused_with_a_reason() {
    for (f, why) in [
        ("userName eq", "expected a value"),
        ("", "empty"),
        ("userName", "expected an operator"),
        ("userName is \"x\"", "not an operator"),
        ("userName eq \"x", "not closed"),
        ("(userName eq \"x\"", "expected ')'"),
        ("userName eq \"x\")", "unexpected"),
        ("userName eq bare", "not a value"),
        ("not userName eq \"x\"", "followed by '('"),
        ("emails[type eq \"work\"", "expected ']'"),
        ("emails[type[value eq \"x\"]]", "cannot nest"),
        ("1abc eq \"x\"", "not a valid attribute"),
        ("userName co 1", "needs a string"),
        ("userName eq \"x\" and", "expected an attribute"),
    ] {
        let e = parse(f).unwrap_err();
        assert!(e.detail.contains(why), "{f:?}: {e} should mention {why:?}");
    }
    let deep = format!("{}a pr{}", "(".repeat(200), ")".repeat(200));
    assert!(parse(&deep).unwrap_err().detail.contains("deeper"));
}

#[test]
fn printing_parses_back_to_the_same_tree() {
    for f in [
        r#"a eq "1" or b eq "2" and not (c pr)"#,
        r#"(a eq "1" or b eq "2") and c ne "q\"uote""#,
        r#"emails[type eq "work" and value co "@x.org"] and meta.lastModified gt "2026-01-01T00:00:00Z""#,
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber ge 10"#,
    ] {
        let tree = p(f);
        assert_eq!(p(&tree.to_string()), tree, "{f} printed as {tree}");
    }
}

#[test]
fn the_index_is_used_only_for_exact_identity_lookups() {
    assert_eq!(
        index_lookup(&p(r#"userName eq "A@B.c""#)),
        Some((IndexKey::UserName, "A@B.c"))
    );
    assert_eq!(
        index_lookup(&p(r#"active eq true and externalId eq "9""#)),
        Some((IndexKey::ExternalId, "9"))
    );
    assert_eq!(index_lookup(&p(r#"id eq "x""#)), Some((IndexKey::Id, "x")));
    assert_eq!(index_lookup(&p(r#"userName eq "a" or id eq "x""#)), None);
    assert_eq!(index_lookup(&p(r#"userName sw "a""#)), None);
    assert_eq!(index_lookup(&p(r#"not (userName eq "a")"#)), None);
}

#[test]
fn patch_paths() {
    let pp = parse_patch_path(r#"emails[type eq "work"].value"#).unwrap();
    assert_eq!(pp.attr.name, "emails");
    assert_eq!(pp.sub_after_filter.as_deref(), Some("value"));
    assert!(pp.filter.is_some());
    let pp = parse_patch_path("name.givenName").unwrap();
    assert_eq!(pp.attr.sub.as_deref(), Some("givenName"));
    let pp = parse_patch_path(
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
    )
    .unwrap();
    assert_eq!(
        pp.attr.urn.as_deref(),
        Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
    );
    assert_eq!(pp.attr.name, "manager");
    assert!(parse_patch_path("emails[type eq \"work\"").is_err());
    assert!(parse_patch_path("emails[type eq \"work\"]x").is_err());
    assert!(parse_patch_path("").is_err());
}
