//! The state dir's control socket, `<state>/duplex.sock`: HTTP over a Unix
//! socket, served by whichever process runs the state dir's session (or
//! the agent that owns it). One process serves it at a time: the one
//! holding `duplex.sock.lock`; a socket file left by a dead process is
//! replaced. The socket is mode 0600 and a connection from another user
//! (other than root) is refused, so who connects is who the OS says.

use super::commands::Caller;
use super::error::ApiError;
use axum::Router;
use axum::extract::Request;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tokio::net::UnixListener;
use tokio::sync::oneshot;

pub const SOCKET: &str = "duplex.sock";
const SOCKET_LOCK: &str = "duplex.sock.lock";

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET)
}

/// The socket being served; dropping it stops serving and removes it.
pub struct ControlSocket {
    path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    // Held for as long as this process serves the socket.
    _lock: File,
}

impl ControlSocket {
    /// Stop accepting connections and let answers in progress be written
    /// (a command accepted just before the run stopped gets its answer),
    /// waiting at most two seconds.
    pub async fn close(mut self) {
        let _ = std::fs::remove_file(&self.path);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), server).await;
        }
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Who is on the other end of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub uid: Option<u32>,
}

impl Connected<IncomingStream<'_, UnixListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        Peer {
            uid: stream.io().peer_cred().ok().map(|c| c.uid()),
        }
    }
}

/// Serve `router` on the state dir's control socket. `Ok(None)` when the
/// state dir does not exist (a command there creates nothing) or another
/// live process serves it (that process owns the state dir; whatever this
/// one was about to do will meet its lock).
pub fn serve(state_dir: &Path, router: Router) -> std::io::Result<Option<ControlSocket>> {
    if !state_dir.is_dir() {
        return Ok(None);
    }
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(state_dir.join(SOCKET_LOCK))?;
    // SAFETY: flock on a descriptor we own; non-blocking.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = std::io::Error::last_os_error();
        return if err.kind() == std::io::ErrorKind::WouldBlock {
            Ok(None)
        } else {
            Err(err)
        };
    }
    let path = path(state_dir);
    // Left by a process that is gone (its lock was free).
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let (stop, stopped) = oneshot::channel::<()>();
    let app = router
        .layer(middleware::from_fn(same_user_only))
        .into_make_service_with_connect_info::<Peer>();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    Ok(Some(ControlSocket {
        path,
        stop: Some(stop),
        server: Some(server),
        _lock: lock,
    }))
}

/// Refuse other users (root excepted); tell handlers who the caller is.
async fn same_user_only(
    ConnectInfo(peer): ConnectInfo<Peer>,
    mut request: Request,
    next: Next,
) -> Response {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    match peer.uid {
        Some(uid) if uid == me || uid == 0 => {
            let name = crate::cli::operator::user_name(uid).unwrap_or_else(|| format!("uid {uid}"));
            request.extensions_mut().insert(Caller(name));
            next.run(request).await
        }
        _ => ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this control socket serves only the user who runs duplex (and root)",
        )
        .into_response(),
    }
}

/// Create the state dir (mode 0700) when it does not exist, as a session's
/// first record would.
pub fn create_state_dir(state_dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
}
