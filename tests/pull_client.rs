//! The Directory client against the fake Google: auth, paging, retries, gzip, fields.

use retrac_sync::directory::fake::{FakeGoogle, FakeMember, FakeSeed, FakeUser, Fault};
use retrac_sync::directory::{self, Backoff, DirectoryClient, DirectoryError, UserListTarget};

async fn fake(seed: FakeSeed) -> FakeGoogle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    FakeGoogle::start(listener, seed).await.unwrap()
}

async fn client(g: &FakeGoogle, dir: &tempfile::TempDir) -> DirectoryClient {
    let key = dir.path().join("key.json");
    g.write_key_file(&key).unwrap();
    directory::connect(&key, &g.admin(), true, &g.base_url(), Backoff::fast())
        .await
        .unwrap()
}

async fn all_users(c: &DirectoryClient) -> Result<Vec<String>, DirectoryError> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = c
            .list_users_page(
                &UserListTarget::Customer("my_customer".into()),
                None,
                token.as_deref(),
            )
            .await?;
        out.extend(page.users.into_iter().map(|u| u.primary_email));
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => return Ok(out),
        }
    }
}

#[tokio::test]
async fn pages_through_every_user_in_email_order_with_fields_and_gzip() {
    let g = fake(FakeSeed::sample(1201, "example.com")).await;
    let dir = tempfile::tempdir().unwrap();
    let c = client(&g, &dir).await;
    let users = all_users(&c).await.unwrap();
    assert_eq!(users.len(), 1201);
    let mut sorted = users.clone();
    sorted.sort_by_key(|e| e.to_lowercase());
    assert_eq!(users, sorted);
    // 500 a page: 3 pages, one token.
    assert_eq!(g.requests("users.list"), 3);
    assert_eq!(g.tokens_issued(), 1);
    let q = g.last_query("users.list").unwrap();
    assert!(q.contains("maxResults=500"), "{q}");
    assert!(
        q.contains("fields=nextPageToken%2Cusers%28id%2CprimaryEmail"),
        "{q}"
    );
    assert!(g.last_user_agent().unwrap().contains("gzip"));
    assert_eq!(
        g.gzipped_responses(),
        3,
        "every page came gzipped and was read"
    );
}

#[tokio::test]
async fn members_list_expands_nested_groups_and_pages_by_200() {
    let mut seed = FakeSeed::sample(1000, "example.com");
    seed.groups.push(retrac_sync::directory::fake::FakeGroup {
        email: "outer@example.com".into(),
        members: vec![FakeMember::Group("engineering@example.com".into())],
    });
    let g = fake(seed).await;
    let dir = tempfile::tempdir().unwrap();
    let c = client(&g, &dir).await;
    let mut token = None;
    let mut users = 0;
    let mut pages = 0;
    loop {
        let p = c
            .list_members_page("outer@example.com", token.as_deref())
            .await
            .unwrap();
        pages += 1;
        assert!(p.members.len() <= 200);
        users += p
            .members
            .iter()
            .filter(|m| m.kind.as_deref() == Some("USER"))
            .count();
        match p.next_page_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    // engineering = 200 in /Engineering + 200 in /Engineering/Kernel (through kernel@).
    assert_eq!(users, 400);
    assert_eq!(pages, 3);
    assert!(g
        .last_query("members.list")
        .unwrap()
        .contains("includeDerivedMembership=true"));
}

#[tokio::test]
async fn transient_failures_are_retried_with_backoff_then_succeed() {
    let g = fake(FakeSeed::sample(1200, "example.com")).await;
    let dir = tempfile::tempdir().unwrap();
    let c = client(&g, &dir).await;
    g.inject(Fault::FailPage {
        endpoint: "users.list",
        page: 2,
        times: 2,
        status: 503,
        reason: "backendError",
    });
    g.inject(Fault::FailPage {
        endpoint: "users.list",
        page: 3,
        times: 1,
        status: 429,
        reason: "rateLimitExceeded",
    });
    g.inject(Fault::FailPage {
        endpoint: "users.list",
        page: 1,
        times: 1,
        status: 403,
        reason: "userRateLimitExceeded",
    });
    let users = all_users(&c).await.unwrap();
    assert_eq!(users.len(), 1200);
    assert_eq!(g.requests("users.list"), 3 + 4);
}

#[tokio::test]
async fn a_page_that_keeps_failing_gives_up_after_the_retries() {
    let g = fake(FakeSeed::sample(1200, "example.com")).await;
    let dir = tempfile::tempdir().unwrap();
    let c = client(&g, &dir).await;
    g.inject(Fault::FailPage {
        endpoint: "users.list",
        page: 2,
        times: 100,
        status: 503,
        reason: "backendError",
    });
    let err = all_users(&c).await.unwrap_err();
    assert!(
        matches!(err, DirectoryError::GaveUp { attempts: 7, .. }),
        "{err}"
    );
    // 1 good page + 7 attempts at page 2.
    assert_eq!(g.requests("users.list"), 8);
}

#[tokio::test]
async fn other_4xx_fail_at_once_with_googles_message() {
    let g = fake(FakeSeed::sample(10, "example.com")).await;
    let dir = tempfile::tempdir().unwrap();
    let c = client(&g, &dir).await;
    g.inject(Fault::FailPage {
        endpoint: "users.list",
        page: 1,
        times: 5,
        status: 403,
        reason: "forbidden",
    });
    let err = all_users(&c).await.unwrap_err();
    assert!(
        matches!(err, DirectoryError::Api { status: 403, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("injected forbidden"), "{err}");
    assert_eq!(g.requests("users.list"), 1, "no retry");
    // An unknown query is a 400, also not retried.
    let err = c
        .list_users_page(
            &UserListTarget::Customer("my_customer".into()),
            Some("bogus"),
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, DirectoryError::Api { status: 400, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_truncated_page_is_an_error_not_a_short_page() {
    let g = fake(FakeSeed::sample(1200, "example.com")).await;
    let dir = tempfile::tempdir().unwrap();
    let c = client(&g, &dir).await;
    g.inject(Fault::TruncatePage { page: 2, times: 1 });
    let err = all_users(&c).await.unwrap_err();
    assert!(matches!(err, DirectoryError::BadResponse { .. }), "{err}");
}

#[tokio::test]
async fn a_revoked_token_gets_one_refresh_and_one_retry() {
    let g = fake(FakeSeed::sample(10, "example.com")).await;
    let dir = tempfile::tempdir().unwrap();
    let c = client(&g, &dir).await;
    assert_eq!(all_users(&c).await.unwrap().len(), 10);
    g.expire_tokens();
    assert_eq!(all_users(&c).await.unwrap().len(), 10);
    assert_eq!(g.tokens_issued(), 2);
    assert_eq!(g.requests("users.list"), 3);
}

#[tokio::test]
async fn denied_delegation_says_what_to_grant_and_where() {
    let g = fake(FakeSeed::sample(10, "example.com")).await;
    let dir = tempfile::tempdir().unwrap();
    let c = client(&g, &dir).await;
    g.inject(Fault::DenyDelegation);
    let err = all_users(&c).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DirectoryError::Unauthorized { .. }), "{msg}");
    assert!(msg.contains(g.client_id()), "{msg}");
    assert!(msg.contains("admin.directory.user.readonly"), "{msg}");
    assert!(
        msg.contains("admin.directory.group.member.readonly"),
        "{msg}"
    );
    assert!(msg.contains("Domain-wide delegation"), "{msg}");
    assert!(!msg.contains("PRIVATE KEY"));
    assert_eq!(g.requests("users.list"), 0);
}

#[tokio::test]
async fn a_wrong_subject_or_a_forged_key_gets_no_token() {
    let g = fake(FakeSeed::sample(10, "example.com")).await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.json");
    g.write_key_file(&key).unwrap();
    let c = directory::connect(
        &key,
        "someone@example.com",
        false,
        &g.base_url(),
        Backoff::fast(),
    )
    .await
    .unwrap();
    assert!(matches!(
        all_users(&c).await.unwrap_err(),
        DirectoryError::Unauthorized { .. }
    ));
    // A key from another fake: the signature does not verify.
    let other = fake(FakeSeed::default()).await;
    let forged = dir.path().join("forged.json");
    other.write_key_file(&forged).unwrap();
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&forged).unwrap()).unwrap();
    v["token_uri"] = serde_json::json!(g.token_uri());
    std::fs::write(&forged, v.to_string()).unwrap();
    let c = directory::connect(&forged, &g.admin(), false, &g.base_url(), Backoff::fast())
        .await
        .unwrap();
    let err = all_users(&c).await.unwrap_err();
    assert!(
        err.to_string().contains("Invalid JWT Signature")
            || err.to_string().contains("OAuth client"),
        "{err}"
    );
    assert_eq!(g.tokens_issued(), 0);
}

#[tokio::test]
async fn users_get_finds_one_user_and_none_for_unknown() {
    let g = fake(FakeSeed::default()).await;
    g.add_user(FakeUser::new("77", "Ada@Example.com", "Ada", "Lovelace"));
    let dir = tempfile::tempdir().unwrap();
    let c = client(&g, &dir).await;
    let u = c.get_user("ada@example.com").await.unwrap().unwrap();
    assert_eq!(u.id, "77");
    assert_eq!(u.primary_email, "Ada@Example.com");
    assert!(c.get_user("nobody@example.com").await.unwrap().is_none());
}

#[tokio::test]
async fn the_key_file_error_never_quotes_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("k.json");
    std::fs::write(
        &p,
        r#"{"private_key": "-----BEGIN PRIVATE KEY-----\nSECRETSTUFF", "client_email": 5}"#,
    )
    .unwrap();
    let err = directory::auth::read_key(&p).unwrap_err().to_string();
    assert!(!err.contains("SECRETSTUFF"), "{err}");
    assert!(err.contains("line"), "{err}");
    let none = directory::auth::key_path(None, None)
        .unwrap_err()
        .to_string();
    assert!(none.contains("key_file"), "{none}");
}

#[tokio::test]
async fn retries_wait_as_google_asks_doubling_each_time() {
    let g = fake(FakeSeed::sample(10, "example.com")).await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.json");
    g.write_key_file(&key).unwrap();
    let backoff = Backoff {
        base: std::time::Duration::from_millis(40),
        jitter: std::time::Duration::ZERO,
        max_retries: 6,
    };
    let c = directory::connect(&key, &g.admin(), false, &g.base_url(), backoff)
        .await
        .unwrap();
    g.inject(Fault::FailPage {
        endpoint: "users.list",
        page: 1,
        times: 3,
        status: 503,
        reason: "backendError",
    });
    let t = std::time::Instant::now();
    assert_eq!(all_users(&c).await.unwrap().len(), 10);
    // 40 + 80 + 160 ms of backoff before the fourth attempt succeeds.
    assert!(
        t.elapsed() >= std::time::Duration::from_millis(280),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn connection_errors_are_retried_then_reported() {
    let g = fake(FakeSeed::sample(10, "example.com")).await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.json");
    g.write_key_file(&key).unwrap();
    // A port nothing listens on: bind one, then close it.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let c = directory::connect(
        &key,
        &g.admin(),
        false,
        &format!("http://{dead}"),
        Backoff::fast(),
    )
    .await
    .unwrap();
    let err = all_users(&c).await.unwrap_err();
    assert!(
        matches!(err, DirectoryError::GaveUp { attempts: 7, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("connection"), "{err}");
}

#[tokio::test]
async fn plain_http_is_refused_except_to_loopback() {
    assert!(directory::auth::check_url("http://admin.googleapis.com").is_err());
    assert!(directory::auth::check_url("http://127.0.0.1:9/x").is_ok());
    assert!(directory::auth::check_url("https://admin.googleapis.com").is_ok());
    assert!(directory::auth::check_url("ftp://x").is_err());
}
