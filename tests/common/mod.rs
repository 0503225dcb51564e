//! Shared set-up of the pull tests: a fake Google on port 0, a temporary store, a config.
#![allow(dead_code)]

use std::collections::BTreeMap;

use retrac_sync::config::Config;
use retrac_sync::directory::fake::{FakeGoogle, FakeSeed, FakeUser};
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
        .map(|m| (m.google_id.clone().unwrap_or_default(), m))
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
            assert_eq!(m.user_name.as_str(), u.primary_email);
            assert_eq!(m.given_name.as_deref(), Some(u.given_name.as_str()));
            assert_eq!(m.active, !u.suspended && !u.archived, "{}", u.primary_email);
            if m.active {
                expected_active += 1;
            }
        } else if let Some(m) = m {
            assert!(!m.active, "{} is out of scope but active", u.primary_email);
        }
    }
    let active = ms.values().filter(|m| m.active).count();
    assert_eq!(active, expected_active, "no other member is active");
    let problems = store.check_consistency().unwrap();
    assert!(problems.is_empty(), "{problems:?}");
}
