//! The in-memory copy of the member trees.
//!
//! Reads (SCIM lookups, the pull's plan, the CLI) are served from here: a hash lookup and a
//! clone instead of two sled reads and a JSON decode. It is loaded once at open and changed
//! only after a member transaction commits, so it never shows an uncommitted write.

use std::collections::HashMap;
use std::sync::Arc;

use super::{decode_member, StoreError};
use crate::member::{Member, MemberId};

/// Members by id, plus the two indexes.
#[derive(Default)]
pub(crate) struct Mirror {
    by_id: HashMap<MemberId, Arc<Member>>,
    /// Hashed for lookups; listings sort on demand.
    by_name: HashMap<String, MemberId>,
    by_ext: HashMap<String, MemberId>,
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
        for kv in members.iter() {
            let (_, v) = kv?;
            let m = decode_member(&v)?;
            mirror.by_name.insert(m.user_name.normalized(), m.id);
            if let Some(ext) = &m.external_id {
                mirror.by_ext.insert(ext.clone(), m.id);
            }
            mirror.by_id.insert(m.id, Arc::new(m));
        }
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

    /// Applies a committed transaction's writes.
    pub(crate) fn apply(&mut self, overlay: Overlay) {
        for (name, id) in overlay.names {
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
        for (id, m) in overlay.members {
            self.by_id.insert(id, Arc::new(m));
        }
    }
}
