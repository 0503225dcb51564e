use super::*;

#[test]
fn user_names_compare_case_insensitively_and_keep_their_case() {
    let a = UserName::parse("  Grace.Hopper@Example.com ").unwrap();
    let b = UserName::parse("grace.hopper@example.COM").unwrap();
    assert_eq!(a, b);
    assert_eq!(a.as_str(), "Grace.Hopper@Example.com");
    assert_eq!(a.normalized(), "grace.hopper@example.com");
    assert_eq!(a.domain(), "example.com");
    assert_ne!(a, UserName::parse("grace@example.com").unwrap());
}

#[test]
fn user_names_compare_by_nfkc_and_full_case_folding_in_every_script() {
    let same = |a: &str, b: &str| {
        UserName::parse_identifier(a).unwrap() == UserName::parse_identifier(b).unwrap()
    };
    // Greek: capital sigma, small sigma, final sigma.
    assert!(same("ΣΑΣ@example.com", "σασ@example.com"));
    assert!(same("ΣΑΣ@example.com", "σας@example.com"));
    // Titlecase and lowercase digraph dz with caron (and the compatibility d + ž).
    assert!(same("ǅa@example.com", "ǆa@example.com"));
    assert!(same("Ǆa@example.com", "dža@example.com"));
    // The Kelvin sign is K.
    assert!(same("\u{212A}im@example.com", "kim@example.com"));
    // Full (not simple) folding: ß is ss; NFKC: the ligature ﬁ is fi, é composed or not.
    assert!(same("STRASSE@example.com", "straße@example.com"));
    assert!(same("ﬁn@example.com", "FIN@example.com"));
    assert!(same("e\u{301}@example.com", "\u{e9}@example.com"));
    assert!(!same("sasa@example.com", "σασ@example.com"));
    // The stored name keeps its case.
    let u = UserName::parse("ΣΑΣ@Example.com").unwrap();
    assert_eq!(u.as_str(), "ΣΑΣ@Example.com");
    assert_eq!(u.normalized(), "σασ@example.com");
}

proptest::proptest! {
    #[test]
    fn user_name_eq_is_symmetric_and_is_equality_of_the_key(
        a in proptest::collection::vec(proptest::sample::select(TRICKY), 1..5),
        b in proptest::collection::vec(proptest::sample::select(TRICKY), 1..5),
    ) {
        let a = UserName::parse(&format!("{}@example.com", a.concat())).unwrap();
        let b = UserName::parse(&format!("{}@example.com", b.concat())).unwrap();
        proptest::prop_assert_eq!(a == b, b == a);
        proptest::prop_assert_eq!(a == b, a.normalized() == b.normalized());
        proptest::prop_assert!(a == a.clone());
        // The key is stable: a name made of the key is equal to the name.
        let k = UserName::parse(&a.normalized()).unwrap();
        proptest::prop_assert!(k == a);
    }
}

/// Pieces of local parts that fold onto each other, or almost do.
pub(crate) const TRICKY: &[&str] = &[
    "a", "A", "k", "K", "\u{212A}", "s", "S", "ss", "SS", "ß", "ẞ", "σ", "Σ", "ς", "ǅ", "ǆ", "Ǆ",
    "dž", "fi", "ﬁ", "e\u{301}", "\u{e9}", "\u{c9}", "i", "I", "İ", "ı", "µ", "μ", "Å", "\u{212B}",
    "1", "①",
];

#[test]
fn user_names_that_are_not_emails_are_refused_with_a_reason() {
    for (raw, why) in [
        ("", "empty"),
        ("   ", "empty"),
        ("grace", "no '@'"),
        ("@example.com", "before the '@'"),
        ("grace@", "after the '@'"),
        ("grace@localhost", "dot"),
        ("grace@example..com", "empty label"),
        ("gr ace@example.com", "white space"),
        ("a@b@example.com", "more than one"),
        ("grace@exa_mple.com", "only letters"),
    ] {
        let err = UserName::parse(raw).unwrap_err();
        assert!(
            err.to_string().contains(why),
            "{raw:?}: {err} should mention {why:?}"
        );
    }
    let long = format!("{}@example.com", "a".repeat(65));
    assert!(UserName::parse(&long).is_err());
}

#[test]
fn user_name_round_trips_through_serde_and_validates_on_the_way_in() {
    let u = UserName::parse("Ada@Example.com").unwrap();
    let json = serde_json::to_string(&u).unwrap();
    assert_eq!(json, "\"Ada@Example.com\"");
    let back: UserName = serde_json::from_str(&json).unwrap();
    assert_eq!(back.as_str(), "Ada@Example.com");
    assert!(serde_json::from_str::<UserName>("\"no pe\"").is_err());
    assert!(serde_json::from_str::<UserName>("\"nope@\"").is_err());
}

#[test]
fn scim_identifiers_are_accepted_only_by_parse_identifier() {
    let id = "6ef97a69-4e39-4c4c-b62e-9e994bef1f1a";
    assert!(
        UserName::parse(id).is_err(),
        "the CLI and the pull want an email"
    );
    let u = UserName::parse_identifier(id).unwrap();
    assert!(!u.is_email());
    assert_eq!(u.domain(), "");
    assert!(UserName::parse_identifier("Grace@Example.com")
        .unwrap()
        .is_email());
    assert!(
        UserName::parse_identifier("grace@").is_err(),
        "an email is checked as one"
    );
    assert!(UserName::parse_identifier("").is_err());
    assert!(UserName::parse_identifier("two words").is_err());
    assert_eq!(
        UserName::parse_identifier("JDoe").unwrap(),
        UserName::parse_identifier("jdoe").unwrap()
    );
}

/// A dry run prints its changes as JSON (`sync --dry-run --json`): the directory
/// attributes keep the keys they had, `scim_extra` included (`null` when there are none).
#[test]
fn a_change_as_json_keeps_its_keys_and_reads_back() {
    let mut a = DirectoryAttrs::new(UserName::parse("ada@example.com").unwrap(), None, None);
    a.google_id = Some("g-1".into());
    let change = Change::Create {
        attrs: a.clone(),
        managed_by: ManagedBy::Google,
    };
    let v = serde_json::to_value(&change).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "kind": "create",
            "attrs": {
                "user_name": "ada@example.com",
                "emails": [{"value": "ada@example.com", "type": "work", "primary": true}],
                "given_name": null,
                "family_name": null,
                "display_name": null,
                "active": true,
                "google_id": "g-1",
                "external_id": null,
                "scim_extra": null,
            },
            "managed_by": "google",
        })
    );
    assert_eq!(serde_json::from_value::<Change>(v).unwrap(), change);
    a.scim_extra.insert("title".into(), "Engineer".into());
    let v = serde_json::to_value(&a).unwrap();
    assert_eq!(v["scim_extra"], serde_json::json!({"title": "Engineer"}));
    assert_eq!(serde_json::from_value::<DirectoryAttrs>(v).unwrap(), a);
}

/// Two attribute sets that differ in every field.
fn two_different() -> (DirectoryAttrs, DirectoryAttrs) {
    let a = DirectoryAttrs::new(UserName::parse("ada@example.com").unwrap(), None, None);
    let b = DirectoryAttrs {
        user_name: UserName::parse("Ada@Example.com").unwrap(),
        emails: vec![Email::primary_work("Ada@Example.com")],
        given_name: Some("Ada".into()),
        family_name: Some("Lovelace".into()),
        display_name: Some("Ada Lovelace".into()),
        active: false,
        google_id: Some("g-1".into()),
        external_id: Some("entra-1".into()),
        scim_extra: Default::default(),
    };
    (a, b)
}

#[test]
fn each_field_copies_compares_and_reads_back_only_itself() {
    let (a, b) = two_different();
    for f in Field::ALL {
        assert!(f.differs(&a, &b), "{f:?}");
        let mut c = a.clone();
        f.copy(&b, &mut c);
        assert!(!f.differs(&c, &b), "{f:?} copied");
        for other in Field::ALL.into_iter().filter(|o| *o != f) {
            assert!(!other.differs(&c, &a), "copying {f:?} changed {other:?}");
        }
        let mut d = a.clone();
        f.read(&mut d, f.value(&b)).unwrap();
        assert_eq!(d, c, "{f:?} read from its JSON");
    }
    let names: std::collections::HashSet<_> = Field::ALL.map(Field::name).into();
    assert_eq!(names.len(), Field::ALL.len(), "names are unique");
    // A change without a Google id keeps the link.
    let mut linked = b.clone();
    Field::GoogleId.copy(&a, &mut linked);
    assert_eq!(linked.google_id.as_deref(), Some("g-1"));
}

#[test]
fn each_identifier_is_written_by_its_own_actor_only() {
    let (scim, pull) = (
        Actor::Scim("t".into()),
        Actor::Pull(crate::member::RunId::parse("20261101T020000Z-000001").unwrap()),
    );
    for f in Field::ALL {
        let by: Vec<bool> = [&scim, &pull, &Actor::Owner]
            .map(|a| f.written_by(a))
            .into();
        let want = match f {
            Field::GoogleId => [false, true, false],
            Field::ExternalId => [true, false, false],
            _ => [true, true, true],
        };
        assert_eq!(by, want, "{f:?}");
        assert_eq!(f.pulled(), want[1]);
    }
}

#[test]
fn the_cli_view_has_exactly_the_documented_keys_and_reads_back() {
    let (_, dir) = two_different();
    let t = chrono::TimeZone::timestamp_opt(&Utc, 1_790_000_000, 0).unwrap();
    let mut m = Member {
        id: MemberId(Uuid::nil()),
        dir,
        locations: vec!["Paris".into()],
        role: Role::Owner,
        managed_by: ManagedBy::Google,
        scim_deleted: false,
        created: t,
        last_modified: t,
        version: 3,
        prior_external_id: None,
    };
    m.dir.scim_extra.insert("title".into(), "Engineer".into());
    let view = m.to_view();
    let v = serde_json::to_value(&view).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "id": "00000000-0000-0000-0000-000000000000",
            "userName": "Ada@Example.com",
            "givenName": "Ada",
            "familyName": "Lovelace",
            "displayName": "Ada Lovelace",
            "emails": [{"value": "Ada@Example.com", "type": "work", "primary": true}],
            "active": false,
            "googleId": "g-1",
            "externalId": "entra-1",
            "locations": ["Paris"],
            "role": "owner",
            "managedBy": "google",
            "created": "2026-09-21T14:13:20Z",
            "lastModified": "2026-09-21T14:13:20Z",
            "version": 3,
        }),
        "the kept SCIM attributes are not shown"
    );
    assert_eq!(
        serde_json::from_value::<MemberView>(v.clone()).unwrap(),
        view
    );
    let mut extra = v.clone();
    extra["scimExtra"] = serde_json::json!({});
    let err = serde_json::from_value::<MemberView>(extra).unwrap_err();
    assert!(err.to_string().contains("scimExtra"), "{err}");
    let mut missing = v;
    missing.as_object_mut().unwrap().remove("version");
    assert!(serde_json::from_value::<MemberView>(missing).is_err());
}

#[test]
fn change_kinds_are_stored_as_the_strings_earlier_versions_wrote() {
    for k in ChangeKind::ALL {
        let json = serde_json::to_value(k).unwrap();
        assert_eq!(json, k.as_str());
        assert_eq!(serde_json::from_value::<ChangeKind>(json).unwrap(), k);
    }
    let names: Vec<&str> = ChangeKind::ALL.map(ChangeKind::as_str).into();
    assert_eq!(
        names,
        [
            "create",
            "update",
            "deactivate",
            "reactivate",
            "scim_delete",
            "link",
            "revive",
            "restore",
            "set_locations",
            "set_role"
        ]
    );
}

#[test]
fn role_parses_in_any_case() {
    assert_eq!("Owner".parse::<Role>().unwrap(), Role::Owner);
    assert_eq!("member".parse::<Role>().unwrap(), Role::Member);
    assert!("admin".parse::<Role>().is_err());
}
