//! One run of the pull: fetch -> scope -> plan -> verify -> decide -> apply -> record.
//!
//! [`run`] is the one pipeline. Its [`Target`] says what it reconciles: every user in scope
//! (`sync`), one user (`sync user`), or the deactivations an earlier run held (`sync
//! approve`); the steps are the same, and only what is read and what is kept differ.
//!
//! A fetch that fails in any way (a page still failing after its retries, a truncated
//! page, a token failure, a scope group Google does not know) fails the run before any
//! write, so a partial listing can never look like deleted users. Runs never overlap: the
//! single-flight lock is shared by the schedule, the CLI and the admin socket. The clock is
//! read once, by the caller: the run's id, its record, the held set and every member it
//! writes carry that time (`now`).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::decide::{self, TargetKind};
use super::guard::Limits;
use super::plan::{self, Action, Desired, Plan, PlanContext, PlannedChange};
use super::scope::{GroupMembership, Query, ScopeRules};
use crate::config::Config;
use crate::directory::model::{GoogleUser, UsersPage};
use crate::directory::{self, Backoff, Directory, DirectoryClient, DirectoryError, UserListTarget};
use crate::member::{Actor, Change, MemberId, MemberLike, UserName};
use crate::provision::{self, Outcome, ProvisionError};
use crate::store::{
    HeldDeactivation, HeldSet, MemberEntry, RunCounts, RunId, RunStatus, Store, StoreError, SyncRun,
};

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
    #[error("no held changes for run {:?} (see `retrac-sync sync status`)", .0.as_str())]
    UnknownRun(RunId),
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

/// What a run reconciles.
#[derive(Clone, Debug)]
pub enum Target {
    /// Every user in scope (`sync`). The mass-deactivation guard applies: past its limits
    /// the deactivations are held for an owner's approval.
    All,
    /// One user, by its address (`sync user EMAIL`): Google is asked for that address
    /// only, and the guard does not apply (the owner asked for this one user).
    User(UserName),
    /// The deactivations the run with this id held (`sync approve RUN_ID`), re-planned
    /// against Google and the store as they are now; the guard does not apply again (an
    /// owner approved them).
    Approve(RunId),
}

impl Target {
    /// The kind of target.
    fn kind(&self) -> TargetKind {
        match self {
            Target::All => TargetKind::All,
            Target::User(_) => TargetKind::User,
            Target::Approve(_) => TargetKind::Approve,
        }
    }

    /// What a run that fails before writing says it left.
    fn untouched(&self) -> &'static str {
        match self {
            Target::Approve(_) => "nothing was written, the held changes are kept",
            Target::All | Target::User(_) => "nothing was written",
        }
    }
}

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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReport {
    /// The run id; `None` for a dry run, which is not recorded. It is written `""` then,
    /// as the JSON output has always shown it.
    #[serde(with = "run_id_or_empty")]
    pub run_id: Option<RunId>,
    /// `ok`, `failed` or `held`.
    pub status: RunStatus,
    /// The counts, inline: `created`, `updated`, `deactivated`, `linked`, `unchanged`,
    /// `held`, `skipped`, `errors`.
    #[serde(flatten)]
    pub counts: RunCounts,
    /// Directory API requests made (retries included).
    pub google_requests: u64,
    /// Wall time.
    pub duration_ms: u64,
}

/// A report's run id on the wire: the id, or `""` for a dry run.
mod run_id_or_empty {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::store::RunId;

    pub fn serialize<S: Serializer>(id: &Option<RunId>, s: S) -> Result<S::Ok, S::Error> {
        id.as_ref().map_or("", RunId::as_str).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RunId>, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() {
            return Ok(None);
        }
        RunId::parse(&s).map(Some).map_err(serde::de::Error::custom)
    }
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
        self.report.status == RunStatus::Failed
    }
}

/// What a run needs: the store, the config, the Directory client (made on first use), and
/// the single-flight lock.
pub struct SyncContext {
    store: Store,
    config: Arc<Config>,
    rules: ScopeRules,
    /// `[scope].query`, split into what users.get's answer decides and what Google's
    /// search must.
    query: Option<Query>,
    /// With `[google].domains` empty: the domains the last full listing used.
    listing_domains: Mutex<HashSet<String>>,
    limits: Limits,
    client: tokio::sync::OnceCell<Arc<DirectoryClient>>,
    backoff: Backoff,
    credentials_dir: Option<PathBuf>,
    /// Where keyless credentials read `AWS_*` (tests give a fixed set).
    environment: directory::keyless::Environment,
    flight: tokio::sync::Mutex<()>,
    stop: AtomicBool,
    batch_size: usize,
    #[cfg(feature = "test-support")]
    before_apply: Option<BeforeApply>,
    request_timeout: Duration,
    run_timeout: Duration,
    /// When the run in progress started (`None` between runs), for `/healthz`.
    running_since: Mutex<Option<Instant>>,
}

/// A hook run between plan and apply (tests use it to change a member under a run). Only
/// in builds with the `test-support` feature, which the integration tests turn on.
#[cfg(feature = "test-support")]
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
        let rules = ScopeRules::from_config(&config.scope, &config.google);
        SyncContext {
            query: rules.query.as_deref().map(Query::parse),
            listing_domains: Mutex::new(HashSet::new()),
            rules,
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
            #[cfg(feature = "test-support")]
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
    /// play a SCIM write landing between plan and apply. Only with the `test-support`
    /// feature: a release build has no such hook.
    #[cfg(feature = "test-support")]
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

/// What the fetch and plan produced.
struct Planned {
    plan: Plan,
    problems: Vec<String>,
    groups: GroupMembership,
}

/// Plans the fetched users against the members. The users that need no change are freed
/// when the plan returns (see [`plan::plan`]).
fn plan_fetched(ctx: &SyncContext, fetched: Fetched, members: &Members) -> Planned {
    let plan = plan::plan(
        fetched.desired,
        &members.list,
        &PlanContext {
            domains: &ctx.rules.domains,
            all_google_ids: fetched.complete.then_some(&fetched.other_ids),
            unusable_ids: Some(&fetched.unusable_ids),
            index: Some(&members.index),
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

/// The members a run plans against, as the store's in-memory mirror keeps them (shared:
/// nothing is decoded or copied), and the plan's index over them.
struct Members {
    list: Vec<Arc<MemberEntry>>,
    index: plan::MemberIndex,
}

impl Members {
    fn new(list: Vec<Arc<MemberEntry>>, domains: &[String]) -> Members {
        let index = plan::MemberIndex::new(&list, domains);
        Members { list, index }
    }
}

/// Takes and indexes every member on a blocking thread; a run does this while Google is
/// read, since the two are independent until the plan.
async fn load_members(store: Store, domains: Vec<String>) -> Result<Members, StoreError> {
    tokio::task::spawn_blocking(move || Ok(Members::new(store.entries(), &domains)))
        .await
        .map_err(|e| StoreError::Internal(format!("the member load task failed: {e}")))?
}

/// Only the members one user could be: by its address, and by the Google id of the user
/// Google returned for it, if any.
fn members_of_user(ctx: &SyncContext, user_name: &UserName, fetched: &Fetched) -> Members {
    let mut found = HashMap::new();
    if let Some(e) = ctx.store.entry_by_user_name(user_name.as_str()) {
        found.insert(e.id(), e);
    }
    let ids = fetched.desired.iter().map(|d| &d.google_id);
    for id in ids.chain(&fetched.other_ids) {
        if let Some(e) = ctx.store.entry_by_google_id(id) {
            found.insert(e.id(), e);
        }
    }
    Members::new(found.into_values().collect(), &ctx.rules.domains)
}

/// Why a run could not read what it plans with.
enum ReadFailure {
    /// Google failed or the deadline passed: the run fails, having written nothing.
    Google(String),
    /// The store failed.
    Store(StoreError),
}

/// Reads what the target needs: Google's users (all of them, scoped as they arrive, or the
/// one address) and the members the plan compares them with. Every member is read while
/// Google is read, since the two are independent until the plan; a one-user run reads only
/// the members that user could be, once Google has answered.
async fn read<D: Directory + 'static>(
    ctx: &SyncContext,
    client: &Arc<D>,
    target: &Target,
    opts: &SyncOptions,
    deadline: Instant,
) -> Result<(Fetched, Members), ReadFailure> {
    match target {
        Target::User(user_name) => {
            let fetched =
                before_deadline(ctx, deadline, fetch_one(client.as_ref(), ctx, user_name))
                    .await
                    .map_err(ReadFailure::Google)?;
            let members = members_of_user(ctx, user_name, &fetched);
            Ok((fetched, members))
        }
        Target::All | Target::Approve(_) => tokio::try_join!(
            async {
                let listing = fetch(client, ctx, opts.progress.as_ref());
                before_deadline(ctx, deadline, listing)
                    .await
                    .map_err(ReadFailure::Google)
            },
            async {
                let domains = ctx.rules.domains.clone();
                load_members(ctx.store.clone(), domains)
                    .await
                    .map_err(ReadFailure::Store)
            },
        ),
    }
}

/// Performs one run of the pull and records it (a dry run plans and records nothing):
/// lock, run record, client, fetch, plan, verify, decide, apply, finish. `now` is the run's
/// time, read once by the caller.
///
/// Fails with [`SyncError::Busy`] when a run is already in progress, and with
/// [`SyncError::UnknownRun`] when an approval names no held set. A run that fails (Google,
/// the deadline, a write) is reported with status `failed`; one that fails before writing
/// says that nothing was written.
pub async fn run(
    ctx: &SyncContext,
    target: Target,
    opts: SyncOptions,
    now: DateTime<Utc>,
) -> Result<SyncOutcome, SyncError> {
    let started = start(ctx, &target, opts.dry_run, now)?;
    let client = match ctx.client().await {
        Ok(c) => c,
        Err(e) => return started.book.fail(ctx, directory::diagnose(&e)),
    };
    pipeline(ctx, &client, started, target, opts).await
}

/// As [`run`], reading `directory` instead of the Google that `[google]` names: the same
/// pipeline, lock and record. The pull's unit tests run it against `directory::memory`.
pub async fn run_with<D: Directory + 'static>(
    ctx: &SyncContext,
    directory: &Arc<D>,
    target: Target,
    opts: SyncOptions,
    now: DateTime<Utc>,
) -> Result<SyncOutcome, SyncError> {
    let started = start(ctx, &target, opts.dry_run, now)?;
    pipeline(ctx, directory, started, target, opts).await
}

/// A run that has its lock and its record: what [`start`] gives the pipeline.
struct Started<'a> {
    /// The deactivations an approval may apply: those its run held.
    approved: Option<HashSet<MemberId>>,
    _flight: tokio::sync::MutexGuard<'a, ()>,
    _running: RunningGuard<'a>,
    book: RunBook,
}

/// Starts a run: the held set an approval names, the single-flight lock, the record.
fn start<'a>(
    ctx: &'a SyncContext,
    target: &Target,
    dry_run: bool,
    now: DateTime<Utc>,
) -> Result<Started<'a>, SyncError> {
    let approved = match target {
        Target::Approve(id) => {
            let held = ctx
                .store
                .held(id)?
                .ok_or_else(|| SyncError::UnknownRun(id.clone()))?;
            Some(held.changes.iter().map(|c| c.member).collect())
        }
        Target::All | Target::User(_) => None,
    };
    let _flight = ctx.flight.try_lock().map_err(|_| SyncError::Busy)?;
    let _running = ctx.running();
    let book = RunBook::new(ctx, target.kind(), dry_run, now)?;
    Ok(Started {
        approved,
        _flight,
        _running,
        book,
    })
}

/// The steps after [`start`]: fetch, plan, verify, decide, apply, finish, reading `client`.
async fn pipeline<D: Directory + 'static>(
    ctx: &SyncContext,
    client: &Arc<D>,
    started: Started<'_>,
    target: Target,
    opts: SyncOptions,
) -> Result<SyncOutcome, SyncError> {
    let Started {
        approved,
        _flight,
        _running,
        mut book,
    } = started;
    book.uses(client);
    // One deadline covers every read of Google: the listing, then the checks of absent users.
    let deadline = Instant::now() + ctx.run_timeout;
    let untouched = target.untouched();

    // Fetch: Google, and the members the plan compares it with.
    let (fetched, members) = match read(ctx, client, &target, &opts, deadline).await {
        Ok(read) => read,
        Err(ReadFailure::Google(e)) => return book.fail(ctx, format!("{e}; {untouched}")),
        Err(ReadFailure::Store(e)) => return Err(e.into()),
    };
    book.fetch_ms = book.millis();

    let (mut plan, groups) = plan_step(ctx, &mut book, fetched, members, approved.as_ref());

    // Verify: never deactivate on the listing alone.
    let cap = decide::verification_cap(target.kind(), &ctx.limits);
    let checked = before_deadline(ctx, deadline, async {
        Ok(verify_absent(client.as_ref(), ctx, &groups, &mut plan, cap, &mut book).await)
    })
    .await;
    let checked = match checked {
        Ok(r) => r?,
        Err(e) => return book.fail(ctx, format!("{e}; {untouched}")),
    };

    let decision = decide::decide(decide::Input {
        kind: target.kind(),
        dry_run: book.mode == Mode::DryRun,
        limits: ctx.limits,
        plan,
        unchecked: checked.unchecked,
        approved: approved.map_or(0, |a| a.len()),
    });
    book.counts.add(&decision.counts);
    book.held_reasons = decision.reasons.clone();
    carry_out(ctx, book, decision, &target).await
}

/// Plans the fetched users against the members, frees the members, and keeps what the
/// target wants of the plan (an approval: only its held deactivations).
fn plan_step(
    ctx: &SyncContext,
    book: &mut RunBook,
    fetched: Fetched,
    members: Members,
    approved: Option<&HashSet<MemberId>>,
) -> (Plan, GroupMembership) {
    // The members are released as soon as the plan holds what it needs of them.
    let Planned {
        mut plan,
        problems,
        groups,
    } = plan_fetched(ctx, fetched, &members);
    drop(members);
    book.counts.nested_groups = groups.nested_groups as u64;
    book.plan_ms = book.millis() - book.fetch_ms;
    match approved {
        Some(wanted) => decide::keep_approved(&mut plan, wanted),
        None => {
            for p in problems {
                book.problem(p);
            }
        }
    }
    (plan, groups)
}

/// Does what [`decide::decide`] decided: a dry run ends with its plan; a run that writes
/// stores its held set, applies the rest, then supersedes or removes the held sets.
async fn carry_out(
    ctx: &SyncContext,
    mut book: RunBook,
    decision: decide::Decision,
    target: &Target,
) -> Result<SyncOutcome, SyncError> {
    let decide::Decision {
        status,
        reasons,
        apply: to_apply,
        hold,
        report,
        counts: _,
        then,
    } = decision;
    let Mode::Record(run_id) = book.mode.clone() else {
        return book.finish(ctx, status, None, report.unwrap_or_default());
    };
    if !hold.is_empty() {
        tracing::warn!(%run_id, held = hold.len(), reasons = ?reasons,
            "deactivations held; approve with `retrac-sync sync approve {run_id}`");
        // Stored before anything is applied; a store that refuses it (full disk) fails the
        // run, recorded like any other failure.
        if let Err(e) = ctx
            .store
            .put_held(&held_set(&run_id, book.started, reasons, hold))
        {
            return book.fail(ctx, e.to_string());
        }
    }
    if let Err(e) = apply(ctx, &mut book, &run_id, to_apply).await {
        return book.fail(ctx, e);
    }
    match (then, target) {
        (decide::Afterwards::SupersedeOlder, _) => supersede_held(ctx, &run_id)?,
        (decide::Afterwards::RemoveApproved, Target::Approve(approved)) => {
            ctx.store.remove_held(approved)?;
        }
        _ => {}
    }
    book.finish(ctx, status, None, Vec::new())
}

/// The held set a run stores: its deactivations held back, stamped with the run's time.
fn held_set(
    run_id: &RunId,
    now: DateTime<Utc>,
    reasons: Vec<String>,
    held: Vec<PlannedChange>,
) -> HeldSet {
    HeldSet {
        run_id: run_id.clone(),
        held_at: now,
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
    }
}

/// A complete run planned against the latest state, so the deactivations earlier runs held
/// are stale: it held its own (if any), or had none to hold. Only the latest set is kept, so
/// `sync status` and the held-changes gauge show what is pending now.
fn supersede_held(ctx: &SyncContext, run_id: &RunId) -> Result<(), StoreError> {
    for h in ctx.store.held_all()? {
        if h.run_id != *run_id {
            ctx.store.remove_held(&h.run_id)?;
            tracing::info!(superseded = %h.run_id, by = %run_id, count = h.changes.len(),
                "held deactivations superseded by a newer run");
        }
    }
    Ok(())
}

/// `sync discard RUN_ID`: drops the deactivations a run held. Returns how many.
pub fn discard(ctx: &SyncContext, run_id: &RunId) -> Result<usize, SyncError> {
    let held = ctx
        .store
        .remove_held(run_id)?
        .ok_or_else(|| SyncError::UnknownRun(run_id.clone()))?;
    tracing::info!(
        %run_id,
        discarded = held.changes.len(),
        "held deactivations discarded"
    );
    if let Ok(all) = ctx.store.held_all() {
        let n: usize = all.iter().map(|h| h.changes.len()).sum();
        metrics::gauge!("retrac_sync_held_changes").set(n as f64);
    }
    Ok(held.changes.len())
}

/// Reads one user (by its exact address, users.get) and whatever decides whether it is in
/// scope. The groups are read even when Google does not know the address: a member with
/// that name is then checked by its Google id, and judged with them.
async fn fetch_one<D: Directory>(
    client: &D,
    ctx: &SyncContext,
    user_name: &UserName,
) -> Result<Fetched, DirectoryError> {
    let groups = fetch_groups(client, ctx, None, &mut Progress::default()).await?;
    let mut out = Fetched::new(groups, false, 1);
    let Some(user) = client.get_user(user_name.as_str()).await? else {
        return Ok(out);
    };
    if let Some(q) = &ctx.query {
        // A search that cannot check the user fails the run, naming why.
        if let Presence::Gone | Presence::CannotCheck(_) =
            matches_query(client, ctx, q, &user).await?
        {
            return Ok(out);
        }
    }
    out.add(user, &ctx.rules);
    if ctx.rules.domains.is_empty() {
        let known = ctx
            .listing_domains
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        out.keep_listed_domains(&known);
    }
    Ok(out)
}

/// A fetch-only pass (the benchmark's baseline): reads and decodes every page a run reads
/// (group pages, then users pages) and returns the number of users, with no scoping,
/// planning or writing.
pub async fn fetch_only(ctx: &SyncContext) -> Result<usize, DirectoryError> {
    let client = ctx.client().await?;
    fetch_groups(client.as_ref(), ctx, None, &mut Progress::default()).await?;
    let mut users = 0;
    users_pages(&client, ctx, |page| users += page.users.len()).await?;
    Ok(users)
}

mod apply;
mod book;
mod fetch;
mod verify;
use apply::*;
use book::*;
pub use fetch::read_groups;
use fetch::*;
use verify::*;

#[cfg(test)]
mod tests;
