//! The daemon's side of the admin socket.
//!
//! The socket is as careful as the SCIM port: it appears at its path with mode 0600 already
//! set, so nobody else can connect to it, not even between `bind` and `chmod` (see
//! [`stage`]); a peer whose
//! `SO_PEERCRED` uid is neither root nor the daemon's own is refused; a client that sends
//! nothing for [`Limits::idle`], or takes none of its answer for [`Limits::stall`], is dropped;
//! and a request line is capped at [`MAX_REQUEST`].

use std::future::Future;
use std::io::ErrorKind;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::{execute, AppError, Context, Frame, Request, MAX_REQUEST};

/// The admin API's context, under the name the daemon knows it by.
pub type AdminContext = Context;

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Another daemon answers on the socket.
    #[error("another retrac-sync daemon is already listening on {0}")]
    InUse(PathBuf),
    /// Something that is not a socket is in the way; it is never removed.
    #[error("{0} exists and is not a socket: refusing to replace it (remove it, or set [admin].socket to another path)")]
    NotASocket(PathBuf),
    /// The socket could not be created.
    #[error("cannot create the admin socket {path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The limits on a connection.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// A client that has not sent its whole request line after this long is dropped.
    pub idle: Duration,
    /// The largest request line, in bytes.
    pub max_request: usize,
    /// A client that takes none of the answer for this long is dropped, so a stalled reader
    /// does not hold a listing's snapshot (and the members it pins) for ever.
    pub stall: Duration,
    /// Connections served at once; more wait in the socket's backlog, holding no file of
    /// the daemon (the unit's file limit is shared with SCIM).
    pub max_connections: usize,
}

/// The admin socket's connection cap: an owner's CLI needs one or two.
pub const MAX_CONNECTIONS: usize = 64;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            idle: Duration::from_secs(10),
            max_request: MAX_REQUEST,
            stall: Duration::from_secs(60),
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// Binds the socket with mode 0600, replacing a stale socket left by a dead daemon (only a
/// socket: any other file in the way is an error).
pub fn bind(path: &Path) -> Result<UnixListener, BindError> {
    let io = |source| BindError::Io {
        path: path.to_path_buf(),
        source,
    };
    let listener = bind_private(path)?;
    listener.set_nonblocking(true).map_err(io)?;
    UnixListener::from_std(listener).map_err(io)
}

/// Prepares the path and binds the socket so that nobody else can ever connect to it
/// with a mode wider than 0600 (see [`stage`]).
fn bind_private(path: &Path) -> Result<std::os::unix::net::UnixListener, BindError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |source| BindError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() && !parent.exists() {
            std::fs::create_dir_all(parent).map_err(io)?;
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => return Err(BindError::InUse(path.to_path_buf())),
                // A socket nobody accepts on: a dead daemon's.
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(path).map_err(io)?;
                }
                Err(e) => return Err(io(e)),
            }
        }
        Ok(_) => return Err(BindError::NotASocket(path.to_path_buf())),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let staged = stage(path).map_err(io)?;
    let published = std::fs::rename(&staged.socket, path);
    let _ = std::fs::remove_dir_all(&staged.dir);
    published.map_err(io)?;
    Ok(staged.listener)
}

/// A socket bound where only this user can reach it, not yet at its path.
struct Staged {
    listener: std::os::unix::net::UnixListener,
    /// The private directory (mode 0700) beside the final path.
    dir: PathBuf,
    /// The socket inside it, already mode 0600.
    socket: PathBuf,
}

/// Binds the socket inside a fresh directory of mode 0700 beside `path`, and sets its mode
/// to 0600 there; [`bind_private`] then renames it into place, so it appears at `path`
/// with its final mode and no connection can arrive before the mode is set.
///
/// This is what binding under umask 0177 is for, without the umask: the umask belongs to the
/// whole process, and while it is narrowed every directory another thread creates gets mode
/// 0600 and cannot be entered (a store or a temporary directory made at that moment).
fn stage(path: &Path) -> std::io::Result<Staged> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // Short names: a socket path is limited to 107 bytes.
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = parent.join(format!(".b{}-{seq}", std::process::id()));
    if dir.exists() {
        // Left by a crash of a process that had this pid.
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    let socket = dir.join("s");
    let bound = std::os::unix::net::UnixListener::bind(&socket).and_then(|listener| {
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
        Ok(listener)
    });
    match bound {
        Ok(listener) => Ok(Staged {
            listener,
            dir,
            socket,
        }),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            Err(e)
        }
    }
}

/// Whether a peer with this uid may use the socket: root, or the daemon's own user.
pub fn peer_allowed(peer_uid: u32, own_uid: u32) -> bool {
    peer_uid == 0 || peer_uid == own_uid
}

/// Answers requests until `shutdown` resolves. Each connection carries one request.
pub async fn serve(listener: UnixListener, ctx: Context, shutdown: impl Future<Output = ()>) {
    serve_with(listener, ctx, Limits::default(), shutdown).await
}

/// [`serve`] with explicit limits (tests shorten the idle timeout).
pub async fn serve_with(
    listener: UnixListener,
    ctx: Context,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let ctx = Arc::new(ctx);
    let own_uid = rustix::process::geteuid().as_raw();
    let mut connections = tokio::task::JoinSet::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        // The cap is taken before accept(2): past it, clients wait in the backlog.
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let ctx = ctx.clone();
                    connections.spawn(async move {
                        if let Err(e) = handle_connection(stream, &ctx, limits, own_uid).await {
                            tracing::warn!(error = %e, "admin connection failed");
                        }
                        drop(permit);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "admin socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        // Reap finished connections so the set does not grow.
        while connections.try_join_next().is_some() {}
    }
    // Requests in flight finish (the daemon bounds the whole drain).
    while connections.join_next().await.is_some() {}
}

/// Reads the request line: `Ok(None)` when the client closed without sending one.
async fn read_request(stream: &mut UnixStream, limits: Limits) -> Result<Option<String>, AppError> {
    let mut reader = BufReader::new(stream.take(limits.max_request as u64 + 1));
    let mut line = Vec::new();
    let read = tokio::time::timeout(limits.idle, reader.read_until(b'\n', &mut line)).await;
    match read {
        Err(_) => Err(AppError::Usage(format!(
            "no request within {} s: closing",
            limits.idle.as_secs_f32()
        ))),
        Ok(Err(e)) => Err(AppError::failed(format!("cannot read the request: {e}"))),
        Ok(Ok(0)) => Ok(None),
        Ok(Ok(_)) if line.len() > limits.max_request => Err(AppError::Usage(format!(
            "the request is larger than {} bytes",
            limits.max_request
        ))),
        Ok(Ok(_)) => String::from_utf8(line)
            .map(Some)
            .map_err(|_| AppError::Usage("the request is not UTF-8".into())),
    }
}

async fn handle_connection(
    mut stream: UnixStream,
    ctx: &Context,
    limits: Limits,
    own_uid: u32,
) -> std::io::Result<()> {
    let peer = stream.peer_cred()?.uid();
    if !peer_allowed(peer, own_uid) {
        tracing::warn!(
            peer_uid = peer,
            "admin socket: refused a peer that is neither root nor the daemon's user"
        );
        let refused = AppError::failed(format!(
            "permission denied: uid {peer} is neither root nor the daemon's user"
        ));
        return write_frames(
            &mut stream,
            std::iter::once(Frame::Error(refused)),
            limits.stall,
        )
        .await;
    }
    let line = match read_request(&mut stream, limits).await {
        Ok(Some(line)) => line,
        Ok(None) => return Ok(()),
        Err(e) => {
            tracing::info!(error = %e, "admin request refused");
            return write_frames(&mut stream, std::iter::once(Frame::Error(e)), limits.stall).await;
        }
    };
    let request = match serde_json::from_str::<Request>(&line) {
        Ok(r) => r,
        Err(e) => {
            let e = AppError::Usage(format!(
                "unreadable admin request (is the CLI the same version as the daemon?): {e}"
            ));
            return write_frames(&mut stream, std::iter::once(Frame::Error(e)), limits.stall).await;
        }
    };
    let op = request_name(&request);
    match execute(ctx, request).await {
        Ok(reply) => {
            tracing::info!(op, "admin request done");
            write_frames(&mut stream, reply.into_frames(), limits.stall).await
        }
        Err(e) => {
            tracing::info!(op, error = %e, "admin request failed");
            write_frames(&mut stream, std::iter::once(Frame::Error(e)), limits.stall).await
        }
    }
}

/// Writes frames as JSON lines, in chunks of about 64 KiB, as they are produced.
async fn write_frames(
    stream: &mut UnixStream,
    frames: impl Iterator<Item = Frame>,
    stall: Duration,
) -> std::io::Result<()> {
    const CHUNK: usize = 64 * 1024;
    let mut buf = Vec::with_capacity(CHUNK + 1024);
    for frame in frames {
        serde_json::to_writer(&mut buf, &frame).map_err(std::io::Error::other)?;
        buf.push(b'\n');
        if buf.len() >= CHUNK {
            write_within(stream, &buf, stall).await?;
            buf.clear();
        }
    }
    write_within(stream, &buf, stall).await?;
    stream.shutdown().await
}

async fn write_within(stream: &mut UnixStream, buf: &[u8], stall: Duration) -> std::io::Result<()> {
    tokio::time::timeout(stall, stream.write_all(buf))
        .await
        .map_err(|_| {
            std::io::Error::new(
                ErrorKind::TimedOut,
                format!(
                    "the client took no answer for {} s: dropped",
                    stall.as_secs_f32()
                ),
            )
        })?
}

fn request_name(r: &Request) -> &'static str {
    match r {
        Request::Owner(_) => "owner",
        Request::Sync(_) => "sync",
        Request::Token(_) => "token",
        Request::Webhook(_) => "webhook",
        Request::Events(_) => "events",
        Request::ConsoleLogin(_) => "console_login",
        Request::ConsoleLogout(_) => "console_logout",
        Request::Ping => "ping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use std::os::unix::fs::PermissionsExt;
    use tokio::io::AsyncWriteExt;

    fn context(dir: &Path) -> Context {
        Context {
            store: Store::open(&dir.join("store")).unwrap(),
            scim_url: None,
            console_url: None,
            sync: None,
            on_sync: None,
            progress: None,
            webhook_retry: Default::default(),
            stopping: None,
        }
    }

    /// Serves on a socket in `dir` with `limits`; returns its path and the shutdown handle.
    fn start(dir: &Path, limits: Limits) -> (PathBuf, tokio::sync::oneshot::Sender<()>) {
        let path = dir.join("admin.sock");
        let listener = bind(&path).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve_with(listener, context(dir), limits, async move {
            let _ = rx.await;
        }));
        (path, tx)
    }

    async fn frames(stream: &mut UnixStream) -> Vec<Frame> {
        let mut text = String::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut text))
            .await
            .expect("the daemon answers and closes")
            .unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn only_root_and_the_daemons_own_user_may_connect() {
        assert!(peer_allowed(0, 990));
        assert!(peer_allowed(990, 990));
        assert!(!peer_allowed(1000, 990));
        assert!(!peer_allowed(65534, 0));
        assert!(peer_allowed(0, 0));
    }

    #[tokio::test]
    async fn the_socket_is_0600_and_unreachable_until_it_is_moved_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.sock");
        let staged = stage(&path).unwrap();
        // Bound, but not at its path yet: only inside a directory nobody else may enter.
        assert!(!path.exists());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&staged.dir), 0o700);
        assert_eq!(
            mode(&staged.socket),
            0o600,
            "the mode is set before it is published"
        );
        assert!(staged.socket.starts_with(&staged.dir));
        std::fs::remove_dir_all(&staged.dir).unwrap();
        drop(staged);

        let _listener = bind(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            left,
            vec![std::ffi::OsString::from("admin.sock")],
            "no staging left"
        );
    }

    #[tokio::test]
    async fn a_regular_file_in_the_way_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.sock");
        std::fs::write(&path, "precious").unwrap();
        assert!(matches!(bind(&path), Err(BindError::NotASocket(_))));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced_and_a_live_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists(), "a dead daemon's socket file");
        let live = bind(&path).unwrap();
        assert!(matches!(bind(&path), Err(BindError::InUse(_))));
        drop(live);
    }

    #[tokio::test]
    async fn a_client_that_sends_nothing_is_dropped_after_the_idle_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            idle: Duration::from_millis(200),
            ..Limits::default()
        };
        let (path, _stop) = start(dir.path(), limits);
        let mut silent = UnixStream::connect(&path).await.unwrap();
        let started = std::time::Instant::now();
        let answer = frames(&mut silent).await;
        assert!(started.elapsed() < Duration::from_secs(3));
        match answer.as_slice() {
            [Frame::Error(AppError::Usage(m))] => assert!(m.contains("no request within"), "{m}"),
            other => panic!("{other:?}"),
        }
        // The daemon still answers others.
        let mut ping = UnixStream::connect(&path).await.unwrap();
        ping.write_all(b"{\"type\":\"ping\"}\n").await.unwrap();
        assert!(matches!(frames(&mut ping).await[..], [Frame::Pong { .. }]));
    }

    #[tokio::test]
    async fn the_default_idle_timeout_is_10_s() {
        assert_eq!(Limits::default().idle, Duration::from_secs(10));
        assert_eq!(Limits::default().max_request, 1024 * 1024);
        assert_eq!(Limits::default().stall, Duration::from_secs(60));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_stops_reading_a_listing_is_dropped() {
        use crate::member::{Actor, Change, DirectoryAttrs, ManagedBy, UserName};
        let dir = tempfile::tempdir().unwrap();
        {
            // About 1.5 MB of answer: far more than the socket's buffers hold.
            let store = Store::open(&dir.path().join("store")).unwrap();
            let name = "x".repeat(200);
            let changes: Vec<Change> = (0..3000)
                .map(|i| Change::Create {
                    attrs: DirectoryAttrs::new(
                        UserName::parse(&format!("u{i}@example.com")).unwrap(),
                        Some(&name),
                        Some(&name),
                    ),
                    managed_by: ManagedBy::Manual,
                })
                .collect();
            crate::provision::apply_batch(&store, &changes, &Actor::Owner, chrono::Utc::now())
                .unwrap();
            store.flush().await.unwrap();
        }
        let limits = Limits {
            stall: Duration::from_millis(200),
            ..Limits::default()
        };
        let (path, _stop) = start(dir.path(), limits);
        let mut s = UnixStream::connect(&path).await.unwrap();
        s.write_all(
            b"{\"type\":\"owner\",\"request\":{\"op\":\"members_list\",\"filter\":\"all\"}}\n",
        )
        .await
        .unwrap();
        // Read nothing for longer than the stall limit, then everything that is left.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&rest);
        assert!(text.starts_with("{\"begin\""), "the listing had begun");
        assert!(
            !text.contains("{\"end\""),
            "the daemon stopped writing to a client that read nothing"
        );
    }

    #[tokio::test]
    async fn a_request_line_is_capped_at_1_mib() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _stop) = start(dir.path(), Limits::default());
        // Just under the cap: a ping padded with spaces is still read.
        let mut padded = b"{\"type\":\"ping\"}".to_vec();
        padded.resize(MAX_REQUEST - 1, b' ');
        padded.push(b'\n');
        let mut s = UnixStream::connect(&path).await.unwrap();
        s.write_all(&padded).await.unwrap();
        assert!(matches!(frames(&mut s).await[..], [Frame::Pong { .. }]));
        // Over it: refused, without reading the rest.
        let mut big = vec![b' '; MAX_REQUEST + 100];
        big.push(b'\n');
        let s = UnixStream::connect(&path).await.unwrap();
        let (mut read, mut write) = s.into_split();
        let writer = tokio::spawn(async move {
            let _ = write.write_all(&big).await;
        });
        // The daemon closes with the rest unread, so the read after the answer is a reset:
        // read the answer line only, as the CLI does.
        let mut text = String::new();
        let mut reader = BufReader::new(&mut read);
        tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut text))
            .await
            .unwrap()
            .unwrap();
        let frame: Frame = serde_json::from_str(text.trim()).unwrap();
        match frame {
            Frame::Error(AppError::Usage(m)) => assert!(m.contains("larger than 1048576"), "{m}"),
            other => panic!("{other:?}"),
        }
        let _ = writer.await;
    }
}
