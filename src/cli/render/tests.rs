use super::*;

fn view(given: &str, family: &str) -> MemberView {
    MemberView {
        id: "x".into(),
        dir: crate::member::DirectoryAttrs {
            emails: vec![],
            ..crate::member::DirectoryAttrs::new(
                crate::member::UserName::parse("a.very.long.user.name.that.goes.on@example.com")
                    .unwrap(),
                Some(given),
                Some(family),
            )
        },
        locations: vec!["Paris".into(), "Lyon".into(), "Marseille".into()],
        role: crate::member::Role::Owner,
        managed_by: crate::member::ManagedBy::Manual,
        created: Utc::now(),
        last_modified: Utc::now(),
        version: 1,
        scim_deleted: false,
    }
}

fn listing(ms: Vec<MemberView>) -> Listing<MemberView> {
    Listing::new(ms.into_iter().map(Ok))
}

#[test]
fn table_rows_fit_80_columns() {
    let mut buf = Vec::new();
    let m = view("Bartholomew-Maximilian", "Fitzgerald-Worthington");
    members(listing(vec![m]), Output::Table, &mut buf).unwrap();
    for line in String::from_utf8(buf).unwrap().lines() {
        assert!(
            line.chars().count() <= 80,
            "{line:?} is {} wide",
            line.chars().count()
        );
    }
}

#[test]
fn a_member_as_csv_keeps_its_columns_and_as_text_lists_every_attribute() {
    let mut m = view("Ada", "Lovelace");
    m.dir.external_id = Some("entra-1".into());
    let mut buf = Vec::new();
    one_member(&m, None, Output::Csv, &mut buf).unwrap();
    let csv = String::from_utf8(buf).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some(
            "id,userName,givenName,familyName,displayName,active,externalId,locations,role,\
                 managedBy,created,lastModified,version"
        )
    );
    let cells: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(
        cells[..8],
        [
            "x",
            "a.very.long.user.name.that.goes.on@example.com",
            "Ada",
            "Lovelace",
            "",
            "true",
            "entra-1",
            "Paris;Lyon;Marseille"
        ]
    );
    let mut buf = Vec::new();
    one_member(&m, Some(false), Output::Table, &mut buf).unwrap();
    let text = String::from_utf8(buf).unwrap();
    for row in [
        "user name      a.very.long.user.name.that.goes.on@example.com",
        "emails         \n",
        "given name     Ada\n",
        "family name    Lovelace\n",
        "display name   -\n",
        "active         yes\n",
        "google id      -\n",
        "external id    entra-1\n",
        "role           owner\n",
        "(no change)",
    ] {
        assert!(text.contains(row), "{row:?} in\n{text}");
    }
    let mut buf = Vec::new();
    one_member(&m, None, Output::Table, &mut buf).unwrap();
    let read = String::from_utf8(buf).unwrap();
    assert!(!read.contains("change"), "a read reports no change: {read}");
}

#[test]
fn csv_quotes_what_needs_quoting() {
    assert_eq!(csv_field("plain"), "plain");
    assert_eq!(csv_field("a,b"), "\"a,b\"");
    assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
}

#[test]
fn csv_cells_that_start_like_a_formula_get_a_quote_mark() {
    for (cell, want) in [
        ("=HYPERLINK(\"x\")", "\"'=HYPERLINK(\"\"x\"\")\""),
        ("+1", "'+1"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        // A tab is a C0 control: escaped as in the table, so no longer a formula start.
        ("\tx", "\\u{9}x"),
        ("\rx", "\"'\rx\""),
        ("a=b", "a=b"),
        ("2026-11-01T00:00:00+00:00", "2026-11-01T00:00:00+00:00"),
    ] {
        assert_eq!(csv_field(cell), want, "{cell:?}");
    }
}

#[test]
fn csv_cells_escape_control_bidi_and_invisible_characters_but_keep_line_breaks() {
    assert_eq!(
        csv_field("a\u{1b}]0;owned\u{7}b"),
        "a\\u{1b}]0;owned\\u{7}b"
    );
    assert_eq!(csv_field("\u{202e}moc.elpmaxe"), "\\u{202e}moc.elpmaxe");
    assert_eq!(
        csv_field("ada\u{200b}@example.com"),
        "ada\\u{200b}@example.com"
    );
    assert_eq!(csv_field("x\u{9b}31m"), "x\\u{9b}31m");
    assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
}

#[test]
fn control_characters_are_escaped_in_text() {
    assert_eq!(clean("plain Zoë"), "plain Zoë");
    assert_eq!(clean("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
    assert_eq!(clean("bell\u{7}\r\n"), "bell\\u{7}\\u{d}\\u{a}");
    assert_eq!(clean("\u{9b}31m"), "\\u{9b}31m", "C1 CSI");
    assert_eq!(clean("abc\u{202e}gpj"), "abc\\u{202e}gpj", "bidi override");
    let mut buf = Vec::new();
    let m = view("Ada\u{1b}[31m", "L\u{7}");
    members(listing(vec![m.clone()]), Output::Table, &mut buf).unwrap();
    one_member(&m, Some(true), Output::Table, &mut buf).unwrap();
    let text = String::from_utf8(buf).unwrap();
    assert!(!text.contains(['\u{1b}', '\u{7}']), "{text:?}");
}

#[test]
fn a_streamed_json_array_is_laid_out_as_serde_lays_out_a_whole_one() {
    let ms = [view("A", "B"), view("C", "D")];
    for n in 0..=2 {
        let mut buf = Vec::new();
        members(listing(ms[..n].to_vec()), Output::Json, &mut buf).unwrap();
        let whole = serde_json::to_string_pretty(&ms[..n]).unwrap() + "\n";
        assert_eq!(String::from_utf8(buf).unwrap(), whole);
    }
}

#[test]
fn a_listing_cut_short_prints_what_arrived_and_fails() {
    let items = vec![
        Ok(view("A", "B")),
        Err(AppError::Failed("the listing was cut short".into())),
    ];
    let mut buf = Vec::new();
    let err = members(Listing::new(items.into_iter()), Output::Table, &mut buf).unwrap_err();
    assert_eq!(err.exit_code(), 1);
    let text = String::from_utf8(buf).unwrap();
    assert!(text.contains("a.very.long"), "{text}");
    assert!(
        !text.contains("members,"),
        "no total for a partial listing: {text}"
    );
}
