//! The SCIM listing order: every member visible to SCIM (not SCIM-deleted), by normalised
//! user name, in an order-statistic structure of sorted blocks, so `startIndex=N` costs
//! O(N / block) block hops plus one block, not a walk over N members.
//!
//! It is part of the store's mirror, changed in the same step as the rest of it after a
//! member transaction commits, so a listing always agrees with the lookups, whoever wrote.

/// Entries per block: small enough that an insert moves little, large enough that a
/// position lookup hops over few blocks (100,000 members = about 200 blocks).
const BLOCK: usize = 512;

/// The listing order: mirror slots, sorted by the key each slot's entry has (read through the
/// `key_of` the caller passes: no key is copied here).
#[derive(Default)]
pub(crate) struct Blocks {
    blocks: Vec<Vec<u32>>,
    pub(crate) len: usize,
}

impl Blocks {
    fn block_for<'k>(&self, key: &str, key_of: impl Fn(u32) -> &'k str) -> usize {
        // The first block whose last key is >= key; the last block otherwise.
        let i = self
            .blocks
            .partition_point(|b| b.last().is_some_and(|&s| key_of(s) < key));
        i.min(self.blocks.len().saturating_sub(1))
    }

    /// Adds `slot`, whose key is `key` (a slot already there under that key is replaced).
    pub(crate) fn insert<'k>(&mut self, key: &str, slot: u32, key_of: impl Fn(u32) -> &'k str) {
        if self.blocks.is_empty() {
            self.blocks.push(Vec::new());
        }
        let bi = self.block_for(key, &key_of);
        let block = &mut self.blocks[bi];
        match block.binary_search_by(|&s| key_of(s).cmp(key)) {
            Ok(i) => block[i] = slot,
            Err(i) => {
                block.insert(i, slot);
                self.len += 1;
                if block.len() > 2 * BLOCK {
                    let tail = block.split_off(BLOCK);
                    self.blocks.insert(bi + 1, tail);
                }
            }
        }
    }

    /// Removes the slot listed under `key`, if any.
    pub(crate) fn remove<'k>(&mut self, key: &str, key_of: impl Fn(u32) -> &'k str) {
        if self.blocks.is_empty() {
            return;
        }
        let bi = self.block_for(key, &key_of);
        let block = &mut self.blocks[bi];
        if let Ok(i) = block.binary_search_by(|&s| key_of(s).cmp(key)) {
            block.remove(i);
            self.len -= 1;
            if block.is_empty() && self.blocks.len() > 1 {
                self.blocks.remove(bi);
            }
        }
    }

    pub(crate) fn page(&self, start: usize, count: usize, descending: bool) -> Vec<u32> {
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

    fn range(&self, start: usize, count: usize) -> Vec<u32> {
        let mut out = Vec::with_capacity(count.min(self.len));
        let mut skip = start;
        for b in &self.blocks {
            if skip >= b.len() {
                skip -= b.len();
                continue;
            }
            for &slot in &b[skip..] {
                if out.len() == count {
                    return out;
                }
                out.push(slot);
            }
            skip = 0;
        }
        out
    }
}

impl Blocks {
    /// The slots after `after` (every slot when `None`), in order, while `visit` returns
    /// true. Finding the start costs a binary search over blocks and one within a block.
    pub(crate) fn walk_after<'k>(
        &self,
        after: Option<&str>,
        key_of: impl Fn(u32) -> &'k str,
        mut visit: impl FnMut(u32) -> bool,
    ) {
        let (bi, pos) = match after {
            None => (0, 0),
            Some(key) => {
                let bi = self
                    .blocks
                    .partition_point(|b| b.last().is_some_and(|&s| key_of(s) <= key));
                let pos = self
                    .blocks
                    .get(bi)
                    .map(|b| b.partition_point(|&s| key_of(s) <= key))
                    .unwrap_or(0);
                (bi, pos)
            }
        };
        let mut pos = pos;
        for b in self.blocks.iter().skip(bi) {
            for &slot in b.get(pos..).unwrap_or_default() {
                if !visit(slot) {
                    return;
                }
            }
            pos = 0;
        }
    }

    /// Builds the order from entries already sorted by key.
    pub(crate) fn from_sorted(entries: impl IntoIterator<Item = u32>) -> Blocks {
        let mut blocks = Blocks::default();
        for entry in entries {
            match blocks.blocks.last_mut() {
                Some(b) if b.len() < BLOCK => b.push(entry),
                _ => blocks.blocks.push(vec![entry]),
            }
            blocks.len += 1;
        }
        blocks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn pages_agree_with_a_sorted_map(ops in proptest::collection::vec((0u32..3000, any::<bool>()), 0..4000),
                                          start in 0usize..3000, count in 0usize..300, desc in any::<bool>()) {
            // Slot k's key is "user{k}@example.com", as the mirror's entries would give it.
            let keys: Vec<String> = (0..3000).map(|k| format!("user{k:05}@example.com")).collect();
            let key_of = |s: u32| keys[s as usize].as_str();
            let mut blocks = Blocks::default();
            let mut model = std::collections::BTreeMap::new();
            for (k, insert) in ops {
                let key = key_of(k);
                if insert {
                    blocks.insert(key, k, key_of);
                    model.insert(key, k);
                } else {
                    blocks.remove(key, key_of);
                    model.remove(&key);
                }
            }
            prop_assert_eq!(blocks.len, model.len());
            let mut all: Vec<u32> = model.values().copied().collect();
            if desc { all.reverse(); }
            let want: Vec<u32> = all.into_iter().skip(start).take(count).collect();
            prop_assert_eq!(blocks.page(start, count, desc), want.clone());
            // Built in one go from the sorted slots, it pages the same.
            let built = Blocks::from_sorted(model.values().copied());
            prop_assert_eq!(built.len, model.len());
            prop_assert_eq!(built.page(start, count, desc), want);
            // A walk after a key (present or not) goes on where the sorted map's range does.
            let after = format!("user{start:05}@example.com{}", if desc { "" } else { "~" });
            let mut walked = Vec::new();
            blocks.walk_after(Some(&after), key_of, |s| { walked.push(s); walked.len() < count });
            let want: Vec<u32> = model
                .range::<str, _>((std::ops::Bound::Excluded(after.as_str()), std::ops::Bound::Unbounded))
                .map(|(_, &s)| s)
                .take(count.max(1))
                .collect();
            prop_assert_eq!(walked, want);
            let mut from_start = Vec::new();
            built.walk_after(None, key_of, |s| { from_start.push(s); true });
            prop_assert_eq!(from_start, model.values().copied().collect::<Vec<_>>());
        }
    }
}
