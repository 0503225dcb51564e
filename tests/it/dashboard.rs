//! The Grafana dashboard and the alert rules name only metrics the daemon exports: a daemon
//! runs against the fake Google, pulls (with one retried page), answers SCIM requests, and
//! its `/metrics` is scraped and compared with every panel query and every rule.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use crate::common::wait_until;
use chrono::Utc;
use fake_google::{FakeGoogle, FakeSeed, Fault};
use retrac_sync::config::Config;
use retrac_sync::daemon::{self, Listeners};
use retrac_sync::store::Store;
use retrac_sync::tokens::{self as scim_auth, TokenRequest, TokenResponse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn repo(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

async fn http(addr: std::net::SocketAddr, request: String) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    buf
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    http(
        addr,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".into(),
    )
    .await
}

/// The metric names of a Prometheus text exposition (`name{labels} value` lines).
fn exported_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| l.starts_with("retrac_"))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// Every `retrac_*` name in a PromQL expression (or any text).
fn named_metrics(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("retrac_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        // `retrac-sync` (the job) is not a metric: names need a character after the `_`.
        if end > "retrac_".len() {
            out.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    out
}

/// Every query of the dashboard, with the title of its panel.
fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap().to_string();
        for t in panel["targets"].as_array().unwrap() {
            out.push((title.clone(), t["expr"].as_str().unwrap().to_string()));
        }
    }
    out
}

#[test]
fn the_dashboard_takes_its_data_source_from_a_variable() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&repo("contrib/grafana/retrac-sync.json")).unwrap();
    let vars = dashboard["templating"]["list"].as_array().unwrap();
    assert!(vars.iter().any(|v| v["name"] == "datasource"
        && v["type"] == "datasource"
        && v["query"] == "prometheus"));
    for panel in dashboard["panels"].as_array().unwrap() {
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{}",
            panel["title"]
        );
        for t in panel["targets"].as_array().unwrap() {
            assert_eq!(
                t["datasource"]["uid"], "${datasource}",
                "{}",
                panel["title"]
            );
        }
    }
    // The panels docs/admin/operations.md ("Dashboard") describes.
    let titles: Vec<&str> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    for wanted in [
        "Members",
        "Changes by source and kind",
        "Pull duration per run",
        "Pull outcomes",
        "Held changes",
        "SCIM requests by method",
        "SCIM latency",
        "SCIM status classes",
        "Google requests",
        "Google retries",
        "SCIM authentication failures",
    ] {
        assert!(
            titles.contains(&wanted),
            "no panel {wanted:?} in {titles:?}"
        );
    }
}

#[test]
fn names_are_read_from_queries_and_expositions() {
    assert_eq!(
        named_metrics(r#"sum(rate(retrac_a_total{job="retrac-sync"}[5m])) / retrac_b"#),
        ["retrac_a_total", "retrac_b"].map(String::from).into()
    );
    assert_eq!(
        exported_names("# HELP retrac_x x\nretrac_x{a=\"1\"} 2\nretrac_y 3\n"),
        ["retrac_x", "retrac_y"].map(String::from).into()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_and_rule_names_a_metric_the_running_daemon_exports() {
    // The fake Google, whose first users.list page fails once: a retry to count.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let google = FakeGoogle::start(listener, FakeSeed::sample(30, "example.com"))
        .await
        .unwrap();
    google.inject(Fault::FailPage {
        endpoint: "users.list",
        page: 1,
        times: 1,
        status: 503,
        reason: "backendError",
    });
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("google-key.json");
    google.write_key_file(&key).unwrap();
    let mut config = Config::default();
    config.store.path = dir.path().join("store");
    config.admin.socket = dir.path().join("admin.sock");
    config.google.key_file = Some(key);
    config.google.subject = Some(google.admin());
    config.google.api_base_url = google.base_url();
    config.google.domains = vec!["example.com".into()];
    // The SCIM client pushes users of a domain the pull does not manage.
    config.scim.domains = Some(vec!["example.com".into(), "elsewhere.example".into()]);
    config.sync.schedule = "0 0 0 1 1 *".into();

    let store = Store::open(&config.store.path).unwrap();
    let secret = match scim_auth::execute(
        &store,
        TokenRequest::Create {
            label: "test".into(),
            scope: retrac_sync::store::TokenScope::Scim,
        },
        None,
        Utc::now(),
    )
    .unwrap()
    {
        TokenResponse::Created { secret, .. } => secret.0,
        other => panic!("{other:?}"),
    };
    // A webhook endpoint, so that its per-endpoint series exist.
    retrac_sync::webhooks::execute(
        &store,
        retrac_sync::webhooks::WebhookRequest::Add {
            url: "http://127.0.0.1:9/hook".into(),
            events: Default::default(),
            description: None,
        },
        &Default::default(),
        Utc::now(),
    )
    .await
    .unwrap();
    let scim = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let scim_addr = scim.local_addr().unwrap();
    let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_addr = metrics.local_addr().unwrap();
    let listeners = Listeners {
        scim,
        metrics,
        admin: retrac_sync::admin::server::bind(&config.admin.socket).unwrap(),
        admin_path: config.admin.socket.clone(),
        console: None,
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(daemon::launch(
        config,
        store,
        listeners,
        daemon::LaunchOptions {
            first_sync_delay: Duration::from_millis(50),
            ..Default::default()
        },
        async move {
            let _ = rx.await;
        },
    ));

    // SCIM traffic: an authenticated list and a create (changes from the push).
    let list = http(
        scim_addr,
        format!("GET /scim/v2/Users?count=1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {secret}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(list.starts_with("HTTP/1.1 200"), "{list}");
    let body = r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"pushed@elsewhere.example","name":{"givenName":"P","familyName":"Q"},"active":true}"#;
    let created = http(
        scim_addr,
        format!("POST /scim/v2/Users HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {secret}\r\nContent-Type: application/scim+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()),
    )
    .await;
    assert!(created.starts_with("HTTP/1.1 201"), "{created}");
    let refused = http(
        scim_addr,
        "GET /scim/v2/Users HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer rtsc_nope_nope\r\nConnection: close\r\n\r\n".into(),
    )
    .await;
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");

    // The first pull (after its retried page) creates the sample users. The metrics are
    // process-wide (other tests' runs count too), so this daemon's own health says when its
    // pull is over.
    let mut health = serde_json::Value::Null;
    wait_until(
        Duration::from_secs(20),
        "the daemon's first pull to end",
        async || {
            let answer = http(
                metrics_addr,
                "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".into(),
            )
            .await;
            let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
            health = serde_json::from_str(body).unwrap();
            !health["last_sync"].is_null()
        },
    )
    .await;
    assert_eq!(health["last_sync"]["status"], "ok", "{health}");
    let exposition = scrape(metrics_addr).await;
    let exported = exported_names(&exposition);
    assert!(
        exposition.contains("retrac_sync_runs_total{status=\"ok\"}"),
        "the pull did not succeed: {exposition}"
    );

    let dashboard: serde_json::Value =
        serde_json::from_str(&repo("contrib/grafana/retrac-sync.json")).unwrap();
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 15, "{queries:?}");
    let mut used = BTreeSet::new();
    for (title, expr) in &queries {
        let names = named_metrics(expr);
        // `up` is Prometheus's own; every other query names one of ours.
        assert!(
            !names.is_empty() || expr.starts_with("up{"),
            "panel {title:?} queries no retrac metric: {expr}"
        );
        for name in names {
            assert!(
                exported.contains(&name),
                "panel {title:?} queries {name}, which the daemon does not export; it exports {exported:?}"
            );
            used.insert(name);
        }
    }
    // Every metric the daemon has is on the dashboard (a histogram counts once: its
    // buckets, sum and count are one family).
    let family = |n: &String| {
        ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| n.strip_suffix(s))
            .unwrap_or(n)
            .to_string()
    };
    let used_families: BTreeSet<String> = used.iter().map(family).collect();
    let unused: Vec<String> = exported
        .iter()
        .map(family)
        .filter(|f| !used_families.contains(f))
        .collect();
    assert!(unused.is_empty(), "not on the dashboard: {unused:?}");

    let rules = repo("contrib/prometheus/retrac-sync.rules.yml");
    let in_rules = named_metrics(&rules);
    assert!(in_rules.len() >= 7, "{in_rules:?}");
    for name in in_rules {
        assert!(
            exported.contains(&name),
            "the rules use {name}, which the daemon does not export"
        );
    }

    let _ = tx.send(());
    task.await.unwrap().unwrap();
    // The build info says what --version says.
    assert!(exposition.contains(&format!(
        "retrac_build_info{{version=\"{}\",commit=\"{}\"}} 1",
        retrac_sync::version::VERSION,
        retrac_sync::version::COMMIT
    )));
}

/// A fresh daemon, before any request, pull or retry, already exports every metric that the
/// alert rules and the dashboard query: counters with known label values start at 0, the
/// histograms are registered, and the pull's gauges are read from the store at start (the
/// webhook gauges, per endpoint, for each endpoint the store holds).
/// (The daemon is the real binary, in a process of its own: this test binary's recorder is
/// shared by every in-process daemon.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_daemon_exports_every_metric_that_contrib_queries() {
    let w = crate::common::world(FakeSeed::sample(3, "example.com")).await;
    let mut config = crate::common::local_config(w.dir.path());
    config.google = w.config.google.clone();
    config.log.format = retrac_sync::config::LogFormat::Json;
    // No run before the scrape: the first comes 5 s after start, the schedule yearly.
    config.sync.schedule = "0 0 0 1 1 *".into();
    let path = crate::common::write_config(w.dir.path(), &config);
    // The webhook series are per endpoint: the store has one (added without a daemon).
    let added = crate::common::cli(&path, &["webhook", "add", "http://127.0.0.1:9/hook"]).await;
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let log = w.dir.path().join("daemon.log");
    let mut child = tokio::process::Command::from(crate::common::command(&path))
        .arg("run")
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut metrics_addr = None;
    for _ in 0..400 {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| l["message"] == "retrac-sync is running")
        {
            metrics_addr = line["metrics"].as_str().map(|a| a.parse().unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let addr = metrics_addr.expect("the daemon started");
    let exported = exported_names(&scrape(addr).await);
    let _ = child.kill().await;
    assert_eq!(
        w.google.requests("users.list"),
        0,
        "no pull ran before the scrape"
    );
    let mut queried = named_metrics(&repo("contrib/prometheus/retrac-sync.rules.yml"));
    let dashboard: serde_json::Value =
        serde_json::from_str(&repo("contrib/grafana/retrac-sync.json")).unwrap();
    for (_, expr) in dashboard_queries(&dashboard) {
        queried.extend(named_metrics(&expr));
    }
    let missing: Vec<_> = queried.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "a fresh daemon lacks {missing:?}; it exports {exported:?}"
    );
}
