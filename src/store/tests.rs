use super::*;
use crate::member::{ChangeKind, MemberId};

mod writer;

#[test]
fn the_directory_is_created_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/store");
    let store = Store::open(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
}

#[test]
fn a_second_open_of_a_locked_store_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Store::open(dir.path()).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(err
        .to_string()
        .contains("is in use by another process (is the daemon running?)"));
}

#[test]
fn a_newer_schema_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store
            .meta_tree()
            .insert(META_SCHEMA_VERSION, &(SCHEMA_VERSION + 1).to_be_bytes())
            .unwrap();
        store.flush_blocking().unwrap();
    }
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1));
    assert!(err.to_string().contains("upgrade retrac-sync"));
    // Refusing did not rewrite the version.
    let db = open_db(dir.path(), CACHE_BYTES).unwrap();
    assert_eq!(schema_on_disk(&db), SCHEMA_VERSION + 1);
}

/// The schema version a store's meta tree holds, read past `Store::open`.
pub(super) fn schema_on_disk(db: &sled::Db) -> u32 {
    let v = db
        .open_tree("meta")
        .unwrap()
        .get(META_SCHEMA_VERSION)
        .unwrap()
        .unwrap();
    decode_u32(&v).unwrap()
}

pub(super) fn create(n: usize) -> crate::member::Change {
    let user = crate::member::UserName::parse(&format!("user{n:03}@example.com")).unwrap();
    crate::member::Change::Create {
        attrs: crate::member::DirectoryAttrs::new(user, Some("Ada"), Some("Lovelace")),
        managed_by: crate::member::ManagedBy::Google,
    }
}

pub(super) fn at(sec: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::TimeZone::timestamp_opt(&chrono::Utc, 1_790_000_000 + sec, 0).unwrap()
}

#[test]
fn a_member_that_cannot_be_read_fails_the_snapshot_instead_of_vanishing_from_it() {
    // The pull plans from the snapshot: a member left out of it would be taken for a new one.
    use crate::member::{Actor, Change};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let Change::Create {
        mut attrs,
        managed_by,
    } = create(1)
    else {
        unreachable!()
    };
    attrs
        .scim_extra
        .insert("title".into(), serde_json::json!("Engineer"));
    let actor = Actor::Scim("t".into());
    let m = crate::provision::apply(&store, Change::Create { attrs, managed_by }, &actor, at(0))
        .unwrap()
        .member()
        .clone();
    crate::provision::apply(&store, create(2), &actor, at(0)).unwrap();
    assert_eq!(store.snapshot().unwrap().len(), 2);
    // Its extra attributes are read from the record, which is now damaged.
    store
        .inner
        .members
        .insert(m.id.as_bytes(), &b"\xffnot a record"[..])
        .unwrap();
    assert!(store.snapshot().is_err());
}

/// The mirror does not keep the SCIM extra attributes (docs/decisions/0002); every read and
/// every write still sees them, from the record.
#[test]
fn extra_attributes_live_in_the_record_and_survive_reads_writes_and_reopening() {
    use crate::member::{Actor, Change};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let crate::member::Change::Create {
        mut attrs,
        managed_by,
    } = create(1)
    else {
        unreachable!()
    };
    let mut extra = serde_json::Map::new();
    extra.insert("title".into(), serde_json::json!("Engineer"));
    attrs.scim_extra = extra.clone();
    attrs.external_id = Some("ext-1".into());
    let actor = Actor::Scim("t".into());
    let m = crate::provision::apply(&store, Change::Create { attrs, managed_by }, &actor, at(0))
        .unwrap()
        .member()
        .clone();
    assert_eq!(m.dir.scim_extra, extra);
    let plain = crate::provision::apply(&store, create(2), &actor, at(0))
        .unwrap()
        .member()
        .clone();
    let read = |store: &Store| {
        for got in [
            store.get(m.id).unwrap(),
            store.get_by_user_name("USER001@example.com").unwrap(),
            store.get_by_external_id("ext-1").unwrap(),
            store.find(&m.id.to_string()).unwrap(),
            store.members().map(|r| r.unwrap()).find(|x| x.id == m.id),
        ] {
            assert_eq!(got.unwrap().dir.scim_extra, extra);
        }
        assert!(store
            .get(plain.id)
            .unwrap()
            .unwrap()
            .dir
            .scim_extra
            .is_empty());
    };
    read(&store);
    // An owner's write, which does not touch them, keeps them.
    let change = Change::SetLocations {
        id: m.id,
        locations: vec!["Paris".into()],
    };
    crate::provision::apply(&store, change, &Actor::Owner, at(1)).unwrap();
    read(&store);
    assert_eq!(store.get(m.id).unwrap().unwrap().locations, ["Paris"]);
    assert!(store.check_consistency().unwrap().is_empty());
    store.flush_blocking().unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    read(&store);
    assert!(store.check_consistency().unwrap().is_empty());
}

#[test]
fn a_batchs_audit_entries_are_grouped_and_read_back_by_member_time_and_limit() {
    use crate::member::{Actor, Change};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let changes: Vec<Change> = (0..100).map(create).collect();
    let actor = Actor::Pull(crate::member::RunId::parse("20261101T020000Z-000002").unwrap());
    let results = crate::provision::apply_batch(&store, &changes, &actor, at(0)).unwrap();
    assert!(results.iter().all(|r| r.is_ok()));
    // 100 entries in groups of 32: four keys, not a hundred.
    assert_eq!(store.inner.audit.len(), 100_usize.div_ceil(AUDIT_CHUNK));
    let target = store
        .get_by_user_name("user042@example.com")
        .unwrap()
        .unwrap();
    crate::provision::apply(
        &store,
        Change::Deactivate {
            id: target.id,
            expected_version: Some(target.version),
        },
        &actor,
        at(60),
    )
    .unwrap();

    let all = store.audit(&AuditQuery::default()).unwrap();
    assert_eq!(all.len(), 101);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "oldest first");
    assert_eq!(all[0].user_name, "user000@example.com");
    assert_eq!(all[100].change, ChangeKind::Deactivate);

    let mine = store
        .audit(&AuditQuery {
            member: Some(target.id),
            ..AuditQuery::default()
        })
        .unwrap();
    let kinds: Vec<ChangeKind> = mine.iter().map(|e| e.change).collect();
    assert_eq!(kinds, [ChangeKind::Create, ChangeKind::Deactivate]);
    assert!(mine.iter().all(|e| e.member_id == target.id));

    let since = store
        .audit(&AuditQuery {
            since: Some(at(30)),
            ..AuditQuery::default()
        })
        .unwrap();
    assert_eq!(since.len(), 1);
    assert_eq!(since[0].change, ChangeKind::Deactivate);

    let last3 = store
        .audit(&AuditQuery {
            limit: Some(3),
            ..AuditQuery::default()
        })
        .unwrap();
    let names: Vec<&str> = last3.iter().map(|e| e.user_name.as_str()).collect();
    assert_eq!(
        names,
        [
            "user098@example.com",
            "user099@example.com",
            "user042@example.com"
        ]
    );
    let none = store
        .audit(&AuditQuery {
            limit: Some(0),
            ..AuditQuery::default()
        })
        .unwrap();
    assert!(none.is_empty());
}

/// A new store holding the members `create(n)` makes for each `n`, created by a SCIM
/// client, and that client.
fn store_with<const N: usize>(ns: [usize; N]) -> (tempfile::TempDir, Store, crate::member::Actor) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let actor = crate::member::Actor::Scim("t".into());
    let changes: Vec<_> = ns.into_iter().map(create).collect();
    crate::provision::apply_batch(&store, &changes, &actor, at(0)).unwrap();
    (dir, store, actor)
}

/// `/healthz` reads the counts on every call, so the mirror keeps them with each write
/// rather than counting; they must still agree with the records.
#[test]
fn the_member_counts_follow_every_write_and_agree_with_the_records() {
    use crate::member::Change;
    let (dir, store, actor) = store_with([1, 2, 3]);
    assert_eq!(store.member_counts(), (3, 0));
    let two = store
        .get_by_user_name("user002@example.com")
        .unwrap()
        .unwrap();
    let deactivate = Change::Deactivate {
        id: two.id,
        expected_version: None,
    };
    crate::provision::apply(&store, deactivate.clone(), &actor, at(1)).unwrap();
    assert_eq!(store.member_counts(), (2, 1));
    // Deactivating it again writes nothing and counts nothing.
    crate::provision::apply(&store, deactivate, &actor, at(2)).unwrap();
    assert_eq!(store.member_counts(), (2, 1));
    assert!(store.check_consistency().unwrap().is_empty());
    crate::provision::apply(
        &store,
        Change::Reactivate {
            id: two.id,
            expected_version: None,
        },
        &actor,
        at(3),
    )
    .unwrap();
    assert_eq!(store.member_counts(), (3, 0));
    store.flush_blocking().unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.member_counts(), (3, 0));
    assert!(store.check_consistency().unwrap().is_empty());
}

#[test]
fn the_scim_listing_follows_every_write_at_once() {
    use crate::member::{Actor, Change, DirectoryAttrs, UserName};
    let (dir, store, actor) = store_with([3, 1, 2]);
    let id = |n: &str| store.get_by_user_name(n).unwrap().unwrap();
    let (one, two, three) = (
        id("user001@example.com"),
        id("user002@example.com"),
        id("user003@example.com"),
    );
    assert_eq!(
        store.scim_listing_page(0, 10, false),
        [one.id, two.id, three.id]
    );
    assert_eq!(store.scim_listing_page(1, 1, true), [two.id]);

    // A SCIM delete hides the member; a rename moves it; both at once, in one batch.
    let rename = DirectoryAttrs::new(
        UserName::parse("A-first@Example.com").unwrap(),
        Some("Ada"),
        Some("Lovelace"),
    );
    let batch = [
        Change::ScimDelete {
            id: two.id,
            expected_version: None,
        },
        Change::Update {
            id: three.id,
            expected_version: None,
            attrs: rename,
        },
    ];
    for r in crate::provision::apply_batch(&store, &batch, &actor, at(1)).unwrap() {
        r.unwrap();
    }
    assert_eq!(store.scim_listing_len(), 2);
    assert_eq!(store.scim_listing_page(0, 10, false), [three.id, one.id]);
    assert!(store.check_consistency().unwrap().is_empty());

    // The owner restores the deleted member; the listing has it back, and so does a
    // reopened store.
    crate::provision::apply(&store, Change::Restore { id: two.id }, &Actor::Owner, at(2)).unwrap();
    assert_eq!(
        store.scim_listing_page(0, 10, false),
        [three.id, one.id, two.id]
    );
    store.flush_blocking().unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.scim_listing_page(0, 10, false),
        [three.id, one.id, two.id]
    );
    assert!(store.check_consistency().unwrap().is_empty());
}

/// Writes `m`'s record straight into the members tree, past `provision` and the mirror (for
/// building stores by hand: the mirror is built from the records at the next open).
pub(super) fn put_raw(store: &Store, m: &Member) {
    store
        .inner
        .members
        .insert(m.id.as_bytes(), codec::encode(m).unwrap())
        .unwrap();
}

/// A member as it would be stored, for building old stores by hand.
pub(super) fn raw_member(n: u128, name: &str) -> Member {
    use crate::member::{DirectoryAttrs, ManagedBy, Role, UserName};
    let a = DirectoryAttrs::new(UserName::parse(name).unwrap(), Some("Ada"), None);
    Member {
        id: MemberId(uuid::Uuid::from_u128(n)),
        dir: DirectoryAttrs {
            family_name: None,
            ..a
        },
        locations: vec!["Paris".into()],
        role: Role::Member,
        managed_by: ManagedBy::Google,
        scim_deleted: false,
        created: at(0),
        last_modified: at(0),
        version: 1,
        prior_external_id: None,
    }
}

fn audit_entry(seq: u64, actor: crate::member::Actor, m: &Member, ext: Option<&str>) -> AuditEntry {
    let mut after = std::collections::BTreeMap::new();
    after.insert(
        "userName".to_string(),
        serde_json::json!(m.dir.user_name.as_str()),
    );
    if let Some(e) = ext {
        after.insert("externalId".to_string(), serde_json::json!(e));
    }
    AuditEntry {
        seq,
        time: at(seq as i64),
        actor,
        member_id: m.id,
        user_name: m.dir.user_name.to_string(),
        change: ChangeKind::Update,
        before: Default::default(),
        after,
    }
}

/// Writes a schema 2 store: format-1 records with one `external_id`, the two index
/// trees, and an audit that says who set each id. Returns the members by name.
pub(super) fn write_schema_2(path: &Path, already_converted: &[u128]) -> Vec<Member> {
    use crate::member::Actor;
    let pull = || Actor::Pull(crate::member::RunId::parse("20261101T020000Z-000002").unwrap());
    let scim = || Actor::Scim("entra".into());
    let a = raw_member(1, "a@example.com"); // created by the pull with its Google id
    let b = raw_member(2, "b@example.com"); // created by SCIM with an externalId
    let c = raw_member(3, "c@example.com"); // SCIM, then linked by the pull
    let d = raw_member(4, "d@example.com"); // an id no audit entry explains
    let e = raw_member(5, "e@example.com"); // pull, then a SCIM PUT with its own id
    let f = raw_member(6, "f@example.com"); // no id at all
    let ids = [
        (&a, Some("g-a")),
        (&b, Some("entra-b")),
        (&c, Some("g-c")),
        (&d, Some("x-d")),
        (&e, Some("entra-e")),
        (&f, None),
    ];
    let entries = [
        audit_entry(1, pull(), &a, Some("g-a")),
        audit_entry(2, scim(), &b, Some("entra-b")),
        audit_entry(3, scim(), &c, None),
        audit_entry(4, pull(), &c, Some("g-c")),
        audit_entry(5, pull(), &e, Some("g-e")),
        audit_entry(6, scim(), &e, Some("entra-e")),
        audit_entry(7, scim(), &f, None),
    ];
    let db = open_db(path, CACHE_BYTES).unwrap();
    db.open_tree("meta")
        .unwrap()
        .insert(META_SCHEMA_VERSION, &2u32.to_be_bytes())
        .unwrap();
    let members = db.open_tree("members").unwrap();
    let names = db.open_tree("idx_user_name").unwrap();
    let exts = db.open_tree("idx_external_id").unwrap();
    for (m, ext) in ids {
        let bytes = if already_converted.contains(&m.id.0.as_u128()) {
            // A crash left this one converted already (as the upgrade decides it).
            let mut conv = m.clone();
            match m.id.0.as_u128() {
                1 | 3 => conv.dir.google_id = ext.map(str::to_string),
                _ => conv.dir.external_id = ext.map(str::to_string),
            }
            codec::encode(&conv).unwrap()
        } else {
            codec::encode_v1(m, ext)
        };
        members.insert(m.id.as_bytes(), bytes).unwrap();
        names
            .insert(m.dir.user_name.normalized().as_bytes(), m.id.as_bytes())
            .unwrap();
        if let Some(x) = ext {
            exts.insert(x.as_bytes(), m.id.as_bytes()).unwrap();
        }
    }
    let audit = db.open_tree("audit").unwrap();
    for group in entries.chunks(3) {
        let key = audit::key(group[0].time, group[0].seq);
        audit
            .insert(&key[..], serde_json::to_vec(group).unwrap())
            .unwrap();
    }
    db.flush().unwrap();
    vec![a, b, c, d, e, f]
}

/// Asserts that `err` is a collision on `what` that names both members; returns its text.
pub(super) fn assert_collision(err: StoreError, what: &str, names: [&str; 2]) -> String {
    let text = err.to_string();
    assert!(
        matches!(&err, StoreError::Collision { what: w, .. } if *w == what),
        "{err:?}"
    );
    assert!(text.contains(names[0]) && text.contains(names[1]), "{text}");
    text
}

#[test]
fn two_records_with_one_google_id_are_a_corrupt_store_and_the_open_names_both() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        for (n, name) in [(1, "a@example.com"), (2, "b@example.com")] {
            let mut m = raw_member(n, name);
            m.dir.google_id = Some("g-1".into());
            put_raw(&store, &m);
        }
        store.flush_blocking().unwrap();
    }
    let text = assert_collision(
        Store::open(dir.path()).unwrap_err(),
        "Google id",
        ["a@example.com", "b@example.com"],
    );
    assert!(text.contains("\"g-1\""), "{text}");
}

/// The open reads the records on one thread and fills the tables on another, in
/// batches: a collision or an unreadable record several batches in is found and named
/// as on one thread, and the open ends (no thread is left waiting).
#[test]
fn the_open_finds_a_collision_or_a_bad_record_past_its_first_batches() {
    let n = 3 * mirror::OPEN_BATCH as u128 + 7;
    let write = |dir: &Path, last: Option<Vec<u8>>| {
        let store = Store::open(dir).unwrap();
        for i in 1..=n {
            let m = raw_member(i, &format!("user{i}@example.com"));
            put_raw(&store, &m);
        }
        if let Some(bytes) = last {
            let id = MemberId(uuid::Uuid::from_u128(n + 1));
            store.inner.members.insert(id.as_bytes(), bytes).unwrap();
        }
        store.flush_blocking().unwrap();
    };
    // The last record takes the user name of one in the first batch.
    let dir = tempfile::tempdir().unwrap();
    let twin = raw_member(n + 1, "USER5@example.com");
    write(dir.path(), Some(codec::encode(&twin).unwrap()));
    assert_collision(
        Store::open(dir.path()).unwrap_err(),
        "user name",
        ["user5@example.com", "USER5@example.com"],
    );
    // The last record cannot be read.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), Some(b"not a record".to_vec()));
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    // And without either, every member is there.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), None);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.member_count(), n as usize);
    assert!(store.check_consistency().unwrap().is_empty());
    assert!(store
        .get_by_user_name("USER2000@example.com")
        .unwrap()
        .is_some());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
    #[test]
    fn the_index_finds_a_name_exactly_when_it_is_equal(
        a in proptest::collection::vec(proptest::sample::select(crate::member::tests::TRICKY), 1..4),
        b in proptest::collection::vec(proptest::sample::select(crate::member::tests::TRICKY), 1..4),
    ) {
        use crate::member::{Actor, Change, DirectoryAttrs, ManagedBy, UserName};
        let a = UserName::parse(&format!("{}@example.com", a.concat())).unwrap();
        let b = UserName::parse(&format!("{}@example.com", b.concat())).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let created = crate::provision::apply(
            &store,
            Change::Create { attrs: DirectoryAttrs::new(a.clone(), None, None), managed_by: ManagedBy::Google },
            &Actor::Owner,
            at(0),
        ).unwrap();
        let found = store.id_by_user_name(b.as_str()).unwrap();
        proptest::prop_assert_eq!(found.is_some(), a == b);
        proptest::prop_assert_eq!(found.is_some(), b == a);
        let second = crate::provision::apply(
            &store,
            Change::Create { attrs: DirectoryAttrs::new(b.clone(), None, None), managed_by: ManagedBy::Google },
            &Actor::Owner,
            at(1),
        );
        proptest::prop_assert_eq!(second.is_err(), a == b);
        proptest::prop_assert_eq!(store.id_by_user_name(a.as_str()).unwrap(), Some(created.member().id));
    }
}

#[test]
fn the_audit_retention_removes_old_entries_in_batches_and_says_what_is_left() {
    use crate::member::{Actor, Change};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let day = 86_400;
    // 200 transactions, one a day: 200 audit keys.
    for d in 0..200 {
        crate::provision::apply(&store, create(d), &Actor::Owner, at(d as i64 * day)).unwrap();
    }
    assert_eq!(store.oldest_audit_entry().unwrap(), Some(at(0)));
    // Keep forever: nothing goes.
    let now = at(200 * day);
    let kept = store.prune_audit(now, 0).unwrap();
    assert_eq!(kept.removed_keys, 0);
    assert_eq!(store.audit(&AuditQuery::default()).unwrap().len(), 200);
    // Keep 30 days: entries of days 0..=169 go, in batches of at most 64 keys.
    let r = store.prune_audit(now, 30).unwrap();
    assert_eq!(r.removed_keys, 170);
    assert!(r.batches > 170 / AUDIT_PRUNE_KEYS, "{r:?}");
    assert_eq!(r.oldest_left, Some(at(170 * day)));
    assert_eq!(store.oldest_audit_entry().unwrap(), Some(at(170 * day)));
    let left = store.audit(&AuditQuery::default()).unwrap();
    assert_eq!(left.len(), 30);
    assert_eq!(left[0].user_name, "user170@example.com");
    // A second pass the same day has nothing to do; writes go on as before.
    assert_eq!(store.prune_audit(now, 30).unwrap().removed_keys, 0);
    crate::provision::apply(
        &store,
        Change::SetRole {
            id: store
                .get_by_user_name("user001@example.com")
                .unwrap()
                .unwrap()
                .id,
            role: crate::member::Role::Owner,
        },
        &Actor::Owner,
        now,
    )
    .unwrap();
    assert_eq!(store.audit(&AuditQuery::default()).unwrap().len(), 31);
}

#[test]
fn a_lazy_store_finds_one_member_and_streams_the_rest_from_the_records_until_it_needs_the_mirror() {
    use crate::member::Actor;
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let changes: Vec<_> = (0..300).map(create).collect();
        crate::provision::apply_batch(&store, &changes, &Actor::Owner, at(0)).unwrap();
        crate::provision::apply(
            &store,
            crate::member::Change::Create {
                attrs: crate::member::DirectoryAttrs::new(
                    crate::member::UserName::parse("ΣΑΣ@example.com").unwrap(),
                    None,
                    None,
                ),
                managed_by: crate::member::ManagedBy::Google,
            },
            &Actor::Owner,
            at(1),
        )
        .unwrap();
        store.flush_blocking().unwrap();
    }
    let lazy = Store::open_lazy(dir.path()).unwrap();
    let m = lazy.find("USER150@example.com").unwrap().unwrap();
    assert_eq!(m.dir.user_name.as_str(), "user150@example.com");
    assert_eq!(lazy.find(&m.id.to_string()).unwrap().unwrap(), m);
    assert_eq!(
        lazy.find("σας@EXAMPLE.com")
            .unwrap()
            .unwrap()
            .dir
            .user_name
            .as_str(),
        "ΣΑΣ@example.com"
    );
    assert!(lazy.find("nobody@example.com").unwrap().is_none());
    // The listing from the records is in the mirror's order (folded user name).
    let listed: Vec<Member> = lazy.members().map(|m| m.unwrap()).collect();
    assert_eq!(listed.len(), 301);
    assert!(listed
        .windows(2)
        .all(|w| w[0].dir.user_name.normalized() < w[1].dir.user_name.normalized()));
    assert_eq!(listed[300].dir.user_name.as_str(), "ΣΑΣ@example.com");
    assert!(!lazy.mirror_built(), "find and members read the records");
    // It holds the lock as the store does.
    assert!(matches!(
        Store::open(dir.path()),
        Err(StoreError::Locked { .. })
    ));
    // Anything else builds the mirror, once; then the same answers come from it.
    assert_eq!(lazy.member_count(), 301);
    assert!(lazy.mirror_built());
    assert_eq!(lazy.find("USER150@example.com").unwrap().unwrap(), m);
    let from_mirror: Vec<Member> = lazy.members().map(|m| m.unwrap()).collect();
    assert_eq!(from_mirror, listed);
    crate::provision::apply(&lazy, create(400), &Actor::Owner, at(2)).unwrap();
    assert_eq!(lazy.member_count(), 302);
    drop(lazy);
    // An old store is upgraded by the lazy open, as by the full one.
    let old = tempfile::tempdir().unwrap();
    write_schema_2(old.path(), &[]);
    let lazy = Store::open_lazy(old.path()).unwrap();
    let a = lazy.find("a@example.com").unwrap().unwrap();
    assert_eq!(a.dir.google_id.as_deref(), Some("g-a"));
}

#[test]
fn a_lazy_store_whose_records_collide_turns_read_only_when_it_builds_the_mirror() {
    use crate::member::Actor;
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        crate::provision::apply(&store, create(1), &Actor::Owner, at(0)).unwrap();
        // A second record with the same user name, written past the write path.
        let (k, v) = store.inner.members.iter().next().unwrap().unwrap();
        let mut other = k.to_vec();
        other[15] ^= 1;
        store.inner.members.insert(other, v).unwrap();
        store.flush_blocking().unwrap();
    }
    assert!(matches!(
        Store::open(dir.path()),
        Err(StoreError::Collision { .. })
    ));
    let lazy = Store::open_lazy(dir.path()).unwrap();
    assert!(lazy.find("user001@example.com").unwrap().is_some());
    assert_eq!(lazy.member_count(), 0);
    assert!(lazy.flush_failure().unwrap().contains("cannot be indexed"));
    let err = crate::provision::apply(&lazy, create(2), &Actor::Owner, at(1)).unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
}

#[tokio::test]
async fn the_retention_task_prunes_by_its_clock_and_stops_when_told() {
    use crate::member::Actor;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for d in 0..3 {
        crate::provision::apply(&store, create(d), &Actor::Owner, at(d as i64 * 86_400)).unwrap();
    }
    assert!(spawn_audit_retention(store.clone(), 0, chrono::Utc::now, async {}).is_none());
    // The injected clock puts "now" 401 days after the second entry.
    fn clock() -> chrono::DateTime<chrono::Utc> {
        at(86_400 * 402)
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = spawn_audit_retention(store.clone(), 400, clock, async {
        let _ = stopped.await;
    })
    .unwrap();
    for _ in 0..200 {
        if store.oldest_audit_entry().unwrap() == Some(at(2 * 86_400)) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(store.oldest_audit_entry().unwrap(), Some(at(2 * 86_400)));
    stop.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

/// Each open keeps the id of its middle record, and the next open cuts the members there for
/// its two readers: two halves of one size, however the ids are spread.
#[test]
fn the_open_cuts_the_members_at_the_last_opens_middle_record() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        // Ids far from evenly spread: 100 close together, then one far away.
        for n in (1..=100).chain([1u128 << 100]) {
            let m = raw_member(n, &format!("user{n}@example.com"));
            put_raw(&store, &m);
        }
        store.flush_blocking().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let kept = store.inner.meta.get(META_SPLIT_KEY).unwrap().unwrap();
    assert_eq!(&kept[..], MemberId(uuid::Uuid::from_u128(51)).as_bytes());
    let sizes: Vec<usize> = key_halves(&store.inner.meta, &store.inner.members)
        .into_iter()
        .map(|part| part.count())
        .collect();
    assert_eq!(sizes, [50, 51]);
    assert_eq!(store.member_count(), 101);
}
