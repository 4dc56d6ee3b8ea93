//! A TCP connection a worker serves — a client's, or one to an upstream — registered
//! with the runtime's reactor only once it has to wait, its small writes batched
//! (`batch.rs`).
//!
//! tokio registers a socket with epoll when it wraps it (`epoll_ctl` ADD, and a
//! cache-aligned allocation for its readiness, which glibc's thread cache never serves)
//! and deregisters it before it closes (`epoll_ctl` DEL). A client that sends its
//! request as it connects and reads a small answer before it closes (a connection per
//! request) never makes the proxy wait on its socket: the first read finds the request,
//! the write finds room. So an accepted socket starts outside the reactor: reads and
//! writes go straight to the kernel while they complete, and the first one that would
//! block registers the socket, which from then on waits as any tokio socket does. A
//! keep-alive connection registers when it first waits for its next request. Direct
//! calls count against the task's coop budget as the reactor's do, so a connection
//! whose bytes are always there still yields to the worker's other tasks.
//!
//! `accept` takes connections from a listener the same way: non-blocking and
//! close-on-exec from `accept4` itself, and not registered. `deferred_accept` has the
//! kernel hold each connection until its first bytes arrive, so that the first read
//! finds the request even when the proxy has time to spare (without it, the accept
//! comes at the handshake's last ACK, just before the request, and the read that
//! finds nothing registers the socket).

use crate::batch::{self, Shared, SharedFd};
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// An accepted client connection, or a connection to an upstream (see the module's
/// text).
pub(crate) struct Socket(Reg);

enum Reg {
    /// Not known to the reactor: no call on it has had to wait yet. `drained`: the last
    /// read returned less than it had room for, so the next would find nothing; it
    /// registers without trying (tokio's sockets skip that read the same way).
    Direct { socket: Arc<Shared>, drained: bool },
    /// Registered with the reactor, for reading and writing. An `AsyncFd` rather than
    /// tokio's `TcpStream`: registering one that fails hands the socket back, so the
    /// descriptor stays open, and its number unused by another connection, for as long
    /// as the `Socket` lives (`server.rs` keeps the number).
    Registered(AsyncFd<SharedFd>),
    /// Only while `registered` moves the socket from one to the other.
    Moving,
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
) -> io::Result<(Socket, SocketAddr)> {
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
            socket: Shared::new(socket.into()),
            drained: false,
        };
        return Ok((Socket(socket), peer));
    }
}

impl Socket {
    /// A connected socket (to an upstream), made non-blocking, not registered.
    pub(crate) fn connected(socket: std::net::TcpStream) -> io::Result<Socket> {
        socket.set_nonblocking(true)?;
        Ok(Socket(Reg::Direct {
            socket: Shared::new(socket),
            drained: false,
        }))
    }

    /// Whether an idle connection is still open with nothing to read: the peer has not
    /// closed it and sent nothing unasked-for. A registered socket with no readiness
    /// event since its last read is answered from the reactor's state, with no call.
    pub(crate) fn is_quiet(&self) -> bool {
        let peek = |socket: &std::net::TcpStream| {
            let mut probe = [std::mem::MaybeUninit::<u8>::uninit()];
            socket2::SockRef::from(socket).recv_with_flags(&mut probe, nix::libc::MSG_PEEK)
        };
        let peeked = match &self.0 {
            Reg::Direct { socket, .. } => peek(socket.socket()),
            Reg::Registered(fd) => {
                fd.try_io(tokio::io::Interest::READABLE, |fd| peek(fd.0.socket()))
            }
            Reg::Moving => return false,
        };
        matches!(peeked, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            && self.shared().is_sound()
    }

    /// Whether bytes written to the socket still wait in the worker's batch: none of them
    /// has reached the kernel.
    pub(crate) fn holds_batched(&self) -> bool {
        self.shared().is_queued()
    }

    /// Whether the socket has had to wait, and so is known to the reactor.
    #[cfg(test)]
    fn is_registered(&self) -> bool {
        matches!(self.0, Reg::Registered(_))
    }

    /// The socket's options.
    pub(crate) fn sock_ref(&self) -> socket2::SockRef<'_> {
        socket2::SockRef::from(self.socket())
    }

    fn socket(&self) -> &std::net::TcpStream {
        self.shared().socket()
    }

    fn shared(&self) -> &Arc<Shared> {
        match &self.0 {
            Reg::Direct { socket, .. } => socket,
            Reg::Registered(fd) => &fd.get_ref().0,
            Reg::Moving => unreachable!("a client socket is moved only inside `registered`"),
        }
    }

    /// The socket as the reactor knows it, registering it first if it is not yet. When
    /// registering fails (no room for another epoll entry, the runtime shutting down),
    /// the socket stays as it was and the error is returned.
    #[allow(unsafe_code)]
    fn registered(&mut self) -> io::Result<&AsyncFd<SharedFd>> {
        if let Reg::Direct { .. } = self.0 {
            let Reg::Direct { socket, drained } = std::mem::replace(&mut self.0, Reg::Moving)
            else {
                unreachable!("matched above")
            };
            let interest = tokio::io::Interest::READABLE | tokio::io::Interest::WRITABLE;
            // SAFETY: the `AsyncFd` owns the socket, so the descriptor it registers stays
            // open and unchanged until the `AsyncFd` deregisters it when dropped; a
            // failed registration hands the socket back.
            match unsafe { AsyncFd::register_with_interest(SharedFd(socket), interest) } {
                Ok(fd) => self.0 = Reg::Registered(fd),
                Err(error) => {
                    let (SharedFd(socket), error) = error.into_parts();
                    self.0 = Reg::Direct { socket, drained };
                    return Err(error);
                }
            }
        }
        match &self.0 {
            Reg::Registered(fd) => Ok(fd),
            Reg::Direct { .. } | Reg::Moving => unreachable!("registered above"),
        }
    }

    /// A write of `bufs` (`len` bytes): into the worker's batch when it is small enough
    /// (`batch.rs`), else, after the socket's bytes already batched, by `write_now`.
    fn write(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
        len: usize,
    ) -> Poll<io::Result<usize>> {
        ready!(self.settle(cx))?;
        if len <= batch::BATCH_MAX {
            let coop = ready!(tokio::task::coop::poll_proceed(cx));
            if let batch::Queued::Yes = batch::queue(self.shared(), bufs, len, cx)? {
                coop.made_progress();
                return Poll::Ready(Ok(len));
            }
        }
        if self.shared().is_queued() {
            batch::flush();
            ready!(self.settle(cx))?;
        }
        self.write_now(cx, len, |mut socket| socket.write_vectored(bufs))
    }

    /// What the batch left this socket: the error a batched send failed with, or the
    /// bytes it did not take, written now (through the reactor if need be). Ready once
    /// nothing is left; later writes go behind it.
    fn settle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((buf, mut offset)) = self.shared().take_left()? {
            match self.write_now(cx, buf.len() - offset, |mut socket| {
                socket.write(&buf[offset..])
            }) {
                Poll::Ready(Ok(n)) => {
                    offset += n;
                    if offset < buf.len() {
                        self.shared().put_unsent(buf, offset);
                    }
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => {
                    self.shared().put_unsent(buf, offset);
                    return Poll::Pending;
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    /// A write of `len` bytes by `write`: straight to the kernel while the socket is not
    /// registered and the call completes, else through the reactor.
    fn write_now(
        &mut self,
        cx: &mut Context<'_>,
        len: usize,
        mut write: impl FnMut(&std::net::TcpStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        if let Reg::Direct { socket, .. } = &self.0 {
            let socket = socket.socket();
            // A call straight to the kernel counts against the task's budget as a
            // reactor's does: a client that always has bytes waiting would otherwise
            // keep the worker's other connections and timers from running.
            let coop = ready!(tokio::task::coop::poll_proceed(cx));
            if let Some(written) = direct(write(socket)) {
                coop.made_progress();
                return Poll::Ready(written);
            }
        }
        match self.registered() {
            Ok(fd) => through_reactor(fd, cx, len, AsyncFd::poll_write_ready, |fd| {
                write(fd.0.socket())
            }),
            Err(error) => Poll::Ready(Err(error)),
        }
    }
}

/// One read or write of up to `len` bytes by `call` on a registered socket, once
/// `poll_ready` says the socket is ready for it. A short transfer (the receive queue
/// emptied, the send buffer filled) clears the readiness, so the next call waits for the
/// kernel's next event instead of finding nothing (as tokio's own sockets do).
fn through_reactor<'a>(
    fd: &'a AsyncFd<SharedFd>,
    cx: &mut Context<'_>,
    len: usize,
    poll_ready: impl Fn(
        &'a AsyncFd<SharedFd>,
        &mut Context<'_>,
    ) -> Poll<io::Result<AsyncFdReadyGuard<'a, SharedFd>>>,
    mut call: impl FnMut(&SharedFd) -> io::Result<usize>,
) -> Poll<io::Result<usize>> {
    loop {
        let mut ready = ready!(poll_ready(fd, cx))?;
        match ready.try_io(|fd| call(fd.get_ref())) {
            Ok(Ok(n)) => {
                if n > 0 && n < len {
                    ready.clear_ready();
                }
                return Poll::Ready(Ok(n));
            }
            Ok(Err(error)) if error.kind() == io::ErrorKind::Interrupted => {}
            Ok(Err(error)) => return Poll::Ready(Err(error)),
            // Would block: `try_io` cleared the readiness; wait for the next.
            Err(_) => {}
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

/// Reads from `socket` into `buf`'s unfilled part, which is not zeroed first (a reader
/// hands a fresh, uninitialized `ReadBuf` over its buffer's spare room to every read).
#[allow(unsafe_code)]
fn recv(socket: &std::net::TcpStream, buf: &mut ReadBuf<'_>) -> io::Result<usize> {
    // SAFETY: `recv` only writes initialized bytes into the slice it is given, and never
    // de-initializes any (`unfilled_mut`'s contract).
    let n = socket2::SockRef::from(socket).recv(unsafe { buf.unfilled_mut() })?;
    // SAFETY: the kernel wrote the first `n` bytes of the unfilled part.
    unsafe { buf.assume_init(n) };
    buf.advance(n);
    Ok(n)
}

impl Drop for Socket {
    /// Bytes a batched send left are still the client's: a connection closed behind them
    /// (its client half-closed, say) has them written out before the socket closes.
    fn drop(&mut self) {
        if !self.shared().has_unsent() {
            return;
        }
        let shared = match std::mem::replace(&mut self.0, Reg::Moving) {
            Reg::Direct { socket, .. } => socket,
            Reg::Registered(fd) => fd.into_inner().0,
            Reg::Moving => return,
        };
        batch::finish_later(shared);
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.socket().as_raw_fd()
    }
}

impl std::os::fd::AsFd for Socket {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.socket().as_fd()
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // A batched write's error ends the connection; its remainder goes out while the
        // read waits (waking this task when the socket has room).
        if let Poll::Ready(Err(error)) = this.settle(cx) {
            return Poll::Ready(Err(error));
        }
        let room = buf.remaining();
        if let Reg::Direct {
            socket,
            drained: drained @ false,
        } = &mut this.0
        {
            // Against the task's budget, as in `write_now`.
            let coop = ready!(tokio::task::coop::poll_proceed(cx));
            if let Some(read) = direct(recv(socket.socket(), buf)) {
                coop.made_progress();
                return Poll::Ready(read.map(|n| *drained = n < room));
            }
        }
        match this.registered() {
            Ok(fd) => through_reactor(fd, cx, room, AsyncFd::poll_read_ready, |fd| {
                recv(fd.0.socket(), buf)
            })
            .map_ok(|_| ()),
            Err(error) => Poll::Ready(Err(error)),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .write(cx, &[io::IoSlice::new(buf)], buf.len())
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len = bufs.iter().map(|b| b.len()).sum();
        self.get_mut().write(cx, bufs, len)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Bytes in the batch reach the kernel at the end of the pass whatever happens to
        // the socket (the batch holds it open; the proxy's shutdown waits for them), so
        // a flush leaves them there: hyper and h2 flush after every response, and their
        // writes are batched as the fast path's are. What a send did not take is written
        // before the flush is done.
        self.get_mut().settle(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The end of the stream goes after every byte written before it.
        let this = self.get_mut();
        if this.shared().is_queued() {
            batch::flush();
        }
        ready!(this.settle(cx))?;
        Poll::Ready(this.socket().shutdown(std::net::Shutdown::Write))
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

    /// A client whose bytes are always there when the proxy reads: the reads go straight
    /// to the kernel, and still count against the task's budget, so the task yields
    /// after a bounded number of them and the worker's other tasks (connections, the
    /// accept loop, timers) get their turn. Without the budget it read all 1,024 chunks
    /// before the other task ran.
    #[tokio::test]
    async fn reads_that_never_wait_still_let_other_tasks_run() {
        let (listener, addr) = deferred_listener();
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let chunk = 16;
        let chunks = 1024;
        client.write_all(&vec![7u8; chunk * chunks]).await.unwrap();
        let (mut socket, _) = accept(&listener).await.unwrap();
        // Until every byte is in the proxy's receive queue, so that no read would wait.
        let mut arrived = 0;
        let mut room = vec![std::mem::MaybeUninit::new(0u8); chunk * chunks + 1];
        for _ in 0..500 {
            arrived = socket.sock_ref().peek(&mut room).unwrap_or(0);
            if arrived == chunk * chunks {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            arrived,
            chunk * chunks,
            "the client's bytes did not all arrive"
        );
        let other_ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        tokio::spawn({
            let other_ran = other_ran.clone();
            async move { other_ran.store(true, std::sync::atomic::Ordering::SeqCst) }
        });
        let mut reads = 0;
        let mut buf = vec![0u8; chunk];
        while !other_ran.load(std::sync::atomic::Ordering::SeqCst) && reads < chunks {
            socket.read_exact(&mut buf).await.unwrap();
            reads += 1;
        }
        assert!(!socket.is_registered(), "every read found its bytes");
        assert!(
            reads < chunks,
            "the other task ran only after all {reads} reads"
        );
    }

    /// Registering can fail (no room for another epoll entry, the runtime shutting
    /// down): the socket is handed back, still open, so the descriptor number the
    /// connection's task keeps (`server.rs`: drain, linger close, the 408) is still this
    /// client's and cannot go to the next accepted one. The read that needed the
    /// registration reports the error.
    #[test]
    fn a_socket_that_cannot_be_registered_stays_open() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (mut socket, client) = runtime.block_on(async {
            let (listener, addr) = listener().await;
            let client = std::net::TcpStream::connect(addr).unwrap();
            let (socket, _) = accept(&listener).await.unwrap();
            (socket, client)
        });
        // A runtime whose I/O driver has shut down refuses every registration.
        let stopped = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let handle = stopped.handle().clone();
        drop(stopped);
        let _entered = handle.enter();
        let mut room = [0u8; 16];
        let mut buf = ReadBuf::new(&mut room);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        // Nothing was sent: the read would wait, so it has to register.
        match Pin::new(&mut socket).poll_read(&mut cx, &mut buf) {
            Poll::Ready(Err(_)) => {}
            other => panic!("expected the registration's error, got {other:?}"),
        }
        assert!(!socket.is_registered());
        assert_eq!(
            socket.sock_ref().peer_addr().unwrap().as_socket(),
            Some(client.local_addr().unwrap()),
            "the socket is still open and still this client's"
        );
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

    /// The calling thread made a worker's batch, its flusher running (as `cores::start`
    /// does for each worker).
    async fn batching() {
        batch::install().expect("io_uring: the worker's batch needs it");
        tokio::spawn(batch::flusher());
        // The flusher's first turn, which leaves its waker with the batch.
        tokio::task::yield_now().await;
    }

    /// A small write on a worker goes into the batch and the task goes on at once; the
    /// flusher, once the ready tasks have run, hands it to the kernel.
    #[tokio::test]
    async fn a_small_write_waits_in_the_batch_then_arrives() {
        batching().await;
        let (listener, addr) = deferred_listener();
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        client.write_all(b"ping").await.unwrap();
        let (mut socket, _) = accept(&listener).await.unwrap();
        socket.write_all(b"pong").await.unwrap();
        assert!(socket.shared().is_queued(), "the write went into the batch");
        let mut early = [0u8; 4];
        assert_eq!(
            client.try_read(&mut early).map_err(|e| e.kind()),
            Err(io::ErrorKind::WouldBlock),
            "nothing reached the client before the flusher ran"
        );
        let mut got = [0u8; 4];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");
        assert!(!socket.shared().is_queued());
    }

    /// The writes of every connection answered in one pass of the event loop reach the
    /// kernel in one submission.
    #[tokio::test]
    async fn writes_of_one_pass_are_one_submission() {
        batching().await;
        let (listener, addr) = listener().await;
        let mut clients = Vec::new();
        let mut sockets = Vec::new();
        for _ in 0..3 {
            clients.push(tokio::net::TcpStream::connect(addr).await.unwrap());
            sockets.push(accept(&listener).await.unwrap().0);
        }
        let before = batch::submissions();
        for (i, socket) in sockets.iter_mut().enumerate() {
            socket
                .write_all(format!("answer {i}").as_bytes())
                .await
                .unwrap();
        }
        for (i, client) in clients.iter_mut().enumerate() {
            let mut got = [0u8; 8];
            client.read_exact(&mut got).await.unwrap();
            assert_eq!(got, format!("answer {i}").as_bytes());
        }
        assert_eq!(batch::submissions() - before, 1);
    }

    /// Small writes into a socket whose client does not read: the batched sends find
    /// the send buffer full and leave the rest with the socket, whose next calls write
    /// it through the reactor. Every byte arrives, in order, once the client reads; a
    /// large write after small ones goes behind them.
    #[tokio::test]
    async fn batched_writes_into_a_full_socket_all_arrive_in_order() {
        batching().await;
        let (listener, addr) = listener().await;
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut socket, _) = accept(&listener).await.unwrap();
        let sent: Vec<u8> = (0..8 * 1024 * 1024).map(|i: u32| (i % 251) as u8).collect();
        let expected = sent.clone();
        let writer = tokio::spawn(async move {
            let (small, large) = sent.split_at(sent.len() - 1024 * 1024);
            for chunk in small.chunks(3000) {
                socket.write_all(chunk).await.unwrap();
            }
            socket.write_all(large).await.unwrap();
            socket.shutdown().await.unwrap();
        });
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "the bytes arrived out of order");
    }

    /// A connection closed with its last answer still in the batch, or with bytes a
    /// batched send could not take (its client half-closed and reads the answer later):
    /// the client gets every byte, then the end of the stream.
    #[tokio::test]
    async fn a_socket_closed_behind_its_batched_bytes_still_sends_them() {
        batching().await;
        let (listener, addr) = listener().await;
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut socket, _) = accept(&listener).await.unwrap();
        socket.write_all(b"last").await.unwrap();
        assert!(socket.shared().is_queued());
        drop(socket);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"last");

        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut socket, _) = accept(&listener).await.unwrap();
        let mut expected = Vec::new();
        for i in 0u32.. {
            if socket.shared().has_unsent() {
                break;
            }
            let chunk = vec![(i % 251) as u8; 4096];
            socket.write_all(&chunk).await.unwrap();
            expected.extend_from_slice(&chunk);
            batch::flush();
            assert!(i < 100_000, "the socket's buffers never filled");
        }
        drop(socket);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), expected.len());
        assert!(got == expected);
    }

    /// A batched send to a client that reset the connection fails after the write
    /// returned: the socket's next call reports it.
    #[tokio::test]
    async fn a_batched_send_that_fails_fails_the_next_call() {
        batching().await;
        let (listener, addr) = listener().await;
        let client = std::net::TcpStream::connect(addr).unwrap();
        let (mut socket, _) = accept(&listener).await.unwrap();
        socket2::SockRef::from(&client)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(client);
        // Until the reset has reached the proxy's socket (a peek stops finding nothing).
        let mut probe = [std::mem::MaybeUninit::new(0u8)];
        for _ in 0..1000 {
            match socket.sock_ref().peek(&mut probe) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                _ => break,
            }
        }
        socket.write_all(b"too late").await.unwrap();
        batch::flush();
        let mut rest = [0u8; 8];
        let error = socket.read(&mut rest).await.unwrap_err();
        assert!(
            matches!(
                error.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            ),
            "{error}"
        );
        // Told apart from a read's own error: an upstream client retries such a head.
        assert!(batch::was_not_sent(&error), "{error}");
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
