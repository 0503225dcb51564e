//! Group commit: concurrent callers of `flush` share one fsync, and a caller with nothing to
//! wait for takes no part.
//!
//! The store counts its writes (`writes`, bumped after each write is in sled's memory). A
//! caller's ticket is that count when it asks: the flush it waits for must have started
//! after it. When the last finished flush already covers the ticket, nothing written before
//! the call is pending and the call returns at once, starting nothing: a read that follows
//! no write costs no flush, which is the one durability rule (ARCHITECTURE.md, "The write
//! path").
//!
//! sled 0.34's `flush_async` hung with many concurrent callers on a small tokio runtime, so
//! one leader runs the blocking `flush` on the blocking pool while the others wait for a
//! flush that started after their write.
//!
//! The flush runs in a task of its own, not in the caller's future: a caller that is
//! dropped mid-flush (a client hanging up) must not leave the group waiting forever.
//!
//! A failed flush is final: after it, what is in memory may never reach the disk, so
//! every later flush fails too (the store is read-only) and the daemon stops, to recover
//! from sled's log on restart.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::StoreError;

pub(super) struct GroupFlush {
    db: sled::Db,
    /// Writes so far (the store bumps it after each one): a ticket is a value of it.
    writes: Arc<AtomicU64>,
    state: Mutex<State>,
    progress: watch::Sender<Progress>,
    /// Test support: the next flush fails with this reason instead of running.
    injected: Mutex<Option<String>>,
}

struct State {
    /// Whether a flush is running now.
    running: bool,
}

#[derive(Clone, Default)]
struct Progress {
    /// Every write up to this count is durable.
    done: u64,
    /// Why a flush failed, once one has: no later flush succeeds.
    failed: Option<String>,
}

impl GroupFlush {
    pub(super) fn new(db: sled::Db, writes: Arc<AtomicU64>) -> Arc<Self> {
        Arc::new(GroupFlush {
            db,
            writes,
            state: Mutex::new(State { running: false }),
            progress: watch::channel(Progress::default()).0,
            injected: Mutex::new(None),
        })
    }

    pub(super) async fn flush(self: &Arc<Self>) -> Result<(), StoreError> {
        let mut progress = self.progress.subscribe();
        let ticket = self.writes.load(Ordering::Acquire);
        loop {
            {
                let p = progress.borrow_and_update();
                if let Some(why) = &p.failed {
                    return Err(StoreError::Io(format!("flush failed: {why}")));
                }
                if p.done >= ticket {
                    return Ok(());
                }
            }
            self.start_flush_if_idle();
            if progress.changed().await.is_err() {
                return Err(StoreError::Internal("the flusher is gone".into()));
            }
        }
    }

    /// Starts a flush covering every ticket issued so far, unless one is running.
    fn start_flush_if_idle(self: &Arc<Self>) {
        let covered = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if s.running {
                return;
            }
            s.running = true;
            // Read under the lock, before the flush starts: every write counted here is in
            // sled's memory, so this flush makes it durable.
            self.writes.load(Ordering::Acquire)
        };
        let this = self.clone();
        tokio::spawn(async move {
            let db = this.db.clone();
            let injected = this
                .injected
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            let deadline = super::WRITE_DEADLINE;
            let result = match injected {
                Some(why) => Err(why),
                None => match tokio::time::timeout(
                    deadline,
                    tokio::task::spawn_blocking(move || db.flush()),
                )
                .await
                {
                    Ok(Ok(Ok(_))) => Ok(()),
                    Ok(Ok(Err(e))) => Err(e.to_string()),
                    Ok(Err(e)) => Err(e.to_string()),
                    // sled waits for ever on a full disk: a flush that takes this long is
                    // taken for failed.
                    Err(_) => Err(format!(
                        "a flush did not finish within {} s (is the disk full or failing?)",
                        deadline.as_secs()
                    )),
                },
            };
            this.state.lock().unwrap_or_else(|p| p.into_inner()).running = false;
            this.progress.send_modify(|p| match result {
                Ok(()) => p.done = p.done.max(covered),
                Err(why) => {
                    p.failed.get_or_insert(why);
                }
            });
        });
    }

    /// Flushes on the calling thread (the writer thread, `writer.rs`) unless every write so
    /// far is durable already, and tells the async waiters what it covered. A failure is
    /// final, as for [`GroupFlush::flush`]. No deadline here: the callers waiting for this
    /// thread have theirs.
    pub(super) fn flush_now(&self) -> Result<(), String> {
        let covered = {
            let p = self.progress.borrow();
            if let Some(why) = &p.failed {
                return Err(why.clone());
            }
            // Read before the flush starts: every write counted here is in sled's memory.
            let covered = self.writes.load(Ordering::Acquire);
            if p.done >= covered {
                return Ok(());
            }
            covered
        };
        let injected = self
            .injected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let result = match injected {
            Some(why) => Err(why),
            None => self.db.flush().map(|_| ()).map_err(|e| e.to_string()),
        };
        self.progress.send_modify(|p| match &result {
            Ok(()) => p.done = p.done.max(covered),
            Err(why) => {
                p.failed.get_or_insert_with(|| why.clone());
            }
        });
        match &self.progress.borrow().failed {
            Some(why) => Err(why.clone()),
            None => Ok(()),
        }
    }

    /// Makes the store read-only for `why`, as a failed flush does.
    pub(super) fn fail(&self, why: &str) {
        self.progress.send_modify(|p| {
            p.failed.get_or_insert_with(|| why.to_string());
        });
    }

    /// Why a flush failed, once one has.
    pub(super) fn failure(&self) -> Option<String> {
        self.progress.borrow().failed.clone()
    }

    /// Resolves with the reason when a flush fails.
    pub(super) async fn failed(&self) -> String {
        let mut progress = self.progress.subscribe();
        let why = match progress.wait_for(|p| p.failed.is_some()).await {
            Ok(p) => p.failed.clone(),
            Err(_) => None,
        };
        match why {
            Some(why) => why,
            // The sender lives as long as `self`: unreachable, but never resolve falsely.
            None => std::future::pending().await,
        }
    }

    /// Whether a write is not yet covered by a finished flush (or the store failed, which a
    /// caller must hear from `flush`).
    pub(super) fn pending(&self) -> bool {
        let p = self.progress.borrow();
        p.failed.is_some() || self.writes.load(Ordering::Acquire) > p.done
    }

    /// Test support: makes the next flush fail with `why`, as a failed fsync would.
    #[cfg(any(test, feature = "test-support"))]
    pub(super) fn inject_failure(&self, why: &str) {
        *self.injected.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_concurrent_flushes_all_finish() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let writes = Arc::new(AtomicU64::new(0));
        let g = GroupFlush::new(db.clone(), writes.clone());
        let mut tasks = Vec::new();
        for i in 0..64u32 {
            let g = g.clone();
            let db = db.clone();
            let writes = writes.clone();
            tasks.push(tokio::spawn(async move {
                db.insert(i.to_be_bytes(), &[1u8][..]).unwrap();
                writes.fetch_add(1, Ordering::Release);
                g.flush().await.unwrap();
            }));
        }
        for t in tasks {
            tokio::time::timeout(std::time::Duration::from_secs(30), t)
                .await
                .expect("no flush hangs")
                .unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_flush_fails_every_later_flush_and_wakes_the_watchers() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let writes = Arc::new(AtomicU64::new(0));
        let g = GroupFlush::new(db.clone(), writes.clone());
        g.flush().await.unwrap();
        assert_eq!(g.failure(), None);
        let watcher = {
            let g = g.clone();
            tokio::spawn(async move { g.failed().await })
        };
        g.inject_failure("disk on fire");
        db.insert(b"k", &b"v"[..]).unwrap();
        writes.fetch_add(1, Ordering::Release);
        let err = g.flush().await.unwrap_err();
        assert!(err.to_string().contains("disk on fire"), "{err}");
        // A failed write, not a damaged record: the message says so.
        assert!(matches!(err, StoreError::Io(_)), "{err:?}");
        assert!(!err.to_string().contains("damaged"), "{err}");
        // Sticky: the next flush would run sled's and succeed, but the store stays failed.
        assert!(matches!(g.flush().await, Err(StoreError::Io(_))));
        assert_eq!(g.failure().as_deref(), Some("disk on fire"));
        let why = tokio::time::timeout(std::time::Duration::from_secs(5), watcher)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(why, "disk on fire");
    }

    /// The store turned read-only by a failed flush refuses writes as a failed write
    /// (`Io`), not as a damaged record.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn after_a_failed_flush_writes_are_refused_as_io_not_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path()).unwrap();
        store.inject_flush_failure("EIO");
        // Nothing written yet: nothing to flush, so the injected failure waits.
        assert!(store.flush().await.is_ok());
        store.transact(|_| Ok(())).unwrap();
        assert!(matches!(store.flush().await, Err(StoreError::Io(_))));
        let refused = store.transact(|_| Ok(()));
        assert!(matches!(refused, Err(StoreError::Io(_))), "{refused:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_dropped_mid_flush_does_not_wedge_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let writes = Arc::new(AtomicU64::new(0));
        let g = GroupFlush::new(db.clone(), writes.clone());
        for round in 0..50u32 {
            db.insert(round.to_be_bytes(), &[1u8][..]).unwrap();
            writes.fetch_add(1, Ordering::Release);
            // Start a flush and drop the caller at once, as a client hanging up would.
            let g2 = g.clone();
            let dropped = tokio::spawn(async move { g2.flush().await });
            tokio::task::yield_now().await;
            dropped.abort();
            tokio::time::timeout(std::time::Duration::from_secs(10), g.flush())
                .await
                .expect("the next flush completes")
                .unwrap();
        }
    }

    /// A flush with nothing written since the last one starts no fsync: a read that follows
    /// no write takes no part in the group commit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flush_with_nothing_pending_starts_no_flush() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let writes = Arc::new(AtomicU64::new(0));
        let g = GroupFlush::new(db.clone(), writes.clone());
        // A failure waits for the next flush that runs: none runs while nothing is pending.
        g.inject_failure("would have run");
        for _ in 0..10 {
            g.flush().await.unwrap();
        }
        assert_eq!(g.failure(), None);
        db.insert(b"k", &b"v"[..]).unwrap();
        writes.fetch_add(1, Ordering::Release);
        assert!(g.flush().await.is_err(), "a pending write runs the flush");
    }
}
