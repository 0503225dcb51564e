//! AWS Signature Version 4 with ring's HMAC-SHA256 and SHA-256
//! (<https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html>).
//! Written for the one request signed here (a POST to a path of `/` with a query); the
//! tests check it against AWS's own test-suite vectors and Google's GetCallerIdentity ones.

use super::AwsCredentials;
use ring::{digest, hmac};

/// RFC 3986 percent-encoding of everything but the unreserved characters, as SigV4
/// wants it.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn mac(key: &[u8], data: &str) -> hmac::Tag {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
}

/// The canonical request and the signed header list for `headers` (lower-case names,
/// `host` among them).
pub fn canonical_request(
    method: &str,
    url: &::url::Url,
    headers: &[(String, String)],
    payload: &[u8],
) -> (String, String) {
    // Each path segment encoded again (every service but S3).
    let path = if url.path().is_empty() {
        "/"
    } else {
        url.path()
    };
    let path: Vec<String> = path.split('/').map(encode).collect();
    let mut query: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (encode(&k), encode(&v)))
        .collect();
    query.sort();
    let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut sorted: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_ascii_lowercase(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect();
    sorted.sort();
    let canonical_headers: String = sorted.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed: Vec<&str> = sorted.iter().map(|(k, _)| k.as_str()).collect();
    let signed = signed.join(";");
    let request = format!(
        "{method}\n{}\n{}\n{canonical_headers}\n{signed}\n{}",
        path.join("/"),
        query.join("&"),
        hex(digest::digest(&digest::SHA256, payload).as_ref())
    );
    (request, signed)
}

/// The `Authorization` header for the request.
#[allow(clippy::too_many_arguments)]
pub fn authorization(
    method: &str,
    url: &::url::Url,
    headers: &[(String, String)],
    payload: &[u8],
    credentials: &AwsCredentials,
    region: &str,
    service: &str,
    amz_date: &str,
) -> String {
    let (request, signed) = canonical_request(method, url, headers, payload);
    let date = amz_date.get(..8).unwrap_or(amz_date);
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(digest::digest(&digest::SHA256, request.as_bytes()).as_ref())
    );
    let key = format!("AWS4{}", credentials.secret_access_key);
    let k = mac(key.as_bytes(), date);
    let k = mac(k.as_ref(), region);
    let k = mac(k.as_ref(), service);
    let k = mac(k.as_ref(), "aws4_request");
    let signature = hex(mac(k.as_ref(), &to_sign).as_ref());
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
        credentials.access_key_id
    )
}
