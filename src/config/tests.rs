use super::*;

fn write(dir: &tempfile::TempDir, body: &str) -> PathBuf {
    let p = dir.path().join("config.toml");
    std::fs::write(&p, body).unwrap();
    p
}

/// The error of loading a config file with `body` (and no environment).
fn load_err(dir: &tempfile::TempDir, body: &str) -> String {
    let p = write(dir, body);
    Config::load_with_env(Some(&p), no_env())
        .unwrap_err()
        .to_string()
}

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

#[test]
fn defaults_are_valid_and_documented_in_the_example() {
    let c = Config::load_with_env(None, no_env()).unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.scim.base_path, "/scim/v2");
    assert_eq!(c.google.customer, "my_customer");
    assert_eq!(c.sync.max_deactivations, 25);
    assert_eq!(c.audit.retention_days, 400);
    // Every key of every section appears in config.example.toml, in its own section, as
    // a setting or a commented-out one: the example is the configuration reference (and
    // the man page retrac-sync.toml(5) is made from it).
    let v = serde_json::to_value(&c).unwrap();
    let mut tables: Vec<(String, serde_json::Value)> = Vec::new();
    for (section, body) in v.as_object().unwrap() {
        for (key, value) in body.as_object().unwrap() {
            // A table inside a section (as [console.oidc]) is a section of its own.
            if value.is_object() {
                tables.push((format!("{section}.{key}"), value.clone()));
            }
        }
        tables.push((section.clone(), body.clone()));
    }
    for (section, body) in &tables {
        let text = example_section(section).unwrap_or_else(|| panic!("example lacks [{section}]"));
        for key in body
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, v)| !v.is_object())
            .map(|(k, _)| k)
        {
            let documented = text.lines().any(|line| {
                let line = line.trim().trim_start_matches('#').trim_start();
                line.split_once('=').is_some_and(|(k, _)| k.trim() == key)
            });
            assert!(
                documented,
                "config.example.toml lacks {section}.{key} in [{section}]"
            );
        }
    }
}

/// The text of one section of config.example.toml, from its header to the next one.
fn example_section(name: &str) -> Option<&'static str> {
    let start = EXAMPLE.find(&format!("\n[{name}]\n"))? + 1;
    let body = &EXAMPLE[start..];
    let end = body[1..].find("\n[").map_or(body.len(), |i| i + 2);
    Some(&body[..end])
}

#[test]
fn the_example_file_itself_loads() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(&dir, EXAMPLE);
    Config::load_with_env(Some(&p), no_env()).unwrap();
}

#[test]
fn file_then_env_override_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
            &dir,
            "[store]\npath = \"/tmp/x\"\n[sync]\nmax_deactivations = 5\n[google]\ndomains = [\"example.com\"]\n",
        );
    let env = vec![
        (
            "RETRAC_SYNC_SYNC__MAX_DEACTIVATIONS".to_string(),
            "7".to_string(),
        ),
        (
            "RETRAC_SYNC_SCIM__LISTEN".to_string(),
            "127.0.0.1:9999".to_string(),
        ),
        ("RETRAC_SYNC_CONFIG".to_string(), "/ignored".to_string()),
        ("UNRELATED".to_string(), "x".to_string()),
    ];
    let c = Config::load_with_env(Some(&p), env).unwrap();
    assert_eq!(c.store.path, PathBuf::from("/tmp/x"));
    assert_eq!(c.sync.max_deactivations, 7);
    assert_eq!(c.scim.listen, "127.0.0.1:9999");
    assert_eq!(c.google.domains, vec!["example.com".to_string()]);
    assert_eq!(c.sync.schedule, "0 */15 * * * *");
}

#[test]
fn an_unknown_key_names_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        &dir,
        "[scim]\nlisten = \"127.0.0.1:1\"\nbase_pth = \"/x\"\n",
    );
    let err = Config::load_with_env(Some(&p), no_env())
        .unwrap_err()
        .to_string();
    assert!(err.contains("base_pth"), "{err}");
    assert!(err.contains(&p.display().to_string()), "{err}");
    let err = load_err(&dir, "[scm]\nlisten = \"127.0.0.1:1\"\n");
    assert!(err.contains("scm"), "{err}");
}

#[test]
fn an_unknown_env_key_is_an_error_too() {
    let env = vec![(
        "RETRAC_SYNC_SYNC__MAX_DEACTIVATION".to_string(),
        "3".to_string(),
    )];
    let err = Config::load_with_env(None, env).unwrap_err().to_string();
    assert!(err.contains("max_deactivation"), "{err}");
    assert!(err.contains("environment"), "{err}");
}

#[test]
fn a_missing_named_file_is_an_error() {
    let err = Config::load_with_env(Some(Path::new("/nonexistent/retrac.toml")), no_env())
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/retrac.toml"), "{err}");
}

#[test]
fn bad_values_name_their_key() {
    let dir = tempfile::tempdir().unwrap();
    for (body, key) in [
        ("[scim]\nlisten = \"nowhere\"\n", "scim.listen"),
        ("[scim]\nbase_path = \"scim\"\n", "scim.base_path"),
        ("[scim]\ntls_cert = \"/c.pem\"\n", "scim.tls_key"),
        ("[scim]\npublic_url = \"ftp://x\"\n", "scim.public_url"),
        (
            "[scim]\nmax_values_per_attribute = 0\n",
            "scim.max_values_per_attribute",
        ),
        ("[scim]\nmax_extra_bytes = 10\n", "scim.max_extra_bytes"),
        ("[scim]\nmax_results = 0\n", "scim.max_results"),
        ("[sync]\nschedule = \"every day\"\n", "sync.schedule"),
        ("[sync]\nschedule = \"*/15 * * * *\"\n", "sync.schedule"),
        (
            "[sync]\nmax_deactivation_percent = 150\n",
            "sync.max_deactivation_percent",
        ),
        ("[sync]\nrun_timeout = 0\n", "sync.run_timeout"),
        ("[google]\nsubject = \"admin\"\n", "google.subject"),
        ("[google]\ndomains = [\"not a domain\"]\n", "google.domains"),
        ("[scope]\norg_units = [\"Sales\"]\n", "scope.org_units"),
        ("[log]\nlevel = \"loud[\"\n", "log.level"),
        ("[metrics]\nlisten = \"9464\"\n", "metrics.listen"),
    ] {
        let err = load_err(&dir, body);
        assert!(err.contains(key), "{body}: {err}");
    }
    let err = load_err(&dir, "[log]\nformat = \"xml\"\n");
    assert!(err.contains("format"), "{err}");
    let err = load_err(&dir, "[sync]\nmax_deactivations = -1\n");
    assert!(err.contains("max_deactivations"), "{err}");
}

#[test]
fn resolve_path_prefers_cli_then_env() {
    assert_eq!(
        resolve_path(Some(Path::new("/a.toml")), Some("/b.toml")),
        Some(PathBuf::from("/a.toml"))
    );
    assert_eq!(
        resolve_path(None, Some("/b.toml")),
        Some(PathBuf::from("/b.toml"))
    );
}

#[test]
fn the_effective_values_print_as_toml_like_text() {
    let text = Config::default().to_toml();
    assert!(text.contains("[scim]"));
    assert!(text.contains("base_path = \"/scim/v2\""));
    assert!(text.contains("# public_url is not set"));
}

#[test]
fn the_console_is_refused_where_its_cookie_or_its_listener_would_be_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let refused = |body: &str, key: &str| {
        let p = write(&dir, body);
        let e = Config::load_with_env(Some(&p), no_env())
            .unwrap_err()
            .to_string();
        assert!(e.contains(key), "{body}: {e}");
    };
    // A listener on the network without TLS, whatever public_url says.
    refused(
        "[console]\nlisten = \"0.0.0.0:9465\"\npublic_url = \"https://c.example.com\"\n",
        "console.listen",
    );
    // A public URL of plain http off loopback, or with a path.
    refused(
        "[console]\npublic_url = \"http://c.example.com\"\n",
        "console.public_url",
    );
    refused(
        "[console]\npublic_url = \"https://c.example.com/console\"\n",
        "console.public_url",
    );
    // Sessions too short to be recorded, or an idle time past the maximum.
    refused("[console]\nsession_idle = 60\n", "console.session_idle");
    refused(
        "[console]\nsession_idle = 7200\nsession_max = 3600\n",
        "console.session_idle",
    );
    refused(
        "[console]\ntrusted_proxies = [\"proxy.local\"]\n",
        "console.trusted_proxies",
    );
    // Google sign-in needs its secret's file, and the domains it admits.
    refused(
        "[google]\ndomains = [\"example.com\"]\n[console.oidc]\nclient_id = \"x\"\n",
        "console.oidc.client_secret_file",
    );
    refused(
        "[console.oidc]\nclient_id = \"x\"\nclient_secret_file = \"/s\"\n",
        "console.oidc",
    );
    // Fine: behind a proxy on this machine; and off.
    for ok in [
        "[console]\nlisten = \"127.0.0.1:9465\"\npublic_url = \"https://c.example.com\"\n",
        "[console]\nlisten = \"\"\n",
    ] {
        let p = write(&dir, ok);
        Config::load_with_env(Some(&p), no_env()).unwrap();
    }
}
