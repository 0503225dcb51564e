//! Shared set-up of the integration tests: a fake Google on port 0, a temporary store, a
//! config; waiting on a condition.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use fake_google::{FakeGoogle, FakeSeed, FakeUser};
use retrac_sync::config::Config;
use retrac_sync::directory::Backoff;
use retrac_sync::member::{Member, UserName};
use retrac_sync::reconcile::{SyncContext, SyncError, SyncOptions, SyncOutcome, Target};
use retrac_sync::store::{AuditQuery, Store};

pub struct World {
    pub google: FakeGoogle,
    pub dir: tempfile::TempDir,
    pub config: Config,
}

pub async fn world(seed: FakeSeed) -> World {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let google = FakeGoogle::start(listener, seed).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("google-key.json");
    google.write_key_file(&key).unwrap();
    let mut config = Config::default();
    config.store.path = dir.path().join("store");
    config.google.key_file = Some(key);
    config.google.subject = Some(google.admin());
    config.google.api_base_url = google.base_url();
    config.google.domains = vec!["example.com".into()];
    World {
        google,
        dir,
        config,
    }
}

/// The scope the end-to-end tests use: two groups (one with a nested group), an org unit,
/// and an exclude pattern.
pub fn scoped(config: &mut Config) {
    config.scope.groups = vec!["engineering@example.com".into(), "sales@example.com".into()];
    config.scope.org_units = vec!["/Support".into()];
    config.scope.exclude = vec!["ada.*".into()];
}

pub fn context(store: &Store, config: &Config) -> SyncContext {
    SyncContext::new(store.clone(), config.clone())
        .with_backoff(Backoff::fast())
        .with_credentials_dir(None)
}

pub async fn sync(ctx: &SyncContext) -> SyncOutcome {
    pull(ctx, Target::All, false).await.unwrap()
}

/// One run of the pull, now.
pub async fn pull(
    ctx: &SyncContext,
    target: Target,
    dry_run: bool,
) -> Result<SyncOutcome, SyncError> {
    let opts = SyncOptions {
        dry_run,
        progress: None,
    };
    retrac_sync::reconcile::run(ctx, target, opts, chrono::Utc::now()).await
}

/// `sync user EMAIL` as a run's target.
pub fn one(email: &str) -> Target {
    Target::User(UserName::parse(email).unwrap())
}

/// Whether a fake user is in the scope of [`scoped`].
pub fn in_scope(u: &FakeUser, groups: &[String]) -> bool {
    let ou = u.org_unit_path.as_str();
    let by_group = groups.iter().any(|g| g == "engineering")
        && (ou == "/Engineering" || ou.starts_with("/Engineering/"))
        || groups.iter().any(|g| g == "sales") && (ou == "/Sales");
    (by_group || ou == "/Support") && !u.primary_email.to_lowercase().starts_with("ada.")
}

pub fn members(store: &Store) -> BTreeMap<String, Member> {
    store
        .members()
        .map(|m| m.unwrap())
        .map(|m| (m.dir.google_id.clone().unwrap_or_default(), m))
        .collect()
}

pub fn audit_len(store: &Store) -> usize {
    store.audit(&AuditQuery::default()).unwrap().len()
}

/// The members must be exactly the in-scope users: same email, active when the user is
/// active, and any other Google-managed member inactive.
pub fn assert_mirrors(store: &Store, google: &FakeGoogle, expect: impl Fn(&FakeUser) -> bool) {
    let ms = members(store);
    let mut expected_active = 0;
    for u in google.users() {
        let m = ms.get(&u.id);
        if expect(&u) {
            let m =
                m.unwrap_or_else(|| panic!("{} is in scope but has no member", u.primary_email));
            assert_eq!(m.dir.user_name.as_str(), u.primary_email);
            assert_eq!(m.dir.given_name.as_deref(), Some(u.given_name.as_str()));
            assert_eq!(
                m.dir.active,
                !u.suspended && !u.archived,
                "{}",
                u.primary_email
            );
            if m.dir.active {
                expected_active += 1;
            }
        } else if let Some(m) = m {
            assert!(
                !m.dir.active,
                "{} is out of scope but active",
                u.primary_email
            );
        }
    }
    let active = ms.values().filter(|m| m.dir.active).count();
    assert_eq!(active, expected_active, "no other member is active");
    let problems = store.check_consistency().unwrap();
    assert!(problems.is_empty(), "{problems:?}");
}

/// Waits until `cond` holds, asking again every 20 ms, and fails the test (naming `what`) if
/// it still does not after `within`. Tests wait on a condition this way, never for a fixed
/// time: a loaded machine only makes them slower, and an idle one does not wait for nothing.
pub async fn wait_until(within: Duration, what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {within:?} for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The binary with `--config config`, cleared of the environment that would point it
/// elsewhere or change its output (`RETRAC_SYNC_CONFIG`, systemd's `CREDENTIALS_DIRECTORY`,
/// `RUST_LOG`).
pub fn command(config: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_retrac-sync"));
    cmd.arg("--config")
        .arg(config)
        .env_remove("RETRAC_SYNC_CONFIG")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("RUST_LOG");
    cmd
}

/// Runs the CLI with `args` and waits for it without holding an async worker (a daemon in
/// the same runtime keeps answering it).
pub async fn cli(config: &Path, args: &[&str]) -> Output {
    tokio::process::Command::from(command(config))
        .args(args)
        .output()
        .await
        .unwrap()
}

/// A config with its store and admin socket in `dir` and its listeners on a free loopback
/// port, as a test's daemon or CLI runs with it.
pub fn local_config(dir: &Path) -> Config {
    let mut config = Config::default();
    config.store.path = dir.join("store");
    config.admin.socket = dir.join("admin.sock");
    config.scim.listen = "127.0.0.1:0".into();
    config.metrics.listen = "127.0.0.1:0".into();
    // Off: tests run side by side, and the console's default port is one fixed port.
    config.console.listen = String::new();
    config
}

/// Writes `config` (as `Config::to_toml` renders it) to `dir/config.toml`.
pub fn write_config(dir: &Path, config: &Config) -> PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(&path, config.to_toml()).unwrap();
    path
}

/// One HTTP/1.1 request on a fresh connection, with a deadline: (status, body), or None
/// when no answer came in `within`.
pub async fn request_within(addr: &str, raw: String, within: Duration) -> Option<(u16, String)> {
    tokio::time::timeout(within, async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        tokio::io::AsyncWriteExt::write_all(&mut s, raw.as_bytes())
            .await
            .ok()?;
        let mut buf = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut s, &mut buf)
            .await
            .ok()?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let status = text.get(9..12)?.parse().ok()?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Some((status, body))
    })
    .await
    .ok()
    .flatten()
}
