use super::*;

fn report(run_id: Option<RunId>, status: RunStatus) -> SyncReport {
    SyncReport {
        run_id,
        status,
        counts: RunCounts::default(),
        google_requests: 3,
        duration_ms: 12,
    }
}

/// The types stay off the wire: `sync --output json`, the admin socket and `/healthz`
/// print the same strings as when the report held them as text.
#[test]
fn a_report_reads_and_writes_the_strings_it_always_printed() {
    let dry = serde_json::to_value(report(None, RunStatus::Ok)).unwrap();
    assert_eq!(dry["run_id"], "");
    assert_eq!(dry["status"], "ok");
    let id = RunId::parse("20261101T020000Z-000042").unwrap();
    let held = report(Some(id), RunStatus::Held);
    let wire = serde_json::to_value(&held).unwrap();
    assert_eq!(wire["run_id"], "20261101T020000Z-000042");
    assert_eq!(wire["status"], "held");
    assert_eq!(serde_json::from_value::<SyncReport>(wire).unwrap(), held);
    assert_eq!(
        serde_json::from_value::<SyncReport>(dry).unwrap(),
        report(None, RunStatus::Ok),
        "an empty run id reads back as a dry run"
    );
    let failed = serde_json::to_value(report(None, RunStatus::Failed)).unwrap();
    assert_eq!(failed["status"], "failed");
    let mut bad = failed;
    bad["run_id"] = "last-tuesday".into();
    assert!(serde_json::from_value::<SyncReport>(bad).is_err());
}
