//! The in-memory copy of the member trees.
//!
//! Reads (SCIM lookups, the pull's plan, the CLI) are served from here: a hash lookup and a
//! clone instead of two sled reads and a JSON decode. It is loaded once at open and changed
//! only after a member transaction commits, so it never shows an uncommitted write.

use std::collections::HashMap;
use std::sync::Arc;

use super::order::Blocks;
use super::{decode_member, StoreError};
use crate::member::{normalize_email_cow, Member, MemberId};

/// Members by id, plus the two indexes.
#[derive(Default)]
pub(crate) struct Mirror {
    by_id: HashMap<MemberId, Arc<Member>>,
    /// Hashed for lookups; listings sort on demand.
    by_name: HashMap<String, MemberId>,
    by_ext: HashMap<String, MemberId>,
    /// The members SCIM lists (not SCIM-deleted), by normalised user name.
    scim_order: Blocks,
}

/// One transaction's writes: `None` removes an index entry.
#[derive(Default)]
pub(crate) struct Overlay {
    pub(crate) members: HashMap<MemberId, Member>,
    pub(crate) names: HashMap<String, Option<MemberId>>,
    pub(crate) externals: HashMap<String, Option<MemberId>>,
}

impl Mirror {
    /// Decodes every record of the members tree.
    pub(crate) fn load(members: &sled::Tree) -> Result<Mirror, StoreError> {
        let mut mirror = Mirror::default();
        let mut listed = Vec::new();
        for kv in members.iter() {
            let (_, v) = kv?;
            let m = decode_member(&v)?;
            let name = m.user_name.normalized();
            if !m.scim_deleted {
                listed.push((name.clone(), m.id));
            }
            mirror.by_name.insert(name, m.id);
            if let Some(ext) = &m.external_id {
                mirror.by_ext.insert(ext.clone(), m.id);
            }
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

    pub(crate) fn counts(&self) -> (usize, usize) {
        let active = self.by_id.values().filter(|m| m.active).count();
        (active, self.by_id.len() - active)
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

    /// Applies a committed transaction's writes.
    pub(crate) fn apply(&mut self, overlay: Overlay) {
        for (id, m) in overlay.members {
            self.by_id.insert(id, Arc::new(m));
        }
        // Every member write re-sets its name entry, so this visits every written member.
        for (name, id) in overlay.names {
            let listed = id.filter(|id| {
                self.by_id.get(id).is_some_and(|m| {
                    !m.scim_deleted && normalize_email_cow(m.user_name.as_str()) == name.as_str()
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
    }
}
