//! The checks of a loaded config ([`Config::validate`]): every value, with an error that
//! names its key.

use std::net::SocketAddr;

use super::{Config, ConfigError, CredentialsKind};

impl Config {
    /// Checks every value, with an error that names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: String| Err(ConfigError::Invalid { key, message });
        if self.store.path.as_os_str().is_empty() {
            return invalid("store.path", "must not be empty".into());
        }
        self.check_scim_paths()?;
        self.check_scim_limits()?;
        self.check_admin_and_google()?;
        self.check_scope_sync_and_log()?;
        Ok(())
    }

    /// Checks `[scim]`'s address, base path and public URL, and `[events]`'s retention.
    fn check_scim_paths(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: String| Err(ConfigError::Invalid { key, message });
        check_addr("scim.listen", &self.scim.listen)?;
        let bp = &self.scim.base_path;
        if !bp.starts_with('/') || (bp.len() > 1 && bp.ends_with('/')) || bp.contains("//") {
            return invalid(
                "scim.base_path",
                format!("{bp:?} must start with '/' and not end with '/', as in \"/scim/v2\""),
            );
        }
        if bp == "/retrac" || bp.starts_with("/retrac/") {
            return invalid(
                "scim.base_path",
                format!("{bp:?} is taken: /retrac/v1 serves the event feed on the same listener"),
            );
        }
        if let Some(u) = &self.scim.public_url {
            check_url("scim.public_url", u)?;
        }
        if self.events.retention_days == 0 {
            return invalid(
                "events.retention_days",
                "must be at least 1 (a consumer needs time to read the events)".into(),
            );
        }
        if self.events.max_retention_days < self.events.retention_days {
            return invalid(
                "events.max_retention_days",
                format!(
                    "must be at least events.retention_days ({})",
                    self.events.retention_days
                ),
            );
        }
        Ok(())
    }

    /// Checks `[scim]`'s TLS pair and its limits.
    fn check_scim_limits(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: String| Err(ConfigError::Invalid { key, message });
        match (&self.scim.tls_cert, &self.scim.tls_key) {
            (Some(_), None) => {
                return invalid(
                    "scim.tls_key",
                    "is required when scim.tls_cert is set".into(),
                )
            }
            (None, Some(_)) => {
                return invalid(
                    "scim.tls_cert",
                    "is required when scim.tls_key is set".into(),
                )
            }
            _ => {}
        }
        if self.scim.max_body_bytes < 1024 {
            return invalid(
                "scim.max_body_bytes",
                format!("{} is below the minimum of 1024", self.scim.max_body_bytes),
            );
        }
        if !(1..=65_536).contains(&self.scim.max_connections) {
            return invalid(
                "scim.max_connections",
                format!(
                    "{} must be between 1 and 65536 (and below systemd's LimitNOFILE=)",
                    self.scim.max_connections
                ),
            );
        }
        if self.scim.max_inflight_body_bytes < self.scim.max_body_bytes {
            return invalid(
                "scim.max_inflight_body_bytes",
                format!(
                    "{} is below scim.max_body_bytes ({}): one body must fit",
                    self.scim.max_inflight_body_bytes, self.scim.max_body_bytes
                ),
            );
        }
        if !(1..=self.scim.max_connections).contains(&self.scim.max_connections_per_ip) {
            return invalid(
                "scim.max_connections_per_ip",
                format!(
                    "{} must be between 1 and scim.max_connections ({})",
                    self.scim.max_connections_per_ip, self.scim.max_connections
                ),
            );
        }
        if !(1..=3600).contains(&self.scim.idle_timeout) {
            return invalid(
                "scim.idle_timeout",
                format!(
                    "{} must be between 1 and 3600 seconds",
                    self.scim.idle_timeout
                ),
            );
        }
        for (key, value, min) in [
            (
                "scim.max_values_per_attribute",
                self.scim.max_values_per_attribute,
                1,
            ),
            ("scim.max_extra_bytes", self.scim.max_extra_bytes, 1024),
            ("scim.max_results", self.scim.max_results, 1),
        ] {
            if value < min {
                return invalid(key, format!("{value} is below the minimum of {min}"));
            }
        }
        Ok(())
    }

    /// Checks `[admin]`'s socket, and `[google]`: who the pull acts as, the domains and the credentials.
    fn check_admin_and_google(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: String| Err(ConfigError::Invalid { key, message });
        if self.admin.socket.as_os_str().is_empty() {
            return invalid("admin.socket", "must not be empty".into());
        }
        if let Some(s) = &self.google.subject {
            if crate::member::UserName::parse(s).is_err() {
                return invalid(
                    "google.subject",
                    format!("{s:?} must be the email of a Google admin"),
                );
            }
        }
        if self.google.customer.trim().is_empty() {
            return invalid(
                "google.customer",
                "must not be empty (use \"my_customer\")".into(),
            );
        }
        for d in &self.google.domains {
            if crate::member::UserName::parse(&format!("x@{d}")).is_err() {
                return invalid("google.domains", format!("{d:?} is not a domain name"));
            }
        }
        for d in self.scim.domains.iter().flatten() {
            if crate::member::UserName::parse(&format!("x@{d}")).is_err() {
                return invalid("scim.domains", format!("{d:?} is not a domain name"));
            }
        }
        check_url("google.api_base_url", &self.google.api_base_url)?;
        if self.google.credentials == CredentialsKind::ExternalAccount {
            check_url("google.sts_url", &self.google.sts_url)?;
            if self.google.key_file.is_none() {
                return invalid(
                    "google.key_file",
                    "with credentials = \"external_account\", name the Workload Identity Federation credential file".into(),
                );
            }
        }
        if self.google.credentials != CredentialsKind::Key {
            check_url("google.iam_url", &self.google.iam_url)?;
            check_url("google.token_url", &self.google.token_url)?;
            match &self.google.service_account {
                Some(sa) if sa.contains('@') => {}
                _ => {
                    return invalid(
                        "google.service_account",
                        "without a key (credentials = \"metadata\" or \"external_account\"), name the service account whose delegation is used (NAME@PROJECT.iam.gserviceaccount.com)".into(),
                    )
                }
            }
        }
        Ok(())
    }

    /// Checks `[scope]`, `[sync]`, `[metrics]` and `[log]`.
    fn check_scope_sync_and_log(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: String| Err(ConfigError::Invalid { key, message });
        for g in &self.scope.groups {
            if crate::member::UserName::parse(g).is_err() {
                return invalid(
                    "scope.groups",
                    format!("{g:?} must be a group's email address"),
                );
            }
        }
        for ou in &self.scope.org_units {
            if !ou.starts_with('/') {
                return invalid(
                    "scope.org_units",
                    format!("{ou:?} must be an org unit path starting with '/', as in \"/Sales\""),
                );
            }
        }
        for pattern in &self.scope.exclude {
            if pattern.trim().is_empty() {
                return invalid("scope.exclude", "holds an empty pattern".into());
            }
        }
        check_cron(&self.sync.schedule)?;
        if self.sync.run_timeout == 0 {
            return invalid(
                "sync.run_timeout",
                "must be a number of seconds above 0 (default 1800, 30 minutes)".into(),
            );
        }
        let pct = self.sync.max_deactivation_percent;
        if !(0.0..=100.0).contains(&pct) || pct.is_nan() {
            return invalid(
                "sync.max_deactivation_percent",
                format!("{pct} must be between 0 and 100"),
            );
        }
        check_addr("metrics.listen", &self.metrics.listen)?;
        self.validate_console()?;
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return invalid(
                "log.level",
                format!(
                    "{:?} is not a log filter ({e}); try \"info\" or \"debug\"",
                    self.log.level
                ),
            );
        }
        Ok(())
    }

    fn validate_console(&self) -> Result<(), ConfigError> {
        let c = &self.console;
        if !c.enabled() {
            return Ok(());
        }
        let invalid = |key, message: String| Err(ConfigError::Invalid { key, message });
        let addr = check_addr("console.listen", c.listen.trim())?;
        if c.tls_cert.is_some() != c.tls_key.is_some() {
            return invalid(
                "console.tls_cert",
                "tls_cert and tls_key are set together, or neither".into(),
            );
        }
        let url = check_url("console.public_url", &c.url())?;
        if url.path() != "/" || url.query().is_some() {
            return invalid(
                "console.public_url",
                format!(
                    "{:?} must be an origin, as in \"https://console.example.com\", with no path",
                    c.url()
                ),
            );
        }
        // The session cookie is `Secure` (a `__Host-` cookie must be): a browser keeps it
        // over https, and over plain http only from a loopback address.
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        };
        if url.scheme() == "http" && !loopback {
            return invalid(
                "console.public_url",
                format!(
                    "{:?} is plain http on an address other than loopback: a session cookie would cross the network unencrypted; \
                     set tls_cert and tls_key, or serve it behind an https proxy and set public_url to its https:// URL",
                    c.url()
                ),
            );
        }
        if !addr.ip().is_loopback() && c.tls_cert.is_none() {
            return invalid(
                "console.listen",
                format!(
                    "{addr} is not a loopback address, and the console would speak plain http there: \
                     bind it to 127.0.0.1 behind your https proxy (and set public_url), or set tls_cert and tls_key"
                ),
            );
        }
        for p in &c.trusted_proxies {
            if p.trim().parse::<std::net::IpAddr>().is_err() {
                return invalid(
                    "console.trusted_proxies",
                    format!("{p:?} is not an IP address, as in \"127.0.0.1\""),
                );
            }
        }
        if c.session_idle < 120 || c.session_max < 120 || c.session_idle > c.session_max {
            return invalid(
                "console.session_idle",
                format!(
                    "session_idle ({}) and session_max ({}) must be at least 120 seconds (a session's use is recorded once a minute), session_idle not above session_max",
                    c.session_idle, c.session_max
                ),
            );
        }
        let o = &c.oidc;
        if o.enabled() {
            check_url("console.oidc.issuer", &o.issuer)?;
            if o.client_secret_file
                .as_ref()
                .is_none_or(|p| p.as_os_str().is_empty())
            {
                return invalid(
                    "console.oidc.client_secret_file",
                    "must name the file that holds the OAuth client's secret".into(),
                );
            }
            if self.google.domains.is_empty() {
                return invalid(
                    "console.oidc",
                    "needs [google].domains: only accounts of those domains (the ID token's hd claim) may sign in".into(),
                );
            }
        }
        Ok(())
    }
}

fn check_addr(key: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    value
        .parse::<SocketAddr>()
        .map_err(|_| ConfigError::Invalid {
            key,
            message: format!("{value:?} is not an address and port, as in \"127.0.0.1:8080\""),
        })
}

fn check_url(key: &'static str, value: &str) -> Result<url::Url, ConfigError> {
    let bad = |why: String| ConfigError::Invalid {
        key,
        message: format!("{value:?} {why}"),
    };
    let u = url::Url::parse(value).map_err(|e| bad(format!("is not a URL ({e})")))?;
    if u.scheme() != "http" && u.scheme() != "https" {
        return Err(bad("must be an http:// or https:// URL".into()));
    }
    Ok(u)
}

/// Checks a six-field cron expression (with seconds), as the scheduler parses it.
pub fn check_cron(expr: &str) -> Result<(), ConfigError> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expr)
        .map(|_| ())
        .map_err(|e| ConfigError::Invalid {
            key: "sync.schedule",
            message: format!(
                "{expr:?} is not a cron expression with seconds ({e}); the default is \"0 */15 * * * *\" (every 15 minutes)"
            ),
        })
}
