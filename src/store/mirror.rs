//! The in-memory copy of the members, and the only indexes the store has (schema 3).
//!
//! Reads (SCIM lookups, the pull's plan, the CLI) are served from here: a hash lookup instead
//! of sled reads and a decode. It is built once at open, in one pass over the records, and
//! changed only after a member transaction commits, so it never shows an uncommitted write.
//! The user-name, external-id and Google-id indexes live here only: sled keeps the records,
//! so a member write is one key.
//!
//! Compact (docs/decisions/0002-compact-member-mirror.md): a member is one [`Entry`] in a slot of a `Vec`. Its strings
//! share one allocation, its locations are interned, and the SCIM attributes the project
//! does not use (`scim_extra`) are not kept: the entry says whether the member has any, and
//! the store reads them from the record on the rare request that needs them. The indexes
//! are hash tables of `u32` slots keyed by the hash of the key, which is read from the entry
//! on a probe; no key is copied. About 250 bytes a member where a `Member` and three
//! `String`-keyed maps cost about 1 KB.

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::{DefaultHashBuilder, HashTable};

use super::codec::RecordRef;
use super::order::Blocks;
use super::StoreError;
use crate::member::{
    normalize_email_cow, DirectoryAttrs, Email, Field, ManagedBy, Member, MemberId, MemberLike,
    Role, UserName,
};

// ---------------------------------------------------------------------------------------
// The compact entry, and the ONE pair of conversions between it and `Member`
// (`Entry::of_member`, `Entry::to_member`). `Entry::of_record` reads it from a record
// without building a `Member` (the open).
// ---------------------------------------------------------------------------------------

const ACTIVE: u16 = 1;
const OWNER: u16 = 1 << 1;
const MANUAL: u16 = 1 << 2;
const SCIM_DELETED: u16 = 1 << 3;
/// The record holds SCIM attributes that the entry does not: read the record for them.
const HAS_EXTRA: u16 = 1 << 4;
/// The emails are exactly one primary work address equal to the user name (the pull's and
/// most SCIM clients' case): `emails` is left empty.
const EMAILS_DEFAULT: u16 = 1 << 5;
/// The user name is its own folded key (lower-case ASCII): no copy in `text`.
const FOLD_SAME: u16 = 1 << 6;
/// Which optional strings are present (`Some("")` and `None` differ).
const HAS: [u16; 7] = [0, 0, 1 << 7, 1 << 8, 1 << 9, 1 << 10, 1 << 11];

// The strings in `text`, in order.
const USER: usize = 0;
const FOLD: usize = 1;
const GIVEN: usize = 2;
const FAMILY: usize = 3;
const DISPLAY: usize = 4;
const GOOGLE: usize = 5;
const EXTERNAL: usize = 6;

/// One email that is not the default one.
#[derive(Clone, Debug, PartialEq, Eq)]
struct CompactEmail {
    value: Box<str>,
    kind: Option<Box<str>>,
    primary: bool,
}

/// One member as the mirror keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    id: MemberId,
    /// User name, its folded key (unless [`FOLD_SAME`]), given, family and display names,
    /// Google id, external id, one after the other; `ends[i]` is where string `i` ends.
    text: Box<str>,
    ends: [u32; 7],
    /// Empty when [`EMAILS_DEFAULT`].
    emails: Box<[CompactEmail]>,
    /// Interned: a school's members share a few location names.
    locations: Box<[Arc<str>]>,
    created_micros: i64,
    last_modified_micros: i64,
    version: u64,
    flags: u16,
}

/// The parts of an entry that are neither text nor flags, gathered by both constructors.
struct Parts<'a> {
    id: MemberId,
    strings: [Option<&'a str>; 7],
    emails: Vec<CompactEmail>,
    emails_default: bool,
    locations: Box<[Arc<str>]>,
    created_micros: i64,
    last_modified_micros: i64,
    version: u64,
    flags: u16,
}

impl Entry {
    fn assemble(p: Parts<'_>) -> Entry {
        let mut flags = p.flags;
        let fold_owned: String;
        let mut strings: [Option<&str>; 7] = p.strings;
        let user = strings[USER].unwrap_or_default();
        let fold = normalize_email_cow(user);
        if fold == user {
            flags |= FOLD_SAME;
            strings[FOLD] = None;
        } else {
            fold_owned = fold.into_owned();
            strings[FOLD] = Some(&fold_owned);
        }
        let len: usize = strings.iter().flatten().map(|s| s.len()).sum();
        let mut text = String::with_capacity(len);
        let mut ends = [0u32; 7];
        for (i, s) in strings.iter().enumerate() {
            if let Some(s) = s {
                text.push_str(s);
                flags |= HAS[i];
            }
            // Members' strings are bounded far below 4 GiB (SCIM bodies are capped).
            ends[i] = u32::try_from(text.len()).unwrap_or(u32::MAX);
        }
        if p.emails_default {
            flags |= EMAILS_DEFAULT;
        }
        Entry {
            id: p.id,
            text: text.into_boxed_str(),
            ends,
            emails: if p.emails_default {
                Box::default()
            } else {
                p.emails.into_boxed_slice()
            },
            locations: p.locations,
            created_micros: p.created_micros,
            last_modified_micros: p.last_modified_micros,
            version: p.version,
            flags,
        }
    }

    fn string(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        self.text.get(start..self.ends[i] as usize).unwrap_or("")
    }

    fn opt(&self, i: usize) -> Option<&str> {
        (self.flags & HAS[i] != 0).then(|| self.string(i))
    }

    pub(crate) fn id(&self) -> MemberId {
        self.id
    }

    pub(crate) fn user_name(&self) -> &str {
        self.string(USER)
    }

    /// The folded user name: the key of the user-name index and of the listing order.
    pub(crate) fn name_key(&self) -> &str {
        if self.flags & FOLD_SAME != 0 {
            self.string(USER)
        } else {
            self.string(FOLD)
        }
    }

    pub(crate) fn external_id(&self) -> Option<&str> {
        self.opt(EXTERNAL)
    }

    pub(crate) fn google_id(&self) -> Option<&str> {
        self.opt(GOOGLE)
    }

    pub(crate) fn active(&self) -> bool {
        self.flags & ACTIVE != 0
    }

    /// Whether the user name, the given, family or display name holds `needle`, which is
    /// already lower case; case is ignored.
    pub(crate) fn mentions(&self, needle: &str) -> bool {
        [USER, GIVEN, FAMILY, DISPLAY]
            .into_iter()
            .any(|i| contains_caseless(self.string(i), needle))
    }

    /// Whether the record holds what this entry leaves out: SCIM attributes, or a prior
    /// `externalId` ([`Member::prior_external_id`]).
    pub(crate) fn has_extra(&self) -> bool {
        self.flags & HAS_EXTRA != 0
    }

    /// As [`Member::visible_to_scim`].
    pub(crate) fn visible_to_scim(&self) -> bool {
        self.flags & (SCIM_DELETED | MANUAL) == 0
    }

    /// The compact form of a member. Its `scim_extra` is not kept, only whether it has any.
    pub(crate) fn of_member(member: &Member, interner: &mut Interner) -> Entry {
        let m = &member.dir;
        let emails_default = is_default_emails(m.user_name.as_str(), &m.emails);
        Entry::assemble(Parts {
            id: member.id,
            strings: [
                Some(m.user_name.as_str()),
                None,
                m.given_name.as_deref(),
                m.family_name.as_deref(),
                m.display_name.as_deref(),
                m.google_id.as_deref(),
                m.external_id.as_deref(),
            ],
            emails: if emails_default {
                Vec::new()
            } else {
                m.emails
                    .iter()
                    .map(|e| CompactEmail {
                        value: e.value.as_str().into(),
                        kind: e.kind.as_deref().map(Into::into),
                        primary: e.primary,
                    })
                    .collect()
            },
            emails_default,
            locations: member
                .locations
                .iter()
                .map(|l| interner.intern(l))
                .collect(),
            created_micros: member.created.timestamp_micros(),
            last_modified_micros: member.last_modified.timestamp_micros(),
            version: member.version,
            flags: flag(m.active, ACTIVE)
                | flag(member.role == Role::Owner, OWNER)
                | flag(member.managed_by == ManagedBy::Manual, MANUAL)
                | flag(member.scim_deleted, SCIM_DELETED)
                | flag(
                    !m.scim_extra.is_empty() || member.prior_external_id.is_some(),
                    HAS_EXTRA,
                ),
        })
    }

    /// The member, without its `scim_extra` (empty here; see [`Entry::has_extra`]).
    pub(crate) fn to_member(&self) -> Result<Member, StoreError> {
        use chrono::TimeZone;
        let time = |micros| {
            chrono::Utc
                .timestamp_micros(micros)
                .single()
                .unwrap_or_default()
        };
        let owned = |i| self.opt(i).map(str::to_string);
        let user = self.user_name();
        let dir = DirectoryAttrs {
            // It was a valid user name when the entry was made.
            user_name: UserName::parse_identifier(user)
                .map_err(|e| StoreError::Corrupt(format!("member in memory: {e}")))?,
            emails: if self.flags & EMAILS_DEFAULT != 0 {
                vec![Email::primary_work(user)]
            } else {
                self.emails
                    .iter()
                    .map(|e| Email {
                        value: e.value.to_string(),
                        kind: e.kind.as_deref().map(str::to_string),
                        primary: e.primary,
                    })
                    .collect()
            },
            given_name: owned(GIVEN),
            family_name: owned(FAMILY),
            display_name: owned(DISPLAY),
            active: self.active(),
            google_id: owned(GOOGLE),
            external_id: owned(EXTERNAL),
            scim_extra: serde_json::Map::new(),
        };
        Ok(Member {
            id: self.id,
            dir,
            locations: self.locations.iter().map(|l| l.to_string()).collect(),
            role: if self.flags & OWNER != 0 {
                Role::Owner
            } else {
                Role::Member
            },
            managed_by: if self.flags & MANUAL != 0 {
                ManagedBy::Manual
            } else {
                ManagedBy::Google
            },
            scim_deleted: self.flags & SCIM_DELETED != 0,
            created: time(self.created_micros),
            last_modified: time(self.last_modified_micros),
            version: self.version,
            prior_external_id: None,
        })
    }

    /// The entry of a record read in place (the open), without building a `Member`.
    pub(super) fn of_record(
        r: &RecordRef<'_>,
        interner: &mut Interner,
    ) -> Result<Entry, StoreError> {
        let bad = |why: String| StoreError::Corrupt(format!("member record: {why}"));
        let id = MemberId::from_slice(&r.id).ok_or_else(|| bad("bad id".into()))?;
        // The same checks as decoding a `Member` would make.
        UserName::parse_identifier(r.user_name).map_err(|e| bad(e.to_string()))?;
        for micros in [r.created_micros, r.last_modified_micros] {
            use chrono::TimeZone;
            if chrono::Utc.timestamp_micros(micros).single().is_none() {
                return Err(bad(format!("bad time {micros}")));
            }
        }
        let emails_default =
            matches!(&r.emails[..], [(v, Some("work"), true)] if *v == r.user_name);
        Ok(Entry::assemble(Parts {
            id,
            strings: [
                Some(r.user_name),
                None,
                r.given_name,
                r.family_name,
                r.display_name,
                r.google_id,
                r.external_id,
            ],
            emails: if emails_default {
                Vec::new()
            } else {
                r.emails
                    .iter()
                    .map(|(value, kind, primary)| CompactEmail {
                        value: (*value).into(),
                        kind: kind.map(Into::into),
                        primary: *primary,
                    })
                    .collect()
            },
            emails_default,
            locations: r.locations.iter().map(|l| interner.intern(l)).collect(),
            created_micros: r.created_micros,
            last_modified_micros: r.last_modified_micros,
            version: r.version,
            flags: flag(r.active, ACTIVE)
                | flag(r.owner, OWNER)
                | flag(r.manual, MANUAL)
                | flag(r.scim_deleted, SCIM_DELETED)
                | flag(!r.scim_extra.is_empty() || r.has_trailer, HAS_EXTRA),
        }))
    }
}

/// The plan reads entries in place (see [`MemberLike`]). Each answer is the one the
/// `Member` of [`Entry::to_member`] gives (tested for every field and both email layouts).
impl MemberLike for Entry {
    fn id(&self) -> MemberId {
        self.id
    }
    fn version(&self) -> u64 {
        self.version
    }
    fn user_name(&self) -> &str {
        self.string(USER)
    }
    fn folded_user_name(&self) -> std::borrow::Cow<'_, str> {
        std::borrow::Cow::Borrowed(self.name_key())
    }
    fn google_id(&self) -> Option<&str> {
        self.opt(GOOGLE)
    }
    fn active(&self) -> bool {
        self.flags & ACTIVE != 0
    }
    fn scim_deleted(&self) -> bool {
        self.flags & SCIM_DELETED != 0
    }
    fn managed_by(&self) -> ManagedBy {
        if self.flags & MANUAL != 0 {
            ManagedBy::Manual
        } else {
            ManagedBy::Google
        }
    }
    fn differs(&self, field: Field, a: &DirectoryAttrs) -> bool {
        match field {
            Field::UserName => self.user_name() != a.user_name.as_str(),
            Field::Emails => {
                if self.flags & EMAILS_DEFAULT != 0 {
                    !is_default_emails(self.user_name(), &a.emails)
                } else {
                    self.emails.len() != a.emails.len()
                        || self.emails.iter().zip(&a.emails).any(|(c, e)| {
                            *c.value != *e.value
                                || c.kind.as_deref() != e.kind.as_deref()
                                || c.primary != e.primary
                        })
                }
            }
            Field::GivenName => self.opt(GIVEN) != a.given_name.as_deref(),
            Field::FamilyName => self.opt(FAMILY) != a.family_name.as_deref(),
            Field::DisplayName => self.opt(DISPLAY) != a.display_name.as_deref(),
            Field::Active => self.active() != a.active,
            Field::GoogleId => self.opt(GOOGLE) != a.google_id.as_deref(),
            Field::ExternalId => self.opt(EXTERNAL) != a.external_id.as_deref(),
        }
    }
}

fn flag(on: bool, bit: u16) -> u16 {
    if on {
        bit
    } else {
        0
    }
}

fn is_default_emails(user_name: &str, emails: &[Email]) -> bool {
    matches!(emails, [e] if e.primary && e.kind.as_deref() == Some("work") && e.value == user_name)
}

/// The location names, one copy each.
#[derive(Default)]
pub(crate) struct Interner(HashSet<Arc<str>>);

impl Interner {
    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.0.get(s) {
            return a.clone();
        }
        let a: Arc<str> = s.into();
        self.0.insert(a.clone());
        a
    }

    /// Takes in another interner's strings (one the open's second reader filled); a string
    /// both hold keeps this one's copy for what is interned next.
    fn absorb(&mut self, other: Interner) {
        for s in other.0 {
            if !self.0.contains(&s) {
                self.0.insert(s);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The mirror
// ---------------------------------------------------------------------------------------

/// Members by slot, the id index, the three identity indexes and the SCIM listing order.
#[derive(Default)]
pub(crate) struct Mirror {
    /// Every member; a slot never changes hands (members are never removed).
    entries: Vec<Arc<Entry>>,
    hasher: DefaultHashBuilder,
    by_id: HashTable<u32>,
    /// By folded user name ([`crate::member::normalize_email`]).
    by_name: HashTable<u32>,
    /// By the SCIM client's `externalId` (exact).
    by_ext: HashTable<u32>,
    /// By Google user id.
    by_google: HashTable<u32>,
    /// The members SCIM lists ([`Member::visible_to_scim`]), by folded user name.
    scim_order: Blocks,
    /// Every member, by folded user name: the console's listing.
    all_order: Blocks,
    interner: Interner,
    /// How many members are active, kept with every write: `/healthz` and `/metrics` read it
    /// on every call, and counting a large store each time made a health check cost a walk
    /// over every member.
    active: usize,
}

/// A page of [`Mirror::browse`].
#[derive(Default)]
pub(crate) struct Browse {
    /// The entries, in order.
    pub(crate) entries: Vec<Arc<Entry>>,
    /// Whether more may follow.
    pub(crate) more: bool,
    /// Where the walk stopped when it ran out of budget (the next page starts after it, not
    /// after the last entry found).
    pub(crate) resume: Option<String>,
}

/// One transaction's writes: `None` removes an index entry.
#[derive(Default)]
pub(crate) struct Overlay {
    pub(crate) members: std::collections::HashMap<MemberId, Member>,
    pub(crate) names: std::collections::HashMap<String, Option<MemberId>>,
    pub(crate) externals: std::collections::HashMap<String, Option<MemberId>>,
    pub(crate) googles: std::collections::HashMap<String, Option<MemberId>>,
}

impl Mirror {
    fn table(&self, key: Key) -> &HashTable<u32> {
        match key {
            Key::Name => &self.by_name,
            Key::External => &self.by_ext,
            Key::Google => &self.by_google,
        }
    }

    fn find(&self, key: Key, value: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(value);
        self.table(key)
            .find(hash, |&s| {
                Key::of(key, &self.entries[s as usize]) == Some(value)
            })
            .copied()
    }

    fn slot(&self, id: MemberId) -> Option<u32> {
        let hash = self.hasher.hash_one(id);
        self.by_id
            .find(hash, |&s| self.entries[s as usize].id == id)
            .copied()
    }

    /// The entries, the hasher and `key`'s index, borrowed apart: the index hashes and
    /// compares through the entries its slots point at.
    fn index_parts(
        &mut self,
        key: Key,
    ) -> (&[Arc<Entry>], &DefaultHashBuilder, &mut HashTable<u32>) {
        let Mirror {
            entries,
            hasher,
            by_name,
            by_ext,
            by_google,
            ..
        } = self;
        let table = match key {
            Key::Name => by_name,
            Key::External => by_ext,
            Key::Google => by_google,
        };
        (entries, hasher, table)
    }

    /// Points `key`'s value of the entry in `slot` at `slot`; returns the slot that already
    /// held that value, if another did (it is replaced).
    fn index(&mut self, key: Key, slot: u32) -> Option<u32> {
        let value = Key::of(key, &self.entries[slot as usize])?;
        let hash = self.hasher.hash_one(value);
        self.index_hashed(key, slot, hash)
    }

    /// As [`Mirror::index`], with the hash of the key already made (the entry has the key).
    fn index_hashed(&mut self, key: Key, slot: u32, hash: u64) -> Option<u32> {
        let (entries, hasher, table) = self.index_parts(key);
        let value = Key::of(key, &entries[slot as usize])?;
        match table.entry(
            hash,
            |&s| Key::of(key, &entries[s as usize]) == Some(value),
            |&s| Key::of(key, &entries[s as usize]).map_or(0, |v| hasher.hash_one(v)),
        ) {
            hashbrown::hash_table::Entry::Occupied(mut o) => {
                let old = *o.get();
                *o.get_mut() = slot;
                (old != slot).then_some(old)
            }
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(slot);
                None
            }
        }
    }

    /// Removes `key`'s value of the entry in `slot` from its index, if it points there.
    fn unindex(&mut self, key: Key, slot: u32) {
        let (entries, hasher, table) = self.index_parts(key);
        let Some(value) = Key::of(key, &entries[slot as usize]) else {
            return;
        };
        let hash = hasher.hash_one(value);
        if let Ok(o) = table.find_entry(hash, |&s| s == slot) {
            o.remove();
        }
    }

    fn push(&mut self, entry: Entry) -> u32 {
        let hash = self.hasher.hash_one(entry.id);
        self.push_hashed(Arc::new(entry), hash)
    }

    /// As [`Mirror::push`], with the hash of the entry's id already made.
    fn push_hashed(&mut self, entry: Arc<Entry>, hash: u64) -> u32 {
        let slot = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
        self.active += usize::from(entry.active());
        self.entries.push(entry);
        let Mirror {
            entries,
            hasher,
            by_id,
            ..
        } = self;
        by_id.insert_unique(hash, slot, |&s| hasher.hash_one(entries[s as usize].id));
        slot
    }

    /// Builds the mirror and its indexes from every member, in one pass. Two members that
    /// claim one folded user name, external id or Google id are a [`StoreError::Collision`].
    pub(crate) fn build(
        members: impl IntoIterator<Item = Result<Member, StoreError>>,
    ) -> Result<Mirror, StoreError> {
        let mut mirror = Mirror::default();
        for m in members {
            let m = m?;
            let entry = Entry::of_member(&m, &mut mirror.interner);
            mirror.add_built(entry)?;
        }
        mirror.finish_build();
        Ok(mirror)
    }

    fn add_built(&mut self, entry: Entry) -> Result<(), StoreError> {
        let h = Hashed::new(entry, &self.hasher);
        self.add_hashed(h)
    }

    fn add_hashed(&mut self, h: Hashed) -> Result<(), StoreError> {
        let slot = self.push_hashed(h.entry, h.id);
        for (key, hash) in KEYS.into_iter().zip(h.keys) {
            let Some(hash) = hash else { continue };
            if let Some(other) = self.index_hashed(key, slot, hash) {
                let (a, b) = (&self.entries[other as usize], &self.entries[slot as usize]);
                let value = Key::of(key, b).unwrap_or_default();
                return Err(collision(key.what(), value, a, b));
            }
        }
        Ok(())
    }

    fn finish_build(&mut self) {
        let mut all: Vec<u32> = (0..self.entries.len()).map(|s| s as u32).collect();
        let entries = &self.entries;
        all.sort_unstable_by(|&a, &b| {
            entries[a as usize]
                .name_key()
                .cmp(entries[b as usize].name_key())
        });
        // One sort serves both orders: SCIM's is the same order without the hidden members.
        self.scim_order = Blocks::from_sorted(
            all.iter()
                .copied()
                .filter(|&s| entries[s as usize].visible_to_scim()),
        );
        self.all_order = Blocks::from_sorted(all);
    }

    pub(crate) fn get(&self, id: MemberId) -> Option<Arc<Entry>> {
        self.slot(id).map(|s| self.entries[s as usize].clone())
    }

    pub(crate) fn id_by_name(&self, normalized: &str) -> Option<MemberId> {
        self.entry_by(Key::Name, normalized).map(|e| e.id)
    }

    pub(crate) fn id_by_external_id(&self, ext: &str) -> Option<MemberId> {
        self.entry_by(Key::External, ext).map(|e| e.id)
    }

    pub(crate) fn id_by_google_id(&self, google_id: &str) -> Option<MemberId> {
        self.entry_by(Key::Google, google_id).map(|e| e.id)
    }

    pub(crate) fn by_name(&self, normalized: &str) -> Option<Arc<Entry>> {
        self.entry_by(Key::Name, normalized).cloned()
    }

    pub(crate) fn by_external_id(&self, ext: &str) -> Option<Arc<Entry>> {
        self.entry_by(Key::External, ext).cloned()
    }

    pub(crate) fn by_google_id(&self, google_id: &str) -> Option<Arc<Entry>> {
        self.entry_by(Key::Google, google_id).cloned()
    }

    fn entry_by(&self, key: Key, value: &str) -> Option<&Arc<Entry>> {
        self.find(key, value).map(|s| &self.entries[s as usize])
    }

    /// Active and inactive members.
    pub(crate) fn counts(&self) -> (usize, usize) {
        (self.active, self.entries.len() - self.active)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Every entry (a snapshot: shared handles, nothing copied), in no order; sort with
    /// [`sort_by_name`] outside the lock.
    pub(crate) fn all(&self) -> Vec<Arc<Entry>> {
        self.entries.clone()
    }

    /// How many members SCIM lists.
    pub(crate) fn scim_len(&self) -> usize {
        self.scim_order.len
    }

    /// The ids SCIM lists at 0-based positions `start..start+count`.
    pub(crate) fn scim_page(&self, start: usize, count: usize, descending: bool) -> Vec<MemberId> {
        self.scim_order
            .page(start, count, descending)
            .into_iter()
            .map(|s| self.entries[s as usize].id)
            .collect()
    }

    /// The console's page: up to `limit` entries after the folded user name `after`, in
    /// user-name order, that `keep` keeps, and whether more follow. Stops after `budget`
    /// entries looked at (a search that matches few members does not walk a million at
    /// once): the page then holds what it found, and more may follow.
    pub(crate) fn browse(
        &self,
        after: Option<&str>,
        limit: usize,
        budget: usize,
        keep: impl Fn(&Entry) -> bool,
    ) -> Browse {
        let mut page = Browse::default();
        let mut looked = 0usize;
        let entries = &self.entries;
        self.all_order.walk_after(
            after,
            |s| entries[s as usize].name_key(),
            |s| {
                let e = &entries[s as usize];
                looked += 1;
                if keep(e) {
                    if page.entries.len() == limit {
                        page.more = true;
                        return false;
                    }
                    page.entries.push(e.clone());
                }
                if looked >= budget {
                    page.more = true;
                    page.resume = Some(e.name_key().to_string());
                    return false;
                }
                true
            },
        );
        page
    }

    /// Whether two mirrors hold the same members and the same indexes (the consistency
    /// check compares the live mirror with one rebuilt from the records).
    pub(crate) fn differences(&self, other: &Mirror) -> Vec<String> {
        let mut out = Vec::new();
        if self.len() != other.len() {
            out.push(format!(
                "memory holds {} members, the disk {}",
                self.len(),
                other.len()
            ));
        }
        for e in &other.entries {
            if self.get(e.id).as_deref() != Some(&**e) {
                out.push(format!("member {} in memory differs from the disk", e.id));
            }
        }
        if self.counts() != other.counts() {
            out.push(format!(
                "memory counts {:?} active and inactive members, the disk {:?}",
                self.counts(),
                other.counts()
            ));
        }
        for (key, what) in [
            (Key::Name, "the user name index differs from the records"),
            (
                Key::External,
                "the external id index differs from the records",
            ),
            (Key::Google, "the Google id index differs from the records"),
        ] {
            let ids = |m: &Mirror| {
                let mut v: Vec<(String, MemberId)> = m
                    .table(key)
                    .iter()
                    .map(|&s| {
                        let e = &m.entries[s as usize];
                        (Key::of(key, e).unwrap_or_default().to_string(), e.id)
                    })
                    .collect();
                v.sort_unstable();
                v
            };
            if ids(self) != ids(other) {
                out.push(what.into());
            }
        }
        if self.scim_page(0, usize::MAX, false) != other.scim_page(0, usize::MAX, false)
            || self.scim_len() != other.scim_len()
        {
            out.push("the SCIM listing order differs from the records".into());
        }
        let console_order = |m: &Mirror| {
            let mut ids = Vec::with_capacity(m.len());
            m.all_order.walk_after(
                None,
                |s| m.entries[s as usize].name_key(),
                |s| {
                    ids.push(m.entries[s as usize].id);
                    true
                },
            );
            ids
        };
        if console_order(self) != console_order(other) {
            out.push("the console's listing order differs from the records".into());
        }
        out
    }

    /// Applies a committed transaction's writes. The indexes follow the entries: the old
    /// keys of every written member are removed first, then the new ones set, so a name that
    /// moves from one member to another in one transaction lands on the right one.
    pub(crate) fn apply(&mut self, overlay: Overlay) {
        let mut written = Vec::with_capacity(overlay.members.len());
        for (id, m) in overlay.members {
            let entry = Entry::of_member(&m, &mut self.interner);
            match self.slot(id) {
                Some(slot) => {
                    for key in [Key::Name, Key::External, Key::Google] {
                        self.unindex(key, slot);
                    }
                    let old = &self.entries[slot as usize];
                    let entries = &self.entries;
                    if old.visible_to_scim() {
                        let order = &mut self.scim_order;
                        order.remove(old.name_key(), |s| entries[s as usize].name_key());
                    }
                    let order = &mut self.all_order;
                    order.remove(old.name_key(), |s| entries[s as usize].name_key());
                    written.push((slot, Some(entry)));
                }
                None => written.push((self.push(entry), None)),
            }
        }
        for (slot, entry) in written {
            if let Some(entry) = entry {
                let old = std::mem::replace(&mut self.entries[slot as usize], Arc::new(entry));
                self.active -= usize::from(old.active());
                self.active += usize::from(self.entries[slot as usize].active());
            }
            for key in [Key::Name, Key::External, Key::Google] {
                self.index(key, slot);
            }
            let (entries, e) = (&self.entries, &self.entries[slot as usize]);
            if e.visible_to_scim() {
                let order = &mut self.scim_order;
                order.insert(e.name_key(), slot, |s| entries[s as usize].name_key());
            }
            let order = &mut self.all_order;
            order.insert(e.name_key(), slot, |s| entries[s as usize].name_key());
        }
    }
}

/// Whether `hay` holds `needle` (lower case), ignoring case: byte by byte where both are
/// ASCII, through Unicode lower-casing otherwise.
fn contains_caseless(hay: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return true;
    }
    if hay.is_ascii() && needle.is_ascii() {
        let (h, n) = (hay.as_bytes(), needle.as_bytes());
        return h.len() >= n.len() && h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n));
    }
    hay.to_lowercase().contains(needle)
}

/// Sorts entries by folded user name (the order of listings).
pub(crate) fn sort_by_name(entries: &mut [Arc<Entry>]) {
    entries.sort_unstable_by(|a, b| a.name_key().cmp(b.name_key()));
}

mod build;
mod keys;
#[cfg(test)]
pub(super) use build::OPEN_BATCH;
use keys::{collision, Hashed, Key, KEYS};

#[cfg(test)]
mod tests;
