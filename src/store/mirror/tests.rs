use super::*;
use chrono::{TimeZone, Utc};

fn member(name: &str) -> Member {
    let now = Utc
        .timestamp_micros(1_790_000_000_123_456)
        .single()
        .unwrap();
    Member {
        id: MemberId::new_random(),
        dir: DirectoryAttrs {
            user_name: UserName::parse(name).unwrap(),
            emails: vec![Email::primary_work(name)],
            given_name: Some("Ada".into()),
            family_name: None,
            display_name: Some(String::new()),
            active: true,
            google_id: Some("1045".into()),
            external_id: None,
            scim_extra: serde_json::Map::new(),
        },
        locations: vec!["Paris".into(), "Lyon".into()],
        role: Role::Owner,
        managed_by: ManagedBy::Google,
        scim_deleted: false,
        created: now,
        last_modified: now,
        prior_external_id: None,
        version: 7,
    }
}

#[test]
fn an_entry_gives_back_the_member_it_was_made_of_but_its_extra_attributes() {
    let mut interner = Interner::default();
    let mut shapes = vec![member("ada@example.com"), member("ΣΑΣ.Kelvin@Example.com")];
    shapes[1].dir.emails = vec![
        Email {
            value: "other@example.com".into(),
            kind: None,
            primary: false,
        },
        Email::primary_work("x@example.com"),
    ];
    shapes[1].dir.external_id = Some("ext".into());
    shapes[1].dir.google_id = None;
    shapes[1].role = Role::Member;
    shapes[1].managed_by = ManagedBy::Manual;
    shapes[1].scim_deleted = true;
    shapes[1].dir.active = false;
    shapes[1].locations.clear();
    let mut no_email = member("noemail@example.com");
    no_email.dir.emails.clear();
    shapes.push(no_email);
    for m in shapes {
        let e = Entry::of_member(&m, &mut interner);
        assert_eq!(e.to_member().unwrap(), m);
        assert_eq!(e.name_key(), m.dir.user_name.normalized());
        assert_eq!(e.visible_to_scim(), m.visible_to_scim());
        assert!(!e.has_extra());
        // The record read in place makes the same entry.
        let bytes = super::super::codec::encode(&m).unwrap();
        let rec = super::super::codec::decode_ref(&bytes).unwrap();
        assert_eq!(Entry::of_record(&rec, &mut interner).unwrap(), e);
    }
    // Locations are shared between members.
    let (a, b) = (member("a@example.com"), member("b@example.com"));
    let (ea, eb) = (
        Entry::of_member(&a, &mut interner),
        Entry::of_member(&b, &mut interner),
    );
    assert!(Arc::ptr_eq(&ea.locations[0], &eb.locations[0]));
    // Extra attributes are left out; the entry says there are some.
    let mut x = member("x@example.com");
    x.dir
        .scim_extra
        .insert("title".into(), serde_json::json!("Engineer"));
    let e = Entry::of_member(&x, &mut interner);
    assert!(e.has_extra());
    assert!(e.to_member().unwrap().dir.scim_extra.is_empty());
}

#[test]
fn the_plan_reads_an_entry_exactly_as_it_reads_the_member_it_was_made_of() {
    // Members that differ from one another in every pulled attribute, with both email
    // layouts (the default one the entry leaves out, and a list it keeps), and names
    // that are `None`, empty and set.
    let mut shapes = vec![member("ada@example.com"), member("Ada@Example.com")];
    let mut listed = member("ada@example.com");
    listed.dir.emails.push(Email {
        value: "alias@example.com".into(),
        kind: None,
        primary: false,
    });
    shapes.push(listed.clone());
    let mut other_kind = member("ada@example.com");
    other_kind.dir.emails[0].kind = Some("home".into());
    shapes.push(other_kind);
    let mut not_primary = member("ada@example.com");
    not_primary.dir.emails[0].primary = false;
    shapes.push(not_primary);
    let mut swapped = listed.clone();
    swapped.dir.emails.reverse();
    shapes.push(swapped);
    let mut bare = member("ada@example.com");
    bare.dir.emails.clear();
    bare.dir.given_name = None;
    bare.dir.family_name = Some(String::new());
    bare.dir.display_name = Some("Ada L.".into());
    bare.dir.active = false;
    bare.dir.google_id = None;
    bare.dir.external_id = Some("ext-1".into());
    bare.managed_by = ManagedBy::Manual;
    bare.scim_deleted = true;
    bare.version = 9;
    shapes.push(bare);
    let mut interner = Interner::default();
    for m in &shapes {
        let e = Entry::of_member(m, &mut interner);
        assert_eq!(MemberLike::id(&e), m.id);
        assert_eq!(MemberLike::version(&e), m.version);
        assert_eq!(MemberLike::user_name(&e), MemberLike::user_name(m));
        assert_eq!(e.folded_user_name(), m.folded_user_name());
        assert_eq!(MemberLike::google_id(&e), MemberLike::google_id(m));
        assert_eq!(MemberLike::active(&e), MemberLike::active(m));
        assert_eq!(MemberLike::scim_deleted(&e), MemberLike::scim_deleted(m));
        assert_eq!(MemberLike::managed_by(&e), MemberLike::managed_by(m));
        for other in &shapes {
            for f in Field::ALL {
                assert_eq!(
                    e.differs(f, &other.dir),
                    f.differs(&m.dir, &other.dir),
                    "{f:?}: {:?} against {:?}",
                    m.dir,
                    other.dir
                );
            }
        }
    }
    // Each shape differs from some other one in each field, so no answer is a constant.
    for f in Field::ALL {
        assert!(
            shapes
                .iter()
                .any(|a| shapes.iter().any(|b| f.differs(&a.dir, &b.dir))),
            "{f:?}"
        );
    }
}

#[test]
fn the_indexes_follow_renames_and_swaps_within_one_transaction() {
    let a = member("a@example.com");
    let mut b = member("b@example.com");
    b.dir.google_id = Some("g-b".into());
    let mirror_of = |ms: Vec<Member>| Mirror::build(ms.into_iter().map(Ok)).unwrap();
    let mut mirror = mirror_of(vec![a.clone(), b.clone()]);
    assert_eq!(mirror.id_by_name("a@example.com"), Some(a.id));
    assert_eq!(mirror.id_by_google_id("1045"), Some(a.id));
    // a and b swap names and Google ids in one transaction.
    let (mut a2, mut b2) = (a.clone(), b.clone());
    std::mem::swap(&mut a2.dir.user_name, &mut b2.dir.user_name);
    std::mem::swap(&mut a2.dir.google_id, &mut b2.dir.google_id);
    let mut overlay = Overlay::default();
    overlay.members.insert(a.id, a2.clone());
    overlay.members.insert(b.id, b2.clone());
    mirror.apply(overlay);
    assert_eq!(mirror.id_by_name("b@example.com"), Some(a.id));
    assert_eq!(mirror.id_by_name("a@example.com"), Some(b.id));
    assert_eq!(mirror.id_by_google_id("1045"), Some(b.id));
    assert_eq!(mirror.id_by_google_id("g-b"), Some(a.id));
    assert!(mirror.differences(&mirror_of(vec![a2, b2])).is_empty());
    // Two records with one Google id fail the build, naming both.
    let mut c = member("c@example.com");
    c.dir.google_id = Some("g-b".into());
    let err = Mirror::build([Ok(b.clone()), Ok(c.clone())]).err().unwrap();
    assert!(err.to_string().contains(&c.id.to_string()), "{err}");
}

/// The records of `names`, in order, encoded as the store keeps them.
fn records(names: &[String]) -> Vec<sled::IVec> {
    names
        .iter()
        .map(|n| {
            let mut m = member(n);
            m.dir.google_id = None;
            sled::IVec::from(crate::store::codec::encode(&m).unwrap())
        })
        .collect()
}

type Part = std::vec::IntoIter<Result<sled::IVec, StoreError>>;

/// `records` cut into parts at `cuts`.
fn parts(records: Vec<Result<sled::IVec, StoreError>>, cuts: &[usize]) -> Vec<Part> {
    let mut out = Vec::new();
    let mut rest = records;
    for &cut in cuts.iter().rev() {
        out.push(rest.split_off(cut).into_iter());
    }
    out.push(rest.into_iter());
    out.reverse();
    out
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user{i}@example.com")).collect()
}

/// Read in two or three parts, on as many threads, the mirror holds what one part gives:
/// every member, each found by its name, in the same listing order.
#[test]
fn an_open_in_parts_builds_the_mirror_one_part_builds() {
    let n = 3 * OPEN_BATCH + 11;
    let ok = |v: Vec<sled::IVec>| v.into_iter().map(Ok).collect::<Vec<_>>();
    let recs = records(&names(n));
    let one = Mirror::build_from_records(parts(ok(recs.clone()), &[]), n).unwrap();
    for cuts in [
        &[n / 2][..],
        &[OPEN_BATCH, 2 * OPEN_BATCH + 5][..],
        &[0][..],
        &[n][..],
    ] {
        let many = Mirror::build_from_records(parts(ok(recs.clone()), cuts), n).unwrap();
        assert_eq!(many.len(), n, "{cuts:?}");
        for name in [&names(n)[0], &names(n)[n / 2], &names(n)[n - 1]] {
            assert_eq!(
                many.id_by_name(name),
                one.id_by_name(name),
                "{cuts:?} {name}"
            );
            assert!(many.id_by_name(name).is_some());
        }
        let page = |m: &Mirror| m.scim_page(0, n, false);
        assert_eq!(page(&many), page(&one), "{cuts:?}");
    }
}

/// Errors are found and named in the records' order, whichever thread meets them: a
/// collision across the parts names the first holder first; an unreadable record in the
/// first part wins over a collision behind it in the second, and a collision in the first
/// over an unreadable record in the second.
#[test]
fn an_open_in_parts_names_the_first_error_in_the_records_order() {
    let n = 2 * OPEN_BATCH + 3;
    let mut list = names(n);
    // The last record takes the name of the fifth.
    list[n - 1] = "USER5@example.com".into();
    let recs = records(&list);
    let ok = |v: &[sled::IVec]| v.iter().cloned().map(Ok).collect::<Vec<_>>();
    let build_err = |p| match Mirror::build_from_records(p, n) {
        Ok(_) => panic!("the build succeeded"),
        Err(e) => e,
    };
    let err = build_err(parts(ok(&recs), &[n / 2]));
    let text = err.to_string();
    assert!(matches!(err, StoreError::Collision { .. }), "{err:?}");
    let (first, second) = (text.find("user5@").unwrap(), text.find("USER5@").unwrap());
    assert!(first < second, "{text}");

    let mut bad_first = ok(&recs);
    bad_first[10] = Ok(sled::IVec::from(&b"not a record"[..]));
    let err = build_err(parts(bad_first, &[n / 2]));
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");

    let mut list = names(n);
    list[20] = "USER5@example.com".into();
    let mut collide_first = ok(&records(&list));
    collide_first[n - 2] = Ok(sled::IVec::from(&b"not a record"[..]));
    let err = build_err(parts(collide_first, &[n / 2]));
    assert!(matches!(err, StoreError::Collision { .. }), "{err:?}");
}

/// A store read on two threads at open can be dropped and opened again
/// at once, again and again: the second reader leaves nothing holding sled's lock.
#[test]
fn a_store_read_in_two_parts_reopens_at_once() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = crate::store::Store::open(dir.path()).unwrap();
        for i in 0..(3 * OPEN_BATCH + 100) as u128 {
            let mut m = member(&format!("user{i}@example.com"));
            m.id = MemberId(uuid::Uuid::from_u128(i + 1));
            m.dir.google_id = None;
            crate::store::tests::put_raw(&store, &m);
        }
        store.flush_blocking().unwrap();
    }
    for _ in 0..10 {
        let store = crate::store::Store::open(dir.path()).unwrap();
        assert_eq!(store.member_count(), 3 * OPEN_BATCH + 100);
    }
}
