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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlannedChange {
    /// How it is counted.
    pub action: Action,
    /// The member's user name (after the change).
    pub user_name: String,
    /// The member, when it exists.
    pub member: Option<MemberId>,
    /// The fields that change.
    pub fields: Vec<String>,
    /// What `provision::apply` is given.
    pub change: Change,
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

/// The fields the pull writes that differ between a member and what it should be, by name
/// ([`Field::pulled`], [`Field::differs`]), and `managedBy` when the member is not Google's.
fn changed_fields<M: MemberLike + ?Sized>(m: &M, a: &DirectoryAttrs) -> Vec<String> {
    let mut f: Vec<String> = Field::ALL
        .into_iter()
        .filter(|f| f.pulled() && m.differs(*f, a))
        .map(|f| f.name().to_string())
        .collect();
    if m.managed_by() != ManagedBy::Google {
        f.push("managedBy".into());
    }
    f
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
    /// The fields that differ ([`changed_fields`]).
    Changed(Vec<String>),
}

/// A matched pair is always the pull's: the user is in the managed domains (the plan drops
/// the others first), and the member either has the user's name key (so the same domain) or
/// is linked to the user's Google id, which makes Google the source of truth for it whatever
/// its user name is now.
fn compare<M: MemberLike + ?Sized>(m: &M, d: &Desired) -> Compared {
    if m.scim_deleted() {
        return Compared::Hidden;
    }
    let fields = changed_fields(m, &d.attrs);
    if fields.is_empty() {
        Compared::Unchanged {
            active: d.attrs.active,
        }
    } else {
        Compared::Changed(fields)
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

/// Plans the changes that make `members` agree with `desired`.
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

    // Deterministic order, and one Google user per email: Google forbids duplicates, but a
    // listing taken while an address moves between users can show it twice. Keys borrow
    // the address when it is already lower case (this runs for every user).
    let mut keyed: Vec<(Cow<'_, str>, usize)> = desired
        .iter()
        .enumerate()
        .filter(|(_, d)| in_domains(ctx.domains, d.attrs.user_name.as_str()))
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
    drop(seen_ids);

    let mut claimed = vec![false; members.len()];
    let mut matched: Vec<(usize, usize, bool)> = Vec::with_capacity(order.len()); // (member, user, by email)
    let mut unmatched: Vec<usize> = Vec::new();
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
                claimed[i] = true;
                matched.push((i, j, false));
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
            Some(i) if !claimed[i] => {
                let m = &members[i];
                let linked_elsewhere = match (m.google_id(), ctx.all_google_ids) {
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
                        m.id(),
                        m.google_id().unwrap_or("")
                    ));
                    claimed[i] = true;
                    continue;
                }
                claimed[i] = true;
                matched.push((i, j, true));
            }
            // Held by a member that another Google user claimed by id: that user is being
            // renamed away from this address in the same plan, so create after updates.
            _ => unmatched.push(j),
        }
    }
    drop(by_name);
    drop(desired_ids);

    // Comparing every matched pair is most of a run in which little changed; by now Google
    // has been read, so both halves run at once. Only the comparison is parallel: the
    // planning below stays in order.
    let compared = compare_all(&matched, members, &desired);

    // From here a user that becomes a change is taken out of `desired`.
    let mut desired: Vec<Option<Desired>> = desired.into_iter().map(Some).collect();
    let mut updates = Vec::new();
    for ((i, j, by_email), compared) in matched.into_iter().zip(compared) {
        let fields = match compared {
            Compared::Hidden => {
                out.hidden += 1;
                continue;
            }
            Compared::Unchanged { active } => {
                out.active_after += usize::from(active);
                out.unchanged += 1;
                continue;
            }
            Compared::Changed(fields) => fields,
        };
        let Some(d) = desired.get_mut(j).and_then(Option::take) else {
            continue;
        };
        if d.attrs.active {
            out.active_after += 1;
        }
        let m = &members[i];
        let newly_linked = by_email && m.google_id().is_none();
        let goes_inactive = m.active() && !d.attrs.active;
        let action = if goes_inactive {
            Action::Deactivate
        } else if newly_linked || m.managed_by() != ManagedBy::Google {
            Action::Link
        } else {
            Action::Update
        };
        let only_link = fields.iter().all(|f| f == "googleId" || f == "managedBy");
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
        updates.push(PlannedChange {
            action,
            user_name,
            member: Some(m.id()),
            fields,
            change,
        });
    }

    // Already in user name order: `unmatched` keeps the order of the sorted keys.
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
            change: Change::Create {
                attrs: d.attrs,
                managed_by: ManagedBy::Google,
            },
        });
    }
    // The users that needed no change are freed here, in the run that planned them, not
    // on a thread of their own: `cargo bench --bench pull` prints what that costs.
    drop(desired);

    let mut deactivations = Vec::new();
    for (i, m) in members.iter().enumerate() {
        if claimed[i] {
            continue;
        }
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
                fields: vec!["active".into()],
                change: Change::Deactivate {
                    id: m.id(),
                    expected_version: Some(m.version()),
                },
            });
        } else if m.managed_by() == ManagedBy::Manual || !owned_by_pull(m, ctx.domains) {
            out.not_owned += 1;
        }
    }

    let key = |c: &PlannedChange| normalize_email(&c.user_name);
    updates.sort_by_cached_key(key);
    deactivations.sort_by_cached_key(key);
    out.changes = updates;
    out.changes.append(&mut creates);
    out.changes.append(&mut deactivations);
    out
}

#[cfg(test)]
#[allow(clippy::cloned_ref_to_slice_refs)] // `&[x.clone()]` reads as "these users"
mod tests {
    use super::*;
    use crate::directory::model::UserNameParts;
    use crate::member::Member;
    use crate::member::Role;
    use chrono::{TimeZone, Utc};

    #[test]
    fn the_two_thread_sort_and_map_give_what_one_thread_gives() {
        // Past PARALLEL_FROM, with many ties: ties keep their order by position.
        let n = 3 * PARALLEL_FROM + 17;
        let keys: Vec<(u32, usize)> = (0..n).map(|i| (((i * 7919) % 1000) as u32, i)).collect();
        let mut shuffled: Vec<(u32, usize)> = keys.iter().rev().copied().collect();
        shuffled.rotate_left(n / 3);
        let mut two = shuffled.clone();
        par_sort(&mut two, |a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut one = shuffled.clone();
        one.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        assert_eq!(two, one);
        assert_eq!(two.len(), n);
        let mapped = par_map(&shuffled, |&(k, i)| (i, k));
        assert_eq!(
            mapped,
            shuffled.iter().map(|&(k, i)| (i, k)).collect::<Vec<_>>()
        );
    }

    fn google(id: &str, email: &str, given: &str) -> GoogleUser {
        GoogleUser {
            id: id.into(),
            primary_email: email.into(),
            name: Some(UserNameParts {
                given_name: Some(given.into()),
                family_name: Some("Test".into()),
                full_name: Some(format!("{given} Test")),
            }),
            suspended: Some(false),
            archived: Some(false),
            org_unit_path: Some("/".into()),
            is_admin: None,
            is_guest_user: None,
            emails: None,
            aliases: None,
        }
    }

    fn desired(users: &[GoogleUser]) -> Vec<Desired> {
        users
            .iter()
            .map(|u| Desired::from_google(u, &[]).unwrap())
            .collect()
    }

    /// The member a Google user becomes when the pull creates it.
    fn member_of(u: &GoogleUser) -> Member {
        let a = Desired::from_google(u, &[]).unwrap().attrs;
        let t = Utc.timestamp_opt(1_790_000_000, 0).unwrap();
        Member {
            id: MemberId::new_random(),
            dir: a,
            locations: vec!["Paris".into()],
            role: Role::Member,
            managed_by: ManagedBy::Google,
            scim_deleted: false,
            created: t,
            last_modified: t,
            version: 3,
            prior_external_id: None,
        }
    }

    fn run(users: &[GoogleUser], members: &[Member]) -> Plan {
        plan(desired(users), members, &PlanContext::default())
    }

    fn actions(p: &Plan) -> Vec<(Action, &str)> {
        p.changes
            .iter()
            .map(|c| (c.action, c.user_name.as_str()))
            .collect()
    }

    #[test]
    fn new_users_are_created_and_agreeing_members_are_left_alone() {
        let ada = google("1", "ada@example.com", "Ada");
        let bob = google("2", "bob@example.com", "Bob");
        let p = run(&[bob.clone(), ada.clone()], &[member_of(&ada)]);
        assert_eq!(actions(&p), [(Action::Create, "bob@example.com")]);
        assert_eq!(p.unchanged, 1);
        assert!(matches!(
            &p.changes[0].change,
            Change::Create { managed_by: ManagedBy::Google, attrs } if attrs.google_id.as_deref() == Some("2")
        ));
        // Applying the plan's result again plans nothing: no rewrite on every run.
        let p = run(
            &[bob.clone(), ada.clone()],
            &[member_of(&ada), member_of(&bob)],
        );
        assert!(p.changes.is_empty());
        assert_eq!(p.unchanged, 2);
    }

    #[test]
    fn a_rename_is_an_update_matched_by_google_id() {
        let ada = google("1", "ada@example.com", "Ada");
        let m = member_of(&ada);
        let renamed = google("1", "ada.king@example.com", "Ada");
        let p = run(&[renamed], &[m.clone()]);
        assert_eq!(actions(&p), [(Action::Update, "ada.king@example.com")]);
        assert_eq!(p.changes[0].member, Some(m.id));
        assert!(p.changes[0].fields.contains(&"userName".to_string()));
        assert!(matches!(
            p.changes[0].change,
            Change::Update {
                expected_version: Some(3),
                ..
            }
        ));
    }

    #[test]
    fn a_name_change_and_a_case_change_are_updates() {
        let ada = google("1", "ada@example.com", "Ada");
        let p = run(
            &[google("1", "ada@example.com", "Augusta")],
            &[member_of(&ada)],
        );
        assert_eq!(p.changes[0].fields, ["givenName", "displayName"]);
        let p = run(&[google("1", "Ada@Example.com", "Ada")], &[member_of(&ada)]);
        assert_eq!(p.changes[0].action, Action::Update);
        assert!(p.changes[0].fields.contains(&"userName".to_string()));
    }

    #[test]
    fn suspended_or_archived_goes_inactive_as_a_deactivation_and_comes_back_as_an_update() {
        let ada = google("1", "ada@example.com", "Ada");
        let m = member_of(&ada);
        let mut suspended = ada.clone();
        suspended.suspended = Some(true);
        let p = run(&[suspended], &[m.clone()]);
        assert_eq!(actions(&p), [(Action::Deactivate, "ada@example.com")]);
        assert!(matches!(&p.changes[0].change, Change::Update { attrs, .. } if !attrs.active));
        let mut archived = ada.clone();
        archived.archived = Some(true);
        assert_eq!(
            run(&[archived.clone()], &[m.clone()]).changes[0].action,
            Action::Deactivate
        );
        let inactive = member_of(&archived);
        let p = run(&[ada], &[inactive]);
        assert_eq!(actions(&p), [(Action::Update, "ada@example.com")]);
        assert_eq!(p.changes[0].fields, ["active"]);
    }

    #[test]
    fn a_member_gone_from_google_or_scope_is_deactivated_never_deleted() {
        let ada = google("1", "ada@example.com", "Ada");
        let bob = google("2", "bob@example.com", "Bob");
        let p = run(&[ada.clone()], &[member_of(&ada), member_of(&bob)]);
        assert_eq!(actions(&p), [(Action::Deactivate, "bob@example.com")]);
        assert!(matches!(
            p.changes[0].change,
            Change::Deactivate {
                expected_version: Some(3),
                ..
            }
        ));
        assert_eq!(p.active_now, 2);
        assert_eq!(p.active_after, 1);
        // Already inactive: nothing to do.
        let mut gone = member_of(&bob);
        gone.dir.active = false;
        assert!(run(
            &[ada],
            &[member_of(&google("1", "ada@example.com", "Ada")), gone]
        )
        .changes
        .is_empty());
    }

    #[test]
    fn an_unlinked_or_manual_member_with_the_email_is_linked() {
        let ada = google("1", "Ada@example.com", "Ada");
        let mut manual = member_of(&ada);
        manual.dir.google_id = None;
        manual.managed_by = ManagedBy::Manual;
        let p = run(&[ada.clone()], &[manual.clone()]);
        assert_eq!(actions(&p), [(Action::Link, "Ada@example.com")]);
        assert!(matches!(&p.changes[0].change, Change::Link { google_id, .. } if google_id == "1"));
        // Linked and different: one Update counted as a link.
        manual.dir.given_name = Some("Old".into());
        let p = run(&[ada], &[manual]);
        assert_eq!(p.changes[0].action, Action::Link);
        assert!(matches!(p.changes[0].change, Change::Update { .. }));
    }

    #[test]
    fn manual_and_foreign_domain_members_are_never_touched() {
        let mut manual = member_of(&google("9", "guest@example.com", "Guest"));
        manual.managed_by = ManagedBy::Manual;
        manual.dir.google_id = None;
        // Outside the domains and not linked to a Google user: not the pull's.
        let mut foreign = member_of(&google("8", "partner@other.org", "Partner"));
        foreign.dir.google_id = None;
        let domains = vec!["example.com".to_string()];
        let p = plan(
            desired(&[google("8", "partner@other.org", "Renamed")]),
            &[manual, foreign],
            &PlanContext {
                domains: &domains,
                all_google_ids: None,
                unusable_ids: None,
                index: None,
            },
        );
        assert!(p.changes.is_empty(), "{:?}", p.changes);
        assert_eq!(p.not_owned, 2);
    }

    #[test]
    fn a_linked_member_is_judged_by_its_link_whatever_its_user_name() {
        let domains = vec!["example.com".to_string()];
        let ctx = PlanContext {
            domains: &domains,
            all_google_ids: None,
            unusable_ids: None,
            index: None,
        };
        let ada = google("1", "ada@example.com", "Ada");
        // Renamed into a foreign domain, and into a look-alike of the managed one (a
        // fullwidth `ｅ`, the same domain once folded).
        for name in ["mallory@evil.test", "ada.lamarr@\u{ff45}xample.com"] {
            let mut m = member_of(&ada);
            m.dir.user_name = UserName::parse(name).unwrap();
            // Google has the user, active: its address comes back.
            let p = plan(desired(&[ada.clone()]), &[m.clone()], &ctx);
            assert_eq!(
                actions(&p),
                vec![(Action::Update, "ada@example.com")],
                "{name}"
            );
            // Google suspended it: the member goes inactive.
            let mut suspended = ada.clone();
            suspended.suspended = Some(true);
            let p = plan(desired(&[suspended]), &[m.clone()], &ctx);
            assert_eq!(
                actions(&p),
                vec![(Action::Deactivate, "ada@example.com")],
                "{name}"
            );
            // Google no longer lists it: a deactivation to verify.
            let p = plan(Vec::new(), &[m], &ctx);
            assert_eq!(actions(&p), vec![(Action::Deactivate, name)], "{name}");
            assert_eq!(p.active_now, 1);
        }
        // The domain check folds as user names do.
        assert!(in_domains(&domains, "ada@\u{ff45}xample.com"));
        assert!(in_domains(&domains, "ada@EXAMPLE.COM"));
        assert!(!in_domains(&domains, "ada@example.org"));
    }

    #[test]
    fn a_scim_deleted_member_stays_hidden_and_is_not_recreated() {
        let ada = google("1", "ada@example.com", "Ada");
        let mut m = member_of(&ada);
        m.scim_deleted = true;
        m.dir.active = false;
        let p = run(&[google("1", "ada@example.com", "Changed")], &[m]);
        assert!(p.changes.is_empty());
        assert_eq!(p.hidden, 1);
    }

    #[test]
    fn a_user_deleted_and_recreated_with_the_same_email_keeps_the_member_relinked() {
        let old = google("1", "ada@example.com", "Ada");
        let m = member_of(&old);
        let new = google("5", "ada@example.com", "Ada");
        let ids: HashSet<String> = ["5".to_string()].into();
        let p = plan(
            desired(&[new]),
            &[m.clone()],
            &PlanContext {
                domains: &[],
                all_google_ids: Some(&ids),
                unusable_ids: None,
                index: None,
            },
        );
        assert_eq!(actions(&p), [(Action::Update, "ada@example.com")]);
        assert_eq!(
            p.changes[0].member,
            Some(m.id),
            "same member, locations kept"
        );
        assert_eq!(p.changes[0].fields, ["googleId"]);
        // If the old id is still a Google user (it moved away), the address is not stolen.
        let ids: HashSet<String> = ["1".to_string(), "5".to_string()].into();
        let p = plan(
            desired(&[google("5", "ada@example.com", "Ada")]),
            &[m],
            &PlanContext {
                domains: &[],
                all_google_ids: Some(&ids),
                unusable_ids: None,
                index: None,
            },
        );
        assert!(p.changes.is_empty());
        assert_eq!(p.problems.len(), 1);
        // The desired users' own ids count as listed without being in the set: the old
        // user moved out of the managed domains, so it is listed but not planned.
        let domains = ["example.com".to_string()];
        let none: HashSet<String> = HashSet::new();
        let p = plan(
            desired(&[
                google("1", "ada@other.org", "Ada"),
                google("5", "ada@example.com", "Ada"),
            ]),
            &[member_of(&old)],
            &PlanContext {
                domains: &domains,
                all_google_ids: Some(&none),
                unusable_ids: None,
                index: None,
            },
        );
        assert!(p.changes.is_empty(), "{:?}", actions(&p));
        assert_eq!(p.problems.len(), 1, "{:?}", p.problems);
    }

    #[test]
    fn an_address_moving_between_users_renames_first_then_creates() {
        let old = google("1", "ada@example.com", "Ada");
        let m = member_of(&old);
        // User 1 renamed away, a new user 2 takes the address.
        let p = run(
            &[
                google("1", "ada.old@example.com", "Ada"),
                google("2", "ada@example.com", "Ada"),
            ],
            &[m.clone()],
        );
        assert_eq!(
            actions(&p),
            [
                (Action::Update, "ada.old@example.com"),
                (Action::Create, "ada@example.com")
            ]
        );
    }

    #[test]
    fn duplicate_emails_from_google_are_reported_not_both_provisioned() {
        let p = run(
            &[
                google("2", "Ada@example.com", "Ada"),
                google("1", "ada@example.com", "Ada"),
            ],
            &[],
        );
        assert_eq!(p.changes.len(), 1);
        assert!(
            matches!(&p.changes[0].change, Change::Create { attrs, .. } if attrs.google_id.as_deref() == Some("1"))
        );
        assert_eq!(p.problems.len(), 1);
    }

    #[test]
    fn a_member_whose_google_user_is_unusable_or_duplicated_is_not_deactivated() {
        let ada = google("1", "ada@example.com", "Ada");
        let m = member_of(&ada);
        // Google still lists user 1, but with an email the plan cannot use.
        let unusable: HashSet<String> = ["1".to_string()].into();
        let p = plan(
            Vec::new(),
            std::slice::from_ref(&m),
            &PlanContext {
                domains: &[],
                all_google_ids: None,
                unusable_ids: Some(&unusable),
                index: None,
            },
        );
        assert!(p.changes.is_empty(), "{:?}", p.changes);
        // User 2 is a duplicate of an address another user holds: its member stays.
        let mut bob = member_of(&google("2", "bob@example.com", "Bob"));
        bob.dir.user_name = UserName::parse("bob.old@example.com").unwrap();
        let p = run(
            &[
                google("1", "ada@example.com", "Ada"),
                google("2", "ada@example.com", "Ada"),
            ],
            &[m, bob],
        );
        assert!(
            p.changes.iter().all(|c| c.action != Action::Deactivate),
            "{:?}",
            p.changes
        );
        assert_eq!(p.problems.len(), 1);
    }

    #[test]
    fn aliases_become_secondary_emails() {
        let mut u = google("1", "ada@example.com", "Ada");
        u.emails = Some(
            serde_json::from_value(serde_json::json!([
                {"address": "ada@example.com", "primary": true},
                {"address": "a@example.com"},
                {"address": "ada@gmail.com", "type": "home"},
                {"address": "ada@example.com.test-google-a.com"},
                {"address": "ada.w@example.com", "type": "work"}
            ]))
            .unwrap(),
        );
        u.aliases = Some(
            serde_json::from_value(serde_json::json!(["a@example.com", "ada@example.org"]))
                .unwrap(),
        );
        let values = |d: &Desired| -> Vec<String> {
            d.attrs.emails.iter().map(|e| e.value.clone()).collect()
        };
        let d = Desired::from_google(&u, &["example.com".into()]).unwrap();
        assert_eq!(
            values(&d),
            ["ada@example.com", "a@example.com", "ada.w@example.com"]
        );
        assert!(d.attrs.emails[0].primary);
        assert!(!d.attrs.emails[1].primary);
        let d = Desired::from_google(&u, &[]).unwrap();
        assert_eq!(
            values(&d),
            [
                "ada@example.com",
                "a@example.com",
                "ada@example.org",
                "ada.w@example.com"
            ]
        );
        assert!(Desired::from_google(&google("3", "not-an-email", "X"), &[]).is_err());
    }

    #[test]
    fn a_desired_user_taken_by_value_is_the_same_and_its_error_names_the_id() {
        let mut u = google("1", "Ada@example.com", " Ada ");
        u.name.as_mut().unwrap().family_name = Some("  ".into());
        u.aliases = Some(crate::directory::model::Emails::addresses(&[
            "ada@example.com",
            " a@example.com ",
            "A@example.com",
        ]));
        u.archived = Some(true);
        let d = Desired::from_google_owned(u.clone(), &[]).unwrap();
        assert_eq!(d, Desired::from_google(&u, &[]).unwrap());
        assert_eq!(d.attrs.given_name.as_deref(), Some("Ada"));
        assert_eq!(d.attrs.family_name, None);
        assert!(!d.attrs.active);
        assert_eq!(d.attrs.google_id.as_deref(), Some("1"));
        let others: Vec<&str> = d.attrs.emails[1..]
            .iter()
            .map(|e| e.value.as_str())
            .collect();
        assert_eq!(others, ["a@example.com"], "once, trimmed, not the primary");
        let (id, msg) = Desired::from_google_owned(google("9", "nope", "X"), &[]).unwrap_err();
        assert_eq!(id, "9");
        assert!(msg.contains("Google user 9"), "{msg}");
    }

    #[test]
    fn a_name_part_of_only_a_zero_width_space_reads_as_empty() {
        // Google stores a mononym with a zero-width space as the missing part.
        let mut u = google("1", "cher@example.com", "Cher");
        let name = u.name.as_mut().unwrap();
        name.family_name = Some("\u{200B}".into());
        name.full_name = Some("Cher \u{200B}".into());
        let d = Desired::from_google(&u, &[]).unwrap();
        assert_eq!(d.attrs.family_name, None);
        assert_eq!(d.attrs.display_name.as_deref(), Some("Cher"));
        assert_eq!(d.attrs.given_name.as_deref(), Some("Cher"));
        // Inside a name, a zero-width character is the name's own business: kept.
        u.name.as_mut().unwrap().given_name = Some("Ch\u{200B}er".into());
        let d = Desired::from_google(&u, &[]).unwrap();
        assert_eq!(d.attrs.given_name.as_deref(), Some("Ch\u{200B}er"));
    }

    #[test]
    fn the_order_is_deterministic() {
        let users: Vec<GoogleUser> = (0..50)
            .rev()
            .map(|i| google(&i.to_string(), &format!("u{i:02}@example.com"), "U"))
            .collect();
        let a = run(&users, &[]);
        let mut shuffled = users.clone();
        shuffled.rotate_left(17);
        let b = run(&shuffled, &[]);
        assert_eq!(actions(&a), actions(&b));
        assert_eq!(a.changes[0].user_name, "u00@example.com");
    }

    /// The one entry point takes the index a run built while Google was read, or builds it.
    #[test]
    fn an_index_built_beforehand_gives_the_same_plan() {
        let ada = google("1", "ada@example.com", "Ada");
        let members = [
            member_of(&ada),
            member_of(&google("3", "cy@example.com", "Cy")),
        ];
        let now = [
            google("1", "ada.king@example.com", "Ada"),
            google("2", "bob@example.com", "Bob"),
        ];
        let index = MemberIndex::new(&members, &[]);
        let ctx = PlanContext {
            index: Some(&index),
            ..Default::default()
        };
        let given = plan(desired(&now), &members, &ctx);
        assert_eq!(given, run(&now, &members));
        assert_eq!(
            actions(&given),
            [
                (Action::Update, "ada.king@example.com"),
                (Action::Create, "bob@example.com"),
                (Action::Deactivate, "cy@example.com"),
            ]
        );
        assert_eq!(given.active_now, 2);
    }

    #[test]
    fn a_large_directory_is_compared_on_two_threads_with_the_same_plan() {
        // Over PARALLEL_FROM users, so the comparison is split in two halves.
        let n = PARALLEL_FROM + 2_001;
        let users: Vec<GoogleUser> = (0..n)
            .map(|k| google(&format!("g{k:06}"), &format!("u{k:06}@example.com"), "Ada"))
            .collect();
        let members: Vec<Member> = users.iter().map(member_of).collect();
        let mut now = users.clone();
        // One change near each end of the listing (one in each half), one suspension, one
        // new hire, and one user gone.
        now[3].name.as_mut().unwrap().given_name = Some("Grace".into());
        now[n - 5].name.as_mut().unwrap().given_name = Some("Edsger".into());
        now[n / 2].suspended = Some(true);
        now.remove(n - 1);
        now.push(google("g999999", "zz-new@example.com", "Barbara"));
        let p = run(&now, &members);
        assert_eq!(
            actions(&p),
            [
                (Action::Update, "u000003@example.com"),
                (
                    Action::Deactivate,
                    format!("u{:06}@example.com", n / 2).as_str()
                ),
                (
                    Action::Update,
                    format!("u{:06}@example.com", n - 5).as_str()
                ),
                (Action::Create, "zz-new@example.com"),
                (
                    Action::Deactivate,
                    format!("u{:06}@example.com", n - 1).as_str()
                ),
            ]
        );
        assert_eq!(p.unchanged, n - 4);
        assert_eq!(p.changes[0].fields, ["givenName"]);
    }
}
