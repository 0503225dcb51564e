//! The `sync` commands of the binary, against a fake Google on loopback.

use crate::common;

use common::*;
use fake_google::{FakeSeed, Fault};

/// The world's config as a file, with a deactivation limit of 5.
fn config_file(w: &World) -> std::path::PathBuf {
    let mut c = w.config.clone();
    c.admin.socket = w.dir.path().join("admin.sock");
    c.sync.max_deactivations = 5;
    write_config(w.dir.path(), &c)
}

/// The CLI's exit code, stdout and stderr.
async fn run(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = cli(config, args).await;
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_json_status_dry_run_and_failures() {
    let w = world(FakeSeed::sample(40, "example.com")).await;
    let config = config_file(&w);

    let (code, out, err) = run(&config, &["sync", "--dry-run"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("create"), "{out}");
    assert!(out.contains("dry run: nothing was written"), "{out}");

    let (code, out, err) = run(&config, &["sync", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("fetching"), "no progress with --json: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let mut want = [
        "run_id",
        "status",
        "created",
        "updated",
        "deactivated",
        "linked",
        "unchanged",
        "held",
        "skipped",
        "errors",
        "identity_changed",
        "verified_present",
        "nested_groups",
        "google_requests",
        "duration_ms",
    ];
    want.sort();
    let mut got = keys.clone();
    got.sort();
    assert_eq!(got, want);
    assert_eq!(v["status"], "ok");
    assert_eq!(v["created"], 40);
    assert_eq!(v["google_requests"], 1);

    let (code, out, _) = run(&config, &["sync", "status", "--json"]).await;
    assert_eq!(code, 0);
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["value"]["runs"][0]["run_id"], v["run_id"]);

    // Mass deletion: held, exit 0, and the text says how to approve.
    for u in w.google.users().iter().take(20) {
        w.google.delete(&u.primary_email);
    }
    let (code, out, err) = run(&config, &["sync"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("sync approve"), "{out}");
    let (_, status, _) = run(&config, &["sync", "status"]).await;
    assert!(status.contains("held:"), "{status}");
    let run_id = status
        .lines()
        .find(|l| l.starts_with("held:"))
        .unwrap()
        .split_whitespace()
        .nth(5)
        .unwrap()
        .to_string();
    let (code, out, err) = run(&config, &["sync", "approve", &run_id, "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let a: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(a["deactivated"].as_u64().unwrap() > 5);

    // A failed run exits non-zero and says why.
    w.google.inject(Fault::FailPage {
        endpoint: "users.list",
        page: 1,
        times: 1000,
        status: 400,
        reason: "invalid",
    });
    let (code, out, err) = run(&config, &["sync", "--json"]).await;
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["status"],
        "failed"
    );
    assert!(err.contains("nothing was written"), "{err}");

    let (code, _, err) = run(&config, &["sync", "discard", "20261101T020000Z-000042"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("no held changes"), "{err}");
    let (code, _, err) = run(&config, &["sync", "discard", "no-such-run"]).await;
    assert_eq!(code, 2, "a malformed run id is a usage error");
    assert!(err.contains("is not a run id"), "{err}");
    let (code, _, _) = run(&config, &["sync", "user", "not-an-email"]).await;
    assert_eq!(code, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_file_is_a_clear_failure() {
    let mut w = world(FakeSeed::sample(3, "example.com")).await;
    w.config.google.key_file = Some(w.dir.path().join("missing.json"));
    let config = config_file(&w);
    let (code, _, err) = run(&config, &["sync"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("missing.json"), "{err}");
}
