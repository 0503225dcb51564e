//! A thin typed client for the Directory API calls the pull makes: users.list, users.get,
//! members.list and members.hasMember.
//!
//! Every request asks for a partial response (`fields=`) and gzip (Google compresses only
//! when the User-Agent also says `gzip`). Failures Google calls transient (429, 403 with a
//! rate-limit reason or in the `usageLimits` domain, a plain-text 403 "Request rate higher
//! than configured", `systemError` from members.list, 500/502/503/504, connection errors)
//! are retried with Google's exponential backoff; any other 4xx fails at once with Google's
//! message. A 401 gets one forced token refresh and one retry.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http_body_util::BodyExt;

use super::auth::{check_url, GoogleAuth, HttpsClient};
use super::model::{ErrorBody, GoogleUser, MembersPage, UsersPage};
use super::model::{DELETED_USER_FIELDS, MEMBER_FIELDS, ONE_USER_FIELDS, USER_FIELDS};
use super::DirectoryError;

/// Sent with every request; Google compresses only when the User-Agent contains "gzip".
pub const USER_AGENT: &str = concat!("retrac-sync/", env!("CARGO_PKG_VERSION"), " (gzip)");

/// Largest page users.list serves.
pub const USERS_PAGE_SIZE: u32 = 500;
/// Largest page members.list serves.
pub const MEMBERS_PAGE_SIZE: u32 = 200;

/// How long one HTTP request (its answer and its whole body) or one token request may take
/// before it counts as a connection failure and is retried.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Google's backoff: wait `base * 2^n` plus a random `0..jitter`, for n = 0..max_retries.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    /// The first wait (Google: 1 s).
    pub base: Duration,
    /// The largest random addition (Google: 1000 ms).
    pub jitter: Duration,
    /// How many retries after the first attempt (Google: n = 0..5, so 6).
    pub max_retries: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(1),
            jitter: Duration::from_millis(1000),
            max_retries: 6,
        }
    }
}

impl Backoff {
    /// A short backoff for tests: same shape, milliseconds instead of seconds.
    pub fn fast() -> Self {
        Backoff {
            base: Duration::from_millis(2),
            jitter: Duration::from_millis(2),
            max_retries: 6,
        }
    }

    /// The longest wait between two attempts: the wait before the last retry, jitter
    /// included. A `Retry-After` longer than this is cut to it.
    pub fn max_delay(&self) -> Duration {
        self.base
            .saturating_mul(1u32 << self.max_retries.saturating_sub(1).min(16))
            + self.jitter
    }

    /// The wait before retry number `n` (0-based).
    pub fn delay(&self, n: u32) -> Duration {
        let exp = self.base.saturating_mul(1u32 << n.min(16));
        let jitter_ms = self.jitter.as_millis() as u64;
        let random = if jitter_ms == 0 {
            0
        } else {
            getrandom::u64().unwrap_or(0) % (jitter_ms + 1)
        };
        exp + Duration::from_millis(random)
    }
}

/// Whose users users.list lists: a customer (`my_customer`) or one domain.
#[derive(Clone, Debug, PartialEq)]
pub enum UserListTarget {
    /// `customer=...`
    Customer(String),
    /// `domain=...`
    Domain(String),
}

/// The Directory API client. Cheap to share behind an `Arc`.
pub struct DirectoryClient {
    http: HttpsClient,
    auth: GoogleAuth,
    base: String,
    backoff: Backoff,
    timeout: Duration,
    requests: AtomicU64,
}

impl std::fmt::Debug for DirectoryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectoryClient")
            .field("base", &self.base)
            .field("auth", &self.auth)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

/// What a call asks about, to name the cause of a 403 "Not Authorized to access this
/// resource/api": Google sends the same answer for a subject that is not an admin and for a
/// key outside the customer (slashdevops/idp-scim-sync#49, firezone#12772).
#[derive(Clone, Copy)]
enum Asked<'a> {
    /// users.list of the whole customer: only here does the 403 mean "not an admin".
    Customer,
    /// A user or domain key (users.get, users.list of one domain).
    Key(&'a str),
    /// A group's members (members.list): the scope group is not one Google shows us.
    Group(&'a str),
    /// A membership (members.hasMember) in this group: the group or the member is not one
    /// Google shows us.
    Membership(&'a str),
}

enum Attempt {
    /// Transient: the reason (for the metric), what happened, and how long Google asked us
    /// to wait (`Retry-After`), if it did.
    Retry(&'static str, String, Option<Duration>),
    Fail(DirectoryError),
}

impl DirectoryClient {
    /// A client for the API rooted at `base_url` (`https://admin.googleapis.com`).
    pub fn new(
        http: HttpsClient,
        auth: GoogleAuth,
        base_url: &str,
        backoff: Backoff,
    ) -> Result<DirectoryClient, DirectoryError> {
        check_url(base_url)?;
        Ok(DirectoryClient {
            http,
            auth,
            base: base_url.trim_end_matches('/').to_string(),
            backoff,
            timeout: REQUEST_TIMEOUT,
            requests: AtomicU64::new(0),
        })
    }

    /// Uses another request timeout (tests shorten it); the token requests' own timeout is
    /// set when the authenticator is built.
    pub fn with_request_timeout(mut self, timeout: Duration) -> DirectoryClient {
        self.timeout = timeout;
        self
    }

    /// The admin the client acts as.
    pub fn subject(&self) -> &str {
        self.auth.subject()
    }

    /// How many HTTP requests (retries included) this client has sent to the API.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// One page of users.list, in Google's order.
    pub async fn list_users_page(
        &self,
        target: &UserListTarget,
        query: Option<&str>,
        page_token: Option<&str>,
    ) -> Result<UsersPage, DirectoryError> {
        self.list_users_page_raw(target, query, page_token)
            .await?
            .decode()
    }

    /// One users.list page of at most `max_results` users (`doctor` asks for one, to check
    /// access to a domain without reading it).
    pub async fn probe_users(
        &self,
        target: &UserListTarget,
        max_results: u32,
    ) -> Result<UsersPage, DirectoryError> {
        let url = self.users_list_url(target, max_results)?;
        let body = self.get("users.list", url.as_str(), asked(target)).await?;
        decode("users.list", &body)
    }

    /// The ids of the customer's deleted users that can still be restored (users.list with
    /// `showDeleted=true`, which lists only those), every page.
    pub async fn deleted_user_ids(
        &self,
        customer: &str,
    ) -> Result<std::collections::HashSet<String>, DirectoryError> {
        let mut ids = std::collections::HashSet::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = self.url(&["admin", "directory", "v1", "users"])?;
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("customer", customer);
                q.append_pair("showDeleted", "true");
                q.append_pair("maxResults", &USERS_PAGE_SIZE.to_string());
                q.append_pair("fields", DELETED_USER_FIELDS);
                if let Some(t) = &token {
                    q.append_pair("pageToken", t);
                }
            }
            let body = self
                .get("users.list", url.as_str(), Asked::Customer)
                .await?;
            // Only the ids: a deleted user's other fields are not needed, nor promised.
            #[derive(serde::Deserialize)]
            struct Id {
                id: String,
            }
            #[derive(serde::Deserialize)]
            struct Page {
                #[serde(default)]
                users: Vec<Id>,
                #[serde(default, rename = "nextPageToken")]
                next_page_token: Option<String>,
            }
            let page: Page = decode("users.list", &body)?;
            ids.extend(page.users.into_iter().map(|u| u.id));
            match page.next_page_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(ids),
            }
        }
    }

    /// One page of users.list, not decoded yet: only its next page token is read (and the
    /// whole body checked to be complete JSON), so the next page can be asked for while
    /// this one is decoded.
    pub async fn list_users_page_raw(
        &self,
        target: &UserListTarget,
        query: Option<&str>,
        page_token: Option<&str>,
    ) -> Result<RawUsersPage, DirectoryError> {
        let mut url = self.users_list_url(target, USERS_PAGE_SIZE)?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(query) = query {
                q.append_pair("query", query);
            }
            if let Some(t) = page_token {
                q.append_pair("pageToken", t);
            }
        }
        let body = self.get("users.list", url.as_str(), asked(target)).await?;
        let token: PageToken = decode("users.list", &body)?;
        Ok(RawUsersPage {
            body: RawBody::Json(body),
            next_page_token: token.next_page_token.filter(|t| !t.is_empty()),
        })
    }

    /// One user by primary email or id; `None` when the user is gone: 404, or 412
    /// `conditionNotMet` ("User is deleted."), which Google answers for the 20 days in which
    /// a deleted user can be restored (firezone PR #15169). A 403 is
    /// [`DirectoryError::NotInCustomer`]: a key outside the customer, or one the admin's role
    /// does not cover.
    pub async fn get_user(&self, user_key: &str) -> Result<Option<GoogleUser>, DirectoryError> {
        let mut url = self.url(&["admin", "directory", "v1", "users", user_key])?;
        url.query_pairs_mut()
            .append_pair("projection", "basic")
            .append_pair("fields", ONE_USER_FIELDS);
        match self
            .get("users.get", url.as_str(), Asked::Key(user_key))
            .await
        {
            Ok(body) => decode("users.get", &body).map(Some),
            Err(DirectoryError::Api { status: 404, .. }) => Ok(None),
            Err(DirectoryError::Api {
                status: 412,
                ref reason,
                ..
            }) if reason == "conditionNotMet" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// members.hasMember: whether the user `member_key` is a member of `group`, directly or
    /// through nested groups. `None` when Google cannot tell: it answers 400 "Invalid input"
    /// when the membership would be nested and the two are in different domains
    /// (<https://developers.google.com/workspace/admin/directory/reference/rest/v1/members/hasMember>).
    pub async fn has_member(
        &self,
        group: &str,
        member_key: &str,
    ) -> Result<Option<bool>, DirectoryError> {
        let url = self.url(&[
            "admin",
            "directory",
            "v1",
            "groups",
            group,
            "hasMember",
            member_key,
        ])?;
        #[derive(serde::Deserialize)]
        struct Answer {
            #[serde(rename = "isMember", default)]
            is_member: bool,
        }
        match self
            .get("members.hasMember", url.as_str(), Asked::Membership(group))
            .await
        {
            Ok(body) => decode::<Answer>("members.hasMember", &body).map(|a| Some(a.is_member)),
            Err(DirectoryError::Api { status: 400, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One page of a group's direct members (no `includeDerivedMembership`: Google's derived
    /// listing has returned too few members, GAM-team/GAM#1210; nested groups are listed as
    /// members of type GROUP, and the caller reads them itself).
    pub async fn list_members_page(
        &self,
        group: &str,
        page_token: Option<&str>,
    ) -> Result<MembersPage, DirectoryError> {
        let mut url = self.url(&["admin", "directory", "v1", "groups", group, "members"])?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("maxResults", &MEMBERS_PAGE_SIZE.to_string());
            q.append_pair("fields", MEMBER_FIELDS);
            if let Some(t) = page_token {
                q.append_pair("pageToken", t);
            }
        }
        let body = match self
            .get("members.list", url.as_str(), Asked::Group(group))
            .await
        {
            Ok(b) => b,
            // A scope group Google does not know (404), or not one of this customer's (403):
            // name it, it is a setup mistake.
            Err(DirectoryError::Api { status: 404, .. }) => {
                return Err(DirectoryError::GroupNotFound {
                    group: group.to_string(),
                    status: 404,
                })
            }
            Err(e) => return Err(e),
        };
        decode("members.list", &body)
    }

    /// The users.list URL for `target`, with the page size, projection and fields every
    /// caller asks for.
    fn users_list_url(
        &self,
        target: &UserListTarget,
        max_results: u32,
    ) -> Result<url::Url, DirectoryError> {
        let mut url = self.url(&["admin", "directory", "v1", "users"])?;
        {
            let mut q = url.query_pairs_mut();
            match target {
                UserListTarget::Customer(c) => q.append_pair("customer", c),
                UserListTarget::Domain(d) => q.append_pair("domain", d),
            };
            q.append_pair("maxResults", &max_results.to_string());
            // No `orderBy`: with `orderBy=email` a user renamed while the pages are read can
            // move to a page already read and appear on none. The plan sorts anyway.
            q.append_pair("projection", "basic");
            q.append_pair("fields", USER_FIELDS);
        }
        Ok(url)
    }

    fn url(&self, segments: &[&str]) -> Result<url::Url, DirectoryError> {
        let mut url = check_url(&self.base)?;
        url.path_segments_mut()
            .map_err(|_| DirectoryError::Url {
                url: self.base.clone(),
                reason: "cannot be a base URL".into(),
            })?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// GET with auth, gzip and retries; returns the decompressed body of a 200.
    async fn get(
        &self,
        endpoint: &'static str,
        url: &str,
        asked: Asked<'_>,
    ) -> Result<Vec<u8>, DirectoryError> {
        let mut retries = 0u32;
        let mut refreshed = false;
        let mut force_refresh = false;
        loop {
            let token = if force_refresh {
                self.auth.refreshed_token().await
            } else {
                self.auth.token().await
            };
            force_refresh = false;
            let outcome = match token {
                Ok(token) => self.attempt(endpoint, url, &token).await,
                // The token endpoint is down or slow: retried like the API.
                Err(DirectoryError::TokenUnavailable(e)) => {
                    Err(Attempt::Retry("token", format!("token request: {e}"), None))
                }
                Err(e) => return Err(e),
            };
            let (reason, last, asked) = match outcome {
                Ok(body) => return Ok(body),
                Err(Attempt::Fail(DirectoryError::Api { status: 401, .. })) if !refreshed => {
                    // A token Google no longer accepts (revoked or expired early): one
                    // forced refresh, one retry.
                    refreshed = true;
                    force_refresh = true;
                    metrics::counter!("retrac_google_retries_total", "reason" => "unauthorized")
                        .increment(1);
                    tracing::info!(endpoint, "Google answered 401; refreshing the token once");
                    continue;
                }
                Err(Attempt::Fail(e)) => return Err(self.explain(e, asked)),
                Err(Attempt::Retry(reason, last, asked)) => (reason, last, asked),
            };
            if retries >= self.backoff.max_retries {
                return Err(DirectoryError::GaveUp {
                    endpoint,
                    attempts: retries + 1,
                    last,
                });
            }
            // Google's Retry-After, when it sends one, but never longer than our own longest
            // wait: a run must not sleep for an hour on one header.
            let wait = match asked {
                Some(a) => a.min(self.backoff.max_delay()),
                None => self.backoff.delay(retries),
            };
            retries += 1;
            metrics::counter!("retrac_google_retries_total", "reason" => reason).increment(1);
            tracing::warn!(endpoint, reason, retry = retries, wait_ms = wait.as_millis() as u64, error = %last, "retrying Google request");
            tokio::time::sleep(wait).await;
        }
    }

    /// Turns the API errors that mean a setup mistake into their own variants. Google answers
    /// 403 "Not Authorized to access this resource/api" both to a subject that is not an admin
    /// and for a key outside the customer: only a customer-wide users.list says the former.
    fn explain(&self, e: DirectoryError, asked: Asked<'_>) -> DirectoryError {
        match (e, asked) {
            (DirectoryError::Api { status: 403, .. }, Asked::Group(group)) => {
                DirectoryError::GroupNotFound {
                    group: group.to_string(),
                    status: 403,
                }
            }
            (
                DirectoryError::Api {
                    status: 403,
                    endpoint,
                    ref reason,
                    ref message,
                },
                asked,
            ) if reason == "forbidden"
                && message.contains("Not Authorized to access this resource/api") =>
            {
                match asked {
                    Asked::Key(key) | Asked::Membership(key) => DirectoryError::NotInCustomer {
                        key: key.to_string(),
                        endpoint,
                    },
                    Asked::Customer | Asked::Group(_) => DirectoryError::NotAdmin {
                        subject: self.auth.subject().to_string(),
                    },
                }
            }
            (e, _) => self.explain_other(e),
        }
    }

    fn explain_other(&self, e: DirectoryError) -> DirectoryError {
        match e {
            DirectoryError::Api { ref reason, .. } if reason == "domainCannotUseApis" => {
                DirectoryError::DomainCannotUseApis
            }
            e => e,
        }
    }

    async fn attempt(
        &self,
        endpoint: &'static str,
        url: &str,
        token: &str,
    ) -> Result<Vec<u8>, Attempt> {
        // The answer and its whole body come under one timeout: a body that stalls halfway
        // is a failed attempt like a connection that never answers.
        match tokio::time::timeout(self.timeout, self.attempt_untimed(endpoint, url, token)).await {
            Ok(r) => r,
            Err(_) => {
                metrics::counter!("retrac_google_requests_total", "endpoint" => endpoint, "status" => "timeout")
                    .increment(1);
                Err(Attempt::Retry(
                    "connection",
                    format!("no complete answer within {} s", self.timeout.as_secs_f64()),
                    None,
                ))
            }
        }
    }

    async fn attempt_untimed(
        &self,
        endpoint: &'static str,
        url: &str,
        token: &str,
    ) -> Result<Vec<u8>, Attempt> {
        let request = http::Request::get(url)
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .header(http::header::ACCEPT_ENCODING, "gzip")
            .header(http::header::USER_AGENT, USER_AGENT)
            .header(http::header::ACCEPT, "application/json")
            .body(String::new())
            .map_err(|e| {
                Attempt::Fail(DirectoryError::Url {
                    url: url.to_string(),
                    reason: e.to_string(),
                })
            })?;
        self.requests.fetch_add(1, Ordering::Relaxed);
        let count = |status: &str| {
            metrics::counter!("retrac_google_requests_total", "endpoint" => endpoint, "status" => status.to_string())
                .increment(1);
        };
        let response = match self.http.request(request).await {
            Ok(r) => r,
            Err(e) => {
                count("connection_error");
                return Err(Attempt::Retry(
                    "connection",
                    format!("connection failed: {e}"),
                    None,
                ));
            }
        };
        let status = response.status().as_u16();
        count(&status.to_string());
        let gzip = response
            .headers()
            .get(http::header::CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = match response.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            // The body broke off (the connection closed early): a transient failure.
            Err(e) => {
                return Err(Attempt::Retry(
                    "connection",
                    format!("the response body broke off: {e}"),
                    None,
                ))
            }
        };
        let body = if gzip {
            let mut out = Vec::with_capacity(body.len() * 8);
            flate2::read::GzDecoder::new(&body[..])
                .read_to_end(&mut out)
                .map_err(|e| {
                    Attempt::Fail(DirectoryError::BadResponse {
                        endpoint,
                        detail: format!("bad gzip body: {e}"),
                    })
                })?;
            out
        } else {
            body.to_vec()
        };
        if status == 200 {
            return Ok(body);
        }
        let error: ErrorBody = serde_json::from_slice(&body).unwrap_or_default();
        // The older shape names a reason in `errors[]`; the newer one only a `status`.
        let reason = error
            .reason()
            .or(error.error.status.as_deref())
            .unwrap_or("")
            .to_string();
        let message = if error.error.message.is_empty() {
            String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned()
        } else {
            error.error.message.clone()
        };
        let last = format!("HTTP {status} {reason}: {message}");
        match status {
            429 => Err(Attempt::Retry("rate_limit", last, retry_after)),
            403 if matches!(
                reason.as_str(),
                "userRateLimitExceeded"
                    | "rateLimitExceeded"
                    | "quotaExceeded"
                    | "RESOURCE_EXHAUSTED"
            ) || error.usage_limits() =>
            {
                Err(Attempt::Retry("rate_limit", last, retry_after))
            }
            // Not JSON at all: Google's front end limiting the rate (GAM's checkGAPIError
            // retries it).
            403 if String::from_utf8_lossy(&body)
                .contains("Request rate higher than configured") =>
            {
                Err(Attempt::Retry("rate_limit", last, retry_after))
            }
            500 | 502 | 503 | 504 => Err(Attempt::Retry("server_error", last, retry_after)),
            // A transient failure of members.list whatever its status (GAM retries
            // members.list on `systemError`: MEMBERS_RETRY_REASONS).
            _ if endpoint == "members.list" && reason == "systemError" => {
                Err(Attempt::Retry("server_error", last, retry_after))
            }
            _ => Err(Attempt::Fail(DirectoryError::Api {
                endpoint,
                status,
                reason,
                message,
            })),
        }
    }
}

/// What a users.list of `target` asks about.
fn asked(target: &UserListTarget) -> Asked<'_> {
    match target {
        UserListTarget::Customer(_) => Asked::Customer,
        UserListTarget::Domain(d) => Asked::Key(d),
    }
}

/// A users.list page as it arrived (decompressed, complete JSON), with its next page token;
/// or, from a directory that is not HTTP (`directory::memory`), already decoded.
#[derive(Debug)]
pub struct RawUsersPage {
    body: RawBody,
    /// The next page, `None` on the last one.
    pub next_page_token: Option<String>,
}

#[derive(Debug)]
enum RawBody {
    Json(Vec<u8>),
    Decoded(Vec<GoogleUser>),
}

impl RawUsersPage {
    /// A page that is already decoded (a directory that does not speak HTTP).
    pub fn decoded(page: UsersPage) -> RawUsersPage {
        RawUsersPage {
            body: RawBody::Decoded(page.users),
            next_page_token: page.next_page_token.filter(|t| !t.is_empty()),
        }
    }

    /// The page, decoded.
    pub fn decode(self) -> Result<UsersPage, DirectoryError> {
        let mut page: UsersPage = match self.body {
            RawBody::Json(body) => decode("users.list", &body)?,
            RawBody::Decoded(users) => UsersPage {
                users,
                next_page_token: None,
            },
        };
        page.next_page_token = self.next_page_token;
        Ok(page)
    }
}

/// Only the next page token of a page; every other field is skipped without being kept.
#[derive(serde::Deserialize)]
struct PageToken {
    #[serde(default, rename = "nextPageToken")]
    next_page_token: Option<String>,
}

fn decode<T: serde::de::DeserializeOwned>(
    endpoint: &'static str,
    body: &[u8],
) -> Result<T, DirectoryError> {
    // A truncated or garbled page must fail the run: it must never look like fewer users.
    serde_json::from_slice(body).map_err(|e| DirectoryError::BadResponse {
        endpoint,
        detail: format!("not a complete JSON page ({e})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_adds_bounded_jitter() {
        let b = Backoff::default();
        for n in 0..6 {
            let d = b.delay(n);
            let base = Duration::from_secs(1 << n);
            assert!(
                d >= base && d <= base + Duration::from_millis(1000),
                "{n}: {d:?}"
            );
        }
    }
}
