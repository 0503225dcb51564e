//! PATCH table tests: the RFC 7644 §3.5.2 examples and every PATCH shape in
//! `tests/fixtures/scim/`, applied to a resource's JSON.

use retrac_sync::scim::patch;
use retrac_sync::scim::resource;
use retrac_sync::scim::schema::Limits;
use serde_json::{json, Value};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn bjensen() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": "2819c223-7f76-453a-919d-413861904646",
        "userName": "bjensen@example.com",
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"}
        ],
        "addresses": [
            {"type": "work", "streetAddress": "100 Universal City Plaza", "locality": "Hollywood"},
            {"type": "home", "streetAddress": "456 Hollywood Blvd", "locality": "Hollywood"}
        ],
        "x509Certificates": [{"value": "MIIDQz"}],
        "active": true,
        ENTERPRISE: {"employeeNumber": "701984", "manager": {"value": "26118915"}}
    })
}

fn ops(ops: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops})
}

fn patched(ops_: Value) -> Value {
    let mut doc = bjensen();
    patch::apply(&mut doc, &ops(ops_)).unwrap_or_else(|e| panic!("{e}"));
    doc
}

fn refused(ops_: Value) -> String {
    let mut doc = bjensen();
    let e = patch::apply(&mut doc, &ops(ops_)).unwrap_err();
    assert_eq!(doc, bjensen(), "a refused PATCH changes nothing");
    e.scim_type.map(|t| t.as_str()).unwrap_or("").to_string()
}

#[test]
fn rfc_add_without_path_merges_into_multi_valued_and_sets_single_valued() {
    let doc = patched(json!([{
        "op": "add",
        "value": {"emails": [{"value": "babs@example.net", "type": "other"}], "nickName": "Babs"}
    }]));
    assert_eq!(doc["emails"].as_array().unwrap().len(), 3);
    assert_eq!(doc["emails"][2]["value"], json!("babs@example.net"));
    assert_eq!(doc["nickName"], json!("Babs"));
}

#[test]
fn rfc_add_with_path_appends_and_does_not_duplicate() {
    let doc = patched(json!([
        {"op": "add", "path": "emails", "value": [{"value": "babs@jensen.org", "type": "home"}]},
        {"op": "add", "path": "phoneNumbers", "value": [{"value": "555-555-5555", "type": "work"}]}
    ]));
    assert_eq!(doc["emails"].as_array().unwrap().len(), 2);
    assert_eq!(doc["phoneNumbers"][0]["value"], json!("555-555-5555"));
}

#[test]
fn an_add_of_values_already_there_adds_nothing_in_any_key_order_and_duplicates_in_one_add_once() {
    let doc = patched(json!([
        {"op": "add", "path": "emails", "value": [
            {"type": "home", "value": "babs@jensen.org"},
            {"value": "x@example.com"},
            {"value": "x@example.com"}
        ]}
    ]));
    assert_eq!(
        doc["emails"].as_array().unwrap().len(),
        3,
        "{}",
        doc["emails"]
    );
    // Removing by value: every listed value goes, by whole value or by `value`.
    let mut doc2 = doc.clone();
    patch::apply(
        &mut doc2,
        &ops(json!([{"op": "remove", "path": "emails", "value": [
            {"value": "x@example.com"}, {"value": "babs@jensen.org", "type": "other"}
        ]}])),
    )
    .unwrap();
    assert_eq!(doc2["emails"], json!([bjensen()["emails"][0].clone()]));
}

/// A value with more values than the limit is refused before any work, and
/// so is an add that would grow an attribute past it; the document is left as it was.
#[test]
fn values_past_the_limit_are_refused_and_change_nothing() {
    let limits = Limits {
        max_values: 3,
        ..Limits::default()
    };
    let values = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| json!({"value": format!("v{i}@example.com")}))
            .collect()
    };
    for (body, what) in [
        (
            json!([{"op": "add", "path": "emails", "value": values(4)}]),
            "4 values",
        ),
        (
            json!([{"op": "replace", "path": "ims", "value": values(4)}]),
            "4 values",
        ),
        (
            json!([{"op": "add", "value": {"phoneNumbers": values(4)}}]),
            "4 values",
        ),
        // 2 values there, 2 more: 4.
        (
            json!([{"op": "add", "path": "emails", "value": values(2)}]),
            "4 values",
        ),
        (
            json!([{"op": "add", "path": "emails[type eq \"other\"]", "value": {"value": "o@x.y"}},
                   {"op": "add", "path": "emails[type eq \"pager\"]", "value": {"value": "p@x.y"}}]),
            "4 values",
        ),
    ] {
        let mut doc = bjensen();
        let e = patch::apply_with(&mut doc, &ops(body.clone()), &limits).unwrap_err();
        assert_eq!(
            e.scim_type.map(|t| t.as_str()),
            Some("invalidValue"),
            "{body}"
        );
        assert!(
            e.detail.contains(what) && e.detail.contains("[scim].max_values_per_attribute"),
            "{body}: {}",
            e.detail
        );
        assert_eq!(doc, bjensen());
    }
    // Up to the limit is fine.
    let mut doc = bjensen();
    patch::apply_with(
        &mut doc,
        &ops(json!([{"op": "add", "path": "emails", "value": values(1)}])),
        &limits,
    )
    .unwrap();
    assert_eq!(doc["emails"].as_array().unwrap().len(), 3);
    // The resource parser holds the same limit, also inside an extension.
    let e = resource::from_json_with(
        json!({"userName": "a@b.c", ENTERPRISE: {"codes": [1, 2, 3, 4]}}),
        None,
        &limits,
    )
    .unwrap_err();
    assert!(e.detail.contains("codes has 4 values"), "{}", e.detail);
}

#[test]
fn rfc_add_a_primary_value_takes_primary_from_the_others() {
    let doc = patched(json!([{"op": "add", "path": "emails",
        "value": [{"value": "new@example.com", "type": "work", "primary": true}]}]));
    let primaries: Vec<&Value> = doc["emails"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["primary"] == json!(true))
        .collect();
    assert_eq!(primaries.len(), 1);
    assert_eq!(primaries[0]["value"], json!("new@example.com"));
}

#[test]
fn rfc_remove_a_single_valued_attribute_a_multi_valued_one_and_filtered_values() {
    let doc = patched(json!([{"op": "remove", "path": "x509Certificates"}]));
    assert!(doc.get("x509Certificates").is_none());
    let doc = patched(json!([{"op": "remove", "path": "emails[type eq \"home\"]"}]));
    assert_eq!(doc["emails"].as_array().unwrap().len(), 1);
    let doc = patched(json!([{"op": "remove",
        "path": "emails[type eq \"work\" and value ew \"example.com\"]"}]));
    assert_eq!(doc["emails"][0]["type"], json!("home"));
    let doc = patched(json!([{"op": "remove", "path": "name.givenName"}]));
    assert_eq!(doc["name"], json!({"familyName": "Jensen"}));
    let doc = patched(json!([{"op": "remove", "path": "addresses[type eq \"work\"].locality"}]));
    assert!(doc["addresses"][0].get("locality").is_none());
    assert_eq!(doc["addresses"][1]["locality"], json!("Hollywood"));
}

#[test]
fn rfc_remove_without_path_or_with_an_unmatched_filter_is_no_target() {
    assert_eq!(refused(json!([{"op": "remove"}])), "noTarget");
    assert_eq!(
        refused(json!([{"op": "remove", "path": "emails[type eq \"pager\"]"}])),
        "noTarget"
    );
}

#[test]
fn rfc_replace_with_and_without_paths() {
    let doc = patched(
        json!([{"op": "replace", "path": "addresses[type eq \"work\"]",
        "value": {"type": "work", "streetAddress": "911 Universal City Plaza"}}]),
    );
    assert_eq!(
        doc["addresses"][0]["streetAddress"],
        json!("911 Universal City Plaza")
    );
    let doc = patched(json!([{"op": "replace",
        "path": "addresses[type eq \"work\"].streetAddress", "value": "1010 Broadway Ave"}]));
    assert_eq!(
        doc["addresses"][0]["streetAddress"],
        json!("1010 Broadway Ave")
    );
    assert_eq!(
        doc["addresses"][1]["streetAddress"],
        json!("456 Hollywood Blvd")
    );
    let doc = patched(json!([{"op": "replace", "value": {
        "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}],
        "nickName": "Babs"}}]));
    assert_eq!(
        doc["emails"].as_array().unwrap().len(),
        1,
        "replace swaps the whole list"
    );
    assert_eq!(doc["nickName"], json!("Babs"));
    // A complex single-valued attribute keeps the sub-attributes not given (§3.5.2.3).
    let doc = patched(
        json!([{"op": "replace", "path": "name", "value": {"familyName": "Jensen-Smith"}}]),
    );
    assert_eq!(
        doc["name"],
        json!({"givenName": "Barbara", "familyName": "Jensen-Smith"})
    );
}

#[test]
fn extension_attributes_by_full_path_by_whole_extension_and_path_less() {
    let doc = patched(json!([
        {"op": "replace", "path": format!("{ENTERPRISE}:employeeNumber"), "value": "42"},
        {"op": "add", "path": format!("{ENTERPRISE}:manager.value"), "value": "99"}
    ]));
    assert_eq!(doc[ENTERPRISE]["employeeNumber"], json!("42"));
    assert_eq!(doc[ENTERPRISE]["manager"]["value"], json!("99"));
    let doc = patched(json!([{"op": "add", "path": ENTERPRISE, "value": {"costCenter": "4130"}}]));
    assert_eq!(doc[ENTERPRISE]["costCenter"], json!("4130"));
    assert_eq!(doc[ENTERPRISE]["employeeNumber"], json!("701984"));
    let doc = patched(json!([{"op": "replace", "value": {ENTERPRISE: {"department": "Tours"}}}]));
    assert_eq!(doc[ENTERPRISE]["department"], json!("Tours"));
    let doc =
        patched(json!([{"op": "replace", "value": {format!("{ENTERPRISE}:division"): "Parks"}}]));
    assert_eq!(doc[ENTERPRISE]["division"], json!("Parks"));
    let doc = patched(json!([{"op": "remove", "path": ENTERPRISE}]));
    assert!(doc.get(ENTERPRISE).is_none());
}

#[test]
fn tolerant_shapes_any_case_op_string_booleans_dotted_keys_and_replace_that_adds() {
    // Any case for op, and attribute names in any case.
    let doc = patched(json!([{"op": "Replace", "path": "DisplayName", "value": "Babs"}]));
    assert_eq!(doc["displayName"], json!("Babs"));
    let doc = patched(json!([{"op": "ADD", "path": "name.GIVENNAME", "value": "Barb"}]));
    assert_eq!(doc["name"]["givenName"], json!("Barb"));
    // "False" is stored as sent by the PATCH and read as a boolean afterwards.
    let doc = patched(json!([{"op": "replace", "path": "active", "value": "False"}]));
    let parsed = resource::from_json(doc, None).unwrap();
    assert!(!parsed.attrs.active);
    // Dotted keys in a path-less value.
    let doc =
        patched(json!([{"op": "replace", "value": {"name.givenName": "Amazing", "active": true}}]));
    assert_eq!(doc["name"]["givenName"], json!("Amazing"));
    assert_eq!(doc["name"]["familyName"], json!("Jensen"));
    // A replace on a value path that matches nothing adds the value.
    let doc = patched(
        json!([{"op": "replace", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "555-1"}]),
    );
    assert_eq!(
        doc["phoneNumbers"],
        json!([{"type": "mobile", "value": "555-1"}])
    );
    // Okta's path-less deactivation.
    let doc = patched(json!([{"op": "replace", "value": {"active": false}}]));
    assert_eq!(doc["active"], json!(false));
    // A remove with a value list (Entra ID) removes those values only.
    let doc = patched(
        json!([{"op": "remove", "path": "emails", "value": [{"value": "babs@jensen.org"}]}]),
    );
    assert_eq!(doc["emails"].as_array().unwrap().len(), 1);
}

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/scim/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn every_patch_fixture_applies_as_its_expect_says() {
    let grace = || {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "grace@example.com",
            "name": {"givenName": "Grace", "familyName": "Hopper"},
            "emails": [{"value": "grace@example.com", "type": "work", "primary": true}],
            "active": true
        })
    };
    let mut doc = grace();
    patch::apply(&mut doc, &fixture("entra-patch-capitalised.json")).unwrap();
    let p = resource::from_json(doc, None).unwrap().attrs;
    assert!(!p.active);
    assert_eq!(p.family_name.as_deref(), Some("Hopper-Smith"));
    assert_eq!(p.emails.len(), 1);
    assert_eq!(p.emails[0].value, "grace.hs@example.com");
    assert_eq!(p.emails[0].kind.as_deref(), Some("work"));

    let mut doc = grace();
    doc["active"] = json!(false);
    patch::apply(&mut doc, &fixture("entra-pathless-dotted.json")).unwrap();
    let p = resource::from_json(doc, None).unwrap().attrs;
    assert_eq!(p.given_name.as_deref(), Some("Amazing"));
    assert!(p.active);

    let mut doc = grace();
    patch::apply(&mut doc, &fixture("okta-deactivate.json")).unwrap();
    assert!(!resource::from_json(doc, None).unwrap().attrs.active);
}

#[test]
fn bad_operations_are_refused_whole() {
    assert_eq!(refused(json!([])), "invalidSyntax");
    assert_eq!(
        refused(json!([{"op": "merge", "path": "title", "value": "x"}])),
        "invalidSyntax"
    );
    assert_eq!(
        refused(json!([{"op": "add", "path": "title"}])),
        "invalidSyntax"
    );
    assert_eq!(
        refused(json!([{"op": "add", "value": "not an object"}])),
        "invalidSyntax"
    );
    assert_eq!(
        refused(json!([{"path": "title", "value": "x"}])),
        "invalidSyntax"
    );
    assert_eq!(
        refused(json!([{"op": "add", "path": "emails[", "value": "x"}])),
        "invalidPath"
    );
    assert_eq!(
        refused(json!([{"op": "replace", "path": "meta.version", "value": "x"}])),
        "mutability"
    );
    assert_eq!(
        refused(json!([
            {"op": "replace", "path": "title", "value": "ok"},
            {"op": "replace", "path": "id", "value": "other"}
        ])),
        "mutability"
    );
    let mut doc = bjensen();
    let e = patch::apply(&mut doc, &json!({"schemas": []})).unwrap_err();
    assert!(e.detail.contains("Operations"));
}
