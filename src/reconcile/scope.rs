//! Which Google users the pull provisions, and which members it may touch.
//!
//! A user is in scope when it is in any `[scope].groups` (USER members, of the group or of
//! the groups nested in it, which the pull reads one by one; a CUSTOMER member puts every
//! user of the customer in that group) or in any `[scope].org_units` (the whole subtree).
//! `[scope].query` is passed to users.list, so it narrows the listing itself; [`Query`]
//! judges the clauses it can from one user's own fields. `[scope].exclude` removes emails
//! matching a glob. Guest accounts are left out unless `[scope].include_guests`. With no
//! group and no org unit, every listed user is in scope. Users and members whose email is
//! outside `[google].domains` (when it is set) are never touched.

use std::collections::HashSet;

use crate::config::{GoogleConfig, ScopeConfig};
use crate::directory::model::{GoogleUser, GroupMember};
use crate::member::{normalize_email, normalize_email_cow};

/// The scope rules, from the config.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScopeRules {
    /// Group emails.
    pub groups: Vec<String>,
    /// Org unit paths.
    pub org_units: Vec<String>,
    /// users.list query.
    pub query: Option<String>,
    /// Glob patterns on email (`*` and `?`, case-insensitive).
    pub exclude: Vec<String>,
    /// Managed domains, as caseless keys ([`crate::member::domain_key`]); empty = every domain.
    pub domains: Vec<String>,
    /// Whether guest accounts can be in scope.
    pub include_guests: bool,
    /// The most nested groups read under the scope groups.
    pub max_nested_groups: usize,
}

impl ScopeRules {
    /// The rules of a config.
    pub fn from_config(scope: &ScopeConfig, google: &GoogleConfig) -> ScopeRules {
        ScopeRules {
            groups: scope.groups.clone(),
            org_units: scope.org_units.clone(),
            query: scope.query.clone().filter(|q| !q.trim().is_empty()),
            exclude: scope
                .exclude
                .iter()
                .map(|p| p.trim().to_lowercase())
                .collect(),
            domains: google
                .domains
                .iter()
                .map(|d| crate::member::domain_key(d).into_owned())
                .collect(),
            include_guests: scope.include_guests,
            max_nested_groups: scope.max_nested_groups as usize,
        }
    }

    /// Whether group memberships must be read (and the group scope requested).
    pub fn uses_groups(&self) -> bool {
        !self.groups.is_empty()
    }

    /// Whether an email is in a managed domain.
    pub fn in_domains(&self, email: &str) -> bool {
        if self.domains.is_empty() {
            return true;
        }
        crate::member::in_domains(&self.domains, email)
    }

    /// Whether an email matches an exclude pattern.
    pub fn excluded(&self, email: &str) -> bool {
        if self.exclude.is_empty() {
            return false;
        }
        let n = normalize_email_cow(email);
        self.exclude.iter().any(|p| glob_match(p, &n))
    }

    /// The users in scope, in the order given, with what was left out and why.
    pub fn select<'a>(&self, users: &'a [GoogleUser], groups: &GroupMembership) -> Selection<'a> {
        let mut sel = Selection::default();
        for u in users {
            match self.place(u, groups) {
                Place::OutOfScope | Place::Guest => sel.out_of_scope += 1,
                Place::Excluded => sel.excluded += 1,
                Place::OutsideDomains => sel.outside_domains += 1,
                Place::InScope => sel.users.push(u),
            }
        }
        sel
    }

    /// Whether one user is in scope ([`ScopeRules::select`] for a single user).
    pub fn in_scope(&self, u: &GoogleUser, groups: &GroupMembership) -> bool {
        self.place(u, groups) == Place::InScope
    }

    /// Whether one user would be in scope if it were a member of a scope group: whether a
    /// membership Google's listing left out is all that keeps it out.
    pub fn in_scope_if_member(&self, u: &GoogleUser) -> bool {
        self.place_with(u, || true) == Place::InScope
    }

    fn place(&self, u: &GoogleUser, groups: &GroupMembership) -> Place {
        // Evaluated lazily: this runs for every user of a large directory.
        self.place_with(u, || {
            groups.whole_customer
                || groups.user_ids.contains(&u.id)
                || groups
                    .user_emails
                    .contains(normalize_email_cow(&u.primary_email).as_ref())
        })
    }

    fn place_with(&self, u: &GoogleUser, in_group: impl Fn() -> bool) -> Place {
        let restricted = !self.groups.is_empty() || !self.org_units.is_empty();
        let in_group = || !self.groups.is_empty() && in_group();
        let in_ou = || {
            u.org_unit_path
                .as_deref()
                .is_some_and(|ou| self.org_units.iter().any(|root| in_subtree(ou, root)))
        };
        if restricted && !in_group() && !in_ou() {
            Place::OutOfScope
        } else if u.is_guest() && !self.include_guests {
            Place::Guest
        } else if self.excluded(&u.primary_email) {
            Place::Excluded
        } else if !self.in_domains(&u.primary_email) {
            Place::OutsideDomains
        } else {
            Place::InScope
        }
    }
}

/// Where a user falls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    InScope,
    OutOfScope,
    /// A guest account, with `[scope].include_guests` off.
    Guest,
    Excluded,
    OutsideDomains,
}

/// The users selected, and the counts of those left out.
#[derive(Debug, Default)]
pub struct Selection<'a> {
    /// In scope.
    pub users: Vec<&'a GoogleUser>,
    /// Not in any scope group or org unit.
    pub out_of_scope: usize,
    /// Matched an exclude pattern.
    pub excluded: usize,
    /// Outside the managed domains.
    pub outside_domains: usize,
}

/// The union of the members of the scope groups.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupMembership {
    /// Google ids of USER members.
    pub user_ids: HashSet<String>,
    /// Normalised emails of USER members.
    pub user_emails: HashSet<String>,
    /// A group has a CUSTOMER member: every user of the customer is in it.
    pub whole_customer: bool,
    /// Nested groups read under the scope groups.
    pub nested_groups: usize,
}

impl GroupMembership {
    /// Adds the entries of one members.list page; returns the keys (email, else id) of its
    /// GROUP entries, the nested groups to read.
    pub fn add(&mut self, members: &[GroupMember]) -> Vec<String> {
        let mut nested = Vec::new();
        for m in members {
            match m.kind.as_deref() {
                Some("USER") => {
                    if let Some(id) = &m.id {
                        self.user_ids.insert(id.clone());
                    }
                    if let Some(e) = &m.email {
                        self.user_emails.insert(normalize_email(e));
                    }
                }
                Some("CUSTOMER") => self.whole_customer = true,
                Some("GROUP") => {
                    if let Some(key) = m.email.as_ref().or(m.id.as_ref()) {
                        nested.push(key.clone());
                    }
                }
                _ => {}
            }
        }
        nested
    }
}

/// `[scope].query` split for judging one user: the clauses that users.get's answer decides
/// (`orgUnitPath=`, `isSuspended=`, `isArchived=`, `isAdmin=`), judged here, and the rest,
/// which only Google's search can judge. Google's search index can lag behind the directory
/// by up to 36 hours
/// (<https://developers.google.com/workspace/admin/directory/v1/guides/search-users>), so
/// what can be judged locally is.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    local: Vec<Clause>,
    /// The clauses left to Google, as written; `None` when every clause is judged here.
    pub remote: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
enum Clause {
    OrgUnit(String),
    Suspended(bool),
    Archived(bool),
    Admin(bool),
}

impl Query {
    /// Splits a query written in Google's syntax: clauses `field OP value` separated by
    /// spaces, a value in single quotes when it holds spaces or quotes (inside, `\'` is a
    /// quote and `\\` a backslash). A query this cannot read is left to Google whole.
    pub fn parse(query: &str) -> Query {
        let whole = || Query {
            local: Vec::new(),
            remote: Some(query.to_string()),
        };
        let Some(clauses) = split_clauses(query) else {
            return whole();
        };
        let mut local = Vec::new();
        let mut remote: Vec<&str> = Vec::new();
        for (text, field, value) in clauses {
            let flag = |v: &str| match v.to_ascii_lowercase().as_str() {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            };
            let clause = match field {
                "orgUnitPath=" => Some(Clause::OrgUnit(value)),
                "isSuspended=" => flag(&value).map(Clause::Suspended),
                "isArchived=" => flag(&value).map(Clause::Archived),
                "isAdmin=" => flag(&value).map(Clause::Admin),
                _ => None,
            };
            match clause {
                Some(c) => local.push(c),
                None => remote.push(text),
            }
        }
        Query {
            local,
            remote: (!remote.is_empty()).then(|| remote.join(" ")),
        }
    }

    /// Whether the clauses judged here hold for `u`.
    pub fn local_match(&self, u: &GoogleUser) -> bool {
        self.local.iter().all(|c| match c {
            Clause::OrgUnit(root) => u
                .org_unit_path
                .as_deref()
                .is_some_and(|ou| in_subtree(ou, root)),
            Clause::Suspended(v) => u.suspended.unwrap_or(false) == *v,
            Clause::Archived(v) => u.archived.unwrap_or(false) == *v,
            Clause::Admin(v) => u.is_admin.unwrap_or(false) == *v,
        })
    }

    /// The remote clauses narrowed to one address: `REMOTE email='ADDRESS'`, the address
    /// escaped as Google's syntax requires. `None` when nothing is left to Google.
    pub fn narrowed(&self, address: &str) -> Option<String> {
        self.remote
            .as_ref()
            .map(|r| format!("{r} email='{}'", escape_value(address)))
    }
}

/// A value for a single-quoted place of Google's search syntax: `\` and `'` escaped with a
/// backslash (an apostrophe is legal in a Google user name: `o'brien@example.com`).
pub fn escape_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    for c in v.chars() {
        if c == '\\' || c == '\'' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The clauses of a query: each one's text, its field with the operator (`email=`,
/// `name:`), and its value unquoted. `None` when the query is not well formed.
fn split_clauses(q: &str) -> Option<Vec<(&str, &str, String)>> {
    let b = q.as_bytes();
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        while at < b.len() && b[at].is_ascii_whitespace() {
            at += 1;
        }
        if at == b.len() {
            return Some(out);
        }
        let start = at;
        while at < b.len() && (b[at].is_ascii_alphanumeric() || b[at] == b'.' || b[at] == b'_') {
            at += 1;
        }
        if at == start || !matches!(b.get(at), Some(b'=') | Some(b':')) {
            return None;
        }
        at += 1;
        let field = &q[start..at];
        let mut value = String::new();
        match b.get(at) {
            Some(&quote) if quote == b'\'' || quote == b'"' => {
                at += 1;
                let mut run = at;
                loop {
                    match b.get(at) {
                        None => return None,
                        Some(b'\\') => {
                            value.push_str(&q[run..at]);
                            let escaped = *b.get(at + 1)?;
                            if !matches!(escaped, b'\\' | b'\'' | b'"') {
                                return None;
                            }
                            value.push(escaped as char);
                            at += 2;
                            run = at;
                        }
                        Some(&c) if c == quote => {
                            value.push_str(&q[run..at]);
                            at += 1;
                            break;
                        }
                        Some(_) => at += 1,
                    }
                }
                if at < b.len() && !b[at].is_ascii_whitespace() {
                    return None;
                }
            }
            _ => {
                let begin = at;
                while at < b.len() && !b[at].is_ascii_whitespace() {
                    at += 1;
                }
                value.push_str(&q[begin..at]);
            }
        }
        out.push((&q[start..at], field, value));
    }
}

fn in_subtree(ou: &str, root: &str) -> bool {
    let root = root.trim_end_matches('/');
    root.is_empty() || ou.eq_ignore_ascii_case(root) || {
        let prefix = format!("{}/", root.to_lowercase());
        ou.to_lowercase().starts_with(&prefix)
    }
}

/// Matches `*` (any run) and `?` (one character); both sides are lower case already.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, email: &str, ou: &str) -> GoogleUser {
        GoogleUser {
            id: id.into(),
            primary_email: email.into(),
            name: None,
            suspended: None,
            archived: None,
            org_unit_path: Some(ou.into()),
            is_admin: None,
            is_guest_user: None,
            emails: None,
            aliases: None,
        }
    }

    fn member(kind: &str, id: &str, email: Option<&str>) -> GroupMember {
        GroupMember {
            id: Some(id.into()),
            email: email.map(Into::into),
            kind: Some(kind.into()),
            status: None,
        }
    }

    #[test]
    fn globs_match_like_a_shell() {
        assert!(glob_match(
            "*@contractors.example.com",
            "a@contractors.example.com"
        ));
        assert!(glob_match("svc-*", "svc-backup@example.com"));
        assert!(glob_match("a?c@x.com", "abc@x.com"));
        assert!(!glob_match("svc-*", "bob@example.com"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a", ""));
    }

    #[test]
    fn no_scope_means_every_user_minus_excludes_and_foreign_domains() {
        let rules = ScopeRules {
            exclude: vec!["svc-*".into()],
            domains: vec!["example.com".into()],
            ..Default::default()
        };
        let users = [
            user("1", "ada@example.com", "/"),
            user("2", "svc-backup@example.com", "/"),
            user("3", "bob@other.org", "/"),
        ];
        let sel = rules.select(&users, &GroupMembership::default());
        assert_eq!(sel.users.len(), 1);
        assert_eq!((sel.excluded, sel.outside_domains), (1, 1));
        // One user at a time (the fetch's path) says the same; case does not matter.
        let one: Vec<bool> = users
            .iter()
            .map(|u| rules.in_scope(u, &GroupMembership::default()))
            .collect();
        assert_eq!(one, [true, false, false]);
        assert!(rules.in_scope(
            &user("4", " Ada@EXAMPLE.com", "/"),
            &GroupMembership::default()
        ));
        assert!(!rules.in_scope(
            &user("5", "SVC-x@example.com", "/"),
            &GroupMembership::default()
        ));
    }

    #[test]
    fn groups_and_org_unit_subtrees_are_a_union() {
        let rules = ScopeRules {
            groups: vec!["eng@example.com".into()],
            org_units: vec!["/Sales".into()],
            ..Default::default()
        };
        let mut g = GroupMembership::default();
        g.add(&[
            member("USER", "1", Some("Ada@Example.com")),
            member("GROUP", "g", Some("kernel@example.com")),
            member("USER", "ext-9", Some("outsider@partner.org")),
        ]);
        let users = [
            user("1", "ada@example.com", "/"),
            user("2", "bob@example.com", "/Sales/EMEA"),
            user("3", "cy@example.com", "/SalesOps"),
            user("4", "di@example.com", "/Engineering"),
        ];
        let sel = rules.select(&users, &g);
        let emails: Vec<&str> = sel.users.iter().map(|u| u.primary_email.as_str()).collect();
        assert_eq!(emails, ["ada@example.com", "bob@example.com"]);
        let one: Vec<bool> = users.iter().map(|u| rules.in_scope(u, &g)).collect();
        assert_eq!(one, [true, true, false, false]);
        assert_eq!(sel.out_of_scope, 2);
        // A CUSTOMER member puts everyone in.
        g.add(&[GroupMember {
            id: Some("C0".into()),
            email: None,
            kind: Some("CUSTOMER".into()),
            status: None,
        }]);
        assert_eq!(rules.select(&users, &g).users.len(), 4);
    }

    #[test]
    fn a_query_splits_into_what_users_get_decides_and_what_google_searches() {
        let q = Query::parse(
            r"orgUnitPath='/Sales Team' isSuspended=false name:'Ada L' isAdmin=TRUE familyName='O\'Brien'",
        );
        assert_eq!(
            q.remote.as_deref(),
            Some(r"name:'Ada L' familyName='O\'Brien'"),
            "kept as written"
        );
        let mut u = user("1", "o'brien@example.com", "/Sales Team/Dublin");
        u.is_admin = Some(true);
        assert!(q.local_match(&u));
        u.suspended = Some(true);
        assert!(!q.local_match(&u));
        u.suspended = Some(false);
        u.is_admin = None;
        assert!(!q.local_match(&u), "not an admin");
        u.is_admin = Some(true);
        u.org_unit_path = Some("/Sales".into());
        assert!(!q.local_match(&u));
        assert_eq!(
            q.narrowed("o'brien@example.com").as_deref(),
            Some(r"name:'Ada L' familyName='O\'Brien' email='o\'brien@example.com'")
        );
        // Every clause local: nothing for Google.
        let all = Query::parse("orgUnitPath=/Sales isArchived=false");
        assert_eq!(all.remote, None);
        assert_eq!(all.narrowed("a@example.com"), None);
        assert!(all.local_match(&user("2", "a@example.com", "/sales/x")));
        // A flag that is not true/false, or a query that cannot be read, goes to Google whole.
        assert_eq!(
            Query::parse("isSuspended=maybe").remote.as_deref(),
            Some("isSuspended=maybe")
        );
        let broken = "orgUnitPath='/Sales";
        assert_eq!(Query::parse(broken).remote.as_deref(), Some(broken));
        assert_eq!(
            Query::parse("email='o'brien@example.com'")
                .remote
                .as_deref(),
            Some("email='o'brien@example.com'"),
            "a quote ending a value early: not well formed"
        );
    }

    #[test]
    fn values_are_escaped_for_googles_quotes() {
        assert_eq!(escape_value("o'brien@example.com"), r"o\'brien@example.com");
        assert_eq!(escape_value(r"a\b'c"), r"a\\b\'c");
        assert_eq!(escape_value("plain@example.com"), "plain@example.com");
    }

    #[test]
    fn guests_are_out_unless_included_and_a_dropped_membership_is_told_apart() {
        let mut rules = ScopeRules {
            groups: vec!["eng@example.com".into()],
            org_units: vec!["/Sales".into()],
            exclude: vec!["svc-*".into()],
            ..Default::default()
        };
        let mut guest = user("1", "guest@example.com", "/Sales");
        guest.is_guest_user = Some(true);
        let none = GroupMembership::default();
        assert!(!rules.in_scope(&guest, &none));
        assert_eq!(
            rules
                .select(std::slice::from_ref(&guest), &none)
                .out_of_scope,
            1
        );
        rules.include_guests = true;
        assert!(rules.in_scope(&guest, &none));
        // Out of scope only for want of a group: a membership a listing dropped would put it
        // in. Excluded or in another domain: no membership would.
        let outside = user("2", "bob@example.com", "/Engineering");
        assert!(!rules.in_scope(&outside, &none));
        assert!(rules.in_scope_if_member(&outside));
        assert!(!rules.in_scope_if_member(&user("3", "svc-x@example.com", "/")));
        rules.groups.clear();
        assert!(!rules.in_scope_if_member(&outside), "no group in scope");
    }
}
