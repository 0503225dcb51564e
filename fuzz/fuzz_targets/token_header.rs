//! The bearer token header parser (`Authenticator::check_headers` and `check`), over a store
//! holding one real token: any `Authorization` header, or several (the input split at each
//! newline), is refused (or, only for the real token, accepted) without a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use retrac_sync::scim::auth::Authenticator;
use retrac_sync::store::Store;
use retrac_sync::tokens::{self, TokenRequest, TokenResponse};

struct Fixture {
    _dir: tempfile::TempDir,
    auth: Authenticator,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Store::open(&dir.path().join("store")).expect("a store");
        let made = tokens::execute(
            &store,
            TokenRequest::Create {
                label: "fuzz".into(),
            },
            None,
            chrono::Utc::now(),
        )
        .expect("a token");
        assert!(matches!(made, TokenResponse::Created { .. }));
        Fixture {
            _dir: dir,
            auth: Authenticator::new(store),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let now = chrono::Utc::now();
    let mut headers = http::HeaderMap::new();
    for part in data.split(|b| *b == b'\n').take(3) {
        if let Ok(v) = http::HeaderValue::from_bytes(part) {
            headers.append(http::header::AUTHORIZATION, v);
        }
    }
    let _ = f.auth.check_headers(&headers, now);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = f.auth.check(Some(text), now);
    }
});
