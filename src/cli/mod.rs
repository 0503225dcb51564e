//! The command line: the clap definitions ([`args`]), one dispatcher that runs a command
//! through the daemon or locally ([`dispatch`]), the rendering of the answers as tables,
//! JSON or CSV ([`render`]), and the man pages and completions made from the clap definitions
//! and config.example.toml ([`manpage`]).
//!
//! Exit codes: 0 ok, 1 failure, 2 usage or config error ([`crate::admin::AppError::exit_code`]).
//! A new subcommand is one variant in [`args::Command`] and one arm in [`dispatch::run`].

pub mod args;
pub mod dispatch;
pub mod manpage;
pub mod render;

pub use args::{Cli, Command, Output};
pub use dispatch::{main, run};
