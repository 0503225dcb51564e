//! The clap definitions. Arguments are validated while they are parsed (e-mail addresses,
//! run ids, roles, times), so a bad one is a usage error (exit 2) before anything runs.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::events::EventFilter;
use crate::member::{Role, UserName};
use crate::store::RunId;

/// Keeps a Retrac workspace's members in step with a Google Workspace directory.
#[derive(Debug, Parser)]
#[command(name = "retrac-sync", version = crate::version::LONG_VERSION, propagate_version = true)]
pub struct Cli {
    /// Config file [default: $RETRAC_SYNC_CONFIG, else /etc/retrac-sync/config.toml if it exists]
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// How answers are printed.
    #[arg(
        long,
        short = 'o',
        global = true,
        value_enum,
        default_value_t,
        alias = "format"
    )]
    pub output: Output,
    /// The same as `--output json` (kept for scripts written before `--output`).
    #[arg(long, global = true, hide = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The output format asked for (`--json` means `--output json`).
    pub fn output(&self) -> Output {
        if self.json {
            Output::Json
        } else {
            self.output
        }
    }
}

/// How answers are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    /// Text for a person: tables of at most 80 columns, control characters escaped.
    #[default]
    Table,
    /// JSON (a listing is one array).
    Json,
    /// CSV with a header line (listings and members; cells that a spreadsheet would run as a
    /// formula are prefixed with `'`).
    Csv,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: SCIM endpoint, scheduled pull, admin socket, health and metrics.
    Run,
    /// Run the real daemon against a fake Google directory: no account needed.
    #[cfg(feature = "demo")]
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
    /// Show the audit log of member changes, and the oldest entry it still holds.
    ///
    /// Entries older than `[audit].retention_days` are removed; the last line (on stderr
    /// with --output json or csv) says from when the audit holds entries.
    Audit(AuditArgs),
    /// Pull from the Google directory now; show runs; approve or discard held deactivations.
    Sync(SyncArgs),
    /// Make, list and revoke the SCIM bearer tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The SCIM connection as a whole.
    #[command(subcommand)]
    Scim(ScimCommand),
    /// Send each event to HTTP endpoints as signed Standard Webhooks deliveries.
    ///
    /// Each endpoint gets its events in `seq` order, one at a time, each a POST of the
    /// event's JSON with the headers webhook-id (the event's id, the same on every retry),
    /// webhook-timestamp and webhook-signature (v1, HMAC-SHA256 by the endpoint's secret).
    /// A failed delivery is retried after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h; the
    /// later events wait. After the last retry, or at a 410, the endpoint is disabled.
    /// See docs/admin/webhooks.md.
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Read the event outbox: the events every change of a member or token appends.
    #[command(subcommand)]
    Events(EventsCommand),
    /// The owner's web console ([console].listen).
    #[command(subcommand)]
    Console(ConsoleCommand),
    /// Check the setup end to end (config, store, daemon, TLS, Google, schedule, clock) and say what to fix.
    ///
    /// One line a check, ✓ fine, ! look at it, ✗ broken, with the fix: the config; the store
    /// (schema, consistency, size, free space); the admin socket; the TLS files (the
    /// certificate matches the key, expiry within 30 days); [scim].public_url; Google (a
    /// token, one users.list page per domain, one members.list page per scope group, with
    /// the pull's own messages); the next three scheduled pulls; the clock against Google's.
    /// Exits 1 when a check is ✗. `--output json` prints the checklist as JSON.
    Doctor,
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

/// `token create --scope`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ScopeArg {
    /// The SCIM endpoint.
    Scim,
    /// The event feed and member listing.
    Events,
}

/// `token ...`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token; it is printed once (with the SCIM URL for a SCIM token).
    Create {
        /// Who it is for, e.g. google-workspace; recorded as the actor of its changes.
        #[arg(long)]
        label: String,
        /// What it opens: `scim` (the SCIM endpoint, for an identity provider) or `events`
        /// (the event feed and member listing under /retrac/v1, for the Retrac app).
        #[arg(long, value_enum, default_value = "scim")]
        scope: ScopeArg,
    },
    /// List tokens: id, label, created, last used, revoked (never the secret).
    List,
    /// Revoke one token, or all of them; requests that use a revoked token get 401 at once.
    Revoke {
        /// The token id (from `token list`).
        #[arg(required_unless_present = "all")]
        id: Option<String>,
        /// Revoke every token: the same operation as `scim disconnect`.
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
}

/// `webhook ...`
#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Add an endpoint; prints its id and its secret, once.
    ///
    /// It receives the events committed from now on (not the history: `webhook replay`
    /// sends that). With --output json: {"id", "url", "secret"}.
    Add {
        /// Where to POST the deliveries: an http or https URL, without user name or password.
        url: String,
        /// Only these event types: exact names (member.deactivated) or prefixes ending in .*
        /// (member.*), comma-separated. Default: every type.
        #[arg(long, value_name = "TYPE,...", value_parser = parse_event_filter)]
        events: Option<EventFilter>,
        /// A note for `webhook list` (who consumes it).
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
    },
    /// List the endpoints, their state and where their deliveries stand (never a secret).
    List,
    /// Remove an endpoint and its delivery log.
    Remove {
        /// The endpoint's id (from `webhook list`).
        id: String,
    },
    /// Enable an endpoint again: it resumes from its first undelivered event.
    ///
    /// Refused when that event is no longer kept: the consumer must then list the members
    /// again (GET /retrac/v1/members), and `webhook replay` sends what is kept.
    Enable {
        /// The endpoint's id.
        id: String,
    },
    /// Stop delivering to an endpoint (its place is kept; `webhook enable` resumes there).
    Disable {
        /// The endpoint's id.
        id: String,
    },
    /// Make a new secret, shown once; the old one keeps signing beside it for 24 hours.
    Rotate {
        /// The endpoint's id.
        id: String,
    },
    /// Send a webhook.test event to an endpoint now and print its answer.
    Test {
        /// The endpoint's id.
        id: String,
    },
    /// Show the last delivery attempts to an endpoint, newest first (the last 1,000 are kept).
    Deliveries {
        /// The endpoint's id.
        id: String,
        /// How many attempts.
        #[arg(long, value_name = "N", default_value_t = 20)]
        limit: usize,
    },
    /// Deliver again every kept event from a time on (then what follows).
    Replay {
        /// The endpoint's id.
        id: String,
        /// The time to start from (RFC 3339, e.g. 2026-11-01T00:00:00Z).
        #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
        since: DateTime<Utc>,
    },
}

/// `events ...`
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// List kept events in `seq` order.
    List {
        /// Only events after this seq.
        #[arg(long, value_name = "SEQ", default_value_t = 0)]
        after: u64,
        /// At most this many (up to 1000).
        #[arg(long, value_name = "N", default_value_t = 100)]
        limit: usize,
    },
    /// Follow the outbox: print each new event as it commits, until interrupted.
    ///
    /// Through the daemon when it runs; without one, it reads the store every second
    /// (opening it only for the read, so a daemon can start meanwhile). With --output json,
    /// one event a line.
    Tail {
        /// Start after this seq (default: the last committed event).
        #[arg(long, value_name = "SEQ")]
        after: Option<u64>,
    },
}

/// `scim ...`
#[derive(Debug, Subcommand)]
pub enum ScimCommand {
    /// Revoke every token, so the SCIM endpoint accepts nothing until a new token is made
    /// (the same operation as `token revoke --all`).
    Disconnect,
}

/// `console ...`
#[derive(Debug, Subcommand)]
pub enum ConsoleCommand {
    /// Print a one-time sign-in link for an owner: it works once, for 10 minutes.
    ///
    /// For the first sign-in, and whenever Google's sign-in is not set up or unreachable.
    /// EMAIL must be an active member with the owner role. The link is a secret: give it only
    /// to that owner.
    Login {
        /// The owner's email address.
        email: String,
    },
    /// End a member's console sessions (or every session with --all), at once.
    ///
    /// A demoted or deactivated owner is signed out at their next click anyway; this ends
    /// the sessions now, as after a lost laptop.
    Logout {
        /// The member's email address or id.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        email: Option<String>,
        /// Every session of every owner.
        #[arg(long)]
        all: bool,
    },
}

/// `sync [--dry-run]` and its subcommands.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SyncArgs {
    /// What to do; without one, run a sync now.
    #[command(subcommand)]
    pub command: Option<SyncCommand>,
    /// Print each planned change and write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `sync ...`
#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Reconcile one user now (provision on demand).
    User {
        /// The user's email.
        #[arg(value_parser = parse_email)]
        email: String,
        /// Print the planned change and write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show the recent runs and any held deactivations.
    Status {
        /// How many runs.
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
    /// Apply the deactivations a run held, after re-planning against the current state.
    Approve {
        /// The run id shown by `sync status`.
        #[arg(value_parser = RunId::parse)]
        run_id: RunId,
    },
    /// Drop the deactivations a run held.
    Discard {
        /// The run id shown by `sync status`.
        #[arg(value_parser = RunId::parse)]
        run_id: RunId,
    },
}

/// `config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the config and print the effective values (TOML, or JSON with `--output json`).
    Check,
    /// Print the documented example config (every key, with comments).
    Example,
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
    },
    /// Show one member.
    Show {
        /// Email address (any case) or member id.
        member: String,
    },
    /// Invite a member by hand (managed by the owner; the pull never touches it).
    Add {
        /// Email address.
        #[arg(value_parser = parse_email)]
        email: String,
        /// First name.
        #[arg(long)]
        given: String,
        /// Last name.
        #[arg(long)]
        family: String,
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
}

fn parse_event_filter(s: &str) -> Result<EventFilter, String> {
    EventFilter::parse(s)
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{s:?} is not an RFC 3339 time such as 2026-11-01T00:00:00Z ({e})"))
}

/// An e-mail address, checked as the store checks a user name; kept as typed.
fn parse_email(s: &str) -> Result<String, String> {
    UserName::parse(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
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
    fn run_ids_are_checked_while_parsing() {
        let ok = ["retrac-sync", "sync", "approve", "20261101T020000Z-000042"];
        assert!(Cli::try_parse_from(ok).is_ok());
        for bad in ["no-such-run", "20261101T020000Z-42"] {
            let err = Cli::try_parse_from(["retrac-sync", "sync", "discard", bad]).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().contains("is not a run id"), "{err}");
        }
    }

    #[test]
    fn emails_are_checked_while_parsing() {
        let err = Cli::try_parse_from(["retrac-sync", "sync", "user", "not-an-email"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("not an email address"), "{err}");
        let err = Cli::try_parse_from([
            "retrac-sync",
            "members",
            "add",
            "not-an-email",
            "--given",
            "A",
            "--family",
            "B",
        ])
        .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(Cli::try_parse_from(["retrac-sync", "sync", "user", "Ada@Example.com"]).is_ok());
    }

    #[test]
    fn one_output_flag_with_json_and_format_as_aliases() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).unwrap().output();
        assert_eq!(parse(&["retrac-sync", "members", "list"]), Output::Table);
        assert_eq!(
            parse(&["retrac-sync", "members", "list", "--output", "csv"]),
            Output::Csv
        );
        assert_eq!(
            parse(&["retrac-sync", "--output", "json", "members", "list"]),
            Output::Json
        );
        assert_eq!(
            parse(&["retrac-sync", "members", "list", "--format", "csv"]),
            Output::Csv
        );
        assert_eq!(
            parse(&["retrac-sync", "token", "list", "--json"]),
            Output::Json
        );
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("--output"));
        assert!(!help.contains("--json"), "--json is hidden: {help}");
    }

    #[test]
    fn webhook_arguments_are_checked_while_parsing() {
        let err = Cli::try_parse_from([
            "retrac-sync",
            "webhook",
            "add",
            "https://x.example/",
            "--events",
            "member.gone",
        ])
        .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("not an event type"), "{err}");
        assert!(Cli::try_parse_from([
            "retrac-sync",
            "webhook",
            "add",
            "https://x.example/",
            "--events",
            "member.*,token.revoked"
        ])
        .is_ok());
        let err = Cli::try_parse_from([
            "retrac-sync",
            "webhook",
            "replay",
            "wh_1",
            "--since",
            "yesterday",
        ])
        .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(Cli::try_parse_from(["retrac-sync", "webhook", "replay", "wh_1"]).is_err());
    }

    #[test]
    fn token_revoke_takes_an_id_or_all() {
        assert!(Cli::try_parse_from(["retrac-sync", "token", "revoke"]).is_err());
        assert!(Cli::try_parse_from(["retrac-sync", "token", "revoke", "ab", "--all"]).is_err());
        assert!(Cli::try_parse_from(["retrac-sync", "token", "revoke", "--all"]).is_ok());
        assert!(Cli::try_parse_from(["retrac-sync", "token", "revoke", "ab"]).is_ok());
    }
}
