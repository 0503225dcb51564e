//! One accept loop for the daemon's listeners (SCIM, health and metrics; the admin socket
//! can use [`accept_loop`] too): a cap on open connections, idle and header timeouts, and a
//! bounded graceful drain at shutdown.
//!
//! The cap is enforced before `accept(2)`: past `max_connections`, new connections wait in
//! the kernel's backlog and take no file descriptor from the process until one closes.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{watch, Semaphore};

/// The bounds of one listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    /// Which listener, for the log ("SCIM", "metrics").
    pub name: &'static str,
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// A connection with no request running and no byte in either direction for this
    /// long is closed (an idle keep-alive, a client that stopped reading its answer).
    pub idle_timeout: Duration,
    /// A request's headers (or a TLS handshake) must be complete this long after the
    /// connection was accepted, or, on a kept-alive connection, after their first byte.
    pub header_timeout: Duration,
    /// Connections one client address may hold open at once; past it, that address's
    /// idlest connection is closed for the new one, or the new one if all of them are busy.
    pub max_connections_per_ip: usize,
    /// How long shutdown waits for requests in flight.
    pub drain_timeout: Duration,
}

/// The header timeout of every listener.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long shutdown waits for requests in flight.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The cap not reached for this long ends a burst of connections (for the log).
const BURST_GAP: Duration = Duration::from_secs(10);

/// The listen backlog: connections past the cap wait here, in the kernel, holding no file
/// of the process. The kernel clamps it to `net.core.somaxconn` (4096 by default).
pub const BACKLOG: u32 = 4096;

/// Binds a TCP listener on `addr` (an address or `host:port`) with a backlog of
/// [`BACKLOG`] (the standard library's is 128: a burst past the cap would have its SYNs
/// dropped and retried by the clients for seconds).
pub async fn bind_tcp(addr: &str) -> io::Result<TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let socket = match a {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(a).and_then(|()| socket.listen(BACKLOG)) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the address resolves to nothing",
        )
    }))
}

impl ConnLimits {
    /// The private health and metrics listener: a scraper and a health check need few
    /// connections.
    pub fn metrics() -> ConnLimits {
        ConnLimits {
            name: "metrics",
            max_connections: 64,
            idle_timeout: Duration::from_secs(30),
            header_timeout: HEADER_TIMEOUT,
            max_connections_per_ip: 64,
            drain_timeout: DRAIN_TIMEOUT,
        }
    }
}

/// A listener the accept loop can take connections from.
pub trait Listen: Send + 'static {
    /// A connection.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// Waits for the next connection; the peer's address when it has one.
    fn accept_conn(
        &self,
    ) -> impl Future<Output = io::Result<(Self::Io, Option<SocketAddr>)>> + Send;
}

impl Listen for TcpListener {
    type Io = tokio::net::TcpStream;
    async fn accept_conn(&self) -> io::Result<(Self::Io, Option<SocketAddr>)> {
        let (stream, peer) = self.accept().await?;
        let _ = stream.set_nodelay(true);
        Ok((stream, Some(peer)))
    }
}

impl Listen for UnixListener {
    type Io = tokio::net::UnixStream;
    async fn accept_conn(&self) -> io::Result<(Self::Io, Option<SocketAddr>)> {
        let (stream, _) = self.accept().await?;
        Ok((stream, None))
    }
}

/// The open connections of one listener, so that the cap can close the idlest one.
#[derive(Default)]
struct Open {
    next: u64,
    conns: std::collections::HashMap<u64, OpenConn>,
}

struct OpenConn {
    activity: Arc<Activity>,
    ip: Option<std::net::IpAddr>,
    abort: tokio::task::AbortHandle,
}

impl Open {
    fn per_ip(&self, ip: std::net::IpAddr) -> usize {
        self.conns.values().filter(|c| c.ip == Some(ip)).count()
    }

    /// Closes the connection that has been idle longest (no request in flight: a silent new
    /// socket or an idle keep-alive), among `ip`'s when given. False when every connection
    /// has a request in flight: those are never shed.
    fn shed_idlest(&mut self, ip: Option<std::net::IpAddr>) -> bool {
        let idlest = self
            .conns
            .iter()
            .filter(|(_, c)| ip.is_none() || c.ip == ip)
            .filter_map(|(id, c)| c.activity.idle_since().map(|t| (t, *id)))
            .min();
        match idlest.and_then(|(_, id)| self.conns.remove(&id)) {
            Some(c) => {
                c.abort.abort();
                true
            }
            None => false,
        }
    }
}

fn lock_open(open: &Mutex<Open>) -> std::sync::MutexGuard<'_, Open> {
    open.lock().unwrap_or_else(|p| p.into_inner())
}

/// Accepts connections until `shutdown` completes, at most `limits.max_connections` open at
/// once and `limits.max_connections_per_ip` from one address, each handled by
/// `handle(io, peer, stop, activity)` in its own task; `stop` turns true at shutdown, and the
/// handler records the connection's traffic and requests in `activity`. Then waits up to
/// `limits.drain_timeout` for the open ones and aborts the rest.
///
/// At a cap, a new connection closes the connection that has been idle longest (no request in
/// flight): sockets that say nothing cannot lock the others out. When every connection has
/// a request in flight, the new one waits for a slot (the ones after it wait in the kernel's
/// backlog, holding no file), or, past the per-address cap, is closed.
pub async fn accept_loop<L, H, F>(
    listener: L,
    limits: &ConnLimits,
    shutdown: impl Future<Output = ()> + Send,
    handle: H,
) where
    L: Listen,
    H: Fn(L::Io, Option<SocketAddr>, watch::Receiver<bool>, Arc<Activity>) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let cap = limits.max_connections.max(1);
    let per_ip_cap = limits.max_connections_per_ip.max(1);
    let slots = Arc::new(Semaphore::new(cap));
    let open = Arc::new(Mutex::new(Open::default()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    // When the cap was last reached: a burst is over once the cap has not been reached
    // for BURST_GAP, and the next one warns again.
    let mut last_at_cap: Option<Instant> = None;
    let mut warn_at_cap = |what: &'static str| {
        let now = Instant::now();
        if last_at_cap.is_none_or(|t| now.duration_since(t) > BURST_GAP) {
            // One warning per burst, not one per connection.
            tracing::warn!(
                listener = limits.name,
                max_connections = cap,
                max_connections_per_ip = per_ip_cap,
                "{what}"
            );
        }
        last_at_cap = Some(now);
    };
    tokio::pin!(shutdown);
    loop {
        // Reap finished connections so the set does not grow.
        while connections.try_join_next().is_some() {}
        let permit = slots.clone().try_acquire_owned().ok();
        let (io, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept_conn() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(listener = limits.name, error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            // Keep reaping while waiting.
            Some(_) = connections.join_next() => continue,
        };
        let ip = peer.map(|p| p.ip());
        // Whether a connection was closed for this one already (its slot is on its way).
        let mut shed = false;
        if let Some(ip) = ip {
            let mut o = lock_open(&open);
            if o.per_ip(ip) >= per_ip_cap {
                if !o.shed_idlest(Some(ip)) {
                    drop(o);
                    warn_at_cap("per-address connection cap reached with every connection busy; closing the new one");
                    drop(io);
                    continue;
                }
                shed = true;
            }
        }
        let permit = match permit {
            Some(p) => p,
            None => {
                if !shed && !lock_open(&open).shed_idlest(None) {
                    warn_at_cap("connection cap reached with every connection busy; new connections wait in the kernel backlog");
                }
                tokio::select! {
                    _ = &mut shutdown => break,
                    p = slots.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                }
            }
        };
        let activity = Arc::new(Activity::new());
        let task = handle(io, peer, stop_rx.clone(), activity.clone());
        let mut o = lock_open(&open);
        let id = o.next;
        o.next += 1;
        let registry = open.clone();
        let abort = connections.spawn(async move {
            task.await;
            lock_open(&registry).conns.remove(&id);
            drop(permit);
        });
        o.conns.insert(
            id,
            OpenConn {
                activity,
                ip,
                abort,
            },
        );
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(limits.drain_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            listener = limits.name,
            open = connections.len(),
            "connections still open after the drain timeout; closing them"
        );
        connections.abort_all();
    }
}

/// Serves `app` over HTTP/1.1 (over TLS when `tls` is given) on `listener` until `shutdown`
/// completes, within `limits`. Each request carries the peer as
/// `ConnectInfo<SocketAddr>` when it has one.
pub async fn serve_http<L: Listen>(
    listener: L,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let conn_limits = limits.clone();
    accept_loop(listener, &limits, shutdown, move |io, peer, stop, activity| {
        let app = app.clone();
        let acceptor = acceptor.clone();
        let limits = conn_limits.clone();
        async move {
            let io = Tracked {
                inner: io,
                activity: activity.clone(),
            };
            let result = match acceptor {
                None => drive(io, app, peer, stop, activity, &limits).await,
                Some(acceptor) => {
                    match tokio::time::timeout(limits.header_timeout, acceptor.accept(io)).await {
                        Ok(Ok(tls)) => drive(tls, app, peer, stop, activity, &limits).await,
                        Ok(Err(e)) => {
                            tracing::debug!(?peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(?peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(listener = limits.name, ?peer, error = %e, "connection ended with an error");
            }
        }
    })
    .await;
}

/// Runs one HTTP/1.1 connection until it ends, times out, or (at shutdown) drains.
async fn drive<I>(
    io: I,
    app: Router,
    peer: Option<SocketAddr>,
    mut stop: watch::Receiver<bool>,
    activity: Arc<Activity>,
    limits: &ConnLimits,
) -> Result<(), hyper::Error>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;

    let busy = activity.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let guard = busy.request_started();
        let app = app.clone();
        let mut req = req.map(Body::new);
        if let Some(peer) = peer {
            req.extensions_mut().insert(ConnectInfo(peer));
        }
        async move {
            let resp = app.oneshot(req).await;
            drop(guard);
            resp
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The header and idle timeouts are ours (see `Activity`): hyper's header timer also
    // runs while a keep-alive connection waits for its next request.
    builder.timer(TokioTimer::new()).header_read_timeout(None);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => r,
        _ = async { let _ = stop.wait_for(|s| *s).await; } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
        why = activity.expired(limits) => {
            tracing::debug!(listener = limits.name, ?peer, why, "closing a connection");
            Ok(())
        }
    }
}

/// What a connection has been doing, for its timeouts and for the cap (which closes the
/// idlest connection).
pub struct Activity {
    state: Mutex<ActivityState>,
}

struct ActivityState {
    /// The last byte read or written.
    last: Instant,
    /// Requests handed to the app and not answered yet.
    running: usize,
    /// The first byte of a request whose headers are not complete yet.
    head_started: Option<Instant>,
}

/// Marks a request as running until dropped.
struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.running = s.running.saturating_sub(1);
        s.last = Instant::now();
    }
}

impl Activity {
    /// A connection just accepted: its first request's headers are due within the header
    /// timeout from now, so a socket that never sends a byte is closed then, not after the
    /// idle timeout.
    fn new() -> Self {
        let now = Instant::now();
        Activity {
            state: Mutex::new(ActivityState {
                last: now,
                running: 0,
                head_started: Some(now),
            }),
        }
    }

    /// Since when the connection has had no request in flight (its last byte either way), or
    /// `None` while a request runs.
    fn idle_since(&self) -> Option<Instant> {
        let s = self.lock();
        (s.running == 0).then_some(s.last)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) {
        let now = Instant::now();
        let mut s = self.lock();
        s.last = now;
        if s.running == 0 && s.head_started.is_none() {
            s.head_started = Some(now);
        }
    }

    fn wrote(&self) {
        self.lock().last = Instant::now();
    }

    fn request_started(self: &Arc<Self>) -> RequestGuard {
        let mut s = self.lock();
        s.running += 1;
        s.head_started = None;
        RequestGuard(self.clone())
    }

    /// When the connection is due to close and why, or None while a request runs (the
    /// request timeout bounds those).
    fn deadline(&self, limits: &ConnLimits) -> Option<(Instant, &'static str)> {
        let s = self.lock();
        if s.running > 0 {
            return None;
        }
        let idle = (s.last + limits.idle_timeout, "idle timeout");
        Some(match s.head_started {
            Some(t) if t + limits.header_timeout < idle.0 => {
                (t + limits.header_timeout, "header timeout")
            }
            _ => idle,
        })
    }

    /// Resolves when the connection has been idle, or slow with its headers, too long.
    async fn expired(&self, limits: &ConnLimits) -> &'static str {
        // Checked at least once a second: a first byte can bring the deadline forward.
        const TICK: Duration = Duration::from_secs(1);
        loop {
            let now = Instant::now();
            let wake = match self.deadline(limits) {
                Some((at, why)) if at <= now => return why,
                Some((at, _)) => at.min(now + TICK),
                None => now + TICK,
            };
            tokio::time::sleep_until(wake.into()).await;
        }
    }
}

/// A connection's stream that records its reads and writes in an [`Activity`].
struct Tracked<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnLimits {
        ConnLimits {
            name: "test",
            max_connections: 4,
            idle_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            max_connections_per_ip: 4,
            drain_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_first_byte_brings_the_deadline_to_the_header_timeout_and_a_request_lifts_it() {
        let a = Arc::new(Activity::new());
        let l = limits();
        // A new connection owes its headers from the accept.
        let (at, why) = a.deadline(&l).unwrap();
        assert_eq!(why, "header timeout");
        assert!(at <= Instant::now() + l.header_timeout);
        let guard = a.request_started();
        drop(guard);
        // A kept-alive connection waits for its next request under the idle timeout...
        let (_, why) = a.deadline(&l).unwrap();
        assert_eq!(why, "idle timeout");
        a.read();
        let (at, why) = a.deadline(&l).unwrap();
        assert_eq!(why, "header timeout");
        assert!(at <= Instant::now() + l.header_timeout);
        let guard = a.request_started();
        assert!(a.deadline(&l).is_none(), "a running request is not idle");
        // Body bytes while the request runs do not start a new header timer.
        a.read();
        drop(guard);
        let (_, why) = a.deadline(&l).unwrap();
        assert_eq!(why, "idle timeout");
    }
}
