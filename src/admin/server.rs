//! The daemon's side of the admin socket.

use std::future::Future;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Utc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::{AdminReply, AdminRequest, AdminResponse, MAX_LINE};
use crate::store::Store;
use crate::{owner, reconcile};

/// What the admin API needs from the daemon.
#[derive(Clone)]
pub struct AdminContext {
    /// The open store.
    pub store: Store,
    /// The SCIM URL printed with new tokens (`[scim].public_url` + base path).
    pub scim_url: Option<String>,
    /// The pull, when `[google]` is configured.
    pub sync: Option<Arc<reconcile::SyncContext>>,
    /// Called after a pull requested over the socket finishes (health, systemd status).
    pub on_sync: Option<OnSync>,
}

/// A callback told about each finished pull.
pub use crate::schedule::OnSync;

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Another daemon answers on the socket.
    #[error("another retrac-sync daemon is already listening on {0}")]
    InUse(PathBuf),
    /// The socket could not be created.
    #[error("cannot create the admin socket {path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Binds the socket with mode 0600, replacing a stale socket file left by a dead daemon.
pub fn bind(path: &Path) -> Result<UnixListener, BindError> {
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
    if path.exists() {
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => return Err(BindError::InUse(path.to_path_buf())),
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path).map_err(io)?;
            }
            Err(e) => return Err(io(e)),
        }
    }
    // Bind under a restrictive umask-free dance: bind, then narrow the mode before
    // announcing readiness; nobody is told about the socket before that.
    let listener = UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    Ok(listener)
}

/// Answers requests until `shutdown` resolves. Each connection carries one request.
pub async fn serve(listener: UnixListener, ctx: AdminContext, shutdown: impl Future<Output = ()>) {
    let ctx = Arc::new(ctx);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let ctx = ctx.clone();
                    connections.spawn(async move {
                        if let Err(e) = handle_connection(stream, &ctx).await {
                            tracing::warn!(error = %e, "admin connection failed");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "admin socket accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
        // Reap finished connections so the set does not grow.
        while connections.try_join_next().is_some() {}
    }
    // Requests in flight finish (the daemon bounds the whole drain).
    while connections.join_next().await.is_some() {}
}

async fn handle_connection(stream: UnixStream, ctx: &AdminContext) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_LINE as u64));
    let mut line = String::new();
    if reader.read_line(&mut line).await? == 0 {
        return Ok(());
    }
    let reply = match serde_json::from_str::<AdminRequest>(&line) {
        Ok(request) => {
            let op = request_name(&request);
            match execute(ctx, request).await {
                Ok(r) => {
                    tracing::info!(op, "admin request done");
                    AdminReply::Ok(r)
                }
                Err(message) => {
                    tracing::info!(op, error = %message, "admin request failed");
                    AdminReply::Error(message)
                }
            }
        }
        Err(e) => AdminReply::Error(format!(
            "unreadable admin request (is the CLI the same version as the daemon?): {e}"
        )),
    };
    let mut out = serde_json::to_vec(&reply).map_err(std::io::Error::other)?;
    out.push(b'\n');
    write.write_all(&out).await?;
    write.shutdown().await
}

fn request_name(r: &AdminRequest) -> &'static str {
    match r {
        AdminRequest::Owner(_) => "owner",
        AdminRequest::Sync(_) => "sync",
        AdminRequest::Token(_) => "token",
        AdminRequest::Ping => "ping",
    }
}

/// Executes one request against the daemon's state.
pub async fn execute(ctx: &AdminContext, request: AdminRequest) -> Result<AdminResponse, String> {
    match request {
        AdminRequest::Ping => Ok(AdminResponse::Pong {
            version: env!("CARGO_PKG_VERSION").to_string(),
        }),
        AdminRequest::Owner(req) => {
            let store = ctx.store.clone();
            let response =
                tokio::task::spawn_blocking(move || owner::execute(&store, req, Utc::now()))
                    .await
                    .map_err(|e| format!("internal error: {e}"))?
                    .map_err(|e| e.to_string())?;
            ctx.store.flush().await.map_err(|e| e.to_string())?;
            Ok(AdminResponse::Owner(response))
        }
        AdminRequest::Token(req) => {
            let store = ctx.store.clone();
            let url = ctx.scim_url.clone();
            let response = tokio::task::spawn_blocking(move || {
                crate::scim::auth::execute(&store, req, url.as_deref(), Utc::now())
            })
            .await
            .map_err(|e| format!("internal error: {e}"))?
            .map_err(|e| e.to_string())?;
            ctx.store.flush().await.map_err(|e| e.to_string())?;
            Ok(AdminResponse::Token(response))
        }
        AdminRequest::Sync(req) => {
            let sync = ctx.sync.as_ref().ok_or_else(|| {
                "the pull is not configured on this daemon: set [google].subject and the service account key (see the README, \"Google setup\")".to_string()
            })?;
            let response = reconcile::execute(sync, req, None)
                .await
                .map_err(|e| e.to_string())?;
            if let (reconcile::Response::Run(outcome), Some(hook)) = (&response, &ctx.on_sync) {
                if !outcome.report.run_id.is_empty() {
                    hook(outcome);
                }
            }
            Ok(AdminResponse::Sync(response))
        }
    }
}
