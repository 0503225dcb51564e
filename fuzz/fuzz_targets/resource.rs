//! The SCIM resource parser (a POST or PUT body): any JSON is read or refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use retrac_sync::scim::resource;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let _ = resource::from_json(body.clone(), None);
    let _ = resource::from_json(body, Some(false));
});
