//! What this binary is: its version, the git commit it was built from and the build date
//! (stamped by `build.rs`), for `--version`, `/metrics` and `doctor`.

/// The crate version, e.g. `0.1.0`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The short git commit, or `unknown` when built outside a git checkout.
pub const COMMIT: &str = env!("RETRAC_STAMP_COMMIT");

/// The build date, `YYYY-MM-DD` in UTC (`$SOURCE_DATE_EPOCH` when set).
pub const BUILD_DATE: &str = env!("RETRAC_STAMP_DATE");

/// What `retrac-sync --version` prints after the program name.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("RETRAC_STAMP_COMMIT"),
    ", built ",
    env!("RETRAC_STAMP_DATE"),
    ")"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_long_version_names_version_commit_and_date() {
        assert!(LONG_VERSION.starts_with(VERSION));
        assert!(LONG_VERSION.contains(COMMIT));
        assert!(!COMMIT.is_empty());
        // YYYY-MM-DD
        let d: Vec<&str> = BUILD_DATE.split('-').collect();
        assert_eq!(d.len(), 3, "{BUILD_DATE}");
        assert_eq!(d[0].len(), 4);
        assert!(d.iter().all(|p| p.chars().all(|c| c.is_ascii_digit())));
    }
}
