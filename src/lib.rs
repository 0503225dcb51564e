//! retrac-sync keeps a Retrac workspace's members in step with a Google Workspace directory:
//! a SCIM 2.0 endpoint for push, a scheduled Directory API pull as the safety net, and one
//! write path, [`provision::apply`], for both.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

/// mimalloc instead of the system allocator: sled's page cache and the SCIM handlers
/// allocate many small short-lived values, and glibc malloc was about a third of the CPU
/// time of store writes and a fifth of SCIM reads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod access;
pub mod admin;
pub mod cli;
pub mod config;
pub mod console;
pub mod daemon;
#[cfg(feature = "demo")]
pub mod demo;
pub mod directory;
pub mod doctor;
pub mod events;
pub mod health;
pub mod listener;
pub mod member;
pub mod owner;
pub mod provision;
pub mod reconcile;
pub mod schedule;
pub mod scim;
pub mod store;
pub mod telemetry;
pub mod tokens;
pub mod version;
pub mod webhooks;
