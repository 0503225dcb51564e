//! The SCIM listing order: every member visible to SCIM (not SCIM-deleted), by normalised
//! user name, in an order-statistic structure of sorted blocks, so `startIndex=N` costs
//! O(N / block) block hops plus one block, not a walk over N members.
//!
//! It is part of the store's mirror, changed in the same step as the rest of it after a
//! member transaction commits, so a listing always agrees with the lookups, whoever wrote.

use crate::member::MemberId;

/// Entries per block: small enough that an insert moves little, large enough that a
/// position lookup hops over few blocks (100,000 members = about 200 blocks).
const BLOCK: usize = 512;

#[derive(Default)]
pub(crate) struct Blocks {
    blocks: Vec<Vec<(String, MemberId)>>,
    pub(crate) len: usize,
}

impl Blocks {
    fn block_for(&self, key: &str) -> usize {
        // The first block whose last key is >= key; the last block otherwise.
        let i = self
            .blocks
            .partition_point(|b| b.last().is_some_and(|(k, _)| k.as_str() < key));
        i.min(self.blocks.len().saturating_sub(1))
    }

    pub(crate) fn set(&mut self, key: &str, id: Option<MemberId>) {
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

    pub(crate) fn page(&self, start: usize, count: usize, descending: bool) -> Vec<MemberId> {
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
        let mut out = Vec::with_capacity(count.min(self.len));
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

impl Blocks {
    /// Builds the order from entries already sorted by key.
    pub(crate) fn from_sorted(entries: impl IntoIterator<Item = (String, MemberId)>) -> Blocks {
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
            prop_assert_eq!(blocks.page(start, count, desc), want.clone());
            // Built in one go from the sorted entries, it pages the same.
            let built = Blocks::from_sorted(model.clone());
            prop_assert_eq!(built.len, model.len());
            prop_assert_eq!(built.page(start, count, desc), want);
        }
    }
}
