//! The daemon in-process on port 0 with a temporary directory: the CLI over the admin
//! socket, health and metrics, and a clean shutdown.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::{cli, command, local_config, wait_until, write_config};
use fake_google::{FakeGoogle, FakeSeed, Fault};
use retrac_sync::config::{Config, LogFormat};
use retrac_sync::daemon::{self, Listeners};
use retrac_sync::store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

struct Running {
    dir: tempfile::TempDir,
    config_path: PathBuf,
    metrics: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), daemon::DaemonError>>,
}

async fn start() -> Running {
    start_with(|_| {}, daemon::LaunchOptions::default()).await
}

async fn start_with(edit: impl FnOnce(&mut Config), options: daemon::LaunchOptions) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/admin.sock");
    let mut config = local_config(dir.path());
    config.admin.socket = socket.clone();
    edit(&mut config);
    let config_path = write_config(dir.path(), &config);
    let config = Config::load_with_env(Some(&config_path), Vec::new()).unwrap();
    let store = Store::open(&config.store.path).unwrap();
    let scim = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = metrics_listener.local_addr().unwrap();
    let listeners = Listeners {
        scim,
        metrics: metrics_listener,
        admin: retrac_sync::admin::server::bind(&socket).unwrap(),
        admin_path: socket.clone(),
        console: None,
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(daemon::launch(
        config,
        store,
        listeners,
        options,
        async move {
            let _ = rx.await;
        },
    ));
    Running {
        dir,
        config_path,
        metrics,
        stop: Some(tx),
        task,
    }
}

impl Running {
    async fn stop(mut self) -> tempfile::TempDir {
        let _ = self.stop.take().unwrap().send(());
        let result = tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("the daemon stops within its drain timeout")
            .unwrap();
        result.unwrap();
        self.dir
    }
}

async fn reopen(path: &Path) -> Store {
    for _ in 0..100 {
        match Store::open(path) {
            Ok(s) => return s,
            Err(retrac_sync::store::StoreError::Locked { .. }) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("the store stayed locked after the daemon stopped");
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let status = buf[9..12].parse().unwrap();
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_works_over_the_socket_while_the_daemon_holds_the_store() {
    let d = start().await;
    let out = cli(
        &d.config_path,
        &[
            "members",
            "add",
            "Ada@Example.com",
            "--given",
            "Ada",
            "--family",
            "Lovelace",
            "--json",
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let added: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(added["userName"], "Ada@Example.com");

    let out = cli(
        &d.config_path,
        &["members", "locations", "set", "ada@example.com", "Paris"],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&d.config_path, &["members", "list", "--format", "json"]).await;
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["locations"], serde_json::json!(["Paris"]));
    let out = cli(&d.config_path, &["audit", "--json"]).await;
    let audit: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(audit.as_array().unwrap().len(), 2);
    // Errors come back with the same message and exit code as a local run.
    let out = cli(&d.config_path, &["members", "show", "nobody@example.com"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no member"));

    // Tokens over the socket too; the socket is private to the daemon's user.
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.dir.path().join("run/admin.sock"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let out = cli(
        &d.config_path,
        &["token", "create", "--label", "google", "--json"],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&d.config_path, &["token", "list", "--json"]).await;
    let tokens: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(tokens.to_string().contains("\"google\""), "{tokens}");
    assert!(
        !tokens.to_string().contains("rtsc_"),
        "never the secret: {tokens}"
    );
    let out = cli(&d.config_path, &["scim", "disconnect"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Revoked 1 tokens"), "{text}");
    assert!(text.contains("1 members are still active"), "{text}");

    let dir = d.stop().await;
    // After a clean stop the store opens, with everything there (`reopen` waits a moment
    // for the in-process daemon's last tasks to let go of sled's lock).
    let store = reopen(&dir.path().join("store")).await;
    let m = store.get_by_user_name("ada@example.com").unwrap().unwrap();
    assert_eq!(m.locations, vec!["Paris".to_string()]);
    assert!(
        !dir.path().join("run/admin.sock").exists(),
        "socket removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_report_the_store_and_the_members() {
    let d = start().await;
    let out = cli(
        &d.config_path,
        &[
            "members",
            "add",
            "ada@example.com",
            "--given",
            "A",
            "--family",
            "L",
        ],
    )
    .await;
    assert!(out.status.success());
    let (status, body) = http_get(d.metrics, "/healthz").await;
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["members"]["active"], 1);

    // The recorder is process-wide, and another test's daemon may set the members gauge
    // between this one's setting it and rendering: ask until this daemon's count shows.
    wait_until(
        Duration::from_secs(10),
        "/metrics to show one active member",
        async || {
            let (status, text) = http_get(d.metrics, "/metrics").await;
            assert_eq!(status, 200);
            text.contains("retrac_members{state=\"active\"} 1")
        },
    )
    .await;
    let (_, text) = http_get(d.metrics, "/metrics").await;
    assert!(
        text.contains("retrac_changes_total{kind=\"create\",source=\"owner\"}"),
        "{text}"
    );
    let (status, _) = http_get(d.metrics, "/nope").await;
    assert_eq!(status, 404);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_store_or_socket_fails_at_once() {
    let d = start().await;
    let out = tokio::time::timeout(Duration::from_secs(20), cli(&d.config_path, &["run"]))
        .await
        .expect("the second run fails at once rather than waiting");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another process"), "{err}");
    d.stop().await;
}

#[test]
fn a_socket_with_no_daemon_behind_it_falls_back_to_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("admin.sock");
    // A stale socket file: bound once, its listener gone.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let config = write_config(dir.path(), &local_config(dir.path()));
    let out = command(&config)
        .args(["members", "list", "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
}

/// A fake Google with `users` sample users and its key in `dir`, and the config edit that
/// points a daemon at it: a schedule that never fires on its own, no deactivation limit.
async fn fake_google(dir: &Path, users: usize) -> (FakeGoogle, impl Fn(&mut Config)) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake = FakeGoogle::start(listener, FakeSeed::sample(users, "example.com"))
        .await
        .unwrap();
    let key = dir.join("google-key.json");
    fake.write_key_file(&key).unwrap();
    let (subject, api_base_url) = (fake.admin(), fake.base_url());
    let google = move |c: &mut Config| {
        c.google.key_file = Some(key.clone());
        c.google.subject = Some(subject.clone());
        c.google.api_base_url = api_base_url.clone();
        c.sync.schedule = "0 0 0 1 1 *".into();
        c.sync.max_deactivations = 1000;
        c.sync.max_deactivation_percent = 100.0;
    };
    (fake, google)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_pulls_on_start_and_on_demand_and_reports_it() {
    let keys = tempfile::tempdir().unwrap();
    let (fake, google) = fake_google(keys.path(), 120).await;
    let d = start_with(
        google,
        daemon::LaunchOptions {
            first_sync_delay: Duration::from_millis(50),
            ..Default::default()
        },
    )
    .await;
    // The first run comes shortly after start.
    let mut health = serde_json::Value::Null;
    wait_until(
        Duration::from_secs(20),
        "the first pull to end",
        async || {
            let (_, body) = http_get(d.metrics, "/healthz").await;
            health = serde_json::from_str(&body).unwrap();
            !health["last_sync"].is_null()
        },
    )
    .await;
    assert_eq!(health["last_sync"]["status"], "ok", "{health}");
    let total = fake.users().len();
    let active_in_google = fake
        .users()
        .iter()
        .filter(|u| !u.suspended && !u.archived)
        .count();
    assert_eq!(health["members"]["active"], active_in_google);
    assert_eq!(
        health["members"]["active"].as_u64().unwrap()
            + health["members"]["inactive"].as_u64().unwrap(),
        total as u64
    );

    // A change in Google, then `sync` through the socket: the run waits and reports.
    let victim = fake.users()[3].primary_email.clone();
    assert!(fake.suspend(&victim));
    let out = cli(&d.config_path, &["sync", "--json"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "ok");
    assert_eq!(report["deactivated"], 1, "{report}");
    let out = cli(&d.config_path, &["members", "show", &victim, "--json"]).await;
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(m["active"], false);
    let out = cli(&d.config_path, &["sync", "status", "--json"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (_, text) = http_get(d.metrics, "/metrics").await;
    assert!(text.contains("retrac_sync_runs_total"), "{text}");
    assert!(
        text.contains("retrac_changes_total{kind=\"update\",source=\"pull\"}"),
        "{text}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_turns_unhealthy_after_repeated_pull_failures() {
    let keys = tempfile::tempdir().unwrap();
    let (fake, google) = fake_google(keys.path(), 10).await;
    fake.inject(Fault::DenyDelegation);
    let d = start_with(google, daemon::LaunchOptions::default()).await;
    for _ in 0..3 {
        let out = cli(&d.config_path, &["sync", "--json"]).await;
        assert_eq!(out.status.code(), Some(1), "a failed run exits non-zero");
    }
    let (status, body) = http_get(d.metrics, "/healthz").await;
    assert_eq!(status, 503, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        health["reason"]
            .as_str()
            .unwrap()
            .contains("pulls from Google failed"),
        "{health}"
    );
    fake.clear_faults();
    let out = cli(&d.config_path, &["sync", "--json"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, _) = http_get(d.metrics, "/healthz").await;
    assert_eq!(status, 200);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_sync_exits_cleanly_with_a_consistent_store() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, google) = fake_google(dir.path(), 2000).await;
    // Slow Google down so the run is still going when the signal comes.
    fake.inject(Fault::Delay(Duration::from_millis(400)));
    let mut c = local_config(dir.path());
    google(&mut c);
    let (store, socket) = (c.store.path.clone(), c.admin.socket.clone());
    let config = write_config(dir.path(), &c);
    let mut daemon = tokio::process::Command::from(command(&config))
        .arg("run")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(
        Duration::from_secs(20),
        "the daemon to come up",
        async || socket.exists(),
    )
    .await;
    // The first scheduled run starts 5 s after start; the signal comes once it is fetching
    // (each answer takes 400 ms, so it is still fetching).
    wait_until(
        Duration::from_secs(30),
        "the first pull to ask Google",
        async || fake.api_requests() > 0,
    )
    .await;
    let pid = daemon.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), daemon.wait())
        .await
        .expect("the daemon stops promptly")
        .unwrap();
    let mut stderr = String::new();
    daemon
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert!(status.success(), "exit {status:?}: {stderr}");
    assert!(stderr.contains("stopped cleanly"), "{stderr}");
    let store = Store::open(&store).unwrap();
    assert!(store.check_consistency().unwrap().is_empty());
}

/// Reads the value of `"key":"..."` from the first JSON log line that has it.
fn log_field(log: &str, key: &str) -> Option<String> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v.get(key).and_then(|x| x.as_str()).map(str::to_string))
}

async fn raw_http(addr: &str, request: String) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_log_line_carries_a_token_a_key_or_an_access_token() {
    let dir = tempfile::tempdir().unwrap();
    let (_fake, google) = fake_google(dir.path(), 50).await;
    let key_file = std::fs::read_to_string(dir.path().join("google-key.json")).unwrap();
    let key_json: serde_json::Value = serde_json::from_str(&key_file).unwrap();
    let private_key = key_json["private_key"].as_str().unwrap().to_string();
    let mut c = local_config(dir.path());
    c.log.format = LogFormat::Json;
    c.log.level = "trace".into();
    google(&mut c);
    let socket = c.admin.socket.clone();
    let config = write_config(dir.path(), &c);
    let log_path = dir.path().join("daemon.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    let mut daemon = tokio::process::Command::from(command(&config))
        .arg("run")
        .stderr(log_file)
        .spawn()
        .unwrap();
    wait_until(
        Duration::from_secs(20),
        "the daemon to come up",
        async || socket.exists(),
    )
    .await;
    let out = cli(
        &config,
        &["token", "create", "--label", "google-workspace", "--json"],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let secret = created["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("rtsc_"), "{created}");
    let secret_part = secret.splitn(3, '_').nth(2).unwrap().to_string();

    let log = std::fs::read_to_string(&log_path).unwrap();
    let scim = log_field(&log, "scim").expect("the start line names the SCIM address");
    let get = |auth: String| {
        format!("GET /scim/v2/Users?count=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {auth}\r\nConnection: close\r\n\r\n")
    };
    let ok = raw_http(&scim, get(secret.clone())).await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let wrong = format!("{}WRONGSECRETWRONGSECRET", &secret[..secret.len() - 20]);
    let denied = raw_http(&scim, get(wrong.clone())).await;
    assert!(denied.starts_with("HTTP/1.1 401"), "{denied}");
    let body = r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"new@example.com","active":true}"#;
    let post = raw_http(
        &scim,
        format!("POST /scim/v2/Users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\r\nContent-Type: application/scim+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()),
    )
    .await;
    assert!(post.starts_with("HTTP/1.1 201"), "{post}");
    // A pull: the JWT grant and the access token.
    let out = cli(&config, &["sync", "--json"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let pid = daemon.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), daemon.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.lines().count() > 10, "trace logging was on: {log}");
    assert!(
        log.contains("\"token\":\"google-workspace\""),
        "requests are logged with the token's label"
    );
    assert!(log.contains("SCIM request"));
    for (what, needle) in [
        ("the SCIM token", secret.as_str()),
        ("the SCIM token's secret", secret_part.as_str()),
        ("a wrong token", &wrong[wrong.len() - 20..]),
        ("an access token", "ya29."),
        ("the private key", "PRIVATE KEY"),
        ("the private key's body", &private_key[40..80]),
    ] {
        assert!(!log.contains(needle), "the log carries {what}");
    }
}
