//! Group commit: concurrent callers of `flush` share one fsync.
//!
//! sled 0.34's `flush_async` hung with many concurrent callers on a small tokio runtime, so
//! a single leader runs the blocking `flush` on the blocking pool while the others wait for
//! a flush that started after their write.

use std::sync::Mutex;

use tokio::sync::watch;

use super::StoreError;

pub(super) struct GroupFlush {
    db: sled::Db,
    state: Mutex<State>,
    done: watch::Sender<u64>,
}

struct State {
    /// Tickets handed out so far; a caller's ticket covers every write before it.
    issued: u64,
    /// Whether a leader is flushing now.
    running: bool,
}

impl GroupFlush {
    pub(super) fn new(db: sled::Db) -> Self {
        GroupFlush {
            db,
            state: Mutex::new(State {
                issued: 0,
                running: false,
            }),
            done: watch::channel(0).0,
        }
    }

    pub(super) async fn flush(&self) -> Result<(), StoreError> {
        let mut done = self.done.subscribe();
        let ticket = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.issued += 1;
            s.issued
        };
        loop {
            if *done.borrow_and_update() >= ticket {
                return Ok(());
            }
            let lead = {
                let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                if s.running {
                    None
                } else {
                    s.running = true;
                    Some(s.issued)
                }
            };
            match lead {
                Some(covered) => {
                    let db = self.db.clone();
                    let result = tokio::task::spawn_blocking(move || db.flush()).await;
                    {
                        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                        s.running = false;
                    }
                    match result {
                        Ok(Ok(_)) => {
                            self.done.send_modify(|d| *d = (*d).max(covered));
                        }
                        Ok(Err(e)) => {
                            // Wake the others so one of them retries as leader.
                            self.done.send_modify(|_| {});
                            return Err(StoreError::Sled(e));
                        }
                        Err(join) => {
                            self.done.send_modify(|_| {});
                            return Err(StoreError::Corrupt(format!("flush task failed: {join}")));
                        }
                    }
                }
                None => {
                    // A leader is flushing; wait for it, then check whether it covered us.
                    if done.changed().await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
}
