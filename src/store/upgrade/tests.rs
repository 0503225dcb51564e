//! The upgrade of a schema 1 or 2 store in place. The builders of old stores
//! (`write_schema_2`, `raw_member`) are in `store/tests.rs`, shared with the lazy open's test.

use super::*;
use crate::member::MemberId;
use crate::store::tests::{
    assert_collision, at, create, raw_member, schema_on_disk, write_schema_2,
};
use crate::store::{open_db, AuditQuery, Store, CACHE_BYTES};

#[test]
fn a_schema_1_store_is_upgraded_in_place_and_its_audit_still_reads() {
    let dir = tempfile::tempdir().unwrap();
    let old_entry = serde_json::json!({
        "seq": 7,
        "time": "2026-09-21T10:00:00Z",
        "actor": {"kind": "owner"},
        "member_id": "0192a3b4-c5d6-7e8f-9a0b-1c2d3e4f5a6b",
        "user_name": "old@example.com",
        "change": "create",
        "before": {},
        "after": {"userName": "old@example.com"}
    });
    {
        // A store as schema 1 wrote it: one entry per key, a per-member audit index.
        let db = open_db(dir.path(), CACHE_BYTES).unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert(META_SCHEMA_VERSION, &1u32.to_be_bytes())
            .unwrap();
        let time: chrono::DateTime<chrono::Utc> = "2026-09-21T10:00:00Z".parse().unwrap();
        let key = audit::key(time, 7);
        db.open_tree("audit")
            .unwrap()
            .insert(&key[..], serde_json::to_vec(&old_entry).unwrap())
            .unwrap();
        db.open_tree("audit_by_member")
            .unwrap()
            .insert(b"anything", &[][..])
            .unwrap();
        db.flush().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert!(!store
        .inner
        .db
        .tree_names()
        .iter()
        .any(|n| &n[..] == b"audit_by_member"));
    crate::provision::apply(
        &store,
        create(1),
        &crate::member::Actor::Owner,
        chrono::Utc::now(),
    )
    .unwrap();
    let entries = store.audit(&AuditQuery::default()).unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].user_name, "old@example.com");
    assert_eq!(entries[0].seq, 7);
    assert_eq!(entries[1].user_name, "user001@example.com");
}

fn tree_names(store: &Store) -> Vec<String> {
    store
        .inner
        .db
        .tree_names()
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect()
}

fn check_upgraded(store: &Store) {
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    let names = tree_names(store);
    for gone in SCHEMA_2_INDEX_TREES {
        assert!(!names.iter().any(|n| n == gone), "{gone} in {names:?}");
    }
    let get = |n: &str| store.get_by_user_name(n).unwrap().unwrap();
    let ids = |n: &str| {
        let m = get(n);
        (m.dir.google_id, m.dir.external_id)
    };
    let s = |v: &str| Some(v.to_string());
    assert_eq!(ids("a@example.com"), (s("g-a"), None), "set by the pull");
    assert_eq!(ids("b@example.com"), (None, s("entra-b")), "set by SCIM");
    assert_eq!(ids("c@example.com"), (s("g-c"), None), "linked by the pull");
    assert_eq!(ids("d@example.com"), (None, s("x-d")), "no audit: SCIM's");
    assert_eq!(
        ids("e@example.com"),
        (None, s("entra-e")),
        "SCIM wrote last"
    );
    assert_eq!(ids("f@example.com"), (None, None));
    assert_eq!(
        store.get_by_google_id("g-a").unwrap().unwrap().id,
        get("a@example.com").id
    );
    assert_eq!(
        store.get_by_external_id("entra-b").unwrap().unwrap().id,
        get("b@example.com").id
    );
    assert!(store.get_by_external_id("g-a").unwrap().is_none());
    // Every record is in the new format, and the rest of a record is as it was.
    for kv in store.inner.members.iter() {
        assert!(codec::is_current(&kv.unwrap().1));
    }
    assert_eq!(get("f@example.com").locations, ["Paris"]);
    assert!(store.check_consistency().unwrap().is_empty());
    let audit = store.audit(&AuditQuery::default()).unwrap();
    assert_eq!(
        audit[..7].iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6, 7]
    );
}

#[test]
fn a_schema_2_store_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    write_schema_2(dir.path(), &[]);
    let store = Store::open(dir.path()).unwrap();
    check_upgraded(&store);
    // A write after the upgrade is one record; reopening reads it back.
    crate::provision::apply(&store, create(7), &crate::member::Actor::Owner, at(9)).unwrap();
    store.flush_blocking().unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    check_upgraded(&store);
    assert_eq!(store.member_count(), 7);
}

#[test]
fn the_upgrade_to_schema_3_can_be_run_again_after_a_crash() {
    // A crash after some records were converted, before the index trees were dropped
    // and the version written: the next open finishes the job the same way.
    let dir = tempfile::tempdir().unwrap();
    write_schema_2(dir.path(), &[1, 2, 6]);
    let store = Store::open(dir.path()).unwrap();
    check_upgraded(&store);
    drop(store);
    // A crash after everything but the version: the trees are gone, records converted.
    {
        let db = open_db(dir.path(), CACHE_BYTES).unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert(META_SCHEMA_VERSION, &2u32.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    check_upgraded(&store);
}

#[test]
fn an_upgrade_that_would_fold_two_names_together_refuses_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write_schema_2(dir.path(), &[]);
    {
        // Schema 2 lower-cased Σ to σ but did not fold the final ς: two members.
        let db = open_db(dir.path(), CACHE_BYTES).unwrap();
        let members = db.open_tree("members").unwrap();
        for (n, name) in [(10, "σας@example.com"), (11, "ΣΑΣ@example.com")] {
            let m = raw_member(n, name);
            members
                .insert(m.id.as_bytes(), codec::encode_v1(&m, None))
                .unwrap();
        }
        db.flush().unwrap();
    }
    let text = assert_collision(
        Store::open(dir.path()).unwrap_err(),
        "user name",
        ["σας@example.com", "ΣΑΣ@example.com"],
    );
    assert!(
        text.contains(&MemberId(uuid::Uuid::from_u128(10)).to_string()),
        "{text}"
    );
    assert!(
        text.contains(&MemberId(uuid::Uuid::from_u128(11)).to_string()),
        "{text}"
    );
    // Nothing was written: still schema 2, index trees and old records in place.
    let db = open_db(dir.path(), CACHE_BYTES).unwrap();
    assert_eq!(schema_on_disk(&db), 2);
    let names: Vec<Vec<u8>> = db.tree_names().iter().map(|n| n.to_vec()).collect();
    assert!(names.iter().any(|n| n == b"idx_user_name"));
    for kv in db.open_tree("members").unwrap().iter() {
        assert!(!codec::is_current(&kv.unwrap().1));
    }
}
