//! The CLI's side of the admin socket (blocking: the CLI makes one call and exits).

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{AdminReply, AdminRequest, AdminResponse, MAX_LINE};

/// Why a call over the socket did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No daemon listens there (no socket file, or nobody accepts): run the command locally.
    #[error("no daemon answers on {0}")]
    NoDaemon(PathBuf),
    /// The socket exists but this user may not open it.
    #[error("cannot open the admin socket {0}: permission denied (run the command as the user the daemon runs as, or as root)")]
    PermissionDenied(PathBuf),
    /// The daemon failed to answer properly.
    #[error("the daemon did not answer properly on {path}: {message}")]
    Broken {
        /// The socket.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The daemon answered with an error.
    #[error("{0}")]
    Remote(String),
}

/// Sends one request and waits for its answer. `timeout` bounds the whole call (a `sync`
/// through the daemon waits for the run, so callers pass a long one for it).
pub fn call(
    socket: &Path,
    request: &AdminRequest,
    timeout: Duration,
) -> Result<AdminResponse, ClientError> {
    let broken = |message: String| ClientError::Broken {
        path: socket.to_path_buf(),
        message,
    };
    let mut stream = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) => {
            return Err(match e.kind() {
                ErrorKind::NotFound | ErrorKind::ConnectionRefused => {
                    ClientError::NoDaemon(socket.to_path_buf())
                }
                ErrorKind::PermissionDenied => ClientError::PermissionDenied(socket.to_path_buf()),
                _ => broken(e.to_string()),
            })
        }
    };
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|_| stream.set_write_timeout(Some(Duration::from_secs(30))))
        .map_err(|e| broken(e.to_string()))?;
    let mut line = serde_json::to_vec(request).map_err(|e| broken(e.to_string()))?;
    line.push(b'\n');
    stream.write_all(&line).map_err(|e| broken(e.to_string()))?;
    let mut reader = BufReader::new(stream.take(MAX_LINE as u64));
    let mut reply = String::new();
    match reader.read_line(&mut reply) {
        Ok(0) => {
            return Err(broken(
                "the daemon closed the connection without answering".into(),
            ))
        }
        Ok(_) => {}
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            return Err(broken(format!(
                "no answer within {} s (the daemon may still be working on it)",
                timeout.as_secs()
            )))
        }
        Err(e) => return Err(broken(e.to_string())),
    }
    match serde_json::from_str::<AdminReply>(&reply) {
        Ok(AdminReply::Ok(r)) => Ok(r),
        Ok(AdminReply::Error(message)) => Err(ClientError::Remote(message)),
        Err(e) => Err(broken(format!("unreadable answer: {e}"))),
    }
}
