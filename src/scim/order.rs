//! The SCIM listing order: every member visible to SCIM, by normalised user name, in an
//! in-memory order-statistic structure, so `startIndex=N` costs O(N / block) block hops
//! plus one block, not a walk over N members.
//!
//! It is kept in step with the store from any writer (SCIM, the pull, the owner's
//! commands): every member write re-inserts its user-name index entry, and a background
//! thread re-reads the current state of each key it hears about. Re-reading (rather than
//! trusting the event) makes the result independent of event order. SCIM's own writes
//! also sync their keys before answering, so a client reads its own writes.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::member::MemberId;
use crate::store::{Store, StoreError};

/// Entries per block: small enough that an insert moves little, large enough that a
/// position lookup hops over few blocks (100,000 members = about 200 blocks).
const BLOCK: usize = 512;

/// Members visible to SCIM, ordered by normalised user name.
#[derive(Default)]
pub struct ListingOrder {
    inner: RwLock<Blocks>,
}

#[derive(Default)]
struct Blocks {
    blocks: Vec<Vec<(String, MemberId)>>,
    len: usize,
}

impl Blocks {
    fn block_for(&self, key: &str) -> usize {
        // The first block whose last key is >= key; the last block otherwise.
        let i = self
            .blocks
            .partition_point(|b| b.last().is_some_and(|(k, _)| k.as_str() < key));
        i.min(self.blocks.len().saturating_sub(1))
    }

    fn set(&mut self, key: &str, id: Option<MemberId>) {
        if self.blocks.is_empty() {
            self.blocks.push(Vec::new());
        }
        let bi = self.block_for(key);
        let block = &mut self.blocks[bi];
        match (block.binary_search_by(|(k, _)| k.as_str().cmp(key)), id) {
            (Ok(i), Some(id)) => block[i].1 = id,
            (Ok(i), None) => {
                block.remove(i);
                self.len -= 1;
                if block.is_empty() && self.blocks.len() > 1 {
                    self.blocks.remove(bi);
                }
            }
            (Err(i), Some(id)) => {
                block.insert(i, (key.to_string(), id));
                self.len += 1;
                if block.len() > 2 * BLOCK {
                    let tail = block.split_off(BLOCK);
                    self.blocks.insert(bi + 1, tail);
                }
            }
            (Err(_), None) => {}
        }
    }

    fn page(&self, start: usize, count: usize, descending: bool) -> Vec<MemberId> {
        let mut out = Vec::with_capacity(count.min(self.len));
        if start >= self.len || count == 0 {
            return out;
        }
        if descending {
            // Position p in descending order is position len-1-p ascending.
            let last = self.len - 1 - start;
            let first = last.saturating_sub(count - 1);
            let mut ids = self.range(first, last - first + 1);
            ids.reverse();
            return ids;
        }
        out.extend(self.range(start, count));
        out
    }

    fn range(&self, start: usize, count: usize) -> Vec<MemberId> {
        let mut out = Vec::with_capacity(count);
        let mut skip = start;
        for b in &self.blocks {
            if skip >= b.len() {
                skip -= b.len();
                continue;
            }
            for (_, id) in &b[skip..] {
                if out.len() == count {
                    return out;
                }
                out.push(*id);
            }
            skip = 0;
        }
        out
    }
}

impl ListingOrder {
    /// Builds the order from the store and keeps it in step in a background thread,
    /// which ends once the store is closed.
    pub fn start(store: &Store) -> Result<Arc<ListingOrder>, StoreError> {
        // Subscribe before the scan, so no write falls between the two.
        let mut events = store.watch_user_names();
        let order = Arc::new(ListingOrder::default());
        {
            let mut blocks = order.write();
            for entry in store.user_name_entries() {
                let (key, id) = entry?;
                if store.get(id)?.is_some_and(|m| !m.scim_deleted) {
                    // The index iterates in key order, so appending keeps blocks sorted.
                    match blocks.blocks.last_mut() {
                        Some(b) if b.len() < BLOCK => b.push((key, id)),
                        _ => blocks.blocks.push(vec![(key, id)]),
                    }
                    blocks.len += 1;
                }
            }
        }
        let weak_store = store.downgrade();
        let weak_order = Arc::downgrade(&order);
        let spawned = std::thread::Builder::new()
            .name("scim-listing".into())
            .spawn(move || loop {
                let event = events.next_timeout(Duration::from_millis(500));
                let (Some(store), Some(order)) = (weak_store.upgrade(), weak_order.upgrade())
                else {
                    return;
                };
                match event {
                    Ok(e) => {
                        let key = String::from_utf8_lossy(e.key()).into_owned();
                        if let Err(err) = order.sync_key(&store, &key) {
                            tracing::warn!(error = %err, "SCIM listing order could not follow a write");
                        }
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                }
            });
        if let Err(e) = spawned {
            return Err(StoreError::Corrupt(format!(
                "cannot start the SCIM listing thread: {e}"
            )));
        }
        Ok(order)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Blocks> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Blocks> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Brings one normalised user name up to date with the store.
    pub fn sync_key(&self, store: &Store, key: &str) -> Result<(), StoreError> {
        let visible = match store.user_name_entry(key)? {
            Some(id) => store
                .get(id)?
                .filter(|m| !m.scim_deleted && m.user_name.normalized() == key)
                .map(|m| m.id),
            None => None,
        };
        self.write().set(key, visible);
        Ok(())
    }

    /// How many members SCIM sees.
    pub fn len(&self) -> usize {
        self.read().len
    }

    /// Whether SCIM sees no member.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ids at 0-based positions `start..start+count`, ascending or descending.
    pub fn page(&self, start: usize, count: usize, descending: bool) -> Vec<MemberId> {
        self.read().page(start, count, descending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(n: u32) -> MemberId {
        MemberId(uuid::Uuid::from_u128(n as u128))
    }

    proptest! {
        #[test]
        fn pages_agree_with_a_sorted_map(ops in proptest::collection::vec((0u32..3000, any::<bool>()), 0..4000),
                                          start in 0usize..3000, count in 0usize..300, desc in any::<bool>()) {
            let mut blocks = Blocks::default();
            let mut model = std::collections::BTreeMap::new();
            for (k, insert) in ops {
                let key = format!("user{k:05}@example.com");
                if insert {
                    blocks.set(&key, Some(id(k)));
                    model.insert(key, id(k));
                } else {
                    blocks.set(&key, None);
                    model.remove(&key);
                }
            }
            prop_assert_eq!(blocks.len, model.len());
            let mut all: Vec<MemberId> = model.values().copied().collect();
            if desc { all.reverse(); }
            let want: Vec<MemberId> = all.into_iter().skip(start).take(count).collect();
            prop_assert_eq!(blocks.page(start, count, desc), want);
        }
    }
}
