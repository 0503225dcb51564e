//! The open's build of the mirror from the stored records, on three threads: two read the
//! records (sled's pages, the decode, the entries and their hashes), each one half of the
//! key range, while a third fills the tables.
//!
//! Why two readers: the profile of an open of 1,000,000 members put about three quarters of
//! its time in the reading thread (sled's iteration alone a third) and a quarter in the
//! tables, so one reader kept one of the machine's two cores half idle
//! (`docs/development.md`, "Scale").

use std::sync::mpsc;

use super::*;

/// Entries handed from a reading thread to the tables at a time, and how many such batches
/// may wait from the first reader (the second's wait unbounded: the tables take them only
/// after the first's, so that a collision is named as on one thread).
pub(in crate::store) const OPEN_BATCH: usize = 4096;
const OPEN_QUEUE: usize = 8;

/// A reader's result: its interner, or the error that stopped it.
type Read = Result<Interner, StoreError>;

impl Mirror {
    /// The id of the member in the middle slot: after an open, the middle record in key
    /// order (the next open's cut, [`crate::store`]'s `key_halves`).
    pub(crate) fn middle_id(&self) -> Option<MemberId> {
        self.entries.get(self.entries.len() / 2).map(|e| e.id)
    }

    /// The mirror of no member (a store opened lazily, until a call needs its members).
    pub(crate) fn build_empty() -> Mirror {
        let mut mirror = Mirror::default();
        mirror.finish_build();
        mirror
    }

    /// As [`Mirror::build`], from the records as they are stored (the open): each record is
    /// read in place into its entry, with no `Member` built on the way. `parts` are the
    /// records in key order, cut into consecutive ranges: the first is read on the calling
    /// thread, each other on a thread of its own, and one more thread fills the tables,
    /// range after range, so a collision, or an unreadable record, is found and named as
    /// on one thread. `hint` pre-sizes the tables.
    pub(crate) fn build_from_records<I>(parts: Vec<I>, hint: usize) -> Result<Mirror, StoreError>
    where
        I: Iterator<Item = Result<sled::IVec, StoreError>> + Send,
    {
        let mut mirror = Mirror::default();
        mirror.entries.reserve(hint);
        // Growing a table rehashes every key, and each key is read through its entry (a
        // cache miss): the profile of an open showed it as a fifth of the time.
        for table in [
            &mut mirror.by_id,
            &mut mirror.by_name,
            &mut mirror.by_ext,
            &mut mirror.by_google,
        ] {
            table.reserve(hint, |_| 0);
        }
        let hasher = mirror.hasher.clone();
        let mut parts = parts.into_iter();
        let first = parts.next();
        let (first_tx, first_rx) = mpsc::sync_channel::<Vec<Hashed>>(OPEN_QUEUE);
        let (rest_txs, rest_rxs): (Vec<_>, Vec<_>) = (0..parts.len())
            .map(|_| mpsc::channel::<Vec<Hashed>>())
            .unzip();
        let receivers = std::iter::once(first_rx)
            .chain(rest_rxs)
            .collect::<Vec<_>>();
        let (filled, reads) = std::thread::scope(|s| {
            let filler = s.spawn(move || fill(mirror, receivers));
            let others = parts
                .zip(rest_txs)
                .map(|(part, tx)| {
                    let hasher = &hasher;
                    s.spawn(move || read(part, hasher, |b| tx.send(b).is_ok()))
                })
                .collect::<Vec<_>>();
            let mut reads: Vec<Read> = Vec::with_capacity(others.len() + 1);
            reads.push(match first {
                Some(part) => read(part, &hasher, |b| first_tx.send(b).is_ok()),
                None => Ok(Interner::default()),
            });
            drop(first_tx);
            for reader in others {
                reads.push(reader.join().unwrap_or_else(|_| Err(thread_failed())));
            }
            (filler.join(), reads)
        });
        let (mut mirror, added) = filled.map_err(|_| thread_failed())?;
        // In the records' order: the first part whose filling found a collision, or whose
        // reading failed, names the error (the filling of a part comes before its read
        // error, which the records behind stopped).
        let (stopped_at, collision) = match added {
            Ok(()) => (usize::MAX, None),
            Err((at, e)) => (at, Some(e)),
        };
        let mut interners = Vec::with_capacity(reads.len());
        for (i, read) in reads.into_iter().enumerate() {
            if i == stopped_at {
                if let Some(e) = collision {
                    return Err(e);
                }
                break;
            }
            interners.push(read?);
        }
        for other in interners {
            mirror.interner.absorb(other);
        }
        mirror.finish_build();
        Ok(mirror)
    }
}

/// Reads one part of the records into hashed entries, handing them on in batches; stops
/// when `send` says the tables stopped (a collision: its error is the one returned).
fn read<I>(part: I, hasher: &DefaultHashBuilder, mut send: impl FnMut(Vec<Hashed>) -> bool) -> Read
where
    I: Iterator<Item = Result<sled::IVec, StoreError>>,
{
    let mut interner = Interner::default();
    let mut batch = Vec::with_capacity(OPEN_BATCH);
    for v in part {
        let v = v?;
        let rec = crate::store::codec::decode_ref(&v)?;
        let entry = Entry::of_record(&rec, &mut interner)?;
        batch.push(Hashed::new(entry, hasher));
        if batch.len() == OPEN_BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(OPEN_BATCH));
            if !send(full) {
                return Ok(interner);
            }
        }
    }
    // The tables may have stopped at a collision in the last batches; their error wins.
    send(batch);
    Ok(interner)
}

/// Fills the tables from each part's batches in turn. A collision ends it with the part it
/// was found in; returning drops the receivers, so the readers stop at their next batch.
fn fill(
    mut mirror: Mirror,
    receivers: Vec<mpsc::Receiver<Vec<Hashed>>>,
) -> (Mirror, Result<(), (usize, StoreError)>) {
    for (i, rx) in receivers.into_iter().enumerate() {
        for batch in rx {
            for h in batch {
                if let Err(e) = mirror.add_hashed(h) {
                    return (mirror, Err((i, e)));
                }
            }
        }
    }
    (mirror, Ok(()))
}

fn thread_failed() -> StoreError {
    StoreError::Internal("a thread building the in-memory mirror at open failed".into())
}
