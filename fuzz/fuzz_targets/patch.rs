//! The PATCH engine: any body, applied to a fixed member, is applied whole (and the result
//! read back as a User) or refused with the member unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use retrac_sync::scim::{patch, resource};
use serde_json::{json, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let member = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": "2819c223-7f76-453a-919d-413861904646",
        "userName": "grace@example.com",
        "name": {"givenName": "Grace", "familyName": "Hopper"},
        "emails": [
            {"value": "grace@example.com", "type": "work", "primary": true},
            {"value": "g@home.org", "type": "home"}
        ],
        "active": true,
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "701984"}
    });
    let mut doc = member.clone();
    match patch::apply(&mut doc, &body) {
        Ok(()) => {
            let _ = resource::from_json(doc, Some(true));
        }
        Err(_) => assert_eq!(doc, member, "a refused PATCH changed the member"),
    }
});
