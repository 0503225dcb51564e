//! Members read straight from the records, without the in-memory mirror: what a store
//! opened with [`Store::open_lazy`] answers `find` and `members` with until a call needs the
//! mirror. `members show` stops at the record that matches, and `members list` streams the
//! records, so neither builds a copy of the whole store (at 1,000,000 members the mirror
//! costs about a gigabyte and several seconds to build).
//!
//! Both compare and order user names as the mirror does (its folded key,
//! [`normalize_email_cow`]), so the answer is the same whichever the store reads.

use super::{codec, decode_member, Store, StoreError};
use crate::member::{normalize_email_cow, Member, MemberId};

/// The member an owner named: an id, or a user name (compared as the store compares them).
/// A name is found by scanning the records and stopping at the match; only the user name of
/// each record is read on the way.
pub(super) fn find(members: &sled::Tree, id_or_email: &str) -> Result<Option<Member>, StoreError> {
    if let Some(id) = MemberId::parse(id_or_email) {
        if let Some(v) = members.get(id.as_bytes())? {
            return decode_member(&v).map(Some);
        }
    }
    let want = normalize_email_cow(id_or_email);
    for kv in members.iter() {
        let (_, v) = kv?;
        if normalize_email_cow(user_name(&v)?) == want {
            return decode_member(&v).map(Some);
        }
    }
    Ok(None)
}

/// Every member ordered by folded user name, as the mirror lists them: a first pass reads
/// only each record's user name and keeps its folded key and id (about 70 bytes a member:
/// 70 MB at 1,000,000), sorts them, and the listing then reads each record by id as it is
/// consumed.
pub(super) fn members_by_name(
    store: Store,
) -> Result<impl Iterator<Item = Result<Member, StoreError>> + Send + 'static, StoreError> {
    let mut keys: Vec<(Box<str>, [u8; 16])> = Vec::new();
    for kv in store.inner.members.iter() {
        let (k, v) = kv?;
        let id: [u8; 16] = k
            .as_ref()
            .try_into()
            .map_err(|_| StoreError::Corrupt("member key: not 16 bytes".into()))?;
        keys.push((normalize_email_cow(user_name(&v)?).into(), id));
    }
    keys.sort_unstable();
    Ok(keys.into_iter().filter_map(move |(_, id)| {
        // A record removed since the first pass is skipped (nothing removes members today).
        match store.inner.members.get(id) {
            Ok(Some(v)) => Some(decode_member(&v)),
            Ok(None) => None,
            Err(e) => Some(Err(e.into())),
        }
    }))
}

/// A record's user name, read without decoding the rest.
fn user_name(record: &[u8]) -> Result<&str, StoreError> {
    codec::peek_user_name(record)
        .ok_or_else(|| StoreError::Corrupt("member record: no user name".into()))
}
