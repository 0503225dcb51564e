//! The doctor's Google checks: the credentials, the token, the Directory API calls the pull
//! makes, nested groups, keyless sources and the clock against Google's.

use super::*;

pub(super) async fn check_google(config: &Config, opts: &DoctorOptions, checks: &mut Vec<Check>) {
    let g = &config.google;
    let Some(subject) = g.subject.as_deref() else {
        checks.push(Check::warn(
            "google",
            "[google].subject is not set: the pull is off (SCIM push still works)",
            "to pull from Google, set [google].subject and the key (see docs/admin/google-setup.md)",
        ));
        return;
    };
    if g.credentials != crate::config::CredentialsKind::Key {
        return check_google_keyless(config, subject, opts, checks).await;
    }
    let key_path = match auth::key_path(g.key_file.as_deref(), opts.credentials_dir.as_deref()) {
        Ok(p) => p,
        // Outside the service, the unit's credential is not handed over: read its source.
        Err(_) if g.key_file.is_none() && opts.unit_key_file.exists() => opts.unit_key_file.clone(),
        Err(e) => {
            checks.push(Check::fail(
                "google key",
                e.to_string(),
                "download a JSON key for the service account and set [google].key_file, or install it as /etc/retrac-sync/google-key.json for the unit's LoadCredential=",
            ));
            return;
        }
    };
    let key = match auth::read_key(&key_path) {
        Ok(k) => k,
        Err(e) => {
            checks.push(Check::fail("google key", e.to_string(), fix_for(&e)));
            return;
        }
    };
    checks.push(Check::ok(
        "google key",
        format!(
            "{}: service account {}",
            key_path.display(),
            key.client_email
        ),
    ));
    let http = match auth::build_http_client() {
        Ok(h) => h,
        Err(e) => {
            checks.push(Check::fail("google token", e.to_string(), fix_for(&e)));
            return;
        }
    };
    let rules = ScopeRules::from_config(&config.scope, g);
    let scopes = auth::scopes(rules.uses_groups());
    let client = match token(key, subject, scopes, &http, &g.api_base_url, opts.backoff).await {
        Ok(c) => {
            checks.push(Check::ok(
                "google token",
                format!(
                    "Google grants a token for {subject} with the scopes {}",
                    auth::scopes(rules.uses_groups()).join(",")
                ),
            ));
            Some(c)
        }
        Err(e) => {
            checks.push(Check::fail("google token", e.to_string(), fix_for(&e)));
            None
        }
    };
    if let Some(client) = client {
        check_directory(config, &client, checks).await;
    }
    checks.push(check_clock(&http, &g.api_base_url, opts.now).await);
}

/// One users.list page per customer and domain, and one members.list page per scope group:
/// what the pull reads first, with the pull's own message on a failure.
pub(super) async fn check_directory(
    config: &Config,
    client: &DirectoryClient,
    checks: &mut Vec<Check>,
) {
    let g = &config.google;
    let mut targets = vec![UserListTarget::Customer(g.customer.clone())];
    targets.extend(g.domains.iter().map(|d| UserListTarget::Domain(d.clone())));
    for target in targets {
        let label = match &target {
            UserListTarget::Customer(c) => format!("users.list customer={c}"),
            UserListTarget::Domain(d) => format!("users.list domain={d}"),
        };
        checks.push(match client.probe_users(&target, 1).await {
            Ok(page) => Check::ok(
                label,
                match page.users.first() {
                    Some(u) => format!("readable (first user: {})", u.primary_email),
                    None => "readable, but no user".to_string(),
                },
            ),
            Err(e) => {
                let fix = fix_for(&e);
                Check::fail(label, e.to_string(), fix)
            }
        });
    }
    for group in &config.scope.groups {
        let label = format!("members.list {group}");
        checks.push(match client.list_members_page(group, None).await {
            Ok(page) if page.members.is_empty() => Check::warn(
                label,
                "the group has no member: nobody is in scope through it",
                "add members to the group in Google, or remove it from [scope].groups",
            ),
            Ok(page) => Check::ok(
                label,
                format!(
                    "readable ({} members on the first page)",
                    page.members.len()
                ),
            ),
            Err(e @ (DirectoryError::Api { status: 404, .. } | DirectoryError::GroupNotFound { .. })) => Check::fail(
                label,
                e.to_string(),
                format!("Google does not know the group {group}: correct [scope].groups (a group's email address); the pull fails while it is there, so that its members are not deactivated"),
            ),
            Err(e) => {
                let fix = fix_for(&e);
                Check::fail(label, e.to_string(), fix)
            }
        });
    }
    if !config.scope.groups.is_empty() && checks.iter().all(|c| c.status != Status::Fail) {
        checks.push(check_nested_groups(config, client).await);
    }
}

/// The groups nested in the scope groups, read as the pull reads them (direct listings,
/// each group once): how many, and whether they stay under `[scope].max_nested_groups`.
pub(super) async fn check_nested_groups(config: &Config, client: &DirectoryClient) -> Check {
    let name = "nested groups";
    let rules = ScopeRules::from_config(&config.scope, &config.google);
    let mut progress = crate::reconcile::Progress::default();
    match crate::reconcile::run::read_groups(client, &rules, None, &mut progress).await {
        Ok((groups, problems)) if problems.is_empty() => Check::ok(
            name,
            format!(
                "nested groups under the scope groups: {} (at most [scope].max_nested_groups = {})",
                groups.nested_groups, rules.max_nested_groups
            ),
        ),
        Ok((groups, problems)) => Check::warn(
            name,
            format!(
                "nested groups under the scope groups: {}; {}",
                groups.nested_groups,
                problems.join("; ")
            ),
            "a nested group outside this Google customer cannot be read: add its members to a scope group directly, or leave them out of scope",
        ),
        Err(e @ DirectoryError::TooManyNestedGroups { .. }) => Check::fail(
            name,
            e.to_string(),
            "raise [scope].max_nested_groups, or put the users in fewer groups; the pull fails until then",
        ),
        Err(e) => {
            let fix = fix_for(&e);
            Check::fail(name, e.to_string(), fix)
        }
    }
}

/// The Google checks for keyless credentials (`[google].credentials = "metadata"` or
/// `"external_account"`): the client is built exactly as the pull builds it, and the first
/// users.list page proves the whole chain (own token, signJwt, token exchange).
pub(super) async fn check_google_keyless(
    config: &Config,
    subject: &str,
    opts: &DoctorOptions,
    checks: &mut Vec<Check>,
) {
    let g = &config.google;
    let rules = ScopeRules::from_config(&config.scope, g);
    let kind = match (&g.credentials, &g.key_file) {
        (crate::config::CredentialsKind::Metadata, _) => "the metadata server".to_string(),
        (_, Some(file)) => crate::directory::keyless::describe_external_account(file),
        (_, None) => "Workload Identity Federation (no [google].key_file)".to_string(),
    };
    match crate::directory::connect_configured(
        g,
        subject,
        rules.uses_groups(),
        opts.credentials_dir.as_deref(),
        opts.backoff,
        Duration::from_secs(30),
        &crate::directory::keyless::Environment::Process,
    )
    .await
    {
        Ok(client) => {
            checks.push(Check::ok(
                "google credentials",
                format!(
                    "keyless: {kind}, signing as {}",
                    g.service_account.as_deref().unwrap_or("(unset)")
                ),
            ));
            check_directory(config, &client, checks).await;
        }
        Err(e) => {
            let fix = fix_for(&e);
            checks.push(Check::fail("google credentials", e.to_string(), fix));
        }
    }
    match auth::build_http_client() {
        Ok(http) => checks.push(check_clock(&http, &g.api_base_url, opts.now).await),
        Err(e) => checks.push(Check::fail("clock", e.to_string(), fix_for(&e))),
    }
}

pub(super) async fn token(
    key: yup_oauth2::ServiceAccountKey,
    subject: &str,
    scopes: Vec<String>,
    http: &HttpsClient,
    base_url: &str,
    backoff: Backoff,
) -> Result<DirectoryClient, DirectoryError> {
    let auth = GoogleAuth::new(key, subject, scopes, http.clone(), Duration::from_secs(30)).await?;
    auth.token().await?;
    DirectoryClient::new(http.clone(), auth, base_url, backoff)
}

/// What to do about a Google failure; the message itself is the pull's.
pub(super) fn fix_for(e: &DirectoryError) -> String {
    match e {
        DirectoryError::Unauthorized { .. } => {
            "grant the domain-wide delegation as the message says (docs/admin/google-setup.md, step 2)".into()
        }
        DirectoryError::NoKeyFile { .. } | DirectoryError::KeyFile { .. } => {
            "download a new JSON key for the service account and point [google].key_file at it".into()
        }
        DirectoryError::Url { .. } => "correct [google].api_base_url (or the key's token_uri)".into(),
        DirectoryError::Api { status: 403, .. } => {
            "check that the Admin SDK API is enabled in the service account's Google Cloud project and that [google].subject is a super admin".into()
        }
        DirectoryError::Api { status: 400, .. } | DirectoryError::Api { status: 404, .. } => {
            "check [google].customer and [google].domains against the Admin console".into()
        }
        DirectoryError::GaveUp { .. } | DirectoryError::Token(_) => {
            "check that this host reaches Google over https (proxy, firewall, DNS), then run the doctor again".into()
        }
        DirectoryError::Api { .. } | DirectoryError::BadResponse { .. } => {
            "run the doctor again; if it persists, look at https://www.google.com/appsstatus".into()
        }
        DirectoryError::GroupNotFound { .. } => {
            "correct [scope].groups (a group's email address); the pull fails while it is there, so that its members are not deactivated".into()
        }
        // The pull's other setup messages say what to do themselves.
        _ => "do what the message says, then run the doctor again".into(),
    }
}

/// Compares the local clock with the `Date` header of the Admin SDK's host.
pub(super) async fn check_clock(
    http: &HttpsClient,
    base_url: &str,
    now: fn() -> DateTime<Utc>,
) -> Check {
    let name = "clock";
    let request = match http::Request::get(base_url)
        .header(
            http::header::USER_AGENT,
            crate::directory::client::USER_AGENT,
        )
        .body(String::new())
    {
        Ok(r) => r,
        Err(e) => {
            return Check::warn(
                name,
                format!("cannot ask {base_url}: {e}"),
                "check [google].api_base_url",
            )
        }
    };
    let response = match tokio::time::timeout(Duration::from_secs(20), http.request(request)).await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            return Check::warn(
                name,
                format!("cannot reach {base_url} to compare clocks: {e}"),
                "check that this host reaches Google over https",
            )
        }
        Err(_) => {
            return Check::warn(
                name,
                format!("{base_url} did not answer within 20 s"),
                "check that this host reaches Google over https",
            )
        }
    };
    let local = now();
    let date = response
        .headers()
        .get(http::header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| DateTime::parse_from_rfc2822(v).ok())
        .map(|d| d.with_timezone(&Utc));
    let Some(remote) = date else {
        return Check::warn(
            name,
            format!("{base_url} sent no readable Date header"),
            "none, unless pulls fail with invalid_grant: then check the clock (timedatectl)",
        );
    };
    let skew = (local - remote).num_milliseconds() as f64 / 1000.0;
    let abs = Duration::from_secs_f64(skew.abs());
    let detail = format!(
        "this host is {:.0} s {} Google",
        skew.abs(),
        if skew >= 0.0 { "ahead of" } else { "behind" }
    );
    let fix =
        "synchronise the clock: timedatectl set-ntp true (and check that timesyncd or chrony runs)";
    if abs > SKEW_FAIL {
        Check::fail(
            name,
            format!("{detail}: Google refuses the JWT grants of a clock this far off"),
            fix,
        )
    } else if abs > SKEW_WARN {
        Check::warn(name, detail, fix)
    } else {
        Check::ok(name, detail)
    }
}
