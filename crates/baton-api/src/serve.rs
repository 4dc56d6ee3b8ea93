//! Serving the admin router: on a Unix socket with mode 0600 (the default), or on TCP
//! where every request must carry the bearer token or a dashboard session
//! ([`crate::auth`]).

use crate::auth::Access;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::Router;
use baton_config::AdminListen;
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum AdminError {
    #[error("admin socket {path}: another baton is already listening there; stop it or change [admin] listen")]
    SocketInUse { path: PathBuf },
    #[error("admin listener {what}: {source}; check [admin] listen")]
    Bind {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("admin listener on TCP {addr} needs `token_file` in [admin]: the API can deploy and stop apps")]
    TokenRequired { addr: std::net::SocketAddr },
}

/// Binds the admin listener now (so errors surface before anything else starts) and
/// returns the future that serves it until `shutdown`.
pub async fn serve_admin(
    listen: &AdminListen,
    access: Option<Arc<Access>>,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<impl Future<Output = std::io::Result<()>>, AdminError> {
    let bound = bind_admin(listen, access.is_some()).await?;
    Ok(serve_admin_on(
        bound,
        access,
        app,
        shutdown,
        Arc::new(AtomicBool::new(false)),
    ))
}

/// A bound admin listener: made by [`bind_admin`], or inherited from the baton process
/// that handed over to this one (`baton upgrade`).
pub enum AdminListener {
    Unix(tokio::net::UnixListener, PathBuf),
    Tcp(tokio::net::TcpListener),
}

impl AdminListener {
    /// Whether this listener is the one `listen` asks for.
    pub fn is(&self, listen: &AdminListen) -> bool {
        match (self, listen) {
            (AdminListener::Unix(_, p), AdminListen::Unix(want)) => p == want,
            (AdminListener::Tcp(l), AdminListen::Tcp(want)) => {
                l.local_addr().is_ok_and(|a| a == *want)
            }
            _ => false,
        }
    }
}

impl std::os::fd::AsFd for AdminListener {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            AdminListener::Unix(l, _) => l.as_fd(),
            AdminListener::Tcp(l) => l.as_fd(),
        }
    }
}

/// Binds `listen`: a Unix socket (mode 0600; refused if another baton answers on it)
/// or TCP, which needs a token (`has_token`).
pub async fn bind_admin(
    listen: &AdminListen,
    has_token: bool,
) -> Result<AdminListener, AdminError> {
    Ok(match listen {
        AdminListen::Unix(path) => AdminListener::Unix(bind_unix(path).await?, path.clone()),
        AdminListen::Tcp(addr) => {
            if !has_token {
                return Err(AdminError::TokenRequired { addr: *addr });
            }
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| AdminError::Bind {
                    what: addr.to_string(),
                    source,
                })?;
            AdminListener::Tcp(l)
        }
    })
}

/// Serves `app` on `listener` until `shutdown`. A Unix socket file is removed at the
/// end unless `keep_socket` is set by then (the socket was handed to a new process).
pub fn serve_admin_on(
    listener: AdminListener,
    access: Option<Arc<Access>>,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    keep_socket: Arc<AtomicBool>,
) -> impl Future<Output = std::io::Result<()>> {
    let app = match access {
        Some(access) => guarded(app, access),
        None => app,
    };
    async move {
        match listener {
            AdminListener::Unix(l, path) => {
                let r = axum::serve(l, app).with_graceful_shutdown(shutdown).await;
                if !keep_socket.load(Ordering::SeqCst) {
                    let _ = std::fs::remove_file(&path);
                }
                r
            }
            AdminListener::Tcp(l) => axum::serve(l, app).with_graceful_shutdown(shutdown).await,
        }
    }
}

async fn bind_unix(path: &Path) -> Result<tokio::net::UnixListener, AdminError> {
    let err = |source| AdminError::Bind {
        what: format!("unix:{}", path.display()),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(AdminError::SocketInUse {
                path: path.to_path_buf(),
            });
        }
        std::fs::remove_file(path).map_err(err)?;
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(listener)
}

/// `app` behind the credentials check of a TCP listener.
pub fn guarded(app: Router, access: Arc<Access>) -> Router {
    app.layer(middleware::from_fn(move |req: Request, next: Next| {
        crate::auth::guard(access.clone(), req, next)
    }))
}
