//! A fake Google: the OAuth token endpoint and the three Directory API calls, on real HTTP.
//!
//! Tests, the demo and the benchmarks use it. It behaves like Google where the pull cares:
//! the token endpoint verifies the JWT bearer grant (RS256 signature with the key it
//! generated at start, `iss`, `aud`, `sub`, `scope`, `exp`); users.list pages by primary
//! email (at most 500), honours `customer`/`domain`, `query` (`orgUnitPath='/X'` for the
//! subtree, `isSuspended=`, `isArchived=`, `email:prefix*`), and trims to the slim shape when
//! `fields=` is given; members.list expands nested groups with `includeDerivedMembership`;
//! errors come back in Google's JSON shape; gzip is used when both `Accept-Encoding: gzip`
//! and a User-Agent containing `gzip` are sent. Faults can be injected and the directory
//! mutated while it runs. No key is ever written to the repository: each fake makes its own.

// The handlers' early returns are ready axum responses; boxing them buys nothing here.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path as AxPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use rsa::pkcs8::EncodePrivateKey;
use rsa::signature::Verifier;
use serde_json::{json, Value};

use super::model::ErrorBody;
use super::{SCOPE_GROUP_MEMBERS, SCOPE_USERS};

/// The JWT bearer grant type.
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// One user of the fake directory.
#[derive(Clone, Debug, PartialEq)]
pub struct FakeUser {
    /// Google user id.
    pub id: String,
    /// Primary email, in the case it is stored.
    pub primary_email: String,
    /// First name.
    pub given_name: String,
    /// Last name.
    pub family_name: String,
    /// Suspended.
    pub suspended: bool,
    /// Archived.
    pub archived: bool,
    /// Org unit path, `/` for the root.
    pub org_unit_path: String,
    /// Alias addresses.
    pub aliases: Vec<String>,
}

impl FakeUser {
    /// An active user in the root org unit.
    pub fn new(id: &str, email: &str, given: &str, family: &str) -> FakeUser {
        FakeUser {
            id: id.to_string(),
            primary_email: email.to_string(),
            given_name: given.to_string(),
            family_name: family.to_string(),
            suspended: false,
            archived: false,
            org_unit_path: "/".to_string(),
            aliases: Vec::new(),
        }
    }

    /// The same user in org unit `ou`.
    pub fn in_org_unit(mut self, ou: &str) -> FakeUser {
        self.org_unit_path = ou.to_string();
        self
    }
}

/// A users.list page as the fake sends it, written straight from the directory.
struct UsersPageOut<'a> {
    users: &'a [&'a FakeUser],
    /// The customer id when the full shape is sent (no `fields=`); `None` = the slim shape.
    full: Option<&'a str>,
    next_page_token: Option<&'a str>,
}

impl serde::Serialize for UsersPageOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        if self.full.is_some() {
            m.serialize_entry("kind", "admin#directory#users")?;
            m.serialize_entry("etag", "\"fake\"")?;
        }
        let users: Vec<UserOut<'_>> = self
            .users
            .iter()
            .map(|u| UserOut {
                u,
                customer_id: self.full,
            })
            .collect();
        m.serialize_entry("users", &users)?;
        if let Some(t) = self.next_page_token {
            m.serialize_entry("nextPageToken", t)?;
        }
        m.end()
    }
}

/// One user in Google's shape: the fields of [`GoogleUser`] (what `fields=` asks for), plus
/// the fields the pull never reads when `customer_id` is given (the full shape).
struct UserOut<'a> {
    u: &'a FakeUser,
    customer_id: Option<&'a str>,
}

impl serde::Serialize for UserOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let u = self.u;
        let mut m = s.serialize_map(None)?;
        if let Some(customer_id) = self.customer_id {
            m.serialize_entry("kind", "admin#directory#user")?;
            m.serialize_entry("etag", &format_args!("\"{}\"", u.id))?;
            m.serialize_entry("customerId", customer_id)?;
            m.serialize_entry("isAdmin", &false)?;
            m.serialize_entry("agreedToTerms", &true)?;
            m.serialize_entry("isMailboxSetup", &true)?;
            m.serialize_entry("includeInGlobalAddressList", &true)?;
        }
        m.serialize_entry("id", &u.id)?;
        m.serialize_entry("primaryEmail", &u.primary_email)?;
        m.serialize_entry(
            "name",
            &NameOut {
                given: &u.given_name,
                family: &u.family_name,
            },
        )?;
        m.serialize_entry("suspended", &u.suspended)?;
        m.serialize_entry("archived", &u.archived)?;
        m.serialize_entry("orgUnitPath", &u.org_unit_path)?;
        m.serialize_entry("emails", &EmailsOut(u))?;
        m.end()
    }
}

struct NameOut<'a> {
    given: &'a str,
    family: &'a str,
}

impl serde::Serialize for NameOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("givenName", self.given)?;
        m.serialize_entry("familyName", self.family)?;
        m.serialize_entry("fullName", &format_args!("{} {}", self.given, self.family))?;
        m.end()
    }
}

/// `emails`: the primary address (marked primary), then the aliases.
struct EmailsOut<'a>(&'a FakeUser);

impl serde::Serialize for EmailsOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        struct Addr<'a>(&'a str, bool);
        impl serde::Serialize for Addr<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(None)?;
                m.serialize_entry("address", self.0)?;
                if self.1 {
                    m.serialize_entry("primary", &true)?;
                }
                m.end()
            }
        }
        let mut seq = s.serialize_seq(Some(1 + self.0.aliases.len()))?;
        seq.serialize_element(&Addr(&self.0.primary_email, true))?;
        for a in &self.0.aliases {
            seq.serialize_element(&Addr(a, false))?;
        }
        seq.end()
    }
}

/// A member entry of a fake group.
#[derive(Clone, Debug, PartialEq)]
pub enum FakeMember {
    /// A user, by email (it need not exist in users.list: Google lists outside users too).
    User(String),
    /// A nested group, by email.
    Group(String),
    /// Every user of the customer.
    Customer,
}

/// A group of the fake directory.
#[derive(Clone, Debug, PartialEq)]
pub struct FakeGroup {
    /// Group email.
    pub email: String,
    /// Direct members.
    pub members: Vec<FakeMember>,
}

/// What the fake starts with.
#[derive(Clone, Debug)]
pub struct FakeSeed {
    /// The users.
    pub users: Vec<FakeUser>,
    /// The groups.
    pub groups: Vec<FakeGroup>,
    /// The admin the service account may act as.
    pub admin: String,
    /// The customer id (`my_customer` also works).
    pub customer_id: String,
    /// Scopes granted to the client in "domain-wide delegation".
    pub granted_scopes: Vec<String>,
    /// Lifetime of the access tokens it hands out.
    pub token_lifetime: Duration,
}

impl Default for FakeSeed {
    fn default() -> Self {
        FakeSeed {
            users: Vec::new(),
            groups: Vec::new(),
            admin: "admin@example.com".into(),
            customer_id: "C0fake000".into(),
            granted_scopes: vec![SCOPE_USERS.into(), SCOPE_GROUP_MEMBERS.into()],
            token_lifetime: Duration::from_secs(3600),
        }
    }
}

const GIVEN: [&str; 16] = [
    "Ada",
    "Grace",
    "Linus",
    "Barbara",
    "Ken",
    "Margaret",
    "Dennis",
    "Frances",
    "Alan",
    "Radia",
    "Edsger",
    "Hedy",
    "Donald",
    "Katherine",
    "John",
    "Sophie",
];
const FAMILY: [&str; 16] = [
    "Lovelace", "Hopper", "Torvalds", "Liskov", "Thompson", "Hamilton", "Ritchie", "Allen",
    "Turing", "Perlman", "Dijkstra", "Lamarr", "Knuth", "Johnson", "Backus", "Wilson",
];

/// The org units of the sample directory; the first is a subtree of Engineering.
pub const SAMPLE_ORG_UNITS: [&str; 5] = [
    "/Engineering/Kernel",
    "/Engineering",
    "/Sales",
    "/Support",
    "/",
];

impl FakeSeed {
    /// A sample directory of `n` users in `domain`: five org units, about 1 in 40 suspended
    /// and 1 in 97 archived, and groups `engineering@` (the Engineering subtree, through the
    /// nested group `kernel@`), `sales@`, `support@` and `everyone@` (a CUSTOMER member).
    pub fn sample(n: usize, domain: &str) -> FakeSeed {
        let mut users = Vec::with_capacity(n);
        let mut groups: BTreeMap<&str, Vec<FakeMember>> = BTreeMap::new();
        for i in 0..n {
            let given = GIVEN[i % GIVEN.len()];
            let family = FAMILY[(i / GIVEN.len()) % FAMILY.len()];
            let email = format!(
                "{}.{}{}@{domain}",
                given.to_lowercase(),
                family.to_lowercase(),
                i
            );
            let ou = SAMPLE_ORG_UNITS[i % SAMPLE_ORG_UNITS.len()];
            let mut u =
                FakeUser::new(&format!("1{:020}", i), &email, given, family).in_org_unit(ou);
            u.suspended = i % 40 == 39;
            u.archived = i % 97 == 96;
            let group = match ou {
                "/Engineering/Kernel" => Some("kernel"),
                "/Engineering" => Some("engineering"),
                "/Sales" => Some("sales"),
                "/Support" => Some("support"),
                _ => None,
            };
            if let Some(g) = group {
                groups.entry(g).or_default().push(FakeMember::User(email));
            }
            users.push(u);
        }
        let mut out_groups: Vec<FakeGroup> = groups
            .into_iter()
            .map(|(g, mut members)| {
                if g == "engineering" {
                    members.push(FakeMember::Group(format!("kernel@{domain}")));
                }
                FakeGroup {
                    email: format!("{g}@{domain}"),
                    members,
                }
            })
            .collect();
        out_groups.push(FakeGroup {
            email: format!("everyone@{domain}"),
            members: vec![FakeMember::Customer],
        });
        FakeSeed {
            users,
            groups: out_groups,
            admin: format!("admin@{domain}"),
            ..FakeSeed::default()
        }
    }
}

/// A fault the fake can inject.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Page `page` (1-based) of `endpoint` (`users.list`, `members.list`) answers `status`
    /// with `reason` the next `times` times it is asked for.
    FailPage {
        /// users.list or members.list.
        endpoint: &'static str,
        /// 1-based page number.
        page: usize,
        /// How many times.
        times: u32,
        /// HTTP status.
        status: u16,
        /// Google's reason.
        reason: &'static str,
    },
    /// Page `page` of users.list comes back cut in half, `times` times.
    TruncatePage {
        /// 1-based page number.
        page: usize,
        /// How many times.
        times: u32,
    },
    /// Every API request waits this long first.
    Delay(Duration),
    /// The token endpoint answers `unauthorized_client` (delegation not granted).
    DenyDelegation,
}

#[derive(Default)]
struct Stats {
    requests: HashMap<&'static str, u64>,
    tokens_issued: u64,
    last_query: HashMap<&'static str, String>,
    last_user_agent: Option<String>,
    gzipped: u64,
}

struct Inner {
    /// Normalised primary email -> user, so pages come out ordered by email.
    users: BTreeMap<String, FakeUser>,
    /// Google id -> normalised primary email.
    by_id: HashMap<String, String>,
    /// Normalised alias -> normalised primary email.
    aliases: HashMap<String, String>,
    groups: BTreeMap<String, FakeGroup>,
    faults: VecDeque<Fault>,
    delay: Option<Duration>,
    deny_delegation: bool,
    tokens: HashMap<String, (std::time::Instant, Vec<String>)>,
    stats: Stats,
    next_id: u64,
}

struct Shared {
    inner: Mutex<Inner>,
    public_key: rsa::RsaPublicKey,
    client_email: String,
    admin: String,
    customer_id: String,
    granted: Vec<String>,
    token_lifetime: Duration,
    token_uri: String,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running fake Google. Dropping it stops the server.
pub struct FakeGoogle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    private_pem: String,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FakeGoogle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeGoogle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for FakeGoogle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Why the fake could not start.
#[derive(Debug, thiserror::Error)]
pub enum FakeError {
    /// The listener has no address.
    #[error("fake Google: {0}")]
    Io(#[from] std::io::Error),
    /// The key could not be generated or encoded.
    #[error("fake Google: cannot make a key: {0}")]
    Key(String),
}

impl FakeGoogle {
    /// Serves the fake on `listener` (bind `127.0.0.1:0`), seeded with `seed`.
    /// Generates a fresh 2048-bit RSA service account key.
    pub async fn start(
        listener: tokio::net::TcpListener,
        seed: FakeSeed,
    ) -> Result<FakeGoogle, FakeError> {
        let addr = listener.local_addr()?;
        let private = tokio::task::spawn_blocking(|| {
            rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
        })
        .await
        .map_err(|e| FakeError::Key(e.to_string()))?
        .map_err(|e| FakeError::Key(e.to_string()))?;
        let private_pem = private
            .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
            .map_err(|e| FakeError::Key(e.to_string()))?
            .to_string();
        let mut inner = Inner {
            users: BTreeMap::new(),
            by_id: HashMap::new(),
            aliases: HashMap::new(),
            groups: BTreeMap::new(),
            faults: VecDeque::new(),
            delay: None,
            deny_delegation: false,
            tokens: HashMap::new(),
            stats: Stats::default(),
            next_id: 9_000_000,
        };
        for u in seed.users {
            inner.insert_user(u);
        }
        for g in seed.groups {
            inner.groups.insert(g.email.to_lowercase(), g);
        }
        let shared = Arc::new(Shared {
            inner: Mutex::new(inner),
            public_key: private.to_public_key(),
            client_email: "retrac-sync@fake-project.iam.gserviceaccount.com".into(),
            admin: seed.admin,
            customer_id: seed.customer_id,
            granted: seed.granted_scopes,
            token_lifetime: seed.token_lifetime,
            token_uri: format!("http://{addr}/token"),
        });
        let app = Router::new()
            .route("/token", post(token))
            .route("/admin/directory/v1/users", get(users_list))
            .route("/admin/directory/v1/users/{key}", get(users_get))
            .route(
                "/admin/directory/v1/groups/{group}/members",
                get(members_list),
            )
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "fake Google stopped");
            }
        });
        Ok(FakeGoogle {
            addr,
            shared,
            private_pem,
            task,
        })
    }

    /// The API root to put in `[google].api_base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The token endpoint (the key file's `token_uri`).
    pub fn token_uri(&self) -> String {
        self.shared.token_uri.clone()
    }

    /// The admin the service account may act as (`[google].subject`).
    pub fn admin(&self) -> String {
        self.shared.admin.clone()
    }

    /// The service account's client id, as written in the key file.
    pub fn client_id(&self) -> &'static str {
        "100000000000000000042"
    }

    /// Writes a service account key file (mode 0600) whose `token_uri` points at this fake.
    pub fn write_key_file(&self, path: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let key = json!({
            "type": "service_account",
            "project_id": "fake-project",
            "private_key_id": "00000000000000000000000000000000000fake0",
            "private_key": self.private_pem,
            "client_email": self.shared.client_email,
            "client_id": self.client_id(),
            "auth_uri": format!("{}/auth", self.base_url()),
            "token_uri": self.shared.token_uri,
        });
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(serde_json::to_string_pretty(&key)?.as_bytes())
    }

    /// Injects a fault.
    pub fn inject(&self, fault: Fault) {
        let mut s = self.shared.lock();
        match fault {
            Fault::Delay(d) => s.delay = Some(d),
            Fault::DenyDelegation => s.deny_delegation = true,
            other => s.faults.push_back(other),
        }
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        let mut s = self.shared.lock();
        s.faults.clear();
        s.delay = None;
        s.deny_delegation = false;
    }

    /// Makes every access token issued so far invalid (as if it expired early).
    pub fn expire_tokens(&self) {
        self.shared.lock().tokens.clear();
    }

    /// API requests served so far for `endpoint` (`users.list`, `users.get`, `members.list`, `token`).
    pub fn requests(&self, endpoint: &str) -> u64 {
        self.shared
            .lock()
            .stats
            .requests
            .iter()
            .filter(|(k, _)| **k == endpoint)
            .map(|(_, v)| *v)
            .sum()
    }

    /// All API requests (not the token endpoint).
    pub fn api_requests(&self) -> u64 {
        let s = self.shared.lock();
        s.stats
            .requests
            .iter()
            .filter(|(k, _)| **k != "token")
            .map(|(_, v)| *v)
            .sum()
    }

    /// Access tokens handed out so far.
    pub fn tokens_issued(&self) -> u64 {
        self.shared.lock().stats.tokens_issued
    }

    /// The query string of the last request to `endpoint`.
    pub fn last_query(&self, endpoint: &str) -> Option<String> {
        self.shared
            .lock()
            .stats
            .last_query
            .iter()
            .find(|(k, _)| **k == endpoint)
            .map(|(_, v)| v.clone())
    }

    /// The User-Agent of the last API request.
    pub fn last_user_agent(&self) -> Option<String> {
        self.shared.lock().stats.last_user_agent.clone()
    }

    /// How many responses were sent gzipped.
    pub fn gzipped_responses(&self) -> u64 {
        self.shared.lock().stats.gzipped
    }

    /// Every user, ordered by email.
    pub fn users(&self) -> Vec<FakeUser> {
        self.shared.lock().users.values().cloned().collect()
    }

    /// One user by email (any case).
    pub fn user(&self, email: &str) -> Option<FakeUser> {
        self.shared.lock().users.get(&email.to_lowercase()).cloned()
    }

    /// Suspends a user. Returns whether it exists.
    pub fn suspend(&self, email: &str) -> bool {
        self.edit(email, |u| u.suspended = true)
    }

    /// Lifts a suspension.
    pub fn unsuspend(&self, email: &str) -> bool {
        self.edit(email, |u| u.suspended = false)
    }

    /// Archives a user.
    pub fn archive(&self, email: &str) -> bool {
        self.edit(email, |u| u.archived = true)
    }

    /// Changes a user's name.
    pub fn set_name(&self, email: &str, given: &str, family: &str) -> bool {
        self.edit(email, |u| {
            u.given_name = given.to_string();
            u.family_name = family.to_string();
        })
    }

    /// Moves a user to another org unit.
    pub fn set_org_unit(&self, email: &str, ou: &str) -> bool {
        self.edit(email, |u| u.org_unit_path = ou.to_string())
    }

    /// Deletes a user (its group memberships stay, as Google's do until cleaned up).
    pub fn delete(&self, email: &str) -> Option<FakeUser> {
        let mut s = self.shared.lock();
        let key = email.to_lowercase();
        let u = s.users.remove(&key)?;
        s.by_id.remove(&u.id);
        s.aliases.retain(|_, v| *v != key);
        Some(u)
    }

    /// Renames a user's primary email, keeping its id; the old address becomes an alias, as
    /// in Google. Group memberships follow the user.
    pub fn rename(&self, old: &str, new: &str) -> bool {
        let mut s = self.shared.lock();
        let Some(mut u) = s.users.remove(&old.to_lowercase()) else {
            return false;
        };
        u.aliases.push(u.primary_email.clone());
        u.primary_email = new.to_string();
        for g in s.groups.values_mut() {
            for m in &mut g.members {
                if let FakeMember::User(e) = m {
                    if e.eq_ignore_ascii_case(old) {
                        *e = new.to_string();
                    }
                }
            }
        }
        s.insert_user(u);
        true
    }

    /// Adds a user; an empty id gets a fresh one. Returns the id.
    pub fn add_user(&self, mut user: FakeUser) -> String {
        let mut s = self.shared.lock();
        if user.id.is_empty() {
            s.next_id += 1;
            user.id = format!("2{:020}", s.next_id);
        }
        let id = user.id.clone();
        s.insert_user(user);
        id
    }

    /// Adds a member to a group (creating the group if needed).
    pub fn group_add(&self, group: &str, member: FakeMember) {
        let mut s = self.shared.lock();
        s.groups
            .entry(group.to_lowercase())
            .or_insert_with(|| FakeGroup {
                email: group.to_string(),
                members: Vec::new(),
            })
            .members
            .push(member);
    }

    /// Removes a user from a group's direct members. Returns whether it was there.
    pub fn group_remove(&self, group: &str, user_email: &str) -> bool {
        let mut s = self.shared.lock();
        let Some(g) = s.groups.get_mut(&group.to_lowercase()) else {
            return false;
        };
        let before = g.members.len();
        g.members
            .retain(|m| !matches!(m, FakeMember::User(e) if e.eq_ignore_ascii_case(user_email)));
        g.members.len() != before
    }

    fn edit(&self, email: &str, f: impl FnOnce(&mut FakeUser)) -> bool {
        let mut s = self.shared.lock();
        match s.users.get_mut(&email.to_lowercase()) {
            Some(u) => {
                f(u);
                true
            }
            None => false,
        }
    }
}

impl Inner {
    fn insert_user(&mut self, u: FakeUser) {
        let key = u.primary_email.to_lowercase();
        self.by_id.insert(u.id.clone(), key.clone());
        for a in &u.aliases {
            self.aliases.insert(a.to_lowercase(), key.clone());
        }
        self.users.insert(key, u);
    }

    fn count(&mut self, endpoint: &'static str, query: &str, headers: &HeaderMap) {
        *self.stats.requests.entry(endpoint).or_default() += 1;
        self.stats.last_query.insert(endpoint, query.to_string());
        self.stats.last_user_agent = headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
    }

    /// The fault to apply to this page now, if any (and uses it up once).
    fn take_fault(&mut self, endpoint: &str, page: usize) -> Option<Fault> {
        for f in self.faults.iter_mut() {
            match f {
                Fault::FailPage {
                    endpoint: e,
                    page: p,
                    times,
                    ..
                } if *e == endpoint && *p == page && *times > 0 => {
                    *times -= 1;
                    return Some(f.clone());
                }
                Fault::TruncatePage { page: p, times }
                    if endpoint == "users.list" && *p == page && *times > 0 =>
                {
                    *times -= 1;
                    return Some(f.clone());
                }
                _ => {}
            }
        }
        None
    }
}

fn google_error(status: u16, reason: &str, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(&ErrorBody::new(status, reason, message)).unwrap_or_default();
    (
        code,
        [("content-type", "application/json; charset=UTF-8")],
        body,
    )
        .into_response()
}

fn oauth_error(error: &str, description: &str) -> Response {
    let status = if error == "unauthorized_client" || error == "invalid_client" {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::BAD_REQUEST
    };
    (
        status,
        [("content-type", "application/json; charset=utf-8")],
        serde_json::to_vec(&json!({"error": error, "error_description": description}))
            .unwrap_or_default(),
    )
        .into_response()
}

/// Sends JSON, gzipped when the client asked the way Google requires.
fn json_response(shared: &Shared, headers: &HeaderMap, body: Vec<u8>) -> Response {
    let accepts = headers
        .get("accept-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("gzip"));
    let ua_gzip = headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("gzip"));
    if accepts && ua_gzip {
        let mut enc = flate2::write::GzEncoder::new(
            Vec::with_capacity(body.len() / 6),
            flate2::Compression::fast(),
        );
        if enc.write_all(&body).is_ok() {
            if let Ok(gz) = enc.finish() {
                shared.lock().stats.gzipped += 1;
                return (
                    StatusCode::OK,
                    [
                        ("content-type", "application/json; charset=UTF-8"),
                        ("content-encoding", "gzip"),
                        ("vary", "Origin, X-Origin, Referer"),
                    ],
                    gz,
                )
                    .into_response();
            }
        }
    }
    (
        StatusCode::OK,
        [("content-type", "application/json; charset=UTF-8")],
        body,
    )
        .into_response()
}

fn b64_decode(part: &str) -> Option<Vec<u8>> {
    // yup-oauth2 pads its base64url with '='; the JWT spec does not. Accept both.
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()
}

async fn token(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    shared.lock().count("token", "", &HeaderMap::new());
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    if form.get("grant_type").map(String::as_str) != Some(JWT_BEARER) {
        return oauth_error("unsupported_grant_type", "Invalid grant_type");
    }
    let Some(assertion) = form.get("assertion") else {
        return oauth_error("invalid_request", "Missing required parameter: assertion");
    };
    let parts: Vec<&str> = assertion.split('.').collect();
    let [head, claims, sig] = parts[..] else {
        return oauth_error("invalid_grant", "Invalid JWT: not three parts");
    };
    let header: Option<Value> = b64_decode(head).and_then(|b| serde_json::from_slice(&b).ok());
    if header
        .as_ref()
        .and_then(|h| h.get("alg"))
        .and_then(Value::as_str)
        != Some("RS256")
    {
        return oauth_error("invalid_grant", "Invalid JWT: alg must be RS256");
    }
    let Some(signature) = b64_decode(sig) else {
        return oauth_error("invalid_grant", "Invalid JWT Signature.");
    };
    let verifier = rsa::pkcs1v15::VerifyingKey::<rsa::sha2::Sha256>::new(shared.public_key.clone());
    let signed = format!("{head}.{claims}");
    let valid = rsa::pkcs1v15::Signature::try_from(&signature[..])
        .map(|s| verifier.verify(signed.as_bytes(), &s).is_ok())
        .unwrap_or(false);
    if !valid {
        return oauth_error("invalid_grant", "Invalid JWT Signature.");
    }
    let Some(claims) = b64_decode(claims).and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    else {
        return oauth_error("invalid_grant", "Invalid JWT: claims are not JSON");
    };
    let s = |k: &str| claims.get(k).and_then(Value::as_str).unwrap_or("");
    let now = chrono::Utc::now().timestamp();
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    let iat = claims.get("iat").and_then(Value::as_i64).unwrap_or(0);
    if s("iss") != shared.client_email {
        return oauth_error("invalid_client", "The OAuth client was not found.");
    }
    if s("aud") != shared.token_uri {
        return oauth_error(
            "invalid_grant",
            "Invalid JWT: audience is not the token URI",
        );
    }
    if exp <= now || iat > now + 60 || exp - iat > 3600 {
        return oauth_error(
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values.",
        );
    }
    // Without `sub` the service account acts as itself and cannot read the directory.
    if !s("sub").eq_ignore_ascii_case(&shared.admin) {
        return oauth_error("invalid_grant", "Invalid email or User ID");
    }
    let scopes: Vec<String> = s("scope").split_whitespace().map(str::to_string).collect();
    let mut inner = shared.lock();
    if inner.deny_delegation
        || scopes.is_empty()
        || !scopes.iter().all(|sc| shared.granted.contains(sc))
    {
        return oauth_error(
            "unauthorized_client",
            "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.",
        );
    }
    let mut raw = [0u8; 24];
    if getrandom::fill(&mut raw).is_err() {
        return oauth_error("internal_failure", "no randomness");
    }
    let token = format!(
        "ya29.fake-{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    );
    inner.tokens.insert(
        token.clone(),
        (std::time::Instant::now() + shared.token_lifetime, scopes),
    );
    inner.stats.tokens_issued += 1;
    let body = json!({
        "access_token": token,
        "expires_in": shared.token_lifetime.as_secs(),
        "token_type": "Bearer",
    });
    (
        StatusCode::OK,
        [("content-type", "application/json; charset=utf-8")],
        serde_json::to_vec(&body).unwrap_or_default(),
    )
        .into_response()
}

/// Checks the bearer token and its scope; counts the request; applies the delay.
async fn admit(
    shared: &Shared,
    endpoint: &'static str,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    needs: &[&str],
) -> Result<(), Response> {
    let delay = {
        let mut s = shared.lock();
        let q = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query.iter().collect::<BTreeMap<_, _>>())
            .finish();
        s.count(endpoint, &q, headers);
        s.delay
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let unauthenticated = || {
        google_error(
            401,
            "authError",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        )
    };
    let Some(bearer) = bearer else {
        return Err(unauthenticated());
    };
    let s = shared.lock();
    match s.tokens.get(bearer) {
        Some((expires, scopes)) if *expires > std::time::Instant::now() => {
            if needs.iter().any(|n| scopes.iter().any(|s| s == n)) {
                Ok(())
            } else {
                Err(google_error(
                    403,
                    "forbidden",
                    "Request had insufficient authentication scopes.",
                ))
            }
        }
        _ => Err(unauthenticated()),
    }
}

/// A page token: the page number and where the previous page stopped.
fn encode_token(page: usize, after: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{page}\n{after}"))
}

fn decode_token(token: &str) -> Option<(usize, String)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (page, after) = text.split_once('\n')?;
    Some((page.parse().ok()?, after.to_string()))
}

/// The subset of Google's users.list query language the fake understands.
struct UserQuery {
    org_unit: Option<String>,
    suspended: Option<bool>,
    archived: Option<bool>,
    email_prefix: Option<String>,
}

fn parse_query(q: &str) -> Result<UserQuery, String> {
    let mut out = UserQuery {
        org_unit: None,
        suspended: None,
        archived: None,
        email_prefix: None,
    };
    for term in q.split_whitespace() {
        if let Some(v) = term.strip_prefix("orgUnitPath=") {
            out.org_unit = Some(v.trim_matches(|c| c == '\'' || c == '"').to_string());
        } else if let Some(v) = term.strip_prefix("isSuspended=") {
            out.suspended = Some(v.eq_ignore_ascii_case("true"));
        } else if let Some(v) = term.strip_prefix("isArchived=") {
            out.archived = Some(v.eq_ignore_ascii_case("true"));
        } else if let Some(v) = term.strip_prefix("email:") {
            out.email_prefix = Some(v.trim_end_matches('*').to_lowercase());
        } else {
            return Err(format!("Invalid Input: query term {term:?}"));
        }
    }
    Ok(out)
}

fn in_subtree(ou: &str, root: &str) -> bool {
    let root = root.trim_end_matches('/');
    root.is_empty() || ou == root || ou.starts_with(&format!("{root}/"))
}

impl UserQuery {
    fn matches(&self, u: &FakeUser) -> bool {
        self.org_unit
            .as_ref()
            .is_none_or(|r| in_subtree(&u.org_unit_path, r))
            && self.suspended.is_none_or(|s| u.suspended == s)
            && self.archived.is_none_or(|a| u.archived == a)
            && self
                .email_prefix
                .as_ref()
                .is_none_or(|p| u.primary_email.to_lowercase().starts_with(p))
    }
}

fn max_results(q: &HashMap<String, String>, default: usize, max: usize) -> Result<usize, Response> {
    match q.get("maxResults") {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(google_error(400, "invalid", "Invalid Input")),
        },
    }
}

async fn users_list(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = admit(&shared, "users.list", &headers, &q, &[SCOPE_USERS]).await {
        return r;
    }
    let domain = q.get("domain").map(|d| d.to_lowercase());
    match q.get("customer") {
        Some(c) if c == "my_customer" || *c == shared.customer_id => {}
        Some(_) => return google_error(400, "badRequest", "Bad Request"),
        None if domain.is_some() => {}
        None => return google_error(400, "badRequest", "Bad Request"),
    }
    let size = match max_results(&q, 100, 500) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let query = match parse_query(q.get("query").map(String::as_str).unwrap_or("")) {
        Ok(uq) => uq,
        Err(msg) => return google_error(400, "invalid", &msg),
    };
    let (page, after) = match q.get("pageToken") {
        None => (1, String::new()),
        Some(t) => match decode_token(t) {
            Some(p) => p,
            None => return google_error(400, "invalid", "Invalid Input: pageToken"),
        },
    };
    let slim = q.contains_key("fields");
    // The page is written straight from the directory while it is locked: no copy of the
    // users and no intermediate JSON tree (this serves 100,000 users in the benchmarks).
    let (bytes, fault) = {
        let mut s = shared.lock();
        let fault = s.take_fault("users.list", page);
        if let Some(Fault::FailPage { status, reason, .. }) = fault {
            drop(s);
            return google_error(status, reason, &format!("injected {reason}"));
        }
        let mut users: Vec<&FakeUser> = Vec::with_capacity(size);
        let mut last = None;
        let mut more = false;
        let range = if after.is_empty() {
            s.users.range::<String, _>(..)
        } else {
            s.users.range::<String, _>((
                std::ops::Bound::Excluded(&after),
                std::ops::Bound::Unbounded,
            ))
        };
        let domain_suffix = domain.as_ref().map(|d| format!("@{d}"));
        for (key, u) in range {
            if domain_suffix
                .as_ref()
                .is_some_and(|d| !key.ends_with(d.as_str()))
                || !query.matches(u)
            {
                continue;
            }
            if users.len() == size {
                more = true;
                break;
            }
            users.push(u);
            last = Some(key);
        }
        let next = match (more, last) {
            (true, Some(l)) => Some(encode_token(page + 1, l)),
            _ => None,
        };
        let body = UsersPageOut {
            users: &users,
            full: (!slim).then_some(shared.customer_id.as_str()),
            next_page_token: next.as_deref(),
        };
        (serde_json::to_vec(&body).unwrap_or_default(), fault)
    };
    let mut bytes = bytes;
    if let Some(Fault::TruncatePage { .. }) = fault {
        // A body that stops in the middle: the client must not take it for a short page.
        bytes.truncate(bytes.len() / 2);
    }
    json_response(&shared, &headers, bytes)
}

async fn users_get(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    AxPath(key): AxPath<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = admit(&shared, "users.get", &headers, &q, &[SCOPE_USERS]).await {
        return r;
    }
    let user = {
        let s = shared.lock();
        let k = key.to_lowercase();
        let email = s
            .by_id
            .get(&key)
            .cloned()
            .or_else(|| s.aliases.get(&k).cloned())
            .unwrap_or(k);
        s.users.get(&email).map(|u| {
            serde_json::to_vec(&UserOut {
                u,
                customer_id: None,
            })
            .unwrap_or_default()
        })
    };
    match user {
        Some(body) => json_response(&shared, &headers, body),
        None => google_error(404, "notFound", "Resource Not Found: userKey"),
    }
}

async fn members_list(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    AxPath(group): AxPath<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = admit(
        &shared,
        "members.list",
        &headers,
        &q,
        &[SCOPE_GROUP_MEMBERS],
    )
    .await
    {
        return r;
    }
    let size = match max_results(&q, 200, 200) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let derived = q
        .get("includeDerivedMembership")
        .is_some_and(|v| v == "true");
    let (page, offset) = match q.get("pageToken") {
        None => (1, 0usize),
        Some(t) => match decode_token(t).and_then(|(p, o)| Some((p, o.parse().ok()?))) {
            Some(p) => p,
            None => return google_error(400, "invalid", "Invalid Input: pageToken"),
        },
    };
    let (entries, fault) = {
        let mut s = shared.lock();
        let fault = s.take_fault("members.list", page);
        let Some(entries) = s.expand(&group.to_lowercase(), derived, &shared.customer_id) else {
            return google_error(404, "notFound", "Resource Not Found: groupKey");
        };
        (entries, fault)
    };
    if let Some(Fault::FailPage { status, reason, .. }) = fault {
        return google_error(status, reason, &format!("injected {reason}"));
    }
    let end = (offset + size).min(entries.len());
    let members: Vec<&Value> = entries.get(offset..end).unwrap_or(&[]).iter().collect();
    let mut body = json!({ "kind": "admin#directory#members", "members": members });
    if end < entries.len() {
        body["nextPageToken"] = json!(encode_token(page + 1, &end.to_string()));
    }
    json_response(
        &shared,
        &headers,
        serde_json::to_vec(&body).unwrap_or_default(),
    )
}

impl Inner {
    /// The member entries of a group: its direct members, plus with `derived` the users of
    /// nested groups (each user once), in a stable order.
    fn expand(&self, group: &str, derived: bool, customer_id: &str) -> Option<Vec<Value>> {
        let root = self.groups.get(group)?;
        let mut out = Vec::new();
        let mut seen_users = BTreeSet::new();
        let mut seen_groups = BTreeSet::from([group.to_string()]);
        let mut queue = VecDeque::from([(root, true)]);
        while let Some((g, direct)) = queue.pop_front() {
            for m in &g.members {
                match m {
                    FakeMember::User(email) => {
                        let key = email.to_lowercase();
                        if !seen_users.insert(key.clone()) {
                            continue;
                        }
                        let (id, status) = match self.users.get(&key) {
                            Some(u) => (
                                u.id.clone(),
                                if u.suspended { "SUSPENDED" } else { "ACTIVE" },
                            ),
                            // A member from outside the customer: not in users.list.
                            None => (format!("ext-{key}"), "ACTIVE"),
                        };
                        out.push(json!({"kind": "admin#directory#member", "id": id,
                            "email": email, "role": "MEMBER", "type": "USER", "status": status}));
                    }
                    FakeMember::Group(email) => {
                        let key = email.to_lowercase();
                        if direct {
                            out.push(
                                json!({"kind": "admin#directory#member", "id": format!("grp-{key}"),
                                "email": email, "role": "MEMBER", "type": "GROUP"}),
                            );
                        }
                        if derived && seen_groups.insert(key.clone()) {
                            if let Some(nested) = self.groups.get(&key) {
                                queue.push_back((nested, false));
                            }
                        }
                    }
                    FakeMember::Customer => {
                        if direct {
                            out.push(json!({"kind": "admin#directory#member", "id": customer_id,
                                "role": "MEMBER", "type": "CUSTOMER"}));
                        }
                    }
                }
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::model::{Emails, GoogleUser, UserNameParts, UsersPage};

    #[test]
    fn a_served_user_reads_back_as_the_google_user_it_is() {
        let mut u = FakeUser::new("7", "Ada@example.com", "Ada", "Lovelace").in_org_unit("/Sales");
        u.suspended = true;
        u.aliases.push("ada.l@example.com".into());
        let want = GoogleUser {
            id: "7".into(),
            primary_email: "Ada@example.com".into(),
            name: Some(UserNameParts {
                given_name: Some("Ada".into()),
                family_name: Some("Lovelace".into()),
                full_name: Some("Ada Lovelace".into()),
            }),
            suspended: Some(true),
            archived: Some(false),
            org_unit_path: Some("/Sales".into()),
            emails: Some(Emails(vec![
                "Ada@example.com".into(),
                "ada.l@example.com".into(),
            ])),
        };
        for full in [None, Some("C123")] {
            let page = UsersPageOut {
                users: &[&u],
                full,
                next_page_token: Some("t"),
            };
            let bytes = serde_json::to_vec(&page).unwrap();
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(v["users"][0]["emails"][0]["primary"], json!(true));
            assert_eq!(v.get("kind").is_some(), full.is_some(), "{v}");
            assert_eq!(v["users"][0].get("customerId").is_some(), full.is_some());
            let back: UsersPage = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(back.users, vec![want.clone()]);
            assert_eq!(back.next_page_token.as_deref(), Some("t"));
        }
    }

    #[test]
    fn page_tokens_round_trip() {
        let t = encode_token(3, "ada@example.com");
        assert_eq!(decode_token(&t), Some((3, "ada@example.com".to_string())));
        assert_eq!(decode_token("!!"), None);
    }

    #[test]
    fn the_query_subset_matches_the_org_unit_subtree() {
        let q = parse_query("orgUnitPath='/Engineering' isSuspended=false").unwrap();
        let u = FakeUser::new("1", "a@example.com", "A", "B").in_org_unit("/Engineering/Kernel");
        assert!(q.matches(&u));
        let other = FakeUser::new("2", "b@example.com", "A", "B").in_org_unit("/EngineeringX");
        assert!(!q.matches(&other));
        assert!(parse_query("name:'Ada'").is_err());
    }

    #[test]
    fn the_sample_has_groups_org_units_and_some_inactive_users() {
        let s = FakeSeed::sample(200, "example.com");
        assert_eq!(s.users.len(), 200);
        assert!(s.users.iter().any(|u| u.suspended));
        assert!(s.users.iter().any(|u| u.archived));
        assert!(s
            .groups
            .iter()
            .any(|g| g.members.contains(&FakeMember::Customer)));
        let emails: BTreeSet<String> = s.users.iter().map(|u| u.primary_email.clone()).collect();
        assert_eq!(emails.len(), 200, "emails are unique");
    }
}
