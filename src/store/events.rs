//! The event outbox in the `events` tree. Events are stored in groups of up to
//! [`EVENT_CHUNK`] under the `seq` of the group's first event (big endian), so the tree's
//! order is the events' order and a batch of a thousand creates costs sixty-three keys,
//! not a thousand (sled's cost is per key: one event per key made the store's create
//! benchmark a third slower; see docs/development.md, "Writes").
//!
//! Events are appended only inside a store transaction, with the change they describe
//! ([`super::MemberTx::put_with_event`] for members, [`Store::transact_side`] for tokens
//! and held deactivations), under the store's single writer lock. That lock is what makes
//! `seq` gap-free: the next number lives in memory ([`EventClock`]), is handed out inside
//! the transaction ([`Pending`]) and advanced only once it commits, so an aborted or
//! retried transaction uses the same numbers again.
//!
//! A stored event is compact: the type's code, the time, the actor, the changed fields and
//! the member's record in the store's own format (the same bytes as its `members` key), or
//! a small JSON object for token and sync events. The JSON a consumer sees
//! ([`crate::events::Event`]) is made when the event is read.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sled::transaction::TransactionalTree;

use super::{codec, Store, StoreError};
use crate::events::{event_id, Event, EventType};
use crate::member::Member;

/// meta key: the store's random instance number, part of every event id.
pub(super) const META_EVENTS_INSTANCE: &[u8] = b"events_instance";
/// meta key: the highest `seq` pruned so far (so numbering continues past an empty tree).
pub(super) const META_EVENTS_PRUNED_THROUGH: &[u8] = b"events_pruned_through";

/// At most this many groups removed per hold of the writer lock by a prune pass.
pub const EVENT_PRUNE_BATCH: usize = 64;

/// At most this many events share one key. A group holds the events of one transaction
/// only (they share its time); at about 250 bytes an event, a node of 17 keys stays far
/// below sled's 128 KiB blob threshold.
pub const EVENT_CHUNK: usize = 16;

/// The names `changed` may hold, by bit: a stored event keeps a bit mask rather than the
/// strings. Append only: a name's position is part of the stored format.
const CHANGED_NAMES: [&str; 14] = [
    "userName",
    "emails",
    "givenName",
    "familyName",
    "displayName",
    "active",
    "googleId",
    "externalId",
    "scimExtra",
    "locations",
    "role",
    "managedBy",
    "scimDeleted",
    "grantsRemoved",
];

/// An event as stored.
#[derive(Clone, Serialize, Deserialize)]
struct Stored {
    /// [`EventType::code`].
    code: u8,
    /// Microseconds since the epoch.
    micros: i64,
    /// `pull:RUN`, `scim:LABEL`, `owner`.
    actor: String,
    /// The changed fields among [`CHANGED_NAMES`], by bit.
    changed: u32,
    /// Changed fields of other names (none today).
    changed_other: Vec<String>,
    /// The member's record ([`codec::encode`]), for member events.
    member: Option<Bytes>,
    /// Other data, as JSON text, for token and sync events.
    data: Option<String>,
}

impl Stored {
    fn changed(&self) -> Vec<&str> {
        let mut out: Vec<&str> = CHANGED_NAMES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.changed & (1 << i) != 0)
            .map(|(_, n)| *n)
            .collect();
        out.extend(self.changed_other.iter().map(String::as_str));
        out.sort_unstable();
        out
    }
}

/// Bytes that serialize as one byte string (serde's default for `Vec<u8>` is a sequence
/// of numbers, one call each).
#[derive(Clone)]
struct Bytes(Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// The next `seq` and the last committed one, shared by every handle of the store.
pub(super) struct EventClock {
    /// The `seq` the next event gets. Read and advanced only under the writer lock.
    next: AtomicU64,
    /// Tells waiting readers (the feed's long poll, the webhook relay) the last committed
    /// `seq`.
    watch: tokio::sync::watch::Sender<u64>,
    /// The store's instance number, part of each event id.
    pub(super) instance: u64,
}

impl EventClock {
    /// Reads where numbering stands: after the last stored event, or after the last pruned
    /// one when every event was pruned.
    pub(super) fn open(meta: &sled::Tree, events: &sled::Tree) -> Result<EventClock, StoreError> {
        let last_stored = match events.last()? {
            Some((k, v)) => be_u64(&k)? + decode_group(&k, &v)?.len().saturating_sub(1) as u64,
            None => 0,
        };
        let pruned = match meta.get(META_EVENTS_PRUNED_THROUGH)? {
            Some(v) => be_u64(&v)?,
            None => 0,
        };
        let instance = match meta.get(META_EVENTS_INSTANCE)? {
            Some(v) => be_u64(&v)?,
            None => {
                let mut b = [0u8; 8];
                getrandom::fill(&mut b)
                    .map_err(|e| StoreError::Internal(format!("random source: {e}")))?;
                let n = u64::from_be_bytes(b);
                meta.insert(META_EVENTS_INSTANCE, &n.to_be_bytes())?;
                n
            }
        };
        let last = last_stored.max(pruned);
        Ok(EventClock {
            next: AtomicU64::new(last + 1),
            watch: tokio::sync::watch::Sender::new(last),
            instance,
        })
    }

    /// The `seq` the next event would get (call under the writer lock).
    pub(super) fn next(&self) -> u64 {
        self.next.load(Ordering::Acquire)
    }

    /// A transaction that used `next..until` committed (call under the writer lock, after
    /// the mirror was updated, so a reader that sees this `seq` sees its change).
    pub(super) fn committed(&self, until: u64) {
        if until > self.next() {
            self.next.store(until, Ordering::Release);
            self.watch.send_replace(until - 1);
        }
    }
}

fn be_u64(b: &[u8]) -> Result<u64, StoreError> {
    b.try_into().map(u64::from_be_bytes).map_err(|_| {
        StoreError::Corrupt(format!("an events key or meta value of {} bytes", b.len()))
    })
}

/// The events one transaction appends, numbered from the clock's next `seq`, written in
/// groups when the transaction's closure ends. sled may run the closure again:
/// [`Pending::reset`] starts each run from a clean slate.
pub(super) struct Pending {
    first_seq: u64,
    items: std::cell::RefCell<Vec<Stored>>,
}

impl Pending {
    pub(super) fn new(first_seq: u64) -> Pending {
        Pending {
            first_seq,
            items: std::cell::RefCell::new(Vec::new()),
        }
    }

    pub(super) fn reset(&self) {
        self.items.borrow_mut().clear();
    }

    /// Adds an event; `member` is the member's record as the transaction wrote it.
    pub(super) fn push(&self, e: &NewEvent<'_>, member: Option<Vec<u8>>) {
        let mut changed = 0u32;
        let mut changed_other = Vec::new();
        for name in &e.changed {
            match CHANGED_NAMES.iter().position(|n| n == name) {
                Some(i) => changed |= 1 << i,
                None => changed_other.push(name.to_string()),
            }
        }
        self.items.borrow_mut().push(Stored {
            code: e.event_type.code(),
            micros: e.time.timestamp_micros(),
            actor: e.actor.clone(),
            changed,
            changed_other,
            member: member.map(Bytes),
            data: e.data.as_ref().map(|d| d.to_string()),
        });
    }

    /// Writes the events in groups of [`EVENT_CHUNK`].
    pub(super) fn write(&self, events: &TransactionalTree) -> Result<(), StoreError> {
        let items = self.items.borrow();
        let mut seq = self.first_seq;
        for group in items.chunks(EVENT_CHUNK) {
            let bytes =
                postcard::to_stdvec(group).map_err(|e| StoreError::Internal(e.to_string()))?;
            events.insert(&seq.to_be_bytes(), bytes)?;
            seq += group.len() as u64;
        }
        Ok(())
    }

    /// The `seq` after the last event appended.
    pub(super) fn end(&self) -> u64 {
        self.first_seq + self.items.borrow().len() as u64
    }

    /// Counts the committed events into `retrac_events_total{type}`.
    pub(super) fn publish(&self) {
        let mut counts = [0u64; 16];
        for s in self.items.borrow().iter() {
            counts[usize::from(s.code) % 16] += 1;
        }
        for t in EventType::ALL {
            let n = counts[usize::from(t.code()) % 16];
            if n > 0 {
                metrics::counter!("retrac_events_total", "type" => t.as_str()).increment(n);
            }
        }
    }
}

/// An event a write appends, before it has a number.
pub(crate) struct NewEvent<'a> {
    /// What happened.
    pub event_type: EventType,
    /// When.
    pub time: DateTime<Utc>,
    /// Who did it.
    pub actor: String,
    /// The changed fields.
    pub changed: Vec<&'a str>,
    /// The member after the change (member events; [`super::MemberTx::put_with_event`]
    /// stores the record it writes instead of encoding it again).
    pub member: Option<&'a Member>,
    /// Other data (token and sync events).
    pub data: Option<serde_json::Value>,
}

fn decode_group(key: &[u8], value: &[u8]) -> Result<Vec<Stored>, StoreError> {
    postcard::from_bytes(value)
        .map_err(|e| StoreError::Corrupt(format!("events group {:?}: {e}", be_u64(key).ok())))
}

fn decode(instance: u64, seq: u64, s: &Stored) -> Result<Event, StoreError> {
    let event_type = EventType::from_code(s.code)
        .ok_or_else(|| StoreError::Corrupt(format!("event {seq}: unknown type code {}", s.code)))?;
    let timestamp = DateTime::from_timestamp_micros(s.micros)
        .ok_or_else(|| StoreError::Corrupt(format!("event {seq}: time out of range")))?;
    let mut data = match &s.data {
        Some(text) => serde_json::from_str(text)
            .map_err(|e| StoreError::Corrupt(format!("event {seq}: {e}")))?,
        None => serde_json::Value::Object(serde_json::Map::new()),
    };
    if let serde_json::Value::Object(map) = &mut data {
        if let Some(Bytes(bytes)) = &s.member {
            let member = codec::decode(bytes)?;
            map.insert(
                "member".into(),
                serde_json::to_value(member.to_view())
                    .map_err(|e| StoreError::Internal(e.to_string()))?,
            );
        }
        map.insert("changed".into(), serde_json::json!(s.changed()));
        map.insert("actor".into(), serde_json::json!(s.actor));
    }
    Ok(Event {
        id: event_id(instance, seq),
        seq,
        event_type,
        timestamp,
        data,
    })
}

/// A write to one of the store's other trees (tokens, held deactivations) with the events
/// it appends, inside [`Store::transact_side`].
pub(crate) struct SideTx<'a> {
    /// The tree being written.
    pub tree: &'a TransactionalTree,
    pending: &'a Pending,
}

impl SideTx<'_> {
    /// Appends an event, numbered after the transaction's previous ones.
    pub(crate) fn append_event(&self, e: &NewEvent<'_>) -> Result<(), StoreError> {
        let member = e.member.map(codec::encode).transpose()?;
        self.pending.push(e, member);
        Ok(())
    }
}

/// What one [`Store::prune_events`] pass did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventPrune {
    /// Events removed.
    pub removed: usize,
    /// The oldest `seq` left (`None`: the outbox is empty).
    pub oldest_left: Option<u64>,
}

impl Store {
    /// Runs `f` in one sled transaction over `tree` and the outbox, under the writer lock
    /// (so event numbers stay in commit order). `f` may run more than once.
    pub(crate) fn transact_side<T, F>(&self, tree: &sled::Tree, f: F) -> Result<T, StoreError>
    where
        F: Fn(&SideTx<'_>) -> Result<T, StoreError>,
    {
        use sled::transaction::ConflictableTransactionError;
        use sled::Transactional;
        let i = &self.inner;
        let _writer = self.begin_write()?;
        let pending = Pending::new(i.events_clock.next());
        let result = (tree, &i.events).transaction(|(tree, events)| {
            pending.reset();
            let tx = SideTx {
                tree,
                pending: &pending,
            };
            let t = f(&tx).map_err(ConflictableTransactionError::Abort)?;
            pending
                .write(events)
                .map_err(ConflictableTransactionError::Abort)?;
            Ok(t)
        });
        self.settle(result, &pending, || {})
    }

    /// Up to `limit` events after `after`, in order: only published ones (up to
    /// [`Store::last_event_seq`]), whose writes are counted, so that a reader that then
    /// waits for [`Store::flush`] when one is pending shows nothing that is not on disk.
    pub fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let instance = self.inner.events_clock.instance;
        let last = self.last_event_seq();
        let start = after.saturating_add(1);
        let mut out = Vec::new();
        // The group that holds `start` may begin before it.
        let before = self.inner.events.range(..start.to_be_bytes()).next_back();
        let groups = before
            .into_iter()
            .chain(self.inner.events.range(start.to_be_bytes()..));
        for kv in groups {
            let (k, v) = kv?;
            let first = be_u64(&k)?;
            for (i, s) in decode_group(&k, &v)?.iter().enumerate() {
                let seq = first + i as u64;
                if seq < start {
                    continue;
                }
                if out.len() >= limit || seq > last {
                    return Ok(out);
                }
                out.push(decode(instance, seq, s)?);
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// The event `seq`, if it is still kept.
    pub fn event(&self, seq: u64) -> Result<Option<Event>, StoreError> {
        let Some(before) = seq.checked_sub(1) else {
            return Ok(None);
        };
        Ok(self
            .events_after(before, 1)?
            .into_iter()
            .find(|e| e.seq == seq))
    }

    /// The last committed event's `seq` (0: none yet). Every change it describes, and every
    /// change before it, is in the members a reader sees after this call.
    pub fn last_event_seq(&self) -> u64 {
        *self.inner.events_clock.watch.borrow()
    }

    /// The oldest kept event's `seq` (`None`: none is kept).
    pub fn oldest_event_seq(&self) -> Result<Option<u64>, StoreError> {
        match self.inner.events.first()? {
            Some((k, _)) => be_u64(&k).map(Some),
            None => Ok(None),
        }
    }

    /// The time of the first event after `after`, if one is kept (the age of a backlog).
    pub fn event_time_after(&self, after: u64) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self.events_after(after, 1)?.first().map(|e| e.timestamp))
    }

    /// Follows the last committed `seq`: the receiver wakes on each commit that adds events.
    pub fn subscribe_events(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.events_clock.watch.subscribe()
    }

    /// Removes events older than `keep` before `now`, oldest first, but none at or after
    /// `keep_from` (the first event some enabled webhook endpoint still waits for) unless it
    /// is older than `max_keep`. A group goes whole (its events share one time), in batches
    /// of [`EVENT_PRUNE_BATCH`] groups under the writer lock. Blocking: run it on a
    /// blocking thread.
    pub fn prune_events(
        &self,
        now: DateTime<Utc>,
        keep: chrono::Duration,
        max_keep: chrono::Duration,
        keep_from: Option<u64>,
    ) -> Result<EventPrune, StoreError> {
        let cutoff = (now - keep).timestamp_micros();
        let hard_cutoff = (now - max_keep.max(keep)).timestamp_micros();
        let mut report = EventPrune::default();
        'passes: while self.flush_failure().is_none() {
            let _writer = self.inner.writer.lock().unwrap_or_else(|p| p.into_inner());
            let mut batch = sled::Batch::default();
            let mut last = None;
            let mut groups = 0;
            let mut done = true;
            for kv in self.inner.events.iter() {
                let (k, v) = kv?;
                let first = be_u64(&k)?;
                let group = decode_group(&k, &v)?;
                let Some(head) = group.first() else { continue };
                let end = first + group.len() as u64;
                let needed = keep_from.is_some_and(|f| end > f);
                let expired = head.micros < cutoff && !needed;
                if !(expired || head.micros < hard_cutoff) {
                    break;
                }
                batch.remove(k);
                last = Some(end - 1);
                report.removed += group.len();
                groups += 1;
                if groups == EVENT_PRUNE_BATCH {
                    done = false;
                    break;
                }
            }
            let Some(last) = last else { break 'passes };
            // The mark first: a crash between the two writes must never leave the tree
            // emptied with an older mark, or numbering would start again below it.
            self.io_checked(
                self.inner
                    .meta
                    .insert(META_EVENTS_PRUNED_THROUGH, &last.to_be_bytes()),
            )?;
            self.io_checked(self.inner.events.apply_batch(batch))?;
            self.wrote();
            if done {
                break;
            }
        }
        report.oldest_left = self.oldest_event_seq()?;
        Ok(report)
    }

    /// Up to `limit` members in id order, after `after` (the member listing's pages).
    pub fn members_page(
        &self,
        after: Option<crate::member::MemberId>,
        limit: usize,
    ) -> Result<Vec<Member>, StoreError> {
        let range = match after {
            Some(id) => {
                let mut k = id.as_bytes().to_vec();
                // The smallest key after `id`.
                k.push(0);
                self.inner.members.range(k..)
            }
            None => self.inner.members.iter(),
        };
        // The ids come from the records (in id order), the members from the mirror: a member
        // whose write is committed but not yet counted (not in the mirror) is left out, and
        // comes with its event, after the listing's `seq`.
        let mut out = Vec::with_capacity(limit.min(1024));
        for kv in range {
            if out.len() >= limit {
                break;
            }
            let (k, _) = kv?;
            let Ok(id) = uuid::Uuid::from_slice(&k).map(crate::member::MemberId) else {
                continue;
            };
            let entry = self.mirror().get(id);
            if let Some(e) = entry {
                out.push(self.materialize(&e)?);
            }
        }
        Ok(out)
    }

    /// How many events are kept, and how many bytes they take in the tree (keys and
    /// values): for the figures of the outbox's cost.
    pub fn events_footprint(&self) -> Result<(usize, u64), StoreError> {
        let mut n = 0;
        let mut bytes = 0u64;
        for kv in self.inner.events.iter() {
            let (k, v) = kv?;
            n += decode_group(&k, &v)?.len();
            bytes += (k.len() + v.len()) as u64;
        }
        Ok((n, bytes))
    }
}
