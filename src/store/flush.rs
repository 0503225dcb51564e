//! Group commit: concurrent callers of `flush` share one fsync.
//!
//! sled 0.34's `flush_async` hung with many concurrent callers on a small tokio runtime, so
//! one leader runs the blocking `flush` on the blocking pool while the others wait for a
//! flush that started after their write.
//!
//! The flush runs in a task of its own, not in the caller's future: a caller that is
//! dropped mid-flush (a client hanging up) must not leave the group waiting forever.

use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::StoreError;

pub(super) struct GroupFlush {
    db: sled::Db,
    state: Mutex<State>,
    progress: watch::Sender<Progress>,
}

struct State {
    /// Tickets handed out so far; a caller's ticket covers every write before it.
    issued: u64,
    /// Whether a flush is running now.
    running: bool,
}

#[derive(Clone, Default)]
struct Progress {
    /// Every ticket up to this one is durable.
    done: u64,
    /// The last failed flush: the tickets it covered, and why.
    failed: Option<(u64, String)>,
}

impl GroupFlush {
    pub(super) fn new(db: sled::Db) -> Arc<Self> {
        Arc::new(GroupFlush {
            db,
            state: Mutex::new(State {
                issued: 0,
                running: false,
            }),
            progress: watch::channel(Progress::default()).0,
        })
    }

    pub(super) async fn flush(self: &Arc<Self>) -> Result<(), StoreError> {
        let mut progress = self.progress.subscribe();
        let ticket = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.issued += 1;
            s.issued
        };
        loop {
            {
                let p = progress.borrow_and_update();
                if p.done >= ticket {
                    return Ok(());
                }
                if let Some((covered, why)) = &p.failed {
                    if *covered >= ticket {
                        return Err(StoreError::Corrupt(format!("flush failed: {why}")));
                    }
                }
            }
            self.start_flush_if_idle();
            if progress.changed().await.is_err() {
                return Err(StoreError::Corrupt("the flusher is gone".into()));
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
            s.issued
        };
        let this = self.clone();
        tokio::spawn(async move {
            let db = this.db.clone();
            let result = tokio::task::spawn_blocking(move || db.flush()).await;
            this.state.lock().unwrap_or_else(|p| p.into_inner()).running = false;
            this.progress.send_modify(|p| match result {
                Ok(Ok(_)) => p.done = p.done.max(covered),
                Ok(Err(e)) => p.failed = Some((covered, e.to_string())),
                Err(e) => p.failed = Some((covered, e.to_string())),
            });
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_concurrent_flushes_all_finish() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let g = GroupFlush::new(db.clone());
        let mut tasks = Vec::new();
        for i in 0..64u32 {
            let g = g.clone();
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                db.insert(i.to_be_bytes(), &[1u8][..]).unwrap();
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
    async fn a_caller_dropped_mid_flush_does_not_wedge_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let g = GroupFlush::new(db.clone());
        for round in 0..50u32 {
            db.insert(round.to_be_bytes(), &[1u8][..]).unwrap();
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
}
