//! Store benchmarks (figures: docs/development.md, "Writes"): applying creates through `provision::apply_batch`, and
//! looking members up by user name; it also prints what the event outbox takes on disk.
//!
//! `cargo bench --bench store` prints criterion's figures; the throughput line
//! ("thrpt") is the median members/s and lookups/s.

use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use retrac_sync::member::{Actor, Change, DirectoryAttrs, ManagedBy, UserName};
use retrac_sync::provision;
use retrac_sync::store::Store;

const MEMBERS: usize = 100_000;
const BATCH: usize = 1_000;

fn create(i: usize) -> Change {
    let mut attrs = DirectoryAttrs::new(
        UserName::parse(&format!("user{i:06}@example.com")).unwrap(),
        Some("Given"),
        Some(&format!("Family{i}")),
    );
    attrs.google_id = Some(format!("1045987219{i:011}"));
    Change::Create {
        attrs,
        managed_by: ManagedBy::Google,
    }
}

fn seed(store: &Store, changes: &[Change]) {
    let actor = Actor::Pull(retrac_sync::member::RunId::parse("20261101T020000Z-000007").unwrap());
    for chunk in changes.chunks(BATCH) {
        let results = provision::apply_batch(store, chunk, &actor, Utc::now()).unwrap();
        assert!(results.iter().all(|r| r.is_ok()));
    }
    store.flush_blocking().unwrap();
}

fn apply_creates(c: &mut Criterion) {
    let changes: Vec<Change> = (0..MEMBERS).map(create).collect();
    let mut group = c.benchmark_group("apply");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    group.throughput(Throughput::Elements(MEMBERS as u64));
    group.bench_function(
        BenchmarkId::new("creates_in_batches_of_1000", MEMBERS),
        |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir().unwrap();
                    let store = Store::open(dir.path()).unwrap();
                    let start = Instant::now();
                    seed(&store, &changes);
                    total += start.elapsed();
                    assert_eq!(store.member_count(), MEMBERS);
                }
                total
            })
        },
    );
    group.finish();
}

/// The bytes of the files under `dir`.
fn walk(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                walk(&e.path())
            } else {
                m.len()
            }
        })
        .sum()
}

fn lookups(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let changes: Vec<Change> = (0..MEMBERS).map(create).collect();
    seed(&store, &changes);
    // The outbox's share: what its events take in the tree, and the store on disk.
    let (events, bytes) = store.events_footprint().unwrap();
    let on_disk: u64 = walk(dir.path());
    println!(
        "outbox: {events} events, {bytes} bytes of keys and values ({} per event); the store: {} bytes on disk ({} per member)",
        bytes / events.max(1) as u64,
        on_disk,
        on_disk / MEMBERS as u64
    );
    // Mixed case on purpose: lookups are case-insensitive.
    let names: Vec<String> = (0..MEMBERS)
        .map(|i| format!("User{:06}@Example.com", (i * 7919) % MEMBERS))
        .collect();
    let mut group = c.benchmark_group("lookup");
    group.throughput(Throughput::Elements(names.len() as u64));
    group.sample_size(10);
    group.bench_function("shared_member_by_user_name", |b| {
        b.iter(|| {
            for n in &names {
                std::hint::black_box(store.shared_by_user_name(n).unwrap());
            }
        })
    });
    group.bench_function("owned_member_by_user_name", |b| {
        b.iter(|| {
            for n in &names {
                std::hint::black_box(store.get_by_user_name(n).unwrap().unwrap());
            }
        })
    });
    group.bench_function("id_by_user_name", |b| {
        b.iter(|| {
            for n in &names {
                std::hint::black_box(store.id_by_user_name(n).unwrap().unwrap());
            }
        })
    });
    group.finish();
}

criterion_group!(benches, apply_creates, lookups);
criterion_main!(benches);
