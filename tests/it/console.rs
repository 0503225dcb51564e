//! The owner's console against a running daemon and the fake Google: "Sign in with Google"
//! over HTTP (OpenID Connect with PKCE, every refusal), and the end-to-end run in headless
//! Chromium (`tests/browser/console_e2e.py`, Selenium and axe-core).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use fake_google::{FakeGoogle, FakeSeed, OidcLogin};
use retrac_sync::config::{Config, OidcConfig};
use retrac_sync::daemon::{self, Listeners};
use retrac_sync::member::Role;
use retrac_sync::store::Store;
use tokio::net::TcpListener;

use crate::common::{cli, local_config, wait_until, write_config};

/// A daemon with its console and Google sign-in, against a fake Google of `users` users.
struct Running {
    google: FakeGoogle,
    dir: tempfile::TempDir,
    config_path: PathBuf,
    store: Store,
    console: SocketAddr,
    scim: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), daemon::DaemonError>>>,
}

impl Running {
    async fn start(users: usize) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let google = FakeGoogle::start(listener, FakeSeed::sample(users, "example.com"))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("google-key.json");
        google.write_key_file(&key).unwrap();
        let secret = dir.path().join("console-secret");
        std::fs::write(&secret, google.oidc_client_secret()).unwrap();
        let scim = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let console = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (scim_addr, console_addr) = (scim.local_addr().unwrap(), console.local_addr().unwrap());
        let mut config: Config = local_config(dir.path());
        config.google.key_file = Some(key);
        config.google.subject = Some(google.admin());
        config.google.api_base_url = google.base_url();
        config.google.domains = vec!["example.com".into()];
        config.sync.schedule = "0 0 0 1 1 *".into();
        config.scim.public_url = Some(format!("http://{scim_addr}"));
        config.console.listen = console_addr.to_string();
        config.console.oidc = OidcConfig {
            issuer: google.base_url(),
            client_id: google.oidc_client_id().into(),
            client_secret_file: Some(secret),
        };
        config.validate().unwrap();
        let config_path = write_config(dir.path(), &config);
        let store = Store::open(&config.store.path).unwrap();
        let listeners = Listeners {
            scim,
            metrics,
            admin: retrac_sync::admin::server::bind(&config.admin.socket).unwrap(),
            admin_path: config.admin.socket.clone(),
            console: Some(console),
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(daemon::launch(
            config,
            store.clone(),
            listeners,
            daemon::LaunchOptions {
                first_sync_delay: Duration::from_millis(20),
                ..Default::default()
            },
            async move {
                let _ = rx.await;
            },
        ));
        let s = store.clone();
        wait_until(Duration::from_secs(20), "the first pull", async || {
            s.sync_runs(1).is_ok_and(|r| !r.is_empty())
        })
        .await;
        Running {
            google,
            dir,
            config_path,
            store,
            console: console_addr,
            scim: scim_addr,
            stop: Some(tx),
            task: Some(task),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.console)
    }

    fn make_owner(&self, email: &str) {
        retrac_sync::owner::execute(
            &self.store,
            retrac_sync::owner::Request::MembersRole {
                who: email.into(),
                role: Role::Owner,
            },
            Utc::now(),
        )
        .unwrap();
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}

/// One HTTP/1.1 GET on a fresh connection: the status, the headers (lower-case names) and
/// the body.
async fn get(
    addr: SocketAddr,
    path: &str,
    cookie: Option<&str>,
) -> (u16, Vec<(String, String)>, String) {
    let mut raw = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(c) = cookie {
        raw.push_str(&format!("Cookie: {c}\r\n"));
    }
    raw.push_str("\r\n");
    let text = tokio::time::timeout(Duration::from_secs(10), async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut s, raw.as_bytes())
            .await
            .unwrap();
        let mut buf = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut s, &mut buf)
            .await
            .unwrap();
        String::from_utf8_lossy(&buf).into_owned()
    })
    .await
    .expect("an answer in 10 s");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn cookie_of(h: &[(String, String)], name: &str) -> Option<String> {
    h.iter()
        .filter(|(k, _)| k == "set-cookie")
        .filter_map(|(_, v)| v.split(';').next())
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

/// The path and query of a URL on `addr`.
fn local_path(url: &str, addr: SocketAddr) -> String {
    url.strip_prefix(&format!("http://{addr}"))
        .unwrap_or_else(|| panic!("{url} is not on {addr}"))
        .to_string()
}

/// A whole "Sign in with Google": the console's redirect, the fake's sign-in, the callback.
/// The callback's status, headers and body.
async fn google_sign_in(
    r: &Running,
    keep_flow_cookie: bool,
) -> (u16, Vec<(String, String)>, String) {
    let (status, h, _) = get(r.console, "/login/google", None).await;
    assert_eq!(status, 303);
    let flow = cookie_of(&h, "__Host-retrac_oidc").expect("the flow cookie");
    let to_google = header(&h, "location").unwrap().to_string();
    assert!(
        to_google.contains("code_challenge_method=S256"),
        "{to_google}"
    );
    assert!(to_google.contains("nonce="), "{to_google}");
    let google_addr: SocketAddr = r
        .google
        .base_url()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let (status, h, body) = get(google_addr, &local_path(&to_google, google_addr), None).await;
    if status != 303 {
        return (status, h, body);
    }
    let back = header(&h, "location").unwrap().to_string();
    get(
        r.console,
        &local_path(&back, r.console),
        keep_flow_cookie.then_some(flow.as_str()),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_signs_in_with_google_and_everyone_else_is_refused() {
    let r = Running::start(12).await;
    let owner = r.google.users()[0].primary_email.clone();
    let staff = r.google.users()[1].primary_email.clone();
    r.make_owner(&owner);

    // The owner, a verified account of the domain.
    r.google.oidc_sign_in(Some(&owner));
    let (status, h, body) = google_sign_in(&r, true).await;
    assert_eq!(status, 200, "{body}");
    let session = cookie_of(&h, "__Host-retrac_session").expect("a session");
    let (status, _, page) = get(r.console, "/members", Some(&session)).await;
    assert_eq!(status, 200);
    assert!(page.contains(&owner));
    assert_eq!(r.google.oidc_tokens_issued(), 1);

    // Refusals: not an owner; not verified; another domain; no hd (a consumer account);
    // a callback in a browser that did not start the sign-in.
    let cases = [
        (
            OidcLogin {
                email: staff.clone(),
                email_verified: true,
                hd: Some("example.com".into()),
            },
            true,
            "owner role",
        ),
        (
            OidcLogin {
                email: owner.clone(),
                email_verified: false,
                hd: Some("example.com".into()),
            },
            true,
            "not verified",
        ),
        (
            OidcLogin {
                email: owner.clone(),
                email_verified: true,
                hd: Some("other.example".into()),
            },
            true,
            "Google domains",
        ),
        (
            OidcLogin {
                email: owner.clone(),
                email_verified: true,
                hd: None,
            },
            true,
            "Google domains",
        ),
        (
            OidcLogin {
                email: owner.clone(),
                email_verified: true,
                hd: Some("example.com".into()),
            },
            false,
            "another browser",
        ),
    ];
    for (login, keep, why) in cases {
        r.google.oidc_sign_in_as(Some(login.clone()));
        let (status, h, body) = google_sign_in(&r, keep).await;
        assert_eq!(status, 403, "{login:?}: {body}");
        assert!(body.contains(why), "{login:?}: {body}");
        assert!(cookie_of(&h, "__Host-retrac_session").is_none());
    }

    // A callback replayed (its state and code are spent), or made up.
    r.google.oidc_sign_in(Some(&owner));
    let (status, h, _) = get(r.console, "/login/google", None).await;
    assert_eq!(status, 303);
    let flow = cookie_of(&h, "__Host-retrac_oidc").unwrap();
    let google_addr: SocketAddr = r
        .google
        .base_url()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let to_google = header(&h, "location").unwrap().to_string();
    let (_, h, _) = get(google_addr, &local_path(&to_google, google_addr), None).await;
    let back = local_path(header(&h, "location").unwrap(), r.console);
    assert_eq!(get(r.console, &back, Some(&flow)).await.0, 200);
    let (status, _, body) = get(r.console, &back, Some(&flow)).await;
    assert_eq!(status, 403, "{body}");
    let (status, _, _) = get(
        r.console,
        "/login/google/callback?state=made-up&code=x",
        Some(&flow),
    )
    .await;
    assert_eq!(status, 403);

    // The owner's address given to a new Google user (another `sub`): the member is still
    // linked to the old one, so the new one does not sign in as it.
    let old = r.google.delete(&owner).unwrap();
    let mut new = old.clone();
    new.id = "109999999999999999999".into();
    r.google.add_user(new);
    r.google.oidc_sign_in(Some(&owner));
    let (status, _, body) = google_sign_in(&r, true).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("not the Google user the member is linked to"),
        "{body}"
    );

    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_login_prints_a_link_through_the_daemon() {
    let r = Running::start(6).await;
    let owner = r.google.users()[0].primary_email.clone();
    r.make_owner(&owner);
    let out = cli(&r.config_path, &["console", "login", &owner]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let url = text.lines().next().unwrap();
    assert!(
        url.starts_with(&format!("{}/login/link/", r.url())),
        "{text}"
    );
    assert!(text.contains("10 minutes"));
    // A member who is not an owner gets none: exit 1, and the reason.
    let staff = r.google.users()[1].primary_email.clone();
    let out = cli(&r.config_path, &["console", "login", &staff]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("owner role"));
    // `console logout --all` ends every session, through the daemon.
    let link = url.strip_prefix(&r.url()).unwrap().to_string();
    let mut raw = format!(
        "POST {link} HTTP/1.1\r\nHost: {}\r\nOrigin: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        r.console,
        r.url()
    );
    let answer = crate::common::request_within(
        &r.console.to_string(),
        std::mem::take(&mut raw),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(answer.0, 200);
    let out = cli(&r.config_path, &["console", "logout", "--all"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1 console session(s) ended"
    );
    let out = cli(&r.config_path, &["console", "logout"]).await;
    assert_eq!(out.status.code(), Some(2), "EMAIL or --all is required");
    r.stop().await;
}

/// What the browser test needs from this machine: a Python with Selenium, Chromium and its
/// driver, and axe-core. `None` (the test skips, loudly) when one is missing, unless
/// `RETRAC_REQUIRE_BROWSER=1` (set by `.ci/run`), which makes that a failure.
fn browser_tools() -> Option<(String, PathBuf)> {
    let python = std::env::var("RETRAC_BROWSER_PYTHON").unwrap_or_else(|_| "python3".into());
    let axe = std::env::var("RETRAC_AXE_JS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("target/browser-node/node_modules/axe-core/axe.min.js"));
    let selenium = std::process::Command::new(&python)
        .args(["-c", "import selenium"])
        .output()
        .is_ok_and(|o| o.status.success());
    let chromium =
        Path::new("/usr/bin/chromium").exists() && Path::new("/usr/bin/chromedriver").exists();
    let ok = selenium && chromium && axe.exists();
    if ok {
        return Some((python, axe));
    }
    let why = format!(
        "selenium in {python}: {selenium}; /usr/bin/chromium and /usr/bin/chromedriver: {chromium}; axe-core at {}: {}",
        axe.display(),
        axe.exists()
    );
    assert!(
        !std::env::var("RETRAC_REQUIRE_BROWSER").is_ok_and(|v| v == "1"),
        "the browser test cannot run, and RETRAC_REQUIRE_BROWSER=1: {why}"
    );
    eprintln!("\n*** SKIPPED: the console's browser test ({why}); .ci/run installs them ***\n");
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    let Some((python, axe)) = browser_tools() else {
        return;
    };
    let r = Running::start(40).await;
    let users = r.google.users();
    let owner = users[0].primary_email.clone();
    let staff = users[1].primary_email.clone();
    r.make_owner(&owner);
    r.google.oidc_sign_in(Some(&owner));
    // A member whose name is markup.
    let out = cli(
        &r.config_path,
        &[
            "members",
            "add",
            "markup@example.com",
            "--given",
            "<img src=x onerror=alert(1)>",
            "--family",
            "Test",
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Ten of forty users gone from Google: the next run holds their deactivations.
    for u in &users[30..40] {
        r.google.delete(&u.primary_email);
    }
    let screenshots = std::env::var("RETRAC_SCREENSHOTS").unwrap_or_default();
    let started = std::time::Instant::now();
    let out = tokio::process::Command::new(&python)
        .arg("tests/browser/console_e2e.py")
        .env("CONSOLE_URL", r.url())
        .env("SCIM_URL", format!("http://{}/scim/v2", r.scim))
        .env("RETRAC_BIN", env!("CARGO_BIN_EXE_retrac-sync"))
        .env("RETRAC_CONFIG", &r.config_path)
        .env("OWNER_EMAIL", &owner)
        .env("STAFF_EMAIL", &staff)
        .env("AXE_JS", &axe)
        .env("SCREENSHOTS", &screenshots)
        .env_remove("RETRAC_SYNC_CONFIG")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), out)
        .await
        .expect("the browser test ends in 5 minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "{stdout}\n{stderr}\nbrowser test: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        out.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}"
    );
    // What the browser did, read back here: the locations it set, the audit's actor.
    let m = r.store.get_by_user_name(&staff).unwrap().unwrap();
    assert_eq!(m.locations, vec!["Paris".to_string(), "Lyon".to_string()]);
    let runs = r.store.sync_runs(10).unwrap();
    assert!(runs.iter().any(|run| run.kind == "approve"), "{runs:?}");
    let _ = r.dir.path();
    r.stop().await;
}
