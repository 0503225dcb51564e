//! Which Google users the pull provisions, and which members it may touch.
//!
//! A user is in scope when it is in any `[scope].groups` (derived membership, USER members
//! only; a CUSTOMER member puts every user of the customer in that group) or in any
//! `[scope].org_units` (the whole subtree). `[scope].query` is passed to users.list, so it
//! narrows the listing itself. `[scope].exclude` removes emails matching a glob. With no
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
                Place::OutOfScope => sel.out_of_scope += 1,
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

    fn place(&self, u: &GoogleUser, groups: &GroupMembership) -> Place {
        let restricted = !self.groups.is_empty() || !self.org_units.is_empty();
        // Evaluated lazily: this runs for every user of a large directory.
        let in_group = || {
            groups.whole_customer
                || groups.user_ids.contains(&u.id)
                || groups
                    .user_emails
                    .contains(normalize_email_cow(&u.primary_email).as_ref())
        };
        let in_ou = || {
            u.org_unit_path
                .as_deref()
                .is_some_and(|ou| self.org_units.iter().any(|root| in_subtree(ou, root)))
        };
        if restricted && !in_group() && !in_ou() {
            Place::OutOfScope
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
    /// Entries of type GROUP (their users are listed by derived membership already).
    pub nested_groups: usize,
}

impl GroupMembership {
    /// Adds the entries of one members.list page.
    pub fn add(&mut self, members: &[GroupMember]) {
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
                // GROUP entries: with includeDerivedMembership their users come listed too.
                _ => self.nested_groups += 1,
            }
        }
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
}
