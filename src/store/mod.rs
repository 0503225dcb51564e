//! The member store, on sled.
//!
//! Trees (schema 3):
//! - `members`: member id (16 bytes) -> member record ([`codec`], postcard);
//! - `audit`: time (µs, big endian) ++ sequence -> the audit entries of one transaction (at
//!   most [`AUDIT_CHUNK`] of them, postcard behind a format byte; a JSON array in stores
//!   written before, still read: `audit.rs`), so it reads in time order;
//! - `events`: the event outbox (`events.rs`); `console`: the console's sessions and sign-in
//!   links (`console.rs`);
//! - `meta`: `schema_version` and other single values;
//! - `tokens`, `sync_runs`, `held_changes`: owned by the SCIM and pull modules;
//! - `webhooks`: the webhook endpoints, where their deliveries stand and their delivery
//!   logs (`webhooks.rs`), owned by the webhook relay.
//!
//! The user-name, external-id and Google-id indexes are not in sled: they live in memory
//! ([`mirror`]), built at open in one pass over the records. Two records that claim one
//! folded user name, external id or Google id make the open fail, naming both, and write
//! nothing.
//!
//! A record and its audit entry change in one sled transaction, and only
//! [`crate::provision`] opens such a transaction.
//!
//! Why: sled 0.34 costs about 6 µs per key written (it copies the node on every insert). A
//! member write was three keys in schema 2 (record and two index trees) plus its share of an
//! audit group; it is now one key plus that share.
//!
//! Older schemas upgrade in place at open ([`upgrade`]): 1 had a per-member audit index
//! (`audit_by_member`) and one audit entry per key (still readable as they are); 2 had the
//! index trees `idx_user_name` and `idx_external_id`, and records of format 1 with one
//! `external_id` for both the Google id and SCIM's `externalId`.

mod audit;
mod codec;
mod console;
mod events;
mod flush;
mod read;
mod retention;
mod runs;
mod scan;
mod scim;
mod tx;
mod upgrade;
mod webhooks;
mod writer;

pub use audit::{AuditEntry, AuditQuery};
pub use console::{ConsoleLink, ConsoleSession, SecretHash};
pub(crate) use events::NewEvent;
pub use events::{EventPrune, EVENT_PRUNE_BATCH};
pub use retention::{
    spawn_audit_retention, spawn_event_retention, AUDIT_PRUNE_EVERY, EVENT_PRUNE_EVERY,
};
pub use runs::{HeldDeactivation, HeldSet, RunCounts, RunId, RunStatus, SyncRun};
pub use scim::{TokenRecord, TokenScope};
pub(crate) use tx::MemberTx;
pub use webhooks::{
    DeliveryRecord, DeliveryState, EndpointRecord, PreviousSecret, WebhookSecret, DELIVERY_LOG_KEEP,
};

mod mirror;
mod order;

/// One member as the in-memory mirror keeps it (read through [`crate::member::MemberLike`]).
pub(crate) use mirror::Entry as MemberEntry;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use mirror::{Entry, Mirror, Overlay};

use sled::transaction::{
    ConflictableTransactionError, TransactionError, UnabortableTransactionError,
};
use sled::Transactional;

use crate::member::Member;

/// The store layout this build reads and writes (3: no index trees, records of format 2 with
/// `google_id` apart from `external_id`).
pub const SCHEMA_VERSION: u32 = 3;

/// The index trees of schema 2, dropped by the upgrade to 3.
const SCHEMA_2_INDEX_TREES: [&str; 2] = ["idx_user_name", "idx_external_id"];

/// At most this many audit entries share one key of the audit tree. sled writes a whole
/// node (up to 17 keys) to its log when it rewrites it, and writes anything over 128 KiB
/// to a blob file of its own, created and later deleted. At 32 entries a key, node
/// rewrites of the audit tree were such files: 2,034 of them (309 MB) after 1,000,000
/// creates. At 8, none: 1,000,000 creates took 13.1 s instead of 13.8 s, and the store
/// took 922 MB instead of 1.1 GB. Stores written with larger groups read the same.
pub const AUDIT_CHUNK: usize = 8;

const META_SCHEMA_VERSION: &[u8] = b"schema_version";

/// How many members the store held when it was last opened: only a hint to pre-size the
/// mirror's tables at the next open (a stale value costs a rehash, nothing else).
const META_MEMBER_COUNT: &[u8] = b"member_count_hint";
/// The id of the middle record at the last open: where the next open cuts the members in
/// two for its two reading threads ([`key_halves`]).
const META_SPLIT_KEY: &[u8] = b"member_split_hint";

/// A hint larger than this is not trusted for pre-sizing.
const MAX_SIZE_HINT: u64 = 50_000_000;

/// sled's page cache size. Reads come from the mirror, and writes touch mostly the right
/// edge of the trees (time-ordered ids and audit keys), so a small cache costs no write
/// speed (measured: 100,000 creates as fast at 16 MiB as at 64 MiB) and keeps memory down.
const CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// sled's page cache for a store opened lazily, whose members are likely read once, in
/// order, by a scan: a cache then only holds pages that will not be read again (measured at
/// 1,000,000 members: `members show` of the last record peaked at 104 MB with
/// [`CACHE_BYTES`], 87.8 MB with this). A one-shot command that goes on to build the mirror
/// and write keeps this cache: its writes are few.
const SCAN_CACHE_BYTES: u64 = 1024 * 1024;

/// At most this many audit keys (groups of up to [`AUDIT_CHUNK`] entries) are removed per
/// hold of the writer lock by [`Store::prune_audit`]. sled removes a key in about 6 µs here,
/// so a batch holds the lock well under a millisecond.
pub const AUDIT_PRUNE_KEYS: usize = 64;

/// And no batch goes on past this, whatever sled's speed (the target is 10 ms at most).
pub const AUDIT_PRUNE_BUDGET: std::time::Duration = std::time::Duration::from_millis(5);

/// What one [`Store::prune_audit`] pass did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuditPrune {
    /// Audit keys removed (each holds the entries of one transaction, up to [`AUDIT_CHUNK`]).
    pub removed_keys: usize,
    /// How many times the writer lock was taken to remove some.
    pub batches: usize,
    /// The longest the writer lock was held by one batch.
    pub longest_hold: std::time::Duration,
    /// The time of the oldest entry left.
    pub oldest_left: Option<chrono::DateTime<chrono::Utc>>,
}

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
    /// Writing to disk failed (a flush). What is in memory may never reach the disk, so
    /// the store takes no more writes in this process; sled recovers from its log when the
    /// store is opened again. The records on disk are not known to be damaged.
    #[error(
        "the store could not write to disk ({0}); it takes no more writes until it is opened again"
    )]
    Io(String),
    /// The program failed around the store (a task that panicked or was cancelled, a
    /// transaction that escaped its retry loop); the records are not at fault.
    #[error("internal error: {0}")]
    Internal(String),
    /// Two records claim one user name (compared folded), external id or Google id.
    #[error("members {first} and {second} both claim the {what} {key:?}; the store cannot be opened until one of them is changed (user names compare by NFKC and full case folding since schema 3)")]
    Collision {
        /// `user name`, `external id` or `Google id`.
        what: &'static str,
        /// The key they share (for a user name, its folded form).
        key: String,
        /// One member: id (user name).
        first: String,
        /// The other.
        second: String,
    },
    /// sled failed.
    #[error("store error: {0}")]
    Sled(#[from] sled::Error),
    /// The store's file system has less free space than `[store].min_free_bytes`: writes are
    /// refused before they start, reads go on.
    #[error("the disk holding the store has {} free, below [store].min_free_bytes = {}: writes are refused until space is freed (reads go on)", mib(*free), mib(*floor))]
    NoSpace {
        /// Bytes free for the daemon's user.
        free: u64,
        /// `[store].min_free_bytes`.
        floor: u64,
    },
}

/// Bytes as MiB with one decimal, for messages.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

impl From<UnabortableTransactionError> for StoreError {
    fn from(e: UnabortableTransactionError) -> Self {
        match e {
            UnabortableTransactionError::Storage(e) => StoreError::Sled(e),
            UnabortableTransactionError::Conflict => {
                StoreError::Internal("transaction conflict escaped its retry loop".into())
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
    audit: sled::Tree,
    meta: sled::Tree,
    tokens: sled::Tree,
    sync_runs: sled::Tree,
    held_changes: sled::Tree,
    /// The event outbox (see `events.rs`).
    events: sled::Tree,
    /// The outbox's numbering and its watchers.
    events_clock: events::EventClock,
    /// The webhook endpoints, their delivery state and logs (see `webhooks.rs`).
    webhooks: sled::Tree,
    /// The console's sessions and one-time sign-in links, by the SHA-256 of their secret
    /// (see `console.rs`).
    console: sled::Tree,
    /// Bumped on each change of an endpoint, so the relay picks it up at once.
    webhook_changes: tokio::sync::watch::Sender<u64>,
    /// Held by every read-modify-write of an endpoint or its delivery state (the owner's
    /// commands and the relay), so that neither undoes the other's change.
    webhook_lock: Mutex<()>,
    flusher: Arc<flush::GroupFlush>,
    /// Every member in memory, with the indexes, kept in step with the records after each
    /// commit, so reads cost no decoding. Only `transact` changes it, under `writer`.
    mirror: RwLock<Mirror>,
    /// Whether `mirror` holds the members: from the open ([`Store::open`]), or from the
    /// first call that needs it ([`Store::open_lazy`]).
    mirror_built: std::sync::atomic::AtomicBool,
    /// Taken while a deferred mirror is built, so it is built once.
    mirror_building: Mutex<()>,
    /// One member transaction at a time: the mirror is updated in commit order, and sled
    /// never has to retry a member transaction.
    writer: Mutex<()>,
    /// The queue to the writer thread, which runs SCIM's writes and their group flush
    /// (see `writer.rs`).
    writer_queue: writer::WriterQueue,
    /// When the writer thread's current step started (its callers' deadline).
    writer_clock: writer::WriterClock,
    /// Bumped after every token record written through this store (created or revoked),
    /// so the SCIM authenticator's copy of the records knows to reload.
    token_writes: std::sync::atomic::AtomicU64,
    /// Writes so far, bumped after each is in sled's memory: the group flush's tickets
    /// (see `flush.rs`).
    writes: Arc<std::sync::atomic::AtomicU64>,
    /// `[store].min_free_bytes`: below this much free space on the store's file system,
    /// writes are refused ([`StoreError::NoSpace`]); 0 = no check.
    min_free_bytes: std::sync::atomic::AtomicU64,
}

/// How long one write (a transaction, a flush) may take before the store is taken for stuck
/// (a full or failing disk can make sled wait for ever): the write answers
/// [`StoreError::Io`] and the store turns read-only, as for a failed flush.
pub const WRITE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(4);

/// At most this many members are looked at for one [`Store::browse`] page (a search that
/// matches few of a million members answers in bounded time, with a "more" link).
pub const BROWSE_BUDGET: usize = 100_000;

/// Which members [`Store::browse`] lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BrowseQuery {
    /// Start after this folded user name (the `next` of the previous page).
    pub after: Option<String>,
    /// At most this many.
    pub limit: usize,
    /// Only active (`Some(true)`) or inactive (`Some(false)`) members.
    pub active: Option<bool>,
    /// Only members whose user name or name holds this, ignoring case.
    pub search: String,
}

/// A page of [`Store::browse`].
#[derive(Clone, Debug)]
pub struct MemberPage {
    /// In user-name order.
    pub members: Vec<Member>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<String>,
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
    /// Fails without changing anything when another process holds the store, when it was
    /// written by a newer schema, or when two records claim one user name, external id or
    /// Google id ([`StoreError::Collision`]). A store of an older schema is upgraded first.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with(path, false)
    }

    /// Opens the store as a one-shot command of the CLI does, without a daemon: as
    /// [`Store::open`], but the mirror is built only when a call first needs it. Until then
    /// [`Store::find`] and [`Store::members`] read the records (`scan.rs`): `members show`
    /// stops at the record that matches and `members list` streams them, so neither builds
    /// a copy of every member (at 1,000,000 members the mirror costs about a gigabyte and
    /// several seconds). A store of another schema is opened as by [`Store::open`].
    ///
    /// The uniqueness of user names, external ids and Google ids is checked when the mirror
    /// is built: a store that fails it then turns read-only ([`Store::fail`]), where
    /// [`Store::open`] fails. sled's page cache is the scan's, 1 MiB (`SCAN_CACHE_BYTES`).
    pub fn open_lazy(path: &Path) -> Result<Store, StoreError> {
        Store::open_with(path, true)
    }

    fn open_with(path: &Path, lazy: bool) -> Result<Store, StoreError> {
        let db = open_db(path, if lazy { SCAN_CACHE_BYTES } else { CACHE_BYTES })?;
        let meta = db.open_tree("meta")?;
        let members = db.open_tree("members")?;
        let schema = stored_schema(path, &meta)?;
        if lazy && schema != Some(SCHEMA_VERSION) {
            // A new store, or one to upgrade: opened whole, with the daemon's cache.
            drop((members, meta, db));
            return Store::open_with(path, false);
        }
        let defer = lazy;
        let mirror = match schema {
            _ if defer => Mirror::build_empty(),
            Some(found) if found < SCHEMA_VERSION => upgrade::upgrade(&db, &meta, &members, found)?,
            Some(_) => build_mirror(&meta, &members)?,
            None => {
                let mirror = build_mirror(&meta, &members)?;
                meta.insert(META_SCHEMA_VERSION, &SCHEMA_VERSION.to_be_bytes())?;
                mirror
            }
        };
        if !defer {
            meta.insert(META_MEMBER_COUNT, &(mirror.len() as u64).to_be_bytes())?;
            if let Some(id) = mirror.middle_id() {
                meta.insert(META_SPLIT_KEY, id.as_bytes())?;
            }
        }
        let writes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let events = db.open_tree("events")?;
        let events_clock = events::EventClock::open(&meta, &events)?;
        let store = Store {
            inner: Arc::new(Inner {
                mirror: RwLock::new(mirror),
                mirror_built: std::sync::atomic::AtomicBool::new(!defer),
                mirror_building: Mutex::new(()),
                writer: Mutex::new(()),
                writer_queue: writer::WriterQueue::default(),
                writer_clock: writer::WriterClock::default(),
                path: path.to_path_buf(),
                members,
                audit: db.open_tree("audit")?,
                tokens: db.open_tree("tokens")?,
                sync_runs: db.open_tree("sync_runs")?,
                held_changes: db.open_tree("held_changes")?,
                events,
                events_clock,
                webhooks: db.open_tree("webhooks")?,
                console: db.open_tree("console")?,
                webhook_changes: tokio::sync::watch::Sender::new(0),
                webhook_lock: Mutex::new(()),
                meta,
                flusher: flush::GroupFlush::new(db.clone(), writes.clone()),
                writes,
                token_writes: std::sync::atomic::AtomicU64::new(0),
                min_free_bytes: std::sync::atomic::AtomicU64::new(0),
                db,
            }),
        };
        store.inner.db.flush()?;
        Ok(store)
    }

    /// Whether the mirror holds the members (always, but for a store opened with
    /// [`Store::open_lazy`] that no call has needed it from yet).
    fn mirror_built(&self) -> bool {
        self.inner
            .mirror_built
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Builds the mirror of a store opened with [`Store::open_lazy`], once. Two records
    /// that claim one identity turn the store read-only, with why.
    fn build_deferred_mirror(&self) {
        let i = &self.inner;
        let _once = i.mirror_building.lock().unwrap_or_else(|p| p.into_inner());
        if self.mirror_built() {
            return;
        }
        match build_mirror(&i.meta, &i.members) {
            Ok(mirror) => {
                // Only a size hint for the next open: a failure to write it is harmless.
                let _ = i
                    .meta
                    .insert(META_MEMBER_COUNT, &(mirror.len() as u64).to_be_bytes());
                *i.mirror.write().unwrap_or_else(|p| p.into_inner()) = mirror;
            }
            Err(e) => self.fail(&format!("the members cannot be indexed: {e}")),
        }
        i.mirror_built
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// The member an entry of the mirror stands for. Its SCIM extra attributes are not in
    /// memory: a member that has some is read from its record (a rare request).
    fn materialize(&self, e: &Entry) -> Result<Member, StoreError> {
        if e.has_extra() {
            if let Some(v) = self.inner.members.get(e.id().as_bytes())? {
                return decode_member(&v);
            }
        }
        e.to_member()
    }

    /// The directory the store lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }
}

/// How long an open waits while sled's lock is held before it says [`StoreError::Locked`].
/// A store dropped a moment ago in this process can still hold the lock: sled's background
/// writer and its deferred frees keep the locked file open until they finish (the tests
/// that drop a store and open it again at once met this about one run in ten). Another
/// process's lock is reported after the wait.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Opens sled in `path` (a directory created with mode 0700) with a page cache of
/// `cache_bytes`, mapping a held lock to [`StoreError::Locked`] once it has been held for
/// [`LOCK_WAIT`].
fn open_db(path: &Path, cache_bytes: u64) -> Result<sled::Db, StoreError> {
    prepare_dir(path)?;
    let started = std::time::Instant::now();
    loop {
        let opened = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            // Reads are served by the in-memory mirror, so sled's own page cache only
            // helps writes; its 1 GiB default would dominate the daemon's memory.
            .cache_capacity(cache_bytes)
            .open();
        match opened {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(ref io)) if io.to_string().contains("could not acquire lock") => {
                if started.elapsed() >= LOCK_WAIT {
                    return Err(StoreError::Locked {
                        path: path.to_path_buf(),
                    });
                }
                // A store this process dropped keeps sled's lock while frees deferred by
                // threads that have since ended (the open's second reader, a writer
                // thread) wait in crossbeam's global queue for the epoch to move: move it,
                // so they run and let it go. Frees still held by a live, idle thread (a
                // blocking-pool thread lingers about 10 s) stay where they are, so a
                // `Locked` error can still come after `LOCK_WAIT`.
                for _ in 0..4 {
                    crossbeam_epoch::pin().flush();
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(other) => return Err(StoreError::Sled(other)),
        }
    }
}

/// The schema version recorded in `meta` (`None` for a new store); a newer one than this
/// build's is refused.
fn stored_schema(path: &Path, meta: &sled::Tree) -> Result<Option<u32>, StoreError> {
    let Some(v) = meta.get(META_SCHEMA_VERSION)? else {
        return Ok(None);
    };
    let found = decode_u32(&v)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(Some(found))
}

impl Store {
    /// The mirror, built first if the store was opened lazily and this is its first need.
    fn mirror(&self) -> std::sync::RwLockReadGuard<'_, Mirror> {
        if !self.mirror_built() {
            self.build_deferred_mirror();
        }
        self.inner.mirror.read().unwrap_or_else(|p| p.into_inner())
    }

    // The reads (a member, the listings and counts, the audit and its retention, the
    // consistency check) are in `read.rs`.

    /// Makes every write so far durable. Concurrent callers share one fsync; with nothing
    /// written since the last flush, it returns at once.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.inner.flusher.flush().await
    }

    /// Whether some write is not durable yet (so an answer that may show it must wait for
    /// [`Store::flush`]), or the store has failed.
    pub fn flush_pending(&self) -> bool {
        self.inner.flusher.pending()
    }

    /// Why the store turned read-only, once a write or a flush has failed or missed its
    /// deadline: what is in memory may never reach the disk, so no write is accepted and the
    /// daemon stops.
    pub fn flush_failure(&self) -> Option<String> {
        self.inner.flusher.failure()
    }

    /// Turns the store read-only for `why` (an I/O error, a write past its deadline): every
    /// later write and flush fails, and [`Store::flush_failed`] resolves, which stops the
    /// daemon.
    pub fn fail(&self, why: &str) {
        if self.inner.flusher.failure().is_none() {
            tracing::error!(error = %why, "the store turns read-only");
        }
        self.inner.flusher.fail(why);
    }

    /// The result of a write to a sled tree outside a member transaction: an I/O error makes
    /// the store read-only ([`Store::fail`]), as one from a transaction or a flush does.
    pub(crate) fn io_checked<T>(&self, r: Result<T, sled::Error>) -> Result<T, StoreError> {
        if r.is_ok() {
            self.wrote();
        }
        r.map_err(|e| {
            if matches!(e, sled::Error::Io(_)) {
                self.fail(&format!("a write failed: {e}"));
                StoreError::Io(e.to_string())
            } else {
                StoreError::Sled(e)
            }
        })
    }

    /// Counts a write that is now in sled's memory: the next flush must cover it, and a
    /// flush asked for after it waits for that (`flush.rs`).
    fn wrote(&self) {
        self.inner
            .writes
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    /// Sets `[store].min_free_bytes` (0 = no check).
    pub fn set_min_free_bytes(&self, bytes: u64) {
        self.inner
            .min_free_bytes
            .store(bytes, std::sync::atomic::Ordering::Relaxed);
        metrics::gauge!("retrac_store_min_free_bytes").set(bytes as f64);
    }

    /// `[store].min_free_bytes` (0 = no check).
    pub fn min_free_bytes(&self) -> u64 {
        self.inner
            .min_free_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Bytes free for the daemon on the store's file system (`statvfs`: available blocks
    /// times the fragment size); also sets the gauge `retrac_store_free_bytes`.
    pub fn free_bytes(&self) -> Result<u64, StoreError> {
        let st = rustix::fs::statvfs(&self.inner.path)
            .map_err(|e| StoreError::Io(format!("statvfs {}: {e}", self.inner.path.display())))?;
        let free = st.f_bavail.saturating_mul(st.f_frsize);
        metrics::gauge!("retrac_store_free_bytes").set(free as f64);
        Ok(free)
    }

    /// Refuses a write while the store's file system has less free space than
    /// `[store].min_free_bytes` ([`StoreError::NoSpace`]).
    pub fn check_space(&self) -> Result<(), StoreError> {
        let floor = self
            .inner
            .min_free_bytes
            .load(std::sync::atomic::Ordering::Relaxed);
        if floor == 0 {
            return Ok(());
        }
        let free = self.free_bytes()?;
        if free < floor {
            return Err(StoreError::NoSpace { free, floor });
        }
        Ok(())
    }

    /// Runs `f` (a write) on the blocking pool, never on an async worker, and waits at most
    /// [`WRITE_DEADLINE`]. A write that misses it makes the store read-only (the disk is full
    /// or failing: sled can wait for ever there) and answers [`StoreError::Io`].
    pub async fn write_off_thread<T, E>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let store = self.clone();
        let task = tokio::task::spawn_blocking(move || f(&store));
        match tokio::time::timeout(WRITE_DEADLINE, task).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(StoreError::Internal(format!("a write task failed: {e}")).into()),
            Err(_) => {
                let why = format!(
                    "a write did not finish within {} s (is the disk full or failing?)",
                    WRITE_DEADLINE.as_secs()
                );
                self.fail(&why);
                Err(StoreError::Io(why).into())
            }
        }
    }

    /// A no-op through the writer path (the writer lock, on the blocking pool, within the
    /// write deadline): the daemon's watchdog pings systemd only after this succeeds, so a
    /// store that cannot write is restarted.
    pub async fn writer_alive(&self) -> Result<(), StoreError> {
        if let Some(why) = self.flush_failure() {
            return Err(StoreError::Io(why));
        }
        self.write_off_thread(|s| {
            drop(s.inner.writer.lock().unwrap_or_else(|p| p.into_inner()));
            Ok::<(), StoreError>(())
        })
        .await
    }

    /// Resolves with the reason when a flush fails.
    pub async fn flush_failed(&self) -> String {
        self.inner.flusher.failed().await
    }

    /// Test support, never called by the daemon: the next flush fails with `why`, as a
    /// failed fsync would. Only with the `test-support` feature (on for every test target,
    /// never in a release build), like `SyncContext::with_before_apply`.
    #[cfg(any(test, feature = "test-support"))]
    #[doc(hidden)]
    pub fn inject_flush_failure(&self, why: &str) {
        self.inner.flusher.inject_failure(why);
    }

    /// Makes every write so far durable, blocking the thread.
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.inner.db.flush()?;
        Ok(())
    }

    /// The tree of recorded sync runs (`runs.rs`; the store's own: read through its methods).
    fn sync_runs_tree(&self) -> &sled::Tree {
        &self.inner.sync_runs
    }

    /// The tree of held changes (`runs.rs`; the store's own: read through its methods).
    fn held_changes_tree(&self) -> &sled::Tree {
        &self.inner.held_changes
    }

    /// The tree of single values (the store's unit tests write a schema version).
    #[cfg(test)]
    fn meta_tree(&self) -> &sled::Tree {
        &self.inner.meta
    }

    /// Every raw record of the tokens tree (a unit test checks that no secret is stored).
    #[cfg(test)]
    pub(crate) fn raw_token_records(&self) -> Vec<sled::IVec> {
        self.inner
            .tokens
            .iter()
            .values()
            .map(|v| v.unwrap())
            .collect()
    }

    /// Replaces the raw record of the tokens tree at `key`, returning the one it replaced (a
    /// unit test damages a record to show that the copy in memory answers).
    #[cfg(test)]
    pub(crate) fn replace_raw_token_record(&self, key: &[u8], value: &[u8]) -> Option<sled::IVec> {
        self.inner.tokens.insert(key, value).unwrap()
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
        let _writer = self.begin_write()?;
        let overlay = RefCell::new(Overlay::default());
        let pending_audit = RefCell::new(Vec::new());
        let pending = events::Pending::new(i.events_clock.next());
        let result = {
            let mirror = self.mirror();
            (&i.members, &i.audit, &i.events).transaction(|(members, audit, events)| {
                // sled may run this closure again; start from a clean slate each time.
                *overlay.borrow_mut() = Overlay::default();
                pending_audit.borrow_mut().clear();
                pending.reset();
                let mut tx = MemberTx {
                    members,
                    audit,
                    pending: &pending,
                    mirror: &mirror,
                    overlay: &overlay,
                    pending_audit: &pending_audit,
                };
                let t = f(&mut tx).map_err(ConflictableTransactionError::Abort)?;
                tx.write_audit()
                    .map_err(ConflictableTransactionError::Abort)?;
                pending
                    .write(events)
                    .map_err(ConflictableTransactionError::Abort)?;
                Ok(t)
            })
        };
        self.settle(result, &pending, || {
            // Committed: make the mirror agree, still under the writer lock.
            let mut mirror = i.mirror.write().unwrap_or_else(|p| p.into_inner());
            mirror.apply(overlay.into_inner());
        })
    }

    /// What every write transaction does first: refuse when the store is read-only or the
    /// disk below `[store].min_free_bytes`, then take the writer lock (one transaction at a
    /// time: the mirror and the outbox's numbering follow commit order).
    fn begin_write(&self) -> Result<std::sync::MutexGuard<'_, ()>, StoreError> {
        if let Some(why) = self.inner.flusher.failure() {
            return Err(StoreError::Io(format!("the store is read-only: {why}")));
        }
        self.check_space()?;
        Ok(self.inner.writer.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// What every write transaction does last, still under the writer lock. Committed: the
    /// write is counted first (a reader that sees it in the mirror or the outbox also sees
    /// it pending, and waits for the flush that covers it), then `publish` (the mirror),
    /// then the events (whoever sees their `seq` sees their change). An I/O error from
    /// sled in the transaction, and any error from its commit, turn the store read-only:
    /// what is in memory may not reach the disk, or the disk may hold half a commit.
    fn settle<T>(
        &self,
        result: Result<T, TransactionError<StoreError>>,
        pending: &events::Pending,
        publish: impl FnOnce(),
    ) -> Result<T, StoreError> {
        match result {
            Ok(t) => {
                self.wrote();
                publish();
                self.inner.events_clock.committed(pending.end());
                pending.publish();
                Ok(t)
            }
            Err(TransactionError::Abort(StoreError::Sled(e))) => self.io_checked(Err(e)),
            // Our closure aborts with its own errors, so this comes from sled's commit,
            // which writes tree after tree: some of the transaction may be on its way to
            // disk and the mirror does not show it. Whatever the error's kind, nothing may
            // run again on top of that (a retried create would write a second record).
            Err(TransactionError::Storage(e)) => {
                let why = format!("a commit failed: {e}");
                self.fail(&why);
                Err(StoreError::Io(why))
            }
            Err(TransactionError::Abort(e)) => Err(e),
        }
    }
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

/// The mirror of a current store, built from its records read in place.
fn build_mirror(meta: &sled::Tree, members: &sled::Tree) -> Result<Mirror, StoreError> {
    let hint = match meta.get(META_MEMBER_COUNT)? {
        Some(v) => <[u8; 8]>::try_from(&v[..])
            .map(u64::from_be_bytes)
            .unwrap_or(0)
            .min(MAX_SIZE_HINT) as usize,
        None => 0,
    };
    let started = std::time::Instant::now();
    let parts = key_halves(meta, members)
        .into_iter()
        .map(|part| part.map(|r| r.map(|(_, v)| v).map_err(StoreError::from)))
        .collect();
    let mirror = Mirror::build_from_records(parts, hint)?;
    tracing::debug!(
        members = mirror.len(),
        ms = started.elapsed().as_millis() as u64,
        "built the in-memory mirror"
    );
    Ok(mirror)
}

/// The members tree in two consecutive ranges of about as many records each, for the open's
/// two reading threads. The cut is the middle record's id of the last open (kept in `meta`),
/// else the middle of the ids between the first and the last (member ids are time-ordered:
/// a store made by one cold sync and grown slowly since is far from even there, so the
/// kept one comes first). Not only for a large store: the count kept for the tables' size
/// is the last open's too.
fn key_halves(meta: &sled::Tree, members: &sled::Tree) -> Vec<sled::Iter> {
    let id = |k: &[u8]| <[u8; 16]>::try_from(k).ok().map(u128::from_be_bytes);
    let end = |kv: sled::Result<Option<(sled::IVec, sled::IVec)>>| id(&kv.ok()??.0);
    let (Some(a), Some(b)) = (end(members.first()), end(members.last())) else {
        return vec![members.iter()];
    };
    let kept = meta
        .get(META_SPLIT_KEY)
        .ok()
        .flatten()
        .and_then(|k| id(&k))
        .filter(|k| a < *k && *k <= b);
    let middle = match kept {
        Some(k) => k,
        None if a < b => a / 2 + b / 2 + (a % 2 + b % 2) / 2,
        None => return vec![members.iter()],
    }
    .to_be_bytes();
    vec![members.range(..middle), members.range(middle..)]
}

fn decode_member(bytes: &[u8]) -> Result<Member, StoreError> {
    codec::decode(bytes)
}

fn decode_u32(bytes: &[u8]) -> Result<u32, StoreError> {
    let arr: [u8; 4] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("bad schema version".into()))?;
    Ok(u32::from_be_bytes(arr))
}

#[cfg(test)]
mod tests;
