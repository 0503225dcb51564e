//! An in-memory [`Directory`]: users, groups (nested ones too), suspended and deleted
//! users, paging with a page size, and errors injected on a call. It serves the pull's
//! unit tests (and any test or benchmark with the `test-support` feature), so a rule of the
//! pull can be driven without HTTP; the HTTP details (retries, gzip, Google's error bodies)
//! are `crates/fake-google`'s to test.
//!
//! What it answers, call by call:
//! - users.list: every user not deleted (suspended and archived users too, as Google), in
//!   the order they were added, `users_page_size` a page; a `Domain` target only the users
//!   whose primary address is in that domain. A `query` is not evaluated: it is answered
//!   with a 400, so a test of `[scope].query` belongs with the fake Google.
//!   A user marked [`MemoryDirectory::lag`] is left out, as while Google's index lags.
//! - users.get: a user by id or primary address (any case); `None` for one removed or
//!   deleted; [`DirectoryError::NotInCustomer`] for a key marked [`MemoryDirectory::forbid`].
//! - members.list: a group's direct members, `members_page_size` a page; a member that is
//!   itself a group here is listed as a `GROUP`, any other as a `USER` (with its id when the
//!   user is known); an unknown group, or one marked [`MemoryDirectory::unreadable`], is
//!   [`DirectoryError::GroupNotFound`].
//! - members.hasMember: membership through nested groups; `None` for a group marked
//!   [`MemoryDirectory::cannot_tell`].
//! - the deleted users: the ids of the users [`MemoryDirectory::delete_user`] deleted.
//!
//! Each call counts one request (the deleted users one a page), as [`Directory::requests`]
//! reports; [`MemoryDirectory::calls`] counts them by call.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::client::{RawUsersPage, UserListTarget};
use super::model::{GoogleUser, GroupMember, MembersPage, UsersPage};
use super::{Directory, DirectoryError};

/// A call of the Directory API, to count it or to make it fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Call {
    /// users.list (the listing and the narrowed search).
    UsersList,
    /// users.get.
    UsersGet,
    /// members.list.
    MembersList,
    /// members.hasMember.
    HasMember,
    /// users.list with `showDeleted=true`.
    DeletedUsers,
}

impl Call {
    fn endpoint(self) -> &'static str {
        match self {
            Call::UsersList | Call::DeletedUsers => "users.list",
            Call::UsersGet => "users.get",
            Call::MembersList => "members.list",
            Call::HasMember => "members.hasMember",
        }
    }
}

type MakeError = Box<dyn Fn() -> DirectoryError + Send + Sync>;

/// An error injected on a call: every call of that kind from the `from`-th on (0-based).
struct Failure {
    call: Call,
    from: usize,
    error: MakeError,
}

#[derive(Default)]
struct State {
    users: Vec<GoogleUser>,
    deleted: Vec<GoogleUser>,
    forbidden: HashSet<String>,
    /// Ids users.list leaves out (Google's search index lags) though users.get finds them.
    lagging: HashSet<String>,
    /// Lower-case group address -> its direct members' addresses.
    groups: BTreeMap<String, Vec<String>>,
    cannot_tell: HashSet<String>,
    unreadable: HashSet<String>,
    failures: Vec<Failure>,
    calls: HashMap<Call, usize>,
}

/// An in-memory Google directory (see the module's documentation). Every method takes
/// `&self`, so a test can change the directory between two runs that share it.
pub struct MemoryDirectory {
    state: Mutex<State>,
    requests: AtomicU64,
    users_page_size: usize,
    members_page_size: usize,
}

impl Default for MemoryDirectory {
    fn default() -> Self {
        MemoryDirectory::new()
    }
}

impl std::fmt::Debug for MemoryDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("MemoryDirectory")
            .field("users", &s.users.len())
            .field("deleted", &s.deleted.len())
            .field("groups", &s.groups.len())
            .finish_non_exhaustive()
    }
}

/// An active user with this id and primary address (no name, no org unit).
pub fn user(id: &str, primary_email: &str) -> GoogleUser {
    GoogleUser {
        id: id.to_string(),
        primary_email: primary_email.to_string(),
        name: None,
        suspended: Some(false),
        archived: None,
        org_unit_path: Some("/".into()),
        is_admin: None,
        is_guest_user: None,
        emails: None,
        aliases: None,
    }
}

fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

impl MemoryDirectory {
    /// An empty directory, with Google's largest pages (500 users, 200 members).
    pub fn new() -> MemoryDirectory {
        MemoryDirectory {
            state: Mutex::new(State::default()),
            requests: AtomicU64::new(0),
            users_page_size: super::client::USERS_PAGE_SIZE as usize,
            members_page_size: super::client::MEMBERS_PAGE_SIZE as usize,
        }
    }

    /// Serves pages of at most `users` users and `members` members.
    pub fn with_page_sizes(mut self, users: usize, members: usize) -> MemoryDirectory {
        self.users_page_size = users.max(1);
        self.members_page_size = members.max(1);
        self
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a user (after the others in the listing), or replaces the one with its id.
    pub fn put_user(&self, user: GoogleUser) {
        let mut s = self.lock();
        s.deleted.retain(|u| u.id != user.id);
        match s.users.iter_mut().find(|u| u.id == user.id) {
            Some(u) => *u = user,
            None => s.users.push(user),
        }
    }

    /// The user with this id or primary address, if it is there (not deleted).
    pub fn get(&self, key: &str) -> Option<GoogleUser> {
        let s = self.lock();
        s.users
            .iter()
            .find(|u| u.id == key || same(&u.primary_email, key))
            .cloned()
    }

    /// Changes the user with this id or primary address; false when there is none.
    pub fn update_user(&self, key: &str, f: impl FnOnce(&mut GoogleUser)) -> bool {
        let mut s = self.lock();
        match s
            .users
            .iter_mut()
            .find(|u| u.id == key || same(&u.primary_email, key))
        {
            Some(u) => {
                f(u);
                true
            }
            None => false,
        }
    }

    /// Suspends (or reactivates) a user; false when there is none.
    pub fn suspend_user(&self, key: &str, suspended: bool) -> bool {
        self.update_user(key, |u| u.suspended = Some(suspended))
    }

    /// Removes a user for good: users.get answers 404 (`None`), and it is not among the
    /// deleted users. Returns it.
    pub fn remove_user(&self, key: &str) -> Option<GoogleUser> {
        let mut s = self.lock();
        let i = s
            .users
            .iter()
            .position(|u| u.id == key || same(&u.primary_email, key))?;
        Some(s.users.remove(i))
    }

    /// Deletes a user as an admin does: it leaves the listing, users.get answers 412
    /// `conditionNotMet` (`None`), and the deleted users list its id. False when there is
    /// none.
    pub fn delete_user(&self, key: &str) -> bool {
        match self.remove_user(key) {
            Some(u) => {
                self.lock().deleted.push(u);
                true
            }
            None => false,
        }
    }

    /// Undeletes a user deleted with [`MemoryDirectory::delete_user`]: back at the end of
    /// the listing. False when there is none.
    pub fn undelete_user(&self, id: &str) -> bool {
        let mut s = self.lock();
        let Some(i) = s.deleted.iter().position(|u| u.id == id) else {
            return false;
        };
        let u = s.deleted.remove(i);
        s.users.push(u);
        true
    }

    /// Leaves a user (by id) out of users.list, as Google's search index does while it lags,
    /// while users.get still finds it; `false` lists it again.
    pub fn lag(&self, id: &str, lagging: bool) {
        let mut s = self.lock();
        if lagging {
            s.lagging.insert(id.to_string());
        } else {
            s.lagging.remove(id);
        }
    }

    /// users.get of this key answers 403 (a key outside the customer):
    /// [`DirectoryError::NotInCustomer`].
    pub fn forbid(&self, key: &str) {
        self.lock().forbidden.insert(key.to_string());
    }

    /// Sets a group's direct members (user or group addresses), creating the group.
    pub fn set_group(&self, group: &str, members: &[&str]) {
        self.lock().groups.insert(
            group.to_lowercase(),
            members.iter().map(|m| m.to_string()).collect(),
        );
    }

    /// Adds a direct member (a user's or a group's address) to a group, creating the group.
    pub fn add_member(&self, group: &str, member: &str) {
        self.lock()
            .groups
            .entry(group.to_lowercase())
            .or_default()
            .push(member.to_string());
    }

    /// Removes a direct member from a group.
    pub fn remove_member(&self, group: &str, member: &str) {
        if let Some(m) = self.lock().groups.get_mut(&group.to_lowercase()) {
            m.retain(|a| !same(a, member));
        }
    }

    /// members.hasMember of this group answers 400 (Google cannot tell: a membership nested
    /// across domains), `None`.
    pub fn cannot_tell(&self, group: &str) {
        self.lock().cannot_tell.insert(group.to_lowercase());
    }

    /// members.list of this group answers 404 ([`DirectoryError::GroupNotFound`]), as for a
    /// group outside the customer nested in a scope group; members.hasMember still sees
    /// through it.
    pub fn unreadable(&self, group: &str) {
        self.lock().unreadable.insert(group.to_lowercase());
    }

    /// Makes every `call` from the `from`-th (0-based, counted from the directory's start)
    /// fail with Google's "still failing after its retries" ([`DirectoryError::GaveUp`]).
    pub fn fail(&self, call: Call, from: usize) {
        self.fail_with(call, from, move || DirectoryError::GaveUp {
            endpoint: call.endpoint(),
            attempts: 7,
            last: "HTTP 503 (injected by the in-memory directory)".into(),
        });
    }

    /// Makes every `call` from the `from`-th (0-based) fail with the error `make` builds.
    pub fn fail_with(
        &self,
        call: Call,
        from: usize,
        make: impl Fn() -> DirectoryError + Send + Sync + 'static,
    ) {
        self.lock().failures.push(Failure {
            call,
            from,
            error: Box::new(make),
        });
    }

    /// Removes every injected failure.
    pub fn heal(&self) {
        self.lock().failures.clear();
    }

    /// How many times `call` was made (failed ones included).
    pub fn calls(&self, call: Call) -> usize {
        self.lock().calls.get(&call).copied().unwrap_or(0)
    }

    /// Counts a call and a request; fails it when a failure was injected on it.
    fn enter(&self, call: Call) -> Result<MutexGuard<'_, State>, DirectoryError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut s = self.lock();
        let n = s.calls.entry(call).or_default();
        let nth = *n;
        *n += 1;
        if let Some(f) = s.failures.iter().find(|f| f.call == call && nth >= f.from) {
            return Err((f.error)());
        }
        Ok(s)
    }
}

/// A page of `items` from the offset in `token`, and the next token.
fn page<T: Clone>(
    items: &[T],
    size: usize,
    token: Option<&str>,
    endpoint: &'static str,
) -> Result<(Vec<T>, Option<String>), DirectoryError> {
    let start = match token {
        None => 0,
        Some(t) => t.parse::<usize>().map_err(|_| DirectoryError::Api {
            endpoint,
            status: 400,
            reason: "invalid".into(),
            message: format!("Invalid page token {t:?}"),
        })?,
    };
    let end = (start + size).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    Ok((items.get(start..end).unwrap_or_default().to_vec(), next))
}

fn is_member(s: &State, group: &str, key: &str, seen: &mut HashSet<String>) -> bool {
    if !seen.insert(group.to_lowercase()) {
        return false;
    }
    let Some(members) = s.groups.get(&group.to_lowercase()) else {
        return false;
    };
    let user = s
        .users
        .iter()
        .find(|u| u.id == key || same(&u.primary_email, key));
    members.iter().any(|m| {
        same(m, key)
            || user.is_some_and(|u| same(m, &u.primary_email))
            || (s.groups.contains_key(&m.to_lowercase()) && is_member(s, m, key, seen))
    })
}

impl Directory for MemoryDirectory {
    fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    async fn list_users_page_raw(
        &self,
        target: &UserListTarget,
        query: Option<&str>,
        page_token: Option<&str>,
    ) -> Result<RawUsersPage, DirectoryError> {
        let s = self.enter(Call::UsersList)?;
        if let Some(q) = query {
            return Err(DirectoryError::Api {
                endpoint: "users.list",
                status: 400,
                reason: "invalid".into(),
                message: format!("the in-memory directory does not evaluate queries ({q:?})"),
            });
        }
        let listed: Vec<GoogleUser> = s
            .users
            .iter()
            .filter(|u| !s.lagging.contains(&u.id))
            .filter(|u| match target {
                UserListTarget::Customer(_) => true,
                UserListTarget::Domain(d) => u
                    .primary_email
                    .rsplit_once('@')
                    .is_some_and(|(_, dom)| same(dom, d)),
            })
            .cloned()
            .collect();
        let (users, next_page_token) =
            page(&listed, self.users_page_size, page_token, "users.list")?;
        Ok(RawUsersPage::decoded(UsersPage {
            users,
            next_page_token,
        }))
    }

    async fn get_user(&self, user_key: &str) -> Result<Option<GoogleUser>, DirectoryError> {
        let s = self.enter(Call::UsersGet)?;
        if s.forbidden.contains(user_key) {
            return Err(DirectoryError::NotInCustomer {
                key: user_key.to_string(),
                endpoint: "users.get",
            });
        }
        Ok(s.users
            .iter()
            .find(|u| u.id == user_key || same(&u.primary_email, user_key))
            .cloned())
    }

    async fn has_member(
        &self,
        group: &str,
        member_key: &str,
    ) -> Result<Option<bool>, DirectoryError> {
        let s = self.enter(Call::HasMember)?;
        if s.cannot_tell.contains(&group.to_lowercase()) {
            return Ok(None);
        }
        if !s.groups.contains_key(&group.to_lowercase()) {
            return Err(DirectoryError::Api {
                endpoint: "members.hasMember",
                status: 404,
                reason: "notFound".into(),
                message: "Resource Not Found: groupKey".into(),
            });
        }
        Ok(Some(is_member(&s, group, member_key, &mut HashSet::new())))
    }

    async fn list_members_page(
        &self,
        group: &str,
        page_token: Option<&str>,
    ) -> Result<MembersPage, DirectoryError> {
        let s = self.enter(Call::MembersList)?;
        let readable = !s.unreadable.contains(&group.to_lowercase());
        let Some(members) = s.groups.get(&group.to_lowercase()).filter(|_| readable) else {
            return Err(DirectoryError::GroupNotFound {
                group: group.to_string(),
                status: 404,
            });
        };
        let (members, next_page_token) =
            page(members, self.members_page_size, page_token, "members.list")?;
        let members = members
            .into_iter()
            .map(|m| {
                let is_group = s.groups.contains_key(&m.to_lowercase());
                let id = if is_group {
                    Some(format!("group:{}", m.to_lowercase()))
                } else {
                    s.users
                        .iter()
                        .find(|u| same(&u.primary_email, &m))
                        .map(|u| u.id.clone())
                };
                GroupMember {
                    id,
                    email: Some(m),
                    kind: Some(if is_group { "GROUP" } else { "USER" }.into()),
                    status: Some("ACTIVE".into()),
                }
            })
            .collect();
        Ok(MembersPage {
            members,
            next_page_token,
        })
    }

    async fn deleted_user_ids(&self, _customer: &str) -> Result<HashSet<String>, DirectoryError> {
        let s = self.enter(Call::DeletedUsers)?;
        // One request a page, as the client reads them.
        let pages = s.deleted.len().div_ceil(self.users_page_size).max(1);
        self.requests.fetch_add(pages as u64 - 1, Ordering::Relaxed);
        Ok(s.deleted.iter().map(|u| u.id.clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer() -> UserListTarget {
        UserListTarget::Customer("my_customer".into())
    }

    #[tokio::test]
    async fn it_pages_users_and_members_and_counts_each_request() {
        let d = MemoryDirectory::new().with_page_sizes(2, 2);
        for i in 0..5 {
            d.put_user(user(&format!("id{i}"), &format!("u{i}@example.com")));
        }
        d.set_group("all@example.com", &["u0@example.com", "team@example.com"]);
        d.set_group(
            "team@example.com",
            &["u1@example.com", "u2@example.com", "u3@example.com"],
        );
        let mut token = None;
        let mut seen = Vec::new();
        loop {
            let p = d
                .list_users_page(&customer(), None, token.as_deref())
                .await
                .unwrap();
            seen.extend(p.users.into_iter().map(|u| u.id));
            match p.next_page_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(seen, ["id0", "id1", "id2", "id3", "id4"]);
        assert_eq!(d.calls(Call::UsersList), 3);
        let p = d.list_members_page("team@example.com", None).await.unwrap();
        assert_eq!(p.members.len(), 2);
        assert_eq!(p.next_page_token.as_deref(), Some("2"));
        let p = d.list_members_page("all@example.com", None).await.unwrap();
        assert_eq!(p.members[1].kind.as_deref(), Some("GROUP"));
        assert_eq!(p.members[0].id.as_deref(), Some("id0"));
        // Nested membership, by id or address; not a member; a group it cannot tell about.
        assert_eq!(
            d.has_member("all@example.com", "id3").await.unwrap(),
            Some(true)
        );
        assert_eq!(
            d.has_member("ALL@example.com", "u2@example.com")
                .await
                .unwrap(),
            Some(true)
        );
        assert_eq!(
            d.has_member("all@example.com", "id4").await.unwrap(),
            Some(false)
        );
        d.cannot_tell("all@example.com");
        assert_eq!(d.has_member("all@example.com", "id3").await.unwrap(), None);
        assert!(matches!(
            d.list_members_page("nobody@example.com", None).await,
            Err(DirectoryError::GroupNotFound { .. })
        ));
        assert_eq!(d.requests(), 10);
    }

    #[tokio::test]
    async fn deleted_removed_suspended_and_forbidden_users_answer_as_google_does() {
        let d = MemoryDirectory::new();
        for (id, e) in [("a", "a@x.test"), ("b", "b@x.test"), ("c", "c@x.test")] {
            d.put_user(user(id, e));
        }
        assert!(d.delete_user("a"));
        assert!(d.remove_user("B@x.test").is_some());
        assert!(d.suspend_user("c", true));
        d.forbid("zz");
        assert_eq!(d.get_user("a").await.unwrap(), None);
        assert_eq!(d.get_user("b").await.unwrap(), None);
        assert!(!d.get_user("c").await.unwrap().unwrap().is_active());
        assert!(matches!(
            d.get_user("zz").await,
            Err(DirectoryError::NotInCustomer { .. })
        ));
        let deleted = d.deleted_user_ids("my_customer").await.unwrap();
        assert_eq!(deleted, HashSet::from(["a".to_string()]));
        let listed = d.list_users_page(&customer(), None, None).await.unwrap();
        assert_eq!(listed.users.len(), 1, "the suspended user is listed");
        assert!(d.undelete_user("a"));
        assert!(d.get_user("a@x.test").await.unwrap().is_some());
        assert!(d
            .list_users_page(&customer(), Some("isAdmin=true"), None)
            .await
            .is_err());
    }

    #[tokio::test]
    async fn an_injected_failure_fails_every_call_from_the_nth_until_healed() {
        let d = MemoryDirectory::new();
        d.put_user(user("a", "a@x.test"));
        d.fail(Call::UsersGet, 1);
        assert!(d.get_user("a").await.is_ok());
        for _ in 0..2 {
            assert!(matches!(
                d.get_user("a").await,
                Err(DirectoryError::GaveUp {
                    endpoint: "users.get",
                    ..
                })
            ));
        }
        assert!(d.list_users_page(&customer(), None, None).await.is_ok());
        d.heal();
        assert!(d.get_user("a").await.is_ok());
        assert_eq!(d.calls(Call::UsersGet), 4);
    }
}
