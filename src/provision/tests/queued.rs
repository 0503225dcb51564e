//! SCIM's queued writes ([`apply_queued`]): committed by the store's writer thread in shared
//! transactions, each answered on its own and durable when it answers.

use super::*;

/// SCIM's writes queue for the writer thread: many at once are committed in shared
/// transactions, each with its own answer, its audit entry and its event, and each is
/// durable when it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_writes_each_answer_and_are_durable() {
    let (_dir, store) = store();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let change = Change::Create {
                attrs: attrs(&format!("q{i}@example.com")),
                managed_by: ManagedBy::Google,
            };
            let outcome = apply_queued(&store, change, scim()).await.unwrap();
            outcome.member().clone()
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    for t in tasks {
        let m = t.await.unwrap();
        assert_eq!(store.get(m.id).unwrap().unwrap(), m);
        ids.insert(m.id);
    }
    assert_eq!(ids.len(), 200);
    assert_eq!(store.member_count(), 200);
    // Each batch was flushed before it answered: once all have answered, nothing is left
    // for a flush. (While others are in flight, a later batch may be committed and not yet
    // flushed, so this holds only at the end.)
    assert!(!store.flush_pending());
    let audit = store.audit(&AuditQuery::default()).unwrap();
    assert_eq!(audit.len(), 200);
    assert_eq!(store.events_after(0, 1000).unwrap().len(), 200);
}

/// In a batch, a refused write is refused alone: the write queued beside it that takes the
/// same user name gets the conflict, and the others are committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_queued_write_refuses_only_itself() {
    let (_dir, store) = store();
    let mut tasks = Vec::new();
    for email in ["same@example.com", "same@example.com", "other@example.com"] {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let change = Change::Create {
                attrs: attrs(email),
                managed_by: ManagedBy::Google,
            };
            apply_queued(&store, change, scim()).await
        }));
    }
    let mut created = 0;
    let mut taken = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(Outcome::Created(_)) => created += 1,
            Err(ProvisionError::UserNameTaken { .. }) => taken += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((created, taken), (2, 1));
    assert_eq!(store.member_count(), 2);
    assert_eq!(store.audit(&AuditQuery::default()).unwrap().len(), 2);
}

/// A failed flush answers every queued write with the store's I/O error and turns the store
/// read-only; the next write is refused before it is queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_flush_fails_the_queued_write_and_the_store() {
    let (_dir, store) = store();
    store.inject_flush_failure("EIO");
    let change = || Change::Create {
        attrs: attrs("a@example.com"),
        managed_by: ManagedBy::Google,
    };
    let err = apply_queued(&store, change(), scim()).await.unwrap_err();
    assert!(
        matches!(&err, ProvisionError::Store(StoreError::Io(why)) if why.contains("EIO")),
        "{err:?}"
    );
    assert!(store.flush_failure().is_some());
    let err = apply_queued(&store, change(), scim()).await.unwrap_err();
    assert!(
        matches!(err, ProvisionError::Store(StoreError::Io(_))),
        "{err:?}"
    );
}

/// The writer thread ends with its store: the store can be opened again at once after the
/// last handle is dropped (sled's lock is released).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_thread_lets_its_store_go() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let store = Store::open(&path).unwrap();
    let change = Change::Create {
        attrs: attrs("a@example.com"),
        managed_by: ManagedBy::Google,
    };
    apply_queued(&store, change, scim()).await.unwrap();
    drop(store);
    let again = Store::open(&path).unwrap();
    assert_eq!(again.member_count(), 1);
}

/// One write at a time, each is durable when it answers: nothing is left for a flush.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_write_is_durable_when_it_answers() {
    let (_dir, store) = store();
    for i in 0..20 {
        let change = Change::Create {
            attrs: attrs(&format!("one{i}@example.com")),
            managed_by: ManagedBy::Google,
        };
        apply_queued(&store, change, scim()).await.unwrap();
        assert!(!store.flush_pending(), "write {i}");
    }
}
