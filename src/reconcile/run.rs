//! One run of the pull: fetch -> scope -> plan -> verify -> guard -> apply -> record.
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

use super::guard::{self, Limits};
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
    /// The run's kind in its record.
    fn kind(&self) -> &'static str {
        match self {
            Target::All => "sync",
            Target::User(_) => "user",
            Target::Approve(_) => "approve",
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

/// The desired state read from Google, already scoped: pages are reduced to what the plan
/// needs as they arrive, so a large directory is never held twice.
struct Fetched {
    desired: Vec<Desired>,
    unusable_ids: HashSet<String>,
    /// Ids of the users listed that are not desired (out of scope, unusable): with the
    /// desired users' own, every id listed.
    other_ids: HashSet<String>,
    /// Whether the listing was every user of the customer: only then does an id missing
    /// from it mean that Google does not have that user. A `[scope].query` narrows the
    /// listing, and a one-user run reads one address.
    complete: bool,
    problems: Vec<String>,
    /// The scope groups' members, to judge a user read again by users.get.
    groups: GroupMembership,
    /// With `[google].domains` empty: the domains of the primary addresses and aliases of
    /// every user listed, the only ones a `work` address is kept in.
    listing_domains: HashSet<String>,
}

impl Fetched {
    fn new(groups: (GroupMembership, Vec<String>), complete: bool, capacity: usize) -> Fetched {
        Fetched {
            desired: Vec::with_capacity(capacity),
            unusable_ids: HashSet::new(),
            other_ids: HashSet::new(),
            complete,
            problems: groups.1,
            groups: groups.0,
            listing_domains: HashSet::new(),
        }
    }

    /// Takes one user Google listed: desired when in scope and usable; otherwise only its
    /// id is kept.
    fn add(&mut self, u: GoogleUser, rules: &ScopeRules) {
        if rules.domains.is_empty() {
            let aliases = u.aliases.iter().flat_map(|a| a.0.iter());
            for a in
                std::iter::once(u.primary_email.as_str()).chain(aliases.map(|e| e.address.as_str()))
            {
                if let Some((_, d)) = a.trim().rsplit_once('@') {
                    if !self.listing_domains.contains(d) {
                        self.listing_domains.insert(d.to_lowercase());
                    }
                }
            }
        }
        if !rules.in_scope(&u, &self.groups) {
            self.other_ids.insert(u.id);
            return;
        }
        match Desired::from_google_owned(u, &rules.domains) {
            Ok(d) => self.desired.push(d),
            Err((id, e)) => {
                self.other_ids.insert(id.clone());
                self.unusable_ids.insert(id);
                self.problems.push(e)
            }
        }
    }

    /// With `[google].domains` empty, keeps a desired user's `work` addresses only in the
    /// domains of the listing (`listing_domains`, with `known`): Google does not verify a
    /// `work` address, so `ada@partner.net` can be typed there. The primary addresses and
    /// aliases are in those domains by construction, so only typed addresses go.
    fn keep_listed_domains(&mut self, known: &HashSet<String>) {
        let domains = &self.listing_domains;
        for d in &mut self.desired {
            let mut first = true;
            d.attrs.emails.retain(|e| {
                let keep = first
                    || e.value.rsplit_once('@').is_some_and(|(_, dom)| {
                        let dom = dom.to_lowercase();
                        domains.contains(&dom) || known.contains(&dom)
                    });
                first = false;
                keep
            });
        }
    }
}

/// Reads the members of the scope groups and of every group nested in them, from direct
/// listings: Google's derived listing (`includeDerivedMembership`) has returned too few
/// members (GAM-team/GAM#1210, GAMADV-XTD3#82; awslabs/ssosync expands nested groups itself
/// since its PRs #95 and #188). Each group is read once, cycles are ignored, and past
/// `[scope].max_nested_groups` nested groups the read fails (before any write). A scope
/// group Google does not know fails the read; a nested group that cannot be read (outside
/// the customer) is reported, and its members are judged by members.hasMember before any of
/// them is deactivated.
pub async fn read_groups<D: Directory>(
    client: &D,
    rules: &ScopeRules,
    progress: Option<&ProgressFn>,
    p: &mut Progress,
) -> Result<(GroupMembership, Vec<String>), DirectoryError> {
    let mut groups = GroupMembership::default();
    let mut problems = Vec::new();
    let mut seen: HashSet<String> = rules.groups.iter().map(|g| g.to_lowercase()).collect();
    let mut queue: std::collections::VecDeque<(String, Option<String>)> =
        rules.groups.iter().map(|g| (g.clone(), None)).collect();
    while let Some((g, parent)) = queue.pop_front() {
        let mut token: Option<String> = None;
        loop {
            // A scope group Google does not know is an error, not an empty group: an empty
            // group would deactivate its members.
            let page = match client.list_members_page(&g, token.as_deref()).await {
                Ok(page) => page,
                Err(e @ DirectoryError::GroupNotFound { .. }) => match &parent {
                    None => return Err(e),
                    Some(parent) => {
                        problems.push(format!(
                            "the group {g}, nested in {parent}, cannot be read ({}); its members are not in scope through it, and none of them is deactivated without members.hasMember",
                            directory::diagnose(&e)
                        ));
                        break;
                    }
                },
                Err(e) => return Err(e),
            };
            for nested in groups.add(&page.members) {
                if !seen.insert(nested.to_lowercase()) {
                    continue;
                }
                if groups.nested_groups >= rules.max_nested_groups {
                    return Err(DirectoryError::TooManyNestedGroups {
                        limit: rules.max_nested_groups,
                        last: nested,
                    });
                }
                groups.nested_groups += 1;
                queue.push_back((nested, Some(g.clone())));
            }
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
    Ok((groups, problems))
}

async fn fetch_groups<D: Directory>(
    client: &D,
    ctx: &SyncContext,
    progress: Option<&ProgressFn>,
    p: &mut Progress,
) -> Result<(GroupMembership, Vec<String>), DirectoryError> {
    read_groups(client, &ctx.rules, progress, p).await
}

/// Reads the scope groups, then every users page, scoping each page as it arrives.
async fn fetch<D: Directory + 'static>(
    client: &Arc<D>,
    ctx: &SyncContext,
    progress: Option<&ProgressFn>,
) -> Result<Fetched, DirectoryError> {
    let mut p = Progress::default();
    // Groups first: with them known, each users page is scoped as soon as it arrives.
    let groups = fetch_groups(client.as_ref(), ctx, progress, &mut p).await?;
    // About one desired user per member on most runs: grown once, not by doubling.
    let mut out = Fetched::new(groups, ctx.rules.query.is_none(), ctx.store.member_count());
    users_pages(client, ctx, |page| {
        p.pages += 1;
        p.users += page.users.len();
        for u in page.users {
            out.add(u, &ctx.rules);
        }
        if let Some(f) = progress {
            f(p);
        }
    })
    .await?;
    if ctx.rules.domains.is_empty() {
        out.keep_listed_domains(&HashSet::new());
        // Kept for the one-user runs, whose listing is one user.
        *ctx.listing_domains
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = out.listing_domains.clone();
    }
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
async fn users_pages<D: Directory + 'static>(
    client: &Arc<D>,
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

/// Reads a directory's request count ([`Directory::requests`]).
type RequestCount = Arc<dyn Fn() -> u64 + Send + Sync>;

/// A run being put together.
struct RunBook {
    /// `None` for a dry run, which is not recorded.
    run_id: Option<RunId>,
    kind: &'static str,
    /// The run's time, read once by the caller: the record's start, and the time of every
    /// write the run makes.
    started: DateTime<Utc>,
    /// For the run's duration (a monotonic clock, not a record time).
    t0: Instant,
    counts: RunCounts,
    problems: Vec<String>,
    held_reasons: Vec<String>,
    /// The directory's request count, and its value when this run took the directory.
    google: Option<(RequestCount, u64)>,
    /// Time spent reading Google, then planning, in ms (logged: where a slow run spends it).
    fetch_ms: u64,
    plan_ms: u64,
}

impl RunBook {
    fn new(
        ctx: &SyncContext,
        kind: &'static str,
        dry_run: bool,
        now: DateTime<Utc>,
    ) -> Result<RunBook, SyncError> {
        let run_id = if dry_run {
            None
        } else {
            Some(ctx.store.new_run_id(now)?)
        };
        Ok(RunBook {
            run_id,
            kind,
            started: now,
            t0: Instant::now(),
            counts: RunCounts::default(),
            problems: Vec::new(),
            held_reasons: Vec::new(),
            google: None,
            fetch_ms: 0,
            plan_ms: 0,
        })
    }

    /// Counts the Directory API requests `client` makes from now on as this run's.
    fn uses<D: Directory + 'static>(&mut self, client: &Arc<D>) {
        let client = client.clone();
        let before = client.requests();
        self.google = Some((Arc::new(move || client.requests()), before));
    }

    /// Directory API requests made so far (retries included).
    fn google_requests(&self) -> u64 {
        self.google
            .as_ref()
            .map_or(0, |(requests, before)| requests() - before)
    }

    fn millis(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }

    fn problem(&mut self, p: String) {
        self.counts.errors += 1;
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(p);
        }
    }

    /// Ends the run as failed, with why.
    fn fail(self, ctx: &SyncContext, error: String) -> Result<SyncOutcome, SyncError> {
        self.finish(ctx, RunStatus::Failed, Some(error), Vec::new())
    }

    /// Records the run (unless dry), emits metrics and a log line, and builds the outcome;
    /// a dry run's outcome carries `changes`, the plan.
    fn finish(
        self,
        ctx: &SyncContext,
        status: RunStatus,
        error: Option<String>,
        changes: Vec<PlannedChange>,
    ) -> Result<SyncOutcome, SyncError> {
        let elapsed = self.t0.elapsed();
        // The end is the run's time plus the time it took: the clock is not read again.
        let finished = self.started + TimeDelta::from_std(elapsed).unwrap_or(TimeDelta::zero());
        let google_requests = self.google_requests();
        let dry = self.run_id.is_none();
        if let Some(run_id) = &self.run_id {
            ctx.store.put_sync_run(&SyncRun {
                run_id: run_id.clone(),
                kind: self.kind.to_string(),
                started: self.started,
                finished,
                status,
                counts: self.counts.clone(),
                google_requests,
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
        let run_id = self.run_id.as_ref().map_or("", RunId::as_str);
        match &error {
            Some(e) => {
                tracing::error!(%run_id, kind = self.kind, %status, error = %e,
                google_requests, "sync run failed")
            }
            None => tracing::info!(%run_id, kind = self.kind, %status, dry_run = dry,
                created = c.created, updated = c.updated, deactivated = c.deactivated,
                linked = c.linked, unchanged = c.unchanged, held = c.held, skipped = c.skipped,
                errors = c.errors, google_requests,
                fetch_ms = self.fetch_ms, plan_ms = self.plan_ms,
                duration_ms = elapsed.as_millis() as u64, "sync run finished"),
        }
        Ok(SyncOutcome {
            report: SyncReport {
                run_id: self.run_id,
                status,
                counts: self.counts,
                google_requests,
                duration_ms: elapsed.as_millis() as u64,
            },
            error,
            problems: self.problems,
            held_reasons: self.held_reasons,
            changes: dry.then_some(changes),
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
/// shutdown asks; returns the error that stopped it. Every write carries the run's time.
async fn apply(
    ctx: &SyncContext,
    book: &mut RunBook,
    run_id: &RunId,
    changes: Vec<PlannedChange>,
) -> Result<(), String> {
    #[cfg(feature = "test-support")]
    if let Some(hook) = &ctx.before_apply {
        hook(&ctx.store);
    }
    let actor = Actor::Pull(run_id.to_string());
    let now = book.started;
    let mut batches = 0usize;
    // Each change is moved once, into its batch. (Splitting the rest off the front of a
    // `Vec` moved every change left at each batch: at 1,000,000 creates, a thousand copies
    // of half a million changes, most of a cold sync's time.)
    let mut rest = changes.into_iter().peekable();
    while rest.peek().is_some() {
        if ctx.stop.load(Ordering::SeqCst) {
            return Err(format!(
                "stopped by shutdown after {batches} batches; the next run takes up the rest"
            ));
        }
        // The changes go to the store; what the tally needs of each stays here.
        let (labels, just): (Vec<(Action, String)>, Vec<Change>) = rest
            .by_ref()
            .take(ctx.batch_size)
            .map(|p| ((p.action, p.user_name), p.change))
            .unzip();
        let store = ctx.store.clone();
        let actor = actor.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let results = provision::apply_batch(&store, &just, &actor, now)?;
            Ok::<_, crate::store::StoreError>(
                results
                    .into_iter()
                    .map(|r| r.map(|o| Applied::of(&o)))
                    .collect::<Vec<_>>(),
            )
        })
        .await;
        let results = joined
            .map_err(|e| format!("apply task failed: {e}"))?
            .map_err(|e| format!("the store failed: {e}"))?;
        batches += 1;
        for ((action, user_name), result) in labels.iter().zip(results) {
            tally(book, *action, user_name, result);
        }
    }
    ctx.store.flush().await.map_err(|e| e.to_string())?;
    Ok(())
}

/// What the tally needs of an [`Outcome`], taken on the thread that applied the batch: the
/// members an outcome holds are freed there, on the thread that made them.
#[derive(Clone, Copy)]
enum Applied {
    Unchanged,
    Created,
    Changed { identity_changed: bool },
}

impl Applied {
    fn of(o: &Outcome) -> Applied {
        match o {
            Outcome::Unchanged(_) => Applied::Unchanged,
            Outcome::Created(_) => Applied::Created,
            Outcome::Updated { .. } => Applied::Changed {
                identity_changed: o.identity_changed(),
            },
        }
    }
}

fn tally(
    book: &mut RunBook,
    action: Action,
    user_name: &str,
    result: Result<Applied, ProvisionError>,
) {
    let c = &mut book.counts;
    match result {
        Ok(Applied::Unchanged) => c.unchanged += 1,
        Ok(outcome) => {
            let counted = match (action, outcome) {
                (Action::Create, Applied::Created) => {
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
            if let Applied::Changed {
                identity_changed: true,
            } = outcome
            {
                c.identity_changed += 1;
            }
            // What the pull writes is drift the push did not deliver.
            metrics::counter!("retrac_sync_drift_corrected_total", "kind" => counted).increment(1);
        }
        // Changed by SCIM since the plan (or SCIM-deleted): the next run takes it up.
        Err(ProvisionError::VersionMismatch { .. }) | Err(ProvisionError::NotFound(_)) => {
            c.skipped += 1
        }
        Err(e) => book.problem(format!("{user_name} ({}): {e}", action.as_str())),
    }
}

/// What checking the listing's deactivations against users.get left.
#[derive(Default)]
struct Verification {
    /// Deactivations past the cap, not checked: held as for the guard.
    unchecked: Vec<PlannedChange>,
}

/// Absence from one listing is not proof that a user is gone: Google's search index can lag
/// (<https://developers.google.com/workspace/admin/directory/v1/guides/search-users>), a
/// listing can miss a user that moves while it is paged, and a group listing can miss
/// members (GAM-team/GAM#1210). Each deactivation of a member with a Google id that the
/// listing did not return is checked with users.get on that id:
/// - 404, or 412 `conditionNotMet` (deleted, still restorable for 20 days): the user is
///   gone, the deactivation stands;
/// - 403 (a key outside the customer, or a deleted user): gone if the customer's deleted
///   users (`showDeleted=true`, read once a run, only when needed) list the id; otherwise it
///   cannot be checked;
/// - found: judged from that answer (suspended, archived, out of scope by org unit, exclude,
///   domain or guest; out of scope only by group: members.hasMember for each scope group,
///   which covers nested membership; `[scope].query`: its clauses users.get's answer decides
///   are judged here, Google's search for that one address decides the rest); found and in
///   scope: no change, counted `verified_present`;
/// - cannot be checked (an error after its retries, hasMember's 400 for a membership nested
///   across domains, a 400 from the narrowed search): that deactivation only is dropped and
///   reported; the next run takes it up.
///
/// At most `cap` users are checked (`None` = all); the rest come back unchecked.
async fn verify_absent<D: Directory>(
    client: &D,
    ctx: &SyncContext,
    groups: &GroupMembership,
    plan: &mut Plan,
    cap: Option<usize>,
    book: &mut RunBook,
) -> Result<Verification, StoreError> {
    let mut out = Verification::default();
    let mut checked = 0usize;
    let mut deleted: Option<HashSet<String>> = None;
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
        match still_present(client, ctx, groups, &google_id, &mut deleted).await {
            Ok(Presence::Gone) => kept.push(change),
            Ok(Presence::Present) => {
                book.counts.verified_present += 1;
                plan.active_after += 1;
                tracing::info!(user = %change.user_name, google_id = %google_id,
                    "missing from the listing but Google finds it in scope: left active");
            }
            Ok(Presence::CannotCheck(why)) => book.problem(format!(
                "{}: cannot check with Google that the user is gone ({why}); not deactivated, the next run takes it up",
                change.user_name,
            )),
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

/// What Google says of a user missing from the listing.
enum Presence {
    /// Active and in scope: left as it is.
    Present,
    /// Deleted, suspended, archived or out of scope: the deactivation stands.
    Gone,
    /// Google cannot tell (why): the deactivation is skipped and reported.
    CannotCheck(String),
}

/// Whether the Google user `google_id` exists, is active and is in scope, from users.get
/// (and, when needed, the deleted users, members.hasMember and the narrowed search).
/// `deleted` holds the customer's deleted users once a 403 made the run read them.
async fn still_present<D: Directory>(
    client: &D,
    ctx: &SyncContext,
    groups: &GroupMembership,
    google_id: &str,
    deleted: &mut Option<HashSet<String>>,
) -> Result<Presence, DirectoryError> {
    let user = match client.get_user(google_id).await {
        Ok(Some(user)) => user,
        Ok(None) => return Ok(Presence::Gone),
        Err(e @ DirectoryError::NotInCustomer { .. }) => {
            // Google answers 403 for a key outside the customer; GAM treats it as "does not
            // exist". Only a user listed among the deleted ones is known to be gone.
            if deleted.is_none() {
                let ids = client.deleted_user_ids(&ctx.config.google.customer).await?;
                *deleted = Some(ids);
            }
            if deleted.as_ref().is_some_and(|d| d.contains(google_id)) {
                return Ok(Presence::Gone);
            }
            return Ok(Presence::CannotCheck(directory::diagnose(&e)));
        }
        Err(e) => return Err(e),
    };
    if !user.is_active() {
        return Ok(Presence::Gone);
    }
    if !ctx.rules.in_scope(&user, groups) {
        // Out of scope only because no group listing named it: ask Google about each scope
        // group (hasMember covers nested membership).
        if !(ctx.rules.uses_groups() && ctx.rules.in_scope_if_member(&user)) {
            return Ok(Presence::Gone);
        }
        let mut unknown = None;
        let mut member = false;
        for g in &ctx.rules.groups {
            match client.has_member(g, &user.id).await? {
                Some(true) => {
                    member = true;
                    break;
                }
                Some(false) => {}
                None => unknown = Some(g),
            }
        }
        if !member {
            return Ok(match unknown {
                None => Presence::Gone,
                Some(g) => Presence::CannotCheck(format!(
                    "members.hasMember cannot tell whether {} is in {g}: Google answers 400 Invalid input for a membership nested across domains",
                    user.primary_email
                )),
            });
        }
    }
    match &ctx.query {
        None => Ok(Presence::Present),
        Some(q) => match matches_query(client, ctx, q, &user).await {
            Err(e @ DirectoryError::SearchRefused { .. }) => {
                Ok(Presence::CannotCheck(directory::diagnose(&e)))
            }
            other => other,
        },
    }
}

/// Whether `[scope].query` matches one user: the clauses users.get's answer decides are
/// judged from it; for the rest, Google's search is asked with them narrowed to the user's
/// exact address (escaped). A 400 from that search means it cannot be checked
/// ([`DirectoryError::SearchRefused`]).
async fn matches_query<D: Directory>(
    client: &D,
    ctx: &SyncContext,
    query: &Query,
    user: &GoogleUser,
) -> Result<Presence, DirectoryError> {
    if !query.local_match(user) {
        return Ok(Presence::Gone);
    }
    let Some(narrowed) = query.narrowed(&user.primary_email) else {
        return Ok(Presence::Present);
    };
    let target = UserListTarget::Customer(ctx.config.google.customer.clone());
    match client.list_users_page(&target, Some(&narrowed), None).await {
        Ok(page) if page.users.iter().any(|u| u.id == user.id) => Ok(Presence::Present),
        Ok(_) => Ok(Presence::Gone),
        Err(e @ DirectoryError::Api { status: 400, .. }) => Err(DirectoryError::SearchRefused {
            detail: directory::diagnose(&e),
        }),
        Err(e) => Err(e),
    }
}

/// The most users.get checks of absent users in one run: `[sync].max_deactivations` + 10.
fn verification_cap(ctx: &SyncContext) -> usize {
    ctx.limits.max_deactivations as usize + 10
}

/// Runs `f` (reading Google) until the run's deadline.
async fn before_deadline<T>(
    ctx: &SyncContext,
    deadline: Instant,
    f: impl std::future::Future<Output = Result<T, DirectoryError>>,
) -> Result<T, String> {
    match tokio::time::timeout_at(deadline.into(), f).await {
        Ok(r) => r.map_err(|e| directory::diagnose(&e)),
        Err(_) => Err(format!(
            "the run read Google for longer than [sync].run_timeout = {} s",
            ctx.run_timeout.as_secs_f64()
        )),
    }
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
/// lock, run record, client, fetch, plan, verify, guard, apply, finish. `now` is the run's
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

/// The steps after [`start`]: fetch, plan, verify, guard, apply, finish, reading `client`.
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
    let now = book.started;
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

    // Plan. The members are released as soon as the plan holds what it needs of them.
    let Planned {
        mut plan,
        problems,
        groups,
    } = plan_fetched(ctx, fetched, &members);
    drop(members);
    book.counts.nested_groups = groups.nested_groups as u64;
    book.plan_ms = book.millis() - book.fetch_ms;
    if let Some(wanted) = &approved {
        // An approval applies only the deactivations its run held that the new plan still
        // wants; the rest of the plan is the next run's.
        plan.changes.retain(|c| {
            c.action == Action::Deactivate && c.member.is_some_and(|m| wanted.contains(&m))
        });
        plan.unchanged = 0;
    } else {
        for p in problems {
            book.problem(p);
        }
    }

    // Verify: never deactivate on the listing alone. A full run checks at most
    // `verification_cap` users; one user, or an approval (an owner asked), checks them all.
    let cap = matches!(target, Target::All).then(|| verification_cap(ctx));
    let checked = before_deadline(ctx, deadline, async {
        Ok(verify_absent(client.as_ref(), ctx, &groups, &mut plan, cap, &mut book).await)
    })
    .await;
    let checked = match checked {
        Ok(r) => r?,
        Err(e) => return book.fail(ctx, format!("{e}; {untouched}")),
    };
    if let Some(wanted) = &approved {
        // Held deactivations the new plan no longer wants (the user came back) are dropped.
        book.counts.skipped += wanted.len().saturating_sub(plan.changes.len()) as u64;
    }

    // Guard: only a full run is held back by its limits.
    let mut reasons = match target {
        Target::All => guard::check(&plan, &ctx.limits),
        Target::User(_) | Target::Approve(_) => Vec::new(),
    };
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

    // A dry run ends here, with the plan.
    let Some(run_id) = book.run_id.clone() else {
        count_plan(&mut book, &plan, hold);
        book.counts.held += checked.unchecked.len() as u64;
        let mut changes = plan.changes;
        changes.extend(checked.unchecked);
        return book.finish(ctx, status, None, changes);
    };

    // Apply, after storing the deactivations held back.
    book.counts.unchanged += plan.unchanged as u64;
    let (to_apply, mut held): (Vec<_>, Vec<_>) = plan
        .changes
        .into_iter()
        .partition(|c| !hold || c.action != Action::Deactivate);
    held.extend(checked.unchecked);
    if !held.is_empty() {
        book.counts.held = held.len() as u64;
        tracing::warn!(%run_id, held = held.len(), reasons = ?reasons,
            "deactivations held; approve with `retrac-sync sync approve {run_id}`");
        // Stored before anything is applied; a store that refuses it (full disk) fails the
        // run, recorded like any other failure.
        let stored = ctx.store.put_held(&HeldSet {
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
        });
        if let Err(e) = stored {
            return book.fail(ctx, e.to_string());
        }
    }
    if let Err(e) = apply(ctx, &mut book, &run_id, to_apply).await {
        return book.fail(ctx, e);
    }
    match &target {
        // Planned against the latest state: the sets earlier runs held are stale.
        Target::All => supersede_held(ctx, &run_id)?,
        Target::Approve(approved) => {
            ctx.store.remove_held(approved)?;
        }
        Target::User(_) => {}
    }
    book.finish(ctx, status, None, Vec::new())
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

#[cfg(test)]
mod tests;
