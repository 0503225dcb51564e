//! Webhook throughput (figures: docs/development.md, "Webhooks"): EVENTS member.created
//! events (default 20,000) delivered by the relay to one local receiver that answers 204 at
//! once, over keep-alive connections, signed, with the cursor and the delivery log written
//! after each. Each round runs in a fresh store; the line printed per round is events a
//! second from the relay's start to the last cursor write, and the last line the median.
//!
//! `cargo bench --bench webhooks` (ROUNDS=3 EVENTS=20000 by default).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use retrac_sync::events::EventFilter;
use retrac_sync::member::{Actor, Change, DirectoryAttrs, ManagedBy, UserName};
use retrac_sync::provision;
use retrac_sync::store::Store;
use retrac_sync::webhooks::relay::{self, RelayOptions};
use retrac_sync::webhooks::{self, WebhookRequest, WebhookResponse};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn create(i: usize) -> Change {
    let attrs = DirectoryAttrs::new(
        UserName::parse(&format!("user{i:06}@example.com")).unwrap(),
        Some("Given"),
        Some(&format!("Family{i}")),
    );
    Change::Create {
        attrs,
        managed_by: ManagedBy::Google,
    }
}

async fn round(events: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let changes: Vec<Change> = (0..events).map(create).collect();
    let actor = Actor::Pull(retrac_sync::member::RunId::parse("20261101T020000Z-000007").unwrap());
    for chunk in changes.chunks(1000) {
        provision::apply_batch(&store, chunk, &actor, Utc::now()).unwrap();
    }
    store.flush().await.unwrap();

    let received = Arc::new(AtomicU64::new(0));
    let app = {
        let received = received.clone();
        axum::Router::new().fallback(move |_body: axum::body::Bytes| {
            let received = received.clone();
            async move {
                received.fetch_add(1, Ordering::Relaxed);
                axum::http::StatusCode::NO_CONTENT
            }
        })
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let retry = relay::Retry::default();
    let id = match webhooks::execute(
        &store,
        WebhookRequest::Add {
            url,
            events: EventFilter::default(),
            description: None,
        },
        &retry,
        Utc::now(),
    )
    .await
    .unwrap()
    {
        WebhookResponse::Added { endpoint, .. } => endpoint.id,
        _ => unreachable!(),
    };
    // The whole history, from the first event.
    webhooks::execute(
        &store,
        WebhookRequest::Replay {
            id: id.clone(),
            since: Utc::now() - chrono::Duration::days(1),
        },
        &retry,
        Utc::now(),
    )
    .await
    .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let task = relay::spawn(store.clone(), RelayOptions::default(), async move {
        let _ = stop_rx.await;
    });
    let last = store.last_event_seq();
    while store.webhook_state(&id).unwrap().cursor < last {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = started.elapsed();
    let _ = stop_tx.send(());
    task.await.unwrap();
    assert_eq!(received.load(Ordering::Relaxed), events as u64);
    events as f64 / took.as_secs_f64()
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would too, with no time to spare.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let rounds = env("ROUNDS", 3);
    let events = env("EVENTS", 20_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rates = Vec::new();
    for r in 1..=rounds {
        let rate = rt.block_on(round(events));
        println!("round {r}: {events} events delivered, {rate:.0} events a second");
        rates.push(rate);
    }
    rates.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "webhooks: median {:.0} events a second over {rounds} rounds of {events} events to one local receiver",
        rates[rates.len() / 2]
    );
}
