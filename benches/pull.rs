//! The pull against 100,000 users served by the fake Google on loopback.
//!
//! Prints, as medians of several rounds: a fetch-only pass, a cold sync into an empty
//! store, a warm sync with nothing changed (and the member writes it made), the ratio of
//! each to the fetch-only pass, the Google requests per run, and the peak RSS.
//!
//! The fake runs in a child process (this binary, re-executed), and so does each round,
//! so the RSS is the pull's, and each round's its own.
//!
//! Run: `cargo bench --bench pull` (USERS=N and ROUNDS=N to change the size; LOG=info
//! prints each run's log line, with the time spent reading Google and planning).

use std::io::{BufRead, BufReader, Write};
use std::time::Instant;

use fake_google::{FakeGoogle, FakeSeed};
use retrac_sync::config::Config;
use retrac_sync::reconcile::plan::Desired;
use retrac_sync::reconcile::{self, SyncContext, SyncOptions, Target};
use retrac_sync::store::{AuditQuery, RunStatus, Store};

const CHILD_ENV: &str = "RETRAC_BENCH_FAKE_DIR";
/// Set in a round's process: "BASE_URL ADMIN KEY_DIR STORE_DIR".
const ROUND_ENV: &str = "RETRAC_BENCH_ROUND";

fn main() {
    let users: usize = std::env::var("USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if let Ok(filter) = std::env::var("LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .init();
    }
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        rt.block_on(serve_fake(users, dir.into()));
        return;
    }
    if let Ok(spec) = std::env::var(ROUND_ENV) {
        rt.block_on(round(users, &spec));
        return;
    }
    rt.block_on(bench(users, rounds));
}

/// The child: serves the fake, prints its URL, and lives until stdin closes.
async fn serve_fake(users: usize, dir: std::path::PathBuf) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let g = FakeGoogle::start(listener, FakeSeed::sample(users, "example.com"))
        .await
        .unwrap();
    g.write_key_file(&dir.join("key.json")).unwrap();
    println!("{} {}", g.base_url(), g.admin());
    std::io::stdout().flush().unwrap();
    tokio::task::spawn_blocking(|| {
        let mut s = String::new();
        while std::io::stdin()
            .read_line(&mut s)
            .map(|n| n > 0)
            .unwrap_or(false)
        {}
    })
    .await
    .unwrap();
}

/// One full run of the pull, now.
async fn sync(ctx: &SyncContext) -> reconcile::SyncOutcome {
    let now = chrono::Utc::now();
    reconcile::run(ctx, Target::All, SyncOptions::default(), now)
        .await
        .unwrap()
}

fn peak_rss_mb() -> f64 {
    proc_status_mb("VmHWM:")
}

/// Sets the peak RSS back to the current RSS (Linux: `clear_refs` 5), so that the peak read
/// after a sync is the sync's. Says so if the kernel refuses.
fn reset_peak_rss() {
    if let Err(e) = std::fs::write("/proc/self/clear_refs", "5") {
        eprintln!("cannot reset the peak RSS ({e}): a later peak includes the earlier work");
    }
}

fn proc_status_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn last_audit_seq(store: &Store) -> Option<u64> {
    store
        .audit(&AuditQuery {
            limit: Some(1),
            ..Default::default()
        })
        .unwrap()
        .first()
        .map(|e| e.seq)
}

/// What one round measured (printed by the round's process as one JSON line).
#[derive(serde::Serialize, serde::Deserialize)]
struct Round {
    fetch_ms: f64,
    cold_ms: f64,
    warm_ms: Vec<f64>,
    warm_writes: Vec<u64>,
    free_ms: f64,
    requests: (u64, u64),
    /// Peak RSS (MiB) after the fetch-only pass, and over the cold sync and the warm ones,
    /// each measured from its start.
    rss_fetch: f64,
    rss_cold: f64,
    rss_warm: f64,
    disk: (u64, u64),
    /// sled's blob files (a value or node over 128 KiB is written to a file of its own).
    blobs: (usize, usize),
    /// Bytes this process caused to be written to disk during the cold sync.
    cold_written: u64,
}

/// The parent: starts the fake, then runs each round in a process of its own (this binary
/// again), so that a round's peak RSS is its own: a store dropped in the same process
/// leaves memory behind that the next round's peak would count.
async fn bench(users: usize, rounds: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, dir.path())
        .env("USERS", users.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();

    println!("pull benchmark: {users} users on the fake Google (loopback, child process), {rounds} rounds (a process each), medians");
    let mut results: Vec<Round> = Vec::new();
    for round in 0..rounds {
        let store_dir = dir.path().join(format!("store-{round}"));
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .env(
                ROUND_ENV,
                format!(
                    "{} {} {}",
                    line.trim(),
                    dir.path().display(),
                    store_dir.display()
                ),
            )
            .env("USERS", users.to_string())
            .stderr(std::process::Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success(), "round {round} failed");
        let text = String::from_utf8_lossy(&out.stdout);
        let json = text.lines().last().unwrap_or_default();
        results.push(serde_json::from_str(json).unwrap());
        std::fs::remove_dir_all(&store_dir).ok();
    }
    drop(child.stdin.take());
    let _ = child.wait();

    let ms = |f: &dyn Fn(&Round) -> Vec<f64>| {
        let mut v: Vec<f64> = results.iter().flat_map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (f, c, w) = (
        ms(&|r| vec![r.fetch_ms]),
        ms(&|r| vec![r.cold_ms]),
        ms(&|r| r.warm_ms.clone()),
    );
    println!("fetch-only pass : {f:>8.0} ms");
    println!(
        "cold sync       : {c:>8.0} ms  ({:.2}x fetch-only; {:.0} created a second; target >= 50,000 a second at 1,000,000)",
        c / f,
        users as f64 / (c / 1e3)
    );
    println!(
        "warm sync       : {w:>8.0} ms  ({:.2}x fetch-only; target <= 1.5x)",
        w / f
    );
    println!(
        "freeing {users} unchanged users at the end of a plan: {:>6.1} ms (in the run)",
        ms(&|r| vec![r.free_ms])
    );
    let writes: Vec<u64> = results.iter().flat_map(|r| r.warm_writes.clone()).collect();
    println!("warm member writes: {writes:?} (target 0; each run still records its run record)");
    let (req_cold, req_warm) = results.last().map(|r| r.requests).unwrap_or_default();
    println!(
        "Google requests per run: cold {req_cold}, warm {req_warm} (ceil({users}/500) = {}, no scope groups)",
        users.div_ceil(500)
    );
    let peak = ms(&|r| vec![r.rss_cold.max(r.rss_warm)]);
    println!(
        "peak RSS of the pull process over the cold and warm syncs: {peak:.0} MB, {:.0} bytes a user (target <= 250 MB at 100,000 users, <= 1.5 GB at 1,000,000)",
        peak * 1024.0 * 1024.0 / users.max(1) as f64
    );
    println!(
        "  peak RSS after fetch-only: {:.0} MB; over the cold sync: {:.0} MB; over the warm: {:.0} MB",
        ms(&|r| vec![r.rss_fetch]),
        ms(&|r| vec![r.rss_cold]),
        ms(&|r| vec![r.rss_warm]),
    );
    let disk = results.first().map(|r| r.disk).unwrap_or_default();
    let blobs = results.first().map(|r| r.blobs).unwrap_or_default();
    println!(
        "store on disk: after the cold sync {:.0} MB ({} bytes a member), after the warm {:.0} MB ({} bytes a member)",
        disk.0 as f64 / 1e6,
        disk.0 / users.max(1) as u64,
        disk.1 as f64 / 1e6,
        disk.1 / users.max(1) as u64,
    );
    println!(
        "sled blob files: after the cold sync {}, after the warm {}",
        blobs.0, blobs.1
    );
    let written = ms(&|r| vec![r.cold_written as f64]);
    println!(
        "written to disk during the cold sync: {:.0} MB ({:.0} MB a second, {:.0} bytes a user)",
        written / 1e6,
        written / 1e6 / (c / 1e3),
        written / users.max(1) as f64
    );
}

/// One round, in a process of its own: a fetch-only pass, a cold sync into an empty store,
/// warm syncs; prints a [`Round`] as its last line.
async fn round(users: usize, spec: &str) {
    let mut parts = spec.split_whitespace();
    let (base, admin, dir, store_dir) = (
        parts.next().unwrap().to_string(),
        parts.next().unwrap().to_string(),
        std::path::PathBuf::from(parts.next().unwrap()),
        std::path::PathBuf::from(parts.next().unwrap()),
    );
    let mut c = Config::default();
    c.store.path = store_dir.clone();
    c.google.key_file = Some(dir.join("key.json"));
    c.google.subject = Some(admin);
    c.google.api_base_url = base;
    c.google.domains = vec!["example.com".into()];

    let store = Store::open(&store_dir).unwrap();
    let mut ctx = SyncContext::new(store.clone(), c).with_credentials_dir(None);
    if let Some(b) = std::env::var("BATCH").ok().and_then(|v| v.parse().ok()) {
        ctx = ctx.with_batch_size(b);
    }
    // Fetch-only pass over the same pages (also warms the token).
    let t = Instant::now();
    let n = reconcile::run::fetch_only(&ctx).await.unwrap();
    let fetch_ms = t.elapsed().as_secs_f64() * 1e3;
    assert_eq!(n, users);
    let rss_fetch = peak_rss_mb();

    reset_peak_rss();
    let written_before = written_bytes();
    let t = Instant::now();
    let r = sync(&ctx).await;
    let cold_ms = t.elapsed().as_secs_f64() * 1e3;
    let cold_written = written_bytes().saturating_sub(written_before);
    let rss_cold = peak_rss_mb();
    assert_eq!(r.report.status, RunStatus::Ok, "{r:?}");
    assert_eq!(
        r.report.counts.created as usize + r.report.counts.unchanged as usize,
        users
    );
    let req_cold = r.report.google_requests;
    store.flush_blocking().unwrap();
    let disk_cold = disk_bytes(&store_dir);
    let blobs_cold = blob_files(&store_dir);

    let warm_repeat: usize = std::env::var("WARM_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let (mut warm_ms, mut warm_writes, mut rss_warm, mut req_warm) =
        (Vec::new(), Vec::new(), 0f64, 0);
    for _ in 0..warm_repeat {
        let before = last_audit_seq(&store);
        let versions: u64 = store.members_by_id().map(|m| m.unwrap().version).sum();
        reset_peak_rss();
        let t = Instant::now();
        let r = sync(&ctx).await;
        warm_ms.push(t.elapsed().as_secs_f64() * 1e3);
        rss_warm = rss_warm.max(peak_rss_mb());
        assert_eq!(r.report.counts.unchanged as usize, users, "{r:?}");
        req_warm = r.report.google_requests;
        let after_versions: u64 = store.members_by_id().map(|m| m.unwrap().version).sum();
        warm_writes.push((last_audit_seq(&store) != before) as u64 + (after_versions - versions));
    }
    store.flush_blocking().unwrap();
    let disk_warm = disk_bytes(&store_dir);
    let blobs_warm = blob_files(&store_dir);
    // The plan frees the users that need no change before it returns, in the run (it
    // used to hand them to a thread of their own): on a warm sync that is every user.
    // Measured after the syncs' peaks were read: this builds every member twice.
    let unchanged: Vec<Option<Desired>> = store
        .snapshot()
        .expect("the store reads back")
        .iter()
        .map(|m| {
            Some(Desired {
                google_id: m.dir.google_id.clone().unwrap_or_default(),
                attrs: m.dir.clone(),
            })
        })
        .collect();
    let t = Instant::now();
    drop(unchanged);
    let free_ms = t.elapsed().as_secs_f64() * 1e3;
    let result = Round {
        fetch_ms,
        cold_ms,
        warm_ms,
        warm_writes,
        free_ms,
        requests: (req_cold, req_warm),
        rss_fetch,
        rss_cold,
        rss_warm,
        disk: (disk_cold, disk_warm),
        blobs: (blobs_cold, blobs_warm),
        cold_written,
    };
    println!("{}", serde_json::to_string(&result).unwrap());
}

/// The bytes this process has caused to be written to the disk so far (`write_bytes` of
/// /proc/self/io; 0 where the kernel does not say).
fn written_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("write_bytes: "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// How many blob files sled keeps in the store in `dir`.
fn blob_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("blobs"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The disk space (allocated blocks) of every file under `dir`.
fn disk_bytes(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        match entry.metadata() {
            Ok(m) if m.is_dir() => total += disk_bytes(&entry.path()),
            Ok(m) => total += m.blocks() * 512,
            Err(_) => {}
        }
    }
    total
}
