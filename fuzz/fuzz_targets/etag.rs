//! The If-Match / If-None-Match parser: any header value gives versions, `*`, or nothing.
#![no_main]

use http::header::{HeaderMap, HeaderValue, IF_MATCH, IF_NONE_MATCH};
use libfuzzer_sys::fuzz_target;
use retrac_sync::scim::users::etag_versions;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(IF_MATCH, value.clone());
    headers.append(IF_NONE_MATCH, value);
    let _ = etag_versions(&headers, IF_MATCH);
    let _ = etag_versions(&headers, IF_NONE_MATCH);
});
