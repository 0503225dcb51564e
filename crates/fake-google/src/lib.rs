//! A fake Google: the OAuth token endpoint and the Directory API calls the pull makes, on
//! real HTTP.
//!
//! Tests, the demo and the benchmarks use it. It behaves like Google where the pull cares:
//! the token endpoint verifies the JWT bearer grant (RS256 signature with the service
//! account's key, `iss`, `aud`, `sub`, `scope`, `exp`); users.list pages by primary
//! email (at most 500), honours `customer`/`domain`, `showDeleted`, `query` (parsed with
//! Google's quoting: `orgUnitPath='/X'` for the subtree, `isSuspended=`, `isArchived=`,
//! `isAdmin=`, `email:prefix*`, `email='...'`, `givenName=`, `familyName=`), and trims to the
//! slim shape when `fields=` is given; users.get answers 412 for a user deleted less than 20
//! days ago and 403 for a key outside the customer; members.list expands nested groups with
//! `includeDerivedMembership`; members.hasMember answers for direct and nested membership;
//! errors come back in Google's JSON shape; gzip is used when both `Accept-Encoding: gzip`
//! and a User-Agent containing `gzip` are sent. Faults can be injected and the directory
//! mutated while it runs, its clock moved forward. The service account's key is a fixed,
//! public, test-only key in `tests/fixtures/fake-google/` (see `key.rs`): never a key that
//! reaches Google.
//!
//! Its own crate, so the daemon can be built without it (ARCHITECTURE.md, "Decisions").

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
use serde_json::{json, Value};

mod key;
mod oidc;
mod wire;

use key::TestKey;
pub use oidc::OidcLogin;
use wire::ErrorBody;
pub use wire::{SCOPE_GROUP_MEMBERS, SCOPE_USERS};

/// How long Google keeps a deleted user restorable
/// (<https://support.google.com/a/answer/1397578>).
const RESTORABLE_DAYS: i64 = 20;

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
    /// Other `emails` entries with their `type` (`home`, `work`, `other`, `custom`), such as
    /// a personal address.
    pub typed_emails: Vec<(String, String)>,
    /// An administrator (`isAdmin`).
    pub is_admin: bool,
    /// A guest account made by `users.createGuest` (`isGuestUser`): an ordinary directory
    /// user to users.list and users.get
    /// (<https://developers.google.com/workspace/admin/directory/reference/rest/v1/users>).
    pub guest: bool,
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
            typed_emails: Vec::new(),
            is_admin: false,
            guest: false,
        }
    }

    /// The same user in org unit `ou`.
    pub fn in_org_unit(mut self, ou: &str) -> FakeUser {
        self.org_unit_path = ou.to_string();
        self
    }

    /// Google's own address of the user, `local@<domain>.test-google-a.com`, which Google
    /// lists in `emails` and `nonEditableAliases` and which cannot be edited.
    pub fn test_google_address(&self) -> String {
        match self.primary_email.rsplit_once('@') {
            Some((local, domain)) => format!("{local}@{domain}.test-google-a.com"),
            None => format!("{}@test-google-a.com", self.primary_email),
        }
    }
}

/// A parsed `fields=` selector (Google's partial-response syntax: `a,b(c,d),e/f`, `*`).
///
/// Google returns only the fields the selector names, at every level, `nextPageToken`
/// included: <https://developers.google.com/workspace/admin/directory/v1/guides/performance#partial-response>.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldMask {
    /// Field name -> its own selection (`None` = the whole field).
    fields: BTreeMap<String, Option<FieldMask>>,
}

/// What a selector selects at one place of a response.
#[derive(Clone, Copy, Debug)]
pub enum Sel<'a> {
    /// Everything (no `fields=`, or a field named without a sub-selection).
    All,
    /// Only what the mask names.
    Some(&'a FieldMask),
}

impl<'a> Sel<'a> {
    /// The selection of field `name` here, or `None` when it is left out.
    pub fn field(self, name: &str) -> Option<Sel<'a>> {
        match self {
            Sel::All => Some(Sel::All),
            Sel::Some(m) => match m.fields.get(name).or_else(|| m.fields.get("*")) {
                None => None,
                Some(None) => Some(Sel::All),
                Some(Some(sub)) => Some(Sel::Some(sub)),
            },
        }
    }

    /// Whether field `name` is selected here.
    pub fn has(self, name: &str) -> bool {
        self.field(name).is_some()
    }
}

impl FieldMask {
    /// Parses a selector; an error names what is wrong, as Google's 400 does.
    pub fn parse(text: &str) -> Result<FieldMask, String> {
        let chars: Vec<char> = text.chars().collect();
        let mut at = 0;
        let mask = Self::parse_list(&chars, &mut at)?;
        if at != chars.len() {
            return Err(format!("Invalid field selection {text}"));
        }
        Ok(mask)
    }

    fn parse_list(c: &[char], at: &mut usize) -> Result<FieldMask, String> {
        let mut mask = FieldMask::default();
        loop {
            // A path a/b/c, then an optional (sub-selection).
            let mut path = Vec::new();
            loop {
                let start = *at;
                while *at < c.len() && !matches!(c[*at], ',' | '(' | ')' | '/') {
                    *at += 1;
                }
                let name: String = c[start..*at].iter().collect::<String>().trim().to_string();
                if name.is_empty() {
                    return Err("Invalid field selection: an empty field name".into());
                }
                path.push(name);
                if *at < c.len() && c[*at] == '/' {
                    *at += 1;
                    continue;
                }
                break;
            }
            let sub = if *at < c.len() && c[*at] == '(' {
                *at += 1;
                let sub = Self::parse_list(c, at)?;
                if *at >= c.len() || c[*at] != ')' {
                    return Err("Invalid field selection: unbalanced parentheses".into());
                }
                *at += 1;
                Some(sub)
            } else {
                None
            };
            mask.insert(&path, sub);
            if *at < c.len() && c[*at] == ',' {
                *at += 1;
                continue;
            }
            return Ok(mask);
        }
    }

    fn insert(&mut self, path: &[String], sub: Option<FieldMask>) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        let here = if rest.is_empty() {
            sub
        } else {
            let mut m = FieldMask::default();
            m.insert(rest, sub);
            Some(m)
        };
        match (self.fields.get_mut(first), here) {
            // Named whole somewhere: stays whole.
            (Some(None), _) => {}
            (Some(slot @ Some(_)), None) => *slot = None,
            (Some(Some(old)), Some(new)) => {
                for (k, v) in new.fields {
                    old.insert(&[k], v);
                }
            }
            (None, here) => {
                self.fields.insert(first.clone(), here);
            }
        }
    }

    /// Keeps only the selected parts of a JSON value (lists: of each item).
    pub fn apply(sel: Sel<'_>, v: Value) -> Value {
        match (sel, v) {
            (Sel::All, v) => v,
            (sel, Value::Array(items)) => {
                Value::Array(items.into_iter().map(|i| Self::apply(sel, i)).collect())
            }
            (sel, Value::Object(map)) => Value::Object(
                map.into_iter()
                    .filter_map(|(k, v)| sel.field(&k).map(|s| (k, Self::apply(s, v))))
                    .collect(),
            ),
            (_, v) => v,
        }
    }
}

/// A users.list page as the fake sends it, written straight from the directory.
struct UsersPageOut<'a> {
    users: &'a [&'a FakeUser],
    sel: Sel<'a>,
    customer_id: &'a str,
    next_page_token: Option<&'a str>,
}

impl serde::Serialize for UsersPageOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        if self.sel.has("kind") {
            m.serialize_entry("kind", "admin#directory#users")?;
        }
        if self.sel.has("etag") {
            m.serialize_entry("etag", "\"fake\"")?;
        }
        if let Some(sel) = self.sel.field("users") {
            let users: Vec<UserOut<'_>> = self
                .users
                .iter()
                .map(|u| UserOut {
                    u,
                    sel,
                    customer_id: self.customer_id,
                })
                .collect();
            m.serialize_entry("users", &users)?;
        }
        if let Some(t) = self
            .next_page_token
            .filter(|_| self.sel.has("nextPageToken"))
        {
            m.serialize_entry("nextPageToken", t)?;
        }
        m.end()
    }
}

/// One user in Google's shape, with only the fields `sel` selects (everything Google sends
/// when there is no `fields=`).
struct UserOut<'a> {
    u: &'a FakeUser,
    sel: Sel<'a>,
    customer_id: &'a str,
}

impl serde::Serialize for UserOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let u = self.u;
        let sel = self.sel;
        let mut m = s.serialize_map(None)?;
        macro_rules! field {
            ($name:expr, $value:expr) => {
                if sel.has($name) {
                    m.serialize_entry($name, $value)?;
                }
            };
        }
        field!("kind", "admin#directory#user");
        field!("etag", &format_args!("\"{}\"", u.id));
        field!("customerId", self.customer_id);
        field!("isAdmin", &u.is_admin);
        field!("agreedToTerms", &true);
        field!("isMailboxSetup", &true);
        field!("includeInGlobalAddressList", &true);
        field!("id", &u.id);
        field!("primaryEmail", &u.primary_email);
        if let Some(name) = sel.field("name") {
            m.serialize_entry(
                "name",
                &NameOut {
                    given: &u.given_name,
                    family: &u.family_name,
                    sel: name,
                },
            )?;
        }
        field!("suspended", &u.suspended);
        field!("archived", &u.archived);
        field!("orgUnitPath", &u.org_unit_path);
        field!("isGuestUser", &u.guest);
        if let Some(emails) = sel.field("emails") {
            m.serialize_entry("emails", &EmailsOut { u, sel: emails })?;
        }
        if !u.aliases.is_empty() {
            field!("aliases", &u.aliases);
        }
        field!("nonEditableAliases", &[u.test_google_address()]);
        m.end()
    }
}

struct NameOut<'a> {
    given: &'a str,
    family: &'a str,
    sel: Sel<'a>,
}

impl serde::Serialize for NameOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        if self.sel.has("givenName") {
            m.serialize_entry("givenName", self.given)?;
        }
        if self.sel.has("familyName") {
            m.serialize_entry("familyName", self.family)?;
        }
        if self.sel.has("fullName") {
            m.serialize_entry("fullName", &format_args!("{} {}", self.given, self.family))?;
        }
        m.end()
    }
}

/// `emails` as Google lists it: the primary address (marked primary), the aliases and
/// Google's test-google-a.com address (untyped), then the typed entries (`home`, `work`...).
struct EmailsOut<'a> {
    u: &'a FakeUser,
    sel: Sel<'a>,
}

impl serde::Serialize for EmailsOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        struct Addr<'a> {
            address: &'a str,
            primary: bool,
            kind: Option<&'a str>,
            sel: Sel<'a>,
        }
        impl serde::Serialize for Addr<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(None)?;
                if self.sel.has("address") {
                    m.serialize_entry("address", self.address)?;
                }
                if self.primary && self.sel.has("primary") {
                    m.serialize_entry("primary", &true)?;
                }
                if let Some(k) = self.kind.filter(|_| self.sel.has("type")) {
                    m.serialize_entry("type", k)?;
                }
                m.end()
            }
        }
        let u = self.u;
        let test = u.test_google_address();
        let plain = |address, primary| Addr {
            address,
            primary,
            kind: None,
            sel: self.sel,
        };
        let mut seq = s.serialize_seq(Some(2 + u.aliases.len() + u.typed_emails.len()))?;
        seq.serialize_element(&plain(&u.primary_email, true))?;
        for a in &u.aliases {
            seq.serialize_element(&plain(a, false))?;
        }
        seq.serialize_element(&plain(&test, false))?;
        for (a, kind) in &u.typed_emails {
            seq.serialize_element(&Addr {
                address: a,
                primary: false,
                kind: Some(kind),
                sel: self.sel,
            })?;
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
    /// and 1 in 97 archived, 1 in 5 with a personal (`home`) address, 1 in 7 with an alias in
    /// `domain` and one in a second domain (`.org` for the top-level domain), and groups `engineering@` (the Engineering subtree, through the
    /// nested group `kernel@`), `sales@`, `support@` and `everyone@` (a CUSTOMER member).
    pub fn sample(n: usize, domain: &str) -> FakeSeed {
        let mut users = Vec::with_capacity(n);
        let mut groups: BTreeMap<&str, Vec<FakeMember>> = BTreeMap::new();
        let second_domain = match domain.rsplit_once('.') {
            Some((stem, _)) => format!("{stem}.org"),
            None => format!("{domain}.org"),
        };
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
            // The shapes real captures show (besides Google's test-google-a.com address,
            // which every user has): a personal address, an alias in the primary domain and
            // one in a second domain.
            let local = email.split('@').next().unwrap_or_default().to_string();
            if i % 5 == 0 {
                u.typed_emails
                    .push((format!("{local}.home@gmail.com"), "home".into()));
            }
            if i % 7 == 0 {
                u.aliases
                    .push(format!("{}{i}@{domain}", given.to_lowercase()));
                u.aliases.push(format!("{local}@{second_domain}"));
            }
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
    /// Page `page` (1-based) of `endpoint` (`users.list`, `members.list`; `users.get` with
    /// page 1) answers `status` with `reason` the next `times` times it is asked for.
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
    /// The user with this primary email is left out of the next complete users.list
    /// listing, though users.get finds it: Google's search index can lag behind the
    /// directory by up to 36 hours for new data
    /// (<https://developers.google.com/workspace/admin/directory/v1/guides/search-users>).
    SearchLag(String),
    /// Just after page `page` of users.list is served, the user `old` is renamed to `new`
    /// (as an admin could while the pull pages).
    RenameAfterPage {
        /// 1-based page number.
        page: usize,
        /// The user's primary email now.
        old: String,
        /// Its new primary email.
        new: String,
    },
    /// Every token request waits this long before it is answered.
    StallToken(Duration),
    /// The token endpoint answers 503 the next `times` times.
    TokenServerError {
        /// How many times.
        times: u32,
    },
    /// Page `page` of users.list sends half of its body, then waits `stall` before the rest.
    StallBody {
        /// 1-based page number.
        page: usize,
        /// How long the body stalls halfway.
        stall: Duration,
    },
    /// Page `page` of `endpoint` answers 403 in the newer error shape (`status:
    /// RESOURCE_EXHAUSTED`, no `errors[]`), `times` times
    /// (<https://cloud.google.com/apis/design/errors#error_model>).
    ResourceExhausted {
        /// users.list or members.list.
        endpoint: &'static str,
        /// 1-based page number.
        page: usize,
        /// How many times.
        times: u32,
    },
    /// Page `page` of users.list answers 429 with `Retry-After: seconds`, `times` times.
    RetryAfter {
        /// 1-based page number.
        page: usize,
        /// How many times.
        times: u32,
        /// The header's value.
        seconds: u64,
    },
    /// The token endpoint's clock runs this many seconds ahead (negative: behind), so a
    /// JWT's `iat`/`exp` look wrong to it.
    ClockSkew(i64),
    /// A step of keyless credentials refuses: `metadata` (no service account attached to
    /// the VM: 404), `STS` (the subject token does not match the provider: 400) or
    /// `signJwt` (the caller lacks `iam.serviceAccounts.signJwt`: 403).
    KeylessRefuses(&'static str),
    /// members.list of `group` (direct or derived) leaves out the member `email` until the
    /// faults are cleared: Google's derived listing has returned too few members, even for
    /// a group without subgroups (GAM-team/GAM#1210: 14 of 24 members; GAMADV-XTD3#82), and
    /// awslabs/ssosync stopped relying on it (PRs #95, #188). hasMember still answers true.
    OmitMember {
        /// The group whose listing drops the member.
        group: String,
        /// The member's email.
        email: String,
    },
    /// users.get on this key (an id or an address) answers 403 "Not Authorized to access this
    /// resource/api", as Google does for a key outside the customer; GAM treats that answer
    /// as "does not exist" (slashdevops/idp-scim-sync#49).
    UsersGetForbidden(String),
    /// The token endpoint refuses every grant with HTTP `status`, OAuth `error` and
    /// `error_description`, as Google's does (GAM `src/gam/gapi/errors.py`, GAM PR #1171,
    /// googleapis/google-cloud-php#3622): `invalid_grant` "Invalid grant: account not found"
    /// (the service account deleted or disabled), "The account has been deleted" and "Not a
    /// valid email" (the subject), `invalid_request` "Invalid impersonation \"sub\" field".
    TokenRefuses {
        /// HTTP status (400 or 401).
        status: u16,
        /// The OAuth error code.
        error: &'static str,
        /// Google's description.
        description: &'static str,
    },
    /// Page `page` of `endpoint` answers 403 with the plain-text body "Request rate higher
    /// than configured.", not JSON, `times` times (GAM `checkGAPIError` retries it).
    PlainTextRateLimit {
        /// users.list, members.list or users.get (page 1).
        endpoint: &'static str,
        /// 1-based page number.
        page: usize,
        /// How many times.
        times: u32,
    },
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
    /// Normalised primary email -> user, so pages can come out ordered by email.
    users: BTreeMap<String, FakeUser>,
    /// Google id -> normalised primary email, so pages can come out ordered by id.
    by_id: BTreeMap<String, String>,
    /// Normalised emails left out of the current listing ([`Fault::SearchLag`]).
    lagging: BTreeSet<String>,
    stall_token: Option<Duration>,
    token_errors: u32,
    clock_skew: i64,
    keyless_refuses: Option<&'static str>,
    /// Tokens the metadata server handed out (the attached service account's own).
    cloud_tokens: BTreeSet<String>,
    /// Normalised alias -> normalised primary email.
    aliases: HashMap<String, String>,
    groups: BTreeMap<String, FakeGroup>,
    faults: VecDeque<Fault>,
    delay: Option<Duration>,
    deny_delegation: bool,
    /// Access token -> (expiry, scopes, whether its subject is an admin).
    tokens: HashMap<String, (std::time::Instant, Vec<String>, bool)>,
    stats: Stats,
    next_id: u64,
    /// Deleted users by id, with when they were deleted on the fake's clock: Google keeps a
    /// deleted user restorable for 20 days
    /// (<https://support.google.com/a/answer/1397578>).
    deleted: BTreeMap<String, (FakeUser, chrono::DateTime<chrono::Utc>)>,
    /// Ids and normalised addresses of users moved to another Google customer.
    foreign: BTreeSet<String>,
    /// How far the fake's clock is ahead of the real one.
    clock_offset: chrono::Duration,
    /// (group, member) pairs left out of listings ([`Fault::OmitMember`]).
    omitted: Vec<(String, String)>,
    /// Keys users.get answers 403 for ([`Fault::UsersGetForbidden`]).
    forbidden_keys: BTreeSet<String>,
    /// The token endpoint's refusal ([`Fault::TokenRefuses`]).
    token_refusal: Option<(u16, &'static str, &'static str)>,
}

struct Shared {
    inner: Mutex<Inner>,
    /// The service account's key, which Google holds: the token endpoint checks grants
    /// with its public half, and signJwt signs with it.
    key: TestKey,
    client_email: String,
    admin: String,
    customer_id: String,
    granted: Vec<String>,
    token_lifetime: Duration,
    token_uri: String,
    /// The OpenID Connect issuer's state (see `oidc.rs`).
    oidc: Mutex<oidc::OidcState>,
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
    /// The committed test key could not be read.
    #[error("fake Google: cannot read its test key: {0}")]
    Key(String),
}

impl FakeGoogle {
    /// Serves the fake on `listener` (bind `127.0.0.1:0`), seeded with `seed`. Its service
    /// account has the fixed test key of `tests/fixtures/fake-google/`.
    pub async fn start(
        listener: tokio::net::TcpListener,
        seed: FakeSeed,
    ) -> Result<FakeGoogle, FakeError> {
        let addr = listener.local_addr()?;
        let key = TestKey::service_account().map_err(FakeError::Key)?;
        let mut inner = Inner {
            users: BTreeMap::new(),
            by_id: BTreeMap::new(),
            lagging: BTreeSet::new(),
            stall_token: None,
            token_errors: 0,
            clock_skew: 0,
            keyless_refuses: None,
            cloud_tokens: BTreeSet::new(),
            aliases: HashMap::new(),
            groups: BTreeMap::new(),
            faults: VecDeque::new(),
            delay: None,
            deny_delegation: false,
            tokens: HashMap::new(),
            stats: Stats::default(),
            next_id: 9_000_000,
            deleted: BTreeMap::new(),
            foreign: BTreeSet::new(),
            clock_offset: chrono::Duration::zero(),
            omitted: Vec::new(),
            forbidden_keys: BTreeSet::new(),
            token_refusal: None,
        };
        for u in seed.users {
            inner.insert_user(u);
        }
        for g in seed.groups {
            inner.groups.insert(g.email.to_lowercase(), g);
        }
        let shared = Arc::new(Shared {
            inner: Mutex::new(inner),
            key,
            client_email: "retrac-sync@fake-project.iam.gserviceaccount.com".into(),
            admin: seed.admin,
            customer_id: seed.customer_id,
            granted: seed.granted_scopes,
            token_lifetime: seed.token_lifetime,
            token_uri: format!("http://{addr}/token"),
            oidc: Mutex::new(oidc::OidcState::new(format!("http://{addr}"))),
        });
        let app = Router::new()
            .route("/token", post(token))
            .route(
                "/computeMetadata/v1/instance/service-accounts/default/token",
                get(metadata_token),
            )
            .route(
                "/v1/projects/-/serviceAccounts/{name}",
                post(iam_credentials),
            )
            .route("/v1/token", post(sts_token))
            .route("/subject-token", get(url_subject_token))
            .route("/latest/api/token", axum::routing::put(imds_session))
            .route(
                "/latest/meta-data/placement/availability-zone",
                get(imds_zone),
            )
            .route("/latest/meta-data/iam/security-credentials", get(imds_role))
            .route(
                "/latest/meta-data/iam/security-credentials/{role}",
                get(imds_role_credentials),
            )
            .route("/admin/directory/v1/users", get(users_list))
            .route("/admin/directory/v1/users/{key}", get(users_get))
            .route(
                "/admin/directory/v1/groups/{group}/members",
                get(members_list),
            )
            .route(
                "/admin/directory/v1/groups/{group}/hasMember/{member}",
                get(has_member),
            )
            .merge(oidc::routes())
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "fake Google stopped");
            }
        });
        Ok(FakeGoogle { addr, shared, task })
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

    /// The service account's email (the key file's `client_email`; `[google].service_account`
    /// without a key).
    pub fn service_account(&self) -> String {
        self.shared.client_email.clone()
    }

    /// The service account's client id, as written in the key file.
    pub fn client_id(&self) -> &'static str {
        "100000000000000000042"
    }

    /// Writes a service account key file (mode 0600) whose `token_uri` points at this fake.
    pub fn write_key_file(&self, path: &Path) -> std::io::Result<()> {
        self.write_key_file_with(path, self.shared.key.pem())
    }

    /// Writes a key file like [`FakeGoogle::write_key_file`] but with a key the service
    /// account no longer has (deleted or rotated): the token endpoint answers
    /// `invalid_grant` "Invalid JWT Signature".
    pub fn write_deleted_key_file(&self, path: &Path) -> std::io::Result<()> {
        let deleted = TestKey::deleted().map_err(std::io::Error::other)?;
        self.write_key_file_with(path, deleted.pem())
    }

    fn write_key_file_with(&self, path: &Path, private_pem: &str) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let key = json!({
            "type": "service_account",
            "project_id": "fake-project",
            "private_key_id": "00000000000000000000000000000000000fake0",
            "private_key": private_pem,
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

    /// Writes a Workload Identity Federation credential configuration file, as
    /// `gcloud iam workload-identity-pools create-cred-config` does, with its OIDC subject
    /// token in `token.txt` beside it. Returns the configuration file.
    pub fn write_external_account_file(&self, dir: &Path) -> std::io::Result<std::path::PathBuf> {
        let token = dir.join("token.txt");
        std::fs::write(&token, OIDC_SUBJECT_TOKEN)?;
        let conf = dir.join("external-account.json");
        let v = json!({
            "type": "external_account",
            "audience": WIF_AUDIENCE,
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": format!("{}/v1/token", self.base_url()),
            "credential_source": {"file": token, "format": {"type": "text"}},
        });
        std::fs::write(&conf, serde_json::to_string_pretty(&v)?)?;
        Ok(conf)
    }

    /// Injects a fault.
    pub fn inject(&self, fault: Fault) {
        let mut s = self.shared.lock();
        match fault {
            Fault::Delay(d) => s.delay = Some(d),
            Fault::DenyDelegation => s.deny_delegation = true,
            Fault::SearchLag(email) => {
                s.lagging.insert(email.to_lowercase());
            }
            Fault::StallToken(d) => s.stall_token = Some(d),
            Fault::TokenServerError { times } => s.token_errors = times,
            Fault::ClockSkew(secs) => s.clock_skew = secs,
            Fault::KeylessRefuses(step) => s.keyless_refuses = Some(step),
            Fault::OmitMember { group, email } => {
                s.omitted.push((group.to_lowercase(), email.to_lowercase()))
            }
            Fault::UsersGetForbidden(key) => {
                s.forbidden_keys.insert(key.to_lowercase());
            }
            Fault::TokenRefuses {
                status,
                error,
                description,
            } => s.token_refusal = Some((status, error, description)),
            other => s.faults.push_back(other),
        }
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        let mut s = self.shared.lock();
        s.faults.clear();
        s.delay = None;
        s.deny_delegation = false;
        s.lagging.clear();
        s.stall_token = None;
        s.token_errors = 0;
        s.clock_skew = 0;
        s.keyless_refuses = None;
        s.omitted.clear();
        s.forbidden_keys.clear();
        s.token_refusal = None;
    }

    /// Makes every access token issued so far invalid (as if it expired early).
    pub fn expire_tokens(&self) {
        self.shared.lock().tokens.clear();
    }

    /// Requests served so far for `endpoint` (`users.list`, `users.get`, `members.list`,
    /// `token`, `metadata`, `signJwt`).
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

    /// All Directory API requests (not the token, metadata or signJwt endpoints).
    pub fn api_requests(&self) -> u64 {
        let s = self.shared.lock();
        s.stats
            .requests
            .iter()
            .filter(|(k, _)| {
                !matches!(
                    **k,
                    "token"
                        | "metadata"
                        | "signJwt"
                        | "sts"
                        | "generateAccessToken"
                        | "subject token"
                        | "aws metadata"
                )
            })
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

    /// Deletes a user (its group memberships stay, as Google's do until cleaned up). For 20
    /// days of the fake's clock it can be restored ([`FakeGoogle::undelete`]): users.get on
    /// its id answers 412 `conditionNotMet` "User is deleted." (firezone PR #15169, a
    /// production fix; the same 412 comes per part in batch answers), and it is listed only
    /// by users.list with `showDeleted=true`. After that, 404.
    pub fn delete(&self, email: &str) -> Option<FakeUser> {
        let mut s = self.shared.lock();
        let key = email.to_lowercase();
        let u = s.users.remove(&key)?;
        s.by_id.remove(&u.id);
        s.aliases.retain(|_, v| *v != key);
        let now = s.now();
        s.deleted.insert(u.id.clone(), (u.clone(), now));
        Some(u)
    }

    /// Restores a user deleted less than 20 days ago (by the fake's clock), with the same
    /// id, as the Admin console and users.undelete do. Returns whether it could.
    pub fn undelete(&self, email: &str) -> bool {
        let mut s = self.shared.lock();
        s.purge_deleted();
        let Some(id) = s
            .deleted
            .iter()
            .find(|(_, (u, _))| u.primary_email.eq_ignore_ascii_case(email))
            .map(|(id, _)| id.clone())
        else {
            return false;
        };
        if s.users.contains_key(&email.to_lowercase()) {
            // The address was taken again meanwhile: Google refuses the restore.
            return false;
        }
        match s.deleted.remove(&id) {
            Some((u, _)) => {
                s.insert_user(u);
                true
            }
            None => false,
        }
    }

    /// Moves the fake's clock forward (the 20 days of a deleted user, without waiting).
    pub fn advance_clock(&self, by: Duration) {
        let mut s = self.shared.lock();
        s.clock_offset += chrono::Duration::from_std(by).unwrap_or(chrono::Duration::zero());
    }

    /// Moves a user to another Google customer: it leaves users.list, and users.get on its id
    /// or address answers 403 "Not Authorized to access this resource/api", Google's answer
    /// for a key outside the customer (slashdevops/idp-scim-sync#49; GAM treats it as
    /// "does not exist").
    pub fn move_to_other_customer(&self, email: &str) -> Option<FakeUser> {
        let mut s = self.shared.lock();
        let key = email.to_lowercase();
        let u = s.users.remove(&key)?;
        s.by_id.remove(&u.id);
        s.aliases.retain(|_, v| *v != key);
        s.foreign.insert(u.id.clone());
        s.foreign.insert(key);
        Some(u)
    }

    /// Renames a user's primary email, keeping its id; the old address becomes an alias, as
    /// in Google. Group memberships follow the user.
    pub fn rename(&self, old: &str, new: &str) -> bool {
        self.shared.lock().rename(old, new)
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
    /// The fake's clock.
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + self.clock_offset
    }

    /// Forgets the users deleted 20 days ago or more: Google purges them then.
    fn purge_deleted(&mut self) {
        let now = self.now();
        self.deleted
            .retain(|_, (_, at)| now - *at < chrono::Duration::days(RESTORABLE_DAYS));
    }

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

    /// The stall of this users.list page's body, if one was injected (used up once).
    fn take_stall(&mut self, page: usize) -> Option<Duration> {
        let i = self
            .faults
            .iter()
            .position(|f| matches!(f, Fault::StallBody { page: p, .. } if *p == page))?;
        match self.faults.remove(i) {
            Some(Fault::StallBody { stall, .. }) => Some(stall),
            _ => None,
        }
    }

    /// The rename to make after this users.list page, if one was injected (used up once).
    fn take_rename(&mut self, page: usize) -> Option<(String, String)> {
        let i = self
            .faults
            .iter()
            .position(|f| matches!(f, Fault::RenameAfterPage { page: p, .. } if *p == page))?;
        match self.faults.remove(i) {
            Some(Fault::RenameAfterPage { old, new, .. }) => Some((old, new)),
            _ => None,
        }
    }

    /// Renames a user's primary email, keeping its id; the old address becomes an alias, as
    /// in Google. Group memberships follow the user.
    fn rename(&mut self, old: &str, new: &str) -> bool {
        let Some(mut u) = self.users.remove(&old.to_lowercase()) else {
            return false;
        };
        u.aliases.push(u.primary_email.clone());
        u.primary_email = new.to_string();
        for g in self.groups.values_mut() {
            for m in &mut g.members {
                if let FakeMember::User(e) = m {
                    if e.eq_ignore_ascii_case(old) {
                        *e = new.to_string();
                    }
                }
            }
        }
        self.insert_user(u);
        true
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
                Fault::ResourceExhausted {
                    endpoint: e,
                    page: p,
                    times,
                } if *e == endpoint && *p == page && *times > 0 => {
                    *times -= 1;
                    return Some(f.clone());
                }
                Fault::RetryAfter { page: p, times, .. }
                    if endpoint == "users.list" && *p == page && *times > 0 =>
                {
                    *times -= 1;
                    return Some(f.clone());
                }
                Fault::PlainTextRateLimit {
                    endpoint: e,
                    page: p,
                    times,
                } if *e == endpoint && *p == page && *times > 0 => {
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

/// The metadata server's token for the service account attached to the VM
/// (<https://cloud.google.com/compute/docs/access/authenticate-workloads#applications>):
/// only with `Metadata-Flavor: Google`
/// (<https://cloud.google.com/compute/docs/metadata/querying-metadata>).
async fn metadata_token(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let mut s = shared.lock();
    s.count("metadata", "", &headers);
    if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
        return (
            StatusCode::FORBIDDEN,
            "Missing Metadata-Flavor:Google header.",
        )
            .into_response();
    }
    if s.keyless_refuses == Some("metadata") {
        return (
            StatusCode::NOT_FOUND,
            "No service account is attached to this instance.",
        )
            .into_response();
    }
    let mut raw = [0u8; 24];
    if getrandom::fill(&mut raw).is_err() {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no randomness").into_response();
    }
    let token = format!(
        "ya29.meta-{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    );
    s.cloud_tokens.insert(token.clone());
    let body = json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"});
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        serde_json::to_vec(&body).unwrap_or_default(),
    )
        .into_response()
}

/// The subject token the fake's workload identity provider accepts.
const OIDC_SUBJECT_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.fake-workload-identity.sig";

/// The audience of the fake's workload identity pool provider.
const WIF_AUDIENCE: &str =
    "//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/fake-pool/providers/fake-oidc";

/// The security token service's token exchange (RFC 8693), as Google's STS answers it
/// (<https://cloud.google.com/iam/docs/reference/sts/rest/v1/TopLevel/token>).
async fn sts_token(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let mut s = shared.lock();
    s.count("sts", "", &HeaderMap::new());
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let f = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let oauth = |error: &str, description: &str| {
        (
            StatusCode::BAD_REQUEST,
            [("content-type", "application/json")],
            serde_json::to_vec(&json!({"error": error, "error_description": description}))
                .unwrap_or_default(),
        )
            .into_response()
    };
    if f("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange" {
        return oauth("unsupported_grant_type", "Invalid grant_type.");
    }
    if f("audience") != WIF_AUDIENCE {
        return oauth(
            "invalid_target",
            "The target service indicated by the \"audience\" parameters is invalid.",
        );
    }
    let aws = f("subject_token_type") == AWS_SUBJECT_TOKEN_TYPE;
    if aws && s.keyless_refuses != Some("STS") {
        if let Err(why) = check_aws_subject_token(f("subject_token"), f("audience")) {
            return oauth("invalid_grant", &why);
        }
    }
    if s.keyless_refuses == Some("STS") || (!aws && f("subject_token") != OIDC_SUBJECT_TOKEN) {
        return oauth(
            "invalid_grant",
            "The audience in ID Token does not match the expected audience.",
        );
    }
    let mut raw = [0u8; 24];
    if getrandom::fill(&mut raw).is_err() {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no randomness").into_response();
    }
    let token = format!(
        "ya29.fed-{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    );
    s.cloud_tokens.insert(token.clone());
    let body = json!({"access_token": token, "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "token_type": "Bearer", "expires_in": 3600});
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        serde_json::to_vec(&body).unwrap_or_default(),
    )
        .into_response()
}

/// IAM Credentials `projects.serviceAccounts.signJwt`: signs the payload with the service
/// account's Google-held key, for a caller whose token may
/// (<https://cloud.google.com/iam/docs/reference/credentials/rest/v1/projects.serviceAccounts/signJwt>).
async fn sign_jwt(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    AxPath(name): AxPath<String>,
    body: Bytes,
) -> Response {
    let iam_error = |code: u16, status: &str, message: &str| {
        (
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            [("content-type", "application/json; charset=UTF-8")],
            serde_json::to_vec(
                &json!({"error": {"code": code, "message": message, "status": status}}),
            )
            .unwrap_or_default(),
        )
            .into_response()
    };
    let refuses = {
        let mut s = shared.lock();
        s.count("signJwt", "", &headers);
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !s.cloud_tokens.contains(bearer) {
            return iam_error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials.",
            );
        }
        if s.keyless_refuses == Some("signJwt scope") {
            // A Compute Engine VM with the default access scopes: its token may not call the
            // IAM Credentials API, whatever roles it has
            // (<https://cloud.google.com/compute/docs/access/service-accounts#accesscopesiam>).
            drop(s);
            return (
                StatusCode::FORBIDDEN,
                [("content-type", "application/json; charset=UTF-8")],
                serde_json::to_vec(&json!({"error": {"code": 403,
                    "message": "Request had insufficient authentication scopes.",
                    "status": "PERMISSION_DENIED",
                    "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT", "domain": "googleapis.com",
                        "metadata": {"service": "iamcredentials.googleapis.com",
                            "method": "google.iam.credentials.v1.IAMCredentials.SignJwt"}}]}}))
                .unwrap_or_default(),
            )
                .into_response();
        }
        s.keyless_refuses == Some("signJwt")
    };
    let account = name.strip_suffix(":signJwt").unwrap_or("");
    if refuses || account != shared.client_email {
        return iam_error(
            403,
            "PERMISSION_DENIED",
            &format!("Permission 'iam.serviceAccounts.signJwt' denied on resource (or it may not exist): projects/-/serviceAccounts/{account}"),
        );
    }
    let Some(payload) = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("payload").and_then(Value::as_str).map(str::to_string))
    else {
        return iam_error(400, "INVALID_ARGUMENT", "payload is required");
    };
    let enc = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let head = enc(json!({"alg": "RS256", "typ": "JWT", "kid": "fake0"})
        .to_string()
        .as_bytes());
    let signed = format!("{head}.{}", enc(payload.as_bytes()));
    let Ok(signature) = shared.key.sign(signed.as_bytes()) else {
        return iam_error(500, "INTERNAL", "Internal error encountered.");
    };
    let jwt = format!("{signed}.{}", enc(&signature));
    (
        StatusCode::OK,
        [("content-type", "application/json; charset=UTF-8")],
        serde_json::to_vec(&json!({"keyId": "fake0", "signedJwt": jwt})).unwrap_or_default(),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------
// Keyless credentials beyond the metadata server: Workload Identity Federation's URL and
// AWS subject tokens, and service account impersonation (generateAccessToken).
// `Fault::KeylessRefuses` also takes `"subject token URL"` (no identity: 400),
// `"AWS metadata"` (no instance profile: 404) and `"generateAccessToken"` (403).
// ---------------------------------------------------------------------------------------

/// The subject token type of AWS's signed GetCallerIdentity request
/// (<https://google.aip.dev/auth/4117>).
const AWS_SUBJECT_TOKEN_TYPE: &str = "urn:ietf:params:aws:token-type:aws4_request";

/// The AWS identities the fake's STS accepts (AWS's documentation example values, not
/// real keys): an IAM user's long-term key, for `AWS_*` variables...
const AWS_USER_KEY: (&str, &str) = (
    "AKIAIOSFODNN7EXAMPLE",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
);
/// ...and the EC2 role's temporary credentials, from the fake instance metadata (key id,
/// secret key, session token).
const AWS_ROLE_KEY: (&str, &str, &str) = (
    "ASIAIOSFODNN7EXAMPLE",
    "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY",
    "IQoJb3JpZ2luX2VjEXAMPLE//////////wEaCWV1LXdlc3QtMyJGMEQCIFAKE+session/token==",
);
/// The role the fake instance profile names.
const AWS_ROLE: &str = "retrac-sync-ec2";
/// The fake instance's availability zone (region `eu-west-3`).
const AWS_ZONE: &str = "eu-west-3b";
/// The fake IMDSv2 session token (every fake instance requires IMDSv2, as new EC2 instance
/// types do by default).
const IMDS_SESSION: &str = "AQAEAFAKE-imdsv2-session-token==";

/// Which `credential_source` [`FakeGoogle::write_federation_file`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubjectTokenSource {
    /// A token file beside the configuration (`credential_source.file`).
    File,
    /// The fake's URL source answering in text (no `format`: text is the default).
    UrlText,
    /// The fake's URL source answering JSON, as Azure's IMDS does (`access_token`).
    UrlJson,
    /// AWS: region and role credentials from the fake instance metadata (with IMDSv2's
    /// session token URL when `imdsv2`), or from `AWS_*` variables when they are set.
    Aws {
        /// Whether the file names `imdsv2_session_token_url`.
        imdsv2: bool,
    },
}

impl FakeGoogle {
    /// Writes a Workload Identity Federation credential configuration file for `source`, as
    /// `gcloud iam workload-identity-pools create-cred-config` does: Google's public hosts
    /// in `token_url` and in `service_account_impersonation_url` (with `impersonate`), so
    /// only `[google].sts_url` and `iam_url` can bring the daemon here. Returns its path.
    pub fn write_federation_file(
        &self,
        dir: &Path,
        source: SubjectTokenSource,
        impersonate: bool,
    ) -> std::io::Result<std::path::PathBuf> {
        let base = self.base_url();
        let jwt = "urn:ietf:params:oauth:token-type:jwt";
        let (kind, token_type, credential_source) = match source {
            SubjectTokenSource::File => {
                let token = dir.join("token.txt");
                std::fs::write(&token, OIDC_SUBJECT_TOKEN)?;
                ("file", jwt, json!({"file": token}))
            }
            SubjectTokenSource::UrlText => (
                "url",
                jwt,
                json!({"url": format!("{base}/subject-token"), "headers": {"Metadata": "True"}}),
            ),
            SubjectTokenSource::UrlJson => (
                "url-json",
                jwt,
                json!({
                    "url": format!("{base}/subject-token?format=json"),
                    "headers": {"Metadata": "True"},
                    "format": {"type": "json", "subject_token_field_name": "access_token"},
                }),
            ),
            SubjectTokenSource::Aws { imdsv2 } => {
                let mut s = json!({
                    "environment_id": "aws1",
                    "region_url": format!("{base}/latest/meta-data/placement/availability-zone"),
                    "url": format!("{base}/latest/meta-data/iam/security-credentials"),
                    "regional_cred_verification_url": "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
                });
                if imdsv2 {
                    s["imdsv2_session_token_url"] = json!(format!("{base}/latest/api/token"));
                }
                ("aws", AWS_SUBJECT_TOKEN_TYPE, s)
            }
        };
        let mut v = json!({
            "type": "external_account",
            "audience": WIF_AUDIENCE,
            "subject_token_type": token_type,
            "token_url": "https://sts.googleapis.com/v1/token",
            "credential_source": credential_source,
        });
        if impersonate {
            v["service_account_impersonation_url"] = json!(format!(
                "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{}:generateAccessToken",
                self.shared.client_email
            ));
        }
        let conf = dir.join(format!("external-account-{kind}.json"));
        std::fs::write(&conf, serde_json::to_string_pretty(&v)?)?;
        Ok(conf)
    }

    /// `AWS_*` variables of the IAM user the fake's STS knows, region included.
    pub fn aws_user_environment(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", AWS_USER_KEY.0.to_string()),
            ("AWS_SECRET_ACCESS_KEY", AWS_USER_KEY.1.to_string()),
            ("AWS_REGION", "eu-west-3".to_string()),
        ]
    }

    /// The secrets the fake hands out or accepts for AWS (secret keys, session tokens), so
    /// that tests can check none reaches a message.
    pub fn aws_secrets(&self) -> [&'static str; 4] {
        [AWS_USER_KEY.1, AWS_ROLE_KEY.1, AWS_ROLE_KEY.2, IMDS_SESSION]
    }

    /// Whose token called signJwt last: `metadata`, `federated` (straight from the STS) or
    /// `impersonated` (from generateAccessToken).
    pub fn last_sign_jwt_caller(&self) -> Option<String> {
        self.last_query("signJwt caller")
    }
}

/// What kind of token a bearer is, by the prefix the fake gave it.
fn cloud_token_kind(bearer: &str) -> &'static str {
    if bearer.starts_with("ya29.meta-") {
        "metadata"
    } else if bearer.starts_with("ya29.fed-") {
        "federated"
    } else if bearer.starts_with("ya29.imp-") {
        "impersonated"
    } else {
        "unknown"
    }
}

fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
}

/// IAM Credentials' `projects/-/serviceAccounts/{name}`: `EMAIL:signJwt` or
/// `EMAIL:generateAccessToken` (one route: the router cannot match a suffix after a
/// parameter). Records the kind of token that calls signJwt.
async fn iam_credentials(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    AxPath(name): AxPath<String>,
    body: Bytes,
) -> Response {
    if let Some(account) = name.strip_suffix(":generateAccessToken") {
        return generate_access_token(&shared, &headers, account, &body);
    }
    let kind = cloud_token_kind(bearer(&headers));
    shared
        .lock()
        .stats
        .last_query
        .insert("signJwt caller", kind.to_string());
    sign_jwt(State(shared), headers, AxPath(name), body).await
}

/// An IAM Credentials error in Google's JSON shape.
fn iam_error(code: u16, status: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [("content-type", "application/json; charset=UTF-8")],
        serde_json::to_vec(&json!({"error": {"code": code, "message": message, "status": status}}))
            .unwrap_or_default(),
    )
        .into_response()
}

/// `projects.serviceAccounts.generateAccessToken`: the service account's own access token,
/// for a caller allowed to impersonate it
/// (<https://cloud.google.com/iam/docs/reference/credentials/rest/v1/projects.serviceAccounts/generateAccessToken>;
/// AIP-4117 calls it with the STS token).
fn generate_access_token(
    shared: &Shared,
    headers: &HeaderMap,
    account: &str,
    body: &[u8],
) -> Response {
    let mut s = shared.lock();
    s.count("generateAccessToken", "", headers);
    if !s.cloud_tokens.contains(bearer(headers)) {
        return iam_error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
        );
    }
    if s.keyless_refuses == Some("generateAccessToken") || account != shared.client_email {
        return iam_error(
            403,
            "PERMISSION_DENIED",
            &format!("Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist): projects/-/serviceAccounts/{account}"),
        );
    }
    let request = serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
    let scopes: Vec<&str> = request
        .get("scope")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if scopes.is_empty() {
        return iam_error(400, "INVALID_ARGUMENT", "Scope required.");
    }
    let lifetime = request
        .get("lifetime")
        .and_then(Value::as_str)
        .and_then(|l| l.strip_suffix('s'))
        .and_then(|l| l.parse::<i64>().ok())
        .unwrap_or(3600);
    let mut raw = [0u8; 24];
    if getrandom::fill(&mut raw).is_err() {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no randomness").into_response();
    }
    let token = format!(
        "ya29.imp-{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    );
    s.cloud_tokens.insert(token.clone());
    let expire = chrono::Utc::now() + chrono::Duration::seconds(lifetime);
    (
        StatusCode::OK,
        [("content-type", "application/json; charset=UTF-8")],
        serde_json::to_vec(&json!({
            "accessToken": token,
            "expireTime": expire.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }))
        .unwrap_or_default(),
    )
        .into_response()
}

/// A URL-sourced subject token, as Azure's instance metadata serves one
/// (<https://learn.microsoft.com/en-us/entra/identity/managed-identities-azure-resources/how-to-use-vm-token>):
/// only with `Metadata: true`; text, or JSON with `?format=json`.
async fn url_subject_token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut s = shared.lock();
    s.count("subject token", "", &headers);
    let oauth = |code: StatusCode, error: &str, description: &str| {
        (
            code,
            [("content-type", "application/json")],
            serde_json::to_vec(&json!({"error": error, "error_description": description}))
                .unwrap_or_default(),
        )
            .into_response()
    };
    if !headers
        .get("metadata")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return oauth(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required metadata header not specified",
        );
    }
    if s.keyless_refuses == Some("subject token URL") {
        return oauth(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Identity not found",
        );
    }
    if q.get("format").map(String::as_str) == Some("json") {
        let body = json!({"access_token": OIDC_SUBJECT_TOKEN, "expires_in": "3599", "token_type": "Bearer"});
        return (
            StatusCode::OK,
            [("content-type", "application/json")],
            serde_json::to_vec(&body).unwrap_or_default(),
        )
            .into_response();
    }
    (StatusCode::OK, OIDC_SUBJECT_TOKEN).into_response()
}

/// Whether an instance metadata request carries the IMDSv2 session token; AWS answers 401
/// without one when IMDSv2 is required
/// (<https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/configuring-instance-metadata-service.html>).
fn imds_refused(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    shared.lock().count("aws metadata", "", headers);
    let session = headers
        .get("x-aws-ec2-metadata-token")
        .and_then(|v| v.to_str().ok());
    (session != Some(IMDS_SESSION)).then(|| (StatusCode::UNAUTHORIZED, "").into_response())
}

/// IMDSv2: `PUT /latest/api/token` with the token's lifetime (1 s to 6 h).
async fn imds_session(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    shared.lock().count("aws metadata", "", &headers);
    let ttl = headers
        .get("x-aws-ec2-metadata-token-ttl-seconds")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok());
    match ttl {
        Some(1..=21600) => (StatusCode::OK, IMDS_SESSION).into_response(),
        _ => (StatusCode::BAD_REQUEST, "").into_response(),
    }
}

/// `/latest/meta-data/placement/availability-zone`.
async fn imds_zone(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    imds_refused(&shared, &headers).unwrap_or_else(|| (StatusCode::OK, AWS_ZONE).into_response())
}

/// `/latest/meta-data/iam/security-credentials`: the instance profile's role, or 404 when
/// none is attached (`KeylessRefuses("AWS metadata")`).
async fn imds_role(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(r) = imds_refused(&shared, &headers) {
        return r;
    }
    if shared.lock().keyless_refuses == Some("AWS metadata") {
        return (StatusCode::NOT_FOUND, "").into_response();
    }
    (StatusCode::OK, AWS_ROLE).into_response()
}

/// `/latest/meta-data/iam/security-credentials/ROLE`: the role's temporary credentials
/// (<https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instance-metadata-security-credentials.html>).
async fn imds_role_credentials(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    AxPath(role): AxPath<String>,
) -> Response {
    if let Some(r) = imds_refused(&shared, &headers) {
        return r;
    }
    if role != AWS_ROLE {
        return (StatusCode::NOT_FOUND, "").into_response();
    }
    let now = chrono::Utc::now();
    let body = json!({
        "Code": "Success",
        "LastUpdated": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "Type": "AWS-HMAC",
        "AccessKeyId": AWS_ROLE_KEY.0,
        "SecretAccessKey": AWS_ROLE_KEY.1,
        "Token": AWS_ROLE_KEY.2,
        "Expiration": (now + chrono::Duration::hours(6)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    (
        StatusCode::OK,
        serde_json::to_string(&body).unwrap_or_default(),
    )
        .into_response()
}

/// Checks an AWS subject token as Google's STS does before it asks AWS who signed it
/// (AIP-4117): the URL-encoded JSON of a POST to `sts.REGION.amazonaws.com`'s
/// GetCallerIdentity, bound to `audience` by `x-goog-cloud-target-resource`, dated within
/// 15 minutes, and signed (SigV4) with a key the fake knows. The fake checks the signature
/// itself, with its own SigV4 code (AWS would). The descriptions are the fake's wording.
fn check_aws_subject_token(token: &str, audience: &str) -> Result<(), String> {
    let json = url::form_urlencoded::parse(token.as_bytes())
        .next()
        .map(|(k, _)| k.into_owned())
        .unwrap_or_default();
    let request: Value = serde_json::from_str(&json)
        .map_err(|_| "The AWS subject token is not URL-encoded JSON.".to_string())?;
    if request.get("method").and_then(Value::as_str) != Some("POST") {
        return Err("The AWS request must be a POST.".into());
    }
    let url = request
        .get("url")
        .and_then(Value::as_str)
        .and_then(|u| url::Url::parse(u).ok())
        .ok_or("The AWS request has no URL.")?;
    let query: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    if url.scheme() != "https"
        || query.get("Action").map(String::as_str) != Some("GetCallerIdentity")
        || query.get("Version").map(String::as_str) != Some("2011-06-15")
    {
        return Err("The AWS request is not GetCallerIdentity.".into());
    }
    let headers: BTreeMap<String, String> = request
        .get("headers")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|h| {
                    Some((
                        h.get("key")?.as_str()?.to_ascii_lowercase(),
                        h.get("value")?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let h = |name: &str| headers.get(name).map(String::as_str).unwrap_or("");
    if h("x-goog-cloud-target-resource") != audience {
        return Err("The x-goog-cloud-target-resource header does not match the audience.".into());
    }
    // AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/sts/aws4_request, SignedHeaders=..., Signature=...
    let auth = h("authorization");
    let parts = auth
        .strip_prefix("AWS4-HMAC-SHA256 Credential=")
        .and_then(|rest| rest.split_once(", SignedHeaders="))
        .and_then(|(credential, rest)| {
            let (signed, signature) = rest.split_once(", Signature=")?;
            Some((credential, signed, signature))
        });
    let Some((credential, signed, signature)) = parts else {
        return Err("The AWS request has no SigV4 Authorization header.".into());
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [key_id, date, region, "sts", "aws4_request"] = scope[..] else {
        return Err("The AWS credential scope is not KEY/DATE/REGION/sts/aws4_request.".into());
    };
    if url.host_str() != Some(&format!("sts.{region}.amazonaws.com"))
        || h("host") != format!("sts.{region}.amazonaws.com")
    {
        return Err("The AWS request is not for the regional STS of its credential scope.".into());
    }
    let (secret, session) =
        match key_id {
            k if k == AWS_USER_KEY.0 => (AWS_USER_KEY.1, None),
            k if k == AWS_ROLE_KEY.0 => (AWS_ROLE_KEY.1, Some(AWS_ROLE_KEY.2)),
            _ => return Err(
                "The security token included in the request is invalid (unknown access key id)."
                    .into(),
            ),
        };
    if session.is_some_and(|t| h("x-amz-security-token") != t) {
        return Err("The security token included in the request is invalid.".into());
    }
    let signed_list: Vec<&str> = signed.split(';').collect();
    for required in ["host", "x-amz-date", "x-goog-cloud-target-resource"]
        .into_iter()
        .chain(
            headers
                .contains_key("x-amz-security-token")
                .then_some("x-amz-security-token"),
        )
    {
        if !signed_list.contains(&required) {
            return Err(format!("The {required} header is not signed."));
        }
    }
    let amz_date = h("x-amz-date");
    let when = chrono::NaiveDateTime::parse_from_str(amz_date, "%Y%m%dT%H%M%SZ")
        .map_err(|_| "The x-amz-date header is not YYYYMMDDTHHMMSSZ.".to_string())?
        .and_utc();
    if (chrono::Utc::now() - when).num_seconds().abs() > 900 || !amz_date.starts_with(date) {
        return Err("Signature expired or not yet valid (x-amz-date).".into());
    }
    // SigV4, written apart from the daemon's (<https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html>).
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    let hex = |b: &[u8]| -> String { b.iter().map(|x| format!("{x:02x}")).collect() };
    let sha = |b: &[u8]| hex(ring::digest::digest(&ring::digest::SHA256, b).as_ref());
    let mut q: Vec<String> = url
        .query_pairs()
        .map(|(k, v)| format!("{}={}", enc(&k), enc(&v)))
        .collect();
    q.sort();
    let canonical_headers: String = signed_list
        .iter()
        .map(|name| format!("{name}:{}\n", h(name).trim()))
        .collect();
    let canonical = format!(
        "POST\n{}\n{}\n{canonical_headers}\n{signed}\n{}",
        if url.path().is_empty() {
            "/"
        } else {
            url.path()
        },
        q.join("&"),
        sha(b"")
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/sts/aws4_request\n{}",
        sha(canonical.as_bytes())
    );
    let mut key = format!("AWS4{secret}").into_bytes();
    for part in [date, region, "sts", "aws4_request", to_sign.as_str()] {
        key = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key),
            part.as_bytes(),
        )
        .as_ref()
        .to_vec();
    }
    if hex(&key) != signature {
        return Err(
            "The request signature we calculated does not match the signature you provided.".into(),
        );
    }
    Ok(())
}

async fn token(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let (stall, server_error) = {
        let mut s = shared.lock();
        s.count("token", "", &HeaderMap::new());
        let err = s.token_errors > 0;
        if err {
            s.token_errors -= 1;
        }
        (s.stall_token, err)
    };
    if let Some(d) = stall {
        tokio::time::sleep(d).await;
    }
    if server_error {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [("content-type", "text/html; charset=UTF-8")],
            "<html><body>503 Service Unavailable</body></html>",
        )
            .into_response();
    }
    if let Some((status, error, description)) = shared.lock().token_refusal {
        let mut r = oauth_error(error, description);
        *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
        return r;
    }
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
    let signed = format!("{head}.{claims}");
    let Some(claims) = b64_decode(claims).and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    else {
        return oauth_error("invalid_grant", "Invalid JWT: claims are not JSON");
    };
    let s = |k: &str| claims.get(k).and_then(Value::as_str).unwrap_or("");
    // The issuer names the account whose public keys check the signature: an account
    // Google does not know is `invalid_client` before any signature is checked.
    if s("iss") != shared.client_email {
        return oauth_error("invalid_client", "The OAuth client was not found.");
    }
    let Some(signature) = b64_decode(sig) else {
        return oauth_error("invalid_grant", "Invalid JWT Signature.");
    };
    if !shared.key.verifies(signed.as_bytes(), &signature) {
        return oauth_error("invalid_grant", "Invalid JWT Signature.");
    }
    let now = chrono::Utc::now().timestamp() + shared.lock().clock_skew;
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    let iat = claims.get("iat").and_then(Value::as_i64).unwrap_or(0);
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
    // Without `sub` the service account acts as itself and cannot read the directory. A
    // subject that is a user but not an admin gets a token all the same: Google refuses
    // only the API calls, with 403 "Not Authorized to access this resource/api"
    // (<https://developers.google.com/workspace/admin/directory/v1/guides/delegation>).
    let sub = s("sub");
    let mut inner = shared.lock();
    let admin = sub.eq_ignore_ascii_case(&shared.admin);
    if !admin && !inner.users.contains_key(&sub.to_lowercase()) {
        return oauth_error("invalid_grant", "Invalid email or User ID");
    }
    let scopes: Vec<String> = s("scope").split_whitespace().map(str::to_string).collect();
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
        (
            std::time::Instant::now() + shared.token_lifetime,
            scopes,
            admin,
        ),
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
        Some((expires, _, false)) if *expires > std::time::Instant::now() => Err(google_error(
            403,
            "forbidden",
            "Not Authorized to access this resource/api",
        )),
        Some((expires, scopes, true)) if *expires > std::time::Instant::now() => {
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
    admin: Option<bool>,
    email_prefix: Option<String>,
    /// `email='...'`: the address exactly (primary or alias, any case).
    email_exact: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
}

/// Parses a query as Google does
/// (<https://developers.google.com/workspace/admin/directory/v1/guides/search-users>):
/// clauses `field OP value` joined by spaces; a value with spaces or quotes is written in
/// single quotes, inside which `\'` is a quote and `\\` a backslash. A quote that ends a
/// value early (`email='o'brien@example.com'`) leaves text after it: a 400 Invalid Input.
fn parse_query(q: &str) -> Result<UserQuery, String> {
    let mut out = UserQuery {
        org_unit: None,
        suspended: None,
        archived: None,
        admin: None,
        email_prefix: None,
        email_exact: None,
        given_name: None,
        family_name: None,
    };
    let bad = |why: &str| format!("Invalid Input: {why} in query {q:?}");
    let c: Vec<char> = q.chars().collect();
    let mut at = 0;
    loop {
        while at < c.len() && c[at].is_whitespace() {
            at += 1;
        }
        if at == c.len() {
            return Ok(out);
        }
        let start = at;
        while at < c.len() && (c[at].is_alphanumeric() || c[at] == '.' || c[at] == '_') {
            at += 1;
        }
        let field: String = c[start..at].iter().collect();
        let op = match c.get(at) {
            Some('=') => '=',
            Some(':') => ':',
            _ => return Err(bad(&format!("no operator after {field:?}"))),
        };
        at += 1;
        let mut value = String::new();
        match c.get(at) {
            Some(&quote) if quote == '\'' || quote == '"' => {
                at += 1;
                loop {
                    match c.get(at) {
                        None => return Err(bad("an unterminated quoted value")),
                        Some('\\') => {
                            match c.get(at + 1) {
                                Some(&e) if e == '\\' || e == '\'' || e == '"' => value.push(e),
                                _ => return Err(bad("a backslash that escapes nothing")),
                            }
                            at += 2;
                        }
                        Some(&ch) if ch == quote => {
                            at += 1;
                            break;
                        }
                        Some(&ch) => {
                            value.push(ch);
                            at += 1;
                        }
                    }
                }
                if at < c.len() && !c[at].is_whitespace() {
                    return Err(bad("text after a quoted value"));
                }
            }
            _ => {
                while at < c.len() && !c[at].is_whitespace() {
                    if c[at] == '\'' || c[at] == '"' || c[at] == '\\' {
                        return Err(bad("a quote inside an unquoted value"));
                    }
                    value.push(c[at]);
                    at += 1;
                }
            }
        }
        let boolean = |v: &str| match v.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(bad(&format!("{field} takes true or false"))),
        };
        match (field.as_str(), op) {
            ("orgUnitPath", '=') => out.org_unit = Some(value),
            ("isSuspended", '=') => out.suspended = Some(boolean(&value)?),
            ("isArchived", '=') => out.archived = Some(boolean(&value)?),
            ("isAdmin", '=') => out.admin = Some(boolean(&value)?),
            ("email", ':') => out.email_prefix = Some(value.trim_end_matches('*').to_lowercase()),
            ("email", '=') => out.email_exact = Some(value.to_lowercase()),
            ("givenName", '=') => out.given_name = Some(value.to_lowercase()),
            ("familyName", '=') => out.family_name = Some(value.to_lowercase()),
            _ => return Err(format!("Invalid Input: query term {field}{op}{value:?}")),
        }
    }
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
            && self.admin.is_none_or(|a| u.is_admin == a)
            && self
                .given_name
                .as_ref()
                .is_none_or(|n| u.given_name.to_lowercase() == *n)
            && self
                .family_name
                .as_ref()
                .is_none_or(|n| u.family_name.to_lowercase() == *n)
            && self
                .email_prefix
                .as_ref()
                .is_none_or(|p| u.primary_email.to_lowercase().starts_with(p))
            && self.email_exact.as_ref().is_none_or(|e| {
                u.primary_email.eq_ignore_ascii_case(e)
                    || u.aliases.iter().any(|a| a.eq_ignore_ascii_case(e))
            })
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

/// The `fields=` selector of a request: `Sel::All` without one; a 400 as Google answers
/// one it cannot parse.
fn field_mask(q: &HashMap<String, String>) -> Result<Option<FieldMask>, Response> {
    match q.get("fields") {
        None => Ok(None),
        Some(f) => FieldMask::parse(f)
            .map(Some)
            .map_err(|msg| google_error(400, "invalidParameter", &msg)),
    }
}

fn sel_of(mask: &Option<FieldMask>) -> Sel<'_> {
    match mask {
        Some(m) => Sel::Some(m),
        None => Sel::All,
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
    // With `orderBy=email` Google pages in email order, so a user renamed while the pages
    // are read can move to a page already read. Without `orderBy` the order is Google's
    // own; the fake uses the immutable id, which a rename does not move.
    let by_email = match q.get("orderBy").map(String::as_str) {
        None => false,
        Some("email") => true,
        Some(_) => return google_error(400, "invalid", "Invalid Input: orderBy"),
    };
    let mask = match field_mask(&q) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let (page, after) = match q.get("pageToken") {
        None => (1, String::new()),
        Some(t) => match decode_token(t) {
            Some(p) => p,
            None => return google_error(400, "invalid", "Invalid Input: pageToken"),
        },
    };
    // `showDeleted=true` lists the deleted users, and only them, while they can be restored
    // (<https://developers.google.com/workspace/admin/directory/reference/rest/v1/users/list>).
    if q.get("showDeleted").is_some_and(|v| v == "true") {
        let bytes = {
            let mut s = shared.lock();
            s.purge_deleted();
            let mut users: Vec<&FakeUser> = Vec::with_capacity(size);
            let mut next = None;
            for (_, (u, _)) in s.deleted.range::<String, _>((
                if after.is_empty() {
                    std::ops::Bound::Unbounded
                } else {
                    std::ops::Bound::Excluded(after.clone())
                },
                std::ops::Bound::Unbounded,
            )) {
                if !query.matches(u) {
                    continue;
                }
                if users.len() == size {
                    next = users.last().map(|l| encode_token(page + 1, &l.id));
                    break;
                }
                users.push(u);
            }
            serde_json::to_vec(&UsersPageOut {
                users: &users,
                sel: sel_of(&mask),
                customer_id: &shared.customer_id,
                next_page_token: next.as_deref(),
            })
            .unwrap_or_default()
        };
        return json_response(&shared, &headers, bytes);
    }
    // The page is written straight from the directory while it is locked: no copy of the
    // users and no intermediate JSON tree (this serves 100,000 users in the benchmarks).
    let (bytes, fault, stall, last_page) = {
        let mut s = shared.lock();
        let fault = s.take_fault("users.list", page);
        match fault {
            Some(Fault::FailPage { status, reason, .. }) => {
                drop(s);
                return google_error(status, reason, &format!("injected {reason}"));
            }
            Some(Fault::ResourceExhausted { .. }) => {
                drop(s);
                return resource_exhausted();
            }
            Some(Fault::PlainTextRateLimit { .. }) => {
                drop(s);
                return plain_text_rate_limit();
            }
            Some(Fault::RetryAfter { seconds, .. }) => {
                drop(s);
                let mut r = google_error(429, "rateLimitExceeded", "Rate Limit Exceeded");
                if let Ok(v) = http::HeaderValue::from_str(&seconds.to_string()) {
                    r.headers_mut().insert(http::header::RETRY_AFTER, v);
                }
                return r;
            }
            _ => {}
        }
        let stall = s.take_stall(page);
        let mut users: Vec<&FakeUser> = Vec::with_capacity(size);
        let mut last = None;
        let mut more = false;
        let after_bound = |a: &String| {
            if a.is_empty() {
                std::ops::Bound::Unbounded
            } else {
                std::ops::Bound::Excluded(a.clone())
            }
        };
        let range: Box<dyn Iterator<Item = (&String, &FakeUser)>> = if by_email {
            Box::new(
                s.users
                    .range::<String, _>((after_bound(&after), std::ops::Bound::Unbounded)),
            )
        } else {
            Box::new(
                s.by_id
                    .range::<String, _>((after_bound(&after), std::ops::Bound::Unbounded))
                    .filter_map(|(id, email)| s.users.get(email).map(|u| (id, u))),
            )
        };
        let domain_suffix = domain.as_ref().map(|d| format!("@{d}"));
        for (key, u) in range {
            let email = u.primary_email.to_lowercase();
            if domain_suffix
                .as_ref()
                .is_some_and(|d| !email.ends_with(d.as_str()))
                || !query.matches(u)
                || s.lagging.contains(&email)
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
            sel: sel_of(&mask),
            customer_id: &shared.customer_id,
            next_page_token: next.as_deref(),
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let last_page = next.is_none();
        (bytes, fault, stall, last_page)
    };
    {
        let mut s = shared.lock();
        if last_page {
            // The lagging users are back in the index for the next listing.
            s.lagging.clear();
        }
        if let Some((old, new)) = s.take_rename(page) {
            s.rename(&old, &new);
        }
    }
    let mut bytes = bytes;
    if let Some(Fault::TruncatePage { .. }) = fault {
        // A body that stops in the middle: the client must not take it for a short page.
        bytes.truncate(bytes.len() / 2);
    }
    match stall {
        Some(d) => stalled_response(bytes, d),
        None => json_response(&shared, &headers, bytes),
    }
}

/// A 200 whose body stops halfway for `stall` before the rest comes.
fn stalled_response(bytes: Vec<u8>, stall: Duration) -> Response {
    struct Stalled {
        first: Option<Bytes>,
        rest: Option<Bytes>,
        sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    }
    impl axum::body::HttpBody for Stalled {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
            use std::task::Poll;
            if let Some(b) = self.first.take() {
                return Poll::Ready(Some(Ok(hyper::body::Frame::data(b))));
            }
            if self.rest.is_none() {
                return Poll::Ready(None);
            }
            match self.sleep.as_mut().poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(()) => {
                    Poll::Ready(self.rest.take().map(|b| Ok(hyper::body::Frame::data(b))))
                }
            }
        }
    }
    use std::future::Future;
    let mut bytes = Bytes::from(bytes);
    let rest = bytes.split_off(bytes.len() / 2);
    let body = Stalled {
        first: Some(bytes),
        rest: Some(rest),
        sleep: Box::pin(tokio::time::sleep(stall)),
    };
    (
        StatusCode::OK,
        [("content-type", "application/json; charset=UTF-8")],
        axum::body::Body::new(body),
    )
        .into_response()
}

/// `RESOURCE_EXHAUSTED` in the newer error shape: `status` set and no `errors[]`, served as
/// 429, the HTTP code Google's error model maps it to
/// (<https://cloud.google.com/apis/design/errors#handling_errors>).
fn resource_exhausted() -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [("content-type", "application/json; charset=UTF-8")],
        serde_json::to_vec(&json!({"error": {
            "code": 429,
            "message": "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user' of service 'admin.googleapis.com'.",
            "status": "RESOURCE_EXHAUSTED"
        }}))
        .unwrap_or_default(),
    )
        .into_response()
}

/// A 403 whose body is plain text, not JSON: what Google's front end sends when a caller
/// goes faster than its configured rate (GAM's `checkGAPIError` retries it).
fn plain_text_rate_limit() -> Response {
    (
        StatusCode::FORBIDDEN,
        [("content-type", "text/plain; charset=UTF-8")],
        "Request rate higher than configured.",
    )
        .into_response()
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
    let mask = match field_mask(&q) {
        Ok(m) => m,
        Err(r) => return r,
    };
    // users.get reads the directory itself, not the search index: a lagging user is found.
    let user = {
        let mut s = shared.lock();
        // Every users.get counts as "page 1" for faults.
        match s.take_fault("users.get", 1) {
            Some(Fault::FailPage { status, reason, .. }) => {
                drop(s);
                return google_error(status, reason, &format!("injected {reason}"));
            }
            Some(Fault::ResourceExhausted { .. }) => {
                drop(s);
                return resource_exhausted();
            }
            Some(Fault::PlainTextRateLimit { .. }) => {
                drop(s);
                return plain_text_rate_limit();
            }
            _ => {}
        }
        let k = key.to_lowercase();
        // A key outside the customer: Google answers 403, not 404
        // (slashdevops/idp-scim-sync#49, firezone#12772).
        if s.foreign.contains(&k) || s.forbidden_keys.contains(&k) {
            drop(s);
            return google_error(
                403,
                "forbidden",
                "Not Authorized to access this resource/api",
            );
        }
        let email = s
            .by_id
            .get(&key)
            .cloned()
            .or_else(|| s.aliases.get(&k).cloned())
            .unwrap_or(k);
        let found = s.users.get(&email).map(|u| {
            serde_json::to_vec(&UserOut {
                u,
                sel: sel_of(&mask),
                customer_id: &shared.customer_id,
            })
            .unwrap_or_default()
        });
        if found.is_none() {
            s.purge_deleted();
            if s.deleted.contains_key(&key) {
                // Deleted less than 20 days ago: 412, not 404 (firezone PR #15169).
                drop(s);
                return google_error(412, "conditionNotMet", "User is deleted.");
            }
        }
        found
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
    let mask = match field_mask(&q) {
        Ok(m) => m,
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
        let key = group.to_lowercase();
        let Some(mut entries) = s.expand(&key, derived, &shared.customer_id) else {
            return google_error(404, "notFound", "Resource Not Found: groupKey");
        };
        // Members Google's listing drops (Fault::OmitMember).
        entries.retain(|e| {
            let email = e.get("email").and_then(Value::as_str).unwrap_or("");
            !s.omitted
                .iter()
                .any(|(g, m)| *g == key && m.eq_ignore_ascii_case(email))
        });
        (entries, fault)
    };
    match fault {
        Some(Fault::FailPage { status, reason, .. }) => {
            return google_error(status, reason, &format!("injected {reason}"))
        }
        Some(Fault::ResourceExhausted { .. }) => return resource_exhausted(),
        Some(Fault::PlainTextRateLimit { .. }) => return plain_text_rate_limit(),
        _ => {}
    }
    let end = (offset + size).min(entries.len());
    let members: Vec<&Value> = entries.get(offset..end).unwrap_or(&[]).iter().collect();
    let mut body =
        json!({ "kind": "admin#directory#members", "etag": "\"fake\"", "members": members });
    if end < entries.len() {
        body["nextPageToken"] = json!(encode_token(page + 1, &end.to_string()));
    }
    let body = FieldMask::apply(sel_of(&mask), body);
    json_response(
        &shared,
        &headers,
        serde_json::to_vec(&body).unwrap_or_default(),
    )
}

/// members.hasMember: whether a user is a member of a group, directly or through nested
/// groups, read from the directory (not from a listing, so [`Fault::OmitMember`] does not
/// change it). "Membership can be direct or nested, but if nested, the memberKey and
/// groupKey must be entities in the same domain or an Invalid input error is returned"
/// (<https://developers.google.com/workspace/admin/directory/reference/rest/v1/members/hasMember>).
async fn has_member(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    AxPath((group, member)): AxPath<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = admit(
        &shared,
        "members.hasMember",
        &headers,
        &q,
        &[SCOPE_GROUP_MEMBERS],
    )
    .await
    {
        return r;
    }
    let verdict: Result<bool, Response> = {
        let s = shared.lock();
        let key = group.to_lowercase();
        match s.groups.get(&key) {
            None => Err(google_error(
                404,
                "notFound",
                "Resource Not Found: groupKey",
            )),
            Some(root) => {
                let m = member.to_lowercase();
                let email = s
                    .by_id
                    .get(&member)
                    .cloned()
                    .or_else(|| s.aliases.get(&m).cloned())
                    .unwrap_or(m);
                let direct = root
                    .members
                    .iter()
                    .any(|x| matches!(x, FakeMember::User(e) if e.eq_ignore_ascii_case(&email)));
                let nested = root
                    .members
                    .iter()
                    .any(|x| matches!(x, FakeMember::Group(_)));
                let domain = |a: &str| a.rsplit_once('@').map(|(_, d)| d.to_string());
                if direct {
                    Ok(true)
                } else if nested && domain(&email) != domain(&key) {
                    Err(google_error(400, "invalid", "Invalid Input: memberKey"))
                } else {
                    Ok(s.expand(&key, true, &shared.customer_id)
                        .is_some_and(|entries| {
                            entries.iter().any(|e| {
                                e.get("type").and_then(Value::as_str) == Some("USER")
                                    && e.get("email")
                                        .and_then(Value::as_str)
                                        .is_some_and(|x| x.eq_ignore_ascii_case(&email))
                            })
                        }))
                }
            }
        }
    };
    match verdict {
        Ok(yes) => json_response(
            &shared,
            &headers,
            serde_json::to_vec(&json!({ "isMember": yes })).unwrap_or_default(),
        ),
        Err(r) => r,
    }
}

impl Inner {
    /// The member entries of a group: its direct members, plus with `derived` the users of
    /// nested groups (each user once), in a stable order.
    fn expand(&self, group: &str, derived: bool, customer_id: &str) -> Option<Vec<Value>> {
        let root = self.groups.get(group)?;
        let mut out = Vec::new();
        let mut seen_users = BTreeSet::new();
        let mut seen_groups = BTreeSet::from([group.to_string()]);
        let mut seen_customer = false;
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
                        // With derived membership a nested group's CUSTOMER member is listed
                        // too (once): Google expands nested groups to their members, and a
                        // CUSTOMER member stands for every user of the customer.
                        if direct || !seen_customer {
                            seen_customer = true;
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
    use retrac_sync::directory::model::{
        EmailEntry, Emails, GoogleUser, MembersPage, UserNameParts, UsersPage, MEMBER_FIELDS,
        ONE_USER_FIELDS, USER_FIELDS,
    };

    /// A user with every shape the pull reads: aliases in two domains, a personal and a
    /// work address, a custom one.
    fn rich_user() -> FakeUser {
        let mut u = FakeUser::new("7", "Ada@example.com", "Ada", "Lovelace").in_org_unit("/Sales");
        u.suspended = true;
        u.aliases.push("ada.l@example.com".into());
        u.aliases.push("ada@example.org".into());
        u.typed_emails
            .push(("ada.lovelace@gmail.com".into(), "home".into()));
        u.typed_emails
            .push(("ada.work@example.com".into(), "work".into()));
        u.typed_emails
            .push(("ada.custom@example.com".into(), "custom".into()));
        u
    }

    fn served(u: &FakeUser, mask: Option<&str>, token: Option<&str>) -> Vec<u8> {
        let mask = mask.map(|m| FieldMask::parse(m).unwrap());
        let page = UsersPageOut {
            users: &[u],
            sel: sel_of(&mask),
            customer_id: "C123",
            next_page_token: token,
        };
        serde_json::to_vec(&page).unwrap()
    }

    #[test]
    fn a_served_user_reads_back_as_the_google_user_it_is() {
        let u = rich_user();
        let entry = |a: &str, primary: bool, kind: Option<&str>| EmailEntry {
            address: a.into(),
            primary,
            kind: kind.map(Into::into),
        };
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
            is_admin: Some(false),
            is_guest_user: Some(false),
            emails: Some(Emails(vec![
                entry("Ada@example.com", true, None),
                entry("ada.l@example.com", false, None),
                entry("ada@example.org", false, None),
                entry("Ada@example.com.test-google-a.com", false, None),
                entry("ada.lovelace@gmail.com", false, Some("home")),
                entry("ada.work@example.com", false, Some("work")),
                entry("ada.custom@example.com", false, Some("custom")),
            ])),
            aliases: Some(Emails::addresses(&["ada.l@example.com", "ada@example.org"])),
        };
        for mask in [None, Some(USER_FIELDS)] {
            let bytes = served(&u, mask, Some("t"));
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(v["users"][0]["emails"][0]["primary"], json!(true));
            assert_eq!(v.get("kind").is_some(), mask.is_none(), "{v}");
            assert_eq!(v["users"][0].get("customerId").is_some(), mask.is_none());
            assert_eq!(
                v["users"][0].get("nonEditableAliases").is_some(),
                mask.is_none()
            );
            let back: UsersPage = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(back.users, vec![want.clone()]);
            assert_eq!(back.next_page_token.as_deref(), Some("t"));
        }
    }

    #[test]
    fn the_fake_sends_only_the_fields_asked_for_next_page_token_included() {
        let u = rich_user();
        let v = |mask: &str| -> Value {
            serde_json::from_slice(&served(&u, Some(mask), Some("t"))).unwrap()
        };
        assert_eq!(
            v("users(id,name/givenName,emails(address))"),
            json!({"users": [{"id": "7", "name": {"givenName": "Ada"},
                "emails": [{"address": "Ada@example.com"}, {"address": "ada.l@example.com"},
                    {"address": "ada@example.org"}, {"address": "Ada@example.com.test-google-a.com"},
                    {"address": "ada.lovelace@gmail.com"}, {"address": "ada.work@example.com"},
                    {"address": "ada.custom@example.com"}]}]}),
            "no nextPageToken unless asked: a mask without it loses every page after the first"
        );
        assert_eq!(
            v("nextPageToken,users(primaryEmail)"),
            json!({"users": [{"primaryEmail": "Ada@example.com"}], "nextPageToken": "t"})
        );
        assert_eq!(v("nextPageToken"), json!({"nextPageToken": "t"}));
        let all = v("*");
        assert!(all["users"][0].get("customerId").is_some(), "{all}");
        // members.list's JSON goes through the same selector.
        let m = FieldMask::parse(MEMBER_FIELDS).unwrap();
        let page = json!({"kind": "admin#directory#members", "etag": "e",
            "members": [{"kind": "admin#directory#member", "id": "1", "email": "a@x", "role": "MEMBER", "type": "USER", "status": "ACTIVE"}],
            "nextPageToken": "n"});
        assert_eq!(
            FieldMask::apply(Sel::Some(&m), page),
            json!({"members": [{"id": "1", "email": "a@x", "type": "USER", "status": "ACTIVE"}], "nextPageToken": "n"})
        );
        assert!(FieldMask::parse("users(id").is_err());
        assert!(FieldMask::parse("users,,id").is_err());
    }

    #[test]
    fn our_masks_keep_next_page_token_and_every_field_the_plan_reads() {
        for mask in [USER_FIELDS, MEMBER_FIELDS] {
            let m = FieldMask::parse(mask).unwrap();
            assert!(Sel::Some(&m).has("nextPageToken"), "{mask}");
        }
        // users.list and users.get: what the mask lets through decodes to exactly the user
        // the full answer decodes to (every field of GoogleUser, each email's type and
        // primary mark included).
        let u = rich_user();
        let full: UsersPage = serde_json::from_slice(&served(&u, None, Some("t"))).unwrap();
        let masked: UsersPage =
            serde_json::from_slice(&served(&u, Some(USER_FIELDS), Some("t"))).unwrap();
        assert_eq!(masked, full);
        let one = FieldMask::parse(ONE_USER_FIELDS).unwrap();
        let get = |sel| {
            serde_json::to_vec(&UserOut {
                u: &u,
                sel,
                customer_id: "C1",
            })
            .unwrap()
        };
        let one_user: GoogleUser = serde_json::from_slice(&get(Sel::Some(&one))).unwrap();
        let full_user: GoogleUser = serde_json::from_slice(&get(Sel::All)).unwrap();
        assert_eq!(one_user, full_user);
        assert_eq!(one_user, full.users[0]);
        // members.list: the scope reads the id, email and type of each member.
        let m = FieldMask::parse(MEMBER_FIELDS).unwrap();
        let entry = json!({"kind": "admin#directory#member", "id": "1", "email": "a@x",
            "role": "MEMBER", "type": "USER", "status": "ACTIVE", "delivery_settings": "ALL_MAIL"});
        let page = json!({"members": [entry], "nextPageToken": "n"});
        let full: MembersPage = serde_json::from_value(page.clone()).unwrap();
        let masked: MembersPage =
            serde_json::from_value(FieldMask::apply(Sel::Some(&m), page)).unwrap();
        assert_eq!(masked, full);
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
    fn the_query_is_quoted_and_escaped_as_google_reads_it() {
        let mut u = FakeUser::new("1", "o'brien@example.com", "Siobhan", "O'Brien");
        u.org_unit_path = "/Sales Team".into();
        let q = parse_query(r"email='o\'brien@example.com' familyName='O\'Brien'").unwrap();
        assert!(q.matches(&u));
        assert!(parse_query(r"orgUnitPath='/Sales Team'")
            .unwrap()
            .matches(&u));
        // The address bare inside quotes: the quote ends the value, text follows: 400.
        assert!(parse_query("email='o'brien@example.com'").is_err());
        assert!(parse_query("email=o'brien@example.com").is_err());
        assert!(parse_query("orgUnitPath='/Sales").is_err(), "unterminated");
        assert!(
            parse_query(r"email='a\b@example.com'").is_err(),
            "a lone backslash"
        );
        assert!(
            parse_query(r"givenName='a\\b'")
                .unwrap()
                .given_name
                .as_deref()
                == Some(r"a\b")
        );
        assert!(parse_query("isAdmin=true").unwrap().admin == Some(true));
        assert!(parse_query("isAdmin=perhaps").is_err());
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
