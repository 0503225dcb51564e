//! Stamps the build with its git commit and date, for `retrac-sync --version` and the
//! `retrac_build_info` metric.
//!
//! - The commit is `$RETRAC_BUILD_COMMIT` when set (a packager building from a tarball can
//!   pass it), else `git rev-parse --short=12 HEAD` when the source is a git checkout, else
//!   `unknown` (a tarball without `.git`). A build never fails for want of git.
//! - The date is `$SOURCE_DATE_EPOCH` when set (reproducible builds,
//!   <https://reproducible-builds.org/specs/source-date-epoch/>), else the time of the build,
//!   as `YYYY-MM-DD` in UTC.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RETRAC_BUILD_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");

    let commit = std::env::var("RETRAC_BUILD_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=RETRAC_STAMP_COMMIT={}", commit.trim());

    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        });
    println!("cargo:rustc-env=RETRAC_STAMP_DATE={}", ymd(epoch));
}

/// The short commit of HEAD, and a rebuild whenever HEAD moves.
fn git_commit() -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok()?;
        if !out.status.success() {
            return None;
        }
        let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
        (!s.is_empty()).then_some(s)
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    // HEAD lives in the worktree's git dir; the branch it names lives in the common dir
    // (the same directory outside a linked worktree), loose or in packed-refs. Rebuild when
    // one of them changes. Only existing files are named: cargo reruns a build script on
    // every build when a named file is missing.
    let mut watch = Vec::new();
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        watch.push(format!("{dir}/HEAD"));
    }
    if let Some(common) = git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]) {
        if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
            // (Not its directory: in a repository with several worktrees, every commit on
            // any branch would rebuild the crate. A branch that is only in packed-refs gets
            // a loose file at its next commit, which the next change to build.rs or to the
            // environment above picks up.)
            watch.push(format!("{common}/{head_ref}"));
        }
        watch.push(format!("{common}/packed-refs"));
    }
    for path in watch {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    Some(commit)
}

/// `YYYY-MM-DD` of a Unix time, in UTC (Howard Hinnant's civil-from-days algorithm).
fn ymd(epoch: i64) -> String {
    let days = epoch.div_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
