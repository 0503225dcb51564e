//! Members read straight from the records, without the in-memory mirror: for the CLI when
//! no daemon runs. `members show` stops at the record that matches, and `members list`
//! streams the records, so neither builds a copy of the whole store (at 1,000,000 members
//! the mirror costs about a gigabyte and several seconds to build).

use std::path::{Path, PathBuf};

use super::{codec, decode_member, open_db, stored_schema, Store, StoreError, SCHEMA_VERSION};
use crate::member::{normalize_email_cow, Member, MemberId};

/// sled's page cache for a scan: each page is read once, in order, so a cache only holds
/// pages that will not be read again (measured at 1,000,000 members: `members show` of the
/// last record peaked at 104 MB with the store's 16 MiB).
const SCAN_CACHE_BYTES: u64 = 1024 * 1024;

/// A store opened for reading its member records one at a time. It holds sled's lock, as
/// [`Store`] does, so no daemon can run at the same time.
pub struct RecordScan {
    path: PathBuf,
    members: sled::Tree,
    _db: sled::Db,
}

impl std::fmt::Debug for RecordScan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordScan")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl RecordScan {
    /// Opens the store in `path` for scanning. A store of an older schema is upgraded first
    /// (by a full [`Store::open`], once); a newer one is refused.
    ///
    /// Unlike [`Store::open`], this does not check that user names, external ids and Google
    /// ids are unique: that needs the whole index. The daemon's open does.
    pub fn open(path: &Path) -> Result<RecordScan, StoreError> {
        let db = open_db(path, SCAN_CACHE_BYTES)?;
        let meta = db.open_tree("meta")?;
        let members = db.open_tree("members")?;
        let current = match stored_schema(path, &meta)? {
            Some(v) => v == SCHEMA_VERSION,
            // A new store: nothing to read, and nothing to upgrade.
            None => members.is_empty(),
        };
        if current {
            return Ok(RecordScan {
                path: path.to_path_buf(),
                members,
                _db: db,
            });
        }
        drop((members, meta, db));
        drop(Store::open(path)?);
        let db = open_db(path, SCAN_CACHE_BYTES)?;
        Ok(RecordScan {
            path: path.to_path_buf(),
            members: db.open_tree("members")?,
            _db: db,
        })
    }

    /// The member an owner named: an id, or a user name (compared as the store compares
    /// them). A name is found by scanning the records and stopping at the match; only the
    /// user name of each record is read on the way.
    pub fn find(&self, id_or_email: &str) -> Result<Option<Member>, StoreError> {
        if let Some(id) = MemberId::parse(id_or_email) {
            if let Some(v) = self.members.get(id.as_bytes())? {
                return decode_member(&v).map(Some);
            }
        }
        let want = normalize_email_cow(id_or_email);
        for kv in self.members.iter() {
            let (_, v) = kv?;
            let Some(name) = codec::peek_user_name(&v) else {
                return Err(StoreError::Corrupt("member record: no user name".into()));
            };
            if normalize_email_cow(name) == want {
                return decode_member(&v).map(Some);
            }
        }
        Ok(None)
    }

    /// Every member, in id order (creation order: ids are UUIDv7), decoded as it is read.
    pub fn members(&self) -> impl Iterator<Item = Result<Member, StoreError>> + '_ {
        self.members.iter().map(|kv| decode_member(&kv?.1))
    }

    /// Every member ordered by folded user name, as the daemon lists them, without building
    /// the mirror: a first pass reads only each record's user name and keeps its folded key
    /// and id (about 70 bytes a member: 70 MB at 1,000,000), sorts them, and the listing
    /// then reads each record by id as it is consumed.
    pub fn into_members_by_name(
        self,
    ) -> Result<impl Iterator<Item = Result<Member, StoreError>> + Send + 'static, StoreError> {
        let mut keys: Vec<(Box<str>, [u8; 16])> = Vec::new();
        for kv in self.members.iter() {
            let (k, v) = kv?;
            let Some(name) = codec::peek_user_name(&v) else {
                return Err(StoreError::Corrupt("member record: no user name".into()));
            };
            let id: [u8; 16] = k
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("member key: not 16 bytes".into()))?;
            keys.push((normalize_email_cow(name).into(), id));
        }
        keys.sort_unstable();
        Ok(keys.into_iter().filter_map(move |(_, id)| {
            // A record removed since the first pass is skipped (nothing removes members
            // today; the store is locked by this process anyway).
            match self.members.get(id) {
                Ok(Some(v)) => Some(decode_member(&v)),
                Ok(None) => None,
                Err(e) => Some(Err(e.into())),
            }
        }))
    }

    /// How many member records there are (sled counts them by walking the tree).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the store holds no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}
