//! The request log: it names the token's label, never the token, and keeps query strings
//! out; and a pull with keyless credentials logs no secret or token. In its own test binary
//! (the others are in tests/it/), because tracing caches per-callsite interest process-wide
//! and other tests running without a subscriber would race it: while at most one subscriber
//! exists, tracing-core works out a log line's interest from the subscriber of the thread
//! that reaches it first, so a line first reached by another test's thread would be cached
//! as "never" and this test's capture would miss it.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use retrac_sync::config::ScimConfig;
use retrac_sync::scim::{router, ScimState};
use retrac_sync::store::Store;
use retrac_sync::tokens::{self as auth, TokenRequest, TokenResponse};
use tower::ServiceExt;

#[path = "it/common.rs"]
mod common;

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
            scope: retrac_sync::store::TokenScope::Scim,
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

/// Keyless credentials at debug level (AWS from the instance metadata, then impersonation;
/// then a refused signature): the log never shows an AWS secret key, a session token, the
/// IMDSv2 token or an access token.
#[tokio::test]
async fn keyless_pulls_log_no_secret_and_no_token() {
    use fake_google::{FakeSeed, SubjectTokenSource};
    use retrac_sync::config::CredentialsKind;
    use retrac_sync::directory::keyless::Environment;
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let mut w = common::world(FakeSeed::sample(5, "example.com")).await;
    let g = &w.google;
    let file = g
        .write_federation_file(w.dir.path(), SubjectTokenSource::Aws { imdsv2: true }, true)
        .unwrap();
    w.config.google.key_file = Some(file);
    w.config.google.credentials = CredentialsKind::ExternalAccount;
    w.config.google.service_account = Some(g.service_account());
    w.config.google.sts_url = g.base_url();
    w.config.google.iam_url = g.base_url();
    w.config.google.token_url = g.token_uri();
    w.config.validate().unwrap();
    let store = Store::open(&w.config.store.path).unwrap();
    let none = Environment::fixed(Vec::<(String, String)>::new());
    let r = common::sync(&common::context(&store, &w.config).with_environment(none)).await;
    assert_eq!(r.report.status, retrac_sync::store::RunStatus::Ok, "{r:?}");
    assert_eq!(g.requests("generateAccessToken"), 1);
    let mut wrong = g.aws_user_environment();
    wrong[1].1 = "not-the-secret-key-0123456789".into();
    let r = common::sync(
        &common::context(&store, &w.config).with_environment(Environment::fixed(wrong)),
    )
    .await;
    assert_eq!(
        r.report.status,
        retrac_sync::store::RunStatus::Failed,
        "{r:?}"
    );

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("sync run finished") && log.contains("the STS step failed"),
        "the runs were not logged: {log}"
    );
    for secret in g.aws_secrets() {
        assert!(!log.contains(secret), "{secret} in the log");
    }
    assert!(!log.contains("not-the-secret-key"));
    assert!(!log.contains("ya29."), "an access token in the log");
}
