//! The fake service account's RS256 key: a fixed, public, test-only key committed in
//! `tests/fixtures/fake-google/`, signed and checked with `ring` (the crypto rustls and
//! yup-oauth2 already use).
//!
//! One key serves the three places Google's key appears: the key file the fake writes for
//! the daemon (whose yup-oauth2 signs the JWT grant with it), the token endpoint that checks
//! that grant, and `signJwt`, which signs with the key Google holds for keyless credentials.
//! A fixed key costs nothing at start; generating a 2048-bit key per fake did.

use base64::Engine;
use ring::signature::{RsaKeyPair, UnparsedPublicKey};

/// TEST ONLY, and public: the service account key the fake holds.
const SERVICE_ACCOUNT_PEM: &str =
    include_str!("../../../tests/fixtures/fake-google/TEST-ONLY-service-account-key.pem");

/// TEST ONLY, and public: a key of the same service account that the fake does not hold
/// (deleted or rotated), so the token endpoint rejects its signatures.
const DELETED_PEM: &str =
    include_str!("../../../tests/fixtures/fake-google/TEST-ONLY-deleted-service-account-key.pem");

/// An RSA key pair with its PKCS#8 PEM, as a key file carries it.
pub(crate) struct TestKey {
    pair: RsaKeyPair,
    pem: String,
}

impl TestKey {
    /// The key the fake's service account has.
    pub(crate) fn service_account() -> Result<TestKey, String> {
        TestKey::from_pem(SERVICE_ACCOUNT_PEM)
    }

    /// A key the fake's service account no longer has.
    pub(crate) fn deleted() -> Result<TestKey, String> {
        TestKey::from_pem(DELETED_PEM)
    }

    /// Reads the one `PRIVATE KEY` block of `text`; the explanatory text around it (RFC 7468
    /// section 5.2) is left out of [`TestKey::pem`].
    fn from_pem(text: &str) -> Result<TestKey, String> {
        const BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
        const END: &str = "-----END PRIVATE KEY-----";
        let (Some(start), Some(end)) = (text.find(BEGIN), text.find(END)) else {
            return Err("no PKCS#8 PRIVATE KEY block".into());
        };
        if end < start {
            return Err("the PRIVATE KEY block ends before it begins".into());
        }
        let body: String = text[start + BEGIN.len()..end]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|e| format!("the PRIVATE KEY block is not base64: {e}"))?;
        let pair = RsaKeyPair::from_pkcs8(&der).map_err(|e| format!("not an RSA key: {e}"))?;
        Ok(TestKey {
            pair,
            pem: format!("{}\n", &text[start..end + END.len()]),
        })
    }

    /// The PKCS#8 PEM, as the `private_key` of a service account key file.
    pub(crate) fn pem(&self) -> &str {
        &self.pem
    }

    /// RS256 (RSASSA-PKCS1-v1_5 with SHA-256) of `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let mut signature = vec![0; self.pair.public().modulus_len()];
        self.pair
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                message,
                &mut signature,
            )
            .map_err(|_| "RS256 signing failed".to_string())?;
        Ok(signature)
    }

    /// The public key as a JWK's `n` and `e` (base64url, big endian), for the JWKS the
    /// fake's OpenID Connect issuer serves.
    pub(crate) fn jwk_components(&self) -> (String, String) {
        let c = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(self.pair.public());
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        (b64(&c.n), b64(&c.e))
    }

    /// Whether `signature` is an RS256 signature of `message` by this key, checked with the
    /// public key only, as Google checks a JWT grant.
    pub(crate) fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            self.pair.public().as_ref(),
        )
        .verify(message, signature)
        .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A JWT grant as yup-oauth2 builds it: `header.claims`, signed.
    fn signed_jwt(key: &TestKey, claims: &str) -> (String, Vec<u8>) {
        let signed = format!(
            "{}.{}",
            b64(br#"{"alg":"RS256","typ":"JWT"}"#),
            b64(claims.as_bytes())
        );
        let signature = key.sign(signed.as_bytes()).unwrap();
        (signed, signature)
    }

    #[test]
    fn a_jwt_signed_with_the_committed_key_verifies_and_a_tampered_one_does_not() {
        let key = TestKey::service_account().unwrap();
        let (signed, signature) = signed_jwt(
            &key,
            r#"{"iss":"retrac-sync@fake-project.iam.gserviceaccount.com","sub":"admin@example.com"}"#,
        );
        assert_eq!(signature.len(), 256, "a 2048-bit key");
        assert!(key.verifies(signed.as_bytes(), &signature));

        // Other claims under the same signature.
        let (forged, _) = signed_jwt(
            &key,
            r#"{"iss":"retrac-sync@fake-project.iam.gserviceaccount.com","sub":"root@example.com"}"#,
        );
        assert!(!key.verifies(forged.as_bytes(), &signature));
        // One bit of the signature flipped, or the signature cut short.
        let mut flipped = signature.clone();
        flipped[100] ^= 0x01;
        assert!(!key.verifies(signed.as_bytes(), &flipped));
        assert!(!key.verifies(signed.as_bytes(), &signature[..255]));
        assert!(!key.verifies(signed.as_bytes(), b""));

        // A valid signature by a key the account does not hold (deleted or rotated).
        let deleted = TestKey::deleted().unwrap();
        let (signed_by_deleted, by_deleted) =
            signed_jwt(&deleted, r#"{"sub":"admin@example.com"}"#);
        assert!(deleted.verifies(signed_by_deleted.as_bytes(), &by_deleted));
        assert!(!key.verifies(signed_by_deleted.as_bytes(), &by_deleted));
    }

    #[test]
    fn key_files_get_only_the_pem_block_and_bad_pem_is_an_error() {
        let key = TestKey::service_account().unwrap();
        assert!(key.pem().starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(key.pem().ends_with("-----END PRIVATE KEY-----\n"));
        assert!(
            !key.pem().contains("TEST-ONLY"),
            "the explanatory text stays in the fixture"
        );
        assert!(SERVICE_ACCOUNT_PEM.starts_with("TEST-ONLY KEY."));
        assert_ne!(key.pem(), TestKey::deleted().unwrap().pem());

        assert!(TestKey::from_pem("no key here").is_err());
        assert!(
            TestKey::from_pem("-----END PRIVATE KEY----- -----BEGIN PRIVATE KEY-----").is_err()
        );
        assert!(
            TestKey::from_pem("-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----")
                .is_err()
        );
        assert!(
            TestKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")
                .is_err()
        );
    }
}
