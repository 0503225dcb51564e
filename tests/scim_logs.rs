//! The request log: it names the token's label, never the token, and keeps query strings
//! out. In its own test binary (the others are in tests/it/), because tracing caches
//! per-callsite interest process-wide and other tests running without a subscriber would
//! race it: while at most one subscriber exists, tracing-core works out a log line's
//! interest from the subscriber of the thread that reaches it first, so a line first reached
//! by another test's thread would be cached as "never" and this test's capture would miss it.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use retrac_sync::config::ScimConfig;
use retrac_sync::scim::{router, ScimState};
use retrac_sync::store::Store;
use retrac_sync::tokens::{self as auth, TokenRequest, TokenResponse};
use tower::ServiceExt;

/// Collects everything the request log writes.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn request_logs_name_the_token_label_and_never_the_token() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let token = match auth::execute(
        &store,
        TokenRequest::Create {
            label: "google-workspace".into(),
        },
        None,
        chrono::Utc::now(),
    )
    .unwrap()
    {
        TokenResponse::Created { secret, .. } => secret.0,
        other => panic!("{other:?}"),
    };
    let app = router(ScimState::new(store, &ScimConfig::default()).unwrap());
    let get = |t: String| {
        Request::get("/scim/v2/Users?filter=userName%20eq%20%22grace@example.com%22")
            .header(header::AUTHORIZATION, format!("Bearer {t}"))
            .body(Body::empty())
            .unwrap()
    };
    let ok = app.clone().oneshot(get(token.clone())).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let bad = app.clone().oneshot(get(format!("{token}x"))).await.unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("SCIM request"), "{log}");
    assert!(log.contains("token=google-workspace"), "{log}");
    assert!(log.contains("status=401"), "{log}");
    // The refusal has its own line: the reason and the token id tried, not the secret.
    assert!(log.contains("SCIM authentication failed"), "{log}");
    assert!(log.contains("reason=\"unknown\""), "{log}");
    let id = token.split('_').nth(1).unwrap();
    assert!(log.contains(&format!("token_id=\"{id}\"")), "{log}");
    let secret = token.splitn(3, '_').nth(2).unwrap();
    assert!(!log.contains(secret), "a token reached the log");
    assert!(!log.contains("rtsc_"), "a token reached the log");
    assert!(
        !log.contains("filter="),
        "query strings stay out of the log"
    );
}
