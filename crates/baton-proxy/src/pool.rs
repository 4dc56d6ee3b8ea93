//! Upstream HTTP/1.1 connections: connecting with a timeout, and a lock-free per-backend
//! queue of idle keep-alive connections. The proxy is the client here, so it alone
//! decides when an idle connection is closed (on drain, or when it is too old).

use crate::backend::{Backend, Watched};
use crate::body::RequestBody;
use crate::cores;
use crate::h1client::Conn;
use crate::lock;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use nix::errno::Errno;
use nix::sys::socket::{recv, MsgFlags};
use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// A hyper connection's request side, with a duplicate of its socket so that an idle
/// connection can be asked directly whether the upstream closed it. hyper's own view
/// comes from its connection task, which on a busy runtime may not yet have read the
/// upstream's FIN; a request with a body sent on such a connection fails and cannot be
/// retried, so the socket itself is asked before reuse.
pub(crate) struct Sender {
    send: SendRequest<RequestBody>,
    /// `None` only when the descriptor could not be duplicated (then hyper's view alone).
    peer: Option<Arc<Watched>>,
}

impl Deref for Sender {
    type Target = SendRequest<RequestBody>;
    fn deref(&self) -> &Self::Target {
        &self.send
    }
}

impl DerefMut for Sender {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.send
    }
}

impl Sender {
    /// Whether the idle connection can carry a request now: hyper sees it ready and the
    /// socket has neither the upstream's FIN nor unasked-for bytes waiting.
    fn usable(&self) -> bool {
        self.send.is_ready() && self.peer.as_ref().is_none_or(|p| quiet(p.fd()))
    }

    /// The socket as its backend follows it (`Backend::abandon`).
    pub fn watched(&self) -> Option<&Watched> {
        self.peer.as_deref()
    }
}

/// Whether nothing waits to be read on `fd`: no data and no end of stream (one
/// non-blocking `recv` with `MSG_PEEK`, which takes nothing off the socket).
fn quiet(fd: &OwnedFd) -> bool {
    let mut probe = [0u8; 1];
    matches!(
        recv(
            fd.as_raw_fd(),
            &mut probe,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT
        ),
        Err(Errno::EAGAIN)
    )
}

/// How long a connection whose response just finished may take to become reusable.
const READY_GRACE: Duration = Duration::from_secs(1);

/// Idle connections of one backend: hyper's (which carried requests with a body) and
/// `h1client`'s (requests without), each up to the capacity — per worker (`cores`): a
/// worker takes back only the connections its own runtime drives.
///
/// The capacity is a bound, not a size: the queues hold what the backend's concurrency
/// left idle, and grow and shrink with it. A multiplexing client (HTTP/2, a hundred
/// streams on a connection) needs as many upstream connections as streams in flight;
/// keeping fewer would close and reopen connections all the time (a TCP handshake, a
/// `TIME_WAIT` socket and the backend's accept for a share of the requests).
pub(crate) struct IdlePool {
    workers: Box<[Queues]>,
    capacity: usize,
}

struct Queues {
    queue: Stack<Sender>,
    conns: Stack<Box<Conn>>,
}

/// One worker's idle connections of one kind, newest last. A checkout takes the newest
/// (the warmest): under a steady load the same few carry the requests, and those a
/// burst opened stay at the oldest end until they have been idle for `max_idle`, when
/// the proxy's sweep (`IdlePool::expire`, every second) closes them.
struct Stack<T> {
    items: Mutex<VecDeque<(T, Instant)>>,
}

/// A stack's memory is given back when it holds less than a quarter of its room (and
/// the room is more than this): after a burst, as its connections expire.
const SHRINK_ABOVE: usize = 64;

impl<T> Stack<T> {
    fn new() -> Stack<T> {
        Stack {
            items: Mutex::new(VecDeque::new()),
        }
    }

    /// The newest connection idle for less than `max_idle` at `now` that `usable`
    /// accepts; the ones refused on the way are dropped (closed), outside the lock.
    fn take(&self, max_idle: Duration, now: Instant, usable: impl Fn(&T) -> bool) -> Option<T> {
        loop {
            let (item, since) = lock(&self.items).pop_back()?;
            if now.saturating_duration_since(since) < max_idle && usable(&item) {
                return Some(item);
            }
        }
    }

    /// Drop (close) the connections idle for `max_idle` or longer, outside the lock,
    /// and give back the room of a stack that emptied after a burst.
    fn expire(&self, max_idle: Duration) {
        let now = Instant::now();
        let mut expired = Vec::new();
        {
            let mut items = lock(&self.items);
            while let Some((_, since)) = items.front() {
                if now.duration_since(*since) < max_idle {
                    break;
                }
                expired.extend(items.pop_front());
            }
            if items.capacity() > SHRINK_ABOVE && items.len() < items.capacity() / 4 {
                let room = items.capacity() / 2;
                items.shrink_to(room);
            }
        }
        drop(expired);
    }

    /// Keep `item` as the newest; when `capacity` are kept, the oldest is closed.
    fn put(&self, item: T, capacity: usize) {
        let evicted = {
            let mut items = lock(&self.items);
            let evicted = if items.len() >= capacity {
                items.pop_front()
            } else {
                None
            };
            items.push_back((item, Instant::now()));
            evicted
        };
        drop(evicted);
    }

    fn clear(&self) {
        let all = std::mem::take(&mut *lock(&self.items));
        drop(all);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.items).len()
    }
}

impl IdlePool {
    pub fn new(capacity: usize) -> IdlePool {
        let workers = (0..cores::count())
            .map(|_| Queues {
                queue: Stack::new(),
                conns: Stack::new(),
            })
            .collect();
        IdlePool { workers, capacity }
    }

    /// The calling worker's queues (`None` outside the workers, where nothing is kept).
    fn mine(&self) -> Option<&Queues> {
        self.workers.get(cores::current())
    }

    /// An `h1client` connection idle for less than `max_idle` at `now` (the request's
    /// clock reading, shared by its steps) that can still be used.
    pub fn checkout_conn(
        &self,
        backend: &Backend,
        max_idle: Duration,
        now: Instant,
    ) -> Option<Box<Conn>> {
        self.mine()?
            .conns
            .take(max_idle, now, |conn| conn.usable(backend))
    }

    /// Keep an `h1client` connection whose response ended cleanly (dropped, and so
    /// closed, when the backend is draining or no connection is to be kept).
    pub fn push_conn(&self, backend: &Backend, conn: Box<Conn>) {
        if backend.is_removed() || backend.is_closed() || self.capacity == 0 {
            return;
        }
        if let Some(mine) = self.mine() {
            mine.conns.put(conn, self.capacity);
        }
    }

    /// A connection that is open, ready and idle for less than `max_idle`.
    pub fn checkout(&self, max_idle: Duration) -> Option<Sender> {
        self.mine()?
            .queue
            .take(max_idle, Instant::now(), Sender::usable)
    }

    fn push(&self, sender: Sender) {
        if self.capacity == 0 {
            return;
        }
        if let Some(mine) = self.mine() {
            mine.queue.put(sender, self.capacity);
        }
    }

    /// Close the connections idle for `max_idle` or longer, of every worker: what a
    /// burst opened and the load since has not needed, and connections of a backend
    /// no request went to since.
    pub fn expire(&self, max_idle: Duration) {
        for q in self.workers.iter() {
            q.queue.expire(max_idle);
            q.conns.expire(max_idle);
        }
    }

    /// Drop (and so close) every idle connection, of every worker.
    pub fn clear(&self) {
        for q in self.workers.iter() {
            q.queue.clear();
            q.conns.clear();
        }
    }
}

/// Return a connection whose exchange completed to its backend's idle queue.
pub(crate) fn checkin(backend: Arc<Backend>, mut sender: Sender) {
    if backend.is_removed() || sender.is_closed() {
        return;
    }
    if sender.is_ready() {
        backend.idle.push(sender);
        return;
    }
    // The connection task has not yet seen the end of the response: wait briefly.
    tokio::spawn(async move {
        if let Ok(Ok(())) = tokio::time::timeout(READY_GRACE, sender.ready()).await {
            if !backend.is_removed() {
                backend.idle.push(sender);
            }
        }
    });
}

/// Why a new upstream connection could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("connect to {addr} timed out")]
    Timeout { addr: std::net::SocketAddr },
    #[error("connect to {addr}: {source}")]
    Io {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP handshake with {addr}: {source}")]
    Handshake {
        addr: std::net::SocketAddr,
        source: hyper::Error,
    },
}

/// A TCP connection to `addr` within `timeout`, with Nagle off.
pub(crate) async fn connect_stream(
    addr: std::net::SocketAddr,
    timeout: Duration,
) -> Result<TcpStream, ConnectError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => return Err(ConnectError::Timeout { addr }),
        Ok(Err(source)) => return Err(ConnectError::Io { addr, source }),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Open a new connection to `backend` and spawn its connection task. The task ends
/// when the connection closes, when every sender is dropped, or when the backend's
/// drain deadline closes everything attached to it.
pub(crate) async fn connect(
    backend: &Arc<Backend>,
    timeout: Duration,
) -> Result<Sender, ConnectError> {
    let addr = backend.addr;
    let stream = connect_stream(addr, timeout).await?;
    let peer = backend.watch(stream.as_fd()).ok();
    let (send, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|source| ConnectError::Handshake { addr, source })?;
    spawn_conn_task(backend, conn);
    Ok(Sender { send, peer })
}

/// The task that drives one of hyper's client connections. Not inlined: the task's
/// future is built on the stack before it is moved into the task, and that room would
/// be part of every request's stack frame (see the text of `forward.rs`).
#[inline(never)]
fn spawn_conn_task(backend: &Backend, conn: http1::Connection<TokioIo<TcpStream>, RequestBody>) {
    let mut close = backend.close_signal();
    let generation = *close.borrow_and_update();
    let id = backend.id.clone();
    tokio::spawn(async move {
        tokio::select! {
            res = conn.with_upgrades() => {
                if let Err(error) = res {
                    tracing::debug!(backend = %id, %error, "upstream connection ended with an error");
                }
            }
            _ = close.wait_for(|g| *g != generation) => {
                tracing::debug!(backend = %id, "upstream connection closed at drain deadline");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    const LONG: Duration = Duration::from_secs(600);

    fn taken(stack: &Stack<u32>, max_idle: Duration) -> Vec<u32> {
        std::iter::from_fn(|| stack.take(max_idle, Instant::now(), |_| true)).collect()
    }

    #[test]
    fn the_newest_goes_first_and_a_full_stack_closes_its_oldest() {
        let stack = Stack::new();
        for n in 1..=3 {
            stack.put(n, 3);
        }
        assert_eq!(stack.take(LONG, Instant::now(), |_| true), Some(3));
        stack.put(4, 3);
        stack.put(5, 3); // full: 1, the oldest, goes
        assert_eq!(taken(&stack, LONG), vec![5, 4, 2]);
    }

    #[test]
    fn refused_and_outlived_connections_are_dropped_on_the_way() {
        let stack = Stack::new();
        for n in 1..=4 {
            stack.put(n, 10);
        }
        assert_eq!(
            stack.take(LONG, Instant::now(), |n| *n == 2),
            Some(2),
            "4 and 3 refused"
        );
        assert_eq!(stack.len(), 1, "the refused ones were dropped");
        stack.put(7, 10);
        assert!(taken(&stack, Duration::ZERO).is_empty(), "all too old");
        assert_eq!(stack.len(), 0);
    }

    #[test]
    fn expire_closes_the_connections_that_outlived_the_idle_time_and_no_others() {
        let stack = Stack::new();
        let long_ago = Instant::now().checked_sub(Duration::from_secs(60)).unwrap();
        lock(&stack.items).push_back((1, long_ago));
        lock(&stack.items).push_back((2, long_ago));
        stack.put(3, 10);
        stack.put(4, 10);
        stack.expire(Duration::from_secs(15));
        assert_eq!(taken(&stack, LONG), vec![4, 3]);
    }

    #[test]
    fn a_burst_s_room_is_given_back_as_its_connections_go() {
        let stack = Stack::new();
        for n in 0..1000 {
            stack.put(n, 1024);
        }
        let room = lock(&stack.items).capacity();
        assert!(room >= 1000);
        for _ in 0..990 {
            stack.take(LONG, Instant::now(), |_| true).unwrap();
        }
        for _ in 0..4 {
            stack.expire(LONG);
        }
        let now = lock(&stack.items).capacity();
        assert!(
            now <= SHRINK_ABOVE * 2,
            "room {now} of {room} kept for 10 connections"
        );
        assert_eq!(taken(&stack, LONG), (0..10).rev().collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_worker_takes_back_only_its_own_idle_connections_and_clear_closes_all() {
        cores::start(2).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = tokio::spawn(async move {
            let mut open = Vec::new();
            for _ in 0..2 {
                open.push(listener.accept().await.unwrap().0);
            }
            open
        });
        let backend = Backend::new("b1".into(), addr, "web".into(), "v1".into(), 4);
        let timeout = Duration::from_secs(10);
        let first = Conn::connect(&backend, timeout).await.unwrap();
        let second = Conn::connect(&backend, timeout).await.unwrap();
        let mut open = accepted.await.unwrap();
        let long = Duration::from_secs(600);

        cores::act_as(1);
        backend.idle.push_conn(&backend, first);
        cores::act_as(0);
        assert!(
            backend
                .idle
                .checkout_conn(&backend, long, Instant::now())
                .is_none(),
            "worker 0 took worker 1's connection"
        );
        backend.idle.push_conn(&backend, second);
        cores::act_as(1);
        let _taken = backend
            .idle
            .checkout_conn(&backend, long, Instant::now())
            .expect("its own");
        assert!(backend
            .idle
            .checkout_conn(&backend, long, Instant::now())
            .is_none());

        // Worker 0 still keeps the second connection; clearing the pool closes it: its
        // far end reads the end of the stream.
        backend.idle.clear();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(30), open[1].read(&mut byte)).await;
        assert_eq!(read.expect("the connection was not closed").unwrap(), 0);
    }
}
