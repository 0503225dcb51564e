//! Standard Webhooks 1.0 signatures: `v1,` + base64 of HMAC-SHA256 over
//! `"{webhook-id}.{webhook-timestamp}.{body}"`, keyed by the base64-decoded part of the
//! secret after `whsec_`. During a rotation the header holds one signature per secret,
//! separated by spaces.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};

use crate::store::{EndpointRecord, WebhookSecret};

/// The prefix of a secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// A new secret: `whsec_` + base64 of 32 bytes from the operating system.
pub fn new_secret() -> Result<WebhookSecret, String> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| format!("the random source failed: {e}"))?;
    Ok(WebhookSecret(format!(
        "{SECRET_PREFIX}{}",
        STANDARD.encode(key)
    )))
}

/// The HMAC key of a secret (the decoded part after `whsec_`).
fn key(secret: &WebhookSecret) -> Result<ring::hmac::Key, String> {
    let encoded = secret.0.strip_prefix(SECRET_PREFIX).unwrap_or(&secret.0);
    let bytes = STANDARD
        .decode(encoded)
        .map_err(|_| "the stored webhook secret is not base64 after whsec_".to_string())?;
    Ok(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &bytes))
}

/// One signature, `v1,<base64>`.
pub fn sign(
    secret: &WebhookSecret,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, String> {
    let key = key(secret)?;
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(id.as_bytes());
    ctx.update(b".");
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    Ok(format!("v1,{}", STANDARD.encode(ctx.sign().as_ref())))
}

/// The secrets that sign at `now`: the current one, and the previous one until its time is
/// up.
pub fn signing_secrets(endpoint: &EndpointRecord, now: DateTime<Utc>) -> Vec<&WebhookSecret> {
    let mut out = vec![&endpoint.secret];
    if let Some(p) = &endpoint.previous {
        if now < p.until {
            out.push(&p.secret);
        }
    }
    out
}

/// The `webhook-signature` header's value: one signature per secret, space-separated.
pub fn signature_header(
    secrets: &[&WebhookSecret],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, String> {
    let sigs = secrets
        .iter()
        .map(|s| sign(s, id, timestamp, body))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(sigs.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::PreviousSecret;

    #[test]
    fn the_standard_webhooks_example_signs_the_same() {
        // The example of the Standard Webhooks specification and its reference libraries.
        let secret = WebhookSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into());
        let sig = sign(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_new_secret_has_the_prefix_and_32_bytes_and_a_redacted_debug() {
        let s = new_secret().unwrap();
        let raw = s.0.strip_prefix(SECRET_PREFIX).unwrap();
        assert_eq!(STANDARD.decode(raw).unwrap().len(), 32);
        assert_ne!(new_secret().unwrap(), s);
        assert!(!format!("{s:?}").contains(raw));
    }

    #[test]
    fn a_rotated_secret_signs_beside_the_new_one_for_its_time_only() {
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let old = new_secret().unwrap();
        let new = new_secret().unwrap();
        let ep = EndpointRecord {
            id: "wh_1".into(),
            url: "http://127.0.0.1/".into(),
            description: None,
            events: Default::default(),
            enabled: true,
            disabled_reason: None,
            disabled_at: None,
            created: t0,
            secret: new.clone(),
            previous: Some(PreviousSecret {
                secret: old.clone(),
                until: t0 + chrono::Duration::hours(24),
            }),
        };
        let during = signing_secrets(&ep, t0 + chrono::Duration::hours(23));
        assert_eq!(during, vec![&new, &old]);
        let header = signature_header(&during, "evt_1", 5, b"{}").unwrap();
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], sign(&new, "evt_1", 5, b"{}").unwrap());
        assert_eq!(parts[1], sign(&old, "evt_1", 5, b"{}").unwrap());
        let after = signing_secrets(&ep, t0 + chrono::Duration::hours(24));
        assert_eq!(after, vec![&new]);
        // Nothing of a secret in the debug output of the endpoint.
        let dbg = format!("{ep:?}");
        assert!(
            !dbg.contains(&new.0[6..]) && !dbg.contains(&old.0[6..]),
            "{dbg}"
        );
    }
}
