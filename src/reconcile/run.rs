//! One run of the pull: fetch -> scope -> plan -> guard -> apply -> record.
//!
//! A fetch that fails in any way (a page still failing after its retries, a truncated
//! page, a token failure, a scope group Google does not know) fails the run before any
//! write, so a partial listing can never look like deleted users. Runs never overlap: the
//! single-flight lock is shared by the schedule, the CLI and the admin socket.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::guard::{self, Limits};
use super::plan::{self, Action, Desired, Plan, PlanContext, PlannedChange};
use super::scope::{GroupMembership, ScopeRules};
use crate::config::Config;
use crate::directory::model::{GoogleUser, UsersPage};
use crate::directory::{self, Backoff, DirectoryClient, DirectoryError, UserListTarget};
use crate::member::{Actor, Change, Member, UserName};
use crate::provision::{self, Outcome, ProvisionError};
use crate::store::{HeldDeactivation, HeldSet, RunCounts, RunStatus, Store, StoreError, SyncRun};

/// How many changes go into one atomic batch.
pub const BATCH_SIZE: usize = 1000;

/// At most this many problem messages are kept in a run record.
const MAX_PROBLEMS: usize = 50;

/// Why a run could not even start or be recorded.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Another run is in progress.
    #[error(
        "a sync is already running; try again when it has finished (see `retrac-sync sync status`)"
    )]
    Busy,
    /// No held changes under this run id.
    #[error("no held changes for run {0:?} (see `retrac-sync sync status`)")]
    UnknownRun(String),
    /// The input is not valid.
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Fetch progress, for a terminal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// users.list pages read.
    pub pages: usize,
    /// Users read.
    pub users: usize,
    /// members.list pages read.
    pub group_pages: usize,
}

/// A progress callback.
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// Options of one run.
#[derive(Clone, Default)]
pub struct SyncOptions {
    /// Plan and print, write nothing.
    pub dry_run: bool,
    /// Called after each page.
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for SyncOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncOptions")
            .field("dry_run", &self.dry_run)
            .finish_non_exhaustive()
    }
}

/// The report of a run: exactly the keys of `sync --json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReport {
    /// The run id (empty for a dry run, which is not recorded).
    pub run_id: String,
    /// `ok`, `failed` or `held`.
    pub status: String,
    /// The counts, inline: `created`, `updated`, `deactivated`, `linked`, `unchanged`,
    /// `held`, `skipped`, `errors`.
    #[serde(flatten)]
    pub counts: RunCounts,
    /// Directory API requests made (retries included).
    pub google_requests: u64,
    /// Wall time.
    pub duration_ms: u64,
}

/// A run's report with what a person reading it needs besides the counts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyncOutcome {
    /// The counts.
    pub report: SyncReport,
    /// Why the run failed.
    pub error: Option<String>,
    /// Refusals and problems.
    pub problems: Vec<String>,
    /// Why deactivations were held.
    pub held_reasons: Vec<String>,
    /// The planned changes (dry run only).
    pub changes: Option<Vec<PlannedChange>>,
}

impl SyncOutcome {
    /// Whether the run failed.
    pub fn failed(&self) -> bool {
        self.report.status == RunStatus::Failed.to_string()
    }
}

/// What a run needs: the store, the config, the Directory client (made on first use), and
/// the single-flight lock.
pub struct SyncContext {
    store: Store,
    config: Arc<Config>,
    rules: ScopeRules,
    limits: Limits,
    client: tokio::sync::OnceCell<Arc<DirectoryClient>>,
    backoff: Backoff,
    credentials_dir: Option<PathBuf>,
    /// Where keyless credentials read `AWS_*` (tests give a fixed set).
    environment: directory::keyless::Environment,
    flight: tokio::sync::Mutex<()>,
    stop: AtomicBool,
    batch_size: usize,
    before_apply: Option<BeforeApply>,
    request_timeout: Duration,
    run_timeout: Duration,
    /// When the run in progress started (`None` between runs), for `/healthz`.
    running_since: Mutex<Option<Instant>>,
}

/// A hook run between plan and apply (tests use it to change a member under a run).
pub type BeforeApply = Arc<dyn Fn(&Store) + Send + Sync>;

/// Clears [`SyncContext::running_since`] when a run ends, however it ends.
struct RunningGuard<'a>(&'a SyncContext);

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        *self
            .0
            .running_since
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
    }
}

impl std::fmt::Debug for SyncContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncContext")
            .field("store", &self.store)
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl SyncContext {
    /// A context over `store` with `config`. `$CREDENTIALS_DIRECTORY` is read now.
    pub fn new(store: Store, config: Config) -> SyncContext {
        SyncContext {
            rules: ScopeRules::from_config(&config.scope, &config.google),
            limits: Limits::from_config(&config.sync),
            run_timeout: Duration::from_secs(config.sync.run_timeout.max(1)),
            store,
            config: Arc::new(config),
            client: tokio::sync::OnceCell::new(),
            backoff: Backoff::default(),
            credentials_dir: std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from),
            environment: directory::keyless::Environment::Process,
            flight: tokio::sync::Mutex::new(()),
            stop: AtomicBool::new(false),
            batch_size: BATCH_SIZE,
            before_apply: None,
            request_timeout: directory::client::REQUEST_TIMEOUT,
            running_since: Mutex::new(None),
        }
    }

    /// Uses another timeout for each Google request (tests shorten it).
    pub fn with_request_timeout(mut self, timeout: Duration) -> SyncContext {
        self.request_timeout = timeout;
        self
    }

    /// Uses another run deadline than `[sync].run_timeout` (tests shorten it below a second).
    pub fn with_run_timeout(mut self, timeout: Duration) -> SyncContext {
        self.run_timeout = timeout;
        self
    }

    /// When a run has been going for longer than the run deadline: why `/healthz` should
    /// say the daemon is unhealthy. `None` when no run is in progress or it is on time.
    pub fn overdue(&self) -> Option<String> {
        let since = (*self.running_since.lock().unwrap_or_else(|p| p.into_inner()))?;
        let took = since.elapsed();
        (took > self.run_timeout).then(|| {
            format!(
                "a pull has been running for {} s, longer than [sync].run_timeout = {} s",
                took.as_secs(),
                self.run_timeout.as_secs()
            )
        })
    }

    /// Marks a run as started until the guard is dropped.
    fn running(&self) -> RunningGuard<'_> {
        *self.running_since.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        RunningGuard(self)
    }

    /// Runs `hook` after each plan, just before its changes are applied. Tests use it to
    /// play a SCIM write landing between plan and apply.
    pub fn with_before_apply(mut self, hook: BeforeApply) -> SyncContext {
        self.before_apply = Some(hook);
        self
    }

    /// Uses another backoff (tests shorten it).
    pub fn with_backoff(mut self, backoff: Backoff) -> SyncContext {
        self.backoff = backoff;
        self
    }

    /// Uses another `$CREDENTIALS_DIRECTORY`.
    pub fn with_credentials_dir(mut self, dir: Option<PathBuf>) -> SyncContext {
        self.credentials_dir = dir;
        self
    }

    /// Reads keyless credentials' environment variables from `env` instead of the process's.
    pub fn with_environment(mut self, env: directory::keyless::Environment) -> SyncContext {
        self.environment = env;
        self
    }

    /// Uses another batch size.
    pub fn with_batch_size(mut self, n: usize) -> SyncContext {
        self.batch_size = n.max(1);
        self
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Whether a run is in progress now.
    pub fn is_running(&self) -> bool {
        self.flight.try_lock().is_err()
    }

    /// Asks a running sync to stop after its current batch (shutdown).
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    async fn client(&self) -> Result<Arc<DirectoryClient>, DirectoryError> {
        self.client
            .get_or_try_init(|| async {
                let g = &self.config.google;
                let subject = g.subject.as_deref().ok_or_else(|| DirectoryError::Token(
                    "[google].subject is not set: name the Google super admin the service account acts as".into(),
                ))?;
                let c = directory::connect_configured(
                    g,
                    subject,
                    self.rules.uses_groups(),
                    self.credentials_dir.as_deref(),
                    self.backoff,
                    self.request_timeout,
                    &self.environment,
                )
                .await?;
                Ok(Arc::new(c))
            })
            .await
            .cloned()
    }
}

/// What was read from Google.
struct Snapshot {
    users: Vec<GoogleUser>,
    groups: GroupMembership,
}

/// The desired state read from Google, already scoped: pages are reduced to what the plan
/// needs as they arrive, so a large directory is never held twice.
struct Fetched {
    desired: Vec<Desired>,
    unusable_ids: HashSet<String>,
    /// Ids of the users listed that are not desired (out of scope, unusable): with the
    /// desired users' own, every id listed.
    other_ids: HashSet<String>,
    problems: Vec<String>,
    /// The scope groups' members, to judge a user read again by users.get.
    groups: GroupMembership,
}

async fn fetch_groups(
    client: &DirectoryClient,
    ctx: &SyncContext,
    progress: Option<&ProgressFn>,
    p: &mut Progress,
) -> Result<GroupMembership, DirectoryError> {
    let mut groups = GroupMembership::default();
    for g in &ctx.rules.groups {
        let mut token: Option<String> = None;
        loop {
            // A scope group Google does not know is an error, not an empty group: an empty
            // group would deactivate its members.
            let page = client.list_members_page(g, token.as_deref()).await?;
            groups.add(&page.members);
            p.group_pages += 1;
            if let Some(f) = progress {
                f(*p);
            }
            match page.next_page_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
    }
    Ok(groups)
}

async fn fetch(
    client: &Arc<DirectoryClient>,
    ctx: &SyncContext,
    progress: Option<&ProgressFn>,
) -> Result<Fetched, DirectoryError> {
    let mut p = Progress::default();
    // Groups first: with them known, each users page is scoped as soon as it arrives.
    let groups = fetch_groups(client, ctx, progress, &mut p).await?;
    let mut out = Fetched {
        // About one desired user per member on most runs: grown once, not by doubling.
        desired: Vec::with_capacity(ctx.store.member_count()),
        unusable_ids: HashSet::new(),
        other_ids: HashSet::new(),
        problems: Vec::new(),
        groups: GroupMembership::default(),
    };
    let domains = &ctx.rules.domains;
    users_pages(client, ctx, |page| {
        p.pages += 1;
        p.users += page.users.len();
        for u in page.users {
            if !ctx.rules.in_scope(&u, &groups) {
                out.other_ids.insert(u.id);
                continue;
            }
            match Desired::from_google_owned(u, domains) {
                Ok(d) => out.desired.push(d),
                Err((id, e)) => {
                    out.other_ids.insert(id.clone());
                    out.unusable_ids.insert(id);
                    out.problems.push(e)
                }
            }
        }
        if let Some(f) = progress {
            f(p);
        }
    })
    .await?;
    out.groups = groups;
    Ok(out)
}

/// A spawned request, cancelled when dropped (a run that fails stops reading ahead).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads every users.list page of the run's listing in order and hands each, decoded, to
/// `on_page`. The next page is asked for as soon as this page's token is known, so Google
/// serves page N+1 while page N is decoded and handled. Any page that fails fails the whole
/// listing; the page read ahead is then cancelled.
async fn users_pages(
    client: &Arc<DirectoryClient>,
    ctx: &SyncContext,
    mut on_page: impl FnMut(UsersPage),
) -> Result<(), DirectoryError> {
    let target = Arc::new(UserListTarget::Customer(ctx.config.google.customer.clone()));
    let query: Option<Arc<str>> = ctx.rules.query.as_deref().map(Arc::from);
    let ask = |token: Option<String>| {
        let (client, target, query) = (client.clone(), target.clone(), query.clone());
        AbortOnDrop(tokio::spawn(async move {
            client
                .list_users_page_raw(&target, query.as_deref(), token.as_deref())
                .await
        }))
    };
    let mut next = Some(ask(None));
    while let Some(mut request) = next.take() {
        let raw = (&mut request.0)
            .await
            .map_err(|e| DirectoryError::BadResponse {
                endpoint: "users.list",
                detail: format!("the request task failed: {e}"),
            })??;
        next = raw.next_page_token.clone().map(|t| ask(Some(t)));
        on_page(raw.decode()?);
    }
    Ok(())
}

/// What the fetch and plan produced.
struct Planned {
    plan: Plan,
    problems: Vec<String>,
    groups: GroupMembership,
}

fn plan_snapshot(ctx: &SyncContext, fetched: Fetched, members: &Members) -> Planned {
    // A query narrows the listing, so an id missing from it may still be a Google user.
    let ids = ctx.rules.query.is_none().then_some(&fetched.other_ids);
    let plan = plan::plan_indexed(
        fetched.desired,
        &members.0,
        &members.1,
        &PlanContext {
            domains: &ctx.rules.domains,
            all_google_ids: ids,
            unusable_ids: Some(&fetched.unusable_ids),
        },
    );
    let mut problems = fetched.problems;
    problems.extend(plan.problems.iter().cloned());
    Planned {
        plan,
        problems,
        groups: fetched.groups,
    }
}

/// Every member (shared with the store's in-memory mirror: nothing is decoded or copied),
/// and the plan's index over them.
type Members = (Vec<Arc<Member>>, plan::MemberIndex);

/// Reads and indexes the members on a blocking thread; a run does this while Google is
/// read, since the two are independent until the plan.
async fn load_members(store: Store, domains: Vec<String>) -> Result<Members, StoreError> {
    tokio::task::spawn_blocking(move || {
        let members = store.snapshot();
        let index = plan::MemberIndex::new(&members, &domains);
        (members, index)
    })
    .await
    .map_err(|e| StoreError::Corrupt(format!("member load task failed: {e}")))
}

/// A run being put together.
struct RunBook {
    run_id: String,
    kind: &'static str,
    started: DateTime<Utc>,
    t0: Instant,
    counts: RunCounts,
    problems: Vec<String>,
    held_reasons: Vec<String>,
    google_requests: u64,
    /// Time spent reading Google, then planning, in ms (logged: where a slow run spends it).
    fetch_ms: u64,
    plan_ms: u64,
}

impl RunBook {
    fn new(ctx: &SyncContext, kind: &'static str, dry_run: bool) -> Result<RunBook, SyncError> {
        let started = Utc::now();
        let run_id = if dry_run {
            String::new()
        } else {
            ctx.store.new_run_id(started)?
        };
        Ok(RunBook {
            run_id,
            kind,
            started,
            t0: Instant::now(),
            counts: RunCounts::default(),
            problems: Vec::new(),
            held_reasons: Vec::new(),
            google_requests: 0,
            fetch_ms: 0,
            plan_ms: 0,
        })
    }

    fn problem(&mut self, p: String) {
        self.counts.errors += 1;
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(p);
        }
    }

    /// Records the run (unless dry), emits metrics and a log line, and builds the outcome.
    fn finish(
        self,
        ctx: &SyncContext,
        status: RunStatus,
        error: Option<String>,
        changes: Option<Vec<PlannedChange>>,
    ) -> Result<SyncOutcome, SyncError> {
        let finished = Utc::now();
        let elapsed = self.t0.elapsed();
        let dry = changes.is_some();
        if !dry {
            ctx.store.put_sync_run(&SyncRun {
                run_id: self.run_id.clone(),
                kind: self.kind.to_string(),
                started: self.started,
                finished,
                status,
                counts: self.counts.clone(),
                google_requests: self.google_requests,
                error: error.clone(),
                problems: self.problems.clone(),
                held_reasons: self.held_reasons.clone(),
            })?;
            metrics::counter!("retrac_sync_runs_total", "status" => status.to_string())
                .increment(1);
            metrics::histogram!("retrac_sync_duration_seconds").record(elapsed.as_secs_f64());
            if status != RunStatus::Failed {
                metrics::gauge!("retrac_sync_last_success_timestamp_seconds")
                    .set(finished.timestamp() as f64);
            }
            if let Ok(held) = ctx.store.held_all() {
                let n: usize = held.iter().map(|h| h.changes.len()).sum();
                metrics::gauge!("retrac_sync_held_changes").set(n as f64);
            }
        }
        let c = &self.counts;
        match &error {
            Some(e) => {
                tracing::error!(run_id = %self.run_id, kind = self.kind, %status, error = %e,
                google_requests = self.google_requests, "sync run failed")
            }
            None => tracing::info!(run_id = %self.run_id, kind = self.kind, %status, dry_run = dry,
                created = c.created, updated = c.updated, deactivated = c.deactivated,
                linked = c.linked, unchanged = c.unchanged, held = c.held, skipped = c.skipped,
                errors = c.errors, google_requests = self.google_requests,
                fetch_ms = self.fetch_ms, plan_ms = self.plan_ms,
                duration_ms = elapsed.as_millis() as u64, "sync run finished"),
        }
        Ok(SyncOutcome {
            report: SyncReport {
                run_id: self.run_id,
                status: status.to_string(),
                counts: c.clone(),
                google_requests: self.google_requests,
                duration_ms: elapsed.as_millis() as u64,
            },
            error,
            problems: self.problems,
            held_reasons: self.held_reasons,
            changes,
        })
    }
}

/// Counts a dry run's plan as if it were applied.
fn count_plan(book: &mut RunBook, plan: &Plan, held: bool) {
    let c = &mut book.counts;
    c.created += plan.count(Action::Create) as u64;
    c.updated += plan.count(Action::Update) as u64;
    c.linked += plan.count(Action::Link) as u64;
    let d = plan.count(Action::Deactivate) as u64;
    if held {
        c.held += d;
    } else {
        c.deactivated += d;
    }
    c.unchanged += plan.unchanged as u64;
}

/// Applies changes in atomic batches, counting each outcome. Stops between batches when a
/// shutdown asks; returns the error that stopped it.
async fn apply(
    ctx: &SyncContext,
    book: &mut RunBook,
    changes: Vec<PlannedChange>,
) -> Result<(), String> {
    if let Some(hook) = &ctx.before_apply {
        hook(&ctx.store);
    }
    let actor = Actor::Pull(book.run_id.clone());
    let mut batches = 0usize;
    let mut rest = changes;
    while !rest.is_empty() {
        if ctx.stop.load(Ordering::SeqCst) {
            return Err(format!(
                "stopped by shutdown after {batches} batches; the next run takes up the rest"
            ));
        }
        let tail = rest.split_off(rest.len().min(ctx.batch_size));
        let batch = std::mem::replace(&mut rest, tail);
        let store = ctx.store.clone();
        let actor = actor.clone();
        let now = Utc::now();
        let joined = tokio::task::spawn_blocking(move || {
            let just: Vec<_> = batch.iter().map(|c| c.change.clone()).collect();
            let results = provision::apply_batch(&store, &just, &actor, now);
            (batch, results)
        })
        .await;
        let (batch, results) = joined.map_err(|e| format!("apply task failed: {e}"))?;
        let results = results.map_err(|e| format!("the store failed: {e}"))?;
        batches += 1;
        for (planned, result) in batch.iter().zip(results) {
            tally(book, planned, result);
        }
    }
    ctx.store.flush().await.map_err(|e| e.to_string())?;
    Ok(())
}

fn tally(book: &mut RunBook, planned: &PlannedChange, result: Result<Outcome, ProvisionError>) {
    let c = &mut book.counts;
    match result {
        Ok(Outcome::Unchanged(_)) => c.unchanged += 1,
        Ok(outcome) => {
            let counted = match (planned.action, &outcome) {
                (Action::Create, Outcome::Created(_)) => {
                    c.created += 1;
                    "create"
                }
                // A create that met an unlinked member with the name linked it instead.
                (Action::Create, _) | (Action::Link, _) => {
                    c.linked += 1;
                    "link"
                }
                (Action::Update, _) => {
                    c.updated += 1;
                    "update"
                }
                (Action::Deactivate, _) => {
                    c.deactivated += 1;
                    "deactivate"
                }
            };
            if outcome.identity_changed() {
                c.identity_changed += 1;
            }
            // What the pull writes is drift the push did not deliver.
            metrics::counter!("retrac_sync_drift_corrected_total", "kind" => counted).increment(1);
        }
        // Changed by SCIM since the plan (or SCIM-deleted): the next run takes it up.
        Err(ProvisionError::VersionMismatch { .. }) | Err(ProvisionError::NotFound(_)) => {
            c.skipped += 1
        }
        Err(e) => book.problem(format!(
            "{} ({}): {e}",
            planned.user_name,
            planned.action.as_str()
        )),
    }
}

/// What checking the listing's deactivations against users.get left.
#[derive(Default)]
struct Verification {
    /// Deactivations past the cap, not checked: held as for the guard.
    unchecked: Vec<PlannedChange>,
}

/// Absence from one listing is not proof that a user is gone: Google's search index can lag
/// (<https://developers.google.com/workspace/admin/directory/v1/guides/search-users>), and a
/// listing can miss a user that moves while it is paged. Each deactivation of a member with
/// a Google id that the listing did not return is checked with users.get on that id:
/// - 404: the user is gone, the deactivation stands;
/// - found: judged from that answer alone (suspended, archived, out of scope by org unit,
///   group, exclude or domain; with `[scope].query`, Google's search for that one address
///   under the query decides); found and in scope: no change, counted `verified_present`;
/// - an error after its retries: that deactivation only is dropped and reported; the next
///   run takes it up.
///
/// At most `cap` users are checked (`None` = all); the rest come back unchecked.
async fn verify_absent(
    client: &DirectoryClient,
    ctx: &SyncContext,
    groups: &GroupMembership,
    plan: &mut Plan,
    cap: Option<usize>,
    book: &mut RunBook,
) -> Result<Verification, StoreError> {
    let mut out = Verification::default();
    let mut checked = 0usize;
    let mut kept = Vec::with_capacity(plan.changes.len());
    for change in std::mem::take(&mut plan.changes) {
        let Change::Deactivate { id, .. } = &change.change else {
            kept.push(change);
            continue;
        };
        let google_id = ctx.store.get(*id)?.and_then(|m| m.dir.google_id);
        let Some(google_id) = google_id else {
            // Never linked to a Google user: nothing to ask Google about.
            kept.push(change);
            continue;
        };
        if cap.is_some_and(|c| checked >= c) {
            out.unchecked.push(change);
            continue;
        }
        checked += 1;
        match still_present(client, ctx, groups, &google_id).await {
            Ok(false) => kept.push(change),
            Ok(true) => {
                book.counts.verified_present += 1;
                plan.active_after += 1;
                tracing::info!(user = %change.user_name, google_id = %google_id,
                    "missing from the listing but users.get finds it in scope: left active");
            }
            Err(e) => book.problem(format!(
                "{}: cannot check with Google that the user is gone ({}); not deactivated, the next run takes it up",
                change.user_name,
                directory::diagnose(&e)
            )),
        }
    }
    plan.changes = kept;
    Ok(out)
}

/// Whether the Google user `google_id` exists, is active and is in scope, from users.get.
async fn still_present(
    client: &DirectoryClient,
    ctx: &SyncContext,
    groups: &GroupMembership,
    google_id: &str,
) -> Result<bool, DirectoryError> {
    let Some(user) = client.get_user(google_id).await? else {
        return Ok(false);
    };
    if !user.is_active() || !ctx.rules.in_scope(&user, groups) {
        return Ok(false);
    }
    match &ctx.rules.query {
        None => Ok(true),
        Some(q) => matches_query(client, ctx, q, &user).await,
    }
}

/// Whether `[scope].query` matches one user: the query is Google's to evaluate, so
/// users.list is asked for it narrowed to the user's exact address.
async fn matches_query(
    client: &DirectoryClient,
    ctx: &SyncContext,
    query: &str,
    user: &GoogleUser,
) -> Result<bool, DirectoryError> {
    let target = UserListTarget::Customer(ctx.config.google.customer.clone());
    let narrowed = format!("{query} email='{}'", user.primary_email);
    let page = client
        .list_users_page(&target, Some(&narrowed), None)
        .await?;
    Ok(page.users.iter().any(|u| u.id == user.id))
}

/// The most users.get checks of absent users in one run: `[sync].max_deactivations` + 10.
fn verification_cap(ctx: &SyncContext) -> usize {
    ctx.limits.max_deactivations as usize + 10
}

/// Runs `f` (reading Google) under the run deadline.
async fn before_deadline<T>(
    ctx: &SyncContext,
    f: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    match tokio::time::timeout(ctx.run_timeout, f).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "the run read Google for longer than [sync].run_timeout = {} s",
            ctx.run_timeout.as_secs_f64()
        )),
    }
}

/// Performs one complete run and records it. Fails with [`SyncError::Busy`] when a run is
/// already in progress; a run that fails (Google, store) is reported with status `failed`.
pub async fn run_sync(ctx: &SyncContext, opts: SyncOptions) -> Result<SyncOutcome, SyncError> {
    let _flight = ctx.flight.try_lock().map_err(|_| SyncError::Busy)?;
    let _running = ctx.running();
    let mut book = RunBook::new(ctx, "sync", opts.dry_run)?;
    let client = match ctx.client().await {
        Ok(c) => c,
        Err(e) => return book.finish(ctx, RunStatus::Failed, Some(directory::diagnose(&e)), None),
    };
    let before = client.requests();
    // Read the members while Google is read: the two are independent until the plan.
    let members = tokio::spawn(load_members(ctx.store.clone(), ctx.rules.domains.clone()));
    let deadline = Instant::now() + ctx.run_timeout;
    let fetched = before_deadline(ctx, async {
        fetch(&client, ctx, opts.progress.as_ref())
            .await
            .map_err(|e| directory::diagnose(&e))
    })
    .await;
    book.google_requests = client.requests() - before;
    book.fetch_ms = book.t0.elapsed().as_millis() as u64;
    let snap = match fetched {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("{e}; nothing was written");
            return book.finish(ctx, RunStatus::Failed, Some(msg), dry(opts.dry_run));
        }
    };
    let members = members
        .await
        .map_err(|e| StoreError::Corrupt(format!("member load task failed: {e}")))??;
    let Planned {
        mut plan,
        problems,
        groups,
    } = plan_snapshot(ctx, snap, &members);
    drop(members);
    book.plan_ms = book.t0.elapsed().as_millis() as u64 - book.fetch_ms;
    for p in problems {
        book.problem(p);
    }
    // The rest of the deadline covers the checks of absent users.
    let left = deadline.saturating_duration_since(Instant::now());
    let checked = match tokio::time::timeout(
        left,
        verify_absent(
            &client,
            ctx,
            &groups,
            &mut plan,
            Some(verification_cap(ctx)),
            &mut book,
        ),
    )
    .await
    {
        Ok(r) => r?,
        Err(_) => {
            book.google_requests = client.requests() - before;
            let msg = format!(
                "the run read Google for longer than [sync].run_timeout = {} s; nothing was written",
                ctx.run_timeout.as_secs_f64()
            );
            return book.finish(ctx, RunStatus::Failed, Some(msg), dry(opts.dry_run));
        }
    };
    book.google_requests = client.requests() - before;
    let mut reasons = guard::check(&plan, &ctx.limits);
    let hold = !reasons.is_empty();
    if !checked.unchecked.is_empty() {
        reasons.push(format!(
            "{} more deactivations of users missing from the listing were not checked with users.get (at most [sync].max_deactivations + 10 = {} checks a run)",
            checked.unchecked.len(),
            verification_cap(ctx)
        ));
    }
    book.held_reasons = reasons.clone();
    let status = if reasons.is_empty() {
        RunStatus::Ok
    } else {
        RunStatus::Held
    };
    if opts.dry_run {
        count_plan(&mut book, &plan, hold);
        book.counts.held += checked.unchecked.len() as u64;
        let mut changes = plan.changes;
        changes.extend(checked.unchecked);
        return book.finish(ctx, status, None, Some(changes));
    }
    book.counts.unchanged += plan.unchanged as u64;
    let (to_apply, mut held): (Vec<_>, Vec<_>) = plan
        .changes
        .into_iter()
        .partition(|c| !hold || c.action != Action::Deactivate);
    held.extend(checked.unchecked);
    if !held.is_empty() {
        book.counts.held = held.len() as u64;
        tracing::warn!(run_id = %book.run_id, held = held.len(), reasons = ?reasons,
            "deactivations held; approve with `retrac-sync sync approve {}`", book.run_id);
        ctx.store.put_held(&HeldSet {
            run_id: book.run_id.clone(),
            held_at: Utc::now(),
            reasons,
            changes: held
                .into_iter()
                .filter_map(|c| {
                    c.member.map(|member| HeldDeactivation {
                        member,
                        user_name: c.user_name,
                    })
                })
                .collect(),
        })?;
    }
    match apply(ctx, &mut book, to_apply).await {
        Ok(()) => {
            supersede_held(ctx, &book.run_id)?;
            book.finish(ctx, status, None, None)
        }
        Err(e) => book.finish(ctx, RunStatus::Failed, Some(e), None),
    }
}

/// A complete run planned against the latest state, so the deactivations earlier runs held
/// are stale: it held its own (if any), or had none to hold. Only the latest set is kept, so
/// `sync status` and the held-changes gauge show what is pending now.
fn supersede_held(ctx: &SyncContext, run_id: &str) -> Result<(), StoreError> {
    for h in ctx.store.held_all()? {
        if h.run_id != run_id {
            ctx.store.remove_held(&h.run_id)?;
            tracing::info!(superseded = %h.run_id, by = run_id, count = h.changes.len(),
                "held deactivations superseded by a newer run");
        }
    }
    Ok(())
}

fn dry(dry_run: bool) -> Option<Vec<PlannedChange>> {
    dry_run.then(Vec::new)
}

/// `sync approve RUN_ID`: re-plans against Google and the store as they are now, and applies
/// the deactivations that run held which the new plan still wants. The guard is not applied
/// again: an owner approved them.
pub async fn approve(ctx: &SyncContext, run_id: &str) -> Result<SyncOutcome, SyncError> {
    let held = ctx
        .store
        .held(run_id)?
        .ok_or_else(|| SyncError::UnknownRun(run_id.to_string()))?;
    let _flight = ctx.flight.try_lock().map_err(|_| SyncError::Busy)?;
    let _running = ctx.running();
    let mut book = RunBook::new(ctx, "approve", false)?;
    let client = match ctx.client().await {
        Ok(c) => c,
        Err(e) => return book.finish(ctx, RunStatus::Failed, Some(directory::diagnose(&e)), None),
    };
    let before = client.requests();
    let members = load_members(ctx.store.clone(), ctx.rules.domains.clone()).await?;
    let wanted: HashSet<_> = held.changes.iter().map(|c| c.member).collect();
    // Google is read again, and each approved deactivation of a user missing from the
    // listing is still checked with users.get (all of them: an owner asked for these).
    let read = before_deadline(ctx, async {
        let snap = fetch(&client, ctx, None)
            .await
            .map_err(|e| directory::diagnose(&e))?;
        let Planned {
            mut plan, groups, ..
        } = plan_snapshot(ctx, snap, &members);
        plan.changes.retain(|c| {
            c.action == Action::Deactivate && c.member.is_some_and(|m| wanted.contains(&m))
        });
        verify_absent(&client, ctx, &groups, &mut plan, None, &mut book)
            .await
            .map_err(|e| e.to_string())?;
        Ok(plan)
    })
    .await;
    book.google_requests = client.requests() - before;
    let plan = match read {
        Ok(p) => p,
        Err(e) => {
            let msg = format!("{e}; nothing was written, the held changes are kept");
            return book.finish(ctx, RunStatus::Failed, Some(msg), None);
        }
    };
    drop(members);
    let to_apply: Vec<PlannedChange> = plan.changes;
    // Held deactivations the new plan no longer wants (the user came back) are dropped.
    book.counts.skipped += (wanted.len() - to_apply.len()) as u64;
    let result = apply(ctx, &mut book, to_apply).await;
    if result.is_ok() {
        ctx.store.remove_held(run_id)?;
    }
    match result {
        Ok(()) => book.finish(ctx, RunStatus::Ok, None, None),
        Err(e) => book.finish(ctx, RunStatus::Failed, Some(e), None),
    }
}

/// `sync discard RUN_ID`: drops the deactivations a run held. Returns how many.
pub fn discard(ctx: &SyncContext, run_id: &str) -> Result<usize, SyncError> {
    let held = ctx
        .store
        .remove_held(run_id)?
        .ok_or_else(|| SyncError::UnknownRun(run_id.to_string()))?;
    tracing::info!(
        run_id,
        discarded = held.changes.len(),
        "held deactivations discarded"
    );
    if let Ok(all) = ctx.store.held_all() {
        let n: usize = all.iter().map(|h| h.changes.len()).sum();
        metrics::gauge!("retrac_sync_held_changes").set(n as f64);
    }
    Ok(held.changes.len())
}

/// `sync user EMAIL`: reconciles one user now (provision on demand). The guard does not
/// apply: the owner asked for this one user.
pub async fn sync_user(
    ctx: &SyncContext,
    email: &str,
    dry_run: bool,
) -> Result<SyncOutcome, SyncError> {
    let user_name = UserName::parse(email).map_err(|e| SyncError::Invalid(e.to_string()))?;
    let _flight = ctx.flight.try_lock().map_err(|_| SyncError::Busy)?;
    let _running = ctx.running();
    let mut book = RunBook::new(ctx, "user", dry_run)?;
    let client = match ctx.client().await {
        Ok(c) => c,
        Err(e) => {
            return book.finish(
                ctx,
                RunStatus::Failed,
                Some(directory::diagnose(&e)),
                dry(dry_run),
            )
        }
    };
    let before = client.requests();
    let fetched = before_deadline(ctx, async {
        fetch_one(&client, ctx, &user_name)
            .await
            .map_err(|e| directory::diagnose(&e))
    })
    .await;
    book.google_requests = client.requests() - before;
    let snap = match fetched {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("{e}; nothing was written");
            return book.finish(ctx, RunStatus::Failed, Some(msg), dry(dry_run));
        }
    };
    // Only the members this user could be: by email, and by the Google id if Google has it.
    let mut members: HashMap<_, Member> = HashMap::new();
    if let Some(m) = ctx.store.get_by_user_name(user_name.as_str())? {
        members.insert(m.id, m);
    }
    for u in &snap.users {
        if let Some(m) = ctx.store.get_by_google_id(&u.id)? {
            members.insert(m.id, m);
        }
    }
    let members: Vec<Member> = members.into_values().collect();
    let selection = ctx.rules.select(&snap.users, &snap.groups);
    let mut desired = Vec::new();
    let mut unusable = HashSet::new();
    for u in &selection.users {
        match Desired::from_google(u, &ctx.rules.domains) {
            Ok(d) => desired.push(d),
            Err(e) => {
                unusable.insert(u.id.clone());
                book.problem(e)
            }
        }
    }
    let mut plan = plan::plan(
        &desired,
        &members,
        &PlanContext {
            domains: &ctx.rules.domains,
            all_google_ids: None,
            unusable_ids: Some(&unusable),
        },
    );
    for p in &plan.problems {
        book.problem(p.clone());
    }
    // Never deactivate on the search alone: ask users.get for the member's Google id.
    let checked = before_deadline(ctx, async {
        verify_absent(&client, ctx, &snap.groups, &mut plan, None, &mut book)
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    book.google_requests = client.requests() - before;
    if let Err(e) = checked {
        let msg = format!("{e}; nothing was written");
        return book.finish(ctx, RunStatus::Failed, Some(msg), dry(dry_run));
    }
    if dry_run {
        count_plan(&mut book, &plan, false);
        return book.finish(ctx, RunStatus::Ok, None, Some(plan.changes));
    }
    book.counts.unchanged += plan.unchanged as u64;
    match apply(ctx, &mut book, plan.changes).await {
        Ok(()) => book.finish(ctx, RunStatus::Ok, None, None),
        Err(e) => book.finish(ctx, RunStatus::Failed, Some(e), None),
    }
}

/// Reads one user (by its exact address, users.get) and whatever decides whether it is in
/// scope. The groups are read even when Google does not know the address: a member with
/// that name is then checked by its Google id, and judged with them.
async fn fetch_one(
    client: &DirectoryClient,
    ctx: &SyncContext,
    user_name: &UserName,
) -> Result<Snapshot, DirectoryError> {
    let groups = fetch_groups(client, ctx, None, &mut Progress::default()).await?;
    let none = |groups| Snapshot {
        users: Vec::new(),
        groups,
    };
    let Some(user) = client.get_user(user_name.as_str()).await? else {
        return Ok(none(groups));
    };
    if let Some(q) = &ctx.rules.query {
        if !matches_query(client, ctx, q, &user).await? {
            return Ok(none(groups));
        }
    }
    Ok(Snapshot {
        users: vec![user],
        groups,
    })
}

/// A fetch-only pass (the benchmark's baseline): reads and decodes every page a run reads
/// (group pages, then users pages) and returns the number of users, with no scoping,
/// planning or writing.
pub async fn fetch_only(ctx: &SyncContext) -> Result<usize, DirectoryError> {
    let client = ctx.client().await?;
    fetch_groups(&client, ctx, None, &mut Progress::default()).await?;
    let mut users = 0;
    users_pages(&client, ctx, |page| users += page.users.len()).await?;
    Ok(users)
}
