//! The event outbox and the feed: every member or token write appends its event in the same
//! transaction with a gap-free `seq`; the feed serves them in order (long poll, 410 for a
//! cursor older than what is kept); the member listing carries the `seq` it started from; a
//! token opens SCIM or the feed, never both; and a `kill -9` during a pull and SCIM writes
//! leaves no change without its event and no event without its change.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use chrono::Utc;
use http_body_util::BodyExt;
use retrac_sync::config::ScimConfig;
use retrac_sync::events::Event;
use retrac_sync::member::{Actor, Change, DirectoryAttrs, ManagedBy, MemberId, Role, UserName};
use retrac_sync::provision::{self, ProvisionError};
use retrac_sync::scim::schema::Limits;
use retrac_sync::scim::{router, ScimState};
use retrac_sync::store::{HeldDeactivation, HeldSet, RunId, Store, TokenScope};
use retrac_sync::tokens::{self, TokenRequest, TokenResponse};
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::common::*;

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    (dir, store)
}

fn token(store: &Store, label: &str, scope: TokenScope) -> (String, String) {
    match tokens::execute(
        store,
        TokenRequest::Create {
            label: label.into(),
            scope,
        },
        None,
        Utc::now(),
    )
    .unwrap()
    {
        TokenResponse::Created { token, secret, .. } => (token.id, secret.0),
        other => panic!("{other:?}"),
    }
}

fn create(store: &Store, name: &str, actor: &Actor) -> MemberId {
    let attrs = DirectoryAttrs::new(UserName::parse(name).unwrap(), Some("Ada"), Some("L"));
    provision::apply(
        store,
        Change::Create {
            attrs,
            managed_by: ManagedBy::Google,
        },
        actor,
        Utc::now(),
    )
    .unwrap()
    .member()
    .id
}

fn apply(store: &Store, change: Change, actor: &Actor) -> Result<(), ProvisionError> {
    provision::apply(store, change, actor, Utc::now()).map(|_| ())
}

fn all_events(store: &Store) -> Vec<Event> {
    store.events_after(0, usize::MAX).unwrap()
}

/// The member JSON of `members show -o json`.
fn view(store: &Store, id: MemberId) -> Value {
    serde_json::to_value(store.get(id).unwrap().unwrap().to_view()).unwrap()
}

/// What a consumer that applies events in `seq` order and drops stale versions ends with.
fn fold(events: &[Event]) -> BTreeMap<String, Value> {
    let mut state: BTreeMap<String, Value> = BTreeMap::new();
    let mut last = 0;
    for e in events {
        assert!(e.seq > last, "events out of order: {} after {last}", e.seq);
        last = e.seq;
        let Some(m) = e.data.get("member") else {
            continue;
        };
        let id = m["id"].as_str().unwrap().to_string();
        let stale = state
            .get(&id)
            .is_some_and(|old| old["version"].as_u64() >= m["version"].as_u64());
        if !stale {
            state.insert(id, m.clone());
        }
    }
    state
}

fn store_state(store: &Store) -> BTreeMap<String, Value> {
    store
        .members_by_id()
        .map(|m| {
            let m = m.unwrap();
            (m.id.to_string(), serde_json::to_value(m.to_view()).unwrap())
        })
        .collect()
}

fn types(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(|e| e.event_type.as_str()).collect()
}

#[test]
fn every_write_appends_one_event_in_order_with_no_gap_and_a_refused_one_none() {
    let (_d, store) = open();
    let scim = Actor::Scim("okta".into());
    let (token_id, _) = token(&store, "okta", TokenScope::Scim);
    let ada = create(&store, "ada@example.com", &scim);
    let bob = create(&store, "bob@example.com", &scim);
    // Refused (the name is taken): no event.
    let taken = DirectoryAttrs::new(UserName::parse("ADA@example.com").unwrap(), None, None);
    assert!(apply(
        &store,
        Change::Create {
            attrs: taken,
            managed_by: ManagedBy::Google,
        },
        &scim,
    )
    .is_err());
    // Unchanged (already active): no event.
    apply(
        &store,
        Change::Reactivate {
            id: ada,
            expected_version: None,
        },
        &scim,
    )
    .unwrap();
    apply(
        &store,
        Change::SetLocations {
            id: ada,
            locations: vec!["paris".into()],
        },
        &Actor::Owner,
    )
    .unwrap();
    apply(
        &store,
        Change::SetRole {
            id: ada,
            role: Role::Owner,
        },
        &Actor::Owner,
    )
    .unwrap();
    apply(
        &store,
        Change::Deactivate {
            id: ada,
            expected_version: None,
        },
        &scim,
    )
    .unwrap();
    apply(
        &store,
        Change::Reactivate {
            id: ada,
            expected_version: None,
        },
        &scim,
    )
    .unwrap();
    // A rename into another domain is another identity: grants removed.
    let mut attrs = store.get(ada).unwrap().unwrap().dir;
    attrs.user_name = UserName::parse("ada@elsewhere.test").unwrap();
    apply(
        &store,
        Change::Update {
            id: ada,
            expected_version: None,
            attrs,
        },
        &scim,
    )
    .unwrap();
    apply(
        &store,
        Change::ScimDelete {
            id: bob,
            expected_version: None,
        },
        &scim,
    )
    .unwrap();
    apply(&store, Change::Restore { id: bob }, &Actor::Owner).unwrap();
    tokens::execute(
        &store,
        TokenRequest::Revoke {
            id: token_id.clone(),
        },
        None,
        Utc::now(),
    )
    .unwrap();
    // A second revoke changes nothing: no event.
    tokens::execute(
        &store,
        TokenRequest::Revoke { id: token_id },
        None,
        Utc::now(),
    )
    .unwrap();
    let run = RunId::parse("20261207T100000Z-000001").unwrap();
    store
        .put_held(&HeldSet {
            run_id: run.clone(),
            held_at: Utc::now(),
            reasons: vec!["too many".into()],
            changes: vec![HeldDeactivation {
                member: bob,
                user_name: "bob@example.com".into(),
            }],
        })
        .unwrap();

    let events = all_events(&store);
    assert_eq!(
        types(&events),
        [
            "token.created",
            "member.created",
            "member.created",
            "member.access_changed",
            "member.access_changed",
            "member.deactivated",
            "member.reactivated",
            "member.identity_changed",
            "member.deleted",
            "member.restored",
            "token.revoked",
            "sync.deactivations_held",
        ]
    );
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());
    assert_eq!(store.last_event_seq(), events.len() as u64);
    // Ids are unique; the actor and the changed fields are there.
    let ids: std::collections::BTreeSet<_> = events.iter().map(|e| e.id.clone()).collect();
    assert_eq!(ids.len(), events.len());
    assert!(events.iter().all(|e| e.id.starts_with("evt_")));
    assert_eq!(events[5].data["actor"], json!("scim:okta"));
    assert_eq!(events[5].data["changed"], json!(["active"]));
    assert_eq!(events[5].data["member"]["active"], json!(false));
    let identity = &events[7].data;
    assert_eq!(identity["member"]["locations"], json!([]));
    assert_eq!(identity["member"]["role"], json!("member"));
    // Token events carry the token, never its hash; the held event names the run.
    assert_eq!(events[0].data["token"]["label"], json!("okta"));
    assert!(!serde_json::to_string(&events[0])
        .unwrap()
        .contains("sha256"));
    assert_eq!(events[11].data["runId"], json!(run.as_str()));
    assert_eq!(events[11].data["held"], json!(1));
    // The latest event of each member is the member as it is.
    let folded = fold(&events);
    assert_eq!(folded, store_state(&store));
    assert_eq!(folded[&ada.to_string()], view(&store, ada));
}

#[test]
fn numbering_continues_across_a_reopen_and_after_everything_was_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let first_id;
    {
        let store = Store::open(&path).unwrap();
        create(&store, "a@example.com", &Actor::Owner);
        create(&store, "b@example.com", &Actor::Owner);
        first_id = all_events(&store)[0].id.clone();
        store.flush_blocking().unwrap();
    }
    {
        let store = Store::open(&path).unwrap();
        assert_eq!(store.last_event_seq(), 2);
        create(&store, "c@example.com", &Actor::Owner);
        let events = all_events(&store);
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
        // Same store, same instance part of the id.
        assert_eq!(events[0].id, first_id);
        // Everything older than a day, seen from 40 days on: pruned.
        let later = Utc::now() + chrono::Duration::days(40);
        let r = store
            .prune_events(
                later,
                chrono::Duration::days(7),
                chrono::Duration::days(30),
                None,
            )
            .unwrap();
        assert_eq!(r.removed, 3);
        assert_eq!(store.oldest_event_seq().unwrap(), None);
        store.flush_blocking().unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.last_event_seq(), 3);
    create(&store, "d@example.com", &Actor::Owner);
    assert_eq!(all_events(&store)[0].seq, 4);
}

#[test]
fn retention_keeps_what_a_webhook_endpoint_still_needs_until_the_maximum() {
    let (_d, store) = open();
    for i in 0..5 {
        create(&store, &format!("u{i}@example.com"), &Actor::Owner);
    }
    let week = chrono::Duration::days(7);
    let month = chrono::Duration::days(30);
    // Three days on: nothing is old enough.
    let r = store
        .prune_events(Utc::now() + chrono::Duration::days(3), week, month, None)
        .unwrap();
    assert_eq!(r.removed, 0);
    // Ten days on, an endpoint still waits for seq 3: 1 and 2 go.
    let r = store
        .prune_events(
            Utc::now() + chrono::Duration::days(10),
            week,
            month,
            Some(3),
        )
        .unwrap();
    assert_eq!((r.removed, r.oldest_left), (2, Some(3)));
    // Past the maximum, the endpoint's need no longer counts.
    let r = store
        .prune_events(
            Utc::now() + chrono::Duration::days(31),
            week,
            month,
            Some(3),
        )
        .unwrap();
    assert_eq!((r.removed, r.oldest_left), (3, None));
}

#[test]
fn a_batch_of_creates_appends_one_event_each_and_a_failed_transaction_none() {
    let (_d, store) = open();
    let changes: Vec<Change> = (0..50)
        .map(|i| Change::Create {
            attrs: DirectoryAttrs::new(
                UserName::parse(&format!("p{i}@example.com")).unwrap(),
                None,
                None,
            ),
            managed_by: ManagedBy::Google,
        })
        .collect();
    let actor = Actor::Pull(retrac_sync::member::RunId::parse("20261207T100000Z-000002").unwrap());
    provision::apply_batch(&store, &changes, &actor, Utc::now()).unwrap();
    assert_eq!(store.last_event_seq(), 50);
    // A store that refuses writes (no space) appends nothing, and numbering does not move.
    store.set_min_free_bytes(u64::MAX / 2);
    assert!(provision::apply_batch(&store, &changes[..1], &actor, Utc::now()).is_err());
    store.set_min_free_bytes(0);
    assert_eq!(store.last_event_seq(), 50);
    create(&store, "next@example.com", &Actor::Owner);
    let events = all_events(&store);
    assert_eq!(events.len(), 51);
    assert_eq!(events.last().unwrap().seq, 51);
    assert!(events[..50]
        .iter()
        .all(|e| e.data["actor"] == json!("pull:20261207T100000Z-000002")));
}

// ---- the feed, through the router ------------------------------------------------------

struct Feed {
    _dir: tempfile::TempDir,
    store: Store,
    app: axum::Router,
    events_token: String,
    scim_token: String,
}

fn feed() -> Feed {
    let (dir, store) = open();
    let (_, events_token) = token(&store, "retrac-app", TokenScope::Events);
    let (_, scim_token) = token(&store, "okta", TokenScope::Scim);
    let state = ScimState::new(store.clone(), &ScimConfig::default()).unwrap();
    let app = router(state).layer(axum::Extension(Limits::default()));
    Feed {
        _dir: dir,
        store,
        app,
        events_token,
        scim_token,
    }
}

async fn get(app: &axum::Router, uri: &str, token: &str) -> (StatusCode, Value) {
    let req = Request::builder()
        .uri(uri)
        .header(header::HOST, "scim.example.com")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_token_opens_scim_or_the_feed_never_both() {
    let f = feed();
    let (status, body) = get(&f.app, "/retrac/v1/events", &f.scim_token).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("--scope events"));
    let (status, _) = get(&f.app, "/retrac/v1/members", &f.scim_token).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = get(&f.app, "/scim/v2/Users", &f.events_token).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = get(&f.app, "/scim/v2/Users", &f.scim_token).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = get(&f.app, "/retrac/v1/events", &f.events_token).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = get(&f.app, "/retrac/v1/events", "rtsc_00_nope").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_feed_pages_in_order_and_refuses_bad_parameters() {
    let f = feed();
    for i in 0..5 {
        create(&f.store, &format!("u{i}@example.com"), &Actor::Owner);
    }
    // Two token events, then five creates.
    let (status, body) = get(&f.app, "/retrac/v1/events?after=0&limit=3", &f.events_token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seqs: Vec<u64> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert_eq!(body["next_after"], json!(3));
    let (_, body) = get(&f.app, "/retrac/v1/events?after=3", &f.events_token).await;
    assert_eq!(body["events"].as_array().unwrap().len(), 4);
    assert_eq!(body["next_after"], json!(7));
    assert_eq!(body["events"][0]["type"], json!("member.created"));
    // Caught up: an empty page, the cursor unchanged.
    let (_, body) = get(&f.app, "/retrac/v1/events?after=7", &f.events_token).await;
    assert_eq!(body, json!({"events": [], "next_after": 7}));
    for bad in ["limit=0", "after=-1", "after=x", "foo=1", "after=1&after=2"] {
        let (status, body) =
            get(&f.app, &format!("/retrac/v1/events?{bad}"), &f.events_token).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"], json!("invalid_request"));
    }
    // A limit above the maximum is cut to it, not refused.
    let (status, _) = get(&f.app, "/retrac/v1/events?limit=100000", &f.events_token).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_long_poll_answers_as_soon_as_an_event_commits() {
    let f = feed();
    let last = f.store.last_event_seq();
    let app = f.app.clone();
    let token = f.events_token.clone();
    let started = Instant::now();
    let waiting = tokio::spawn(async move {
        get(
            &app,
            &format!("/retrac/v1/events?after={last}&wait=30"),
            &token,
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "an empty feed with wait answers only when an event comes"
    );
    let store = f.store.clone();
    tokio::task::spawn_blocking(move || create(&store, "late@example.com", &Actor::Owner))
        .await
        .unwrap();
    let (status, body) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["events"][0]["data"]["member"]["userName"],
        json!("late@example.com")
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // With nothing coming, the wait ends empty.
    let (status, body) = get(
        &f.app,
        &format!("/retrac/v1/events?after={}&wait=1", last + 1),
        &f.events_token,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["events"], json!([]));
}

#[tokio::test]
async fn a_cursor_older_than_the_oldest_kept_event_answers_410_gone() {
    let f = feed();
    for i in 0..3 {
        create(&f.store, &format!("u{i}@example.com"), &Actor::Owner);
    }
    // The clock injected: ten days on, with a week's retention, the first events are gone.
    let store = f.store.clone();
    tokio::task::spawn_blocking(move || {
        store.prune_events(
            Utc::now() + chrono::Duration::days(10),
            chrono::Duration::days(7),
            chrono::Duration::days(30),
            None,
        )
    })
    .await
    .unwrap()
    .unwrap();
    create(&f.store, "new@example.com", &Actor::Owner);
    let (status, body) = get(&f.app, "/retrac/v1/events?after=4", &f.events_token).await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    let (status, body) = get(&f.app, "/retrac/v1/events?after=2", &f.events_token).await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert_eq!(body["error"], json!("cursor_expired"));
    assert_eq!(body["oldest_seq"], json!(6));
    // From the last pruned event on, the feed goes on.
    let (status, body) = get(&f.app, "/retrac/v1/events?after=5", &f.events_token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["events"][0]["seq"], json!(6));
    // A cursor from the future (another store) is gone too.
    let (status, _) = get(&f.app, "/retrac/v1/events?after=99", &f.events_token).await;
    assert_eq!(status, StatusCode::GONE);
}

/// The list-then-watch protocol: list (the first page says `seq`), then follow the feed from
/// it; writes that land during the listing are replayed harmlessly, and the consumer ends
/// with exactly the store's members (manual ones too, with locations and role).
#[tokio::test]
async fn listing_then_following_the_feed_ends_with_the_stores_state() {
    let f = feed();
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(create(
            &f.store,
            &format!("m{i}@example.com"),
            &Actor::Owner,
        ));
    }
    apply(
        &f.store,
        Change::SetLocations {
            id: ids[0],
            locations: vec!["lyon".into()],
        },
        &Actor::Owner,
    )
    .unwrap();
    let mut state: BTreeMap<String, Value> = BTreeMap::new();
    // A writer keeps changing a member while the consumer lists: whatever the listing shows
    // of it, following the feed from the first page's `seq` must end with its last state.
    let busy = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = {
        let (store, busy, id) = (f.store.clone(), busy.clone(), ids[1]);
        std::thread::spawn(move || {
            let mut i = 0;
            while busy.load(std::sync::atomic::Ordering::Relaxed) {
                apply(
                    &store,
                    Change::SetLocations {
                        id,
                        locations: vec![format!("site-{i}")],
                    },
                    &Actor::Owner,
                )
                .unwrap();
                i += 1;
            }
        })
    };
    let (status, first) = get(&f.app, "/retrac/v1/members?limit=3", &f.events_token).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let seq = first["seq"].as_u64().unwrap();
    let mut page = first;
    // A write lands while the consumer pages through.
    apply(
        &f.store,
        Change::Deactivate {
            id: ids[6],
            expected_version: None,
        },
        &Actor::Owner,
    )
    .unwrap();
    loop {
        for m in page["members"].as_array().unwrap() {
            state.insert(m["id"].as_str().unwrap().to_string(), m.clone());
        }
        let Some(next) = page["next_page_token"].as_str() else {
            break;
        };
        let (status, next_page) = get(
            &f.app,
            &format!("/retrac/v1/members?limit=3&page_token={next}"),
            &f.events_token,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            next_page.get("seq").is_none(),
            "only the first page carries seq"
        );
        page = next_page;
    }
    assert_eq!(state.len(), 7);
    busy.store(false, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    // More writes after the listing.
    let extra = create(&f.store, "late@example.com", &Actor::Owner);
    apply(
        &f.store,
        Change::SetRole {
            id: extra,
            role: Role::Owner,
        },
        &Actor::Owner,
    )
    .unwrap();
    let mut events: Vec<Event> = Vec::new();
    let mut after = seq;
    loop {
        let (status, body) = get(
            &f.app,
            &format!("/retrac/v1/events?after={after}&limit=1000"),
            &f.events_token,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let page: Vec<Event> = serde_json::from_value(body["events"].clone()).unwrap();
        if page.is_empty() {
            break;
        }
        after = body["next_after"].as_u64().unwrap();
        events.extend(page);
    }
    for e in &events {
        let Some(m) = e.data.get("member") else {
            continue;
        };
        let id = m["id"].as_str().unwrap().to_string();
        if state
            .get(&id)
            .is_none_or(|old| old["version"].as_u64() < m["version"].as_u64())
        {
            state.insert(id, m.clone());
        }
    }
    assert_eq!(state, store_state(&f.store));
    assert_eq!(state[&ids[0].to_string()]["locations"], json!(["lyon"]));
    let (status, body) = get(&f.app, "/retrac/v1/members?page_token=zzz", &f.events_token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

// ---- kill -9 ---------------------------------------------------------------------------

fn created_token(config: &Path, scope: &str) -> String {
    let out = command(config)
        .args([
            "token", "create", "--label", scope, "--scope", scope, "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["secret"].as_str().unwrap().to_string()
}

/// `kill -9` the daemon while a pull of 20,000 users applies and SCIM clients write; then,
/// for every member, the outbox holds an event for its current version; every event refers
/// to a committed version; `seq` has no gap; a consumer that folds the events ends with
/// exactly the store's state; and every acknowledged SCIM write is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_pull_and_scim_writes_leaves_every_change_with_its_event() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake = fake_google::FakeGoogle::start(
        listener,
        fake_google::FakeSeed::sample(20_000, "example.com"),
    )
    .await
    .unwrap();
    let key = dir.path().join("google-key.json");
    fake.write_key_file(&key).unwrap();
    let mut c = local_config(dir.path());
    c.google.key_file = Some(key);
    c.google.subject = Some(fake.admin());
    c.google.api_base_url = fake.base_url();
    c.sync.schedule = "0 0 0 1 1 *".into();
    c.sync.max_deactivations = 100_000;
    c.sync.max_deactivation_percent = 100.0;
    c.log.format = retrac_sync::config::LogFormat::Json;
    let store_path = c.store.path.clone();
    let config = write_config(dir.path(), &c);
    let scim_token = created_token(&config, "scim");
    let events_token = created_token(&config, "events");
    let log = dir.path().join("daemon.log");
    let mut child = tokio::process::Command::from(command(&config))
        .arg("run")
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let scim = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(l) = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["message"] == "retrac-sync is running")
        {
            break l["scim"].as_str().unwrap().to_string();
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the daemon exited: {text}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    // Two SCIM clients write until the kill.
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for c in 0..2 {
        let (scim, token, acknowledged) = (scim.clone(), scim_token.clone(), acknowledged.clone());
        clients.push(tokio::spawn(async move {
            for i in 0.. {
                let name = format!("scim{c}-{i}@example.com");
                let body = json!({"userName": name}).to_string();
                let raw = format!(
                    "POST /scim/v2/Users HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
                     Content-Type: application/scim+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                match request_within(&scim, raw, Duration::from_secs(10)).await {
                    Some((201, _)) => acknowledged.lock().unwrap().push(name),
                    Some(_) => {}
                    None => return,
                }
            }
        }));
    }
    // The kill comes as soon as the feed shows the pull's first change: mid-apply (20,000
    // creates are 20 transactions, between the SCIM clients' writes).
    wait_until(
        Duration::from_secs(120),
        "the pull to read Google",
        async || fake.api_requests() >= 38,
    )
    .await;
    let mut cursor = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    'watch: loop {
        assert!(
            Instant::now() < deadline,
            "the pull wrote nothing in two minutes"
        );
        let raw = format!(
            "GET /retrac/v1/events?after={cursor}&limit=1000&wait=5 HTTP/1.1\r\nHost: localhost\r\n\
             Authorization: Bearer {events_token}\r\nConnection: close\r\n\r\n"
        );
        let Some((200, body)) = request_within(&scim, raw, Duration::from_secs(10)).await else {
            continue;
        };
        let page: Value = serde_json::from_str(&body).unwrap();
        for e in page["events"].as_array().unwrap() {
            if e["data"]["actor"]
                .as_str()
                .unwrap_or("")
                .starts_with("pull:")
            {
                break 'watch;
            }
        }
        cursor = page["next_after"].as_u64().unwrap();
    }
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-9", &pid])
        .status()
        .unwrap()
        .success());
    let _ = child.wait().await;
    for c in clients {
        let _ = c.await;
    }

    let store = Store::open(&store_path).unwrap();
    assert!(store.check_consistency().unwrap().is_empty());
    let events = all_events(&store);
    let pulled = store
        .members_by_id()
        .filter(|m| m.as_ref().unwrap().dir.google_id.is_some())
        .count();
    eprintln!(
        "after kill -9: {} members ({pulled} from the pull, of 20,000), {} events, {} SCIM writes acknowledged",
        store.member_count(),
        events.len(),
        acknowledged.lock().unwrap().len()
    );
    // The feed showed a pull change before the kill, and what the feed shows is on disk.
    assert!(pulled > 0);
    // Gap-free.
    let first = events.first().map_or(1, |e| e.seq);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, first + i as u64, "a gap in the outbox");
    }
    // Nothing lost, nothing invented.
    let state = store_state(&store);
    let folded = fold(&events);
    for (id, m) in &state {
        assert_eq!(
            folded.get(id),
            Some(m),
            "member {id} has no event for its version"
        );
    }
    assert_eq!(
        folded.len(),
        state.len(),
        "an event names a member that was never committed"
    );
    for e in &events {
        if let Some(m) = e.data.get("member") {
            let current = &state[m["id"].as_str().unwrap()];
            assert!(m["version"].as_u64() <= current["version"].as_u64());
        }
    }
    for name in acknowledged.lock().unwrap().iter() {
        assert!(
            store.get_by_user_name(name).unwrap().is_some(),
            "{name} was acknowledged"
        );
    }
}
