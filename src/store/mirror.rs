//! The in-memory copy of the members, and the only indexes the store has (schema 3).
//!
//! Reads (SCIM lookups, the pull's plan, the CLI) are served from here: a hash lookup and a
//! clone instead of sled reads and a decode. It is built once at open, in one pass over the
//! records, and changed only after a member transaction commits, so it never shows an
//! uncommitted write. The user-name, external-id and Google-id indexes live here only: sled
//! keeps the records, so a member write is one key.

use std::collections::HashMap;
use std::sync::Arc;

use super::order::Blocks;
use super::StoreError;
use crate::member::{normalize_email_cow, Member, MemberId};

/// Members by id, plus the three indexes.
#[derive(Default)]
pub(crate) struct Mirror {
    by_id: HashMap<MemberId, Arc<Member>>,
    /// By folded user name ([`crate::member::normalize_email`]). Hashed for lookups;
    /// listings sort on demand.
    by_name: HashMap<String, MemberId>,
    /// By the SCIM client's `externalId` (exact).
    by_ext: HashMap<String, MemberId>,
    /// By Google user id.
    by_google: HashMap<String, MemberId>,
    /// The members SCIM lists ([`Member::visible_to_scim`]), by folded user name.
    scim_order: Blocks,
    /// How many members are active, kept with every write: `/healthz` and `/metrics` read it
    /// on every call, and counting a large store each time made a health check cost a walk
    /// over every member.
    active: usize,
}

/// One transaction's writes: `None` removes an index entry.
#[derive(Default)]
pub(crate) struct Overlay {
    pub(crate) members: HashMap<MemberId, Member>,
    pub(crate) names: HashMap<String, Option<MemberId>>,
    pub(crate) externals: HashMap<String, Option<MemberId>>,
    pub(crate) googles: HashMap<String, Option<MemberId>>,
}

/// Two records claim one key: the store cannot be served.
fn collision(what: &'static str, key: &str, first: &Member, second: &Member) -> StoreError {
    StoreError::Collision {
        what,
        key: key.to_string(),
        first: format!("{} ({})", first.id, first.dir.user_name),
        second: format!("{} ({})", second.id, second.dir.user_name),
    }
}

impl Mirror {
    /// Builds the mirror and its indexes from every member, in one pass. Two members that
    /// claim one folded user name, external id or Google id are a [`StoreError::Collision`].
    pub(crate) fn build(
        members: impl IntoIterator<Item = Result<Member, StoreError>>,
    ) -> Result<Mirror, StoreError> {
        let mut mirror = Mirror::default();
        let mut listed = Vec::new();
        for m in members {
            let m = m?;
            let name = m.dir.user_name.normalized();
            if let Some(other) = mirror.by_name.get(&name) {
                return Err(collision("user name", &name, &mirror.by_id[other], &m));
            }
            if let Some(ext) = &m.dir.external_id {
                if let Some(other) = mirror.by_ext.insert(ext.clone(), m.id) {
                    return Err(collision("external id", ext, &mirror.by_id[&other], &m));
                }
            }
            if let Some(g) = &m.dir.google_id {
                if let Some(other) = mirror.by_google.insert(g.clone(), m.id) {
                    return Err(collision("Google id", g, &mirror.by_id[&other], &m));
                }
            }
            if m.visible_to_scim() {
                listed.push((name.clone(), m.id));
            }
            mirror.by_name.insert(name, m.id);
            mirror.active += usize::from(m.dir.active);
            mirror.by_id.insert(m.id, Arc::new(m));
        }
        listed.sort_unstable();
        mirror.scim_order = Blocks::from_sorted(listed);
        Ok(mirror)
    }

    pub(crate) fn get(&self, id: MemberId) -> Option<Arc<Member>> {
        self.by_id.get(&id).cloned()
    }

    pub(crate) fn id_by_name(&self, normalized: &str) -> Option<MemberId> {
        self.by_name.get(normalized).copied()
    }

    pub(crate) fn id_by_external_id(&self, ext: &str) -> Option<MemberId> {
        self.by_ext.get(ext).copied()
    }

    pub(crate) fn id_by_google_id(&self, google_id: &str) -> Option<MemberId> {
        self.by_google.get(google_id).copied()
    }

    /// Active and inactive members.
    pub(crate) fn counts(&self) -> (usize, usize) {
        (self.active, self.by_id.len() - self.active)
    }

    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(crate) fn ordered(&self) -> Vec<Arc<Member>> {
        let mut named: Vec<(&String, &MemberId)> = self.by_name.iter().collect();
        named.sort_unstable();
        named
            .into_iter()
            .filter_map(|(_, id)| self.by_id.get(id).cloned())
            .collect()
    }

    /// How many members SCIM lists.
    pub(crate) fn scim_len(&self) -> usize {
        self.scim_order.len
    }

    /// The ids SCIM lists at 0-based positions `start..start+count`.
    pub(crate) fn scim_page(&self, start: usize, count: usize, descending: bool) -> Vec<MemberId> {
        self.scim_order.page(start, count, descending)
    }

    /// Whether two mirrors hold the same members and the same indexes (the consistency
    /// check compares the live mirror with one rebuilt from the records).
    pub(crate) fn differences(&self, other: &Mirror) -> Vec<String> {
        let mut out = Vec::new();
        if self.by_id.len() != other.by_id.len() {
            out.push(format!(
                "memory holds {} members, the disk {}",
                self.by_id.len(),
                other.by_id.len()
            ));
        }
        for (id, m) in &other.by_id {
            if self.by_id.get(id).map(|a| &**a) != Some(&**m) {
                out.push(format!("member {id} in memory differs from the disk"));
            }
        }
        if self.counts() != other.counts() {
            out.push(format!(
                "memory counts {:?} active and inactive members, the disk {:?}",
                self.counts(),
                other.counts()
            ));
        }
        if self.by_name != other.by_name {
            out.push("the user name index differs from the records".into());
        }
        if self.by_ext != other.by_ext {
            out.push("the external id index differs from the records".into());
        }
        if self.by_google != other.by_google {
            out.push("the Google id index differs from the records".into());
        }
        if self.scim_page(0, usize::MAX, false) != other.scim_page(0, usize::MAX, false)
            || self.scim_len() != other.scim_len()
        {
            out.push("the SCIM listing order differs from the records".into());
        }
        out
    }

    /// Applies a committed transaction's writes.
    pub(crate) fn apply(&mut self, overlay: Overlay) {
        for (id, m) in overlay.members {
            self.active += usize::from(m.dir.active);
            if let Some(old) = self.by_id.insert(id, Arc::new(m)) {
                self.active -= usize::from(old.dir.active);
            }
        }
        // Every member write re-sets its name entry, so this visits every written member.
        for (name, id) in overlay.names {
            let listed = id.filter(|id| {
                self.by_id.get(id).is_some_and(|m| {
                    m.visible_to_scim()
                        && normalize_email_cow(m.dir.user_name.as_str()) == name.as_str()
                })
            });
            self.scim_order.set(&name, listed);
            match id {
                Some(id) => self.by_name.insert(name, id),
                None => self.by_name.remove(&name),
            };
        }
        for (ext, id) in overlay.externals {
            match id {
                Some(id) => self.by_ext.insert(ext, id),
                None => self.by_ext.remove(&ext),
            };
        }
        for (g, id) in overlay.googles {
            match id {
                Some(id) => self.by_google.insert(g, id),
                None => self.by_google.remove(&g),
            };
        }
    }
}
