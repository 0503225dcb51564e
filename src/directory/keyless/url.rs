//! Checks of the URLs a credential configuration file names, and the impersonation URL
//! rebuilt on `[google].iam_url`: each goes only where its step belongs.

use super::*;

/// The file's `service_account_impersonation_url` on the `[google].iam_url` host: only
/// its path, which names the account, is taken.
pub(super) fn impersonation_url(from_file: &str, iam_url: &str) -> Result<String, DirectoryError> {
    let bad = |why: &str| {
        failed(
            "credential file",
            format!("service_account_impersonation_url {from_file:?} {why}"),
        )
    };
    let parsed = ::url::Url::parse(from_file).map_err(|e| bad(&format!("is not a URL ({e})")))?;
    let path = parsed.path();
    let account = path
        .strip_prefix("/v1/projects/-/serviceAccounts/")
        .and_then(|rest| rest.strip_suffix(":generateAccessToken"))
        .unwrap_or("");
    if !account.contains('@') || account.contains('/') {
        return Err(bad(
            "is not .../v1/projects/-/serviceAccounts/EMAIL:generateAccessToken",
        ));
    }
    Ok(format!("{}{path}", iam_url.trim_end_matches('/')))
}

/// The metadata server speaks plain http by design: allow it for its own names, and
/// otherwise apply the usual rule.
pub fn check_metadata_url(url: &str) -> Result<(), DirectoryError> {
    let parsed = ::url::Url::parse(url).map_err(|e| DirectoryError::Url {
        url: url.to_string(),
        reason: e.to_string(),
    })?;
    let metadata_host = matches!(
        parsed.host_str(),
        Some("metadata.google.internal") | Some("169.254.169.254")
    );
    if parsed.scheme() == "http" && metadata_host {
        return Ok(());
    }
    check_url(url).map(|_| ())
}

/// AIP-4117: the AWS metadata URLs (`region_url`, `url`, `imdsv2_session_token_url`) must
/// be on the instance metadata's addresses, `169.254.169.254` or `fd00:ec2::254`, since
/// their answers are credentials. Loopback is allowed too (a local proxy, the fake).
pub(super) fn check_aws_metadata_url(url: &str) -> Result<(), DirectoryError> {
    let bad = |reason: &str| failed("credential file", format!("{url:?} {reason}"));
    let parsed = ::url::Url::parse(url).map_err(|e| bad(&format!("is not a URL ({e})")))?;
    let allowed = match parsed.host() {
        Some(::url::Host::Ipv4(ip)) => {
            ip == std::net::Ipv4Addr::new(169, 254, 169, 254) || ip.is_loopback()
        }
        Some(::url::Host::Ipv6(ip)) => {
            ip == std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) || ip.is_loopback()
        }
        Some(::url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    if !allowed || !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad(
            "is not on the EC2 instance metadata (169.254.169.254 or [fd00:ec2::254])",
        ));
    }
    Ok(())
}

/// AIP-4117: `regional_cred_verification_url` must be AWS STS's GetCallerIdentity,
/// `https://sts.amazonaws.com` or `https://sts.{region}.amazonaws.com` (the `{region}`
/// template, or a region's name), with `Action=GetCallerIdentity`. The request signed for it
/// proves the workload's AWS identity to whoever receives it, so a credential file that
/// names another host (or another action) is refused before anything is signed or sent.
pub(super) fn check_aws_verification_url(url: &str) -> Result<(), DirectoryError> {
    let bad = |reason: &str| {
        failed(
            "credential file",
            format!("regional_cred_verification_url {url:?} {reason}"),
        )
    };
    let templated = url.replace("{region}", "region");
    let parsed = ::url::Url::parse(&templated).map_err(|e| bad(&format!("is not a URL ({e})")))?;
    if parsed.scheme() != "https" || parsed.port().is_some() || !parsed.username().is_empty() {
        return Err(bad("must be https://sts[.REGION].amazonaws.com"));
    }
    let host_ok = match parsed.host_str() {
        Some("sts.amazonaws.com") => true,
        Some(h) => h
            .strip_prefix("sts.")
            .and_then(|r| r.strip_suffix(".amazonaws.com"))
            .is_some_and(|r| {
                !r.is_empty()
                    && r.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            }),
        None => false,
    };
    if !host_ok {
        return Err(bad(
            "must be on AWS STS: https://sts[.REGION].amazonaws.com",
        ));
    }
    let action = parsed
        .query_pairs()
        .filter(|(k, _)| k == "Action")
        .map(|(_, v)| v.into_owned())
        .collect::<Vec<_>>();
    if action != ["GetCallerIdentity"] {
        return Err(bad("must ask for Action=GetCallerIdentity, once"));
    }
    Ok(())
}
