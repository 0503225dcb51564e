//! The admin API: the owner's CLI talks to a running daemon over a Unix socket.
//!
//! The daemon holds sled's lock, so while it runs the CLI cannot open the store; it sends
//! the same requests it would execute locally, one JSON line each way, instead. Access is
//! guarded by the socket's mode (0600): whoever can open it is the owner.

pub mod client;
pub mod server;

use serde::{Deserialize, Serialize};

use crate::scim::auth::{TokenRequest, TokenResponse};
use crate::{owner, reconcile};

/// A request over the admin socket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "request", rename_all = "snake_case")]
pub enum AdminRequest {
    /// A member command (`members ...`, `audit`).
    Owner(owner::Request),
    /// A pull command (`sync ...`).
    Sync(reconcile::Request),
    /// A token command (`token ...`, `scim disconnect`).
    Token(TokenRequest),
    /// Is the daemon there, and which version is it?
    Ping,
}

/// The answer to an [`AdminRequest`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "response", rename_all = "snake_case")]
pub enum AdminResponse {
    /// The answer to a member command.
    Owner(owner::Response),
    /// The answer to a pull command.
    Sync(reconcile::Response),
    /// The answer to a token command (a new token's secret travels only on this socket).
    Token(TokenResponse),
    /// The answer to a ping.
    Pong {
        /// The daemon's version.
        version: String,
    },
}

/// What travels back on the wire: an answer, or the error message a local run would print.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminReply {
    /// It worked.
    Ok(AdminResponse),
    /// It failed; the message is for the owner.
    Error(String),
}

/// The largest request or reply line accepted, in bytes.
pub const MAX_LINE: usize = 16 * 1024 * 1024;
