use super::*;

#[test]
fn der_lengths_that_run_past_the_input_are_refused() {
    assert_eq!(tlv(&[0x30, 0x05, 1, 2]), None);
    assert_eq!(tlv(&[0x30, 0x82, 0x01]), None);
    assert_eq!(tlv(&[0x30, 0x00]), Some((0x30, &[][..], &[][..])));
    assert_eq!(cert_not_after(b"not a certificate"), None);
    assert_eq!(cert_not_after(&[]), None);
}

#[test]
fn sizes_read_as_people_write_them() {
    assert_eq!(human(512), "512 B");
    assert_eq!(human(3 << 20), "3.0 MiB");
}

#[test]
fn a_public_url_must_be_https() {
    let mut c = Config::default();
    c.scim.public_url = Some("http://sync.example.com".into());
    assert_eq!(check_public_url(&c).status, Status::Fail);
    c.scim.public_url = Some("https://sync.example.com".into());
    let ok = check_public_url(&c);
    assert_eq!(ok.status, Status::Ok);
    assert!(
        ok.detail.contains("https://sync.example.com/scim/v2"),
        "{}",
        ok.detail
    );
    c.scim.public_url = None;
    assert_eq!(check_public_url(&c).status, Status::Warn);
    c.scim.public_url = Some("https://sync.example.com/?x=1".into());
    assert_eq!(check_public_url(&c).status, Status::Fail);
}

fn data(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

#[test]
fn a_certificate_that_expires_within_30_days_is_a_warning() {
    let mut c = Config::default();
    c.scim.tls_cert = Some(data("scim-test-cert.pem"));
    c.scim.tls_key = Some(data("scim-test-key.pem"));
    let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
    // The test certificate is valid until 2126-11-04 16:52:14 UTC.
    let check = check_tls(&c, at("2126-10-20T00:00:00Z"));
    assert_eq!(check.status, Status::Warn, "{check:?}");
    assert!(check.detail.contains("2126-11-04"), "{check:?}");
    assert_eq!(check_tls(&c, at("2126-09-01T00:00:00Z")).status, Status::Ok);
    assert_eq!(
        check_tls(&c, at("2126-11-05T00:00:00Z")).status,
        Status::Fail
    );
}

#[test]
fn the_schedule_shows_the_next_three_runs() {
    let now = DateTime::parse_from_rfc3339("2026-12-02T00:07:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let c = check_schedule(&Config::default(), now);
    assert_eq!(c.status, Status::Ok);
    assert!(
        c.detail
            .contains("2026-12-02 00:15:00, 2026-12-02 00:30:00, 2026-12-02 00:45:00 UTC"),
        "{}",
        c.detail
    );
}
