//! The plan: a pure function from the desired state (Google users in scope) and the observed
//! state (the members) to the changes that make them agree, in a deterministic order.
//!
//! Rules (ARCHITECTURE.md, "The life of a pull"; docs/admin/pull.md, "What the pull does"):
//! - a Google user is matched to a member by `google_id` (the immutable Google id), else
//!   by normalised primary email;
//! - no match: Create. A match that differs: Update (a rename is an Update, never delete +
//!   create). Suspended or archived: `active = false`; and back;
//! - a match by email to a member that is not linked yet (or is manual): Link, which makes it
//!   managed by Google;
//! - a match by email to a member linked to a Google id that Google no longer has: the user
//!   was deleted and recreated with the same email. The member, its locations and its history
//!   are kept and relinked to the new id (an Update of `google_id`);
//! - an active member managed by Google that is no longer in Google or in scope: Deactivate.
//!   Nothing is ever deleted;
//! - members the directory does not own (manual and not matched, or outside the managed
//!   domains) are never touched; a SCIM-deleted member is hidden from the directory and left
//!   alone (only the owner's `members restore` brings it back).
//!
//! Any Update or Deactivate that takes an active member to inactive counts as a
//! deactivation: the guard holds them all alike, because both lock a person out.

use std::borrow::Cow;
use std::collections::HashSet;
use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};

use serde::{Deserialize, Serialize};

use crate::directory::model::GoogleUser;
use crate::member::{
    normalize_email, normalize_email_cow, Change, DirectoryAttrs, Email, Field, ManagedBy,
    MemberId, MemberLike, UserName,
};

/// A Google user as the member it should be.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    /// The Google id.
    pub google_id: String,
    /// The directory fields it should have.
    pub attrs: DirectoryAttrs,
}

impl Desired {
    /// The member a Google user should be; an error when its primary email is not usable.
    /// Its emails are the primary address and the secondary addresses Google lists in
    /// `domains` (lower case, empty = any): see [`GoogleUser::secondary_addresses`].
    pub fn from_google(u: &GoogleUser, domains: &[String]) -> Result<Desired, String> {
        Desired::from_google_owned(u.clone(), domains).map_err(|(_, e)| e)
    }

    /// As [`Desired::from_google`], taking the user: its strings move into the member. The
    /// error gives the user's Google id back with the message.
    pub fn from_google_owned(
        u: GoogleUser,
        domains: &[String],
    ) -> Result<Desired, (String, String)> {
        let user_name = match UserName::parse(&u.primary_email) {
            Ok(n) => n,
            Err(e) => {
                let msg = format!("Google user {}: {e}", u.id);
                return Err((u.id, msg));
            }
        };
        if let Some(why) = crate::member::lookalike_reason(user_name.as_str()) {
            let msg = format!(
                "Google user {} ({}) is skipped: {why}",
                u.id,
                user_name.as_str().escape_debug()
            );
            return Err((u.id, msg));
        }
        let others = u.secondary_addresses(domains);
        let mut emails = Vec::with_capacity(1 + others.len());
        emails.push(Email::primary_work(user_name.as_str()));
        for other in others {
            emails.push(Email {
                value: other,
                kind: Some("other".into()),
                primary: false,
            });
        }
        // Google stores a mononym's missing name part as a zero-width space (a name part
        // cannot be empty there): such a part, or one of only blanks, reads as empty.
        let clean = |s: Option<String>| {
            s.map(|s| match s.trim_matches(is_blank) {
                t if t.len() == s.len() => s,
                t => t.to_string(),
            })
            .filter(|s| !s.is_empty())
        };
        let active = u.is_active();
        let name = u.name.unwrap_or_default();
        Ok(Desired {
            attrs: DirectoryAttrs {
                user_name,
                emails,
                given_name: clean(name.given_name),
                family_name: clean(name.family_name),
                display_name: clean(name.full_name),
                active,
                google_id: Some(u.id.clone()),
                external_id: None,
                scim_extra: Default::default(),
            },
            google_id: u.id,
        })
    }
}

/// Whitespace and the zero-width characters Google uses as a placeholder for an empty name
/// part (ZERO WIDTH SPACE, ZERO WIDTH (NON-)JOINER, WORD JOINER, ZERO WIDTH NO-BREAK SPACE).
fn is_blank(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}'
        )
}

/// What a planned change does, as the run counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Changes directory fields (rename, name, reactivation, relink).
    Update,
    /// Links an existing member to its Google user.
    Link,
    /// A new member.
    Create,
    /// Takes an active member to inactive.
    Deactivate,
}

impl Action {
    /// The name used in output and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Update => "update",
            Action::Link => "link",
            Action::Create => "create",
            Action::Deactivate => "deactivate",
        }
    }
}

/// One change of the plan, with what the output needs to describe it.
///
/// On the wire (a dry run's JSON, the admin socket) `fields` is a list of names, with
/// `managedBy` last when `manages` is set: [`wire::PlannedChange`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "wire::PlannedChange", try_from = "wire::PlannedChange")]
pub struct PlannedChange {
    /// How it is counted.
    pub action: Action,
    /// The member's user name (after the change).
    pub user_name: String,
    /// The member, when it exists.
    pub member: Option<MemberId>,
    /// The directory attributes that change.
    pub fields: Vec<Field>,
    /// Whether the change makes the member managed by Google (it is not yet).
    pub manages: bool,
    /// What `provision::apply` is given.
    pub change: Change,
}

impl PlannedChange {
    /// The names of what changes, as the output shows them: the fields, then `managedBy`.
    pub fn field_names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.fields.iter().map(|f| f.name()).collect();
        if self.manages {
            names.push(wire::MANAGED_BY);
        }
        names
    }
}

/// A planned change as its JSON has always been written.
mod wire {
    use serde::{Deserialize, Serialize};

    use super::Action;
    use crate::member::{Change, Field, MemberId};

    /// The name of the member's `managed_by` among a change's fields.
    pub(super) const MANAGED_BY: &str = "managedBy";

    /// [`super::PlannedChange`] with its fields by name.
    #[derive(Serialize, Deserialize)]
    pub(super) struct PlannedChange {
        action: Action,
        user_name: String,
        member: Option<MemberId>,
        fields: Vec<String>,
        change: Change,
    }

    impl From<super::PlannedChange> for PlannedChange {
        fn from(c: super::PlannedChange) -> PlannedChange {
            PlannedChange {
                fields: c.field_names().into_iter().map(str::to_string).collect(),
                action: c.action,
                user_name: c.user_name,
                member: c.member,
                change: c.change,
            }
        }
    }

    impl TryFrom<PlannedChange> for super::PlannedChange {
        type Error = String;

        fn try_from(c: PlannedChange) -> Result<super::PlannedChange, String> {
            let mut fields = Vec::with_capacity(c.fields.len());
            let mut manages = false;
            for name in &c.fields {
                if name == MANAGED_BY {
                    manages = true;
                    continue;
                }
                let field = Field::ALL
                    .into_iter()
                    .find(|f| f.name() == name)
                    .ok_or_else(|| format!("a planned change names an unknown field {name:?}"))?;
                fields.push(field);
            }
            Ok(super::PlannedChange {
                action: c.action,
                user_name: c.user_name,
                member: c.member,
                fields,
                manages,
                change: c.change,
            })
        }
    }
}

/// The plan.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Changes: updates and links, then creates, then deactivations; each by user name.
    pub changes: Vec<PlannedChange>,
    /// Matched members that already agree.
    pub unchanged: usize,
    /// Google users whose member was deleted over SCIM (left alone until restored).
    pub hidden: usize,
    /// Members the directory does not own that no Google user matched.
    pub not_owned: usize,
    /// Google users that cannot be provisioned (duplicate email, email held elsewhere).
    pub problems: Vec<String>,
    /// Active managed members after the plan is applied.
    pub active_after: usize,
    /// Active managed members now.
    pub active_now: usize,
}

impl Plan {
    /// How many changes of this kind.
    pub fn count(&self, action: Action) -> usize {
        self.changes.iter().filter(|c| c.action == action).count()
    }
}

/// What the plan needs to know besides the users and members.
#[derive(Clone, Debug, Default)]
pub struct PlanContext<'a> {
    /// Managed domains, lower case; empty = all.
    pub domains: &'a [String],
    /// The Google ids listed (in scope or not), to tell a recreated user from a renamed one;
    /// `None` when the listing was narrowed and cannot tell. The desired users' own ids count
    /// as listed whether or not they are in this set, so a run passes only the others.
    pub all_google_ids: Option<&'a HashSet<String>>,
    /// Google ids in scope that could not be turned into a member (an unusable email): their
    /// members are left as they are rather than taken for gone.
    pub unusable_ids: Option<&'a HashSet<String>>,
    /// The members' index, built beforehand by [`MemberIndex::new`] over the same members
    /// and domains (a run builds it while Google is read); `None`: the plan builds it.
    pub index: Option<&'a MemberIndex>,
}

/// Whether a user name (as given) is in the managed domains (caseless keys; empty = all):
/// [`crate::member::in_domains`], the one domain check of the project.
fn in_domains(domains: &[String], user_name: &str) -> bool {
    crate::member::in_domains(domains, user_name)
}

/// Whether the pull owns a member: it is linked to a Google user (then it is judged by that
/// link, whatever its user name is now: a SCIM rename cannot take it out of the pull), or
/// its user name is in the managed domains.
fn owned_by_pull<M: MemberLike + ?Sized>(m: &M, domains: &[String]) -> bool {
    m.google_id().is_some() || in_domains(domains, m.user_name())
}

/// Whether a member counts as active and managed by Google (the guard's base): active,
/// not SCIM-deleted, and owned by the pull ([`owned_by_pull`]).
pub fn is_active_managed<M: MemberLike + ?Sized>(m: &M, domains: &[String]) -> bool {
    m.managed_by() == ManagedBy::Google
        && m.active()
        && !m.scim_deleted()
        && owned_by_pull(m, domains)
}

/// What the pull changes of a member: the fields it writes that differ from what the
/// member should be ([`Field::pulled`], [`Field::differs`]), and whether the member becomes
/// Google's.
#[derive(Debug, Default, PartialEq)]
struct Changed {
    fields: Vec<Field>,
    manages: bool,
}

impl Changed {
    fn is_empty(&self) -> bool {
        self.fields.is_empty() && !self.manages
    }
}

/// The fields the pull writes that differ between a member and what it should be, and
/// whether the member is not Google's yet.
fn changed_fields<M: MemberLike + ?Sized>(m: &M, a: &DirectoryAttrs) -> Changed {
    Changed {
        fields: Field::ALL
            .into_iter()
            .filter(|f| f.pulled() && m.differs(*f, a))
            .collect(),
        manages: m.managed_by() != ManagedBy::Google,
    }
}

/// Positions in the member slice by a key that each member gives (its Google id, or its
/// user name's key), read from the member on each probe: no key is copied. At a million
/// members this costs a few bytes a member, where a `HashMap<String, usize>` of copied keys
/// cost about 80.
#[derive(Default)]
struct Positions {
    table: HashTable<u32>,
    hasher: DefaultHashBuilder,
}

impl std::fmt::Debug for Positions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Positions({})", self.table.len())
    }
}

impl Positions {
    /// Indexes `members` by `key`; of two members with one key, the later one is kept.
    fn build<M, K>(members: &[M], key: K) -> Positions
    where
        K: for<'m> Fn(&'m M) -> Option<Cow<'m, str>>,
    {
        let mut p = Positions {
            table: HashTable::with_capacity(members.len()),
            hasher: DefaultHashBuilder::default(),
        };
        for (i, m) in members.iter().enumerate() {
            let Some(k) = key(m) else { continue };
            // The mirror's slots are `u32` too: a store holds fewer than 2^32 members.
            let Ok(slot) = u32::try_from(i) else { break };
            let hash = p.hasher.hash_one(&*k);
            let rehash = |&j: &u32| {
                let k = key(&members[j as usize]);
                p.hasher.hash_one(k.as_deref().unwrap_or_default())
            };
            match p.table.entry(
                hash,
                |&j| key(&members[j as usize]).as_deref() == Some(&*k),
                rehash,
            ) {
                hashbrown::hash_table::Entry::Occupied(mut o) => *o.get_mut() = slot,
                hashbrown::hash_table::Entry::Vacant(v) => {
                    v.insert(slot);
                }
            }
        }
        p
    }

    /// The position of the member whose key is `k`.
    fn get<M, K>(&self, members: &[M], key: K, k: &str) -> Option<usize>
    where
        K: for<'m> Fn(&'m M) -> Option<Cow<'m, str>>,
    {
        self.table
            .find(self.hasher.hash_one(k), |&j| {
                key(&members[j as usize]).as_deref() == Some(k)
            })
            .map(|&j| j as usize)
    }
}

/// A member's Google id, the first key of the match.
fn google_key<M: MemberLike>(m: &M) -> Option<Cow<'_, str>> {
    m.google_id().map(Cow::Borrowed)
}

/// A member's user name key, the second key of the match.
fn name_key<M: MemberLike>(m: &M) -> Option<Cow<'_, str>> {
    Some(m.folded_user_name())
}

/// What the plan needs from the members alone, built apart from the plan so that a run
/// can build it while Google is still being read.
#[derive(Debug, Default)]
pub struct MemberIndex {
    /// Position in the member slice by Google id.
    by_google: Positions,
    /// Active members managed by Google in the managed domains.
    active_now: usize,
}

impl MemberIndex {
    /// Indexes `members` (the slice later given to [`plan`], with this index in its
    /// [`PlanContext`]).
    pub fn new<M: MemberLike>(members: &[M], domains: &[String]) -> MemberIndex {
        let by_google = Positions::build(members, google_key);
        let active_now = members
            .iter()
            .filter(|m| is_active_managed(*m, domains))
            .count();
        MemberIndex {
            by_google,
            active_now,
        }
    }
}

/// Below this many users, the plan stays on one thread.
const PARALLEL_FROM: usize = 10_000;

/// What the plan needs of one matched (member, user) pair, found while comparing them.
enum Compared {
    /// The member was deleted over SCIM: hidden from the directory.
    Hidden,
    /// They agree; whether the user is active.
    Unchanged { active: bool },
    /// What differs ([`changed_fields`]).
    Changed(Changed),
}

/// A matched pair is always the pull's: the user is in the managed domains (the plan drops
/// the others first), and the member either has the user's name key (so the same domain) or
/// is linked to the user's Google id, which makes Google the source of truth for it whatever
/// its user name is now.
fn compare<M: MemberLike + ?Sized>(m: &M, d: &Desired) -> Compared {
    if m.scim_deleted() {
        return Compared::Hidden;
    }
    let changed = changed_fields(m, &d.attrs);
    if changed.is_empty() {
        Compared::Unchanged {
            active: d.attrs.active,
        }
    } else {
        Compared::Changed(changed)
    }
}

/// Each matched (member, user) pair compared, in order; split over two threads for a large
/// directory. Everything the plan reads of a pair that agrees is read here, so the ordered
/// pass after it touches only the pairs that change.
fn compare_all<M: MemberLike + Sync>(
    matched: &[(usize, usize, bool)],
    members: &[M],
    desired: &[Desired],
) -> Vec<Compared> {
    par_map(matched, |&(i, j, _)| compare(&members[i], &desired[j]))
}

/// `items` mapped by `f`, in order: on two threads, a half each, from [`PARALLEL_FROM`]
/// items (a plan at a million users spends most of its time in a few such passes, which
/// read members and users at random and wait on memory).
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let map = |part: &[T]| -> Vec<R> { part.iter().map(&f).collect() };
    if items.len() < PARALLEL_FROM {
        return map(items);
    }
    let (front, back) = items.split_at(items.len() / 2);
    std::thread::scope(|s| {
        let back_half = s.spawn(|| map(back));
        let mut out = map(front);
        // A thread that could not finish is redone here rather than lost.
        out.extend(back_half.join().unwrap_or_else(|_| map(back)));
        out
    })
}

/// Sorts `v` by `cmp`, a total order, on two threads from [`PARALLEL_FROM`] items: each
/// half is sorted in place, then the halves are merged.
fn par_sort<T: Send>(v: &mut Vec<T>, cmp: impl Fn(&T, &T) -> std::cmp::Ordering + Sync) {
    if v.len() < PARALLEL_FROM {
        v.sort_unstable_by(&cmp);
        return;
    }
    let mid = v.len() / 2;
    let back_sorted = std::thread::scope(|s| {
        let (front, back) = v.split_at_mut(mid);
        let sorter = s.spawn(|| back.sort_unstable_by(&cmp));
        front.sort_unstable_by(&cmp);
        sorter.join().is_ok()
    });
    if !back_sorted {
        // The half is still there, in some order: sorted here instead.
        v[mid..].sort_unstable_by(&cmp);
    }
    let back = v.split_off(mid);
    let front = std::mem::replace(v, Vec::with_capacity(mid + back.len()));
    let (mut a, mut b) = (front.into_iter().peekable(), back.into_iter().peekable());
    loop {
        let take_a = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => cmp(x, y).is_le(),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        v.extend(if take_a { a.next() } else { b.next() });
    }
}

/// Plans the changes that make `members` agree with `desired`: the one entry point of the
/// plan. Its steps: [`order_users`], [`match_users`], then the updates, the creates and
/// the deactivations ([`plan_updates`], [`plan_creates`], [`plan_deactivations`]).
///
/// The desired state is taken, not copied: each user's attributes move into its change, and
/// the users that need no change are freed when the plan returns. The plan starts no
/// thread of its own but to compare a large directory (see `compare_all`).
pub fn plan<M: MemberLike + Sync>(
    desired: Vec<Desired>,
    members: &[M],
    ctx: &PlanContext<'_>,
) -> Plan {
    let built;
    let index = match ctx.index {
        Some(index) => index,
        None => {
            built = MemberIndex::new(members, ctx.domains);
            &built
        }
    };
    let mut out = Plan {
        active_now: index.active_now,
        ..Plan::default()
    };
    let (order, dropped) = order_users(&desired, ctx.domains, &mut out);
    let Matching {
        claimed,
        matched,
        unmatched,
    } = match_users(order, &desired, members, index, ctx, &mut out);

    // Comparing every matched pair is most of a run in which little changed; by now Google
    // has been read, so both halves run at once. Only the comparison is parallel: the
    // planning below stays in order.
    let compared = compare_all(&matched, members, &desired);

    // From here a user that becomes a change is taken out of `desired`.
    let mut desired: Vec<Option<Desired>> = desired.into_iter().map(Some).collect();
    let mut updates = plan_updates(matched, compared, &mut desired, members, &mut out);
    let mut creates = plan_creates(unmatched, &mut desired, &mut out);
    // The users that needed no change are freed here, in the run that planned them, not
    // on a thread of their own: `cargo bench --bench pull` prints what that costs.
    drop(desired);
    let mut deactivations = plan_deactivations(members, &claimed, &dropped, ctx, &mut out);

    let key = |c: &PlannedChange| normalize_email(&c.user_name);
    updates.sort_by_cached_key(key);
    deactivations.sort_by_cached_key(key);
    out.changes = updates;
    out.changes.append(&mut creates);
    out.changes.append(&mut deactivations);
    out
}

/// The users of the managed domains in a deterministic order (by user name key, then
/// Google id), one Google user per email: Google forbids duplicates, but a listing taken
/// while an address moves between users can show it twice. A duplicate is reported and
/// left for the next run; its id is returned with the dropped ones, so its member does not
/// look gone. Keys borrow the address when it is already lower case (this runs for every
/// user).
fn order_users<'d>(
    desired: &'d [Desired],
    domains: &[String],
    out: &mut Plan,
) -> (Vec<(Cow<'d, str>, usize)>, HashSet<String>) {
    let mut keyed: Vec<(Cow<'_, str>, usize)> = desired
        .iter()
        .enumerate()
        .filter(|(_, d)| in_domains(domains, d.attrs.user_name.as_str()))
        .map(|(j, d)| (normalize_email_cow(d.attrs.user_name.as_str()), j))
        .collect();
    // users.list is not asked for an order (see `list_users_page_raw`): sort here.
    let by_key = |a: &(Cow<'_, str>, usize), b: &(Cow<'_, str>, usize)| {
        (&a.0, &desired[a.1].google_id).cmp(&(&b.0, &desired[b.1].google_id))
    };
    if !keyed.is_sorted_by(|a, b| by_key(a, b).is_le()) {
        // Ties broken by position: the order a stable sort gives, at an unstable sort's cost.
        par_sort(&mut keyed, |a, b| by_key(a, b).then(a.1.cmp(&b.1)));
    }
    let mut seen_ids: hashbrown::HashSet<&str> = hashbrown::HashSet::with_capacity(keyed.len());
    // Ids dropped as duplicates: their members must not look gone.
    let mut dropped: HashSet<String> = HashSet::new();
    let mut order: Vec<(Cow<'_, str>, usize)> = Vec::with_capacity(keyed.len());
    for (key, j) in keyed {
        let d = &desired[j];
        let dup_name = order.last().is_some_and(|(k, _)| *k == key);
        let fresh_id = seen_ids.insert(d.google_id.as_str());
        if dup_name || !fresh_id {
            out.problems.push(format!(
                "Google lists {} ({}) twice; it is left for the next run",
                d.attrs.user_name, d.google_id
            ));
            dropped.insert(d.google_id.clone());
            continue;
        }
        order.push((key, j));
    }
    (order, dropped)
}

/// Which member each user is: [`match_users`]'s answer.
struct Matching {
    /// By member position: matched to a user (or holding its address for another).
    claimed: Vec<bool>,
    /// (member, user, matched by email), in the users' order.
    matched: Vec<(usize, usize, bool)>,
    /// Users no member is, in the users' order.
    unmatched: Vec<usize>,
}

/// Matches each user of `order` to a member: first by Google id, which never changes, then
/// by user name for the members not claimed by their Google id. A member found by name
/// that is linked to another Google user that Google still has holds the address: the user
/// is reported, not provisioned.
fn match_users<M: MemberLike + Sync>(
    order: Vec<(Cow<'_, str>, usize)>,
    desired: &[Desired],
    members: &[M],
    index: &MemberIndex,
    ctx: &PlanContext<'_>,
    out: &mut Plan,
) -> Matching {
    let mut m = Matching {
        claimed: vec![false; members.len()],
        matched: Vec::with_capacity(order.len()),
        unmatched: Vec::new(),
    };
    // Pass 1: the Google id, which never changes.
    let mut rest = Vec::new();
    let found = par_map(&order, |(_, j)| {
        index
            .by_google
            .get(members, google_key, &desired[*j].google_id)
    });
    for ((key, j), found) in order.into_iter().zip(found) {
        match found {
            Some(i) => {
                m.claimed[i] = true;
                m.matched.push((i, j, false));
            }
            None => rest.push((key, j)),
        }
    }
    // Pass 2: the email, for members not claimed by their Google id. The name index is
    // only built when some user is left (never on a run where nothing changed).
    let by_name = if rest.is_empty() {
        Positions::default()
    } else {
        Positions::build(members, name_key)
    };
    // Every desired user's id, built only if a member found by email is linked to another id.
    let mut desired_ids: Option<HashSet<&str>> = None;
    for (key, j) in rest {
        let d = &desired[j];
        match by_name.get(members, name_key, &key) {
            Some(i) if !m.claimed[i] => {
                let member = &members[i];
                m.claimed[i] = true;
                let linked_elsewhere = match (member.google_id(), ctx.all_google_ids) {
                    (Some(old), _) if old == d.google_id => false,
                    (Some(old), Some(ids)) => {
                        ids.contains(old)
                            || desired_ids
                                .get_or_insert_with(|| {
                                    desired.iter().map(|d| d.google_id.as_str()).collect()
                                })
                                .contains(old)
                    }
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                if linked_elsewhere {
                    out.problems.push(format!(
                        "{} is held by member {} linked to another Google user ({}); not provisioned",
                        d.attrs.user_name,
                        member.id(),
                        member.google_id().unwrap_or("")
                    ));
                    continue;
                }
                m.matched.push((i, j, true));
            }
            // Held by a member that another Google user claimed by id: that user is being
            // renamed away from this address in the same plan, so create after updates.
            _ => m.unmatched.push(j),
        }
    }
    m
}

/// The updates, links and deactivations by update of the matched pairs that differ, each
/// taking its user out of `desired`; counts the pairs that agree or are hidden.
fn plan_updates<M: MemberLike>(
    matched: Vec<(usize, usize, bool)>,
    compared: Vec<Compared>,
    desired: &mut [Option<Desired>],
    members: &[M],
    out: &mut Plan,
) -> Vec<PlannedChange> {
    let mut updates = Vec::new();
    for ((i, j, by_email), compared) in matched.into_iter().zip(compared) {
        let changed = match compared {
            Compared::Hidden => {
                out.hidden += 1;
                continue;
            }
            Compared::Unchanged { active } => {
                out.active_after += usize::from(active);
                out.unchanged += 1;
                continue;
            }
            Compared::Changed(changed) => changed,
        };
        let Some(d) = desired.get_mut(j).and_then(Option::take) else {
            continue;
        };
        if d.attrs.active {
            out.active_after += 1;
        }
        updates.push(update_of(&members[i], d, by_email, changed));
    }
    updates
}

/// The change that makes a matched member `m` what `d` says, given the fields that differ:
/// a deactivation when it takes an active member to inactive, a link when it links the
/// member (a [`Change::Link`] when linking is all it does), else an update.
fn update_of<M: MemberLike>(m: &M, d: Desired, by_email: bool, changed: Changed) -> PlannedChange {
    let newly_linked = by_email && m.google_id().is_none();
    let goes_inactive = m.active() && !d.attrs.active;
    let action = if goes_inactive {
        Action::Deactivate
    } else if newly_linked || m.managed_by() != ManagedBy::Google {
        Action::Link
    } else {
        Action::Update
    };
    let only_link = changed.fields.iter().all(|f| *f == Field::GoogleId);
    let user_name = d.attrs.user_name.to_string();
    let change = if only_link && action == Action::Link {
        Change::Link {
            id: m.id(),
            google_id: d.google_id,
            expected_version: Some(m.version()),
        }
    } else {
        Change::Update {
            id: m.id(),
            expected_version: Some(m.version()),
            attrs: d.attrs,
        }
    };
    PlannedChange {
        action,
        user_name,
        member: Some(m.id()),
        fields: changed.fields,
        manages: changed.manages,
        change,
    }
}

/// The creates of the users no member is, already in user name order (`unmatched` keeps
/// the order of the sorted keys), each taking its user out of `desired`.
fn plan_creates(
    unmatched: Vec<usize>,
    desired: &mut [Option<Desired>],
    out: &mut Plan,
) -> Vec<PlannedChange> {
    let mut creates = Vec::with_capacity(unmatched.len());
    for j in unmatched {
        let Some(d) = desired.get_mut(j).and_then(Option::take) else {
            continue;
        };
        if d.attrs.active {
            out.active_after += 1;
        }
        creates.push(PlannedChange {
            action: Action::Create,
            user_name: d.attrs.user_name.to_string(),
            member: None,
            fields: Vec::new(),
            manages: false,
            change: Change::Create {
                attrs: d.attrs,
                managed_by: ManagedBy::Google,
            },
        });
    }
    creates
}

/// The deactivations of the active managed members no user claimed, except those whose
/// Google user the plan could not use this time (`dropped`, or unusable); counts the
/// members the directory does not own.
fn plan_deactivations<M: MemberLike>(
    members: &[M],
    claimed: &[bool],
    dropped: &HashSet<String>,
    ctx: &PlanContext<'_>,
    out: &mut Plan,
) -> Vec<PlannedChange> {
    let mut deactivations = Vec::new();
    for (m, _) in members.iter().zip(claimed).filter(|(_, &c)| !c) {
        let still_in_google = m.google_id().is_some_and(|e| {
            dropped.contains(e) || ctx.unusable_ids.is_some_and(|u| u.contains(e))
        });
        if still_in_google {
            // Google has this user but the plan could not use it this time: leave it be.
            continue;
        }
        if is_active_managed(m, ctx.domains) {
            deactivations.push(PlannedChange {
                action: Action::Deactivate,
                user_name: m.user_name().to_string(),
                member: Some(m.id()),
                fields: vec![Field::Active],
                manages: false,
                change: Change::Deactivate {
                    id: m.id(),
                    expected_version: Some(m.version()),
                },
            });
        } else if m.managed_by() == ManagedBy::Manual || !owned_by_pull(m, ctx.domains) {
            out.not_owned += 1;
        }
    }
    deactivations
}

#[cfg(test)]
#[allow(clippy::cloned_ref_to_slice_refs)] // `&[x.clone()]` reads as "these users"
mod tests;
