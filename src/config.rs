//! Configuration, layered with figment: built-in defaults, then the TOML file, then
//! `RETRAC_SYNC_<SECTION>__<KEY>` environment variables.
//!
//! The config holds no secret values, only paths to them (the Google key, the TLS key),
//! so printing it cannot leak a secret. `config check` prints it as it is.
//!
//! The checks of every value ([`Config::validate`]) are in `config/validate.rs`.

use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// The documented example, embedded so `config example` can print it.
pub const EXAMPLE: &str = include_str!("../config.example.toml");

/// Where the config file is looked for when neither `--config` nor `$RETRAC_SYNC_CONFIG` is set.
pub const DEFAULT_PATH: &str = "/etc/retrac-sync/config.toml";

/// The environment variable that names the config file.
pub const PATH_ENV: &str = "RETRAC_SYNC_CONFIG";

/// The prefix of environment overrides.
pub const ENV_PREFIX: &str = "RETRAC_SYNC_";

/// A config that could not be loaded or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The named file does not exist or cannot be read.
    #[error("cannot read the config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// figment could not parse or type a value (unknown keys included).
    #[error("{0}")]
    Parse(String),
    /// A value is well typed but not valid.
    #[error("invalid config: {key}: {message}")]
    Invalid {
        /// The dotted key.
        key: &'static str,
        /// What is wrong and what is expected.
        message: String,
    },
}

/// The whole configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[store]`
    pub store: StoreConfig,
    /// `[scim]`
    pub scim: ScimConfig,
    /// `[admin]`
    pub admin: AdminConfig,
    /// `[google]`
    pub google: GoogleConfig,
    /// `[scope]`
    pub scope: ScopeConfig,
    /// `[sync]`
    pub sync: SyncConfig,
    /// `[metrics]`
    pub metrics: MetricsConfig,
    /// `[log]`
    pub log: LogConfig,
    /// `[audit]`
    pub audit: AuditConfig,
    /// `[events]`
    pub events: EventsConfig,
    /// `[console]`
    pub console: ConsoleConfig,
}

/// `[store]`: where the member database lives.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// The sled directory (created with mode 0700).
    pub path: PathBuf,
    /// Below this many bytes free on the store's file system, the daemon refuses writes
    /// (503), reads go on, and `/healthz` says "degraded"; 0 turns the check off.
    pub min_free_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: PathBuf::from("/var/lib/retrac-sync/store"),
            min_free_bytes: 256 * 1024 * 1024,
        }
    }
}

/// `[scim]`: the push listener.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScimConfig {
    /// Address to listen on.
    pub listen: String,
    /// Path prefix of the SCIM endpoint.
    pub base_path: String,
    /// The URL clients reach the endpoint at (printed with new tokens, used in `meta.location`).
    pub public_url: Option<String>,
    /// PEM certificate chain; with `tls_key`, the listener serves HTTPS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key.
    pub tls_key: Option<PathBuf>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Request bodies in flight at once, in bytes; past it a request waits up to 2 s, then
    /// gets 503 with `Retry-After`.
    pub max_inflight_body_bytes: usize,
    /// Connections served at once. At the cap, a new connection closes the one idle longest;
    /// when every one has a request in flight, new ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// Connections one client address may hold open at once (under `max_connections`).
    pub max_connections_per_ip: usize,
    /// Seconds a connection may sit with no request running and no byte sent or received.
    pub idle_timeout: u64,
    /// Most values one multi-valued attribute (`emails`, `phoneNumbers`, ...) may hold.
    pub max_values_per_attribute: usize,
    /// Most bytes (as JSON) of the SCIM attributes kept for a member besides its own fields.
    pub max_extra_bytes: usize,
    /// Most resources one list or search answer holds.
    pub max_results: usize,
    /// The domains whose addresses SCIM may create, claim or rename a member to; unset =
    /// `[google].domains`; empty (here and there) = any domain. See [`Config::scim_domains`].
    pub domains: Option<Vec<String>>,
}

impl Default for ScimConfig {
    fn default() -> Self {
        ScimConfig {
            listen: "127.0.0.1:8080".into(),
            base_path: "/scim/v2".into(),
            public_url: None,
            tls_cert: None,
            tls_key: None,
            max_body_bytes: 256 * 1024,
            max_inflight_body_bytes: 64 * 1024 * 1024,
            max_connections: 512,
            max_connections_per_ip: 64,
            idle_timeout: 30,
            max_values_per_attribute: 100,
            max_extra_bytes: 64 * 1024,
            max_results: 1000,
            domains: None,
        }
    }
}

/// `[admin]`: the owner CLI's socket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Unix socket path (mode 0600).
    pub socket: PathBuf,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            socket: PathBuf::from("/run/retrac-sync/admin.sock"),
        }
    }
}

/// `[google]`: the directory to pull from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GoogleConfig {
    /// Service account key file; unset = `$CREDENTIALS_DIRECTORY/google-key.json`. With
    /// `credentials = "external_account"`: the Workload Identity Federation credential file.
    pub key_file: Option<PathBuf>,
    /// The admin the service account acts as (domain-wide delegation).
    pub subject: Option<String>,
    /// The customer to list (`my_customer` = the subject's own).
    pub customer: String,
    /// Managed domains: members outside them are never touched by the pull.
    pub domains: Vec<String>,
    /// The Admin SDK root URL.
    pub api_base_url: String,
    /// How the daemon proves who it is: `key` (a key file, the default), `metadata` (the
    /// token of the service account attached to the Compute Engine VM or GKE pod) or
    /// `external_account` (Workload Identity Federation); without a key the delegation JWT
    /// is signed by the IAM Credentials API.
    pub credentials: CredentialsKind,
    /// Without a key (`metadata`, `external_account`): the service account whose delegation
    /// is used (signJwt signs the JWT as it).
    pub service_account: Option<String>,
    /// The metadata server's root URL.
    pub metadata_url: String,
    /// The security token service's root URL (`external_account`; the credential file's
    /// own `token_url` is not used).
    pub sts_url: String,
    /// The IAM Credentials API's root URL (`signJwt`, and `generateAccessToken` when the
    /// credential file names a `service_account_impersonation_url`: only its path is used).
    pub iam_url: String,
    /// Google's OAuth token endpoint, where a signed delegation JWT is exchanged (with a key
    /// file, the key's own `token_uri` is used).
    pub token_url: String,
}

/// `[google].credentials`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialsKind {
    /// A service account key file.
    #[default]
    Key,
    /// The metadata server's token, and IAM Credentials `signJwt`.
    Metadata,
    /// A Workload Identity Federation credential file (`[google].key_file`): its subject
    /// token is exchanged at the security token service, and signJwt signs the delegation.
    ExternalAccount,
}

impl Default for GoogleConfig {
    fn default() -> Self {
        GoogleConfig {
            key_file: None,
            subject: None,
            customer: "my_customer".into(),
            domains: Vec::new(),
            api_base_url: "https://admin.googleapis.com".into(),
            credentials: CredentialsKind::Key,
            service_account: None,
            metadata_url: "http://metadata.google.internal".into(),
            sts_url: "https://sts.googleapis.com".into(),
            iam_url: "https://iamcredentials.googleapis.com".into(),
            token_url: "https://oauth2.googleapis.com/token".into(),
        }
    }
}

/// `[scope]`: which Google users are provisioned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScopeConfig {
    /// Group emails; their members, nested groups' included, are in scope.
    pub groups: Vec<String>,
    /// Org unit paths; the whole subtree is in scope.
    pub org_units: Vec<String>,
    /// A Google users.list query.
    pub query: Option<String>,
    /// Glob patterns on email removed from scope.
    pub exclude: Vec<String>,
    /// The most nested groups a run reads under the scope groups; past it the run fails
    /// before any write.
    pub max_nested_groups: u32,
    /// Whether guest accounts (`isGuestUser`) can be in scope.
    pub include_guests: bool,
}

impl Default for ScopeConfig {
    fn default() -> Self {
        ScopeConfig {
            groups: Vec::new(),
            org_units: Vec::new(),
            query: None,
            exclude: Vec::new(),
            max_nested_groups: 1000,
            include_guests: false,
        }
    }
}

/// `[sync]`: the pull's schedule and safety limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncConfig {
    /// Cron expression with seconds.
    pub schedule: String,
    /// More deactivations than this in one run are held.
    pub max_deactivations: u32,
    /// More deactivations than this percentage of active managed members are held.
    pub max_deactivation_percent: f64,
    /// Seconds a run may spend reading Google before it fails with nothing written.
    pub run_timeout: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            schedule: "0 */15 * * * *".into(),
            max_deactivations: 25,
            max_deactivation_percent: 10.0,
            run_timeout: 30 * 60,
        }
    }
}

/// `[metrics]`: health and Prometheus metrics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the metrics listener (kept apart from SCIM).
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: "127.0.0.1:9464".into(),
        }
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

/// `[log]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter: `info`, `debug`, `retrac_sync=debug,info`, ...
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// `[audit]`: how long the audit log keeps its entries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Entries older than this many days are removed in the background; `0` keeps them all.
    pub retention_days: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            retention_days: 400,
        }
    }
}

/// `[events]`: how long the event outbox keeps its events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// An event is kept at least this many days, and until every enabled webhook endpoint
    /// has it.
    pub retention_days: u32,
    /// ... but never longer than this many days.
    pub max_retention_days: u32,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            retention_days: 7,
            max_retention_days: 30,
        }
    }
}

/// `[console]`: the owner's web console.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// The console's address; empty turns the console off.
    pub listen: String,
    /// The URL owners open (behind a reverse proxy, its https:// URL); default
    /// `http://` + `listen`. Sign-in links and the Google redirect are made from it, and a
    /// form is accepted only from this origin.
    pub public_url: Option<String>,
    /// Serve HTTPS with this certificate chain (PEM), with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// A session unused this many seconds ends.
    pub session_idle: u64,
    /// A session ends this many seconds after sign-in, used or not.
    pub session_max: u64,
    /// The addresses of reverse proxies: a request from one of them is counted, for the
    /// sign-in rate limit, against the client address the proxy appended to
    /// `X-Forwarded-For`.
    pub trusted_proxies: Vec<String>,
    /// `[console.oidc]`: "Sign in with Google"; without a `client_id`, only the CLI's
    /// one-time links sign in.
    pub oidc: OidcConfig,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            listen: "127.0.0.1:9465".into(),
            public_url: None,
            tls_cert: None,
            tls_key: None,
            session_idle: 30 * 60,
            session_max: 12 * 3600,
            trusted_proxies: vec!["127.0.0.1".into(), "::1".into()],
            oidc: OidcConfig::default(),
        }
    }
}

impl ConsoleConfig {
    /// Whether the console is on.
    pub fn enabled(&self) -> bool {
        !self.listen.trim().is_empty()
    }

    /// The URL owners open, without a trailing slash: `public_url`, else the listen address
    /// over http (https with `tls_cert`).
    pub fn url(&self) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => {
                let scheme = if self.tls_cert.is_some() {
                    "https"
                } else {
                    "http"
                };
                format!("{scheme}://{}", self.listen.trim())
            }
        }
    }
}

/// `[console.oidc]`: the OpenID Connect client the console signs owners in with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OidcConfig {
    /// The issuer; its discovery document is `ISSUER/.well-known/openid-configuration`.
    pub issuer: String,
    /// The OAuth client id (Google Cloud console, "OAuth 2.0 Client IDs", a web
    /// application); empty turns "Sign in with Google" off.
    pub client_id: String,
    /// A file holding the client secret (a path, so the config holds no secret).
    pub client_secret_file: Option<PathBuf>,
}

impl Default for OidcConfig {
    fn default() -> Self {
        OidcConfig {
            issuer: "https://accounts.google.com".into(),
            client_id: String::new(),
            client_secret_file: None,
        }
    }
}

impl OidcConfig {
    /// Whether "Sign in with Google" is on.
    pub fn enabled(&self) -> bool {
        !self.client_id.trim().is_empty()
    }
}

/// Which config file to read, from `--config`, `$RETRAC_SYNC_CONFIG` or the default path.
pub fn resolve_path(cli: Option<&Path>, env: Option<&str>) -> Option<PathBuf> {
    if let Some(p) = cli {
        return Some(p.to_path_buf());
    }
    if let Some(p) = env.filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let default = PathBuf::from(DEFAULT_PATH);
    default.exists().then_some(default)
}

impl Config {
    /// The domains SCIM may provision, as caseless keys ([`crate::member::domain_key`]):
    /// `[scim].domains`, else `[google].domains`; empty = any domain.
    pub fn scim_domains(&self) -> Vec<String> {
        self.scim
            .domains
            .as_ref()
            .unwrap_or(&self.google.domains)
            .iter()
            .map(|d| crate::member::domain_key(d).into_owned())
            .collect()
    }

    /// Loads defaults, then `file` (which must exist if given), then the environment, and validates.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_with_env(file, std::env::vars())
    }

    /// As [`Config::load`], with the environment given (for tests).
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            // figment treats a missing file as empty; a named file that is missing is an error.
            std::fs::metadata(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            figment = figment.merge(Toml::file_exact(path));
        }
        let env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k != PATH_ENV)
            .collect();
        for (k, v) in &env {
            // figment's Env provider reads the process environment; the pairs are fed in
            // directly so tests need not mutate it. `__` separates section and key.
            let key = k[ENV_PREFIX.len()..]
                .to_ascii_lowercase()
                .replace("__", ".");
            figment = figment.merge((key, env_value(v)));
        }
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Parse(describe_figment_error(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// The effective values as TOML, for `config check`.
    pub fn to_toml(&self) -> String {
        // Serializing plain data to TOML does not fail; fall back to Debug just in case.
        toml_string(self).unwrap_or_else(|| format!("{self:#?}"))
    }
}

fn toml_string(config: &Config) -> Option<String> {
    let value = serde_json::to_value(config).ok()?;
    let mut out = String::new();
    let obj = value.as_object()?;
    for (section, body) in obj {
        toml_table(&mut out, section, body.as_object()?)?;
    }
    Some(out)
}

/// One table: its plain values, then each sub-table as `[section.key]`.
fn toml_table(
    out: &mut String,
    name: &str,
    body: &serde_json::Map<String, serde_json::Value>,
) -> Option<()> {
    out.push_str(&format!("[{name}]\n"));
    let mut tables = Vec::new();
    for (k, v) in body {
        let rendered = match v {
            serde_json::Value::Null => format!("# {k} is not set"),
            serde_json::Value::Object(t) => {
                tables.push((k, t));
                continue;
            }
            other => format!("{k} = {other}"),
        };
        out.push_str(&rendered);
        out.push('\n');
    }
    out.push('\n');
    for (k, t) in tables {
        toml_table(out, &format!("{name}.{k}"), t)?;
    }
    Some(())
}

/// Parses an environment value the way figment's `Env` does: TOML-like scalars and arrays.
fn env_value(raw: &str) -> figment::value::Value {
    raw.parse::<figment::value::Value>()
        .unwrap_or_else(|_| figment::value::Value::from(raw.to_string()))
}

fn describe_figment_error(e: figment::Error) -> String {
    let mut lines = Vec::new();
    for err in e {
        let mut line = String::from("invalid config: ");
        if !err.path.is_empty() {
            line.push_str(&err.path.join("."));
            line.push_str(": ");
        }
        line.push_str(&err.kind.to_string());
        match err.metadata.as_ref().and_then(|md| md.source.as_ref()) {
            Some(figment::Source::File(p)) => line.push_str(&format!(" (in {})", p.display())),
            // Defaults cannot fail, so anything not from the file came from the environment.
            _ if !err.path.is_empty() => line.push_str(&format!(
                " (from the environment variable {ENV_PREFIX}{})",
                err.path.join("__").to_ascii_uppercase()
            )),
            _ => line.push_str(" (from the environment)"),
        }
        lines.push(line);
    }
    lines.join("\n")
}

mod validate;
pub use validate::check_cron;

#[cfg(test)]
mod tests;
