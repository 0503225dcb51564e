//! The console's Members page at a million members (figures: docs/development.md, "The
//! console"). Builds a store of `MEMBERS` members (default 1,000,000) through
//! `provision::apply_batch`, signs an owner in, then asks the console's router for pages:
//! the first, one deep in the order, active only, a search that matches a few names, and a
//! search that matches none (the worst case: the walk stops at its budget). Each is asked
//! `ROUNDS` times (default 25); prints the median and the slowest, with the HTML rendered.
//!
//! `cargo bench --bench console` (`MEMBERS=100000` for a quicker run).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use chrono::Utc;
use http_body_util::BodyExt;
use retrac_sync::access::Secret;
use retrac_sync::config::ConsoleConfig;
use retrac_sync::member::{Actor, Change, DirectoryAttrs, ManagedBy, Role, UserName};
use retrac_sync::store::{ConsoleSession, Store};
use retrac_sync::{admin, console, provision};
use tower::ServiceExt;

const BATCH: usize = 1_000;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn create(i: usize) -> Change {
    let mut attrs = DirectoryAttrs::new(
        UserName::parse(&format!("user{i:07}@example.com")).unwrap(),
        Some(&format!("Given{}", i % 1000)),
        Some(&format!("Family{i}")),
    );
    attrs.active = i % 10 != 0;
    attrs.google_id = Some(format!("1045987219{i:011}"));
    Change::Create {
        attrs,
        managed_by: ManagedBy::Google,
    }
}

fn main() {
    let members = env("MEMBERS", 1_000_000);
    let rounds = env("ROUNDS", 25);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let started = Instant::now();
    let actor = Actor::Pull(retrac_sync::member::RunId::parse("20261101T020000Z-000007").unwrap());
    for chunk in (0..members).collect::<Vec<_>>().chunks(BATCH) {
        let changes: Vec<Change> = chunk.iter().map(|&i| create(i)).collect();
        for r in provision::apply_batch(&store, &changes, &actor, Utc::now()).unwrap() {
            r.unwrap();
        }
        if chunk[0] % 100_000 == 0 {
            eprint!("\rseeding: {} of {members} members", chunk[0]);
        }
    }
    store.flush_blocking().unwrap();
    eprintln!(
        "\rseeded {members} members in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // An owner and their session.
    let owner = store
        .get_by_user_name("user0000001@example.com")
        .unwrap()
        .unwrap();
    provision::apply(
        &store,
        Change::SetRole {
            id: owner.id,
            role: Role::Owner,
        },
        &Actor::Owner,
        Utc::now(),
    )
    .unwrap();
    let secret = Secret::generate().unwrap();
    store
        .put_console_session(
            &secret.hash(),
            &ConsoleSession {
                member_id: owner.id,
                email: "user0000001@example.com".into(),
                method: "link".into(),
                created: Utc::now(),
                last_seen: Utc::now(),
            },
        )
        .unwrap();
    let ctx = admin::Context {
        store: store.clone(),
        scim_url: None,
        console_url: Some("http://127.0.0.1:9465".into()),
        sync: None,
        on_sync: None,
        progress: None,
        webhook_retry: Default::default(),
        stopping: None,
    };
    let state = console::ConsoleState::new(ctx, &ConsoleConfig::default(), &[]).unwrap();
    let app = console::router(state);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let deep = format!("user{:07}@example.com", members / 2);
    let cases = [
        ("first page, all", "/members".to_string()),
        (
            "a page halfway down",
            format!("/members?status=all&after={deep}"),
        ),
        ("active only", "/members?status=active".to_string()),
        (
            "search: a few match ('family99999')",
            "/members?q=family99999".to_string(),
        ),
        (
            "search: none match (the walk's budget)",
            "/members?q=nobody-at-all".to_string(),
        ),
    ];
    println!("console Members page, {members} members, {rounds} rounds each (HTML rendered):");
    for (name, path) in cases {
        let mut times = Vec::with_capacity(rounds);
        let mut rows = 0;
        for _ in 0..rounds {
            let mut req = Request::get(&path)
                .header(
                    header::COOKIE,
                    format!("{}={}", console::SESSION_COOKIE, secret.0),
                )
                .body(Body::empty())
                .unwrap();
            req.extensions_mut()
                .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))));
            let t = Instant::now();
            let res = rt.block_on(app.clone().oneshot(req)).unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            let body = rt.block_on(res.into_body().collect()).unwrap().to_bytes();
            times.push(t.elapsed());
            rows = String::from_utf8_lossy(&body)
                .matches("<tr><td><a href=\"/members/")
                .count();
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "  {name:48} median {:7.2} ms   slowest {:7.2} ms   ({rows} rows)",
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1])
        );
    }
}
