//! The pull against 100,000 users served by the fake Google on loopback.
//!
//! Prints, as medians of several rounds: a fetch-only pass, a cold sync into an empty
//! store, a warm sync with nothing changed (and the member writes it made), the ratio of
//! each to the fetch-only pass, the Google requests per run, and the peak RSS.
//!
//! The fake runs in a child process (this binary, re-executed), so the RSS is the pull's.
//!
//! Run: `cargo bench --bench pull` (USERS=N and ROUNDS=N to change the size; LOG=info
//! prints each run's log line, with the time spent reading Google and planning).

use std::io::{BufRead, BufReader, Write};
use std::time::{Duration, Instant};

use fake_google::{FakeGoogle, FakeSeed};
use retrac_sync::config::Config;
use retrac_sync::reconcile::plan::Desired;
use retrac_sync::reconcile::{self, SyncContext, SyncOptions, Target};
use retrac_sync::store::{AuditQuery, RunStatus, Store};

const CHILD_ENV: &str = "RETRAC_BENCH_FAKE_DIR";

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

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn peak_rss_mb() -> f64 {
    proc_status_mb("VmHWM:")
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
    let mut parts = line.split_whitespace();
    let (base, admin) = (
        parts.next().unwrap().to_string(),
        parts.next().unwrap().to_string(),
    );

    let config = |store_dir: &std::path::Path| {
        let mut c = Config::default();
        c.store.path = store_dir.to_path_buf();
        c.google.key_file = Some(dir.path().join("key.json"));
        c.google.subject = Some(admin.clone());
        c.google.api_base_url = base.clone();
        c.google.domains = vec!["example.com".into()];
        c
    };

    println!("pull benchmark: {users} users on the fake Google (loopback, child process), {rounds} rounds, medians");
    let mut fetch = Vec::new();
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    let mut warm_writes = Vec::new();
    let mut frees = Vec::new();
    let mut requests = (0, 0);
    let mut rss_marks: Vec<(&str, f64)> = Vec::new();
    for round in 0..rounds {
        let store_dir = dir.path().join(format!("store-{round}"));
        let store = Store::open(&store_dir).unwrap();
        let mut ctx =
            SyncContext::new(store.clone(), config(&store_dir)).with_credentials_dir(None);
        if let Some(b) = std::env::var("BATCH").ok().and_then(|v| v.parse().ok()) {
            ctx = ctx.with_batch_size(b);
        }
        // Fetch-only pass over the same pages (also warms the token).
        let t = Instant::now();
        let n = reconcile::run::fetch_only(&ctx).await.unwrap();
        fetch.push(t.elapsed());
        assert_eq!(n, users);
        if round == 0 {
            rss_marks.push(("after fetch-only", peak_rss_mb()));
        }

        let t = Instant::now();
        let r = sync(&ctx).await;
        cold.push(t.elapsed());
        assert_eq!(r.report.status, RunStatus::Ok, "{r:?}");
        assert_eq!(
            r.report.counts.created as usize + r.report.counts.unchanged as usize,
            users
        );
        requests.0 = r.report.google_requests;
        if round == 0 {
            rss_marks.push(("after cold sync", peak_rss_mb()));
        }

        let warm_repeat: usize = std::env::var("WARM_REPEAT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        for _ in 0..warm_repeat {
            let before = last_audit_seq(&store);
            let versions: u64 = store.members_by_id().map(|m| m.unwrap().version).sum();
            let t = Instant::now();
            let r = sync(&ctx).await;
            warm.push(t.elapsed());
            assert_eq!(r.report.counts.unchanged as usize, users, "{r:?}");
            requests.1 = r.report.google_requests;
            let after_versions: u64 = store.members_by_id().map(|m| m.unwrap().version).sum();
            warm_writes
                .push((last_audit_seq(&store) != before) as u64 + (after_versions - versions));
        }
        // The plan frees the users that need no change before it returns, in the run (it
        // used to hand them to a thread of their own): on a warm sync that is every user.
        let unchanged: Vec<Option<Desired>> = store
            .snapshot()
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
        frees.push(t.elapsed());
        drop(ctx);
        drop(store);
        std::fs::remove_dir_all(&store_dir).ok();
    }
    drop(child.stdin.take());
    let _ = child.wait();

    let (f, c, w) = (median(fetch), median(cold), median(warm));
    let expected_requests = users.div_ceil(500);
    println!("fetch-only pass : {:>8.0} ms", f.as_secs_f64() * 1e3);
    println!(
        "cold sync       : {:>8.0} ms  ({:.2}x fetch-only; target <= 3000 ms and <= 1.5x)",
        c.as_secs_f64() * 1e3,
        c.as_secs_f64() / f.as_secs_f64()
    );
    println!(
        "warm sync       : {:>8.0} ms  ({:.2}x fetch-only; target <= 1000 ms and <= 1.5x)",
        w.as_secs_f64() * 1e3,
        w.as_secs_f64() / f.as_secs_f64()
    );
    println!(
        "freeing {users} unchanged users at the end of a plan: {:>6.1} ms (in the run)",
        median(frees).as_secs_f64() * 1e3
    );
    println!(
        "warm member writes: {:?} (target 0; each run still records its run record)",
        warm_writes
    );
    println!(
        "Google requests per run: cold {}, warm {} (ceil({users}/500) = {expected_requests}, no scope groups)",
        requests.0, requests.1
    );
    println!(
        "peak RSS of the pull process: {:.0} MB (target <= 250 MB)",
        peak_rss_mb()
    );
    for (when, mb) in rss_marks {
        println!("  peak RSS {when} (first round): {mb:.0} MB");
    }
}
