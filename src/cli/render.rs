//! Rendering of the answers: tables and text for a person, JSON, CSV. A listing is printed as
//! it arrives, item by item, in every format.
//!
//! Text output escapes control characters (ESC, BEL, CR, ...), so a name cannot drive the
//! owner's terminal; CSV prefixes a cell that a spreadsheet would run as a formula with `'`
//! (OWASP's advice on CSV injection); JSON is left as serde writes it (already escaped).

use std::io::Write;
use std::path::Path;

use chrono::{DateTime, Utc};

use super::args::Output;
use crate::admin::{AppError, Listing, Reply, Request};
use crate::config::Config;
use crate::member::{Field, MemberView};
use crate::reconcile::{self, Response as SyncResponse};
use crate::store::AuditEntry;
use crate::tokens::{TokenRequest, TokenResponse};
use crate::webhooks::WebhookRequest;

mod webhooks;
pub use webhooks::event_line;

/// A failure to write the output (a closed pipe, a full disk).
pub fn output_error(e: std::io::Error) -> AppError {
    AppError::Failed(format!("cannot write output: {e}"))
}

/// Whether the answer to `request` has a CSV form: listings and members.
pub fn has_csv(request: &Request) -> bool {
    match request {
        Request::Owner(_) => true,
        Request::Token(t) => matches!(t, TokenRequest::List),
        Request::Sync(s) => matches!(s, reconcile::Request::Status { .. }),
        Request::Webhook(w) => {
            matches!(w, WebhookRequest::List | WebhookRequest::Deliveries { .. })
        }
        Request::Events(_) => true,
        Request::ConsoleLogin(_) | Request::ConsoleLogout(_) | Request::Ping => false,
    }
}

/// Prints an answer. A failed sync run is printed, then reported as a failure (exit 1); a
/// listing that breaks off is reported after what arrived.
pub fn write(reply: Reply, output: Output, out: &mut dyn Write) -> Result<(), AppError> {
    let io = output_error;
    match reply {
        Reply::Members(items) => members(items, output, out),
        Reply::Audit { items, oldest_held } => audit(items, oldest_held, output, out),
        Reply::Member { member, changed } => {
            one_member(&member, Some(changed), output, out).map_err(io)
        }
        Reply::Shown(member) => one_member(&member, None, output, out).map_err(io),
        Reply::Token(r) => tokens(&r, output, out).map_err(io),
        Reply::Sync(r) => {
            sync::write(&r, output, out).map_err(io)?;
            match r {
                SyncResponse::Run(o) if o.failed() => Err(AppError::Failed(format!(
                    "sync run {} failed: {}",
                    sync::run_label(&o.report),
                    o.error.as_deref().unwrap_or("see the log")
                ))),
                _ => Ok(()),
            }
        }
        Reply::Webhook(r) => {
            webhooks::write(&r, output, out).map_err(io)?;
            match r {
                crate::webhooks::WebhookResponse::Tested { delivery, .. }
                    if delivery.error.is_some() =>
                {
                    Err(AppError::Failed(
                        "the test delivery failed (see above)".into(),
                    ))
                }
                _ => Ok(()),
            }
        }
        Reply::Events(r) => webhooks::events(&r, output, out).map_err(io),
        Reply::Pong { version } => writeln!(out, "retrac-sync daemon {version}").map_err(io),
        Reply::Page { members, next } => {
            let next = next.is_some();
            json_value(out, &serde_json::json!({"members": members, "more": next})).map_err(io)
        }
        Reply::ConsoleLink(link) => console_link(&link, output, out).map_err(io),
        Reply::SessionsEnded(count) => match output {
            Output::Json => json_value(out, &serde_json::json!({ "ended": count })),
            _ => writeln!(out, "{count} console session(s) ended"),
        }
        .map_err(io),
    }
}

/// `console login`: the link, and how long it works.
fn console_link(
    link: &crate::access::LoginLink,
    output: Output,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    if output == Output::Json {
        return json_value(out, link);
    }
    writeln!(out, "{}", link.url)?;
    writeln!(
        out,
        "# signs in {} once, until {} (10 minutes); it is a secret: give it only to them",
        link.email,
        link.expires.format("%Y-%m-%d %H:%M:%S UTC")
    )
}

/// `config check`: the effective values as TOML (or JSON).
pub fn config_check(
    config: &Config,
    path: Option<&Path>,
    output: Output,
    out: &mut dyn Write,
) -> Result<(), AppError> {
    if output == Output::Json {
        return json_value(out, config).map_err(output_error);
    }
    let from = path
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "built-in defaults (no config file)".into());
    writeln!(
        out,
        "# config OK: {from}, with RETRAC_SYNC_* overrides applied"
    )
    .and_then(|_| out.write_all(config.to_toml().as_bytes()))
    .map_err(output_error)
}

fn json_value<T: serde::Serialize + ?Sized>(out: &mut dyn Write, value: &T) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    writeln!(out, "{text}")
}

/// A JSON array written item by item, laid out as `serde_json::to_string_pretty` lays out a
/// whole array.
struct JsonArray {
    count: usize,
}

impl JsonArray {
    fn item<T: serde::Serialize>(&mut self, out: &mut dyn Write, item: &T) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(item).map_err(std::io::Error::other)?;
        // serde escapes newlines inside strings, so every '\n' here is layout.
        let sep = if self.count == 0 { "[\n  " } else { ",\n  " };
        self.count += 1;
        write!(out, "{sep}{}", text.replace('\n', "\n  "))
    }

    fn end(self, out: &mut dyn Write) -> std::io::Result<()> {
        if self.count == 0 {
            writeln!(out, "[]")
        } else {
            writeln!(out, "\n]")
        }
    }
}

/// A listing as one JSON array, written as it arrives.
fn json_array<T: serde::Serialize>(items: Listing<T>, out: &mut dyn Write) -> Result<(), AppError> {
    let mut array = JsonArray { count: 0 };
    stream(items, out, |out, item| array.item(out, item))?;
    array.end(out).map_err(output_error)
}

/// Writes every item of a listing with `each`; `end` runs only if the listing was whole.
fn stream<T>(
    items: Listing<T>,
    out: &mut dyn Write,
    mut each: impl FnMut(&mut dyn Write, &T) -> std::io::Result<()>,
) -> Result<(), AppError> {
    for item in items {
        match item {
            Ok(item) => each(out, &item).map_err(output_error)?,
            Err(e) => {
                // What arrived is printed; say that the rest is missing.
                out.flush().map_err(output_error)?;
                return Err(e);
            }
        }
    }
    Ok(())
}

fn members(
    items: Listing<MemberView>,
    output: Output,
    out: &mut dyn Write,
) -> Result<(), AppError> {
    match output {
        Output::Json => json_array(items, out),
        Output::Csv => {
            csv_member_header(out).map_err(output_error)?;
            stream(items, out, |out, m| csv_member(out, m))
        }
        Output::Table => {
            table_header(out).map_err(output_error)?;
            let (mut total, mut active) = (0usize, 0usize);
            stream(items, out, |out, m| {
                total += 1;
                active += usize::from(m.dir.active);
                table_row(out, m)
            })?;
            writeln!(out, "{total} members, {active} active").map_err(output_error)
        }
    }
}

/// What the audit still holds: older entries were removed by `[audit].retention_days`.
pub fn oldest_held_line(oldest: Option<chrono::DateTime<chrono::Utc>>) -> String {
    match oldest {
        Some(t) => format!(
            "the audit holds entries from {} on (older ones are removed after [audit].retention_days)",
            t.to_rfc3339()
        ),
        None => "the audit holds no entry".to_string(),
    }
}

/// The entries, then what the audit still holds: as the last line of the table, and on
/// stderr for JSON and CSV (so their output stays one document a program can read).
fn audit(
    items: Listing<AuditEntry>,
    oldest_held: Option<chrono::DateTime<chrono::Utc>>,
    output: Output,
    out: &mut dyn Write,
) -> Result<(), AppError> {
    audit_entries(items, output, out)?;
    match output {
        Output::Table => writeln!(out, "{}", oldest_held_line(oldest_held)).map_err(output_error),
        Output::Json | Output::Csv => {
            eprintln!("{}", oldest_held_line(oldest_held));
            Ok(())
        }
    }
}

fn audit_entries(
    items: Listing<AuditEntry>,
    output: Output,
    out: &mut dyn Write,
) -> Result<(), AppError> {
    match output {
        Output::Json => json_array(items, out),
        Output::Csv => {
            writeln!(out, "time,change,actor,userName,memberId,before,after")
                .map_err(output_error)?;
            stream(items, out, |out, e| {
                let json = |m| serde_json::to_string(m).unwrap_or_default();
                csv_line(
                    out,
                    &[
                        e.time.to_rfc3339(),
                        e.change.to_string(),
                        e.actor.to_string(),
                        e.user_name.clone(),
                        e.member_id.to_string(),
                        json(&e.before),
                        json(&e.after),
                    ],
                )
            })
        }
        Output::Table => {
            let mut any = false;
            stream(items, out, |out, e| {
                any = true;
                audit_entry(out, e)
            })?;
            if !any {
                writeln!(out, "no audit entries").map_err(output_error)?;
            }
            Ok(())
        }
    }
}

/// Escapes the control characters in `s` (C0, DEL, C1), the bidirectional controls that can
/// reorder what a terminal shows, and the invisible and format characters that can make one
/// name read as another ([`crate::member::is_hidden_char`]), so text from the directory
/// cannot move the cursor, ring the bell, rewrite the line or disguise itself on the owner's
/// terminal or in a spreadsheet.
pub fn clean(s: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() || crate::member::is_hidden_char(c);
    if !s.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
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
    match (&m.dir.given_name, &m.dir.family_name) {
        (Some(g), Some(f)) => format!("{g} {f}"),
        (Some(g), None) => g.clone(),
        (None, Some(f)) => f.clone(),
        (None, None) => m.dir.display_name.clone().unwrap_or_default(),
    }
}

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| "-".into())
}

/// USER NAME 28 | NAME 18 | ACTIVE 6 | ROLE 6 | BY 6 | LOCATIONS 10 = 74 + 5 separators = 79.
fn table_header(out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{} {} {} {} {} LOCATIONS",
        fit("USER NAME", 28),
        fit("NAME", 18),
        fit("ACTIVE", 6),
        fit("ROLE", 6),
        fit("BY", 6),
    )
}

fn table_row(out: &mut dyn Write, m: &MemberView) -> std::io::Result<()> {
    let line = format!(
        "{} {} {} {} {} {}",
        fit(&clean(m.dir.user_name.as_str()), 28),
        fit(&clean(&full_name(m)), 18),
        fit(if m.dir.active { "yes" } else { "no" }, 6),
        fit(&m.role.to_string(), 6),
        fit(&m.managed_by.to_string(), 6),
        fit(&clean(&m.locations.join(",")), 10),
    );
    writeln!(out, "{}", line.trim_end())
}

/// A CSV cell: its control, bidirectional and invisible characters escaped as in the table
/// ([`clean`], but for line breaks, which the quoting keeps); a cell that starts like a
/// formula gets a leading `'`; then it is quoted when it holds a separator, a quote or a
/// line break (RFC 4180).
fn csv_field(s: &str) -> String {
    let cleaned: String = s
        .split_inclusive(['\n', '\r'])
        .map(|part| {
            let end = part.trim_end_matches(['\n', '\r']);
            format!("{}{}", clean(end), &part[end.len()..])
        })
        .collect();
    let s = cleaned.as_str();
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn csv_line(out: &mut dyn Write, cells: &[String]) -> std::io::Result<()> {
    let line: Vec<String> = cells.iter().map(|c| csv_field(c)).collect();
    writeln!(out, "{}", line.join(","))
}

/// The attributes the CSV of members has, in its column order (after `id`). The columns are
/// a format of their own: an attribute added to [`Field`] is not a new column until it is
/// added here, at the end.
const CSV_FIELDS: [Field; 6] = [
    Field::UserName,
    Field::GivenName,
    Field::FamilyName,
    Field::DisplayName,
    Field::Active,
    Field::ExternalId,
];

fn csv_member_header(out: &mut dyn Write) -> std::io::Result<()> {
    let names: Vec<&str> = CSV_FIELDS.iter().map(|f| f.name()).collect();
    writeln!(
        out,
        "id,{},locations,role,managedBy,created,lastModified,version",
        names.join(",")
    )
}

/// An attribute's value as plain text: a string as it is, none as `absent`, the emails'
/// addresses joined by `sep`, anything else as JSON (`true`).
fn plain(v: serde_json::Value, absent: &str, sep: &str) -> String {
    use serde_json::Value;
    match v {
        Value::String(s) => s,
        Value::Null => absent.to_string(),
        Value::Array(items) => {
            let values: Vec<&str> = items
                .iter()
                .filter_map(|i| i.get("value").and_then(Value::as_str))
                .collect();
            values.join(sep)
        }
        other => other.to_string(),
    }
}

fn csv_member(out: &mut dyn Write, m: &MemberView) -> std::io::Result<()> {
    let mut cells = vec![m.id.clone()];
    cells.extend(CSV_FIELDS.iter().map(|f| plain(f.value(&m.dir), "", ";")));
    cells.extend([
        m.locations.join(";"),
        m.role.to_string(),
        m.managed_by.to_string(),
        m.created.to_rfc3339(),
        m.last_modified.to_rfc3339(),
        m.version.to_string(),
    ]);
    csv_line(out, &cells)
}

/// One member; `changed` is whether a write changed it (`None` for a read).
fn one_member(
    m: &MemberView,
    changed: Option<bool>,
    output: Output,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    match output {
        Output::Json => json_value(out, m),
        Output::Csv => csv_member_header(out).and_then(|_| csv_member(out, m)),
        Output::Table => member_text(out, m, changed),
    }
}

/// `userName` as `user name`: a field's name as a label.
fn label(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push(' ');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn member_text(out: &mut dyn Write, m: &MemberView, changed: Option<bool>) -> std::io::Result<()> {
    let none = || "-".to_string();
    let mut rows = vec![("id".to_string(), m.id.clone())];
    for f in Field::ALL {
        let text = match f.value(&m.dir) {
            serde_json::Value::Bool(b) => if b { "yes" } else { "no" }.to_string(),
            v => plain(v, "-", ", "),
        };
        rows.push((label(f.name()), text));
    }
    let owned = [
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
    rows.extend(owned.map(|(k, v)| (k.to_string(), v)));
    for (k, v) in rows {
        writeln!(out, "{k:<14} {}", clean(&v))?;
    }
    if changed == Some(false) {
        writeln!(out, "(no change)")?;
    }
    Ok(())
}

fn audit_entry(out: &mut dyn Write, e: &AuditEntry) -> std::io::Result<()> {
    writeln!(
        out,
        "{}  {:<12} {:<14} {}",
        e.time.format("%Y-%m-%dT%H:%M:%SZ"),
        clean(e.change.as_str()),
        clean(&e.actor.to_string()),
        clean(&e.user_name)
    )?;
    for (k, after) in &e.after {
        let before = e
            .before
            .get(k)
            .map(|b| b.to_string())
            .unwrap_or_else(|| "∅".into());
        writeln!(out, "    {}", clean(&format!("{k}: {before} -> {after}")))?;
    }
    Ok(())
}

fn tokens(response: &TokenResponse, output: Output, out: &mut dyn Write) -> std::io::Result<()> {
    match (output, response) {
        (Output::Json, _) => json_value(out, response),
        (Output::Csv, TokenResponse::Tokens { tokens }) => {
            writeln!(out, "id,label,created,lastUsed,revoked")?;
            let time = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339()).unwrap_or_default();
            for t in tokens {
                csv_line(
                    out,
                    &[
                        t.id.clone(),
                        t.label.clone(),
                        t.created.to_rfc3339(),
                        time(t.last_used),
                        time(t.revoked),
                    ],
                )?;
            }
            Ok(())
        }
        _ => tokens_text(response, out),
    }
}

fn tokens_text(response: &TokenResponse, out: &mut dyn Write) -> std::io::Result<()> {
    match response {
        TokenResponse::Created {
            token,
            secret,
            scim_url,
        } => {
            writeln!(out, "Token {} for {:?}:", token.id, clean(&token.label))?;
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
                    fit(&clean(&t.label), 20),
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
                    token.id,
                    clean(&token.label)
                )
            } else {
                writeln!(
                    out,
                    "Revoked token {} ({:?}); requests that use it now get 401.",
                    token.id,
                    clean(&token.label)
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

#[cfg(test)]
mod tests;

/// Rendering of the sync answers.
mod sync {
    use std::io::Write;

    use super::{clean, json_value, Output};
    use crate::reconcile::{Response, SyncOutcome, SyncReport};

    pub(super) fn write(r: &Response, output: Output, out: &mut dyn Write) -> std::io::Result<()> {
        let json = output == Output::Json;
        if output == Output::Csv {
            return status_csv(r, out);
        }
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
                json_value(out, &v)
            }
            (Response::Run(o), false) => run_text(out, o),
            (Response::Status { .. }, true) | (Response::Discarded { .. }, true) => {
                json_value(out, r)
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
                            writeln!(out, "    error: {}", clean(e))?;
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
                        clean(&h.sample.join(", "))
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

    /// A run as the text names it: its id, or `(dry run)`.
    pub(super) fn run_label(r: &SyncReport) -> String {
        r.run_id
            .as_ref()
            .map_or_else(|| "(dry run)".to_string(), ToString::to_string)
    }

    fn run_text(out: &mut dyn Write, o: &SyncOutcome) -> std::io::Result<()> {
        if let Some(changes) = &o.changes {
            for c in changes {
                let fields = if c.field_names().is_empty() {
                    String::new()
                } else {
                    format!(" ({})", c.field_names().join(", "))
                };
                writeln!(
                    out,
                    "{:<10} {}",
                    c.action.as_str(),
                    clean(&format!("{}{fields}", c.user_name))
                )?;
            }
            writeln!(out, "dry run: nothing was written")?;
        }
        let r = &o.report;
        let id = run_label(r);
        writeln!(
            out,
            "sync {id} {}: created {}, updated {}, deactivated {}, linked {}, unchanged {}, held {}, skipped {}, errors {}; {} Google requests in {} ms",
            r.status, r.counts.created, r.counts.updated, r.counts.deactivated, r.counts.linked, r.counts.unchanged, r.counts.held, r.counts.skipped, r.counts.errors, r.google_requests, r.duration_ms
        )?;
        if !o.held_reasons.is_empty() {
            writeln!(
                out,
                "deactivations held: {}",
                clean(&o.held_reasons.join("; "))
            )?;
            if let Some(run_id) = &r.run_id {
                writeln!(
                    out,
                    "review them with `retrac-sync sync status`, then `retrac-sync sync approve {run_id}` or `retrac-sync sync discard {run_id}`",
                )?;
            }
        }
        for p in &o.problems {
            writeln!(out, "problem: {}", clean(p))?;
        }
        Ok(())
    }

    /// `sync status` as CSV: one line per run.
    fn status_csv(r: &Response, out: &mut dyn Write) -> std::io::Result<()> {
        let Response::Status { runs, .. } = r else {
            return Ok(());
        };
        writeln!(
            out,
            "run,kind,status,started,created,updated,deactivated,linked,held,errors,error"
        )?;
        for run in runs {
            let c = &run.counts;
            super::csv_line(
                out,
                &[
                    run.run_id.to_string(),
                    run.kind.to_string(),
                    run.status.to_string(),
                    run.started.to_rfc3339(),
                    c.created.to_string(),
                    c.updated.to_string(),
                    c.deactivated.to_string(),
                    c.linked.to_string(),
                    c.held.to_string(),
                    c.errors.to_string(),
                    run.error.clone().unwrap_or_default(),
                ],
            )?;
        }
        Ok(())
    }
}
