//! `retrac-sync doctor`: checks a setup end to end and says what to fix.
//!
//! Each check is one line of a checklist, `✓` (fine), `!` (works, but look at it) or `✗`
//! (broken), with the fix. Checks that depend on a broken one are left out rather than
//! reported as a cascade of failures. Google is asked the least that proves access: a token,
//! one users.list page of one user per domain and one members.list page per scope group; a
//! failure is shown with the message the pull itself would give.
//!
//! The doctor writes nothing, with one exception it shares with every other command: a
//! store of an older schema is upgraded in place when it is opened (see
//! docs/admin/operations.md, the "Upgrading" item).

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;

use crate::admin::{self, client::ClientError, Reply as AdminResponse, Request as AdminRequest};
use crate::config::{Config, ConfigError};
use crate::directory::auth::{self, GoogleAuth, HttpsClient};
use crate::directory::{Backoff, DirectoryClient, DirectoryError, UserListTarget};
use crate::reconcile::scope::ScopeRules;
use crate::store::{Store, StoreError};

/// A certificate that expires within this many days is a warning.
pub const CERT_WARN_DAYS: i64 = 30;
/// Clock skew against Google above this is a warning.
pub const SKEW_WARN: Duration = Duration::from_secs(30);
/// Clock skew above this is a failure: Google refuses a JWT grant whose `iat`/`exp` are off
/// by minutes, so every pull would fail with `invalid_grant`.
pub const SKEW_FAIL: Duration = Duration::from_secs(300);
/// Less free space than this where the store lives is a warning.
pub const MIN_FREE_BYTES: u64 = 1 << 30;
/// The key file the unit hands over with `LoadCredential=` (used when the doctor runs
/// outside the service and `[google].key_file` is unset).
pub const UNIT_KEY_FILE: &str = "/etc/retrac-sync/google-key.json";

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Ok,
    /// Works, but needs a look.
    Warn,
    /// Broken.
    Fail,
}

impl Status {
    /// The checklist mark: ✓, ! or ✗.
    pub fn mark(self) -> &'static str {
        match self {
            Status::Ok => "✓",
            Status::Warn => "!",
            Status::Fail => "✗",
        }
    }
}

/// One line of the checklist.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    /// What was checked: `config`, `store`, `admin socket`, `tls`, `public_url`,
    /// `google key`, `google token`, `users.list ...`, `members.list ...`, `schedule`, `clock`.
    pub name: String,
    /// How it came out.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do, when something is to be done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }
    fn warn(name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    fn fail(name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// The whole checklist; `--json` prints it as it is.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// True when no check failed (the exit code is 0).
    pub ok: bool,
    /// The checks, in the order they ran.
    pub checks: Vec<Check>,
}

impl Report {
    fn new(checks: Vec<Check>) -> Report {
        Report {
            ok: !checks.iter().any(|c| c.status == Status::Fail),
            checks,
        }
    }

    /// The check named `name`, if it ran.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// The checklist, one line a check: `✓ store: ...; fix: ...`.
    pub fn write_text(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        for c in &self.checks {
            match &c.fix {
                Some(fix) => writeln!(
                    out,
                    "{} {}: {}; fix: {fix}",
                    c.status.mark(),
                    c.name,
                    c.detail
                )?,
                None => writeln!(out, "{} {}: {}", c.status.mark(), c.name, c.detail)?,
            }
        }
        let count = |s| self.checks.iter().filter(|c| c.status == s).count();
        writeln!(
            out,
            "{} ok, {} to look at, {} failed",
            count(Status::Ok),
            count(Status::Warn),
            count(Status::Fail)
        )
    }
}

/// What the doctor needs besides the config.
#[derive(Clone, Debug)]
pub struct DoctorOptions {
    /// Where the config came from, for the messages (`None`: built-in defaults).
    pub config_source: Option<PathBuf>,
    /// `$CREDENTIALS_DIRECTORY`, where the unit hands over the Google key.
    pub credentials_dir: Option<PathBuf>,
    /// The key file to fall back on when neither of the above names one.
    pub unit_key_file: PathBuf,
    /// Google's retries: few and short, the doctor is interactive.
    pub backoff: Backoff,
    /// The clock (tests shift it to check the skew check).
    pub now: fn() -> DateTime<Utc>,
}

impl Default for DoctorOptions {
    fn default() -> Self {
        DoctorOptions {
            config_source: None,
            credentials_dir: std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from),
            unit_key_file: PathBuf::from(UNIT_KEY_FILE),
            backoff: Backoff {
                base: Duration::from_millis(500),
                jitter: Duration::from_millis(250),
                max_retries: 2,
            },
            now: Utc::now,
        }
    }
}

/// Runs every check. A config that does not load is the only check that stops the rest.
pub async fn diagnose(config: Result<Config, ConfigError>, opts: &DoctorOptions) -> Report {
    let source = opts.config_source.as_ref().map(|p| p.display().to_string());
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            let file = source.unwrap_or_else(|| crate::config::DEFAULT_PATH.to_string());
            return Report::new(vec![Check::fail(
                "config",
                e.to_string(),
                format!(
                    "edit {file}; `retrac-sync config example` lists every key with its meaning"
                ),
            )]);
        }
    };
    let mut checks = vec![Check::ok(
        "config",
        match &source {
            Some(s) => format!("{s} is valid"),
            None => {
                "no config file; built-in defaults and RETRAC_SYNC_* variables are valid".into()
            }
        },
    )];
    let daemon = check_admin_socket(&config, &mut checks);
    checks.push(check_store(&config, daemon));
    checks.push(check_tls(&config, (opts.now)()));
    checks.push(check_public_url(&config));
    check_google(&config, opts, &mut checks).await;
    checks.push(check_schedule(&config, (opts.now)()));
    check_webhooks(&config, daemon, &mut checks).await;
    Report::new(checks)
}

/// Sends `webhook.test` to every enabled webhook endpoint (through the daemon when it runs)
/// and reports each answer; nothing when there is no endpoint.
async fn check_webhooks(config: &Config, daemon: bool, checks: &mut Vec<Check>) {
    use crate::webhooks::{WebhookRequest, WebhookResponse};
    let local = if daemon || !config.store.path.exists() {
        None
    } else {
        match Store::open(&config.store.path) {
            Ok(s) => Some(s),
            // The store check above already said why.
            Err(_) => return,
        }
    };
    let retry = crate::webhooks::relay::Retry::default();
    let socket = config.admin.socket.clone();
    let ask = async |req: WebhookRequest| -> Result<WebhookResponse, String> {
        match &local {
            Some(store) => crate::webhooks::execute(store, req, &retry, Utc::now())
                .await
                .map_err(|e| e.to_string()),
            None => {
                let socket = socket.clone();
                tokio::task::spawn_blocking(move || {
                    admin::client::call(
                        &socket,
                        &AdminRequest::Webhook(req),
                        Duration::from_secs(30),
                    )
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())
                .and_then(|r| match r {
                    AdminResponse::Webhook(w) => Ok(w),
                    other => Err(format!("the daemon answered {other:?}")),
                })
            }
        }
    };
    if !daemon && local.is_none() {
        return;
    }
    let endpoints = match ask(WebhookRequest::List).await {
        Ok(WebhookResponse::Endpoints { endpoints }) => endpoints,
        Ok(_) => return,
        Err(e) => {
            checks.push(Check::fail("webhooks", e, "see journalctl -u retrac-sync"));
            return;
        }
    };
    for ep in endpoints {
        let name = format!("webhook {}", ep.id);
        if !ep.enabled {
            checks.push(Check::warn(
                name,
                format!(
                    "{} is disabled: {}",
                    ep.url,
                    ep.disabled_reason.as_deref().unwrap_or("no reason recorded")
                ),
                format!(
                    "fix the receiver, then `retrac-sync webhook enable {}` (docs/admin/webhooks.md)",
                    ep.id
                ),
            ));
            continue;
        }
        checks.push(match ask(WebhookRequest::Test { id: ep.id.clone() }).await {
            Ok(WebhookResponse::Tested { delivery, .. }) => match (&delivery.error, delivery.status) {
                (None, status) => Check::ok(
                    name,
                    format!(
                        "{} answered webhook.test with {} in {} ms",
                        ep.url,
                        status.map(|s| s.to_string()).unwrap_or_default(),
                        delivery.latency_ms
                    ),
                ),
                (Some(e), _) => Check::fail(
                    name,
                    format!("{} refused webhook.test: {e}", ep.url),
                    format!(
                        "check the receiver, its URL and its secret; `retrac-sync webhook deliveries {}` shows the answers",
                        ep.id
                    ),
                ),
            },
            Ok(_) => continue,
            Err(e) => Check::fail(name, e, "see journalctl -u retrac-sync"),
        });
    }
}

/// `retrac-sync doctor [--json]`: loads the config, runs the checks, prints the checklist.
/// The error is (exit code, message): 1 when a check failed.
pub fn cli(
    config_path: Option<&Path>,
    json: bool,
    out: &mut dyn std::io::Write,
) -> Result<(), (u8, String)> {
    let config = Config::load(config_path);
    let opts = DoctorOptions {
        config_source: config_path.map(Path::to_path_buf),
        ..DoctorOptions::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| (1, format!("cannot start the async runtime: {e}")))?;
    let report = runtime.block_on(diagnose(config, &opts));
    let written = if json {
        serde_json::to_string_pretty(&report)
            .map_err(std::io::Error::other)
            .and_then(|text| writeln!(out, "{text}"))
    } else {
        report.write_text(out)
    };
    written.map_err(|e| (1, format!("cannot write output: {e}")))?;
    let failed = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .count();
    if failed > 0 {
        return Err((1, format!("{failed} checks failed (marked ✗ above)")));
    }
    Ok(())
}

/// Whether a daemon answers on the admin socket.
fn check_admin_socket(config: &Config, checks: &mut Vec<Check>) -> bool {
    let socket = &config.admin.socket;
    let name = "admin socket";
    let (check, answered) =
        match admin::client::call(socket, &AdminRequest::Ping, Duration::from_secs(5)) {
            Ok(AdminResponse::Pong { version }) if version == crate::version::VERSION => (
                Check::ok(
                    name,
                    format!("the daemon {version} answers on {}", socket.display()),
                ),
                true,
            ),
            Ok(AdminResponse::Pong { version }) => (
                Check::warn(
                    name,
                    format!(
                        "the daemon answering on {} is {version}, this binary is {}",
                        socket.display(),
                        crate::version::VERSION
                    ),
                    "restart it to run the installed version: systemctl restart retrac-sync",
                ),
                true,
            ),
            Ok(other) => (
                Check::fail(
                    name,
                    format!("{} answered something unexpected: {other:?}", socket.display()),
                    "check that [admin].socket is retrac-sync's own socket",
                ),
                false,
            ),
            Err(ClientError::NoDaemon(_)) => (
                Check::warn(
                    name,
                    format!("no daemon answers on {}", socket.display()),
                    "start it: systemctl start retrac-sync (or `retrac-sync run`)",
                ),
                false,
            ),
            Err(e @ ClientError::PermissionDenied(_)) => (
                Check::fail(
                    name,
                    e.to_string(),
                    "run the doctor as root or as the service user: sudo -u retrac-sync retrac-sync doctor",
                ),
                false,
            ),
            Err(e) => (
                Check::fail(
                    name,
                    e.to_string(),
                    "restart the daemon (systemctl restart retrac-sync) and look at journalctl -u retrac-sync",
                ),
                false,
            ),
        };
    checks.push(check);
    answered
}

fn check_store(config: &Config, daemon_runs: bool) -> Check {
    let path = &config.store.path;
    let name = "store";
    if !path.exists() {
        return Check::warn(
            name,
            format!("no store at {} yet", path.display()),
            "start the daemon once (systemctl start retrac-sync): it creates the store",
        );
    }
    let size = dir_size(path);
    let space = match free_bytes(path) {
        Some(free) => format!("{}, {} free", human(size), human(free)),
        None => human(size),
    };
    let low_space = free_bytes(path).is_some_and(|f| f < MIN_FREE_BYTES);
    let mut check = match Store::open(path) {
        Ok(store) => {
            let schema = store.schema_version();
            let problems = store.check_consistency();
            let (active, inactive) = store.member_counts();
            match (schema, problems) {
                (Ok(v), Ok(p)) if p.is_empty() => Check::ok(
                    name,
                    format!(
                        "{}: schema {v}, {} members ({active} active), consistent, {space}",
                        path.display(),
                        active + inactive
                    ),
                ),
                (Ok(v), Ok(p)) => Check::fail(
                    name,
                    format!(
                        "{}: schema {v}, {} inconsistencies, the first: {}",
                        path.display(),
                        p.len(),
                        p.first().map(String::as_str).unwrap_or_default()
                    ),
                    "stop the daemon, keep a copy of the store directory, and report the problems; do not edit the store by hand",
                ),
                (Err(e), _) | (_, Err(e)) => Check::fail(
                    name,
                    e.to_string(),
                    "stop the daemon, keep a copy of the store directory, and look at journalctl -u retrac-sync",
                ),
            }
        }
        Err(StoreError::Locked { .. }) if daemon_runs => Check::ok(
            name,
            format!(
                "{}: open in the running daemon (it checked the schema at start), {space}",
                path.display()
            ),
        ),
        Err(e @ StoreError::Locked { .. }) => Check::fail(
            name,
            e.to_string(),
            "another process holds the store but no daemon answers on [admin].socket: check that the CLI and the daemon use the same config",
        ),
        Err(e @ StoreError::NewerSchema { .. }) => Check::fail(
            name,
            e.to_string(),
            "install the retrac-sync that wrote it (or newer); nothing was changed",
        ),
        Err(e) => Check::fail(
            name,
            e.to_string(),
            "check the directory's owner and mode (the service user, 0700) and the disk",
        ),
    };
    if low_space && check.status == Status::Ok {
        check = Check::warn(
            name,
            check.detail,
            format!(
                "free space on the store's file system (below {})",
                human(MIN_FREE_BYTES)
            ),
        );
    }
    check
}

fn check_tls(config: &Config, now: DateTime<Utc>) -> Check {
    let name = "tls";
    let (cert, key) = match (&config.scim.tls_cert, &config.scim.tls_key) {
        (Some(c), Some(k)) => (c, k),
        _ => {
            return Check::ok(
                name,
                "[scim].tls_cert is not set: SCIM is plain HTTP, for a TLS proxy in front",
            )
        }
    };
    use rustls::pki_types::pem::PemObject;
    let first = rustls::pki_types::CertificateDer::pem_file_iter(cert)
        .map_err(|e| e.to_string())
        .and_then(|mut it| match it.next() {
            Some(Ok(c)) => Ok(c),
            Some(Err(e)) => Err(e.to_string()),
            None => Err("holds no CERTIFICATE block".into()),
        });
    let first = match first {
        Ok(c) => c,
        Err(e) => {
            return Check::fail(
                name,
                format!("cannot read the certificate {}: {e}", cert.display()),
                "point [scim].tls_cert at a readable PEM certificate chain",
            )
        }
    };
    // The pair is built exactly as the daemon builds it: this also proves the key matches.
    if let Err(e) = crate::scim::tls::server_config(cert, key) {
        return Check::fail(
            name,
            e.to_string(),
            "use the private key that belongs to the certificate (or the certificate that belongs to the key)",
        );
    }
    let Some(not_after) = cert_not_after(first.as_ref()) else {
        return Check::warn(
            name,
            format!(
                "{} matches its key, but its expiry date cannot be read",
                cert.display()
            ),
            "check it with: openssl x509 -noout -enddate -in CERT",
        );
    };
    let days = (not_after - now).num_days();
    let when = not_after.format("%Y-%m-%d %H:%M UTC");
    if not_after <= now {
        Check::fail(
            name,
            format!("the certificate {} expired on {when}", cert.display()),
            "renew it; SCIM clients (Google) refuse an expired certificate",
        )
    } else if days < CERT_WARN_DAYS {
        Check::warn(
            name,
            format!(
                "the certificate {} expires on {when}, in {days} days",
                cert.display()
            ),
            "renew it before then and restart the daemon",
        )
    } else {
        Check::ok(
            name,
            format!("{} matches its key, valid until {when}", cert.display()),
        )
    }
}

fn check_public_url(config: &Config) -> Check {
    let name = "public_url";
    let Some(raw) = config.scim.public_url.as_deref() else {
        return Check::warn(
            name,
            "[scim].public_url is not set",
            "set it to the https URL SCIM clients reach (e.g. https://retrac-sync.example.com), so `token create` prints the SCIM URL",
        );
    };
    let url = match url::Url::parse(raw) {
        Ok(u) => u,
        Err(e) => {
            return Check::fail(
                name,
                format!("{raw:?} is not a URL ({e})"),
                "write it as https://HOST[:PORT][/PATH]",
            )
        }
    };
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Check::fail(
            name,
            format!("{raw:?} has a query, a fragment or a user name"),
            "write it as https://HOST[:PORT][/PATH]",
        );
    }
    let scim = crate::scim::scim_base_url(raw, &config.scim.base_path);
    match url.scheme() {
        "https" if url.host().is_some() => Check::ok(name, format!("SCIM clients reach {scim}")),
        _ => Check::fail(
            name,
            format!("{raw:?} is not an https URL"),
            "use https: Google Workspace sends SCIM only to an https endpoint",
        ),
    }
}

fn check_schedule(config: &Config, now: DateTime<Utc>) -> Check {
    let name = "schedule";
    let expr = &config.sync.schedule;
    let cron = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expr);
    let cron =
        match cron {
            Ok(c) => c,
            Err(e) => return Check::fail(
                name,
                format!("{expr:?}: {e}"),
                "write [sync].schedule as a cron expression with seconds, e.g. \"0 */15 * * * *\"",
            ),
        };
    let next: Vec<String> = cron
        .iter_after(now)
        .take(3)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .collect();
    if next.is_empty() {
        return Check::warn(
            name,
            format!("{expr:?} never runs"),
            "set [sync].schedule to a time that comes, e.g. \"0 */15 * * * *\"",
        );
    }
    let pull = if config.google.subject.is_some() {
        ""
    } else {
        " (the pull is off while [google].subject is unset)"
    };
    Check::ok(
        name,
        format!("{expr:?}: next runs {} UTC{pull}", next.join(", ")),
    )
}

/// The end of a certificate's validity (`notAfter`), read from its DER.
///
/// Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serial,
/// signature, issuer, validity SEQUENCE { notBefore, notAfter }, ... }, ... } (RFC 5280
/// §4.1). Only these few elements are walked; anything unexpected gives `None`.
pub fn cert_not_after(der: &[u8]) -> Option<DateTime<Utc>> {
    let (tag, cert, _) = tlv(der)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, tbs, _) = tlv(cert)?;
    if tag != 0x30 {
        return None;
    }
    let mut rest = tbs;
    let (tag, _, after) = tlv(rest)?;
    if tag == 0xa0 {
        rest = after; // the explicit version
    }
    for _ in 0..3 {
        // serialNumber, signature, issuer
        let (_, _, after) = tlv(rest)?;
        rest = after;
    }
    let (tag, validity, _) = tlv(rest)?;
    if tag != 0x30 {
        return None;
    }
    let (_, _, after) = tlv(validity)?;
    let (tag, not_after, _) = tlv(after)?;
    let text = std::str::from_utf8(not_after).ok()?;
    let full = match tag {
        // UTCTime YYMMDDHHMMSSZ: years 50-99 are 19xx (RFC 5280 §4.1.2.5.1).
        0x17 if text.len() == 13 => {
            let yy: u32 = text.get(..2)?.parse().ok()?;
            format!("{}{text}", if yy >= 50 { "19" } else { "20" })
        }
        // GeneralizedTime YYYYMMDDHHMMSSZ.
        0x18 if text.len() == 15 => text.to_string(),
        _ => return None,
    };
    NaiveDateTime::parse_from_str(&full, "%Y%m%d%H%M%SZ")
        .ok()
        .map(|t| t.and_utc())
}

/// One DER element: (tag, content, what follows). `None` when it runs past the input.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *input.first()?;
    let first = *input.get(1)?;
    let (len, header) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in input.get(2..2 + n)? {
            len = (len << 8) | *b as usize;
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    Some((tag, input.get(header..end)?, input.get(end..)?))
}

fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

fn free_bytes(path: &Path) -> Option<u64> {
    let s = rustix::fs::statvfs(path).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

mod google;
use google::*;

#[cfg(test)]
mod tests;
