//! A client's socket, registered with the runtime's reactor only once it has to wait.
//!
//! tokio registers a socket with epoll when it wraps it (`epoll_ctl` ADD, and a
//! cache-aligned allocation for its readiness, which glibc's thread cache never serves)
//! and deregisters it before it closes (`epoll_ctl` DEL). A client that sends its
//! request as it connects and reads a small answer before it closes (a connection per
//! request) never makes the proxy wait on its socket: the first read finds the request,
//! the write finds room. So an accepted socket starts outside the reactor: reads and
//! writes go straight to the kernel while they complete, and the first one that would
//! block registers the socket, which from then on waits as any tokio socket does. A
//! keep-alive connection registers when it first waits for its next request.
//!
//! `accept` takes connections from a listener the same way: non-blocking and
//! close-on-exec from `accept4` itself, and not registered. `deferred_accept` has the
//! kernel hold each connection until its first bytes arrive, so that the first read
//! finds the request even when the proxy has time to spare (without it, the accept
//! comes at the handshake's last ACK, just before the request, and the read that
//! finds nothing registers the socket).

use std::io::{self, Read as _, Write as _};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// An accepted client connection (see the module's text).
pub(crate) struct ClientSocket(Reg);

enum Reg {
    /// Not known to the reactor: no call on it has had to wait yet. `drained`: the last
    /// read returned less than it had room for, so the next would find nothing; it
    /// registers without trying (tokio's sockets skip that read the same way).
    Direct {
        socket: std::net::TcpStream,
        drained: bool,
    },
    Registered(tokio::net::TcpStream),
    /// Registering failed (the runtime is shutting down) and closed the socket.
    Closed,
}

/// How long a connection that sends nothing waits in the kernel before `accept` gets it
/// (`deferred_accept`). Linux counts it in SYN-ACKs sent again: one second is one.
const DEFER_ACCEPT_SECONDS: i32 = 1;

/// Asks the kernel to hand `listener`'s connections to `accept` once their first bytes
/// have arrived (TCP_DEFER_ACCEPT, as nginx's `listen ... deferred` and HAProxy's
/// `defer-accept`). Every protocol baton serves has the client speak first (HTTP/1, h2c,
/// a TLS ClientHello), so the first read of an accepted connection finds its request and
/// its socket seldom has to be registered at all. Otherwise a proxy with time to spare
/// accepts a connection at the handshake's last ACK, just before the request follows,
/// reads nothing, and registers to wait. A client that connects and sends nothing is
/// still accepted, about a second after its handshake, and is timed from then on as any
/// other. Returns whether the option was set.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub(crate) fn deferred_accept(listener: &std::net::TcpListener) -> bool {
    let seconds: nix::libc::c_int = DEFER_ACCEPT_SECONDS;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a pointer to a live c_int
    // and writes nothing; the descriptor is the listener's, open while it is borrowed.
    let set = unsafe {
        nix::libc::setsockopt(
            listener.as_raw_fd(),
            nix::libc::IPPROTO_TCP,
            nix::libc::TCP_DEFER_ACCEPT,
            std::ptr::from_ref(&seconds).cast(),
            std::mem::size_of_val(&seconds) as nix::libc::socklen_t,
        )
    };
    if set != 0 {
        let error = io::Error::last_os_error();
        tracing::debug!(%error, "TCP_DEFER_ACCEPT on a listener");
    }
    set == 0
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn deferred_accept(_listener: &std::net::TcpListener) -> bool {
    false
}

/// `listener`, made non-blocking, registered for reading (for `accept`).
#[allow(unsafe_code)]
pub(crate) fn listening(
    listener: std::net::TcpListener,
) -> io::Result<AsyncFd<std::net::TcpListener>> {
    listener.set_nonblocking(true)?;
    // SAFETY: the `AsyncFd` owns the listener, so the descriptor it registers stays open
    // and unchanged until the `AsyncFd` deregisters it when dropped.
    unsafe { AsyncFd::register_with_interest(listener, tokio::io::Interest::READABLE) }
        .map_err(|error| error.into_parts().1)
}

/// The next connection on `listener` (a non-blocking listening socket registered for
/// reading), as `accept4` gives it: non-blocking, close-on-exec, not registered.
pub(crate) async fn accept(
    listener: &AsyncFd<std::net::TcpListener>,
) -> io::Result<(ClientSocket, SocketAddr)> {
    loop {
        let mut ready = listener.readable().await?;
        let accepted = ready.try_io(|listener| {
            let flags = nix::libc::SOCK_NONBLOCK | nix::libc::SOCK_CLOEXEC;
            socket2::SockRef::from(listener.get_ref()).accept4(flags)
        });
        let Ok(accepted) = accepted else {
            // Nothing to accept after all: the readiness was cleared; wait again.
            continue;
        };
        let (socket, peer) = accepted?;
        let peer = peer.as_socket().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "accepted a connection whose peer is not an IP address",
            )
        })?;
        let socket = Reg::Direct {
            socket: socket.into(),
            drained: false,
        };
        return Ok((ClientSocket(socket), peer));
    }
}

impl ClientSocket {
    /// Whether the socket has had to wait, and so is known to the reactor.
    #[cfg(test)]
    fn is_registered(&self) -> bool {
        matches!(self.0, Reg::Registered(_))
    }

    /// The socket's options; `None` once closed.
    pub(crate) fn sock_ref(&self) -> Option<socket2::SockRef<'_>> {
        match &self.0 {
            Reg::Direct { socket, .. } => Some(socket2::SockRef::from(socket)),
            Reg::Registered(socket) => Some(socket2::SockRef::from(socket)),
            Reg::Closed => None,
        }
    }

    /// The socket as tokio's, registering it first if it is not yet.
    fn registered(&mut self) -> io::Result<Pin<&mut tokio::net::TcpStream>> {
        if let Reg::Direct { .. } = self.0 {
            if let Reg::Direct { socket, .. } = std::mem::replace(&mut self.0, Reg::Closed) {
                self.0 = Reg::Registered(tokio::net::TcpStream::from_std(socket)?);
            }
        }
        match &mut self.0 {
            Reg::Registered(socket) => Ok(Pin::new(socket)),
            Reg::Direct { .. } | Reg::Closed => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the client's socket could not be registered with the runtime and was closed",
            )),
        }
    }
}

/// A direct call's result, or `None` when it would have had to wait: time to register
/// and go through the reactor.
fn direct<T>(result: io::Result<T>) -> Option<io::Result<T>> {
    match result {
        Err(error)
            if matches!(
                error.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            None
        }
        done => Some(done),
    }
}

impl AsRawFd for ClientSocket {
    fn as_raw_fd(&self) -> RawFd {
        match &self.0 {
            Reg::Direct { socket, .. } => socket.as_raw_fd(),
            Reg::Registered(socket) => socket.as_raw_fd(),
            Reg::Closed => -1,
        }
    }
}

impl AsyncRead for ClientSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Reg::Direct {
            socket,
            drained: drained @ false,
        } = &mut this.0
        {
            let room = buf.remaining();
            let mut socket = &*socket;
            if let Some(read) = direct(socket.read(buf.initialize_unfilled())) {
                return Poll::Ready(read.map(|n| {
                    *drained = n < room;
                    buf.advance(n);
                }));
            }
        }
        match this.registered() {
            Ok(socket) => socket.poll_read(cx, buf),
            Err(error) => Poll::Ready(Err(error)),
        }
    }
}

impl ClientSocket {
    /// A write: straight to the kernel while the socket is not registered and the call
    /// completes, else through the reactor.
    fn write(
        &mut self,
        cx: &mut Context<'_>,
        direct_write: impl FnOnce(&mut &std::net::TcpStream) -> io::Result<usize>,
        reactor_write: impl FnOnce(
            Pin<&mut tokio::net::TcpStream>,
            &mut Context<'_>,
        ) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        if let Reg::Direct { socket, .. } = &self.0 {
            if let Some(written) = direct(direct_write(&mut &*socket)) {
                return Poll::Ready(written);
            }
        }
        match self.registered() {
            Ok(socket) => reactor_write(socket, cx),
            Err(error) => Poll::Ready(Err(error)),
        }
    }
}

impl AsyncWrite for ClientSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let write = |socket: &mut &std::net::TcpStream| socket.write(buf);
        self.get_mut()
            .write(cx, write, |socket, cx| socket.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let write = |socket: &mut &std::net::TcpStream| socket.write_vectored(bufs);
        self.get_mut()
            .write(cx, write, |socket, cx| socket.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Reg::Registered(socket) => Pin::new(socket).poll_flush(cx),
            // Nothing is buffered above the kernel.
            Reg::Direct { .. } | Reg::Closed => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Reg::Direct { socket, .. } => Poll::Ready(socket.shutdown(std::net::Shutdown::Write)),
            Reg::Registered(socket) => Pin::new(socket).poll_shutdown(cx),
            Reg::Closed => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn listener() -> (AsyncFd<std::net::TcpListener>, SocketAddr) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        (listening(listener).unwrap(), addr)
    }

    /// A listener as `server.rs` sets one up, accepts deferred, and its address.
    fn deferred_listener() -> (AsyncFd<std::net::TcpListener>, SocketAddr) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(deferred_accept(&listener));
        let addr = listener.local_addr().unwrap();
        (listening(listener).unwrap(), addr)
    }

    /// A request already sent is read, and its answer written, without registering:
    /// no `epoll_ctl` for a connection that never waits. With the accept deferred, the
    /// request is there when the connection is accepted.
    #[tokio::test]
    async fn a_connection_that_never_waits_is_never_registered() {
        let (listener, addr) = deferred_listener();
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        client.write_all(b"ping").await.unwrap();
        let (mut socket, peer) = accept(&listener).await.unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        assert!(!socket.is_registered());
        let mut got = [0u8; 4];
        socket.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        socket.write_all(b"pong").await.unwrap();
        socket.shutdown().await.unwrap();
        assert!(!socket.is_registered());
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"pong", "the answer, then the end of the stream");
    }

    /// Bytes read before they were sent: the read registers and wakes when they come.
    #[tokio::test]
    async fn a_read_that_would_wait_registers_and_wakes_when_bytes_come() {
        let (listener, addr) = listener().await;
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut socket, _) = accept(&listener).await.unwrap();
        let reader = tokio::spawn(async move {
            let mut got = [0u8; 5];
            socket.read_exact(&mut got).await.unwrap();
            (socket.is_registered(), got)
        });
        tokio::task::yield_now().await;
        client.write_all(b"hello").await.unwrap();
        let (registered, got) = reader.await.unwrap();
        assert!(registered);
        assert_eq!(&got, b"hello");
    }

    /// A write into a full send buffer registers, waits, and finishes once the peer
    /// reads; every byte arrives in order.
    #[tokio::test]
    async fn a_write_that_would_wait_registers_and_finishes_when_the_peer_reads() {
        let (listener, addr) = listener().await;
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut socket, _) = accept(&listener).await.unwrap();
        // Far more than loopback's socket buffers hold.
        let sent: Vec<u8> = (0..16 * 1024 * 1024)
            .map(|i: u32| (i % 251) as u8)
            .collect();
        let expected = sent.clone();
        let writer = tokio::spawn(async move {
            socket.write_all(&sent).await.unwrap();
            socket.shutdown().await.unwrap();
            socket.is_registered()
        });
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert!(writer.await.unwrap(), "the writer had to wait");
        assert_eq!(got.len(), expected.len());
        assert!(got == expected);
    }

    /// A client that connects and sends nothing is accepted all the same, after the
    /// deferral, and is then read as any other.
    #[tokio::test]
    async fn a_deferred_accept_still_takes_a_client_that_sends_nothing() {
        let (listener, addr) = deferred_listener();
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut socket, _) = tokio::time::timeout(Duration::from_secs(30), accept(&listener))
            .await
            .expect("a silent client was never accepted")
            .unwrap();
        client.write_all(b"late").await.unwrap();
        let mut got = [0u8; 4];
        socket.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"late");
    }

    /// The peer's close reads as the end of the stream, direct or registered.
    #[tokio::test]
    async fn the_peers_close_is_the_end_of_the_stream() {
        let (listener, addr) = listener().await;
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut socket, _) = accept(&listener).await.unwrap();
        drop(client);
        let mut rest = Vec::new();
        socket.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }
}
