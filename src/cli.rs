//! The command line: clap definitions, and rendering of the answers as tables, JSON or CSV.
//!
//! Exit codes: 0 ok, 1 failure, 2 usage or config error.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};

use std::time::Duration;

use crate::admin::{self, client::ClientError, AdminRequest, AdminResponse};
use crate::config::{self, Config};
use crate::member::{MemberView, Role};
use crate::owner::{self, ActiveFilter, LocationEdit, Request, Response};
use crate::reconcile::{self, Request as SyncRequest, Response as SyncResponse};
use crate::scim::auth::{self as scim_auth, TokenRequest, TokenResponse};
use crate::store::{AuditEntry, Store};

/// Keeps a Retrac workspace's members in step with a Google Workspace directory.
#[derive(Debug, Parser)]
#[command(name = "retrac-sync", version = crate::version::LONG_VERSION, propagate_version = true)]
pub struct Cli {
    /// Config file [default: $RETRAC_SYNC_CONFIG, else /etc/retrac-sync/config.toml if it exists]
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: SCIM endpoint, scheduled pull, admin socket, health and metrics.
    Run,
    /// Run the real daemon against a fake Google directory: no account needed.
    Demo {
        /// How many sample users the fake directory starts with.
        #[arg(long, default_value_t = 200)]
        users: usize,
        /// Where the SCIM endpoint listens (a free port is used if it is taken).
        #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
        listen: std::net::SocketAddr,
    },
    /// Validate or print the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// List, show, invite and manage members (locations, role, restore).
    #[command(subcommand)]
    Members(MembersCommand),
    /// Show the audit log of member changes.
    Audit(AuditArgs),
    /// Pull from the Google directory now; show runs; approve or discard held deactivations.
    Sync(SyncArgs),
    /// Make, list and revoke the SCIM bearer tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The SCIM connection as a whole.
    #[command(subcommand)]
    Scim(ScimCommand),
    /// Check the setup end to end (config, store, daemon, TLS, Google, schedule, clock) and say what to fix.
    ///
    /// One line a check, ✓ fine, ! look at it, ✗ broken, with the fix: the config; the store
    /// (schema, consistency, size, free space); the admin socket; the TLS files (the
    /// certificate matches the key, expiry within 30 days); [scim].public_url; Google (a
    /// token, one users.list page per domain, one members.list page per scope group, with
    /// the pull's own messages); the next three scheduled pulls; the clock against Google's.
    /// Exits 1 when a check is ✗.
    Doctor {
        /// Print the checklist as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the man pages (retrac-sync.1, one per subcommand, retrac-sync.toml.5) into DIR.
    Man {
        /// The directory to write them to (created if missing).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
}

/// `token ...`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token for a SCIM client; it is printed once, with the SCIM URL.
    Create {
        /// Who it is for, e.g. google-workspace; recorded as the actor of its changes.
        #[arg(long)]
        label: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List tokens: id, label, created, last used, revoked (never the secret).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke one token; requests that use it get 401 at once.
    Revoke {
        /// The token id (from `token list`).
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `scim ...`
#[derive(Debug, Subcommand)]
pub enum ScimCommand {
    /// Revoke every token, so the SCIM endpoint accepts nothing until a new token is made.
    Disconnect {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `sync [--dry-run] [--json]` and its subcommands.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SyncArgs {
    /// What to do; without one, run a sync now.
    #[command(subcommand)]
    pub command: Option<SyncCommand>,
    /// Print each planned change and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the run's report as JSON (no progress).
    #[arg(long)]
    pub json: bool,
}

/// `sync ...`
#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Reconcile one user now (provision on demand).
    User {
        /// The user's email.
        email: String,
        /// Print the planned change and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the recent runs and any held deactivations.
    Status {
        /// How many runs.
        #[arg(long, default_value_t = 10)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Apply the deactivations a run held, after re-planning against the current state.
    Approve {
        /// The run id shown by `sync status`.
        run_id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Drop the deactivations a run held.
    Discard {
        /// The run id shown by `sync status`.
        run_id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the config and print the effective values.
    Check {
        /// Print the effective values as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the documented example config (every key, with comments).
    Example,
}

/// Output format of `members list`.
#[derive(Debug, Clone, Copy, ValueEnum, Default)]
pub enum ListFormat {
    /// An 80-column table.
    #[default]
    Table,
    /// A JSON array of members.
    Json,
    /// CSV with a header line.
    Csv,
}

/// `members ...`
#[derive(Debug, Subcommand)]
pub enum MembersCommand {
    /// List members, ordered by user name.
    List {
        /// Only active members.
        #[arg(long, conflicts_with = "inactive")]
        active: bool,
        /// Only inactive (deactivated) members.
        #[arg(long)]
        inactive: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: ListFormat,
    },
    /// Show one member.
    Show {
        /// Email address (any case) or member id.
        member: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Invite a member by hand (managed by the owner; the pull never touches it).
    Add {
        /// Email address.
        email: String,
        /// First name.
        #[arg(long)]
        given: String,
        /// Last name.
        #[arg(long)]
        family: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Assign locations (owner-only; provisioning never changes them).
    #[command(subcommand)]
    Locations(LocationsCommand),
    /// Assign a role (owner-only).
    #[command(subcommand)]
    Role(RoleCommand),
    /// Bring back a deactivated or SCIM-deleted member, with its locations.
    Restore {
        /// Email address or member id.
        member: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `members locations ...`
#[derive(Debug, Subcommand)]
pub enum LocationsCommand {
    /// Replace the member's locations.
    Set(LocationsArgs),
    /// Add locations.
    Add(LocationsArgs),
    /// Remove locations.
    Remove(LocationsArgs),
}

/// Arguments of `members locations set|add|remove`.
#[derive(Debug, Args)]
pub struct LocationsArgs {
    /// Email address or member id.
    pub member: String,
    /// Location names.
    #[arg(required = true, num_args = 1..)]
    pub locations: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `members role ...`
#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Set the member's role.
    Set {
        /// Email address or member id.
        member: String,
        /// owner or member.
        #[arg(value_parser = parse_role)]
        role: Role,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `audit`
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only this member (email address or id).
    #[arg(long, value_name = "EMAIL")]
    pub member: Option<String>,
    /// Only entries at or after this time (RFC 3339, e.g. 2026-11-01T00:00:00Z).
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    pub since: Option<DateTime<Utc>>,
    /// At most this many entries, the most recent.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{s:?} is not an RFC 3339 time such as 2026-11-01T00:00:00Z ({e})"))
}

/// A failure, with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    /// 1 = failure, 2 = usage or config.
    pub code: u8,
    /// The message printed to stderr.
    pub message: String,
}

impl Failure {
    fn config(e: impl std::fmt::Display) -> Self {
        Failure {
            code: 2,
            message: e.to_string(),
        }
    }
    fn failed(e: impl std::fmt::Display) -> Self {
        Failure {
            code: 1,
            message: e.to_string(),
        }
    }
}

/// Parses the arguments and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli, &mut std::io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("retrac-sync: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// Runs a parsed command, writing its answer to `out`.
pub fn run(cli: Cli, out: &mut dyn Write) -> Result<(), Failure> {
    let config_path = config::resolve_path(
        cli.config.as_deref(),
        std::env::var(config::PATH_ENV).ok().as_deref(),
    );
    let load = || Config::load(config_path.as_deref()).map_err(Failure::config);
    let io = |e: std::io::Error| Failure::failed(format!("cannot write output: {e}"));
    match cli.command {
        Command::Run => {
            let config = load()?;
            crate::telemetry::init_logging(&config.log);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| Failure::failed(format!("cannot start the async runtime: {e}")))?;
            runtime
                .block_on(crate::daemon::run(config))
                .map_err(Failure::failed)?;
        }
        Command::Demo { users, listen } => {
            crate::telemetry::init_logging(&crate::config::LogConfig {
                level: "warn".into(),
                ..Default::default()
            });
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| Failure::failed(format!("cannot start the async runtime: {e}")))?;
            let opts = crate::demo::DemoOptions {
                users,
                listen,
                ..Default::default()
            };
            let mut stdout = std::io::stdout();
            runtime
                .block_on(crate::demo::run(opts, &mut stdout))
                .map_err(Failure::failed)?;
        }
        Command::Config(ConfigCommand::Example) => {
            out.write_all(config::EXAMPLE.as_bytes()).map_err(io)?;
        }
        Command::Config(ConfigCommand::Check { json }) => {
            let config = load()?;
            if json {
                let text = serde_json::to_string_pretty(&config).map_err(Failure::failed)?;
                writeln!(out, "{text}").map_err(io)?;
            } else {
                let from = config_path
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "built-in defaults (no config file)".into());
                writeln!(
                    out,
                    "# config OK: {from}, with RETRAC_SYNC_* overrides applied"
                )
                .map_err(io)?;
                out.write_all(config.to_toml().as_bytes()).map_err(io)?;
            }
        }
        Command::Members(cmd) => {
            let config = load()?;
            let (request, render) = members_request(cmd);
            let response = execute_owner(&config, request)?;
            render.write(&response, out).map_err(io)?;
        }
        Command::Audit(args) => {
            let config = load()?;
            let request = Request::Audit {
                member: args.member,
                since: args.since,
                limit: args.limit,
            };
            let response = execute_owner(&config, request)?;
            let render = if args.json {
                Render::Json
            } else {
                Render::AuditText
            };
            render.write(&response, out).map_err(io)?;
        }
        Command::Token(cmd) => {
            let config = load()?;
            let (request, json) = match cmd {
                TokenCommand::Create { label, json } => (TokenRequest::Create { label }, json),
                TokenCommand::List { json } => (TokenRequest::List, json),
                TokenCommand::Revoke { id, json } => (TokenRequest::Revoke { id }, json),
            };
            let response = execute_tokens(&config, request)?;
            write_tokens(out, &response, json).map_err(io)?;
        }
        Command::Scim(ScimCommand::Disconnect { json }) => {
            let config = load()?;
            let response = execute_tokens(&config, TokenRequest::Disconnect)?;
            write_tokens(out, &response, json).map_err(io)?;
        }
        Command::Sync(args) => {
            let config = load()?;
            let (request, json) = sync_request(args);
            return run_sync_command(config, request, json, out);
        }
        Command::Doctor { json } => {
            return crate::doctor::cli(config_path.as_deref(), json, out)
                .map_err(|(code, message)| Failure { code, message })
        }
        Command::Completions { shell } => crate::manpage::completions(shell, out),
        Command::Man { dir } => {
            for path in crate::manpage::write_man_pages(&dir).map_err(Failure::failed)? {
                writeln!(out, "{}", path.display()).map_err(io)?;
            }
        }
    }
    Ok(())
}

/// Executes a member command: through the daemon's admin socket when a daemon runs,
/// else directly on the store.
fn execute_owner(config: &Config, request: Request) -> Result<Response, Failure> {
    let call = AdminRequest::Owner(request.clone());
    match admin::client::call(&config.admin.socket, &call, Duration::from_secs(60)) {
        Ok(AdminResponse::Owner(r)) => Ok(r),
        Ok(other) => Err(Failure::failed(format!(
            "the daemon answered something unexpected: {other:?}"
        ))),
        Err(ClientError::NoDaemon(_)) => execute_local(config, request),
        Err(e) => Err(Failure::failed(e)),
    }
}

fn sync_request(args: SyncArgs) -> (SyncRequest, bool) {
    match args.command {
        None => (
            SyncRequest::Sync {
                dry_run: args.dry_run,
            },
            args.json,
        ),
        Some(SyncCommand::User {
            email,
            dry_run,
            json,
        }) => (SyncRequest::SyncUser { email, dry_run }, json),
        Some(SyncCommand::Status { limit, json }) => (SyncRequest::Status { limit }, json),
        Some(SyncCommand::Approve { run_id, json }) => (SyncRequest::Approve { run_id }, json),
        Some(SyncCommand::Discard { run_id, json }) => (SyncRequest::Discard { run_id }, json),
    }
}

/// Runs a sync request against the store (the daemon issue routes it over the admin socket).
fn run_sync_command(
    config: Config,
    request: SyncRequest,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    use std::io::IsTerminal;
    // A running daemon holds the store: ask it. A sync waits for the whole run.
    let call = AdminRequest::Sync(request.clone());
    let remote = match admin::client::call(&config.admin.socket, &call, Duration::from_secs(3600)) {
        Ok(AdminResponse::Sync(r)) => Some(Ok(r)),
        Ok(other) => {
            return Err(Failure::failed(format!(
                "the daemon answered something unexpected: {other:?}"
            )))
        }
        Err(ClientError::NoDaemon(_)) => None,
        Err(e) => Some(Err(e)),
    };
    if let Some(result) = remote {
        let response = result.map_err(Failure::failed)?;
        return finish_sync(&response, json, out);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Failure::failed)?;
    let store = Store::open(&config.store.path).map_err(Failure::failed)?;
    let ctx = reconcile::SyncContext::new(store, config);
    // Progress goes to stderr, only on a terminal, never with --json.
    let show_progress = !json && std::io::stderr().is_terminal();
    let progress: Option<reconcile::ProgressFn> = show_progress.then(|| {
        let f: reconcile::ProgressFn = std::sync::Arc::new(|p: reconcile::Progress| {
            eprint!(
                "\rfetching: {} user pages, {} users, {} group pages",
                p.pages, p.users, p.group_pages
            );
        });
        f
    });
    let response = runtime.block_on(reconcile::execute(&ctx, request, progress));
    if show_progress {
        eprintln!();
    }
    let response = response.map_err(|e| match e {
        reconcile::SyncError::Invalid(_) => Failure::config(e),
        other => Failure::failed(other),
    })?;
    finish_sync(&response, json, out)
}

/// Prints a sync answer; a failed run is a failure (exit 1).
fn finish_sync(response: &SyncResponse, json: bool, out: &mut dyn Write) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::failed(format!("cannot write output: {e}"));
    sync_render::write(response, json, out).map_err(io)?;
    match response {
        SyncResponse::Run(o) if o.failed() => Err(Failure::failed(format!(
            "sync run {} failed: {}",
            o.report.run_id,
            o.error.as_deref().unwrap_or("see the log")
        ))),
        _ => Ok(()),
    }
}

/// Rendering of the sync answers.
mod sync_render {
    use std::io::Write;

    use crate::reconcile::{Response, SyncOutcome};

    pub(super) fn write(r: &Response, json: bool, out: &mut dyn Write) -> std::io::Result<()> {
        match (r, json) {
            (Response::Run(o), true) => {
                let mut v = serde_json::to_value(&o.report).map_err(std::io::Error::other)?;
                if let (Some(changes), serde_json::Value::Object(map)) = (&o.changes, &mut v) {
                    // A dry run adds the planned changes to the report's keys.
                    map.insert(
                        "changes".into(),
                        serde_json::to_value(changes).map_err(std::io::Error::other)?,
                    );
                }
                super::json_line(out, &v)
            }
            (Response::Run(o), false) => run_text(out, o),
            (Response::Status { .. }, true) | (Response::Discarded { .. }, true) => {
                super::json_line(out, r)
            }
            (
                Response::Status {
                    runs,
                    held,
                    running,
                },
                false,
            ) => {
                if *running {
                    writeln!(out, "a sync is running now")?;
                }
                if runs.is_empty() {
                    writeln!(out, "no sync runs yet")?;
                } else {
                    writeln!(
                        out,
                        "{:<24} {:<7} {:<6} {:<20} {:>6} {:>6} {:>6} {:>5} {:>5} {:>5}",
                        "RUN",
                        "KIND",
                        "STATUS",
                        "STARTED",
                        "CREATE",
                        "UPDATE",
                        "DEACT",
                        "LINK",
                        "HELD",
                        "ERR"
                    )?;
                    for run in runs {
                        let c = &run.counts;
                        writeln!(
                            out,
                            "{:<24} {:<7} {:<6} {:<20} {:>6} {:>6} {:>6} {:>5} {:>5} {:>5}",
                            run.run_id,
                            run.kind,
                            run.status.to_string(),
                            run.started.format("%Y-%m-%dT%H:%M:%SZ"),
                            c.created,
                            c.updated,
                            c.deactivated,
                            c.linked,
                            c.held,
                            c.errors
                        )?;
                        if let Some(e) = &run.error {
                            writeln!(out, "    error: {e}")?;
                        }
                    }
                }
                for h in held {
                    writeln!(
                        out,
                        "held: {} deactivations from run {} ({}): {}",
                        h.count,
                        h.run_id,
                        h.reasons.join("; "),
                        h.sample.join(", ")
                    )?;
                    writeln!(
                        out,
                        "      approve: retrac-sync sync approve {0}   discard: retrac-sync sync discard {0}",
                        h.run_id
                    )?;
                }
                Ok(())
            }
            (Response::Discarded { run_id, count }, false) => {
                writeln!(out, "discarded {count} held deactivations of run {run_id}")
            }
        }
    }

    fn run_text(out: &mut dyn Write, o: &SyncOutcome) -> std::io::Result<()> {
        if let Some(changes) = &o.changes {
            for c in changes {
                let fields = if c.fields.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", c.fields.join(", "))
                };
                writeln!(out, "{:<10} {}{fields}", c.action.as_str(), c.user_name)?;
            }
            writeln!(out, "dry run: nothing was written")?;
        }
        let r = &o.report;
        let id = if r.run_id.is_empty() {
            "(dry run)".to_string()
        } else {
            r.run_id.clone()
        };
        writeln!(
            out,
            "sync {id} {}: created {}, updated {}, deactivated {}, linked {}, unchanged {}, held {}, skipped {}, errors {}; {} Google requests in {} ms",
            r.status, r.counts.created, r.counts.updated, r.counts.deactivated, r.counts.linked, r.counts.unchanged, r.counts.held, r.counts.skipped, r.counts.errors, r.google_requests, r.duration_ms
        )?;
        if !o.held_reasons.is_empty() {
            writeln!(out, "deactivations held: {}", o.held_reasons.join("; "))?;
            if !r.run_id.is_empty() {
                writeln!(
                    out,
                    "review them with `retrac-sync sync status`, then `retrac-sync sync approve {0}` or `retrac-sync sync discard {0}`",
                    r.run_id
                )?;
            }
        }
        for p in &o.problems {
            writeln!(out, "problem: {p}")?;
        }
        Ok(())
    }
}

/// Executes a token request: through the daemon when one runs, else on the store.
fn execute_tokens(config: &Config, request: TokenRequest) -> Result<TokenResponse, Failure> {
    let call = AdminRequest::Token(request.clone());
    match admin::client::call(&config.admin.socket, &call, Duration::from_secs(60)) {
        Ok(AdminResponse::Token(r)) => return Ok(r),
        Ok(other) => {
            return Err(Failure::failed(format!(
                "the daemon answered something unexpected: {other:?}"
            )))
        }
        Err(ClientError::NoDaemon(_)) => {}
        Err(e) => return Err(Failure::failed(e)),
    }
    let store = Store::open(&config.store.path).map_err(Failure::failed)?;
    let url = config
        .scim
        .public_url
        .as_deref()
        .map(|u| crate::scim::scim_base_url(u, &config.scim.base_path));
    let response =
        scim_auth::execute(&store, request, url.as_deref(), Utc::now()).map_err(Failure::failed)?;
    store.flush_blocking().map_err(Failure::failed)?;
    Ok(response)
}

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| "-".into())
}

fn write_tokens(out: &mut dyn Write, response: &TokenResponse, json: bool) -> std::io::Result<()> {
    if json {
        return json_line(out, response);
    }
    match response {
        TokenResponse::Created {
            token,
            secret,
            scim_url,
        } => {
            writeln!(out, "Token {} for {:?}:", token.id, token.label)?;
            writeln!(out)?;
            writeln!(out, "  {}", secret.0)?;
            writeln!(out)?;
            writeln!(
                out,
                "It is shown only this once: put it in the SCIM client now (as a Bearer token)."
            )?;
            match scim_url {
                Some(u) => writeln!(out, "SCIM URL: {u}"),
                None => writeln!(
                    out,
                    "SCIM URL: set [scim].public_url (e.g. https://sync.example.com) to have it printed here."
                ),
            }
        }
        TokenResponse::Tokens { tokens } => {
            if tokens.is_empty() {
                return writeln!(
                    out,
                    "no tokens (make one with `retrac-sync token create --label NAME`)"
                );
            }
            writeln!(
                out,
                "{:<16} {:<20} {:<16} {:<16} REVOKED",
                "ID", "LABEL", "CREATED", "LAST USED"
            )?;
            for t in tokens {
                writeln!(
                    out,
                    "{:<16} {} {:<16} {:<16} {}",
                    t.id,
                    fit(&t.label, 20),
                    when(Some(t.created)),
                    when(t.last_used),
                    when(t.revoked)
                )?;
            }
            let valid = tokens.iter().filter(|t| t.revoked.is_none()).count();
            writeln!(out, "{} tokens, {valid} valid", tokens.len())
        }
        TokenResponse::Revoked { token, already } => {
            if *already {
                writeln!(
                    out,
                    "Token {} ({:?}) was already revoked.",
                    token.id, token.label
                )
            } else {
                writeln!(
                    out,
                    "Revoked token {} ({:?}); requests that use it now get 401.",
                    token.id, token.label
                )
            }
        }
        TokenResponse::Disconnected {
            revoked,
            active_members,
        } => {
            writeln!(
                out,
                "Revoked {revoked} tokens. The SCIM endpoint accepts no request until a new token is made."
            )?;
            writeln!(
                out,
                "{active_members} members are still active; SCIM will no longer deactivate them."
            )?;
            writeln!(out, "Review them with: retrac-sync members list --active")
        }
    }
}

/// Opens the store named by the config and executes one owner request on it.
fn execute_local(config: &Config, request: Request) -> Result<Response, Failure> {
    let store = Store::open(&config.store.path).map_err(Failure::failed)?;
    let response = owner::execute(&store, request, Utc::now()).map_err(Failure::failed)?;
    store.flush_blocking().map_err(Failure::failed)?;
    Ok(response)
}

/// How an answer is printed.
#[derive(Debug, Clone, Copy)]
enum Render {
    Json,
    Table,
    Csv,
    MemberText,
    AuditText,
}

fn members_request(cmd: MembersCommand) -> (Request, Render) {
    let one = |json: bool| {
        if json {
            Render::Json
        } else {
            Render::MemberText
        }
    };
    match cmd {
        MembersCommand::List {
            active,
            inactive,
            format,
        } => {
            let filter = if active {
                ActiveFilter::Active
            } else if inactive {
                ActiveFilter::Inactive
            } else {
                ActiveFilter::All
            };
            let render = match format {
                ListFormat::Table => Render::Table,
                ListFormat::Json => Render::Json,
                ListFormat::Csv => Render::Csv,
            };
            (Request::MembersList { filter }, render)
        }
        MembersCommand::Show { member, json } => (Request::MembersShow { who: member }, one(json)),
        MembersCommand::Add {
            email,
            given,
            family,
            json,
        } => (
            Request::MembersAdd {
                email,
                given,
                family,
            },
            one(json),
        ),
        MembersCommand::Locations(cmd) => {
            let (edit, args) = match cmd {
                LocationsCommand::Set(a) => (LocationEdit::Set, a),
                LocationsCommand::Add(a) => (LocationEdit::Add, a),
                LocationsCommand::Remove(a) => (LocationEdit::Remove, a),
            };
            (
                Request::MembersLocations {
                    who: args.member,
                    edit,
                    locations: args.locations,
                },
                one(args.json),
            )
        }
        MembersCommand::Role(RoleCommand::Set { member, role, json }) => {
            (Request::MembersRole { who: member, role }, one(json))
        }
        MembersCommand::Restore { member, json } => {
            (Request::MembersRestore { who: member }, one(json))
        }
    }
}

impl Render {
    fn write(self, response: &Response, out: &mut dyn Write) -> std::io::Result<()> {
        match (self, response) {
            (Render::Json, Response::Members(ms)) => json_line(out, ms),
            (Render::Json, Response::Member { member, .. }) => json_line(out, member),
            (Render::Json, Response::Audit(entries)) => json_line(out, entries),
            (Render::Csv, Response::Members(ms)) => write_csv(out, ms),
            (Render::Table, Response::Members(ms)) => write_table(out, ms),
            (Render::MemberText, Response::Member { member, changed }) => {
                write_member(out, member, *changed)
            }
            (_, Response::Member { member, .. }) => write_member(out, member, true),
            (_, Response::Audit(entries)) => write_audit(out, entries),
            (_, Response::Members(ms)) => write_table(out, ms),
        }
    }
}

fn json_line<T: serde::Serialize + ?Sized>(out: &mut dyn Write, value: &T) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    writeln!(out, "{text}")
}

/// Cuts `s` to `width` characters, marking a cut with '…'.
fn fit(s: &str, width: usize) -> String {
    let count = s.chars().count();
    if count <= width {
        format!("{s:<width$}")
    } else {
        let mut cut: String = s.chars().take(width.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

fn full_name(m: &MemberView) -> String {
    match (&m.given_name, &m.family_name) {
        (Some(g), Some(f)) => format!("{g} {f}"),
        (Some(g), None) => g.clone(),
        (None, Some(f)) => f.clone(),
        (None, None) => m.display_name.clone().unwrap_or_default(),
    }
}

/// USER NAME 28 | NAME 18 | ACTIVE 6 | ROLE 6 | BY 6 | LOCATIONS 10 = 74 + 5 separators = 79.
fn write_table(out: &mut dyn Write, members: &[MemberView]) -> std::io::Result<()> {
    writeln!(
        out,
        "{} {} {} {} {} LOCATIONS",
        fit("USER NAME", 28),
        fit("NAME", 18),
        fit("ACTIVE", 6),
        fit("ROLE", 6),
        fit("BY", 6),
    )?;
    for m in members {
        let line = format!(
            "{} {} {} {} {} {}",
            fit(&m.user_name, 28),
            fit(&full_name(m), 18),
            fit(if m.active { "yes" } else { "no" }, 6),
            fit(&m.role.to_string(), 6),
            fit(&m.managed_by.to_string(), 6),
            fit(&m.locations.join(","), 10),
        );
        writeln!(out, "{}", line.trim_end())?;
    }
    let active = members.iter().filter(|m| m.active).count();
    writeln!(out, "{} members, {active} active", members.len())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn write_csv(out: &mut dyn Write, members: &[MemberView]) -> std::io::Result<()> {
    writeln!(
        out,
        "id,userName,givenName,familyName,displayName,active,externalId,locations,role,managedBy,created,lastModified,version"
    )?;
    for m in members {
        let fields = [
            m.id.clone(),
            m.user_name.clone(),
            m.given_name.clone().unwrap_or_default(),
            m.family_name.clone().unwrap_or_default(),
            m.display_name.clone().unwrap_or_default(),
            m.active.to_string(),
            m.external_id.clone().unwrap_or_default(),
            m.locations.join(";"),
            m.role.to_string(),
            m.managed_by.to_string(),
            m.created.to_rfc3339(),
            m.last_modified.to_rfc3339(),
            m.version.to_string(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        writeln!(out, "{}", line.join(","))?;
    }
    Ok(())
}

fn write_member(out: &mut dyn Write, m: &MemberView, changed: bool) -> std::io::Result<()> {
    let none = || "-".to_string();
    let emails: Vec<&str> = m.emails.iter().map(|e| e.value.as_str()).collect();
    let rows = [
        ("id", m.id.clone()),
        ("user name", m.user_name.clone()),
        ("name", full_name(m)),
        ("display name", m.display_name.clone().unwrap_or_else(none)),
        ("emails", emails.join(", ")),
        ("active", if m.active { "yes".into() } else { "no".into() }),
        ("external id", m.external_id.clone().unwrap_or_else(none)),
        (
            "locations",
            if m.locations.is_empty() {
                none()
            } else {
                m.locations.join(", ")
            },
        ),
        ("role", m.role.to_string()),
        ("managed by", m.managed_by.to_string()),
        ("created", m.created.to_rfc3339()),
        ("last modified", m.last_modified.to_rfc3339()),
        ("version", m.version.to_string()),
    ];
    for (k, v) in rows {
        writeln!(out, "{k:<14} {v}")?;
    }
    if !changed {
        writeln!(out, "(no change)")?;
    }
    Ok(())
}

fn write_audit(out: &mut dyn Write, entries: &[AuditEntry]) -> std::io::Result<()> {
    if entries.is_empty() {
        return writeln!(out, "no audit entries");
    }
    for e in entries {
        let fields: Vec<String> = e
            .after
            .iter()
            .map(|(k, after)| {
                let before = e
                    .before
                    .get(k)
                    .map(|b| b.to_string())
                    .unwrap_or_else(|| "∅".into());
                format!("{k}: {before} -> {after}")
            })
            .collect();
        writeln!(
            out,
            "{}  {:<12} {:<14} {}",
            e.time.format("%Y-%m-%dT%H:%M:%SZ"),
            e.change,
            e.actor.to_string(),
            e.user_name
        )?;
        for f in fields {
            writeln!(out, "    {f}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn table_rows_fit_80_columns() {
        let m = MemberView {
            id: "x".into(),
            user_name: "a.very.long.user.name.that.goes.on@example.com".into(),
            given_name: Some("Bartholomew-Maximilian".into()),
            family_name: Some("Fitzgerald-Worthington".into()),
            display_name: None,
            emails: vec![],
            active: true,
            google_id: None,
            external_id: None,
            locations: vec!["Paris".into(), "Lyon".into(), "Marseille".into()],
            role: Role::Owner,
            managed_by: crate::member::ManagedBy::Manual,
            created: Utc::now(),
            last_modified: Utc::now(),
            version: 1,
        };
        let mut buf = Vec::new();
        write_table(&mut buf, &[m]).unwrap();
        for line in String::from_utf8(buf).unwrap().lines() {
            assert!(
                line.chars().count() <= 80,
                "{line:?} is {} wide",
                line.chars().count()
            );
        }
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
