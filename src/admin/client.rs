//! The CLI's side of the admin socket (blocking: the CLI makes one call and exits). A
//! listing is read frame by frame as the CLI prints it.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{AppError, Frame, Listing, ListingKind, Reply, Request};

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
    /// The daemon ran the command and it failed.
    #[error("{0}")]
    Remote(AppError),
}

impl From<ClientError> for AppError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Remote(e) => e,
            other => AppError::Failed(other.to_string()),
        }
    }
}

/// Sends one request and reads its answer. `timeout` bounds each read (a `sync` through the
/// daemon waits for the run, so callers pass a long one for it).
pub fn call(socket: &Path, request: &Request, timeout: Duration) -> Result<Reply, ClientError> {
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
    let mut frames = Frames {
        reader: BufReader::with_capacity(64 * 1024, stream),
        path: socket.to_path_buf(),
        timeout,
        line: String::new(),
    };
    let first = frames
        .next()
        .ok_or_else(|| broken("the daemon closed the connection without answering".into()))?
        .map_err(|e| broken(e.to_string()))?;
    match first {
        Frame::Written { member, changed } => Ok(Reply::Member { member, changed }),
        Frame::Shown(member) => Ok(Reply::Shown(member)),
        Frame::Page { members, next } => Ok(Reply::Page { members, next }),
        Frame::ConsoleLink(l) => Ok(Reply::ConsoleLink(l)),
        Frame::SessionsEnded { count } => Ok(Reply::SessionsEnded(count)),
        Frame::Token(r) => Ok(Reply::Token(r)),
        Frame::Webhook(r) => Ok(Reply::Webhook(r)),
        Frame::Events(r) => Ok(Reply::Events(r)),
        Frame::Sync(r) => Ok(Reply::Sync(r)),
        Frame::Pong { version } => Ok(Reply::Pong { version }),
        Frame::Begin {
            listing: ListingKind::Members,
            ..
        } => Ok(Reply::Members(frames.listing(|f| match f {
            Frame::Member(m) => Some(*m),
            _ => None,
        }))),
        Frame::Begin {
            listing: ListingKind::Audit,
            oldest_held,
        } => Ok(Reply::Audit {
            items: frames.listing(|f| match f {
                Frame::Audit(e) => Some(*e),
                _ => None,
            }),
            oldest_held,
        }),
        Frame::Error(e) => Err(ClientError::Remote(e)),
        other @ (Frame::Member(_) | Frame::Audit(_) | Frame::End { .. }) => Err(broken(format!(
            "the answer began with {}",
            frame_name(&other)
        ))),
    }
}

/// The frames of an answer, one JSON line each.
struct Frames {
    reader: BufReader<UnixStream>,
    path: PathBuf,
    timeout: Duration,
    line: String,
}

impl Frames {
    fn broken(&self, message: impl std::fmt::Display) -> AppError {
        AppError::Failed(format!(
            "the daemon did not answer properly on {}: {message}",
            self.path.display()
        ))
    }

    /// The next frame; `None` at the end of the stream.
    fn next(&mut self) -> Option<Result<Frame, AppError>> {
        self.line.clear();
        match self.reader.read_line(&mut self.line) {
            Ok(0) => None,
            Ok(_) => Some(
                serde_json::from_str(&self.line)
                    .map_err(|e| self.broken(format!("unreadable answer: {e}"))),
            ),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Some(Err(self.broken(format!(
                    "no answer within {} s (the daemon may still be working on it)",
                    self.timeout.as_secs()
                ))))
            }
            Err(e) => Some(Err(self.broken(e))),
        }
    }

    /// The items after a `begin` frame, up to the `end` frame, whose count must match.
    fn listing<T: Send + 'static>(mut self, item: fn(Frame) -> Option<T>) -> Listing<T> {
        let mut count = 0u64;
        let mut done = false;
        Listing::new(std::iter::from_fn(move || {
            if done {
                return None;
            }
            let next = match self.next() {
                None => Err(self.broken("the listing was cut short")),
                Some(Err(e)) => Err(e),
                Some(Ok(Frame::End { count: sent })) if sent == count => {
                    done = true;
                    return None;
                }
                Some(Ok(Frame::End { count: sent })) => Err(self.broken(format!(
                    "the listing announced {sent} items but {count} arrived"
                ))),
                Some(Ok(Frame::Error(e))) => Err(e),
                Some(Ok(frame)) => {
                    let name = frame_name(&frame);
                    match item(frame) {
                        Some(t) => {
                            count += 1;
                            Ok(t)
                        }
                        None => Err(self.broken(format!("a {name} frame inside a listing"))),
                    }
                }
            };
            done = next.is_err();
            Some(next)
        }))
    }
}

fn frame_name(f: &Frame) -> &'static str {
    match f {
        Frame::Written { .. } => "written",
        Frame::Shown(_) => "shown",
        Frame::Page { .. } => "page",
        Frame::ConsoleLink(_) => "console_link",
        Frame::SessionsEnded { .. } => "sessions_ended",
        Frame::Token(_) => "token",
        Frame::Webhook(_) => "webhook",
        Frame::Events(_) => "events",
        Frame::Sync(_) => "sync",
        Frame::Pong { .. } => "pong",
        Frame::Begin { .. } => "begin",
        Frame::Member(_) => "member",
        Frame::Audit(_) => "audit",
        Frame::End { .. } => "end",
        Frame::Error(_) => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member::MemberView;

    /// A daemon that answers any request with `lines`.
    fn fake_daemon(lines: Vec<String>) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut request = String::new();
            BufReader::new(&s).read_line(&mut request).unwrap();
            for l in lines {
                s.write_all(format!("{l}\n").as_bytes()).unwrap();
            }
        });
        (dir, path)
    }

    fn member(n: usize) -> String {
        let m = MemberView {
            id: format!("id{n}"),
            dir: crate::member::DirectoryAttrs {
                emails: vec![],
                ..crate::member::DirectoryAttrs::new(
                    crate::member::UserName::parse(&format!("u{n}@example.com")).unwrap(),
                    None,
                    None,
                )
            },
            locations: vec![],
            role: crate::member::Role::Member,
            managed_by: crate::member::ManagedBy::Manual,
            created: chrono::Utc::now(),
            last_modified: chrono::Utc::now(),
            version: 1,
            scim_deleted: false,
        };
        serde_json::to_string(&Frame::Member(Box::new(m))).unwrap()
    }

    fn list(lines: Vec<String>) -> Vec<Result<MemberView, AppError>> {
        let (_dir, path) = fake_daemon(lines);
        let request = Request::Owner(crate::owner::Request::MembersList {
            filter: crate::owner::ActiveFilter::All,
        });
        match call(&path, &request, Duration::from_secs(5)).unwrap() {
            Reply::Members(items) => items.collect(),
            other => panic!("{other:?}"),
        }
    }

    const BEGIN: &str = r#"{"begin":{"listing":"members"}}"#;

    #[test]
    fn a_whole_listing_is_read_item_by_item() {
        let got = list(vec![
            BEGIN.into(),
            member(1),
            member(2),
            r#"{"end":{"count":2}}"#.into(),
        ]);
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(Result::is_ok));
    }

    #[test]
    fn a_count_that_does_not_match_or_a_missing_end_is_an_error() {
        let got = list(vec![
            BEGIN.into(),
            member(1),
            r#"{"end":{"count":2}}"#.into(),
        ]);
        match got.last() {
            Some(Err(AppError::Failed(m))) => assert!(m.contains("announced 2"), "{m}"),
            other => panic!("{other:?}"),
        }
        let got = list(vec![BEGIN.into(), member(1)]);
        match got.last() {
            Some(Err(AppError::Failed(m))) => assert!(m.contains("cut short"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_error_frame_is_the_remote_error_with_its_kind() {
        let (_dir, path) = fake_daemon(vec![
            r#"{"error":{"kind":"usage","message":"bad address"}}"#.into(),
        ]);
        match call(&path, &Request::Ping, Duration::from_secs(5)) {
            Err(ClientError::Remote(e)) => {
                assert_eq!(e, AppError::Usage("bad address".into()));
                assert_eq!(AppError::from(ClientError::Remote(e)).exit_code(), 2);
            }
            other => panic!("{other:?}"),
        }
    }
}
