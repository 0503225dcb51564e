//! The console's router, request by request: sessions, the owner check, CSRF and origin,
//! escaping, the headers, tokens shown once, the rate limit.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use chrono::Utc;
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;
use crate::access::{self, LoginRequest};
use crate::config::ConsoleConfig;
use crate::member::{Actor, Change, DirectoryAttrs, ManagedBy, Role, UserName};
use crate::store::Store;

const ORIGIN: &str = "http://127.0.0.1:9465";

struct Console {
    _dir: tempfile::TempDir,
    store: Store,
    app: Router,
}

fn console_with(config: ConsoleConfig) -> Console {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let ctx = admin::Context {
        store: store.clone(),
        scim_url: Some("https://scim.example.com/scim/v2".into()),
        console_url: Some(ORIGIN.into()),
        sync: None,
        on_sync: None,
        progress: None,
        webhook_retry: Default::default(),
        stopping: None,
    };
    let state = ConsoleState::new(ctx, &config, &[]).unwrap();
    Console {
        _dir: dir,
        store,
        app: router(state),
    }
}

fn console() -> Console {
    console_with(ConsoleConfig::default())
}

/// A member, made as an owner's invite, with `role`.
fn member(store: &Store, email: &str, given: &str, role: Role) -> crate::member::Member {
    let attrs = DirectoryAttrs::new(UserName::parse(email).unwrap(), Some(given), Some("Test"));
    let m = crate::provision::apply(
        store,
        Change::Create {
            attrs,
            managed_by: ManagedBy::Manual,
        },
        &Actor::Owner,
        Utc::now(),
    )
    .unwrap()
    .member()
    .clone();
    if role == Role::Owner {
        crate::provision::apply(
            store,
            Change::SetRole { id: m.id, role },
            &Actor::Owner,
            Utc::now(),
        )
        .unwrap();
    }
    store.get(m.id).unwrap().unwrap()
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Console {
    async fn send(&self, req: Request<Body>) -> Answer {
        let mut req = req;
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Answer {
        let mut b = Request::get(path);
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, format!("{SESSION_COOKIE}={c}"));
        }
        self.send(b.body(Body::empty()).unwrap()).await
    }

    async fn post(
        &self,
        path: &str,
        cookie: Option<&str>,
        origin: Option<&str>,
        form: &str,
    ) -> Answer {
        let mut b =
            Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, format!("{SESSION_COOKIE}={c}"));
        }
        if let Some(o) = origin {
            b = b.header(header::ORIGIN, o);
        }
        self.send(b.body(Body::from(form.to_string())).unwrap())
            .await
    }

    /// Signs `email` in with a one-time link; the session cookie's value.
    async fn sign_in(&self, email: &str) -> String {
        let link = access::create_link(
            &self.store,
            &LoginRequest {
                email: email.into(),
            },
            Some(ORIGIN),
            Utc::now(),
        )
        .unwrap();
        let path = link.url.strip_prefix(ORIGIN).unwrap().to_string();
        let a = self.post(&path, None, Some(ORIGIN), "").await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        let set = a
            .headers
            .get(header::SET_COOKIE)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Secure"] {
            assert!(set.contains(attr), "{set} lacks {attr}");
        }
        set.strip_prefix(&format!("{SESSION_COOKIE}="))
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string()
    }
}

fn csrf(cookie: &str) -> String {
    session::csrf_of(&crate::access::Secret(cookie.to_string()))
}

#[tokio::test]
async fn pages_need_a_session_and_every_answer_carries_the_headers() {
    let c = console();
    for path in ["/members", "/security", "/sync", "/audit", "/members/x"] {
        let a = c.get(path, None).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(a.headers[header::LOCATION], "/login");
        assert_eq!(
            a.headers[header::CONTENT_SECURITY_POLICY],
            "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
        );
        assert_eq!(a.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(a.headers[header::REFERRER_POLICY], "no-referrer");
    }
    // An unknown session is no session.
    let a = c.get("/members", Some("not-a-session")).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    let login = c.get("/login", None).await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(!login.body.contains("<script>"), "no inline script");
    assert!(login.body.contains("console login EMAIL"));
}

#[tokio::test]
async fn a_link_signs_in_an_active_owner_once() {
    let c = console();
    member(&c.store, "boss@example.com", "Boss", Role::Owner);
    member(&c.store, "staff@example.com", "Staff", Role::Member);
    // Only an owner gets a link.
    let e = access::create_link(
        &c.store,
        &LoginRequest {
            email: "staff@example.com".into(),
        },
        Some(ORIGIN),
        Utc::now(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("owner role"), "{e}");

    let link = access::create_link(
        &c.store,
        &LoginRequest {
            email: "boss@example.com".into(),
        },
        Some(ORIGIN),
        Utc::now(),
    )
    .unwrap();
    let path = link.url.strip_prefix(ORIGIN).unwrap().to_string();
    // Opening it spends nothing; a POST from elsewhere is refused and spends nothing.
    assert_eq!(c.get(&path, None).await.status, StatusCode::OK);
    let a = c.post(&path, None, Some("https://evil.example"), "").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let ok = c.post(&path, None, Some(ORIGIN), "").await;
    assert_eq!(ok.status, StatusCode::OK);
    assert!(ok.body.contains(r#"http-equiv="refresh""#));
    // Twice is once too many.
    let again = c.post(&path, None, Some(ORIGIN), "").await;
    assert_eq!(again.status, StatusCode::FORBIDDEN);
    assert!(again.body.contains("was used already"));
    // The session is in the store only as a hash.
    let cookie = ok.headers[header::SET_COOKIE].to_str().unwrap();
    let id = cookie.split(';').next().unwrap().split_once('=').unwrap().1;
    let page = c.get("/members", Some(id)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("boss@example.com"));
}

#[tokio::test]
async fn an_expired_link_does_not_sign_in() {
    let c = console();
    member(&c.store, "boss@example.com", "Boss", Role::Owner);
    let made = Utc::now() - chrono::Duration::minutes(11);
    let link = access::create_link(
        &c.store,
        &LoginRequest {
            email: "boss@example.com".into(),
        },
        Some(ORIGIN),
        made,
    )
    .unwrap();
    let path = link.url.strip_prefix(ORIGIN).unwrap().to_string();
    assert_eq!(
        c.post(&path, None, Some(ORIGIN), "").await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn a_post_needs_the_consoles_origin_and_the_sessions_csrf_token() {
    let c = console();
    let boss = member(&c.store, "boss@example.com", "Boss", Role::Owner);
    let staff = member(&c.store, "staff@example.com", "Staff", Role::Member);
    let s = c.sign_in("boss@example.com").await;
    let path = format!("/members/{}/locations", staff.id);
    let good = format!("csrf={}&locations=Paris", csrf(&s));
    // A cross-site form: another origin, or none, or `null` from elsewhere.
    for origin in [Some("https://evil.example"), None, Some("null")] {
        let a = c.post(&path, Some(&s), origin, &good).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{origin:?}");
    }
    for site in ["cross-site", "same-site", "none"] {
        let req = Request::post(&path)
            .header(header::COOKIE, format!("{SESSION_COOKIE}={s}"))
            .header(header::ORIGIN, "null")
            .header("sec-fetch-site", site)
            .body(Body::from(good.clone()))
            .unwrap();
        assert_eq!(c.send(req).await.status, StatusCode::FORBIDDEN, "{site}");
    }
    // The right origin without the token, or with another session's.
    let other = c.sign_in("boss@example.com").await;
    for form in [
        "locations=Paris".to_string(),
        format!("csrf={}&locations=Paris", csrf(&other)),
    ] {
        let a = c.post(&path, Some(&s), Some(ORIGIN), &form).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{form}");
    }
    assert!(
        c.store.get(staff.id).unwrap().unwrap().locations.is_empty(),
        "nothing written"
    );
    // With both, the change is made, and the audit names the owner. A browser under
    // `Referrer-Policy: no-referrer` writes `Origin: null` and `Sec-Fetch-Site: same-origin`.
    let req = Request::post(&path)
        .header(header::COOKIE, format!("{SESSION_COOKIE}={s}"))
        .header(header::ORIGIN, "null")
        .header("sec-fetch-site", "same-origin")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("csrf={}&locations=Lyon", csrf(&s))))
        .unwrap();
    assert_eq!(c.send(req).await.status, StatusCode::SEE_OTHER);
    let a = c.post(&path, Some(&s), Some(ORIGIN), &good).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(
        c.store.get(staff.id).unwrap().unwrap().locations,
        vec!["Paris".to_string()]
    );
    let audit = c
        .store
        .audit(&crate::store::AuditQuery {
            member: Some(staff.id),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        audit.last().unwrap().actor,
        Actor::Console("boss@example.com".into())
    );
    assert_eq!(
        audit.last().unwrap().actor.to_string(),
        "console:boss@example.com"
    );
    let _ = boss;
}

#[tokio::test]
async fn a_demoted_or_deactivated_owner_is_signed_out_at_the_next_click() {
    let c = console();
    let boss = member(&c.store, "boss@example.com", "Boss", Role::Owner);
    let s = c.sign_in("boss@example.com").await;
    assert_eq!(c.get("/members", Some(&s)).await.status, StatusCode::OK);
    crate::provision::apply(
        &c.store,
        Change::SetRole {
            id: boss.id,
            role: Role::Member,
        },
        &Actor::Owner,
        Utc::now(),
    )
    .unwrap();
    let a = c.get("/members", Some(&s)).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert!(a.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    // Made an owner again, the old session stays ended.
    crate::provision::apply(
        &c.store,
        Change::SetRole {
            id: boss.id,
            role: Role::Owner,
        },
        &Actor::Owner,
        Utc::now(),
    )
    .unwrap();
    assert_eq!(
        c.get("/members", Some(&s)).await.status,
        StatusCode::SEE_OTHER
    );

    let s = c.sign_in("boss@example.com").await;
    crate::provision::apply(
        &c.store,
        Change::Deactivate {
            id: boss.id,
            expected_version: None,
        },
        &Actor::Owner,
        Utc::now(),
    )
    .unwrap();
    assert_eq!(
        c.get("/members", Some(&s)).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn a_session_ends_when_idle_or_too_old_and_at_sign_out() {
    let c = console();
    member(&c.store, "boss@example.com", "Boss", Role::Owner);
    let s = c.sign_in("boss@example.com").await;
    let hash = crate::access::Secret(s.clone()).hash();
    // Idle for 31 minutes.
    let mut rec = c.store.console_session(&hash).unwrap().unwrap();
    rec.last_seen = Utc::now() - chrono::Duration::minutes(31);
    c.store.put_console_session(&hash, &rec).unwrap();
    assert_eq!(
        c.get("/members", Some(&s)).await.status,
        StatusCode::SEE_OTHER
    );
    assert!(c.store.console_session(&hash).unwrap().is_none(), "removed");
    // Used a minute ago, but signed in 13 hours ago.
    let s = c.sign_in("boss@example.com").await;
    let hash = crate::access::Secret(s.clone()).hash();
    let mut rec = c.store.console_session(&hash).unwrap().unwrap();
    rec.created = Utc::now() - chrono::Duration::hours(13);
    rec.last_seen = Utc::now() - chrono::Duration::minutes(1);
    c.store.put_console_session(&hash, &rec).unwrap();
    assert_eq!(
        c.get("/members", Some(&s)).await.status,
        StatusCode::SEE_OTHER
    );
    // Sign out.
    let s = c.sign_in("boss@example.com").await;
    let a = c
        .post(
            "/logout",
            Some(&s),
            Some(ORIGIN),
            &format!("csrf={}", csrf(&s)),
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(
        c.get("/members", Some(&s)).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn a_member_named_like_markup_is_shown_as_text() {
    let c = console();
    member(&c.store, "boss@example.com", "Boss", Role::Owner);
    let evil = member(
        &c.store,
        "evil@example.com",
        "<img src=x onerror=alert(1)>",
        Role::Member,
    );
    let s = c.sign_in("boss@example.com").await;
    let list = c.get("/members", Some(&s)).await;
    assert!(
        list.body.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{}",
        list.body
    );
    assert!(!list.body.contains("<img"));
    let one = c.get(&format!("/members/{}", evil.id), Some(&s)).await;
    assert!(one.body.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(!one.body.contains("<img"));
    // A search for markup is echoed escaped too.
    let q = c
        .get(
            "/members?q=%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E",
            Some(&s),
        )
        .await;
    assert!(!q.body.contains("<script>alert"), "{}", q.body);
    assert!(q.body.contains("&quot;&gt;&lt;script&gt;"));
}

#[tokio::test]
async fn members_are_searched_filtered_and_paged_in_fifties() {
    let c = console();
    member(&c.store, "boss@example.com", "Boss", Role::Owner);
    for i in 0..120 {
        let m = member(
            &c.store,
            &format!("user{i:03}@example.com"),
            &format!("Given{i:03}"),
            Role::Member,
        );
        if i % 3 == 0 {
            crate::provision::apply(
                &c.store,
                Change::Deactivate {
                    id: m.id,
                    expected_version: None,
                },
                &Actor::Owner,
                Utc::now(),
            )
            .unwrap();
        }
    }
    let s = c.sign_in("boss@example.com").await;
    let rows = |body: &str| body.matches("<tr><td><a href=\"/members/").count();
    let first = c.get("/members", Some(&s)).await;
    assert_eq!(rows(&first.body), 50);
    assert!(first.body.contains("Next page"));
    // The search matches user names and names, ignoring case.
    let a = c.get("/members?q=GIVEN01", Some(&s)).await;
    assert_eq!(rows(&a.body), 10, "Given010..Given019");
    let a = c.get("/members?q=user11&status=inactive", Some(&s)).await;
    assert_eq!(rows(&a.body), 3, "user111, 114, 117");
    let a = c.get("/members?status=active&q=user", Some(&s)).await;
    assert_eq!(rows(&a.body), 50);
    // Walking the pages of active members lists each once.
    let mut seen = 0;
    let mut path = "/members?status=active&q=user".to_string();
    loop {
        let a = c.get(&path, Some(&s)).await;
        seen += rows(&a.body);
        match a
            .body
            .split("href=\"/members?")
            .find(|p| p.contains("after=") && a.body.contains("Next page"))
        {
            Some(rest) if rest.contains("after=") => {
                let q = rest.split('"').next().unwrap().replace("&amp;", "&");
                let next = format!("/members?{q}");
                if next == path {
                    break;
                }
                path = next;
            }
            _ => break,
        }
    }
    assert_eq!(seen, 80);
}

#[tokio::test]
async fn a_new_token_is_shown_once_and_a_revoked_one_is_refused_by_scim() {
    let c = console();
    member(&c.store, "boss@example.com", "Boss", Role::Owner);
    let s = c.sign_in("boss@example.com").await;
    let a = c
        .post(
            "/security/tokens",
            Some(&s),
            Some(ORIGIN),
            &format!("csrf={}&label=google-workspace", csrf(&s)),
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let at = a.headers[header::LOCATION].to_str().unwrap().to_string();
    let shown = c.get(&at, Some(&s)).await;
    let secret = shown
        .body
        .split("value=\"")
        .find(|v| v.starts_with("rtsc_"))
        .and_then(|v| v.split('"').next())
        .expect("the token is shown")
        .to_string();
    assert!(
        shown.body.contains("revoke the old one"),
        "the rotation advice"
    );
    assert_eq!(shown.headers[header::CACHE_CONTROL], "no-store");
    // A reload shows only its id.
    let again = c.get(&at, Some(&s)).await;
    assert!(!again.body.contains(&secret));
    assert!(again.body.contains("cannot be shown again"));
    // Revoke: SCIM's check of the token fails from then on.
    let id = at.rsplit('/').next().unwrap();
    let auth = crate::scim::auth::Authenticator::new(c.store.clone());
    let bearer = format!("Bearer {secret}");
    assert!(auth.check(Some(&bearer), Utc::now()).is_ok());
    let r = c
        .post(
            &format!("/security/tokens/{id}/revoke"),
            Some(&s),
            Some(ORIGIN),
            &format!("csrf={}", csrf(&s)),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(auth.check(Some(&bearer), Utc::now()).is_err());
    // The token's events name the owner who made and revoked it.
    let events = c.store.events_after(0, 100).unwrap();
    let actors: Vec<&str> = events
        .iter()
        .filter(|e| e.event_type.as_str().starts_with("token."))
        .filter_map(|e| e.data["actor"].as_str())
        .collect();
    assert_eq!(
        actors,
        ["console:boss@example.com", "console:boss@example.com"]
    );
    let page = c.get("/security", Some(&s)).await;
    assert!(page.body.contains("revoked"));
    assert!(page.body.contains("https://scim.example.com/scim/v2"));
}

#[tokio::test]
async fn sign_in_attempts_are_limited_per_address() {
    let c = console();
    member(&c.store, "boss@example.com", "Boss", Role::Owner);
    let mut last = StatusCode::OK;
    for _ in 0..=SIGN_IN_LIMIT {
        last = c
            .post("/login/link/wrong", None, Some(ORIGIN), "")
            .await
            .status;
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn the_assets_are_served_and_nothing_else_is() {
    let c = console();
    let css = c.get("/static/console.css", None).await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
    let js = c.get("/static/console.js", None).await;
    assert!(js.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert_eq!(c.get("/nope", None).await.status, StatusCode::NOT_FOUND);
    let put = c
        .send(Request::put("/members").body(Body::empty()).unwrap())
        .await;
    assert_eq!(put.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn role_restore_and_disconnect_go_through_the_owners_rules() {
    let c = console();
    member(&c.store, "boss@example.com", "Boss", Role::Owner);
    // A member an identity provider made over SCIM.
    let attrs = DirectoryAttrs::new(
        UserName::parse("staff@example.com").unwrap(),
        Some("Staff"),
        Some("Test"),
    );
    let staff = crate::provision::apply(
        &c.store,
        Change::Create {
            attrs,
            managed_by: ManagedBy::Google,
        },
        &Actor::Scim("idp".into()),
        Utc::now(),
    )
    .unwrap()
    .member()
    .clone();
    let s = c.sign_in("boss@example.com").await;
    let form = |rest: &str| format!("csrf={}&{rest}", csrf(&s));
    // Save role.
    let a = c
        .post(
            &format!("/members/{}/role", staff.id),
            Some(&s),
            Some(ORIGIN),
            &form("role=owner"),
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(c.store.get(staff.id).unwrap().unwrap().role, Role::Owner);
    // A role that does not exist is the CLI's usage error, shown as a message.
    let a = c
        .post(
            &format!("/members/{}/role", staff.id),
            Some(&s),
            Some(ORIGIN),
            &form("role=king"),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body.contains("unknown role"), "{}", a.body);
    // Restore shows only for a SCIM-deleted member, and brings it back.
    let page = c.get(&format!("/members/{}", staff.id), Some(&s)).await;
    assert!(!page.body.contains(">Restore</button>"));
    crate::provision::apply(
        &c.store,
        Change::ScimDelete {
            id: staff.id,
            expected_version: None,
        },
        &Actor::Scim("idp".into()),
        Utc::now(),
    )
    .unwrap();
    let page = c.get(&format!("/members/{}", staff.id), Some(&s)).await;
    assert!(page.body.contains(">Restore</button>"), "{}", page.body);
    let a = c
        .post(
            &format!("/members/{}/restore", staff.id),
            Some(&s),
            Some(ORIGIN),
            &form(""),
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert!(!c.store.get(staff.id).unwrap().unwrap().scim_deleted);
    // Disconnect SCIM: asks first, then revokes every token and offers the review.
    for label in ["google", "okta"] {
        crate::tokens::execute(
            &c.store,
            crate::tokens::TokenRequest::Create {
                label: label.into(),
                scope: Default::default(),
            },
            None,
            Utc::now(),
        )
        .unwrap();
    }
    let confirm = c.get("/security/disconnect", Some(&s)).await;
    assert!(confirm.body.contains(">Disconnect SCIM</button>"));
    let done = c
        .post("/security/disconnect", Some(&s), Some(ORIGIN), &form(""))
        .await;
    assert_eq!(done.status, StatusCode::OK);
    assert!(done.body.contains("2 token(s) revoked"), "{}", done.body);
    assert!(done.body.contains(r#"href="/members?status=active""#));
    assert!(done.body.contains("Review active members"));
    assert!(c
        .store
        .tokens()
        .unwrap()
        .iter()
        .all(|t| t.revoked.is_some()));
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_has_its_own_sign_in_limit() {
    let c = console();
    let post = |peer: [u8; 4], xff: &str| {
        let mut req = Request::post("/login/link/wrong")
            .header(header::ORIGIN, ORIGIN)
            .header("x-forwarded-for", xff)
            .body(Body::empty())
            .unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((peer, 40000))));
        req
    };
    let status = |req: Request<Body>| async { c.app.clone().oneshot(req).await.unwrap().status() };
    // Through the proxy (127.0.0.1, trusted by default): one client uses up its limit ...
    for _ in 0..SIGN_IN_LIMIT {
        assert_eq!(
            status(post([127, 0, 0, 1], "198.51.100.1, 203.0.113.7")).await,
            StatusCode::FORBIDDEN
        );
    }
    assert_eq!(
        status(post([127, 0, 0, 1], "198.51.100.1, 203.0.113.7")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // ... and another client, through the same proxy, is still let in.
    assert_eq!(
        status(post([127, 0, 0, 1], "203.0.113.8")).await,
        StatusCode::FORBIDDEN
    );
    // A peer that is not a trusted proxy is counted by its own address, whatever it claims.
    for _ in 0..SIGN_IN_LIMIT {
        status(post([192, 0, 2, 9], "203.0.113.50")).await;
    }
    assert_eq!(
        status(post([192, 0, 2, 9], "203.0.113.51")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn console_logout_ends_a_members_sessions_or_all() {
    let c = console();
    member(&c.store, "boss@example.com", "Boss", Role::Owner);
    member(&c.store, "chief@example.com", "Chief", Role::Owner);
    let a = c.sign_in("boss@example.com").await;
    let b = c.sign_in("chief@example.com").await;
    let n = access::end_sessions(
        &c.store,
        &access::LogoutRequest {
            who: Some("boss@example.com".into()),
        },
    )
    .unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        c.get("/members", Some(&a)).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(c.get("/members", Some(&b)).await.status, StatusCode::OK);
    assert_eq!(
        access::end_sessions(&c.store, &access::LogoutRequest { who: None }).unwrap(),
        1
    );
    assert_eq!(
        c.get("/members", Some(&b)).await.status,
        StatusCode::SEE_OTHER
    );
}
