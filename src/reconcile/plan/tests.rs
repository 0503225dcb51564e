use super::*;
use crate::directory::model::UserNameParts;
use crate::member::Member;
use crate::member::Role;
use chrono::{TimeZone, Utc};

#[test]
fn the_two_thread_sort_and_map_give_what_one_thread_gives() {
    // Past PARALLEL_FROM, with many ties: ties keep their order by position.
    let n = 3 * PARALLEL_FROM + 17;
    let keys: Vec<(u32, usize)> = (0..n).map(|i| (((i * 7919) % 1000) as u32, i)).collect();
    let mut shuffled: Vec<(u32, usize)> = keys.iter().rev().copied().collect();
    shuffled.rotate_left(n / 3);
    let mut two = shuffled.clone();
    par_sort(&mut two, |a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut one = shuffled.clone();
    one.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    assert_eq!(two, one);
    assert_eq!(two.len(), n);
    let mapped = par_map(&shuffled, |&(k, i)| (i, k));
    assert_eq!(
        mapped,
        shuffled.iter().map(|&(k, i)| (i, k)).collect::<Vec<_>>()
    );
}

fn google(id: &str, email: &str, given: &str) -> GoogleUser {
    GoogleUser {
        id: id.into(),
        primary_email: email.into(),
        name: Some(UserNameParts {
            given_name: Some(given.into()),
            family_name: Some("Test".into()),
            full_name: Some(format!("{given} Test")),
        }),
        suspended: Some(false),
        archived: Some(false),
        org_unit_path: Some("/".into()),
        is_admin: None,
        is_guest_user: None,
        emails: None,
        aliases: None,
    }
}

fn desired(users: &[GoogleUser]) -> Vec<Desired> {
    users
        .iter()
        .map(|u| Desired::from_google(u, &[]).unwrap())
        .collect()
}

/// The member a Google user becomes when the pull creates it.
fn member_of(u: &GoogleUser) -> Member {
    let a = Desired::from_google(u, &[]).unwrap().attrs;
    let t = Utc.timestamp_opt(1_790_000_000, 0).unwrap();
    Member {
        id: MemberId::new_random(),
        dir: a,
        locations: vec!["Paris".into()],
        role: Role::Member,
        managed_by: ManagedBy::Google,
        scim_deleted: false,
        created: t,
        last_modified: t,
        version: 3,
        prior_external_id: None,
    }
}

fn run(users: &[GoogleUser], members: &[Member]) -> Plan {
    plan(desired(users), members, &PlanContext::default())
}

fn actions(p: &Plan) -> Vec<(Action, &str)> {
    p.changes
        .iter()
        .map(|c| (c.action, c.user_name.as_str()))
        .collect()
}

#[test]
fn new_users_are_created_and_agreeing_members_are_left_alone() {
    let ada = google("1", "ada@example.com", "Ada");
    let bob = google("2", "bob@example.com", "Bob");
    let p = run(&[bob.clone(), ada.clone()], &[member_of(&ada)]);
    assert_eq!(actions(&p), [(Action::Create, "bob@example.com")]);
    assert_eq!(p.unchanged, 1);
    assert!(matches!(
        &p.changes[0].change,
        Change::Create { managed_by: ManagedBy::Google, attrs } if attrs.google_id.as_deref() == Some("2")
    ));
    // Applying the plan's result again plans nothing: no rewrite on every run.
    let p = run(
        &[bob.clone(), ada.clone()],
        &[member_of(&ada), member_of(&bob)],
    );
    assert!(p.changes.is_empty());
    assert_eq!(p.unchanged, 2);
}

#[test]
fn a_rename_is_an_update_matched_by_google_id() {
    let ada = google("1", "ada@example.com", "Ada");
    let m = member_of(&ada);
    let renamed = google("1", "ada.king@example.com", "Ada");
    let p = run(&[renamed], &[m.clone()]);
    assert_eq!(actions(&p), [(Action::Update, "ada.king@example.com")]);
    assert_eq!(p.changes[0].member, Some(m.id));
    assert!(p.changes[0].fields.contains(&Field::UserName));
    assert!(matches!(
        p.changes[0].change,
        Change::Update {
            expected_version: Some(3),
            ..
        }
    ));
}

#[test]
fn a_name_change_and_a_case_change_are_updates() {
    let ada = google("1", "ada@example.com", "Ada");
    let p = run(
        &[google("1", "ada@example.com", "Augusta")],
        &[member_of(&ada)],
    );
    assert_eq!(p.changes[0].fields, [Field::GivenName, Field::DisplayName]);
    let p = run(&[google("1", "Ada@Example.com", "Ada")], &[member_of(&ada)]);
    assert_eq!(p.changes[0].action, Action::Update);
    assert!(p.changes[0].fields.contains(&Field::UserName));
}

#[test]
fn suspended_or_archived_goes_inactive_as_a_deactivation_and_comes_back_as_an_update() {
    let ada = google("1", "ada@example.com", "Ada");
    let m = member_of(&ada);
    let mut suspended = ada.clone();
    suspended.suspended = Some(true);
    let p = run(&[suspended], &[m.clone()]);
    assert_eq!(actions(&p), [(Action::Deactivate, "ada@example.com")]);
    assert!(matches!(&p.changes[0].change, Change::Update { attrs, .. } if !attrs.active));
    let mut archived = ada.clone();
    archived.archived = Some(true);
    assert_eq!(
        run(&[archived.clone()], &[m.clone()]).changes[0].action,
        Action::Deactivate
    );
    let inactive = member_of(&archived);
    let p = run(&[ada], &[inactive]);
    assert_eq!(actions(&p), [(Action::Update, "ada@example.com")]);
    assert_eq!(p.changes[0].fields, [Field::Active]);
}

#[test]
fn a_member_gone_from_google_or_scope_is_deactivated_never_deleted() {
    let ada = google("1", "ada@example.com", "Ada");
    let bob = google("2", "bob@example.com", "Bob");
    let p = run(&[ada.clone()], &[member_of(&ada), member_of(&bob)]);
    assert_eq!(actions(&p), [(Action::Deactivate, "bob@example.com")]);
    assert!(matches!(
        p.changes[0].change,
        Change::Deactivate {
            expected_version: Some(3),
            ..
        }
    ));
    assert_eq!(p.active_now, 2);
    assert_eq!(p.active_after, 1);
    // Already inactive: nothing to do.
    let mut gone = member_of(&bob);
    gone.dir.active = false;
    assert!(run(
        &[ada],
        &[member_of(&google("1", "ada@example.com", "Ada")), gone]
    )
    .changes
    .is_empty());
}

#[test]
fn an_unlinked_or_manual_member_with_the_email_is_linked() {
    let ada = google("1", "Ada@example.com", "Ada");
    let mut manual = member_of(&ada);
    manual.dir.google_id = None;
    manual.managed_by = ManagedBy::Manual;
    let p = run(&[ada.clone()], &[manual.clone()]);
    assert_eq!(actions(&p), [(Action::Link, "Ada@example.com")]);
    assert!(matches!(&p.changes[0].change, Change::Link { google_id, .. } if google_id == "1"));
    // Linked and different: one Update counted as a link.
    manual.dir.given_name = Some("Old".into());
    let p = run(&[ada], &[manual]);
    assert_eq!(p.changes[0].action, Action::Link);
    assert!(matches!(p.changes[0].change, Change::Update { .. }));
}

#[test]
fn manual_and_foreign_domain_members_are_never_touched() {
    let mut manual = member_of(&google("9", "guest@example.com", "Guest"));
    manual.managed_by = ManagedBy::Manual;
    manual.dir.google_id = None;
    // Outside the domains and not linked to a Google user: not the pull's.
    let mut foreign = member_of(&google("8", "partner@other.org", "Partner"));
    foreign.dir.google_id = None;
    let domains = vec!["example.com".to_string()];
    let p = plan(
        desired(&[google("8", "partner@other.org", "Renamed")]),
        &[manual, foreign],
        &PlanContext {
            domains: &domains,
            all_google_ids: None,
            unusable_ids: None,
            index: None,
        },
    );
    assert!(p.changes.is_empty(), "{:?}", p.changes);
    assert_eq!(p.not_owned, 2);
}

#[test]
fn a_linked_member_is_judged_by_its_link_whatever_its_user_name() {
    let domains = vec!["example.com".to_string()];
    let ctx = PlanContext {
        domains: &domains,
        all_google_ids: None,
        unusable_ids: None,
        index: None,
    };
    let ada = google("1", "ada@example.com", "Ada");
    // Renamed into a foreign domain, and into a look-alike of the managed one (a
    // fullwidth `ｅ`, the same domain once folded).
    for name in ["mallory@evil.test", "ada.lamarr@\u{ff45}xample.com"] {
        let mut m = member_of(&ada);
        m.dir.user_name = UserName::parse(name).unwrap();
        // Google has the user, active: its address comes back.
        let p = plan(desired(&[ada.clone()]), &[m.clone()], &ctx);
        assert_eq!(
            actions(&p),
            vec![(Action::Update, "ada@example.com")],
            "{name}"
        );
        // Google suspended it: the member goes inactive.
        let mut suspended = ada.clone();
        suspended.suspended = Some(true);
        let p = plan(desired(&[suspended]), &[m.clone()], &ctx);
        assert_eq!(
            actions(&p),
            vec![(Action::Deactivate, "ada@example.com")],
            "{name}"
        );
        // Google no longer lists it: a deactivation to verify.
        let p = plan(Vec::new(), &[m], &ctx);
        assert_eq!(actions(&p), vec![(Action::Deactivate, name)], "{name}");
        assert_eq!(p.active_now, 1);
    }
    // The domain check folds as user names do.
    assert!(in_domains(&domains, "ada@\u{ff45}xample.com"));
    assert!(in_domains(&domains, "ada@EXAMPLE.COM"));
    assert!(!in_domains(&domains, "ada@example.org"));
}

#[test]
fn a_scim_deleted_member_stays_hidden_and_is_not_recreated() {
    let ada = google("1", "ada@example.com", "Ada");
    let mut m = member_of(&ada);
    m.scim_deleted = true;
    m.dir.active = false;
    let p = run(&[google("1", "ada@example.com", "Changed")], &[m]);
    assert!(p.changes.is_empty());
    assert_eq!(p.hidden, 1);
}

#[test]
fn a_user_deleted_and_recreated_with_the_same_email_keeps_the_member_relinked() {
    let old = google("1", "ada@example.com", "Ada");
    let m = member_of(&old);
    let new = google("5", "ada@example.com", "Ada");
    let ids: HashSet<String> = ["5".to_string()].into();
    let p = plan(
        desired(&[new]),
        &[m.clone()],
        &PlanContext {
            domains: &[],
            all_google_ids: Some(&ids),
            unusable_ids: None,
            index: None,
        },
    );
    assert_eq!(actions(&p), [(Action::Update, "ada@example.com")]);
    assert_eq!(
        p.changes[0].member,
        Some(m.id),
        "same member, locations kept"
    );
    assert_eq!(p.changes[0].fields, [Field::GoogleId]);
    // If the old id is still a Google user (it moved away), the address is not stolen.
    let ids: HashSet<String> = ["1".to_string(), "5".to_string()].into();
    let p = plan(
        desired(&[google("5", "ada@example.com", "Ada")]),
        &[m],
        &PlanContext {
            domains: &[],
            all_google_ids: Some(&ids),
            unusable_ids: None,
            index: None,
        },
    );
    assert!(p.changes.is_empty());
    assert_eq!(p.problems.len(), 1);
    // The desired users' own ids count as listed without being in the set: the old
    // user moved out of the managed domains, so it is listed but not planned.
    let domains = ["example.com".to_string()];
    let none: HashSet<String> = HashSet::new();
    let p = plan(
        desired(&[
            google("1", "ada@other.org", "Ada"),
            google("5", "ada@example.com", "Ada"),
        ]),
        &[member_of(&old)],
        &PlanContext {
            domains: &domains,
            all_google_ids: Some(&none),
            unusable_ids: None,
            index: None,
        },
    );
    assert!(p.changes.is_empty(), "{:?}", actions(&p));
    assert_eq!(p.problems.len(), 1, "{:?}", p.problems);
}

#[test]
fn an_address_moving_between_users_renames_first_then_creates() {
    let old = google("1", "ada@example.com", "Ada");
    let m = member_of(&old);
    // User 1 renamed away, a new user 2 takes the address.
    let p = run(
        &[
            google("1", "ada.old@example.com", "Ada"),
            google("2", "ada@example.com", "Ada"),
        ],
        &[m.clone()],
    );
    assert_eq!(
        actions(&p),
        [
            (Action::Update, "ada.old@example.com"),
            (Action::Create, "ada@example.com")
        ]
    );
}

#[test]
fn duplicate_emails_from_google_are_reported_not_both_provisioned() {
    let p = run(
        &[
            google("2", "Ada@example.com", "Ada"),
            google("1", "ada@example.com", "Ada"),
        ],
        &[],
    );
    assert_eq!(p.changes.len(), 1);
    assert!(
        matches!(&p.changes[0].change, Change::Create { attrs, .. } if attrs.google_id.as_deref() == Some("1"))
    );
    assert_eq!(p.problems.len(), 1);
}

#[test]
fn a_member_whose_google_user_is_unusable_or_duplicated_is_not_deactivated() {
    let ada = google("1", "ada@example.com", "Ada");
    let m = member_of(&ada);
    // Google still lists user 1, but with an email the plan cannot use.
    let unusable: HashSet<String> = ["1".to_string()].into();
    let p = plan(
        Vec::new(),
        std::slice::from_ref(&m),
        &PlanContext {
            domains: &[],
            all_google_ids: None,
            unusable_ids: Some(&unusable),
            index: None,
        },
    );
    assert!(p.changes.is_empty(), "{:?}", p.changes);
    // User 2 is a duplicate of an address another user holds: its member stays.
    let mut bob = member_of(&google("2", "bob@example.com", "Bob"));
    bob.dir.user_name = UserName::parse("bob.old@example.com").unwrap();
    let p = run(
        &[
            google("1", "ada@example.com", "Ada"),
            google("2", "ada@example.com", "Ada"),
        ],
        &[m, bob],
    );
    assert!(
        p.changes.iter().all(|c| c.action != Action::Deactivate),
        "{:?}",
        p.changes
    );
    assert_eq!(p.problems.len(), 1);
}

#[test]
fn aliases_become_secondary_emails() {
    let mut u = google("1", "ada@example.com", "Ada");
    u.emails = Some(
        serde_json::from_value(serde_json::json!([
            {"address": "ada@example.com", "primary": true},
            {"address": "a@example.com"},
            {"address": "ada@gmail.com", "type": "home"},
            {"address": "ada@example.com.test-google-a.com"},
            {"address": "ada.w@example.com", "type": "work"}
        ]))
        .unwrap(),
    );
    u.aliases = Some(
        serde_json::from_value(serde_json::json!(["a@example.com", "ada@example.org"])).unwrap(),
    );
    let values =
        |d: &Desired| -> Vec<String> { d.attrs.emails.iter().map(|e| e.value.clone()).collect() };
    let d = Desired::from_google(&u, &["example.com".into()]).unwrap();
    assert_eq!(
        values(&d),
        ["ada@example.com", "a@example.com", "ada.w@example.com"]
    );
    assert!(d.attrs.emails[0].primary);
    assert!(!d.attrs.emails[1].primary);
    let d = Desired::from_google(&u, &[]).unwrap();
    assert_eq!(
        values(&d),
        [
            "ada@example.com",
            "a@example.com",
            "ada@example.org",
            "ada.w@example.com"
        ]
    );
    assert!(Desired::from_google(&google("3", "not-an-email", "X"), &[]).is_err());
}

#[test]
fn a_desired_user_taken_by_value_is_the_same_and_its_error_names_the_id() {
    let mut u = google("1", "Ada@example.com", " Ada ");
    u.name.as_mut().unwrap().family_name = Some("  ".into());
    u.aliases = Some(crate::directory::model::Emails::addresses(&[
        "ada@example.com",
        " a@example.com ",
        "A@example.com",
    ]));
    u.archived = Some(true);
    let d = Desired::from_google_owned(u.clone(), &[]).unwrap();
    assert_eq!(d, Desired::from_google(&u, &[]).unwrap());
    assert_eq!(d.attrs.given_name.as_deref(), Some("Ada"));
    assert_eq!(d.attrs.family_name, None);
    assert!(!d.attrs.active);
    assert_eq!(d.attrs.google_id.as_deref(), Some("1"));
    let others: Vec<&str> = d.attrs.emails[1..]
        .iter()
        .map(|e| e.value.as_str())
        .collect();
    assert_eq!(others, ["a@example.com"], "once, trimmed, not the primary");
    let (id, msg) = Desired::from_google_owned(google("9", "nope", "X"), &[]).unwrap_err();
    assert_eq!(id, "9");
    assert!(msg.contains("Google user 9"), "{msg}");
}

#[test]
fn a_name_part_of_only_a_zero_width_space_reads_as_empty() {
    // Google stores a mononym with a zero-width space as the missing part.
    let mut u = google("1", "cher@example.com", "Cher");
    let name = u.name.as_mut().unwrap();
    name.family_name = Some("\u{200B}".into());
    name.full_name = Some("Cher \u{200B}".into());
    let d = Desired::from_google(&u, &[]).unwrap();
    assert_eq!(d.attrs.family_name, None);
    assert_eq!(d.attrs.display_name.as_deref(), Some("Cher"));
    assert_eq!(d.attrs.given_name.as_deref(), Some("Cher"));
    // Inside a name, a zero-width character is the name's own business: kept.
    u.name.as_mut().unwrap().given_name = Some("Ch\u{200B}er".into());
    let d = Desired::from_google(&u, &[]).unwrap();
    assert_eq!(d.attrs.given_name.as_deref(), Some("Ch\u{200B}er"));
}

#[test]
fn the_order_is_deterministic() {
    let users: Vec<GoogleUser> = (0..50)
        .rev()
        .map(|i| google(&i.to_string(), &format!("u{i:02}@example.com"), "U"))
        .collect();
    let a = run(&users, &[]);
    let mut shuffled = users.clone();
    shuffled.rotate_left(17);
    let b = run(&shuffled, &[]);
    assert_eq!(actions(&a), actions(&b));
    assert_eq!(a.changes[0].user_name, "u00@example.com");
}

/// The one entry point takes the index a run built while Google was read, or builds it.
#[test]
fn an_index_built_beforehand_gives_the_same_plan() {
    let ada = google("1", "ada@example.com", "Ada");
    let members = [
        member_of(&ada),
        member_of(&google("3", "cy@example.com", "Cy")),
    ];
    let now = [
        google("1", "ada.king@example.com", "Ada"),
        google("2", "bob@example.com", "Bob"),
    ];
    let index = MemberIndex::new(&members, &[]);
    let ctx = PlanContext {
        index: Some(&index),
        ..Default::default()
    };
    let given = plan(desired(&now), &members, &ctx);
    assert_eq!(given, run(&now, &members));
    assert_eq!(
        actions(&given),
        [
            (Action::Update, "ada.king@example.com"),
            (Action::Create, "bob@example.com"),
            (Action::Deactivate, "cy@example.com"),
        ]
    );
    assert_eq!(given.active_now, 2);
}

#[test]
fn a_large_directory_is_compared_on_two_threads_with_the_same_plan() {
    // Over PARALLEL_FROM users, so the comparison is split in two halves.
    let n = PARALLEL_FROM + 2_001;
    let users: Vec<GoogleUser> = (0..n)
        .map(|k| google(&format!("g{k:06}"), &format!("u{k:06}@example.com"), "Ada"))
        .collect();
    let members: Vec<Member> = users.iter().map(member_of).collect();
    let mut now = users.clone();
    // One change near each end of the listing (one in each half), one suspension, one
    // new hire, and one user gone.
    now[3].name.as_mut().unwrap().given_name = Some("Grace".into());
    now[n - 5].name.as_mut().unwrap().given_name = Some("Edsger".into());
    now[n / 2].suspended = Some(true);
    now.remove(n - 1);
    now.push(google("g999999", "zz-new@example.com", "Barbara"));
    let p = run(&now, &members);
    assert_eq!(
        actions(&p),
        [
            (Action::Update, "u000003@example.com"),
            (
                Action::Deactivate,
                format!("u{:06}@example.com", n / 2).as_str()
            ),
            (
                Action::Update,
                format!("u{:06}@example.com", n - 5).as_str()
            ),
            (Action::Create, "zz-new@example.com"),
            (
                Action::Deactivate,
                format!("u{:06}@example.com", n - 1).as_str()
            ),
        ]
    );
    assert_eq!(p.unchanged, n - 4);
    assert_eq!(p.changes[0].fields, [Field::GivenName]);
}

/// A dry run's JSON and the admin socket carry the fields by name, `managedBy` last, as when
/// they were strings; the typed fields read back from them.
#[test]
fn a_planned_change_writes_and_reads_its_fields_by_name() {
    let id = MemberId::new_random();
    let change = PlannedChange {
        action: Action::Link,
        user_name: "ada@example.com".into(),
        member: Some(id),
        fields: vec![Field::GivenName, Field::GoogleId],
        manages: true,
        change: Change::Link {
            id,
            google_id: "g1".into(),
            expected_version: Some(2),
        },
    };
    let wire = serde_json::to_value(&change).unwrap();
    assert_eq!(
        wire["fields"],
        serde_json::json!(["givenName", "googleId", "managedBy"])
    );
    let keys: Vec<&String> = wire.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["action", "change", "fields", "member", "user_name"]);
    let text = serde_json::to_string(&change).unwrap();
    assert!(text.starts_with(r#"{"action":"link","user_name":"ada@example.com","member":""#));
    assert_eq!(
        serde_json::from_str::<PlannedChange>(&text).unwrap(),
        change
    );
    let mut unknown = wire;
    unknown["fields"] = serde_json::json!(["shoeSize"]);
    assert!(serde_json::from_value::<PlannedChange>(unknown).is_err());
}
