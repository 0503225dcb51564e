//! A full or nearly full disk: writes refused below `[store].min_free_bytes` while reads go
//! on, and a disk that fills up under the daemon turns it read-only within seconds (503,
//! `/healthz` says why, the process exits) without losing an acknowledged write.

use std::path::Path;
use std::process::Command as StdCommand;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use retrac_sync::config::ScimConfig;
use retrac_sync::health::{self, Health, HealthState};
use retrac_sync::scim::schema::Limits;
use retrac_sync::scim::{router, ScimState};
use retrac_sync::store::{RunStatus, Store};
use retrac_sync::tokens::{self as auth, TokenRequest, TokenResponse};
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::common::*;
use fake_google::FakeSeed;

fn token(store: &Store) -> String {
    match auth::execute(
        store,
        TokenRequest::Create {
            label: "disk".into(),
            scope: retrac_sync::store::TokenScope::Scim,
        },
        None,
        chrono::Utc::now(),
    )
    .unwrap()
    {
        TokenResponse::Created { secret, .. } => secret.0,
        other => panic!("{other:?}"),
    }
}

async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Below `[store].min_free_bytes`: a SCIM write gets 503 saying how much is free and what
/// the floor is; reads go on; `/healthz` says "degraded" with the reason; the pull fails
/// before it writes anything; `retrac_store_free_bytes` is exported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_the_free_space_floor_writes_are_refused_and_reads_go_on() {
    let w = world(FakeSeed::sample(20, "example.com")).await;
    let store = Store::open(&w.config.store.path).unwrap();
    let secret = token(&store);
    let state = ScimState::new(store.clone(), &ScimConfig::default()).unwrap();
    let app = router(state).layer(axum::Extension(Limits::default()));
    let post = |name: &str| {
        Request::builder()
            .method("POST")
            .uri("/scim/v2/Users")
            .header(header::HOST, "scim.example.com")
            .header(header::AUTHORIZATION, format!("Bearer {secret}"))
            .header(header::CONTENT_TYPE, "application/scim+json")
            .body(Body::from(json!({"userName": name}).to_string()))
            .unwrap()
    };
    let (status, _) = call(&app, post("before@example.com")).await;
    assert_eq!(status, StatusCode::CREATED);

    // A floor no disk reaches.
    store.set_min_free_bytes(u64::MAX / 2);
    let (status, body) = call(&app, post("after@example.com")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("MiB free") && detail.contains("[store].min_free_bytes"),
        "{detail}"
    );
    assert!(store
        .get_by_user_name("after@example.com")
        .unwrap()
        .is_none());
    // Reads go on.
    let get = Request::builder()
        .uri("/scim/v2/Users?filter=userName%20eq%20%22before@example.com%22")
        .header(header::HOST, "scim.example.com")
        .header(header::AUTHORIZATION, format!("Bearer {secret}"))
        .body(Body::empty())
        .unwrap();
    let (status, body) = call(&app, get).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["totalResults"], json!(1));

    // Health: degraded, with the reason; the free space is a metric.
    let health = health::router(HealthState {
        store: store.clone(),
        health: Arc::new(Health::default()),
    });
    let (status, body) = call(
        &health,
        Request::builder()
            .uri("/healthz")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], json!("degraded"), "{body}");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("[store].min_free_bytes"),
        "{body}"
    );
    let resp = health
        .clone()
        .oneshot(
            Request::builder()
                .uri("/metrics")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let text = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(text.contains("retrac_store_free_bytes "), "{text}");
    assert!(text.contains("retrac_store_min_free_bytes "), "{text}");

    // The pull fails before it writes a member.
    let members = store.member_count();
    let ctx = context(&store, &w.config);
    let r = sync(&ctx).await;
    assert_eq!(r.report.status, RunStatus::Failed, "{r:?}");
    assert!(
        r.error.as_deref().unwrap_or("").contains("min_free_bytes"),
        "{r:?}"
    );
    assert_eq!(store.member_count(), members);

    // Space again: writes go through.
    store.set_min_free_bytes(1);
    let (status, _) = call(&app, post("after@example.com")).await;
    assert_eq!(status, StatusCode::CREATED);
}

/// Mounts a tmpfs of `size` on `dir`; false (with the reason printed) where the test cannot
/// mount one (not root, or no CAP_SYS_ADMIN in a container).
fn mount_tmpfs(dir: &Path, size: &str) -> bool {
    let out = StdCommand::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .output();
    match out {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            println!(
                "SKIPPED: cannot mount a tmpfs ({}); the full-disk test did not run",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            false
        }
        Err(e) => {
            println!("SKIPPED: cannot run mount ({e}); the full-disk test did not run");
            false
        }
    }
}

struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = StdCommand::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn post_user(token: &str, name: &str, pad: usize) -> String {
    let body = json!({"userName": name, "title": "x".repeat(pad)}).to_string();
    format!(
        "POST /scim/v2/Users HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/scim+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The review's reproduction: the store on a 6 MiB tmpfs, four clients POSTing 20 KB users.
/// Within 5 s of the disk filling, the daemon answers 503 (SCIM) and `/healthz` says why;
/// the process exits non-zero; after a restart with space, every acknowledged write is
/// there. Skipped, with a message, where no tmpfs can be mounted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_fills_up_turns_the_daemon_read_only_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    if !mount_tmpfs(&mnt, "6m") {
        return;
    }
    let _unmount = Unmount(mnt.clone());
    let mut config = local_config(dir.path());
    config.store.path = mnt.join("store");
    // The floor off: this test is about a disk that fills under a write.
    config.store.min_free_bytes = 0;
    config.log.format = retrac_sync::config::LogFormat::Json;
    let path = write_config(dir.path(), &config);
    let token = {
        let out = cli(&path, &["token", "create", "--label", "disk", "--json"]).await;
        assert!(out.status.success(), "{out:?}");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["secret"].as_str().unwrap().to_string()
    };
    let log = dir.path().join("daemon.log");
    let mut child = tokio::process::Command::from(command(&path))
        .arg("run")
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (scim, metrics) = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(l) = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["message"] == "retrac-sync is running")
        {
            break (
                l["scim"].as_str().unwrap().to_string(),
                l["metrics"].as_str().unwrap().to_string(),
            );
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the daemon exited: {text}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };

    // Four clients write 20 KB users until the daemon stops answering 201.
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let first_refusal = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let last_ack = Arc::new(std::sync::Mutex::new(Instant::now()));
    let mut clients = Vec::new();
    for c in 0..4 {
        let (scim, token) = (scim.clone(), token.clone());
        let (acknowledged, first_refusal, last_ack) = (
            acknowledged.clone(),
            first_refusal.clone(),
            last_ack.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut slowest = Duration::ZERO;
            for i in 0..2_000 {
                let name = format!("u{c}-{i}@example.com");
                let t = Instant::now();
                let answer = request_within(
                    &scim,
                    post_user(&token, &name, 20_000),
                    Duration::from_secs(15),
                )
                .await;
                slowest = slowest.max(t.elapsed());
                match answer {
                    Some((201, _)) => {
                        acknowledged.lock().unwrap().push(name);
                        *last_ack.lock().unwrap() = Instant::now();
                    }
                    Some((503, _)) | None => {
                        first_refusal
                            .lock()
                            .unwrap()
                            .get_or_insert_with(Instant::now);
                        break;
                    }
                    Some((status, body)) => panic!("{status}: {body}"),
                }
            }
            slowest
        }));
    }
    let mut slowest = Duration::ZERO;
    for c in clients {
        slowest = slowest.max(c.await.unwrap());
    }
    let acked = acknowledged.lock().unwrap().clone();
    let refused_at = first_refusal.lock().unwrap().expect("the disk filled up");
    let gap = refused_at.saturating_duration_since(*last_ack.lock().unwrap());
    println!(
        "{} users acknowledged; the first refusal came {:.1} s after the last acknowledgement; \
         the slowest request took {:.1} s",
        acked.len(),
        gap.as_secs_f64(),
        slowest.as_secs_f64()
    );
    assert!(!acked.is_empty());
    assert!(
        slowest < Duration::from_secs(6),
        "a request waited {slowest:?}: the daemon hung"
    );

    // /healthz says why (or the daemon has already exited, which is the next check).
    if let Some((status, body)) = request_within(
        &metrics,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(),
        Duration::from_secs(5),
    )
    .await
    {
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("read-only"), "{body}");
    }
    let exit = match tokio::time::timeout(Duration::from_secs(20), child.wait()).await {
        Ok(status) => status.unwrap(),
        Err(_) => panic!(
            "the daemon did not exit: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        ),
    };
    assert!(!exit.success(), "{exit:?}");

    // Space again: every acknowledged user is there.
    let grown = StdCommand::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(grown.success());
    let store = Store::open(&config.store.path).unwrap();
    for name in &acked {
        assert!(
            store.get_by_user_name(name).unwrap().is_some(),
            "{name} was acknowledged and is lost"
        );
    }
}
