//! `retrac-sync demo`: the real daemon against an in-process fake Google directory, so a
//! newcomer sees a whole cycle (pull, SCIM, drift, metrics) without a Google account.
//!
//! Everything real runs: the SCIM listener, the admin socket, the schedule, the Directory
//! client with its JWT bearer grant (checked by the fake), the store. Only Google is fake.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use fake_google::{FakeGoogle, FakeSeed, FakeUser};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::daemon::{self, LaunchOptions, Listeners};
use crate::store::{Store, SyncRun};
use crate::tokens::{self as scim_auth, TokenRequest, TokenResponse};

/// The demo's options.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// How many sample users the fake directory starts with.
    pub users: usize,
    /// Where SCIM listens; if taken, a free port is used instead.
    pub listen: SocketAddr,
    /// Pull schedule (every minute by default).
    pub schedule: String,
    /// How often the fake directory changes a few users.
    pub mutate_every: Duration,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            users: 200,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            schedule: "0 * * * * *".into(),
            mutate_every: Duration::from_secs(60),
        }
    }
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A setup step failed.
    #[error("demo: {0}")]
    Setup(String),
    /// The daemon failed.
    #[error(transparent)]
    Daemon(#[from] daemon::DaemonError),
}

fn setup<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> DemoError {
    move |e| DemoError::Setup(format!("{what}: {e}"))
}

/// Runs the demo, printing to `out`, until Ctrl-C.
pub async fn run(opts: DemoOptions, out: &mut (dyn Write + Send)) -> Result<(), DemoError> {
    run_until(opts, out, daemon::shutdown_signal()).await
}

/// Runs the demo, printing to `out`, until `stop` resolves (the tests stop it once they have
/// seen what they check).
pub async fn run_until(
    opts: DemoOptions,
    out: &mut (dyn Write + Send),
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), DemoError> {
    if opts.users == 0 {
        return Err(DemoError::Setup("--users must be at least 1".into()));
    }
    let dir = tempfile::Builder::new()
        .prefix("retrac-sync-demo-")
        .tempdir()
        .map_err(setup("cannot make a temporary directory"))?;
    let (fake, key) = start_fake(out, opts.users, dir.path()).await?;

    let (scim, scim_addr, metrics, metrics_addr) = bind_scim_and_metrics(opts.listen).await?;
    let (console, console_addr, secret_file) = bind_console(dir.path(), &fake).await?;
    let socket = dir.path().join("admin.sock");
    let config_path = dir.path().join("config.toml");
    let config_text = demo_config(
        &DemoSetup {
            dir: dir.path(),
            socket: &socket,
            key: &key,
            client_secret: &secret_file,
            scim: scim_addr,
            metrics: metrics_addr,
            console: console_addr,
        },
        &fake,
        &opts.schedule,
    );
    std::fs::write(&config_path, &config_text).map_err(setup("cannot write the config"))?;
    let config = Config::load_with_env(Some(&config_path), Vec::new())
        .map_err(setup("the demo config is invalid"))?;
    let store = Store::open(&config.store.path).map_err(setup("cannot open the store"))?;

    let scim_url = format!("http://{scim_addr}{}", config.scim.base_path);
    let token = demo_token(&store, &scim_url)?;

    let console_url = config.console.url();
    let listeners = Listeners {
        scim,
        metrics,
        admin: crate::admin::server::bind(&socket).map_err(setup("admin socket"))?,
        admin_path: socket.clone(),
        console: Some(console),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let daemon_task = tokio::spawn(daemon::launch(
        config,
        store.clone(),
        listeners,
        LaunchOptions {
            first_sync_delay: Duration::from_millis(500),
            ..Default::default()
        },
        async move {
            let _ = stop_rx.await;
        },
    ));

    let first = first_pull(&store).await;
    let bin = std::env::args()
        .next()
        .unwrap_or_else(|| "retrac-sync".into());
    let cfg = config_path.display();
    let _ = writeln!(out);
    report_first_pull(out, &store, first.as_ref());
    let _ = writeln!(out);
    print_members(&store, out);
    let sign_in = console_owner(&store, &fake, &console_url);
    let _ = write!(
        out,
        "
SCIM endpoint   {scim_url}
SCIM token      {token}
                (shown once; a real install makes one with `retrac-sync token create --label google`)
Console         http://{console_addr}
                {sign_in}
Health          http://{metrics_addr}/healthz
Metrics         http://{metrics_addr}/metrics
Config          {cfg}

Try, in another terminal:
  curl -s -H 'Authorization: Bearer {token}' '{scim_url}/Users?filter=userName%20sw%20%22ada%22&count=2'
  curl -s -X POST -H 'Authorization: Bearer {token}' -H 'Content-Type: application/scim+json' \\
       -d '{{\"schemas\":[\"urn:ietf:params:scim:schemas:core:2.0:User\"],\"userName\":\"new.hire@example.com\",\"name\":{{\"givenName\":\"New\",\"familyName\":\"Hire\"}},\"active\":true}}' \\
       '{scim_url}/Users'
  {bin} --config {cfg} members list --active
  {bin} --config {cfg} members locations set ada.lovelace0@example.com Paris
  {bin} --config {cfg} sync --json
  {bin} --config {cfg} sync status
  {bin} --config {cfg} audit --limit 10

Every {} s the fake directory changes a few users (a suspension, a rename, a new hire);
the pull ({}) corrects the drift. Ctrl-C stops.
",
        opts.mutate_every.as_secs(),
        opts.schedule
    );
    let _ = out.flush();

    follow(out, &fake, &store, opts.mutate_every, first, stop).await;
    let _ = writeln!(out, "\nStopping...");
    let _ = stop_tx.send(());
    daemon_task
        .await
        .map_err(|e| DemoError::Setup(format!("the daemon task failed: {e}")))??;
    let _ = writeln!(
        out,
        "Stopped cleanly; the demo's temporary store is removed."
    );
    drop(dir);
    Ok(())
}

/// Starts the fake Google directory with `users` sample users, and writes its service
/// account key into `dir`.
async fn start_fake(
    out: &mut (dyn Write + Send),
    users: usize,
    dir: &Path,
) -> Result<(Arc<FakeGoogle>, std::path::PathBuf), DemoError> {
    let fake_listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(setup("cannot start the fake Google directory"))?;
    let _ = writeln!(
        out,
        "Starting a fake Google Workspace directory with {} users...",
        users
    );
    let fake = Arc::new(
        FakeGoogle::start(fake_listener, FakeSeed::sample(users, "example.com"))
            .await
            .map_err(setup("cannot start the fake Google directory"))?,
    );
    let key = dir.join("google-key.json");
    fake.write_key_file(&key)
        .map_err(setup("cannot write the service account key"))?;
    Ok((fake, key))
}

/// The SCIM listener (on `listen`, or another port of its address when that one is taken)
/// and the metrics listener, with their addresses.
async fn bind_scim_and_metrics(
    listen: SocketAddr,
) -> Result<(TcpListener, SocketAddr, TcpListener, SocketAddr), DemoError> {
    let scim = match TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(_) => TcpListener::bind(SocketAddr::new(listen.ip(), 0))
            .await
            .map_err(setup("cannot bind the SCIM listener"))?,
    };
    let scim_addr = scim.local_addr().map_err(setup("SCIM listener"))?;
    let metrics = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(setup("cannot bind the metrics listener"))?;
    let metrics_addr = metrics.local_addr().map_err(setup("metrics listener"))?;
    Ok((scim, scim_addr, metrics, metrics_addr))
}

/// The console's listener (port 9465 when free) and the file with its Google client
/// secret, which the fake Google issued.
async fn bind_console(
    dir: &Path,
    fake: &FakeGoogle,
) -> Result<(TcpListener, SocketAddr, std::path::PathBuf), DemoError> {
    let console = match TcpListener::bind("127.0.0.1:9465").await {
        Ok(l) => l,
        Err(_) => TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(setup("cannot bind the console listener"))?,
    };
    let console_addr = console.local_addr().map_err(setup("console listener"))?;
    let secret_file = dir.join("console-client-secret");
    std::fs::write(&secret_file, fake.oidc_client_secret())
        .map_err(setup("cannot write the console's client secret"))?;
    Ok((console, console_addr, secret_file))
}

/// The demo's SCIM token (shown once).
fn demo_token(store: &Store, scim_url: &str) -> Result<String, DemoError> {
    let answer = scim_auth::execute(
        store,
        TokenRequest::Create {
            label: "demo".into(),
            scope: crate::store::TokenScope::Scim,
        },
        Some(scim_url),
        Utc::now(),
    )
    .map_err(setup("cannot create a SCIM token"))?;
    match answer {
        TokenResponse::Created { secret, .. } => Ok(secret.0),
        _ => Err(DemoError::Setup("unexpected answer to token create".into())),
    }
}

/// Waits up to a minute for the daemon's first pull, and gives its record.
async fn first_pull(store: &Store) -> Option<SyncRun> {
    let mut first = None;
    for _ in 0..600 {
        if let Ok(runs) = store.sync_runs(1) {
            if let Some(r) = runs.into_iter().next() {
                first = Some(r);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    first
}

/// Says what the first pull did (or that it has not finished).
fn report_first_pull(out: &mut (dyn Write + Send), store: &Store, first: Option<&SyncRun>) {
    match first {
        Some(r) => {
            let (_, inactive) = store.member_counts();
            let _ = writeln!(
                out,
                "First pull {} ({}): {} members created ({inactive} inactive: suspended or archived in Google), {} Google requests, {} ms.",
                r.run_id,
                r.status,
                r.counts.created,
                r.google_requests,
                (r.finished - r.started).num_milliseconds()
            );
        }
        None => {
            let _ = writeln!(
                out,
                "The first pull has not finished yet; see `sync status` below."
            );
        }
    }
}

/// Changes a few Google users every `mutate_every` and prints each pull that follows, until
/// `stop` resolves.
async fn follow(
    out: &mut (dyn Write + Send),
    fake: &FakeGoogle,
    store: &Store,
    mutate_every: Duration,
    first: Option<SyncRun>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(mutate_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tick.tick().await; // the first tick is immediate
    let mut round = 0usize;
    let mut last_run = first.map(|r| r.run_id);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {
                round += 1;
                for line in mutate(fake, round) {
                    let _ = writeln!(out, "[google] {line}");
                }
                let _ = out.flush();
            }
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                if let Ok(runs) = store.sync_runs(1) {
                    if let Some(r) = runs.into_iter().next() {
                        if Some(&r.run_id) != last_run.as_ref() {
                            let c = &r.counts;
                            let _ = writeln!(
                                out,
                                "[pull]   {} {}: drift corrected: {} created, {} updated, {} deactivated; {} unchanged, {} held",
                                r.run_id, r.status, c.created, c.updated, c.deactivated, c.unchanged, c.held
                            );
                            let _ = out.flush();
                            last_run = Some(r.run_id);
                        }
                    }
                }
            }
        }
    }
}

/// The demo's listeners and files, for its config.
struct DemoSetup<'a> {
    dir: &'a Path,
    socket: &'a Path,
    key: &'a Path,
    client_secret: &'a Path,
    scim: SocketAddr,
    metrics: SocketAddr,
    console: SocketAddr,
}

fn demo_config(setup: &DemoSetup<'_>, fake: &FakeGoogle, schedule: &str) -> String {
    let DemoSetup {
        dir,
        socket,
        key,
        client_secret,
        scim,
        metrics,
        console,
    } = *setup;
    let q = |p: &Path| format!("{:?}", p.display().to_string());
    format!(
        "# Written by `retrac-sync demo`; it points at the demo's fake Google directory.\n\
         [store]\npath = {store}\n\
         [scim]\nlisten = \"{scim}\"\npublic_url = \"http://{scim}\"\n\
         [admin]\nsocket = {socket}\n\
         [google]\nkey_file = {key}\nsubject = {subject:?}\napi_base_url = {api:?}\ndomains = [\"example.com\"]\n\
         [sync]\nschedule = {schedule:?}\n\
         [metrics]\nlisten = \"{metrics}\"\n\
         [console]\nlisten = \"{console}\"\n\
         [console.oidc]\nissuer = {issuer:?}\nclient_id = {client_id:?}\nclient_secret_file = {secret}\n",
        store = q(&dir.join("store")),
        socket = q(socket),
        key = q(key),
        subject = fake.admin(),
        api = fake.base_url(),
        issuer = fake.base_url(),
        client_id = fake.oidc_client_id(),
        secret = q(client_secret),
    )
}

/// Makes the first sample user an owner, lets the fake Google sign them in, and makes a
/// one-time link for them: what the demo prints under the console's address.
fn console_owner(store: &Store, fake: &FakeGoogle, url: &str) -> String {
    let Some(first) = fake
        .users()
        .into_iter()
        .find(|u| !u.suspended && !u.archived)
    else {
        return "(no active user to sign in as)".into();
    };
    let made = crate::owner::execute(
        store,
        crate::owner::Request::MembersRole {
            who: first.primary_email.clone(),
            role: crate::member::Role::Owner,
        },
        Utc::now(),
    );
    if let Err(e) = made {
        return format!("(cannot make {} an owner: {e})", first.primary_email);
    }
    fake.oidc_sign_in(Some(&first.primary_email));
    match crate::access::create_link(
        store,
        &crate::access::LoginRequest {
            email: first.primary_email.clone(),
        },
        Some(url),
        Utc::now(),
    ) {
        Ok(link) => format!(
            "sign in as the owner {} with \"Sign in with Google\" (the fake Google signs them in),\n                or once with this link (10 minutes): {}",
            first.primary_email, link.url
        ),
        Err(e) => format!("(no sign-in link: {e})"),
    }
}

/// A few changes in the fake directory: a suspension, a rename, a new hire.
fn mutate(fake: &FakeGoogle, round: usize) -> Vec<String> {
    let users: Vec<FakeUser> = fake.users();
    let mut done = Vec::new();
    let active: Vec<&FakeUser> = users
        .iter()
        .filter(|u| !u.suspended && !u.archived)
        .collect();
    if let Some(u) = active.get((round * 7) % active.len().max(1)) {
        if fake.suspend(&u.primary_email) {
            done.push(format!("suspended {}", u.primary_email));
        }
    }
    if let Some(u) = active.get((round * 13 + 1) % active.len().max(1)) {
        let new = format!("renamed{round}.{}", u.primary_email);
        if fake.rename(&u.primary_email, &new) {
            done.push(format!("renamed {} to {new}", u.primary_email));
        }
    }
    let hire = format!("hire{round}@example.com");
    fake.add_user(FakeUser::new("", &hire, "New", &format!("Hire{round}")));
    done.push(format!("added {hire}"));
    done
}

fn print_members(store: &Store, out: &mut (dyn Write + Send)) {
    let members = match store.snapshot() {
        Ok(members) => members,
        Err(e) => {
            let _ = writeln!(out, "the members could not be read: {e}");
            return;
        }
    };
    let active = members.iter().filter(|m| m.dir.active).count();
    let _ = writeln!(
        out,
        "{:<34} {:<22} {:<6} GOOGLE ID",
        "USER NAME", "NAME", "ACTIVE"
    );
    for m in members.iter().take(15) {
        let name = format!(
            "{} {}",
            m.dir.given_name.as_deref().unwrap_or(""),
            m.dir.family_name.as_deref().unwrap_or("")
        );
        let _ = writeln!(
            out,
            "{:<34} {:<22} {:<6} {}",
            truncate(m.dir.user_name.as_str(), 34),
            truncate(name.trim(), 22),
            if m.dir.active { "yes" } else { "no" },
            m.dir.google_id.as_deref().unwrap_or("-")
        );
    }
    if members.len() > 15 {
        let _ = writeln!(out, "... and {} more", members.len() - 15);
    }
    let _ = writeln!(out, "{} members, {active} active", members.len());
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}
