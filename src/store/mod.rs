//! The member store, on sled.
//!
//! Trees:
//! - `members`: member id (16 bytes) -> member record (JSON);
//! - `idx_user_name`: normalised user name -> member id;
//! - `idx_external_id`: external id -> member id;
//! - `audit`: time (µs, big endian) ++ sequence -> the audit entries of one transaction (a JSON
//!   array of at most [`AUDIT_CHUNK`] entries), so it reads in time order;
//! - `meta`: `schema_version` and other single values;
//! - `tokens`, `sync_runs`, `held_changes`: owned by the SCIM and pull modules.
//!
//! A record, its indexes and its audit entry change in one sled transaction, and only
//! [`crate::provision`] opens such a transaction.
//!
//! Why audit entries are grouped: sled 0.34 costs about 6 µs per key written (it copies
//! the node on every insert), and a member write already needs three keys (record and two
//! indexes). One audit key per entry, plus a per-member audit index, made five keys per
//! created member; grouping a transaction's entries makes it three and a fraction.
//! Schema version 1 had the per-member index (`audit_by_member`) and one entry per key;
//! opening such a store upgrades it in place (the old entries stay readable as they are).

mod audit;
mod codec;
mod flush;
mod runs;
mod scim;

pub use audit::{AuditEntry, AuditQuery};
pub use runs::{HeldSet, RunCounts, RunStatus, SyncRun};
pub use scim::TokenRecord;

mod mirror;
mod order;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use mirror::{Mirror, Overlay};

use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};
use sled::Transactional;

use crate::member::{normalize_email, normalize_email_cow, Member, MemberId};

/// The store layout this build reads and writes (2: grouped audit entries, no
/// `audit_by_member` tree).
pub const SCHEMA_VERSION: u32 = 2;

/// At most this many audit entries share one key of the audit tree. sled writes a whole
/// node (up to 16 keys) to its log when it rewrites it, and moves values over 128 KiB to
/// blob files; 32 entries keep a group near 5 KiB.
pub const AUDIT_CHUNK: usize = 32;

const META_SCHEMA_VERSION: &[u8] = b"schema_version";

/// sled's page cache size. Reads come from the mirror, and writes touch mostly the right
/// edge of the trees (time-ordered ids and audit keys), so a small cache costs no write
/// speed (measured: 100,000 creates as fast at 16 MiB as at 64 MiB) and keeps memory down.
const CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// What can go wrong opening or using the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds sled's lock.
    #[error("the store at {path} is in use by another process (is the daemon running?)")]
    Locked {
        /// The store directory.
        path: PathBuf,
    },
    /// The store was written by a newer retrac-sync.
    #[error("the store at {path} has schema version {found}, but this retrac-sync understands up to {supported}; upgrade retrac-sync")]
    NewerSchema {
        /// The store directory.
        path: PathBuf,
        /// The version on disk.
        found: u32,
        /// What this build supports.
        supported: u32,
    },
    /// The directory could not be created or its mode set.
    #[error("cannot prepare the store directory {path}: {source}")]
    Directory {
        /// The store directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A record could not be decoded.
    #[error("the store holds a record it cannot read ({0}); the store may be damaged")]
    Corrupt(String),
    /// sled failed.
    #[error("store error: {0}")]
    Sled(#[from] sled::Error),
}

impl From<UnabortableTransactionError> for StoreError {
    fn from(e: UnabortableTransactionError) -> Self {
        match e {
            UnabortableTransactionError::Storage(e) => StoreError::Sled(e),
            UnabortableTransactionError::Conflict => {
                StoreError::Corrupt("transaction conflict escaped its retry loop".into())
            }
        }
    }
}

/// The open store. Cheap to clone; all clones share one database.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    db: sled::Db,
    members: sled::Tree,
    by_user_name: sled::Tree,
    by_external_id: sled::Tree,
    audit: sled::Tree,
    meta: sled::Tree,
    tokens: sled::Tree,
    sync_runs: sled::Tree,
    held_changes: sled::Tree,
    flusher: Arc<flush::GroupFlush>,
    /// Every member in memory, kept in step with the trees after each commit, so reads
    /// cost no decoding. Only `transact` changes it, under `writer`.
    mirror: RwLock<Mirror>,
    /// One member transaction at a time: the mirror is updated in commit order, and sled
    /// never has to retry a member transaction.
    writer: Mutex<()>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the store in `path`, a directory created with mode 0700.
    ///
    /// Fails without changing anything when another process holds the store or when
    /// it was written by a newer schema.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        prepare_dir(path)?;
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            // Reads are served by the in-memory mirror, so sled's own page cache only
            // helps writes; its 1 GiB default would dominate the daemon's memory.
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(ref io) if io.to_string().contains("could not acquire lock") => {
                    StoreError::Locked {
                        path: path.to_path_buf(),
                    }
                }
                other => StoreError::Sled(other),
            })?;
        let meta = db.open_tree("meta")?;
        match meta.get(META_SCHEMA_VERSION)? {
            Some(v) => {
                let found = decode_u32(&v)?;
                if found > SCHEMA_VERSION {
                    return Err(StoreError::NewerSchema {
                        path: path.to_path_buf(),
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
                if found < SCHEMA_VERSION {
                    upgrade(&db, &meta, found)?;
                }
            }
            None => {
                meta.insert(META_SCHEMA_VERSION, &SCHEMA_VERSION.to_be_bytes())?;
            }
        }
        let members = db.open_tree("members")?;
        let mirror = Mirror::load(&members)?;
        let store = Store {
            inner: Arc::new(Inner {
                mirror: RwLock::new(mirror),
                writer: Mutex::new(()),
                path: path.to_path_buf(),
                members,
                by_user_name: db.open_tree("idx_user_name")?,
                by_external_id: db.open_tree("idx_external_id")?,
                audit: db.open_tree("audit")?,
                tokens: db.open_tree("tokens")?,
                sync_runs: db.open_tree("sync_runs")?,
                held_changes: db.open_tree("held_changes")?,
                meta,
                flusher: flush::GroupFlush::new(db.clone()),
                db,
            }),
        };
        store.inner.db.flush()?;
        Ok(store)
    }

    /// The directory the store lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The schema version recorded in the store.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        match self.inner.meta.get(META_SCHEMA_VERSION)? {
            Some(v) => decode_u32(&v),
            None => Ok(SCHEMA_VERSION),
        }
    }

    fn mirror(&self) -> std::sync::RwLockReadGuard<'_, Mirror> {
        self.inner.mirror.read().unwrap_or_else(|p| p.into_inner())
    }

    /// A member by id.
    pub fn get(&self, id: MemberId) -> Result<Option<Member>, StoreError> {
        Ok(self.mirror().get(id).map(|m| (*m).clone()))
    }

    /// A shared handle on a member by id, without copying it.
    pub fn get_shared(&self, id: MemberId) -> Option<Arc<Member>> {
        self.mirror().get(id)
    }

    /// The id of the member with this user name (case-insensitive), from the index.
    pub fn id_by_user_name(&self, user_name: &str) -> Result<Option<MemberId>, StoreError> {
        Ok(self.mirror().id_by_name(&normalize_email_cow(user_name)))
    }

    /// A shared handle on the member with this user name (case-insensitive), without copying it.
    pub fn shared_by_user_name(&self, user_name: &str) -> Option<Arc<Member>> {
        let key = normalize_email_cow(user_name);
        let mirror = self.mirror();
        mirror.id_by_name(&key).and_then(|id| mirror.get(id))
    }

    /// A shared handle on the member with this external id, without copying it.
    pub fn shared_by_external_id(&self, external_id: &str) -> Option<Arc<Member>> {
        let mirror = self.mirror();
        mirror
            .id_by_external_id(external_id)
            .and_then(|id| mirror.get(id))
    }

    /// The member with this user name (case-insensitive).
    pub fn get_by_user_name(&self, user_name: &str) -> Result<Option<Member>, StoreError> {
        Ok(self.shared_by_user_name(user_name).map(|m| (*m).clone()))
    }

    /// The member with this external id (exact).
    pub fn get_by_external_id(&self, external_id: &str) -> Result<Option<Member>, StoreError> {
        Ok(self
            .shared_by_external_id(external_id)
            .map(|m| (*m).clone()))
    }

    /// Resolves what an owner typed: a member id, or an email (case-insensitive).
    pub fn find(&self, id_or_email: &str) -> Result<Option<Member>, StoreError> {
        if let Some(id) = MemberId::parse(id_or_email) {
            if let Some(m) = self.get(id)? {
                return Ok(Some(m));
            }
        }
        self.get_by_user_name(id_or_email)
    }

    /// How many member records the store holds (active or not).
    pub fn member_count(&self) -> usize {
        self.mirror().len()
    }

    /// How many members are (active, inactive).
    pub fn member_counts(&self) -> (usize, usize) {
        self.mirror().counts()
    }

    /// How many members SCIM lists (every member but the SCIM-deleted ones).
    pub fn scim_listing_len(&self) -> usize {
        self.mirror().scim_len()
    }

    /// The ids of the members SCIM lists at 0-based positions `start..start+count` of the
    /// order by normalised user name (descending: from the end). Costs O(start / 512), not
    /// O(start).
    pub fn scim_listing_page(&self, start: usize, count: usize, descending: bool) -> Vec<MemberId> {
        self.mirror().scim_page(start, count, descending)
    }

    /// A snapshot of every member, ordered by normalised user name.
    pub fn snapshot(&self) -> Vec<Arc<Member>> {
        self.mirror().ordered()
    }

    /// Every member, ordered by normalised user name (a snapshot taken now).
    pub fn members(&self) -> impl Iterator<Item = Result<Member, StoreError>> {
        self.snapshot().into_iter().map(|m| Ok((*m).clone()))
    }

    /// Every member in id order, decoded from the records on disk (not the mirror).
    pub fn members_by_id(&self) -> impl Iterator<Item = Result<Member, StoreError>> + '_ {
        self.inner.members.iter().map(|kv| {
            let (_, v) = kv?;
            decode_member(&v)
        })
    }

    /// Audit entries matching `query`, oldest first.
    pub fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        audit::query(&self.inner.audit, query)
    }

    /// Checks that the indexes and the records agree; returns the problems found.
    pub fn check_consistency(&self) -> Result<Vec<String>, StoreError> {
        let mut problems = Vec::new();
        let mut names = 0usize;
        let mut externals = 0usize;
        for m in self.members_by_id() {
            let m = m?;
            match self.inner.by_user_name.get(m.user_name.normalized())? {
                Some(id) if decode_id(&id)? == m.id => names += 1,
                other => problems.push(format!(
                    "user name index for {} points at {:?}",
                    m.user_name,
                    other.map(|v| decode_id(&v))
                )),
            }
            if let Some(ext) = &m.external_id {
                match self.inner.by_external_id.get(ext.as_bytes())? {
                    Some(id) if decode_id(&id)? == m.id => externals += 1,
                    _ => problems.push(format!("external id index misses {ext} of {}", m.id)),
                }
            }
        }
        if names != self.inner.by_user_name.len() {
            problems.push(format!(
                "user name index has {} entries for {names} members",
                self.inner.by_user_name.len()
            ));
        }
        let on_disk = self.inner.members.len();
        if self.member_count() != on_disk {
            problems.push(format!(
                "memory holds {} members, the disk {on_disk}",
                self.member_count()
            ));
        }
        for m in self.members_by_id() {
            let m = m?;
            if self.get(m.id)?.as_ref() != Some(&m) {
                problems.push(format!("member {} in memory differs from the disk", m.id));
            }
        }
        let mut listed: Vec<(String, MemberId)> = self
            .members_by_id()
            .filter_map(|m| m.ok())
            .filter(|m| !m.scim_deleted)
            .map(|m| (m.user_name.normalized(), m.id))
            .collect();
        listed.sort_unstable();
        let want: Vec<MemberId> = listed.into_iter().map(|(_, id)| id).collect();
        if self.scim_listing_page(0, usize::MAX, false) != want
            || self.scim_listing_len() != want.len()
        {
            problems.push("the SCIM listing order differs from the records".into());
        }
        if externals != self.inner.by_external_id.len() {
            problems.push(format!(
                "external id index has {} entries for {externals} linked members",
                self.inner.by_external_id.len()
            ));
        }
        Ok(problems)
    }

    /// Makes every write so far durable. Concurrent callers share one fsync.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.inner.flusher.flush().await
    }

    /// Why the store turned read-only, once a flush has failed: what is in memory may
    /// never reach the disk, so no write is accepted and the daemon stops.
    pub fn flush_failure(&self) -> Option<String> {
        self.inner.flusher.failure()
    }

    /// Resolves with the reason when a flush fails.
    pub async fn flush_failed(&self) -> String {
        self.inner.flusher.failed().await
    }

    /// Test support, never called by the daemon: the next flush fails with `why`, as a
    /// failed fsync would.
    #[doc(hidden)]
    pub fn inject_flush_failure(&self, why: &str) {
        self.inner.flusher.inject_failure(why);
    }

    /// Makes every write so far durable, blocking the thread.
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.inner.db.flush()?;
        Ok(())
    }

    /// The tree of SCIM tokens (owned by the SCIM module).
    pub fn tokens_tree(&self) -> &sled::Tree {
        &self.inner.tokens
    }

    /// The tree of recorded sync runs (owned by the reconcile module).
    pub fn sync_runs_tree(&self) -> &sled::Tree {
        &self.inner.sync_runs
    }

    /// The tree of held changes (owned by the reconcile module).
    pub fn held_changes_tree(&self) -> &sled::Tree {
        &self.inner.held_changes
    }

    /// The tree of single values.
    pub fn meta_tree(&self) -> &sled::Tree {
        &self.inner.meta
    }

    /// A fresh monotonic id from sled.
    pub fn generate_id(&self) -> Result<u64, StoreError> {
        Ok(self.inner.db.generate_id()?)
    }

    /// Runs `f` in one sled transaction over the member trees. Only `provision` calls this.
    ///
    /// `f` may run more than once (sled retries on conflict), so it must not have side
    /// effects outside the transaction.
    pub(crate) fn transact<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: Fn(&mut MemberTx<'_>) -> Result<T, StoreError>,
    {
        let i = &self.inner;
        if let Some(why) = i.flusher.failure() {
            return Err(StoreError::Corrupt(format!(
                "the store is read-only since a flush failed: {why}"
            )));
        }
        let _writer = i.writer.lock().unwrap_or_else(|p| p.into_inner());
        let overlay = RefCell::new(Overlay::default());
        let pending_audit = RefCell::new(Vec::new());
        let result = {
            let mirror = self.mirror();
            (&i.members, &i.by_user_name, &i.by_external_id, &i.audit).transaction(
                |(members, by_name, by_ext, audit)| {
                    // sled may run this closure again; start from a clean slate each time.
                    *overlay.borrow_mut() = Overlay::default();
                    pending_audit.borrow_mut().clear();
                    let mut tx = MemberTx {
                        members,
                        by_name,
                        by_ext,
                        audit,
                        mirror: &mirror,
                        overlay: &overlay,
                        pending_audit: &pending_audit,
                    };
                    let t = f(&mut tx).map_err(ConflictableTransactionError::Abort)?;
                    tx.write_audit()
                        .map_err(ConflictableTransactionError::Abort)?;
                    Ok(t)
                },
            )
        };
        match result {
            Ok(t) => {
                // Committed: make the mirror agree, still under the writer lock.
                let mut mirror = i.mirror.write().unwrap_or_else(|p| p.into_inner());
                mirror.apply(overlay.into_inner());
                Ok(t)
            }
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(StoreError::Sled(e)),
        }
    }
}

/// The member trees inside one transaction.
pub(crate) struct MemberTx<'a> {
    members: &'a TransactionalTree,
    by_name: &'a TransactionalTree,
    by_ext: &'a TransactionalTree,
    audit: &'a TransactionalTree,
    /// The committed state (the writer lock keeps it still during the transaction).
    mirror: &'a Mirror,
    /// This transaction's own writes, read before the mirror.
    overlay: &'a RefCell<Overlay>,
    /// This transaction's audit entries, written in groups when it ends.
    pending_audit: &'a RefCell<Vec<AuditEntry>>,
}

impl MemberTx<'_> {
    /// A member by id, as this transaction sees it.
    pub(crate) fn get(&self, id: MemberId) -> Result<Option<Member>, StoreError> {
        if let Some(m) = self.overlay.borrow().members.get(&id) {
            return Ok(Some(m.clone()));
        }
        Ok(self.mirror.get(id).map(|m| (*m).clone()))
    }

    /// The id holding this user name, as this transaction sees it.
    pub(crate) fn id_by_user_name(&self, user_name: &str) -> Result<Option<MemberId>, StoreError> {
        let key = normalize_email(user_name);
        if let Some(v) = self.overlay.borrow().names.get(&key) {
            return Ok(*v);
        }
        Ok(self.mirror.id_by_name(&key))
    }

    /// The id holding this external id, as this transaction sees it.
    pub(crate) fn id_by_external_id(&self, ext: &str) -> Result<Option<MemberId>, StoreError> {
        if let Some(v) = self.overlay.borrow().externals.get(ext) {
            return Ok(*v);
        }
        Ok(self.mirror.id_by_external_id(ext))
    }

    /// Writes `new`, moving its index entries away from `old`'s.
    pub(crate) fn put(&self, old: Option<&Member>, new: &Member) -> Result<(), StoreError> {
        let id = new.id.as_bytes();
        let new_name = new.user_name.normalized();
        let mut overlay = self.overlay.borrow_mut();
        if let Some(old) = old {
            let old_key = old.user_name.normalized();
            if old_key != new_name {
                self.by_name.remove(old_key.as_bytes())?;
                overlay.names.insert(old_key, None);
            }
            if let Some(old_ext) = &old.external_id {
                if new.external_id.as_deref() != Some(old_ext) {
                    self.by_ext.remove(old_ext.as_bytes())?;
                    overlay.externals.insert(old_ext.clone(), None);
                }
            }
        }
        self.by_name.insert(new_name.as_bytes(), id)?;
        overlay.names.insert(new_name, Some(new.id));
        if let Some(ext) = &new.external_id {
            self.by_ext.insert(ext.as_bytes(), id)?;
            overlay.externals.insert(ext.clone(), Some(new.id));
        }
        self.members.insert(id, codec::encode(new)?)?;
        overlay.members.insert(new.id, new.clone());
        Ok(())
    }

    /// Appends an audit entry (its `seq` is assigned here). It is written with the
    /// transaction's other entries when the transaction ends.
    pub(crate) fn append_audit(&self, mut entry: AuditEntry) -> Result<(), StoreError> {
        entry.seq = self.audit.generate_id()?;
        self.pending_audit.borrow_mut().push(entry);
        Ok(())
    }

    /// Writes the pending audit entries, [`AUDIT_CHUNK`] to a key, each group under the
    /// time and sequence of its first entry.
    fn write_audit(&self) -> Result<(), StoreError> {
        let pending = self.pending_audit.borrow();
        for group in pending.chunks(AUDIT_CHUNK) {
            let Some(first) = group.first() else { continue };
            let key = audit::key(first.time, first.seq);
            let bytes =
                serde_json::to_vec(group).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            self.audit.insert(&key[..], bytes)?;
        }
        Ok(())
    }
}

/// Brings a store of an older schema up to [`SCHEMA_VERSION`].
fn upgrade(db: &sled::Db, meta: &sled::Tree, found: u32) -> Result<(), StoreError> {
    if found < 2 {
        // Version 1 kept a per-member index of the audit; the audit is now scanned
        // instead. Its single-entry records are read as they are.
        db.drop_tree("audit_by_member")?;
    }
    meta.insert(META_SCHEMA_VERSION, &SCHEMA_VERSION.to_be_bytes())?;
    db.flush()?;
    tracing::info!(
        from = found,
        to = SCHEMA_VERSION,
        "upgraded the store's schema"
    );
    Ok(())
}

fn prepare_dir(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |source| StoreError::Directory {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    Ok(())
}

fn decode_member(bytes: &[u8]) -> Result<Member, StoreError> {
    codec::decode(bytes)
}

fn decode_id(bytes: &[u8]) -> Result<MemberId, StoreError> {
    MemberId::from_slice(bytes).ok_or_else(|| StoreError::Corrupt("bad member id in index".into()))
}

fn decode_u32(bytes: &[u8]) -> Result<u32, StoreError> {
    let arr: [u8; 4] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("bad schema version".into()))?;
    Ok(u32::from_be_bytes(arr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_is_created_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/store");
        let store = Store::open(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn a_second_open_of_a_locked_store_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path()).unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
        assert!(err
            .to_string()
            .contains("is in use by another process (is the daemon running?)"));
    }

    #[test]
    fn a_newer_schema_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .meta_tree()
                .insert(META_SCHEMA_VERSION, &(SCHEMA_VERSION + 1).to_be_bytes())
                .unwrap();
            store.flush_blocking().unwrap();
        }
        let err = Store::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, StoreError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1)
        );
        assert!(err.to_string().contains("upgrade retrac-sync"));
        // Refusing did not rewrite the version.
        let db = sled::open(dir.path()).unwrap();
        let v = db
            .open_tree("meta")
            .unwrap()
            .get(META_SCHEMA_VERSION)
            .unwrap()
            .unwrap();
        assert_eq!(decode_u32(&v).unwrap(), SCHEMA_VERSION + 1);
    }

    fn create(n: usize) -> crate::member::Change {
        let user = crate::member::UserName::parse(&format!("user{n:03}@example.com")).unwrap();
        crate::member::Change::Create {
            attrs: crate::member::DirectoryAttrs::new(user, Some("Ada"), Some("Lovelace")),
            managed_by: crate::member::ManagedBy::Google,
        }
    }

    fn at(sec: i64) -> chrono::DateTime<chrono::Utc> {
        chrono::TimeZone::timestamp_opt(&chrono::Utc, 1_790_000_000 + sec, 0).unwrap()
    }

    #[test]
    fn a_batchs_audit_entries_are_grouped_and_read_back_by_member_time_and_limit() {
        use crate::member::{Actor, Change};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let changes: Vec<Change> = (0..100).map(create).collect();
        let actor = Actor::Pull("run-1".into());
        let results = crate::provision::apply_batch(&store, &changes, &actor, at(0)).unwrap();
        assert!(results.iter().all(|r| r.is_ok()));
        // 100 entries in groups of 32: four keys, not a hundred.
        assert_eq!(store.inner.audit.len(), 100_usize.div_ceil(AUDIT_CHUNK));
        let target = store
            .get_by_user_name("user042@example.com")
            .unwrap()
            .unwrap();
        crate::provision::apply(
            &store,
            Change::Deactivate {
                id: target.id,
                expected_version: Some(target.version),
            },
            &actor,
            at(60),
        )
        .unwrap();

        let all = store.audit(&AuditQuery::default()).unwrap();
        assert_eq!(all.len(), 101);
        assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "oldest first");
        assert_eq!(all[0].user_name, "user000@example.com");
        assert_eq!(all[100].change, "deactivate");

        let mine = store
            .audit(&AuditQuery {
                member: Some(target.id),
                ..AuditQuery::default()
            })
            .unwrap();
        let kinds: Vec<&str> = mine.iter().map(|e| e.change.as_str()).collect();
        assert_eq!(kinds, ["create", "deactivate"]);
        assert!(mine.iter().all(|e| e.member_id == target.id));

        let since = store
            .audit(&AuditQuery {
                since: Some(at(30)),
                ..AuditQuery::default()
            })
            .unwrap();
        assert_eq!(since.len(), 1);
        assert_eq!(since[0].change, "deactivate");

        let last3 = store
            .audit(&AuditQuery {
                limit: Some(3),
                ..AuditQuery::default()
            })
            .unwrap();
        let names: Vec<&str> = last3.iter().map(|e| e.user_name.as_str()).collect();
        assert_eq!(
            names,
            [
                "user098@example.com",
                "user099@example.com",
                "user042@example.com"
            ]
        );
        let none = store
            .audit(&AuditQuery {
                limit: Some(0),
                ..AuditQuery::default()
            })
            .unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn a_schema_1_store_is_upgraded_in_place_and_its_audit_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let old_entry = serde_json::json!({
            "seq": 7,
            "time": "2026-09-21T10:00:00Z",
            "actor": {"kind": "owner"},
            "member_id": "0192a3b4-c5d6-7e8f-9a0b-1c2d3e4f5a6b",
            "user_name": "old@example.com",
            "change": "create",
            "before": {},
            "after": {"userName": "old@example.com"}
        });
        {
            // A store as schema 1 wrote it: one entry per key, a per-member audit index.
            let db = sled::open(dir.path()).unwrap();
            db.open_tree("meta")
                .unwrap()
                .insert(META_SCHEMA_VERSION, &1u32.to_be_bytes())
                .unwrap();
            let time: chrono::DateTime<chrono::Utc> = "2026-09-21T10:00:00Z".parse().unwrap();
            let key = audit::key(time, 7);
            db.open_tree("audit")
                .unwrap()
                .insert(&key[..], serde_json::to_vec(&old_entry).unwrap())
                .unwrap();
            db.open_tree("audit_by_member")
                .unwrap()
                .insert(b"anything", &[][..])
                .unwrap();
            db.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        assert!(!store
            .inner
            .db
            .tree_names()
            .iter()
            .any(|n| &n[..] == b"audit_by_member"));
        crate::provision::apply(
            &store,
            create(1),
            &crate::member::Actor::Owner,
            chrono::Utc::now(),
        )
        .unwrap();
        let entries = store.audit(&AuditQuery::default()).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].user_name, "old@example.com");
        assert_eq!(entries[0].seq, 7);
        assert_eq!(entries[1].user_name, "user001@example.com");
    }

    #[test]
    fn the_scim_listing_follows_every_write_at_once() {
        use crate::member::{Actor, Change, DirectoryAttrs, UserName};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let actor = Actor::Scim("t".into());
        let changes: Vec<Change> = [3, 1, 2].into_iter().map(create).collect();
        crate::provision::apply_batch(&store, &changes, &actor, at(0)).unwrap();
        let id = |n: &str| store.get_by_user_name(n).unwrap().unwrap();
        let (one, two, three) = (
            id("user001@example.com"),
            id("user002@example.com"),
            id("user003@example.com"),
        );
        assert_eq!(
            store.scim_listing_page(0, 10, false),
            [one.id, two.id, three.id]
        );
        assert_eq!(store.scim_listing_page(1, 1, true), [two.id]);

        // A SCIM delete hides the member; a rename moves it; both at once, in one batch.
        let rename = DirectoryAttrs::new(
            UserName::parse("A-first@Example.com").unwrap(),
            Some("Ada"),
            Some("Lovelace"),
        );
        let batch = [
            Change::ScimDelete {
                id: two.id,
                expected_version: None,
            },
            Change::Update {
                id: three.id,
                expected_version: None,
                attrs: rename,
            },
        ];
        for r in crate::provision::apply_batch(&store, &batch, &actor, at(1)).unwrap() {
            r.unwrap();
        }
        assert_eq!(store.scim_listing_len(), 2);
        assert_eq!(store.scim_listing_page(0, 10, false), [three.id, one.id]);
        assert!(store.check_consistency().unwrap().is_empty());

        // The owner restores the deleted member; the listing has it back, and so does a
        // reopened store.
        crate::provision::apply(&store, Change::Restore { id: two.id }, &Actor::Owner, at(2))
            .unwrap();
        assert_eq!(
            store.scim_listing_page(0, 10, false),
            [three.id, one.id, two.id]
        );
        store.flush_blocking().unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.scim_listing_page(0, 10, false),
            [three.id, one.id, two.id]
        );
        assert!(store.check_consistency().unwrap().is_empty());
    }
}
