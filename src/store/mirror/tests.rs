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
