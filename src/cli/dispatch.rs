//! One way through: a command becomes an [`admin::Request`]; the CLI asks the daemon over the
//! admin socket, or, when no daemon runs, executes it itself with [`admin::execute`], the
//! function the daemon runs. Either way the answer is rendered the same, and a failure is one
//! [`AppError`] with one exit code.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use super::args::{
    Cli, Command, ConfigCommand, ConsoleCommand, EventsCommand, LocationsCommand, MembersCommand,
    Output, RoleCommand, ScimCommand, ScopeArg, SyncArgs, SyncCommand, TokenCommand,
    WebhookCommand,
};
use super::render;
use crate::admin::{self, client::ClientError, AppError, Reply, Request};
use crate::config::{self, Config};
use crate::owner::{self, ActiveFilter, LocationEdit};
use crate::reconcile::{self, Request as SyncRequest};
use crate::store::Store;
use crate::tokens::TokenRequest;
use crate::webhooks::WebhookRequest;

/// Parses the arguments and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli, &mut std::io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("retrac-sync: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Runs a parsed command, writing its answer to `out`.
pub fn run(cli: Cli, out: &mut dyn Write) -> Result<(), AppError> {
    let output = cli.output();
    let config_path = config::resolve_path(
        cli.config.as_deref(),
        std::env::var(config::PATH_ENV).ok().as_deref(),
    );
    let load = || Config::load(config_path.as_deref()).map_err(|e| AppError::Config(e.to_string()));
    let request = match cli.command {
        Command::Run => {
            let config = load()?;
            crate::telemetry::init_logging(&config.log);
            let rt = runtime()?;
            let result = rt.block_on(crate::daemon::run(config));
            // A write stuck on a full disk holds a blocking thread for ever: do not wait for
            // it to exit (dropping the runtime would).
            rt.shutdown_timeout(Duration::from_secs(2));
            return result.map_err(AppError::failed);
        }
        #[cfg(feature = "demo")]
        Command::Demo { users, listen } => {
            crate::telemetry::init_logging(&crate::config::LogConfig {
                level: "warn".into(),
                ..Default::default()
            });
            let opts = crate::demo::DemoOptions {
                users,
                listen,
                ..Default::default()
            };
            return runtime()?
                .block_on(crate::demo::run(opts, &mut std::io::stdout()))
                .map_err(AppError::failed);
        }
        Command::Config(ConfigCommand::Example) => {
            return out
                .write_all(config::EXAMPLE.as_bytes())
                .map_err(render::output_error);
        }
        Command::Doctor => {
            let json = output == Output::Json;
            return crate::doctor::cli(config_path.as_deref(), json, out).map_err(
                |(code, message)| match code {
                    2 => AppError::Config(message),
                    _ => AppError::Failed(message),
                },
            );
        }
        Command::Completions { shell } => {
            super::manpage::completions(shell, out);
            return Ok(());
        }
        Command::Man { dir } => {
            for path in super::manpage::write_man_pages(&dir).map_err(AppError::failed)? {
                writeln!(out, "{}", path.display()).map_err(render::output_error)?;
            }
            return Ok(());
        }
        Command::Config(ConfigCommand::Check) => {
            let config = load()?;
            return render::config_check(&config, config_path.as_deref(), output, out);
        }
        Command::Members(cmd) => Request::Owner(members_request(cmd)),
        Command::Audit(args) => Request::Owner(owner::Request::Audit {
            member: args.member,
            since: args.since,
            limit: args.limit,
            before: None,
        }),
        Command::Token(cmd) => Request::Token(match cmd {
            TokenCommand::Create { label, scope } => TokenRequest::Create {
                label,
                scope: match scope {
                    ScopeArg::Scim => crate::store::TokenScope::Scim,
                    ScopeArg::Events => crate::store::TokenScope::Events,
                },
            },
            TokenCommand::List => TokenRequest::List,
            TokenCommand::Revoke { all: true, .. } => TokenRequest::Disconnect,
            TokenCommand::Revoke { id, .. } => TokenRequest::Revoke {
                id: id.unwrap_or_default(),
            },
        }),
        Command::Scim(ScimCommand::Disconnect) => Request::Token(TokenRequest::Disconnect),
        Command::Console(ConsoleCommand::Login { email }) => {
            Request::ConsoleLogin(crate::access::LoginRequest { email })
        }
        Command::Console(ConsoleCommand::Logout { email, .. }) => {
            Request::ConsoleLogout(crate::access::LogoutRequest { who: email })
        }
        Command::Sync(args) => Request::Sync(sync_request(args)),
        Command::Webhook(cmd) => Request::Webhook(webhook_request(cmd)),
        Command::Events(EventsCommand::List { after, limit }) => {
            Request::Events(admin::EventsRequest {
                after,
                limit,
                wait_secs: 0,
            })
        }
        Command::Events(EventsCommand::Tail { after }) => {
            return tail(&load()?, after, output, out);
        }
    };
    if output == Output::Csv && !render::has_csv(&request) {
        return Err(AppError::Usage(
            "--output csv is for listings and members; use table or json for this command".into(),
        ));
    }
    let config = load()?;
    let reply = ask(&config, request, output)?;
    render::write(reply, output, out)
}

/// One runtime builder for the daemon, the demo and a local run.
fn runtime() -> Result<tokio::runtime::Runtime, AppError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| AppError::failed(format!("cannot start the async runtime: {e}")))
}

/// Asks the daemon over the admin socket; when none runs, executes the request here.
fn ask(config: &Config, request: Request, output: Output) -> Result<Reply, AppError> {
    // A sync through the daemon waits for the whole run.
    let timeout = match request {
        Request::Sync(_) => Duration::from_secs(3600),
        _ => Duration::from_secs(60),
    };
    match admin::client::call(&config.admin.socket, &request, timeout) {
        Err(ClientError::NoDaemon(_)) => {}
        answer => return answer.map_err(AppError::from),
    }
    let runtime = runtime()?;
    let ctx = local_context(config, &request, output)?;
    let reply = runtime.block_on(admin::execute(&ctx, request));
    if ctx.progress.is_some() {
        eprintln!();
    }
    reply
}

/// The context of a run in the CLI's own process: the store opened here, and the pull when
/// `[google]` is configured, as in the daemon. The store is opened lazily
/// ([`Store::open_lazy`]): a command that only reads members (`members show`, `members
/// list`) reads them from the records and never builds the mirror.
fn local_context(
    config: &Config,
    request: &Request,
    output: Output,
) -> Result<admin::Context, AppError> {
    let store = Store::open_lazy(&config.store.path)?;
    let sync = config
        .google
        .subject
        .is_some()
        .then(|| Arc::new(reconcile::SyncContext::new(store.clone(), config.clone())));
    // Progress goes to stderr, only on a terminal, only for a run printed as text.
    let runs = matches!(
        request,
        Request::Sync(SyncRequest::Sync { .. } | SyncRequest::SyncUser { .. })
    );
    let show_progress =
        runs && sync.is_some() && output == Output::Table && std::io::stderr().is_terminal();
    let progress: Option<reconcile::ProgressFn> = show_progress.then(|| {
        let f: reconcile::ProgressFn = Arc::new(|p: reconcile::Progress| {
            eprint!(
                "\rfetching: {} user pages, {} users, {} group pages",
                p.pages, p.users, p.group_pages
            );
        });
        f
    });
    Ok(admin::Context {
        console_url: config.console.enabled().then(|| config.console.url()),
        scim_url: config
            .scim
            .public_url
            .as_deref()
            .map(|u| crate::scim::scim_base_url(u, &config.scim.base_path)),
        store,
        sync,
        on_sync: None,
        progress,
        webhook_retry: Default::default(),
        stopping: None,
    })
}

fn webhook_request(cmd: WebhookCommand) -> WebhookRequest {
    match cmd {
        WebhookCommand::Add {
            url,
            events,
            description,
        } => WebhookRequest::Add {
            url,
            events: events.unwrap_or_default(),
            description,
        },
        WebhookCommand::List => WebhookRequest::List,
        WebhookCommand::Remove { id } => WebhookRequest::Remove { id },
        WebhookCommand::Enable { id } => WebhookRequest::Enable { id },
        WebhookCommand::Disable { id } => WebhookRequest::Disable { id },
        WebhookCommand::Rotate { id } => WebhookRequest::Rotate { id },
        WebhookCommand::Test { id } => WebhookRequest::Test { id },
        WebhookCommand::Deliveries { id, limit } => WebhookRequest::Deliveries { id, limit },
        WebhookCommand::Replay { id, since } => WebhookRequest::Replay { id, since },
    }
}

/// `events tail`: prints each new event as it commits. Through the daemon, a long poll of
/// 25 s at a time; without one, a read of the store every second, the store opened only for
/// the read (so the daemon can start meanwhile, and the tail then goes through it).
fn tail(
    config: &Config,
    after: Option<u64>,
    output: Output,
    out: &mut dyn Write,
) -> Result<(), AppError> {
    if output == Output::Csv {
        return Err(AppError::Usage(
            "events tail prints text or JSON lines; use --output table or json".into(),
        ));
    }
    let runtime = runtime()?;
    let mut cursor = after;
    loop {
        let request = admin::EventsRequest {
            // Without a start, the first answer only tells where the outbox stands.
            after: cursor.unwrap_or(u64::MAX),
            limit: admin::MAX_EVENTS_PAGE,
            wait_secs: if cursor.is_some() { 25 } else { 0 },
        };
        let answer = match admin::client::call(
            &config.admin.socket,
            &Request::Events(request.clone()),
            Duration::from_secs(60),
        ) {
            Ok(Reply::Events(r)) => Some(r),
            Ok(_) => {
                return Err(AppError::Failed(
                    "the daemon answered something else".into(),
                ))
            }
            Err(ClientError::NoDaemon(_)) => {
                match Store::open(&config.store.path) {
                    Ok(store) => {
                        let ctx = admin::Context {
                            store,
                            scim_url: None,
                            console_url: None,
                            sync: None,
                            on_sync: None,
                            progress: None,
                            webhook_retry: Default::default(),
                            stopping: None,
                        };
                        let local = admin::EventsRequest {
                            wait_secs: 0,
                            ..request
                        };
                        match runtime.block_on(admin::execute(&ctx, Request::Events(local)))? {
                            Reply::Events(r) => Some(r),
                            _ => None,
                        }
                    }
                    // The daemon is starting: ask it next time round.
                    Err(crate::store::StoreError::Locked { .. }) => None,
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        };
        match answer {
            Some(r) => {
                if cursor.is_none() {
                    cursor = Some(r.last_seq);
                    continue;
                }
                for e in &r.events {
                    render::event_line(out, e, output).map_err(render::output_error)?;
                    cursor = Some(e.seq);
                }
                out.flush().map_err(render::output_error)?;
                if r.events.is_empty() {
                    // A long poll that timed out answers at once only without a daemon.
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            None => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}

fn sync_request(args: SyncArgs) -> SyncRequest {
    match args.command {
        None => SyncRequest::Sync {
            dry_run: args.dry_run,
        },
        Some(SyncCommand::User { email, dry_run }) => SyncRequest::SyncUser { email, dry_run },
        Some(SyncCommand::Status { limit }) => SyncRequest::Status { limit },
        Some(SyncCommand::Approve { run_id }) => SyncRequest::Approve { run_id },
        Some(SyncCommand::Discard { run_id }) => SyncRequest::Discard { run_id },
    }
}

fn members_request(cmd: MembersCommand) -> owner::Request {
    match cmd {
        MembersCommand::List { active, inactive } => owner::Request::MembersList {
            filter: if active {
                ActiveFilter::Active
            } else if inactive {
                ActiveFilter::Inactive
            } else {
                ActiveFilter::All
            },
        },
        MembersCommand::Show { member } => owner::Request::MembersShow { who: member },
        MembersCommand::Add {
            email,
            given,
            family,
        } => owner::Request::MembersAdd {
            email,
            given,
            family,
        },
        MembersCommand::Locations(cmd) => {
            let (edit, args) = match cmd {
                LocationsCommand::Set(a) => (LocationEdit::Set, a),
                LocationsCommand::Add(a) => (LocationEdit::Add, a),
                LocationsCommand::Remove(a) => (LocationEdit::Remove, a),
            };
            owner::Request::MembersLocations {
                who: args.member,
                edit,
                locations: args.locations,
            }
        }
        MembersCommand::Role(RoleCommand::Set { member, role }) => {
            owner::Request::MembersRole { who: member, role }
        }
        MembersCommand::Restore { member } => owner::Request::MembersRestore { who: member },
    }
}
