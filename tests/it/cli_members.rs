//! The owner CLI, run as a real process against a store in a temporary directory.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::{cli, command};
use retrac_sync::config::Config;
use retrac_sync::member::{Actor, Change, DirectoryAttrs, ManagedBy, MemberView, UserName};
use retrac_sync::provision;
use retrac_sync::store::Store;
use serde_json::Value;

struct Env {
    _dir: tempfile::TempDir,
    config: PathBuf,
    store: PathBuf,
}

/// A store and an admin socket in a temporary directory; no daemon until one is started.
fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.store.path = dir.path().join("store");
    config.admin.socket = dir.path().join("admin.sock");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config.to_toml()).unwrap();
    Env {
        store: config.store.path,
        _dir: dir,
        config: path,
    }
}

/// A daemon on the env's store and admin socket, in this process (SCIM and metrics on
/// port 0); the CLI reaches it over the socket as in production.
struct Daemon {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), retrac_sync::daemon::DaemonError>>,
}

async fn start_daemon(env: &Env) -> Daemon {
    use retrac_sync::daemon::{self, Listeners};
    let config = Config::load_with_env(Some(&env.config), Vec::new()).unwrap();
    let store = Store::open(&config.store.path).unwrap();
    let listeners = Listeners {
        scim: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        metrics: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        admin: retrac_sync::admin::server::bind(&config.admin.socket).unwrap(),
        admin_path: config.admin.socket.clone(),
        console: None,
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(daemon::launch(
        config,
        store,
        listeners,
        daemon::LaunchOptions::default(),
        async move {
            let _ = rx.await;
        },
    ));
    Daemon {
        stop: Some(tx),
        task,
    }
}

impl Daemon {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(std::time::Duration::from_secs(20), self.task)
            .await
            .expect("the daemon stops")
            .unwrap()
            .unwrap();
    }
}

/// `run` off the async workers (the daemon runs on them).
async fn run_async(env: &Env, args: &[&str]) -> Output {
    cli(&env.config, args).await
}

fn run(env: &Env, args: &[&str]) -> Output {
    command(&env.config).args(args).output().unwrap()
}

fn ok(env: &Env, args: &[&str]) -> String {
    let out = run(env, args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(env: &Env, args: &[&str]) -> Value {
    let text = ok(env, args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
}

const MEMBER_KEYS: [&str; 15] = [
    "id",
    "userName",
    "givenName",
    "familyName",
    "displayName",
    "emails",
    "active",
    "googleId",
    "externalId",
    "locations",
    "role",
    "managedBy",
    "created",
    "lastModified",
    "version",
];

fn assert_member_keys(v: &Value) {
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    let mut want = MEMBER_KEYS.to_vec();
    want.sort();
    let mut got = keys.clone();
    got.sort();
    assert_eq!(
        got, want,
        "a member as JSON has exactly the documented keys"
    );
}

fn with_store<T>(path: &Path, f: impl FnOnce(&Store) -> T) -> T {
    let store = Store::open(path).unwrap();
    let t = f(&store);
    store.flush_blocking().unwrap();
    t
}

#[test]
fn add_list_and_show_with_exact_json_keys() {
    let env = env();
    let added = json(
        &env,
        &[
            "members",
            "add",
            "Ada@Example.com",
            "--given",
            "Ada",
            "--family",
            "Lovelace",
            "--json",
        ],
    );
    assert_member_keys(&added);
    assert_eq!(added["userName"], "Ada@Example.com");
    assert_eq!(added["managedBy"], "manual");
    assert_eq!(added["active"], true);
    ok(
        &env,
        &[
            "members",
            "add",
            "grace@example.com",
            "--given",
            "Grace",
            "--family",
            "Hopper",
        ],
    );

    let list = json(&env, &["members", "list", "--format", "json"]);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(
        list[0]["userName"], "Ada@Example.com",
        "ordered by user name"
    );
    for m in list {
        assert_member_keys(m);
        // The view parses back into the typed view (no extra, no missing keys).
        serde_json::from_value::<MemberView>(m.clone()).unwrap();
    }

    // show by email in another case, and by id
    let by_email = json(&env, &["members", "show", "ADA@example.COM", "--json"]);
    assert_eq!(by_email["id"], added["id"]);
    let by_id = json(
        &env,
        &["members", "show", added["id"].as_str().unwrap(), "--json"],
    );
    assert_eq!(by_id["userName"], "Ada@Example.com");

    let table = ok(&env, &["members", "list"]);
    assert!(table.contains("Ada@Example.com"));
    assert!(table.contains("2 members, 2 active"));
    for line in table.lines() {
        assert!(line.chars().count() <= 80, "{line:?}");
    }
    let csv = ok(&env, &["members", "list", "--format", "csv"]);
    assert!(csv.starts_with("id,userName,"));
    assert_eq!(csv.lines().count(), 3);
}

#[test]
fn a_duplicate_invite_differing_in_case_fails_with_exit_1() {
    let env = env();
    ok(
        &env,
        &[
            "members",
            "add",
            "ada@example.com",
            "--given",
            "Ada",
            "--family",
            "L",
        ],
    );
    let out = run(
        &env,
        &[
            "members",
            "add",
            "ADA@example.com",
            "--given",
            "A",
            "--family",
            "L",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already has the user name"), "{err}");
    let out = run(
        &env,
        &[
            "members",
            "add",
            "not-an-email",
            "--given",
            "A",
            "--family",
            "L",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "a bad address is a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an email address"));
}

#[test]
fn locations_set_add_remove_and_role() {
    let env = env();
    ok(
        &env,
        &[
            "members",
            "add",
            "ada@example.com",
            "--given",
            "Ada",
            "--family",
            "L",
        ],
    );
    let m = json(
        &env,
        &[
            "members",
            "locations",
            "set",
            "ada@example.com",
            "Paris",
            "Lyon",
            "--json",
        ],
    );
    assert_eq!(m["locations"], serde_json::json!(["Paris", "Lyon"]));
    let m = json(
        &env,
        &[
            "members",
            "locations",
            "add",
            "Ada@example.com",
            "Nice",
            "Paris",
            "--json",
        ],
    );
    assert_eq!(m["locations"], serde_json::json!(["Paris", "Lyon", "Nice"]));
    let m = json(
        &env,
        &[
            "members",
            "locations",
            "remove",
            "ada@example.com",
            "Lyon",
            "--json",
        ],
    );
    assert_eq!(m["locations"], serde_json::json!(["Paris", "Nice"]));
    let m = json(
        &env,
        &[
            "members",
            "role",
            "set",
            "ada@example.com",
            "owner",
            "--json",
        ],
    );
    assert_eq!(m["role"], "owner");
    assert_eq!(m["version"], 5);
    // Setting the same role again changes nothing.
    let m = json(
        &env,
        &[
            "members",
            "role",
            "set",
            "ada@example.com",
            "owner",
            "--json",
        ],
    );
    assert_eq!(m["version"], 5);

    let out = run(
        &env,
        &["members", "role", "set", "ada@example.com", "admin"],
    );
    assert_eq!(out.status.code(), Some(2), "a bad role is a usage error");
    let out = run(
        &env,
        &["members", "locations", "set", "nobody@example.com", "Paris"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no member"));
}

#[test]
fn restore_brings_back_a_deactivated_member_with_its_locations() {
    let env = env();
    ok(
        &env,
        &[
            "members",
            "add",
            "ada@example.com",
            "--given",
            "Ada",
            "--family",
            "L",
        ],
    );
    ok(
        &env,
        &["members", "locations", "set", "ada@example.com", "Paris"],
    );
    // The directory deactivates her (as the pull would).
    with_store(&env.store, |store| {
        let m = store.get_by_user_name("ada@example.com").unwrap().unwrap();
        provision::apply(
            store,
            Change::Deactivate {
                id: m.id,
                expected_version: None,
            },
            &Actor::Pull(retrac_sync::member::RunId::parse("20261101T020000Z-000002").unwrap()),
            chrono::Utc::now(),
        )
        .unwrap();
    });
    let inactive = json(&env, &["members", "list", "--inactive", "--format", "json"]);
    assert_eq!(inactive.as_array().unwrap().len(), 1);
    let active = json(&env, &["members", "list", "--active", "--format", "json"]);
    assert_eq!(active.as_array().unwrap().len(), 0);

    let m = json(&env, &["members", "restore", "ada@example.com", "--json"]);
    assert_eq!(m["active"], true);
    assert_eq!(m["locations"], serde_json::json!(["Paris"]));
}

#[test]
fn audit_shows_who_changed_what_with_filters() {
    let env = env();
    ok(
        &env,
        &[
            "members",
            "add",
            "ada@example.com",
            "--given",
            "Ada",
            "--family",
            "L",
        ],
    );
    ok(
        &env,
        &[
            "members",
            "add",
            "grace@example.com",
            "--given",
            "Grace",
            "--family",
            "H",
        ],
    );
    ok(
        &env,
        &["members", "locations", "set", "ada@example.com", "Paris"],
    );

    let all = json(&env, &["audit", "--json"]);
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0]["change"], "create");
    assert_eq!(all[0]["actor"]["kind"], "owner");
    assert_eq!(all[2]["change"], "set_locations");
    assert_eq!(all[2]["before"]["locations"], serde_json::json!([]));
    assert_eq!(all[2]["after"]["locations"], serde_json::json!(["Paris"]));

    let ada = json(&env, &["audit", "--member", "ADA@example.com", "--json"]);
    assert_eq!(ada.as_array().unwrap().len(), 2);
    let last = json(&env, &["audit", "--limit", "1", "--json"]);
    assert_eq!(last.as_array().unwrap()[0]["change"], "set_locations");
    let future = json(
        &env,
        &["audit", "--since", "2999-01-01T00:00:00Z", "--json"],
    );
    assert_eq!(future.as_array().unwrap().len(), 0);
    let text = ok(&env, &["audit"]);
    assert!(text.contains("set_locations"));
    assert!(text.contains("locations: [] -> [\"Paris\"]"), "{text}");

    let out = run(&env, &["audit", "--since", "yesterday"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("RFC 3339"));
}

#[test]
fn config_errors_exit_2_and_config_check_prints_effective_values() {
    let env = env();
    let out = ok(&env, &["config", "check"]);
    assert!(out.contains("[store]"));
    assert!(out.contains(&env.store.display().to_string()));
    let example = ok(&env, &["config", "example"]);
    assert!(example.contains("[scim]"));

    // Hand-written TOML on purpose: a misspelt key is what is tested.
    std::fs::write(&env.config, "[store]\npth = \"/tmp/x\"\n").unwrap();
    let out = run(&env, &["members", "list"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pth") && err.contains("config.toml"), "{err}");
}

#[test]
fn a_store_held_by_another_process_gets_a_clear_message() {
    let env = env();
    let _held = Store::open(&env.store).unwrap();
    let out = run(&env, &["members", "list"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("in use by another process (is the daemon running?)"),
        "{err}"
    );
}

/// The commands of the table below, each with the exit code it must give, run in order on a
/// store that holds ada@example.com.
const ROUTE_TABLE: &[(&[&str], i32)] = &[
    (
        &[
            "members",
            "add",
            "not-an-email",
            "--given",
            "A",
            "--family",
            "B",
        ],
        2,
    ),
    (&["sync", "user", "not-an-email"], 2),
    (&["sync", "discard", "no-such-run"], 2),
    (
        &[
            "members",
            "add",
            "bob@example.com",
            "--given",
            " ",
            "--family",
            "B",
        ],
        2,
    ),
    (
        &[
            "members",
            "add",
            "ADA@example.com",
            "--given",
            "A",
            "--family",
            "B",
        ],
        1,
    ),
    (&["members", "show", "nobody@example.com"], 1),
    (
        &["members", "locations", "set", "nobody@example.com", "Paris"],
        1,
    ),
    (&["members", "role", "set", "ada@example.com", "admin"], 2),
    (&["audit", "--member", "nobody@example.com"], 1),
    (&["audit", "--since", "yesterday"], 2),
    (&["token", "create", "--label", " "], 2),
    (&["token", "revoke", "0123456789abcdef"], 1),
    (&["token", "create", "--label", "x", "--output", "csv"], 2),
    // The pull is not configured in this env: a config error, by either route.
    (&["sync", "status"], 2),
    (&["sync", "discard", "20261101T020000Z-000042"], 2),
    (&["members", "show", "ADA@example.com", "--json"], 0),
    (
        &[
            "members",
            "role",
            "set",
            "ada@example.com",
            "owner",
            "--json",
        ],
        0,
    ),
    (&["members", "list", "--output", "csv"], 0),
    (&["token", "list", "--json"], 0),
];

/// `s` with member ids (which differ between the two stores) replaced by `<id>`.
fn without_ids(s: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    for c in s.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_hexdigit() || c == '-' {
            run.push(c);
            continue;
        }
        if run.len() == 36 && uuid_like(&run) {
            out.push_str("<id>");
        } else {
            out.push_str(&run);
        }
        run.clear();
        out.push(c);
    }
    out.pop();
    out
}

fn uuid_like(s: &str) -> bool {
    s.char_indices()
        .all(|(i, c)| matches!(i, 8 | 13 | 18 | 23) == (c == '-'))
}

/// Runs the table on `env`; returns each command's exit code and stderr.
async fn run_table(env: &Env) -> Vec<(i32, String)> {
    let mut results = Vec::new();
    for (args, _) in ROUTE_TABLE {
        let out = run_async(env, args).await;
        results.push((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_gives_the_same_exit_code_and_message_locally_and_through_the_daemon() {
    let add = [
        "members",
        "add",
        "ada@example.com",
        "--given",
        "Ada",
        "--family",
        "L",
    ];
    let local = env();
    assert!(run_async(&local, &add).await.status.success());
    let local_results = run_table(&local).await;

    let remote = env();
    let daemon = start_daemon(&remote).await;
    let out = run_async(&remote, &add).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        Store::open(&remote.store).is_err(),
        "the daemon holds the store, so the CLI went through the socket"
    );
    let remote_results = run_table(&remote).await;
    daemon.stop().await;

    for (((args, want), l), r) in ROUTE_TABLE.iter().zip(&local_results).zip(&remote_results) {
        assert_eq!(l.0, *want, "{args:?} locally: {}", l.1);
        assert_eq!(r.0, *want, "{args:?} through the daemon: {}", r.1);
        assert_eq!(
            without_ids(&l.1),
            without_ids(&r.1),
            "{args:?}: the same message by either route"
        );
        if *want != 0 {
            assert!(!l.1.is_empty(), "{args:?} explains its failure");
        }
    }
}

/// Long names make each member's line about 3 KB, so 6,000 members are over 16 MiB, the old
/// protocol's cap on a whole answer (and the debug build's test stays short).
fn seed_long_names(store: &Store, n: usize) {
    let long = "n".repeat(1400);
    let changes: Vec<Change> = (0..n)
        .map(|i| Change::Create {
            attrs: DirectoryAttrs::new(
                UserName::parse(&format!("user{i:06}@example.com")).unwrap(),
                Some(&long),
                Some(&long),
            ),
            managed_by: ManagedBy::Manual,
        })
        .collect();
    for chunk in changes.chunks(2000) {
        for r in provision::apply_batch(store, chunk, &Actor::Owner, chrono::Utc::now()).unwrap() {
            r.unwrap();
        }
    }
    store.flush_blocking().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_larger_than_16_mib_streams_through_the_daemon() {
    const N: usize = 6_000;
    let env = env();
    {
        let store = Store::open(&env.store).unwrap();
        seed_long_names(&store, N);
    }
    let daemon = start_daemon(&env).await;

    let out = run_async(&env, &["members", "list", "--output", "json"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = list.as_array().unwrap();
    // What crossed the socket: one compact JSON line per member, plus framing.
    let wire: usize = list.iter().map(|m| m.to_string().len() + 12).sum();
    assert!(wire > 16 * 1024 * 1024, "the answer is {wire} bytes");
    assert_eq!(list.len(), N);
    assert_eq!(list[0]["userName"], "user000000@example.com");
    assert_eq!(
        list[N - 1]["userName"],
        format!("user{:06}@example.com", N - 1)
    );

    // The audit streams the same way (a short one: the frames are the same).
    let out = run_async(&env, &["audit", "--limit", "10", "--json"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let audit: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(audit.as_array().unwrap().len(), 10);
    daemon.stop().await;
}

#[test]
fn names_with_control_characters_are_escaped_and_csv_cells_never_run_as_formulas() {
    let env = env();
    let shown = ok(
        &env,
        &[
            "members",
            "add",
            "ada@example.com",
            "--given",
            "Ada\u{1b}]0;pwned\u{7}\rX",
            "--family",
            "=HYPERLINK(\"http://x\")",
        ],
    );
    assert!(shown.contains("Ada\\u{1b}]0;pwned\\u{7}\\u{d}X"), "{shown}");
    for text in [shown, ok(&env, &["members", "list"]), ok(&env, &["audit"])] {
        assert!(
            !text.contains(['\u{1b}', '\u{7}', '\r']),
            "control characters reach the terminal: {text:?}"
        );
    }
    let csv = ok(&env, &["members", "list", "--output", "csv"]);
    assert!(csv.contains(",\"'=HYPERLINK(\"\"http://x\"\")\","), "{csv}");
    let audit_csv = ok(&env, &["audit", "--output", "csv"]);
    assert_eq!(audit_csv.lines().count(), 2, "{audit_csv}");
    // JSON is unchanged: serde escapes control characters itself.
    let json = json(
        &env,
        &["members", "show", "ada@example.com", "--output", "json"],
    );
    assert_eq!(json["givenName"], "Ada\u{1b}]0;pwned\u{7}\rX");
    assert_eq!(json["familyName"], "=HYPERLINK(\"http://x\")");
}

#[test]
fn token_revoke_all_is_scim_disconnect() {
    let env = env();
    ok(&env, &["token", "create", "--label", "a"]);
    ok(&env, &["token", "create", "--label", "b"]);
    let out = json(&env, &["token", "revoke", "--all", "--json"]);
    assert_eq!(out["kind"], "disconnected");
    assert_eq!(out["revoked"], 2);
    let out = json(&env, &["scim", "disconnect", "--json"]);
    assert_eq!(out["kind"], "disconnected");
    assert_eq!(out["revoked"], 0, "nothing left to revoke");
    let list = json(&env, &["token", "list", "--output", "json"]);
    assert!(list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| !t["revoked"].is_null()));
}

/// `audit` says how far back the audit goes, in every output format, with
/// and without a daemon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_states_the_oldest_entry_it_still_holds_in_every_format() {
    let env = env();
    let empty = run(&env, &["audit"]);
    assert!(
        String::from_utf8_lossy(&empty.stdout).contains("the audit holds no entry"),
        "{empty:?}"
    );
    let first: chrono::DateTime<chrono::Utc> = "2026-01-02T03:04:05Z".parse().unwrap();
    {
        let store = Store::open(&env.store).unwrap();
        for (i, days) in [0i64, 30].into_iter().enumerate() {
            let change = Change::Create {
                attrs: DirectoryAttrs::new(
                    UserName::parse(&format!("old{i}@example.com")).unwrap(),
                    None,
                    None,
                ),
                managed_by: ManagedBy::Manual,
            };
            provision::apply(
                &store,
                change,
                &Actor::Owner,
                first + chrono::Duration::days(days),
            )
            .unwrap();
        }
        store.flush_blocking().unwrap();
    }
    let said = "the audit holds entries from 2026-01-02T03:04:05+00:00 on";
    let check = |out: Output, on_stdout: bool| {
        assert!(out.status.success(), "{out:?}");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        );
        if on_stdout {
            assert!(
                stdout.trim_end().lines().last().unwrap().starts_with(said),
                "{stdout}"
            );
        } else {
            // JSON and CSV stay one document; the statement goes to stderr.
            assert!(stderr.contains(said), "{stderr}");
            assert!(!stdout.contains(said), "{stdout}");
        }
        stdout
    };
    // Even when the entries shown are only the last one.
    let local = check(run(&env, &["audit", "--limit", "1"]), true);
    assert!(local.contains("old1@example.com") && !local.contains("old0@example.com"));
    let json = check(run(&env, &["audit", "--output", "json"]), false);
    assert_eq!(
        serde_json::from_str::<Value>(&json)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    check(run(&env, &["audit", "--output", "csv"]), false);

    let daemon = start_daemon(&env).await;
    check(run_async(&env, &["audit", "--limit", "1"]).await, true);
    check(run_async(&env, &["audit", "--output", "json"]).await, false);
    check(run_async(&env, &["audit", "--output", "csv"]).await, false);
    daemon.stop().await;
}

/// Without a daemon (docs/decisions/0003-cli-reads-without-a-daemon.md), `members list` streams the records (no mirror) in the
/// daemon's order, by folded user name, with the same filters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_list_without_a_daemon_lists_in_the_daemons_order() {
    let env = env();
    {
        let store = Store::open(&env.store).unwrap();
        // Created in an order that is not the user-name order, one of them in upper case.
        for name in [
            "zoe@example.com",
            "Bob@example.com",
            "alice@example.com",
            "carl@example.com",
        ] {
            let mut attrs = DirectoryAttrs::new(UserName::parse(name).unwrap(), None, None);
            attrs.active = name != "carl@example.com";
            let change = Change::Create {
                attrs,
                managed_by: ManagedBy::Manual,
            };
            provision::apply(&store, change, &Actor::Owner, chrono::Utc::now()).unwrap();
        }
        store.flush_blocking().unwrap();
    }
    let names = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|m| m["userName"].as_str().unwrap().to_string())
            .collect()
    };
    let local = names(json(&env, &["members", "list", "--output", "json"]));
    assert_eq!(
        local,
        [
            "alice@example.com",
            "Bob@example.com",
            "carl@example.com",
            "zoe@example.com"
        ]
    );
    let inactive = names(json(
        &env,
        &["members", "list", "--inactive", "--output", "json"],
    ));
    assert_eq!(inactive, ["carl@example.com"]);
    let csv = ok(&env, &["members", "list", "--output", "csv"]);
    assert_eq!(csv.lines().count(), 5, "{csv}");

    let daemon = start_daemon(&env).await;
    let out = run_async(&env, &["members", "list", "--output", "json"]).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(names(serde_json::from_slice(&out.stdout).unwrap()), local);
    daemon.stop().await;
}
