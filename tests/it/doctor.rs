//! `retrac-sync doctor` against the fake Google: a healthy setup, a missing delegation, an
//! unknown scope group, an expired or mismatched certificate, a skewed clock, a running
//! daemon, and the CLI's checklist and exit code.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chrono::{DateTime, Utc};
use fake_google::{FakeSeed, Fault};
use retrac_sync::config::Config;
use retrac_sync::directory::Backoff;
use retrac_sync::doctor::{self, DoctorOptions, Report, Status};
use retrac_sync::store::Store;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn options() -> DoctorOptions {
    DoctorOptions {
        config_source: None,
        credentials_dir: None,
        unit_key_file: PathBuf::from("/nonexistent/google-key.json"),
        backoff: Backoff::fast(),
        now: Utc::now,
    }
}

/// A complete setup: the fake Google with a sample directory, a scope group, a store,
/// TLS files and an https public URL.
async fn healthy() -> common::World {
    let mut w = common::world(FakeSeed::sample(40, "example.com")).await;
    w.config.scope.groups = vec!["engineering@example.com".into()];
    w.config.scim.public_url = Some("https://sync.example.com".into());
    w.config.scim.tls_cert = Some(data("scim-test-cert.pem"));
    w.config.scim.tls_key = Some(data("scim-test-key.pem"));
    w.config.admin.socket = w.dir.path().join("admin.sock");
    drop(Store::open(&w.config.store.path).unwrap());
    w
}

async fn diagnose(config: &Config, opts: &DoctorOptions) -> Report {
    doctor::diagnose(Ok(config.clone()), opts).await
}

fn status(report: &Report, name: &str) -> Status {
    report
        .check(name)
        .unwrap_or_else(|| panic!("no check {name:?} in {report:#?}"))
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_setup_passes_every_check() {
    let w = healthy().await;
    let report = diagnose(&w.config, &options()).await;
    assert!(report.ok, "{report:#?}");
    for name in [
        "config",
        "store",
        "tls",
        "public_url",
        "google key",
        "google token",
        "users.list customer=my_customer",
        "users.list domain=example.com",
        "members.list engineering@example.com",
        "nested groups",
        "clock",
        "schedule",
    ] {
        assert_eq!(status(&report, name), Status::Ok, "{name}: {report:#?}");
    }
    // No daemon runs in this test: that is worth a look, not a failure.
    assert_eq!(status(&report, "admin socket"), Status::Warn);
    // One user per domain, one members page per group, then the scope group and the group
    // nested in it read once each, as the pull reads them: nothing more.
    assert_eq!(w.google.requests("users.list"), 2);
    assert_eq!(w.google.requests("members.list"), 3);
    assert_eq!(
        report.check("nested groups").unwrap().detail,
        "nested groups under the scope groups: 1 (at most [scope].max_nested_groups = 1000)"
    );
    assert!(w
        .google
        .last_query("users.list")
        .unwrap()
        .contains("maxResults=1"));
    let schedule = report.check("schedule").unwrap();
    assert_eq!(schedule.detail.matches("UTC").count(), 1, "{schedule:?}");
    assert_eq!(schedule.detail.matches(":00, ").count(), 2, "{schedule:?}");
    let store = &report.check("store").unwrap().detail;
    let schema = format!("schema {}", retrac_sync::store::SCHEMA_VERSION);
    assert!(
        store.contains(&schema) && store.contains("consistent"),
        "{store}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_delegation_fails_with_the_pulls_message() {
    let w = healthy().await;
    w.google.inject(Fault::DenyDelegation);
    let report = diagnose(&w.config, &options()).await;
    assert!(!report.ok);
    let token = report.check("google token").unwrap();
    assert_eq!(token.status, Status::Fail);
    // The pull's own message: where to grant it, for which client id and scopes.
    assert!(token.detail.contains("Domain-wide delegation"), "{token:?}");
    assert!(token.detail.contains(w.google.client_id()), "{token:?}");
    assert!(token.fix.as_deref().unwrap().contains("delegation"));
    let ctx = common::context(&Store::open(&w.config.store.path).unwrap(), &w.config);
    let pull = common::sync(&ctx).await;
    assert!(
        pull.error.as_deref().unwrap().starts_with(&token.detail),
        "{pull:?}"
    );
    // The checks that need a token are left out, not reported as more failures.
    assert!(report.check("users.list customer=my_customer").is_none());
    assert_eq!(status(&report, "clock"), Status::Ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_scope_group_fails_and_says_which() {
    let mut w = healthy().await;
    w.config.scope.groups = vec![
        "engineering@example.com".into(),
        "no-such-group@example.com".into(),
    ];
    let report = diagnose(&w.config, &options()).await;
    assert!(!report.ok);
    assert_eq!(
        status(&report, "members.list engineering@example.com"),
        Status::Ok
    );
    let bad = report
        .check("members.list no-such-group@example.com")
        .unwrap();
    assert_eq!(bad.status, Status::Fail);
    assert!(bad.detail.contains("404"), "{bad:?}");
    assert!(
        bad.fix.as_deref().unwrap().contains("[scope].groups"),
        "{bad:?}"
    );
    let ctx = common::context(&Store::open(&w.config.store.path).unwrap(), &w.config);
    let pull = common::sync(&ctx).await;
    assert!(
        pull.error.as_deref().unwrap().starts_with(&bad.detail),
        "{pull:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_fails() {
    let mut w = healthy().await;
    w.config.scim.tls_cert = Some(data("doctor-expired-cert.pem"));
    w.config.scim.tls_key = Some(data("doctor-expired-key.pem"));
    let report = diagnose(&w.config, &options()).await;
    assert!(!report.ok);
    let tls = report.check("tls").unwrap();
    assert_eq!(tls.status, Status::Fail, "{tls:?}");
    assert!(tls.detail.contains("expired on 2020-02-01"), "{tls:?}");
    // Only the certificate is wrong.
    let failed: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(failed, ["tls"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_does_not_belong_to_the_certificate_fails() {
    let mut w = healthy().await;
    w.config.scim.tls_key = Some(data("doctor-expired-key.pem"));
    let report = diagnose(&w.config, &options()).await;
    let tls = report.check("tls").unwrap();
    assert_eq!(tls.status, Status::Fail, "{tls:?}");
    assert!(
        tls.fix.as_deref().unwrap().contains("private key"),
        "{tls:?}"
    );
}

fn ten_minutes_ahead() -> DateTime<Utc> {
    Utc::now() + chrono::Duration::minutes(10)
}

fn one_minute_behind() -> DateTime<Utc> {
    Utc::now() - chrono::Duration::minutes(1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skewed_clock_is_reported_against_googles_date() {
    let w = healthy().await;
    let mut opts = options();
    opts.now = ten_minutes_ahead;
    let report = diagnose(&w.config, &opts).await;
    let clock = report.check("clock").unwrap();
    assert_eq!(clock.status, Status::Fail, "{clock:?}");
    assert!(clock.detail.contains("ahead of Google"), "{clock:?}");
    opts.now = one_minute_behind;
    let report = diagnose(&w.config, &opts).await;
    let clock = report.check("clock").unwrap();
    assert_eq!(clock.status, Status::Warn, "{clock:?}");
    assert!(clock.detail.contains("behind Google"), "{clock:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_daemon_answers_and_holds_the_store() {
    let w = healthy().await;
    let store = Store::open(&w.config.store.path).unwrap();
    let listeners = retrac_sync::daemon::Listeners {
        scim: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        metrics: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        admin: retrac_sync::admin::server::bind(&w.config.admin.socket).unwrap(),
        admin_path: w.config.admin.socket.clone(),
        console: None,
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let mut config = w.config.clone();
    config.sync.schedule = "0 0 0 1 1 *".into();
    let daemon = tokio::spawn(retrac_sync::daemon::launch(
        config,
        store,
        listeners,
        retrac_sync::daemon::LaunchOptions {
            first_sync_delay: Duration::from_secs(3600),
            ..Default::default()
        },
        async move {
            let _ = rx.await;
        },
    ));
    let mut report = diagnose(&w.config, &options()).await;
    for _ in 0..50 {
        if status(&report, "admin socket") == Status::Ok {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        report = diagnose(&w.config, &options()).await;
    }
    assert_eq!(status(&report, "admin socket"), Status::Ok, "{report:#?}");
    let store = report.check("store").unwrap();
    assert_eq!(store.status, Status::Ok, "{store:?}");
    assert!(store.detail.contains("running daemon"), "{store:?}");
    let _ = tx.send(());
    daemon.await.unwrap().unwrap();
}

/// Runs the CLI with `config` written to a file in `dir`, as an admin has it.
async fn cli_with(config: &Config, dir: &Path, args: &[&str]) -> std::process::Output {
    common::cli(&common::write_config(dir, config), args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_prints_a_checklist_and_exits_1_only_on_a_failure() {
    let mut w = healthy().await;
    let out = cli_with(&w.config, w.dir.path(), &["doctor"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("✓ google token: "), "{text}");
    assert!(text.contains("! admin socket: "), "{text}");
    assert!(text.contains("; fix: start it"), "{text}");
    for line in text.lines().take_while(|l| !l.contains(" ok, ")) {
        assert!(
            line.starts_with("✓ ") || line.starts_with("! ") || line.starts_with("✗ "),
            "{line}"
        );
    }

    w.config.scope.groups = vec!["no-such-group@example.com".into()];
    let out = cli_with(&w.config, w.dir.path(), &["doctor", "--json"]).await;
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    let failed: Vec<&serde_json::Value> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .collect();
    assert_eq!(failed.len(), 1, "{report:#}");
    assert_eq!(failed[0]["name"], "members.list no-such-group@example.com");
    assert!(failed[0]["fix"]
        .as_str()
        .unwrap()
        .contains("[scope].groups"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1 checks failed"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_that_does_not_load_is_one_failed_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let mut bad = Config::default();
    bad.sync.schedule = "often".into();
    std::fs::write(&path, bad.to_toml()).unwrap();
    let mut opts = options();
    opts.config_source = Some(path.clone());
    let report = doctor::diagnose(Config::load_with_env(Some(&path), Vec::new()), &opts).await;
    assert!(!report.ok);
    assert_eq!(report.checks.len(), 1);
    let c = &report.checks[0];
    assert_eq!(c.name, "config");
    assert!(c.detail.contains("sync.schedule"), "{c:?}");
    assert!(c
        .fix
        .as_deref()
        .unwrap()
        .contains(&path.display().to_string()));
}

#[test]
fn the_version_names_the_commit_and_the_build_date() {
    let out = Command::new(env!("CARGO_BIN_EXE_retrac-sync"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let expected = format!(
        "retrac-sync {} (commit {}, built {})\n",
        env!("CARGO_PKG_VERSION"),
        retrac_sync::version::COMMIT,
        retrac_sync::version::BUILD_DATE
    );
    assert_eq!(text, expected);
    // In a git checkout the commit is HEAD's (a tarball without .git says "unknown").
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    if let Some(head) = head.ok().filter(|h| h.status.success()) {
        let head = String::from_utf8(head.stdout).unwrap();
        assert_eq!(retrac_sync::version::COMMIT, head.trim());
    }
    // The build date is today's or a recent one (SOURCE_DATE_EPOCH), in YYYY-MM-DD.
    assert!(
        chrono::NaiveDate::parse_from_str(retrac_sync::version::BUILD_DATE, "%Y-%m-%d").is_ok()
    );
}

/// Keyless credentials (`[google].credentials = "metadata"`): the doctor builds the client
/// as the pull does (metadata token, signJwt, token exchange), with no key file anywhere,
/// and a refused step fails the check with the pull's own message instead of asking for a
/// key file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_credentials_are_checked_as_the_pull_uses_them() {
    use retrac_sync::config::CredentialsKind;
    let mut w = healthy().await;
    std::fs::remove_file(w.dir.path().join("google-key.json")).unwrap();
    let g = &w.google;
    w.config.google.key_file = None;
    w.config.google.credentials = CredentialsKind::Metadata;
    w.config.google.service_account = Some(g.service_account());
    w.config.google.metadata_url = g.base_url();
    w.config.google.iam_url = g.base_url();
    w.config.google.token_url = g.token_uri();
    w.config.validate().unwrap();

    let report = diagnose(&w.config, &options()).await;
    for name in [
        "google credentials",
        "users.list customer=my_customer",
        "members.list engineering@example.com",
        "clock",
    ] {
        assert_eq!(status(&report, name), Status::Ok, "{name}: {report:#?}");
    }
    assert!(report.check("google key").is_none(), "{report:#?}");
    assert_eq!((g.requests("metadata"), g.requests("signJwt")), (1, 1));

    w.google.inject(Fault::KeylessRefuses("signJwt"));
    let report = diagnose(&w.config, &options()).await;
    assert!(!report.ok);
    let users = report.check("users.list customer=my_customer").unwrap();
    assert_eq!(users.status, Status::Fail, "{report:#?}");
    assert!(users.detail.contains("signJwt"), "{users:?}");
    assert!(
        users
            .detail
            .contains("roles/iam.serviceAccountTokenCreator"),
        "{users:?}"
    );
}

/// Workload Identity Federation: the doctor says which source the credential file uses
/// and whom it impersonates, then proves the chain with a users.list page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_federation_credential_is_described_by_its_source_and_checked() {
    use fake_google::SubjectTokenSource;
    use retrac_sync::config::CredentialsKind;
    let mut w = healthy().await;
    std::fs::remove_file(w.dir.path().join("google-key.json")).unwrap();
    let g = &w.google;
    let file = g
        .write_federation_file(w.dir.path(), SubjectTokenSource::UrlJson, true)
        .unwrap();
    w.config.google.key_file = Some(file);
    w.config.google.credentials = CredentialsKind::ExternalAccount;
    w.config.google.service_account = Some(g.service_account());
    w.config.google.sts_url = g.base_url();
    w.config.google.iam_url = g.base_url();
    w.config.google.token_url = g.token_uri();
    w.config.validate().unwrap();

    let report = diagnose(&w.config, &options()).await;
    let credentials = report.check("google credentials").unwrap();
    assert_eq!(credentials.status, Status::Ok, "{report:#?}");
    assert_eq!(
        credentials.detail,
        format!(
            "keyless: Workload Identity Federation from a token URL {}/subject-token?format=json (JSON), impersonating {sa}, signing as {sa}",
            g.base_url(),
            sa = g.service_account()
        )
    );
    assert_eq!(
        status(&report, "users.list customer=my_customer"),
        Status::Ok,
        "{report:#?}"
    );
    assert_eq!(
        (
            g.requests("subject token"),
            g.requests("generateAccessToken")
        ),
        (1, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_groups_past_the_limit_fail_with_the_pulls_message() {
    let mut w = healthy().await;
    w.config.scope.max_nested_groups = 0;
    let report = diagnose(&w.config, &options()).await;
    assert!(!report.ok);
    let bad = report.check("nested groups").unwrap();
    assert_eq!(bad.status, Status::Fail);
    assert!(
        bad.fix
            .as_deref()
            .unwrap()
            .contains("[scope].max_nested_groups"),
        "{bad:?}"
    );
    let ctx = common::context(&Store::open(&w.config.store.path).unwrap(), &w.config);
    let pull = common::sync(&ctx).await;
    assert!(
        pull.error.as_deref().unwrap().starts_with(&bad.detail),
        "{pull:?}"
    );
    assert_eq!(pull.report.counts.created, 0);
}
