//! The member: its identity, the fields the directory owns, the fields the owner owns,
//! and the [`Change`]s that [`crate::provision::apply`] turns into writes.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A member's permanent identifier; it is also the SCIM `id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MemberId(pub Uuid);

impl MemberId {
    /// A fresh id: a UUIDv7, random but ordered by creation time, so new records append
    /// to the end of the members tree instead of landing all over it (cheaper in sled).
    pub fn new_random() -> Self {
        MemberId(Uuid::now_v7())
    }

    /// The 16 bytes used as the key in the store.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// Reads an id back from its 16 key bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        Uuid::from_slice(bytes).ok().map(MemberId)
    }

    /// Parses the hyphenated text form.
    pub fn parse(s: &str) -> Option<Self> {
        Uuid::parse_str(s.trim()).ok().map(MemberId)
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// Why a string is not a valid user name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an email address: {1}")]
pub struct InvalidUserName(pub String, pub &'static str);

/// A user name: the primary email address.
///
/// It is trimmed and stored as it was given, but compares, hashes and indexes
/// case-insensitively, in every script (Google, SCIM clients and the owner's CLI all send
/// mixed case): see [`normalize_email`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserName(String);

impl UserName {
    /// Validates and trims an email address.
    pub fn parse(raw: &str) -> Result<Self, InvalidUserName> {
        let s = check_identifier(raw)?;
        let bad = |why| Err(InvalidUserName(raw.to_string(), why));
        let Some((local, domain)) = s.rsplit_once('@') else {
            return bad("it has no '@'");
        };
        if local.is_empty() {
            return bad("nothing stands before the '@'");
        }
        if local.len() > 64 {
            return bad("the part before the '@' is longer than 64 characters");
        }
        if local.contains('@') {
            return bad("it has more than one '@'");
        }
        if domain.is_empty() {
            return bad("nothing stands after the '@'");
        }
        if !domain.contains('.') || domain.starts_with('.') || domain.ends_with('.') {
            return bad("the domain must have a dot between labels, as in example.com");
        }
        if domain.split('.').any(|label| label.is_empty()) {
            return bad("the domain has an empty label");
        }
        if !domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '.')
        {
            return bad("the domain may hold only letters, digits, '-' and '.'");
        }
        Ok(UserName(s.to_string()))
    }

    /// Validates a SCIM `userName`: any non-empty identifier without white space or
    /// control characters, at most 254 characters.
    ///
    /// RFC 7643 §4.1.1 makes `userName` a unique identifier, not necessarily an email, and
    /// SCIM clients (and the conformance suite) send such names. The owner's CLI and the
    /// pull still require an email address ([`UserName::parse`]). A name that is not an
    /// email has no domain, so the pull never touches it when `[google].domains` is set.
    pub fn parse_identifier(raw: &str) -> Result<Self, InvalidUserName> {
        if raw.trim().contains('@') {
            return UserName::parse(raw);
        }
        Ok(UserName(check_identifier(raw)?.to_string()))
    }

    /// Whether this name is an email address (every name from the pull and the CLI is).
    pub fn is_email(&self) -> bool {
        self.0.contains('@')
    }

    /// The address as it was given (trimmed).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key it is compared and indexed by: NFKC plus full case folding
    /// ([`normalize_email`]).
    pub fn normalized(&self) -> String {
        normalize_email(&self.0)
    }

    /// The domain part as its caseless key ([`domain_key`]); empty when the name is not an
    /// email address.
    pub fn domain(&self) -> String {
        self.0
            .rsplit_once('@')
            .map(|(_, d)| domain_key(d).into_owned())
            .unwrap_or_default()
    }
}

/// The checks every user name passes: trimmed, not empty, at most 254 characters, no
/// white space or control characters.
fn check_identifier(raw: &str) -> Result<&str, InvalidUserName> {
    let s = raw.trim();
    let why = if s.is_empty() {
        "it is empty"
    } else if s.len() > 254 {
        "it is longer than 254 characters"
    } else if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "it contains white space or control characters"
    } else {
        return Ok(s);
    };
    Err(InvalidUserName(raw.to_string(), why))
}

/// Whether `c` is invisible or changes how text around it reads: a bidirectional control
/// (Bidi_Control), a default-ignorable code point, or a format character (General_Category
/// Cf). The CLI escapes these in what it prints; [`lookalike_reason`] refuses names that hold
/// one.
pub fn is_hidden_char(c: char) -> bool {
    use icu_properties::props::{BidiControl, DefaultIgnorableCodePoint, GeneralCategory};
    use icu_properties::{CodePointMapData, CodePointSetData};
    !c.is_ascii()
        && (CodePointSetData::new::<BidiControl>().contains(c)
            || CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c)
            || CodePointMapData::<GeneralCategory>::new().get(c) == GeneralCategory::Format)
}

/// Why a user name or address could pass for someone else's, if it could: it holds an
/// invisible or direction-changing character (Default_Ignorable_Code_Point, a format
/// character of General_Category Cf, or a Bidi_Control), named with its code point, or one
/// of its labels (the parts between `@` and `.`) mixes scripts beyond UTS #39's Highly
/// Restrictive level (a Cyrillic `а` among Latin letters).
///
/// SCIM, the pull and the owner's CLI check a name with this before it is written. Names
/// already stored are not checked again, so an older store still opens.
pub fn lookalike_reason(s: &str) -> Option<String> {
    use icu_properties::props::{BidiControl, DefaultIgnorableCodePoint, GeneralCategory};
    use icu_properties::{CodePointMapData, CodePointSetData};
    use unicode_security::{RestrictionLevel, RestrictionLevelDetection};
    if !s.is_ascii() {
        let ignorable = CodePointSetData::new::<DefaultIgnorableCodePoint>();
        let bidi = CodePointSetData::new::<BidiControl>();
        let category = CodePointMapData::<GeneralCategory>::new();
        for c in s.chars() {
            let what = if bidi.contains(c) {
                "a bidirectional control"
            } else if ignorable.contains(c) {
                "an invisible (default-ignorable) character"
            } else if category.get(c) == GeneralCategory::Format {
                "a format character"
            } else {
                continue;
            };
            return Some(format!("it holds {what}, U+{:04X}", u32::from(c)));
        }
    }
    for label in s.split(['@', '.']) {
        if label.is_ascii() {
            continue;
        }
        // The label's letters and digits: ASCII punctuation (`-`, `_`, `+`, ...) belongs to
        // no script and is not what UTS #39 judges.
        let letters: String = label
            .chars()
            .filter(|c| !c.is_ascii() || c.is_ascii_alphanumeric())
            .collect();
        if !letters
            .as_str()
            .check_restriction_level(RestrictionLevel::HighlyRestrictive)
        {
            let odd = letters
                .chars()
                .find(|c| !c.is_ascii())
                .map(|c| format!(" (U+{:04X} among them)", u32::from(c)))
                .unwrap_or_default();
            return Some(format!(
                "its part {label:?} mixes scripts or uses characters that UTS #39 does not \
                 allow in identifiers{odd}, so it could read as another name"
            ));
        }
    }
    None
}

/// The case-insensitive comparison key of a user name or email address.
///
/// NFKC plus full Unicode case folding, as Unicode's compatibility caseless match (UAX #44,
/// Unicode 15 §3.13 D146) does it: `ΣΑΣ` and `σασ`, `ǅa` and `ǆa`, the Kelvin sign `K` and
/// `k` are one name. The stored name keeps its case; only comparisons and indexes use this.
pub fn normalize_email(s: &str) -> String {
    normalize_email_cow(s).into_owned()
}

/// As [`normalize_email`], borrowing when the address is already its own key (trimmed
/// lower-case ASCII: the common case on the lookup path).
pub fn normalize_email_cow(s: &str) -> std::borrow::Cow<'_, str> {
    caseless_key(s.trim())
}

/// The key a domain is compared by: the same NFKC + full case folding as user names
/// ([`caseless_key`]), so that `ｅxample.com` (a fullwidth `ｅ`) and `EXAMPLE.com` are
/// `example.com`. Configured domains are kept as keys; every domain check uses this.
pub fn domain_key(domain: &str) -> std::borrow::Cow<'_, str> {
    caseless_key(domain.trim())
}

/// Whether a user name or address (as given) is in one of `domains`, each a
/// [`domain_key`] (empty = every domain). A name without `@` is in no domain.
pub fn in_domains(domains: &[String], user_name: &str) -> bool {
    if domains.is_empty() {
        return true;
    }
    match user_name.trim().rsplit_once('@') {
        Some((_, d)) => {
            let d = domain_key(d);
            domains.iter().any(|m| *m == *d)
        }
        None => false,
    }
}

/// The caseless comparison key of any text, untrimmed: NFKC plus full case folding, as for
/// user names. SCIM filters compare the attributes that are not `caseExact` with it.
pub fn caseless_key(t: &str) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    if t.is_ascii() {
        // ASCII is NFKC-stable, and its full case folding is its lower case.
        return if t.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(t.to_ascii_lowercase())
        } else {
            Cow::Borrowed(t)
        };
    }
    Cow::Owned(fold_unicode(t))
}

/// NFKC(fold(NFKC(fold(NFD(s))))): D146's compatibility caseless key, with NFKC in place of
/// NFKD (two strings have one NFKC form exactly when they have one NFKD form).
fn fold_unicode(s: &str) -> String {
    use icu_casemap::CaseMapper;
    use icu_normalizer::{ComposingNormalizerBorrowed, DecomposingNormalizerBorrowed};
    let fold = CaseMapper::new();
    let nfkc = ComposingNormalizerBorrowed::new_nfkc();
    let nfd = DecomposingNormalizerBorrowed::new_nfd();
    let once = nfkc
        .normalize(&fold.fold_string(&nfd.normalize(s)))
        .into_owned();
    nfkc.normalize(&fold.fold_string(&once)).into_owned()
}

impl PartialEq for UserName {
    fn eq(&self, other: &Self) -> bool {
        self.normalized() == other.normalized()
    }
}
impl Eq for UserName {}

impl std::hash::Hash for UserName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.normalized().hash(state)
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for UserName {
    type Error = InvalidUserName;
    /// Reads back a stored name: emails, and the identifiers SCIM accepts.
    fn try_from(s: String) -> Result<Self, Self::Error> {
        UserName::parse_identifier(&s)
    }
}

impl From<UserName> for String {
    fn from(u: UserName) -> String {
        u.0
    }
}

/// One email address of a member, in SCIM's shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Email {
    /// The address, as given.
    pub value: String,
    /// `work`, `home`, `other`, or absent.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Whether this is the primary address.
    #[serde(default)]
    pub primary: bool,
}

impl Email {
    /// A primary work address.
    pub fn primary_work(value: &str) -> Self {
        Email {
            value: value.to_string(),
            kind: Some("work".into()),
            primary: true,
        }
    }
}

/// The owner-assigned role of a member in the Retrac workspace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// An ordinary member.
    #[default]
    Member,
    /// A workspace owner.
    Owner,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "member" => Ok(Role::Member),
            "owner" => Ok(Role::Owner),
            _ => Err(format!("unknown role {s:?}: expected owner or member")),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Member => "member",
            Role::Owner => "owner",
        })
    }
}

/// Who manages a member's directory-owned fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ManagedBy {
    /// Linked to the Google directory (by the pull or by a SCIM client).
    Google,
    /// Invited by an owner; the pull never touches it.
    Manual,
}

impl fmt::Display for ManagedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ManagedBy::Google => "google",
            ManagedBy::Manual => "manual",
        })
    }
}

/// The attributes the directory owns: SCIM and the pull write these and nothing else.
///
/// A [`Member`] holds them as `dir`, and [`Change::Create`] and [`Change::Update`] carry
/// them, so the stored member and the change that writes it are one type: a field read as
/// `member.dir.given_name` is the field a change sets as `attrs.given_name`.
///
/// Three of them belong to one actor each, and [`crate::provision`] ignores them from any
/// other: `google_id` is the pull's, `external_id` and `scim_extra` are SCIM's. That rule is
/// also why `scim_extra` is a plain map rather than an `Option` meaning "leave the stored one
/// alone": the pull and the owner never send any, and what they would send is not written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DirectoryAttrs {
    /// The primary email (or, from SCIM, any identifier); unique case-insensitively.
    pub user_name: UserName,
    /// Every address, the primary one first.
    pub emails: Vec<Email>,
    /// SCIM's `name.givenName`, Google's `name.givenName`.
    pub given_name: Option<String>,
    /// SCIM's `name.familyName`, Google's `name.familyName`.
    pub family_name: Option<String>,
    /// SCIM's `displayName`, Google's `name.fullName`.
    pub display_name: Option<String>,
    /// False: no workspace access (deactivated); the record stays.
    pub active: bool,
    /// The Google user id, the pull's first key for matching. Only the pull writes it.
    pub google_id: Option<String>,
    /// A SCIM client's `externalId` (RFC 7643 §3.1), as it sent it. Only SCIM writes it.
    pub external_id: Option<String>,
    /// Other SCIM attributes a client sent, kept verbatim so nothing it wrote is lost.
    /// Only SCIM writes them.
    ///
    /// Serialised as `null` when empty (the JSON of a dry run's changes had an
    /// `Option` here, and the pull's changes showed `null`).
    #[serde(default, with = "extras_or_null")]
    pub scim_extra: serde_json::Map<String, serde_json::Value>,
}

/// `scim_extra` as JSON: `null` for none, as when it was an `Option`.
mod extras_or_null {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::{Map, Value};

    pub fn serialize<S: Serializer>(m: &Map<String, Value>, s: S) -> Result<S::Ok, S::Error> {
        (!m.is_empty()).then_some(m).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Map<String, Value>, D::Error> {
        Ok(Option::deserialize(d)?.unwrap_or_default())
    }
}

impl DirectoryAttrs {
    /// The attributes of a new, active member with a primary work email.
    pub fn new(user_name: UserName, given: Option<&str>, family: Option<&str>) -> Self {
        DirectoryAttrs {
            emails: vec![Email::primary_work(user_name.as_str())],
            user_name,
            given_name: given.map(str::to_string),
            family_name: family.map(str::to_string),
            display_name: None,
            active: true,
            google_id: None,
            external_id: None,
            scim_extra: serde_json::Map::new(),
        }
    }
}

/// One attribute of [`DirectoryAttrs`] (all but `scim_extra`, which is the bag of what is
/// none of them), by name.
///
/// Everything that goes over the attributes one by one goes through this enum: the write
/// rules and the audit entry in [`crate::provision`], the pull's diff in
/// [`crate::reconcile::plan`], and the CLI's text and CSV. Adding an attribute is a field in
/// `DirectoryAttrs`, a variant here (the compiler then lists every `match` below that needs
/// an arm), where it comes from (Google's user, a SCIM body), and the store's record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    /// [`DirectoryAttrs::user_name`]
    UserName,
    /// [`DirectoryAttrs::emails`]
    Emails,
    /// [`DirectoryAttrs::given_name`]
    GivenName,
    /// [`DirectoryAttrs::family_name`]
    FamilyName,
    /// [`DirectoryAttrs::display_name`]
    DisplayName,
    /// [`DirectoryAttrs::active`]
    Active,
    /// [`DirectoryAttrs::google_id`]
    GoogleId,
    /// [`DirectoryAttrs::external_id`]
    ExternalId,
}

/// The side that alone writes a [`Field`].
#[derive(Clone, Copy)]
enum Writer {
    Pull,
    Scim,
}

impl Field {
    /// Every attribute, in the order the plan lists changed ones.
    pub const ALL: [Field; 8] = [
        Field::UserName,
        Field::Emails,
        Field::GivenName,
        Field::FamilyName,
        Field::DisplayName,
        Field::Active,
        Field::GoogleId,
        Field::ExternalId,
    ];

    /// Its name in the audit log, the plan, the CLI's JSON and SCIM (where the two name
    /// parts sit under `name`).
    pub const fn name(self) -> &'static str {
        match self {
            Field::UserName => "userName",
            Field::Emails => "emails",
            Field::GivenName => "givenName",
            Field::FamilyName => "familyName",
            Field::DisplayName => "displayName",
            Field::Active => "active",
            Field::GoogleId => "googleId",
            Field::ExternalId => "externalId",
        }
    }

    /// The one side that writes it, if only one does. The Google id is the pull's,
    /// `externalId` the SCIM client's (the owner writes neither).
    const fn owner(self) -> Option<Writer> {
        match self {
            Field::GoogleId => Some(Writer::Pull),
            Field::ExternalId => Some(Writer::Scim),
            _ => None,
        }
    }

    /// Whether `actor` writes it; from any other actor it is ignored ([`Field::owner`]).
    pub fn written_by(self, actor: &Actor) -> bool {
        match self.owner() {
            None => true,
            Some(Writer::Pull) => matches!(actor, Actor::Pull(_)),
            Some(Writer::Scim) => matches!(actor, Actor::Scim(_)),
        }
    }

    /// Whether the pull writes it (and so compares it).
    pub fn pulled(self) -> bool {
        matches!(self.owner(), None | Some(Writer::Pull))
    }

    /// Its value in `a`, as JSON (the audit's `before` and `after`).
    pub fn value(self, a: &DirectoryAttrs) -> serde_json::Value {
        use serde_json::json;
        match self {
            Field::UserName => json!(a.user_name.as_str()),
            Field::Emails => json!(a.emails),
            Field::GivenName => json!(a.given_name),
            Field::FamilyName => json!(a.family_name),
            Field::DisplayName => json!(a.display_name),
            Field::Active => json!(a.active),
            Field::GoogleId => json!(a.google_id),
            Field::ExternalId => json!(a.external_id),
        }
    }

    /// Whether `a` and `b` differ in it. Exactly: a user name that changes only in case
    /// changes (the member shows the address as the directory has it).
    pub fn differs(self, a: &DirectoryAttrs, b: &DirectoryAttrs) -> bool {
        match self {
            Field::UserName => a.user_name.as_str() != b.user_name.as_str(),
            Field::Emails => a.emails != b.emails,
            Field::GivenName => a.given_name != b.given_name,
            Field::FamilyName => a.family_name != b.family_name,
            Field::DisplayName => a.display_name != b.display_name,
            Field::Active => a.active != b.active,
            Field::GoogleId => a.google_id != b.google_id,
            Field::ExternalId => a.external_id != b.external_id,
        }
    }

    /// Copies it from `from` onto `to`. A Google id is never cleared: a change without one
    /// keeps the link.
    pub fn copy(self, from: &DirectoryAttrs, to: &mut DirectoryAttrs) {
        match self {
            Field::UserName => to.user_name = from.user_name.clone(),
            Field::Emails => to.emails = from.emails.clone(),
            Field::GivenName => to.given_name = from.given_name.clone(),
            Field::FamilyName => to.family_name = from.family_name.clone(),
            Field::DisplayName => to.display_name = from.display_name.clone(),
            Field::Active => to.active = from.active,
            Field::GoogleId => {
                if from.google_id.is_some() {
                    to.google_id = from.google_id.clone()
                }
            }
            Field::ExternalId => to.external_id = from.external_id.clone(),
        }
    }

    /// Sets it in `a` from its JSON value (as [`Field::value`] writes it; `null` for none).
    pub fn read(self, a: &mut DirectoryAttrs, v: serde_json::Value) -> serde_json::Result<()> {
        use serde_json::from_value;
        match self {
            Field::UserName => a.user_name = from_value(v)?,
            Field::Emails => a.emails = from_value(v)?,
            Field::GivenName => a.given_name = from_value(v)?,
            Field::FamilyName => a.family_name = from_value(v)?,
            Field::DisplayName => a.display_name = from_value(v)?,
            Field::Active => a.active = from_value(v)?,
            Field::GoogleId => a.google_id = from_value(v)?,
            Field::ExternalId => a.external_id = from_value(v)?,
        }
        Ok(())
    }
}

/// A member of the Retrac workspace as stored: its id, what the directory owns (`dir`),
/// what the owner owns, and the record's bookkeeping.
///
/// The store's record ([`crate::store`]'s codec) is a separate, positional type, so this one
/// can change shape without touching a byte on disk.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    /// Its permanent id, also its SCIM `id`.
    pub id: MemberId,
    /// The attributes SCIM and the pull write.
    pub dir: DirectoryAttrs,
    /// Locations assigned by an owner. Never written by SCIM or the pull.
    pub locations: Vec<String>,
    /// Role assigned by an owner. Never written by SCIM or the pull.
    pub role: Role,
    /// Google (linked to the directory) or manual.
    pub managed_by: ManagedBy,
    /// Removed from the SCIM view by a SCIM DELETE; kept, inactive, restorable.
    pub scim_deleted: bool,
    /// When the record was created.
    pub created: DateTime<Utc>,
    /// When it last changed.
    pub last_modified: DateTime<Utc>,
    /// Grows by one on each write; the SCIM ETag.
    pub version: u64,
    /// The last non-empty `externalId` the member had, kept after a SCIM client cleared it
    /// (`None` while `dir.external_id` is set): part of its identity
    /// ([`crate::provision::is_identity_change`]), so that clearing and then setting another
    /// `externalId` is still a change of identity.
    pub prior_external_id: Option<String>,
}

impl Member {
    /// The `externalId` that identifies the member: the current one, else the last one a
    /// client cleared ([`Member::prior_external_id`]).
    pub fn identity_external_id(&self) -> Option<&str> {
        self.dir
            .external_id
            .as_deref()
            .filter(|e| !e.is_empty())
            .or(self.prior_external_id.as_deref())
    }

    /// Whether SCIM sees this member: not SCIM-deleted, and not an owner's invite that no
    /// identity provider has claimed yet (a manual member is linked by a SCIM POST of its
    /// user name, or by the pull).
    pub fn visible_to_scim(&self) -> bool {
        !self.scim_deleted && self.managed_by != ManagedBy::Manual
    }

    /// The CLI's view: the member without what the CLI never shows.
    pub fn to_view(&self) -> MemberView {
        MemberView {
            id: self.id.to_string(),
            dir: DirectoryAttrs {
                scim_extra: serde_json::Map::new(),
                ..self.dir.clone()
            },
            locations: self.locations.clone(),
            role: self.role,
            managed_by: self.managed_by,
            created: self.created,
            last_modified: self.last_modified,
            version: self.version,
            scim_deleted: self.scim_deleted,
        }
    }
}

/// What the pull's plan reads of a member: a [`Member`], or the store's compact in-memory
/// copy of one, which the plan reads in place instead of building a `Member` for each of a
/// million members.
pub trait MemberLike {
    /// [`Member::id`].
    fn id(&self) -> MemberId;
    /// [`Member::version`].
    fn version(&self) -> u64;
    /// [`DirectoryAttrs::user_name`], as given.
    fn user_name(&self) -> &str;
    /// The user name's comparison key ([`normalize_email`]).
    fn folded_user_name(&self) -> std::borrow::Cow<'_, str>;
    /// [`DirectoryAttrs::google_id`].
    fn google_id(&self) -> Option<&str>;
    /// [`DirectoryAttrs::active`].
    fn active(&self) -> bool;
    /// [`Member::scim_deleted`].
    fn scim_deleted(&self) -> bool;
    /// [`Member::managed_by`].
    fn managed_by(&self) -> ManagedBy;
    /// Whether its value of `field` differs from the one in `attrs`, exactly as
    /// [`Field::differs`] compares the member's attributes with `attrs`.
    fn differs(&self, field: Field, attrs: &DirectoryAttrs) -> bool;
}

impl MemberLike for Member {
    fn id(&self) -> MemberId {
        self.id
    }
    fn version(&self) -> u64 {
        self.version
    }
    fn user_name(&self) -> &str {
        self.dir.user_name.as_str()
    }
    fn folded_user_name(&self) -> std::borrow::Cow<'_, str> {
        normalize_email_cow(self.dir.user_name.as_str())
    }
    fn google_id(&self) -> Option<&str> {
        self.dir.google_id.as_deref()
    }
    fn active(&self) -> bool {
        self.dir.active
    }
    fn scim_deleted(&self) -> bool {
        self.scim_deleted
    }
    fn managed_by(&self) -> ManagedBy {
        self.managed_by
    }
    fn differs(&self, field: Field, attrs: &DirectoryAttrs) -> bool {
        field.differs(&self.dir, attrs)
    }
}

impl<T: MemberLike + ?Sized> MemberLike for std::sync::Arc<T> {
    fn id(&self) -> MemberId {
        (**self).id()
    }
    fn version(&self) -> u64 {
        (**self).version()
    }
    fn user_name(&self) -> &str {
        (**self).user_name()
    }
    fn folded_user_name(&self) -> std::borrow::Cow<'_, str> {
        (**self).folded_user_name()
    }
    fn google_id(&self) -> Option<&str> {
        (**self).google_id()
    }
    fn active(&self) -> bool {
        (**self).active()
    }
    fn scim_deleted(&self) -> bool {
        (**self).scim_deleted()
    }
    fn managed_by(&self) -> ManagedBy {
        (**self).managed_by()
    }
    fn differs(&self, field: Field, attrs: &DirectoryAttrs) -> bool {
        (**self).differs(field, attrs)
    }
}

mod change;
mod run_id;
mod view;
pub use change::{Actor, Change, ChangeKind};
pub use run_id::RunId;
pub(crate) use run_id::RUN_ID_TIME;
pub use view::MemberView;

#[cfg(test)]
pub(crate) mod tests;
