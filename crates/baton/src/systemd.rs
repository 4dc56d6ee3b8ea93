//! Running under systemd (`Type=notify`): `sd_notify` messages to `$NOTIFY_SOCKET`, a
//! unix datagram socket (a path, or `@name` for the abstract namespace). `READY=1` once
//! the listeners accept, `STATUS=` lines, `STOPPING=1` on the way out, and after
//! `baton upgrade` the new process announces itself with `MAINPID=<pid>` then `READY=1`,
//! so systemd supervises it instead of the old one (the unit needs `NotifyAccess=all`).
//!
//! The variable is taken out of the environment at start, so app instances never see
//! it (an app that speaks sd_notify must not talk for baton), and is handed to the
//! next process of an upgrade explicitly. Without it every call does nothing.

use std::ffi::OsString;
use std::os::unix::net::UnixDatagram;
use std::sync::OnceLock;

const VAR: &str = "NOTIFY_SOCKET";

static SOCKET: OnceLock<Option<OsString>> = OnceLock::new();

/// Takes `NOTIFY_SOCKET` out of the environment; call before any thread exists.
pub fn take_from_env() {
    let socket = std::env::var_os(VAR).filter(|s| !s.is_empty());
    std::env::remove_var(VAR);
    let _ = SOCKET.set(socket);
}

/// The variable for the next process of an upgrade, when systemd gave one.
pub fn for_successor() -> Option<(&'static str, OsString)> {
    socket().map(|s| (VAR, s.clone()))
}

fn socket() -> Option<&'static OsString> {
    SOCKET.get().and_then(Option::as_ref)
}

/// This process serves: at start `READY=1`; after an upgrade handover first
/// `MAINPID=<this pid>`, then `READY=1`.
pub fn serving(handed_over: bool, status: &str) {
    let pid = std::process::id();
    let message = if handed_over {
        format!("MAINPID={pid}\nREADY=1\nSTATUS={status}\n")
    } else {
        format!("READY=1\nSTATUS={status}\n")
    };
    notify(&message);
}

/// A `STATUS=` line for `systemctl status`.
pub fn status(status: &str) {
    notify(&format!("STATUS={status}\n"));
}

/// baton is stopping (SIGTERM / SIGINT).
pub fn stopping() {
    notify("STOPPING=1\nSTATUS=stopping\n");
}

/// Sends one datagram; failures are logged, never fatal (systemd may be gone).
fn notify(message: &str) {
    let Some(path) = socket() else {
        return;
    };
    if let Err(error) = send(path, message.as_bytes()) {
        tracing::warn!(%error, socket = ?path, "sd_notify failed");
    }
}

fn send(path: &OsString, message: &[u8]) -> std::io::Result<usize> {
    use std::os::unix::ffi::OsStrExt;
    let sock = UnixDatagram::unbound()?;
    let bytes = path.as_bytes();
    match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(message, &addr)
        }
        None => sock.send_to(message, path),
    }
}
