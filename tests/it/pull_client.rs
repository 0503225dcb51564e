//! The Directory client against the fake Google: auth, paging, retries, gzip, fields.

use fake_google::{FakeGoogle, FakeMember, FakeSeed, FakeUser, Fault};
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
async fn pages_through_every_user_once_with_fields_and_gzip() {
    let g = fake(FakeSeed::sample(1201, "example.com")).await;
    let dir = tempfile::tempdir().unwrap();
    let c = client(&g, &dir).await;
    let users = all_users(&c).await.unwrap();
    assert_eq!(users.len(), 1201);
    let distinct: std::collections::BTreeSet<String> =
        users.iter().map(|e| e.to_lowercase()).collect();
    assert_eq!(distinct.len(), 1201, "each user once");
    // 500 a page: 3 pages, one token.
    assert_eq!(g.requests("users.list"), 3);
    assert_eq!(g.tokens_issued(), 1);
    let q = g.last_query("users.list").unwrap();
    assert!(q.contains("maxResults=500"), "{q}");
    // No orderBy: in email order a user renamed while the pages are read can be skipped.
    assert!(!q.contains("orderBy"), "{q}");
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
async fn nested_groups_are_read_from_direct_listings_each_once_and_paged_by_200() {
    use retrac_sync::reconcile::run::read_groups;
    use retrac_sync::reconcile::scope::ScopeRules;
    let mut seed = FakeSeed::sample(1000, "example.com");
    seed.groups.push(fake_google::FakeGroup {
        email: "outer@example.com".into(),
        members: vec![FakeMember::Group("engineering@example.com".into())],
    });
    // A cycle: kernel@ (nested in engineering@) names outer@ again.
    for g in &mut seed.groups {
        if g.email == "kernel@example.com" {
            g.members
                .push(FakeMember::Group("outer@example.com".into()));
        }
    }
    let g = fake(seed).await;
    let dir = tempfile::tempdir().unwrap();
    let c = client(&g, &dir).await;
    // One direct page: members.list is never asked for derived membership.
    let p = c
        .list_members_page("outer@example.com", None)
        .await
        .unwrap();
    assert_eq!(p.members.len(), 1);
    assert_eq!(p.members[0].kind.as_deref(), Some("GROUP"));
    assert!(!g
        .last_query("members.list")
        .unwrap()
        .contains("includeDerivedMembership"));
    let rules = ScopeRules {
        groups: vec!["outer@example.com".into()],
        max_nested_groups: 1000,
        ..Default::default()
    };
    let before = g.requests("members.list");
    let mut progress = Default::default();
    let (members, problems) = read_groups(&c, &rules, None, &mut progress).await.unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    // engineering = 200 in /Engineering + 200 in /Engineering/Kernel (through kernel@).
    assert_eq!(members.user_ids.len(), 400);
    assert_eq!(
        members.nested_groups, 2,
        "engineering@ and kernel@, once each"
    );
    // outer: 1 page; engineering and kernel: 200 users and a group each, 2 pages each.
    assert_eq!(g.requests("members.list") - before, 5);
    assert_eq!(progress.group_pages, 5);
    // Past [scope].max_nested_groups the read fails.
    let tight = ScopeRules {
        max_nested_groups: 1,
        ..rules
    };
    let e = read_groups(&c, &tight, None, &mut Default::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "too_many_nested_groups");
    assert_eq!(
        e.to_string(),
        "the scope groups hold more than 1 nested groups ([scope].max_nested_groups; kernel@example.com is one past it), so nothing was written: raise [scope].max_nested_groups if they are all meant to be in scope, or put the users in fewer groups"
    );
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

async fn connect_as(g: &FakeGoogle, key: &std::path::Path, subject: &str) -> DirectoryClient {
    directory::connect(key, subject, true, &g.base_url(), Backoff::fast())
        .await
        .unwrap()
}

/// The message `doctor` and a failed run print: `directory::diagnose`.
async fn first_page_error(c: &DirectoryClient) -> (DirectoryError, String) {
    let e = all_users(c).await.unwrap_err();
    let msg = directory::diagnose(&e);
    assert_eq!(msg, e.to_string());
    assert!(
        !msg.contains("PRIVATE KEY") && !msg.contains("ya29."),
        "{msg}"
    );
    (e, msg)
}

#[tokio::test]
async fn each_setup_mistake_gets_its_own_exact_message() {
    let mut seed = FakeSeed::sample(10, "example.com");
    seed.users
        .push(FakeUser::new("55", "clerk@example.com", "Cleo", "Clerk"));
    let g = fake(seed).await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.json");
    g.write_key_file(&key).unwrap();

    // invalid_grant "Invalid email or User ID": the subject does not exist.
    let c = connect_as(&g, &key, "someone@example.com").await;
    let (e, msg) = first_page_error(&c).await;
    assert_eq!(e.kind(), "subject_unknown");
    assert_eq!(
        msg,
        "Google does not know [google].subject someone@example.com (invalid_grant: Invalid email or User ID): set it to the primary email of an existing Google Workspace super admin"
    );

    // A user that is not an admin: Google issues the token, then the API answers 403.
    let c = connect_as(&g, &key, "clerk@example.com").await;
    let (e, msg) = first_page_error(&c).await;
    assert_eq!(e.kind(), "not_admin");
    assert_eq!(
        msg,
        "Google issued a token for clerk@example.com, then the Directory API answered 403 Not Authorized to access this resource/api: [google].subject is not an admin. Set it to a super admin, or to an admin whose role may read users and groups"
    );
    assert_eq!(g.tokens_issued(), 1, "the token was issued");
    assert_eq!(
        g.requests("users.list"),
        1,
        "and refused by the API, not retried"
    );

    // unauthorized_client: delegation missing or short of a scope.
    g.inject(Fault::DenyDelegation);
    let c = connect_as(&g, &key, &g.admin()).await;
    let (e, msg) = first_page_error(&c).await;
    assert_eq!(e.kind(), "delegation");
    assert_eq!(
        msg,
        format!(
            "Google refused a token (unauthorized_client: Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.): domain-wide delegation is missing or lacks a scope. In the Admin console → Security → Access and data control → API controls → Domain-wide delegation, add client id {} with exactly these scopes: https://www.googleapis.com/auth/admin.directory.user.readonly,https://www.googleapis.com/auth/admin.directory.group.member.readonly. A delegation just granted can take up to 24 hours to apply",
            g.client_id()
        )
    );
    g.clear_faults();

    // The clock is off: Google judges iat/exp by its own time.
    g.inject(Fault::ClockSkew(-7200));
    let c = connect_as(&g, &key, &g.admin()).await;
    let (e, msg) = first_page_error(&c).await;
    assert_eq!(e.kind(), "clock_skew");
    assert_eq!(
        msg,
        "Google refused the token request's time (invalid_grant: Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values.): this machine's clock is off. Synchronise it (chrony, systemd-timesyncd or ntpd) and run again"
    );
    g.clear_faults();

    // "Invalid JWT Signature": a key that was deleted or rotated.
    let forged = dir.path().join("forged.json");
    g.write_deleted_key_file(&forged).unwrap();
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&forged).unwrap()).unwrap();
    v["token_uri"] = serde_json::json!(g.token_uri());
    std::fs::write(&forged, v.to_string()).unwrap();
    let c = connect_as(&g, &forged, &g.admin()).await;
    let (e, msg) = first_page_error(&c).await;
    assert_eq!(e.kind(), "key_rejected");
    assert_eq!(
        msg,
        "Google rejected the key's signature (invalid_grant: Invalid JWT Signature): the key was deleted or rotated. Create a new JSON key for retrac-sync@fake-project.iam.gserviceaccount.com and point [google].key_file at it"
    );

    // invalid_client: the service account itself is gone.
    v["client_email"] = serde_json::json!("deleted@fake-project.iam.gserviceaccount.com");
    std::fs::write(&forged, v.to_string()).unwrap();
    let c = connect_as(&g, &forged, &g.admin()).await;
    let (e, msg) = first_page_error(&c).await;
    assert_eq!(e.kind(), "account_unknown");
    assert_eq!(
        msg,
        "Google does not know the service account deleted@fake-project.iam.gserviceaccount.com (invalid_client): it was deleted, or the key file belongs to another project. Create a JSON key for an existing service account and point [google].key_file at it"
    );
    assert_eq!(g.tokens_issued(), 1, "none of these got a token");

    // domainCannotUseApis.
    g.inject(Fault::FailPage {
        endpoint: "users.list",
        page: 1,
        times: 1,
        status: 403,
        reason: "domainCannotUseApis",
    });
    let c = client(&g, &dir).await;
    let (e, msg) = first_page_error(&c).await;
    assert_eq!(e.kind(), "domain_cannot_use_apis");
    assert_eq!(
        msg,
        "Google answered domainCannotUseApis: this Google account may not use the Directory API. Check that its edition includes the Admin SDK and that API access is not turned off (Admin console → Security → Access and data control → API controls)"
    );

    // A scope group Google does not know is named.
    let e = c
        .list_members_page("no-such-group@example.com", None)
        .await
        .unwrap_err();
    assert_eq!(
        directory::diagnose(&e),
        "Google does not know the scope group no-such-group@example.com (members.list answered 404): check the address in [scope].groups; it must be a group of this customer (its address or one of its aliases), not a user"
    );
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

async fn client_with_timeout(
    g: &FakeGoogle,
    dir: &tempfile::TempDir,
    timeout: std::time::Duration,
) -> DirectoryClient {
    let key = dir.path().join("key.json");
    g.write_key_file(&key).unwrap();
    directory::connect_with_timeout(
        &key,
        &g.admin(),
        true,
        &g.base_url(),
        Backoff::fast(),
        timeout,
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_answer_that_stalls_times_out_and_is_retried() {
    let g = fake(FakeSeed::sample(10, "example.com")).await;
    let dir = tempfile::tempdir().unwrap();
    let c = client_with_timeout(&g, &dir, std::time::Duration::from_millis(300)).await;
    g.inject(Fault::StallToken(std::time::Duration::from_secs(3600)));
    // Google answers again once the first token request is stalled (that one times out).
    let g_ref = &g;
    let (users, ()) = tokio::join!(all_users(&c), async {
        crate::common::wait_until(
            std::time::Duration::from_secs(10),
            "the first token request",
            async || g_ref.requests("token") > 0,
        )
        .await;
        g_ref.clear_faults();
    });
    assert_eq!(users.unwrap().len(), 10);
    assert!(g.requests("token") >= 2, "timed out, then asked again");
    assert_eq!(g.tokens_issued(), 1);
    // Stalled for good: the run gets an error, it does not hang.
    let c = client_with_timeout(&g, &dir, std::time::Duration::from_millis(100)).await;
    g.inject(Fault::StallToken(std::time::Duration::from_secs(3600)));
    let err = all_users(&c).await.unwrap_err();
    assert!(
        matches!(err, DirectoryError::GaveUp { attempts: 7, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("token request"), "{err}");
}

#[tokio::test]
async fn token_server_errors_are_retried_like_api_calls() {
    let g = fake(FakeSeed::sample(10, "example.com")).await;
    let dir = tempfile::tempdir().unwrap();
    let c = client(&g, &dir).await;
    g.inject(Fault::TokenServerError { times: 2 });
    assert_eq!(all_users(&c).await.unwrap().len(), 10);
    assert_eq!(g.requests("token"), 3);
    assert_eq!(g.tokens_issued(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stalls_halfway_times_out_and_is_retried() {
    let g = fake(FakeSeed::sample(10, "example.com")).await;
    let dir = tempfile::tempdir().unwrap();
    let c = client_with_timeout(&g, &dir, std::time::Duration::from_millis(300)).await;
    g.inject(Fault::StallBody {
        page: 1,
        stall: std::time::Duration::from_secs(3600),
    });
    let t0 = std::time::Instant::now();
    assert_eq!(all_users(&c).await.unwrap().len(), 10);
    assert_eq!(
        g.requests("users.list"),
        2,
        "the stalled answer, then a whole one"
    );
    assert!(t0.elapsed() < std::time::Duration::from_secs(30));
}

#[tokio::test]
async fn resource_exhausted_in_the_newer_error_shape_is_retried() {
    let g = fake(FakeSeed::sample(10, "example.com")).await;
    let dir = tempfile::tempdir().unwrap();
    let c = client(&g, &dir).await;
    g.inject(Fault::ResourceExhausted {
        endpoint: "users.list",
        page: 1,
        times: 2,
    });
    assert_eq!(all_users(&c).await.unwrap().len(), 10);
    assert_eq!(g.requests("users.list"), 3);
    // And for members.list.
    g.inject(Fault::ResourceExhausted {
        endpoint: "members.list",
        page: 1,
        times: 1,
    });
    c.list_members_page("everyone@example.com", None)
        .await
        .unwrap();
    assert_eq!(g.requests("members.list"), 2);
}

#[tokio::test]
async fn retry_after_on_a_429_is_honoured_up_to_the_backoff_maximum() {
    let g = fake(FakeSeed::sample(10, "example.com")).await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.json");
    g.write_key_file(&key).unwrap();
    // A backoff whose first wait (50 ms) is far below the 1 s Google asks for, and whose
    // longest wait (50 ms * 2^5 = 1.6 s) is above it.
    let backoff = Backoff {
        base: std::time::Duration::from_millis(50),
        jitter: std::time::Duration::ZERO,
        max_retries: 6,
    };
    let c = directory::connect(&key, &g.admin(), true, &g.base_url(), backoff)
        .await
        .unwrap();
    g.inject(Fault::RetryAfter {
        page: 1,
        times: 1,
        seconds: 1,
    });
    let t0 = std::time::Instant::now();
    assert_eq!(all_users(&c).await.unwrap().len(), 10);
    let waited = t0.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(950)
            && waited < std::time::Duration::from_millis(1550),
        "{waited:?}"
    );
    // An hour is cut to the longest backoff wait (1.6 s here).
    g.inject(Fault::RetryAfter {
        page: 1,
        times: 1,
        seconds: 3600,
    });
    let t0 = std::time::Instant::now();
    assert_eq!(all_users(&c).await.unwrap().len(), 10);
    let waited = t0.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(1590)
            && waited < std::time::Duration::from_secs(30),
        "{waited:?}"
    );
}

#[tokio::test]
async fn usage_limits_a_plain_text_rate_refusal_and_members_system_error_are_retried() {
    let g = fake(FakeSeed::sample(10, "example.com")).await;
    let dir = tempfile::tempdir().unwrap();
    let c = client(&g, &dir).await;
    // A 403 in the usageLimits domain, whatever its reason.
    g.inject(Fault::FailPage {
        endpoint: "users.list",
        page: 1,
        times: 2,
        status: 403,
        reason: "dailyLimitExceeded",
    });
    assert_eq!(all_users(&c).await.unwrap().len(), 10);
    assert_eq!(g.requests("users.list"), 3);
    // A 403 whose body is plain text, not JSON.
    g.inject(Fault::PlainTextRateLimit {
        endpoint: "users.list",
        page: 1,
        times: 2,
    });
    assert_eq!(all_users(&c).await.unwrap().len(), 10);
    assert_eq!(g.requests("users.list"), 6);
    // systemError from members.list, even with a 4xx status.
    g.inject(Fault::FailPage {
        endpoint: "members.list",
        page: 1,
        times: 2,
        status: 400,
        reason: "systemError",
    });
    c.list_members_page("everyone@example.com", None)
        .await
        .unwrap();
    assert_eq!(g.requests("members.list"), 3);
    // A 400 of another reason is still not retried.
    g.inject(Fault::FailPage {
        endpoint: "members.list",
        page: 1,
        times: 1,
        status: 400,
        reason: "invalid",
    });
    assert!(c
        .list_members_page("everyone@example.com", None)
        .await
        .is_err());
    assert_eq!(g.requests("members.list"), 4);
}

#[tokio::test]
async fn each_token_refusal_names_its_cause_and_is_never_retried() {
    let g = fake(FakeSeed::sample(3, "example.com")).await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.json");
    g.write_key_file(&key).unwrap();
    let sa = g.service_account();
    let admin = g.admin();
    let cases: [(u16, &str, &str, &str, String); 5] = [
        (
            400,
            "invalid_grant",
            "Invalid grant: account not found",
            "service_account_gone",
            format!("Google refused a token for the service account {sa} (invalid_grant: Invalid grant: account not found): the service account was deleted or disabled. Enable it again in the Google Cloud console (IAM & Admin → Service Accounts), or create a new one with a JSON key, point [google].key_file at it and grant its client id the domain-wide delegation"),
        ),
        (
            400,
            "invalid_grant",
            "The account has been deleted",
            "subject_refused",
            format!("Google refused [google].subject {admin} (invalid_grant: The account has been deleted): the admin was deleted, or the setting is not a user's primary email address. Set it to the primary email of an existing Google Workspace super admin"),
        ),
        (
            400,
            "invalid_grant",
            "Not a valid email",
            "subject_refused",
            format!("Google refused [google].subject {admin} (invalid_grant: Not a valid email): the admin was deleted, or the setting is not a user's primary email address. Set it to the primary email of an existing Google Workspace super admin"),
        ),
        (
            400,
            "invalid_request",
            "Invalid impersonation \"sub\" field: nobody",
            "subject_refused",
            format!("Google refused [google].subject {admin} (invalid_request: Invalid impersonation \"sub\" field: nobody): the admin was deleted, or the setting is not a user's primary email address. Set it to the primary email of an existing Google Workspace super admin"),
        ),
        (
            400,
            "invalid_grant",
            "Something Google has not said before",
            "token_refused",
            "Google refused the token request (invalid_grant: Something Google has not said before); nothing in its answer names the cause. Check [google].subject, the key file and the domain-wide delegation, then run `retrac-sync doctor`".to_string(),
        ),
    ];
    for (status, error, description, kind, message) in cases {
        g.clear_faults();
        g.inject(Fault::TokenRefuses {
            status,
            error,
            description,
        });
        let c = connect_as(&g, &key, &admin).await;
        let before = g.requests("token");
        let (e, msg) = first_page_error(&c).await;
        assert_eq!((e.kind(), msg), (kind, message));
        assert_eq!(
            g.requests("token") - before,
            1,
            "{description}: not retried"
        );
        assert_eq!(g.requests("users.list"), 0);
    }
}

#[tokio::test]
async fn a_403_names_the_key_or_the_group_and_only_a_customer_listing_blames_the_admin() {
    let g = fake(FakeSeed::sample(10, "example.com")).await;
    let dir = tempfile::tempdir().unwrap();
    let c = client(&g, &dir).await;
    let moved = g.users()[0].clone();
    g.move_to_other_customer(&moved.primary_email).unwrap();
    for key in [moved.id.as_str(), moved.primary_email.as_str()] {
        let e = c.get_user(key).await.unwrap_err();
        assert_eq!(e.kind(), "not_in_customer");
        assert_eq!(
            directory::diagnose(&e),
            format!("{key} is not in this Google customer, or the admin's role does not cover it (Google users.get answered 403 Not Authorized to access this resource/api)")
        );
    }
    // members.list: the group-not-found message, an alias being no problem.
    g.inject(Fault::FailPage {
        endpoint: "members.list",
        page: 1,
        times: 1,
        status: 403,
        reason: "forbidden",
    });
    let e = c
        .list_members_page("sales@example.com", None)
        .await
        .unwrap_err();
    assert_eq!(
        directory::diagnose(&e),
        "Google does not know the scope group sales@example.com (members.list answered 403): check the address in [scope].groups; it must be a group of this customer (its address or one of its aliases), not a user"
    );
}

#[tokio::test]
async fn a_deleted_user_answers_412_for_20_days_then_404_and_is_listed_only_with_show_deleted() {
    let g = fake(FakeSeed::sample(10, "example.com")).await;
    let dir = tempfile::tempdir().unwrap();
    let c = client(&g, &dir).await;
    let u = g.users()[3].clone();
    assert!(c.get_user(&u.id).await.unwrap().is_some());
    g.delete(&u.primary_email).unwrap();
    // 412 conditionNotMet, which the client reads as gone.
    assert_eq!(c.get_user(&u.id).await.unwrap(), None);
    assert!(!all_users(&c).await.unwrap().contains(&u.primary_email));
    let deleted = c.deleted_user_ids("my_customer").await.unwrap();
    assert_eq!(
        deleted.into_iter().collect::<Vec<_>>(),
        std::slice::from_ref(&u.id)
    );
    assert!(g
        .last_query("users.list")
        .unwrap()
        .contains("showDeleted=true"));
    // Restored with its id.
    assert!(g.undelete(&u.primary_email));
    assert_eq!(c.get_user(&u.id).await.unwrap().unwrap().id, u.id);
    assert!(c.deleted_user_ids("my_customer").await.unwrap().is_empty());
    // Deleted, then 20 days on: purged, 404, and no longer listed or restorable.
    g.delete(&u.primary_email).unwrap();
    g.advance_clock(std::time::Duration::from_secs(20 * 24 * 3600));
    assert_eq!(c.get_user(&u.id).await.unwrap(), None);
    assert!(c.deleted_user_ids("my_customer").await.unwrap().is_empty());
    assert!(!g.undelete(&u.primary_email));
}

#[tokio::test]
async fn has_member_answers_for_nested_membership_and_400_across_domains() {
    let mut seed = FakeSeed::sample(50, "example.com");
    seed.users
        .push(FakeUser::new("800", "zed@example.org", "Zed", "Other"));
    seed.groups.push(fake_google::FakeGroup {
        email: "team@example.com".into(),
        members: vec![FakeMember::User("zed@example.org".into())],
    });
    seed.groups.push(fake_google::FakeGroup {
        email: "staff@example.com".into(),
        members: vec![FakeMember::Group("team@example.com".into())],
    });
    let g = fake(seed).await;
    let dir = tempfile::tempdir().unwrap();
    let c = client(&g, &dir).await;
    let kernel = g
        .users()
        .into_iter()
        .find(|u| u.org_unit_path == "/Engineering/Kernel")
        .unwrap();
    let sales = g
        .users()
        .into_iter()
        .find(|u| u.org_unit_path == "/Sales")
        .unwrap();
    // Nested (kernel@ in engineering@), by id and by address; not a member.
    assert_eq!(
        c.has_member("engineering@example.com", &kernel.id)
            .await
            .unwrap(),
        Some(true)
    );
    assert_eq!(
        c.has_member("engineering@example.com", &kernel.primary_email)
            .await
            .unwrap(),
        Some(true)
    );
    assert_eq!(
        c.has_member("engineering@example.com", &sales.id)
            .await
            .unwrap(),
        Some(false)
    );
    // A listing that drops the member does not change hasMember.
    g.inject(Fault::OmitMember {
        group: "sales@example.com".into(),
        email: sales.primary_email.clone(),
    });
    assert_eq!(
        c.has_member("sales@example.com", &sales.id).await.unwrap(),
        Some(true)
    );
    // Nested across domains: Google cannot tell.
    assert_eq!(
        c.has_member("staff@example.com", "800").await.unwrap(),
        None
    );
    assert_eq!(
        c.has_member("team@example.com", "800").await.unwrap(),
        Some(true),
        "direct membership across domains is fine"
    );
}

#[tokio::test]
async fn the_deleted_users_are_read_page_by_page() {
    let g = fake(FakeSeed::sample(700, "example.com")).await;
    let dir = tempfile::tempdir().unwrap();
    let c = client(&g, &dir).await;
    let users = g.users();
    for u in users.iter().take(600) {
        g.delete(&u.primary_email).unwrap();
    }
    let ids = c.deleted_user_ids("my_customer").await.unwrap();
    assert_eq!(ids.len(), 600);
    assert!(users.iter().take(600).all(|u| ids.contains(&u.id)));
    assert_eq!(g.requests("users.list"), 2, "500 a page");
    assert!(g
        .last_query("users.list")
        .unwrap()
        .contains("fields=nextPageToken%2Cusers%28id%29"));
}
