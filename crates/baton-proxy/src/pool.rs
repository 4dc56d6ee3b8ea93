//! Upstream HTTP/1.1 connections: connecting with a timeout, and a lock-free per-backend
//! queue of idle keep-alive connections. The proxy is the client here, so it alone
//! decides when an idle connection is closed (on drain, or when it is too old).

use crate::backend::{Backend, Watched};
use crate::body::RequestBody;
use crate::cores;
use crate::h1client::Conn;
use crossbeam_queue::ArrayQueue;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use nix::errno::Errno;
use nix::sys::socket::{recv, MsgFlags};
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
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

/// Idle connections of one backend, oldest first: hyper's (which carried requests with
/// a body) and `h1client`'s (requests without), each up to the capacity — per worker
/// (`cores`): a worker takes back only the connections its own runtime drives.
pub(crate) struct IdlePool {
    workers: Box<[Queues]>,
}

struct Queues {
    queue: Option<ArrayQueue<Idle>>,
    conns: Option<ArrayQueue<IdleConn>>,
}

struct Idle {
    sender: Sender,
    since: Instant,
}

struct IdleConn {
    conn: Conn,
    since: Instant,
}

impl IdlePool {
    pub fn new(capacity: usize) -> IdlePool {
        let workers = (0..cores::count())
            .map(|_| Queues {
                queue: (capacity > 0).then(|| ArrayQueue::new(capacity)),
                conns: (capacity > 0).then(|| ArrayQueue::new(capacity)),
            })
            .collect();
        IdlePool { workers }
    }

    /// The calling worker's queues.
    fn mine(&self) -> &Queues {
        const NONE: &Queues = &Queues {
            queue: None,
            conns: None,
        };
        self.workers.get(cores::current()).unwrap_or(NONE)
    }

    /// An `h1client` connection idle for less than `max_idle` that can still be used.
    pub fn checkout_conn(&self, backend: &Backend, max_idle: Duration) -> Option<Conn> {
        let queue = self.mine().conns.as_ref()?;
        while let Some(idle) = queue.pop() {
            if idle.since.elapsed() < max_idle && idle.conn.usable(backend) {
                return Some(idle.conn);
            }
        }
        None
    }

    /// Keep an `h1client` connection whose response ended cleanly (dropped, and so
    /// closed, when the backend is draining or the pool is full).
    pub fn push_conn(&self, backend: &Backend, conn: Conn) {
        if backend.is_removed() || backend.is_closed() {
            return;
        }
        if let Some(queue) = &self.mine().conns {
            let _ = queue.push(IdleConn {
                conn,
                since: Instant::now(),
            });
        }
    }

    /// A connection that is open, ready and idle for less than `max_idle`.
    pub fn checkout(&self, max_idle: Duration) -> Option<Sender> {
        let queue = self.mine().queue.as_ref()?;
        while let Some(idle) = queue.pop() {
            if idle.since.elapsed() < max_idle && idle.sender.usable() {
                return Some(idle.sender);
            }
        }
        None
    }

    fn push(&self, sender: Sender) {
        if let Some(queue) = &self.mine().queue {
            // Full: the connection is dropped, which closes it.
            let _ = queue.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// Drop (and so close) every idle connection, of every worker.
    pub fn clear(&self) {
        for q in self.workers.iter() {
            if let Some(queue) = &q.queue {
                while queue.pop().is_some() {}
            }
            if let Some(queue) = &q.conns {
                while queue.pop().is_some() {}
            }
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
    Ok(Sender { send, peer })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

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
            backend.idle.checkout_conn(&backend, long).is_none(),
            "worker 0 took worker 1's connection"
        );
        backend.idle.push_conn(&backend, second);
        cores::act_as(1);
        let _taken = backend.idle.checkout_conn(&backend, long).expect("its own");
        assert!(backend.idle.checkout_conn(&backend, long).is_none());

        // Worker 0 still keeps the second connection; clearing the pool closes it: its
        // far end reads the end of the stream.
        backend.idle.clear();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(30), open[1].read(&mut byte)).await;
        assert_eq!(read.expect("the connection was not closed").unwrap(), 0);
    }
}
