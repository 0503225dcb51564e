//! The filter parser and evaluator: any text parses or is refused, and a parsed filter
//! evaluates without panicking and prints to a text that parses back to the same tree (or,
//! when printing made it longer or nested it deeper, is refused on a size limit).
#![no_main]

use libfuzzer_sys::fuzz_target;
use retrac_sync::scim::filter;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": "2819c223-7f76-453a-919d-413861904646",
        "userName": "grace@example.com",
        "name": {"givenName": "Grace", "familyName": "Hopper"},
        "emails": [{"value": "grace@example.com", "type": "work", "primary": true}],
        "active": true,
        "meta": {"created": "2026-01-01T10:00:00Z", "version": "W/\"3\""}
    });
    if let Ok(f) = filter::parse(text) {
        let _ = filter::matches(&f, &user);
        let _ = filter::index_lookup(&f);
        let printed = f.to_string();
        match filter::parse(&printed) {
            Ok(back) => assert_eq!(back, f, "{printed}"),
            Err(e) => assert!(e.limit, "{printed}: {e}"),
        }
    }
    if let Ok(p) = filter::parse_patch_path(text) {
        if let Some(f) = &p.filter {
            let _ = filter::matches(f, &user["emails"][0]);
        }
    }
});
