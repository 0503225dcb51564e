//! The writer thread (`store/writer.rs`): batches, a write that fails alone, the deadline
//! of each step, and a commit that sled fails.

use super::*;

/// Queues a write that holds the writer thread for `took`, then answers `n`.
fn queue_slow(
    store: &Store,
    n: u64,
    took: std::time::Duration,
) -> tokio::task::JoinHandle<Result<u64, StoreError>> {
    let store = store.clone();
    tokio::spawn(async move {
        store
            .write_queued(move |_tx, _now| {
                std::thread::sleep(took);
                Ok(n)
            })
            .await
    })
}

/// The writer thread commits the writes queued together in one transaction; one that fails
/// with a store error, or panics, fails alone: the batch runs again write by write, the
/// others are committed, and the failed one leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_in_a_batch_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let m = raw_member(1, "a@example.com");
    let write = |n: u64, fail: Option<&'static str>| {
        let store = store.clone();
        let m = m.clone();
        tokio::spawn(async move {
            store
                .write_queued(move |tx, _now| {
                    let actor = crate::member::Actor::Scim("t".into());
                    tx.append_audit(audit_entry(n, actor, &m, None))?;
                    match fail {
                        Some("panic") => panic!("a write that panics"),
                        Some(why) => Err(StoreError::Internal(why.into())),
                        None => Ok(n),
                    }
                })
                .await
        })
    };
    // The first write holds the writer thread, so the next four queue into one batch.
    let hold = queue_slow(&store, 0, std::time::Duration::from_millis(300));
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let tasks = [
        write(1, None),
        write(2, Some("refused")),
        write(3, None),
        write(4, Some("panic")),
    ];
    assert_eq!(hold.await.unwrap().unwrap(), 0);
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    assert_eq!(results[0].as_ref().unwrap(), &1);
    assert!(matches!(&results[1], Err(StoreError::Internal(why)) if why == "refused"));
    assert_eq!(results[2].as_ref().unwrap(), &3);
    assert!(
        matches!(&results[3], Err(StoreError::Internal(_))),
        "{:?}",
        results[3]
    );
    // Only the two that succeeded left an audit entry, and the store still writes.
    let mut times: Vec<_> = store
        .audit(&AuditQuery::default())
        .unwrap()
        .iter()
        .map(|e| e.time)
        .collect();
    times.sort();
    assert_eq!(times, [at(1), at(3)]);
    assert!(store.flush_failure().is_none());
    assert_eq!(store.write_queued(|_tx, _now| Ok(5u64)).await.unwrap(), 5);
}

/// A write queued behind others waits for them past the write deadline without turning the
/// store read-only, as long as the writer moves: the deadline is for one step (a
/// transaction, a flush) that does not end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_queued_behind_slow_ones_waits_past_the_deadline_without_failing_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let step = WRITE_DEADLINE * 5 / 8;
    let slow = |n: u64| queue_slow(&store, n, step);
    let first = slow(1);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let second = slow(2);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let last = store.write_queued(|_tx, _now| Ok(3u64)).await;
    assert!(
        started.elapsed() > WRITE_DEADLINE,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(last.unwrap(), 3);
    assert_eq!(first.await.unwrap().unwrap(), 1);
    assert_eq!(second.await.unwrap().unwrap(), 2);
    assert!(store.flush_failure().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_counts_each_write_of_a_batch_not_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let step = WRITE_DEADLINE * 5 / 8;
    let write = |n: u64, took: std::time::Duration| queue_slow(&store, n, took);
    // The first keeps the writer busy while the next two queue: they share one batch,
    // from about 0.3 s to 5.3 s, longer than the deadline, each of its writes shorter.
    let started = std::time::Instant::now();
    let first = write(1, std::time::Duration::from_millis(300));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let second = write(2, step);
    let third = write(3, step);
    // The fourth waits for the next batch; its deadline runs out at about 4.8 s, while
    // the batch has run for 4.5 s and its current write for 2 s.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let fourth = write(4, std::time::Duration::ZERO);
    assert_eq!(fourth.await.unwrap().unwrap(), 4);
    assert!(
        started.elapsed() > WRITE_DEADLINE + std::time::Duration::from_millis(800),
        "the fourth write should have waited for the two slow ones: {:?}",
        started.elapsed()
    );
    assert_eq!(third.await.unwrap().unwrap(), 3);
    assert_eq!(second.await.unwrap().unwrap(), 2);
    assert_eq!(first.await.unwrap().unwrap(), 1);
    assert!(store.flush_failure().is_none());
}

#[test]
fn a_commit_that_sled_fails_turns_the_store_read_only_whatever_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let pending = events::Pending::new(store.inner.events_clock.next());
    let mut published = false;
    let result: Result<(), StoreError> = store.settle(
        Err(TransactionError::Storage(sled::Error::ReportableBug(
            "half a commit".into(),
        ))),
        &pending,
        || published = true,
    );
    assert!(matches!(result, Err(StoreError::Io(ref why)) if why.contains("a commit failed")));
    assert!(!published);
    assert!(store.flush_failure().is_some());
    // An error of the write's own stays that write's: the store goes on.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let pending = events::Pending::new(store.inner.events_clock.next());
    let result: Result<(), StoreError> = store.settle(
        Err(TransactionError::Abort(StoreError::Internal(
            "refused".into(),
        ))),
        &pending,
        || {},
    );
    assert!(matches!(result, Err(StoreError::Internal(_))));
    assert!(store.flush_failure().is_none());
}
