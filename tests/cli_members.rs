//! The owner CLI, run as a real process against a store in a temporary directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use retrac_sync::member::{Actor, Change, MemberView};
use retrac_sync::provision;
use retrac_sync::store::Store;
use serde_json::Value;

struct Env {
    _dir: tempfile::TempDir,
    config: PathBuf,
    store: PathBuf,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!("[store]\npath = {:?}\n", store.display().to_string()),
    )
    .unwrap();
    Env {
        _dir: dir,
        config,
        store,
    }
}

fn run(env: &Env, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_retrac-sync"))
        .arg("--config")
        .arg(&env.config)
        .args(args)
        .env_remove("RETRAC_SYNC_CONFIG")
        .output()
        .unwrap()
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
    assert_eq!(out.status.code(), Some(1));
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
            &Actor::Pull("run-1".into()),
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
