//! The integration tests, in one binary: each former `tests/*.rs` file is a module here, so
//! the crate is linked into one test executable instead of one per file. Run one module with
//! `cargo test --test it daemon::` (or any test name filter).
//!
//! `tests/scim_logs.rs` stays a binary of its own: it captures the request log with a
//! thread-local tracing subscriber, and tracing caches each log line's interest
//! process-wide, so a line first reached by another test's thread (with no subscriber) would
//! be switched off for it too (see that file's header).

mod common;

mod cli_members;
mod console;
mod daemon;
mod dashboard;
mod demo;
mod disk;
mod doctor;
mod events;
mod ownership;
mod pull_cli;
mod pull_client;
mod pull_e2e;
mod pull_faults;
mod scim_hostile;
mod scim_patch;
mod scim_proptest;
mod scim_router;
mod scim_serve;
mod webhooks;
