//! Per-backend state shared by every snapshot that routes to it: the in-flight count, the
//! idle upstream connections, the removed (draining) flag, passive ejection, and the
//! signal that closes its upgraded connections. Publishing a new snapshot reuses these
//! objects, so in-flight accounting survives any number of publishes.

use crate::pool::IdlePool;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering, Ordering::SeqCst};
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::{watch, Notify};

/// One backend instance, keyed by its stable id.
pub(crate) struct Backend {
    pub id: Arc<str>,
    pub addr: SocketAddr,
    pub app: Arc<str>,
    pub version: Arc<str>,
    /// Requests (and upgraded connections) currently using this backend.
    in_flight: AtomicU64,
    /// Upgraded connections currently open (a subset of `in_flight`).
    upgraded: AtomicU64,
    /// Absent from the published snapshot: gets no new requests, waits to be drained.
    removed: AtomicBool,
    ejected: AtomicBool,
    /// Found dead (`abandon`) and not routed again since: a request that starts to wait
    /// on it in the moments before the route table without it is published gives up at
    /// once (`wait`), as one already waiting did.
    dead: AtomicBool,
    /// Past its drain deadline: nothing new (not even a retry) may start on it.
    closed: AtomicBool,
    failures: AtomicU32,
    /// Woken when `in_flight` drops to zero while `removed` is set.
    drained: Notify,
    /// Bumped at a drain deadline: upgraded tunnels and upstream connections of this
    /// backend that started before the bump close.
    close_gen: watch::Sender<u64>,
    /// Its upstream connections' sockets (see [`Watched`]), for `abandon`.
    sockets: Mutex<Vec<Weak<Watched>>>,
    pub idle: IdlePool,
}

/// An upstream connection's socket as its backend sees it (a duplicate descriptor, so
/// it is always the same socket), and whether a request that can be sent again waits on
/// it for its response head. When the backend is found dead (`Backend::abandon`), those
/// sockets are shut down: the exchange ends at once with an error and the request goes
/// to another backend. Nothing waits on a signal per request: marking the wait is two
/// atomic operations, and the search happens only when a backend is abandoned.
pub(crate) struct Watched {
    fd: OwnedFd,
    state: AtomicU8,
}

const IDLE: u8 = 0;
const WAITING: u8 = 1;
const ABANDONED: u8 = 2;

impl Watched {
    /// The duplicate of the connection's socket.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// A request that can be sent again now waits here for its response head (see
    /// `Backend::wait`).
    fn wait(&self) {
        // SeqCst with `Backend::abandon`'s: either it finds this wait, or this finds
        // the backend dead.
        let _ = self
            .state
            .compare_exchange(IDLE, WAITING, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// The wait is over (a head came, or the exchange failed): whether the request may
    /// keep what it got — false when the backend was abandoned first and the socket shut.
    pub fn answered(&self) -> bool {
        match self
            .state
            .compare_exchange(WAITING, IDLE, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(now) => now != ABANDONED,
        }
    }
}

/// Ends every exchange on the socket: reads see its end, writes fail.
fn shut(fd: &OwnedFd) {
    let _ = nix::sys::socket::shutdown(fd.as_raw_fd(), nix::sys::socket::Shutdown::Both);
}

/// Holds one unit of `in_flight` on a backend; releases it when dropped.
pub(crate) struct InFlight(Arc<Backend>);

impl Backend {
    pub fn new(
        id: Arc<str>,
        addr: SocketAddr,
        app: Arc<str>,
        version: Arc<str>,
        max_idle: usize,
    ) -> Backend {
        Backend {
            id,
            addr,
            app,
            version,
            in_flight: AtomicU64::new(0),
            upgraded: AtomicU64::new(0),
            removed: AtomicBool::new(false),
            ejected: AtomicBool::new(false),
            dead: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            failures: AtomicU32::new(0),
            drained: Notify::new(),
            close_gen: watch::Sender::new(0),
            sockets: Mutex::new(Vec::new()),
            idle: IdlePool::new(max_idle),
        }
    }

    /// Whether this object can stand for `(addr, app, version)` in a new snapshot.
    pub fn same_identity(&self, addr: SocketAddr, app: &str, version: &str) -> bool {
        self.addr == addr && &*self.app == app && &*self.version == version
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(SeqCst)
    }

    pub fn upgraded(&self) -> u64 {
        self.upgraded.load(SeqCst)
    }

    pub fn is_removed(&self) -> bool {
        self.removed.load(SeqCst)
    }

    pub fn is_ejected(&self) -> bool {
        self.ejected.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Count a request on this backend unless it has been removed. The increment and
    /// the check are both SeqCst and `drain` does the mirror image (set removed, then
    /// read the count), so either drain sees this request or this request sees the
    /// removal and goes elsewhere.
    pub fn try_acquire(self: &Arc<Self>) -> Option<InFlight> {
        self.in_flight.fetch_add(1, SeqCst);
        let guard = InFlight(self.clone());
        (!self.is_removed()).then_some(guard)
    }

    /// Count a request on this backend even if it was removed meanwhile (a retry of a
    /// request that already holds it).
    pub fn acquire_anyway(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, SeqCst);
        InFlight(self.clone())
    }

    pub fn set_removed(&self, removed: bool) {
        self.removed.store(removed, SeqCst);
        if removed {
            self.idle.clear();
        } else {
            self.closed.store(false, SeqCst);
            self.dead.store(false, SeqCst);
        }
        // A drain waiting on this backend re-checks its state.
        self.drained.notify_waiters();
    }

    pub fn close_signal(&self) -> watch::Receiver<u64> {
        self.close_gen.subscribe()
    }

    /// How many drain deadlines have closed this backend's connections.
    pub fn close_generation(&self) -> u64 {
        *self.close_gen.borrow()
    }

    /// Found dead (`abandon`) and not routed again since.
    pub fn is_dead(&self) -> bool {
        self.dead.load(SeqCst)
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(SeqCst)
    }

    /// Close everything still attached to this backend (drain deadline): its upstream
    /// sockets are shut down, which ends every exchange on them, and tunnels and hyper's
    /// connection tasks follow the close signal.
    pub fn close_all(&self) {
        self.closed.store(true, SeqCst);
        self.idle.clear();
        self.close_gen.send_modify(|g| *g += 1);
        let sockets = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        for socket in sockets.iter().filter_map(Weak::upgrade) {
            socket.state.store(ABANDONED, Ordering::Release);
            shut(&socket.fd);
        }
    }

    /// The backend is dead: its idle connections close, and the connections where a
    /// request that can be sent again waits for its response head are shut down, so
    /// that the request goes to another backend now (requests with a body keep waiting:
    /// the backend may only be slow).
    /// Until the backend is routed again, a request that starts to wait on it gives up
    /// at once (`wait`).
    pub fn abandon(&self) {
        self.dead.store(true, SeqCst);
        self.idle.clear();
        let sockets = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        for socket in sockets.iter().filter_map(Weak::upgrade) {
            let waiting = socket.state.compare_exchange(
                WAITING,
                ABANDONED,
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
            if waiting.is_ok() {
                shut(&socket.fd);
            }
        }
    }

    /// A request that can be sent again now waits on `watched` (one of this backend's
    /// connections) for its response head, until `abandon` ends the wait. On a backend
    /// already abandoned (found dead while still in the route table, which is published
    /// without it moments later) the wait ends at once: the request goes to another
    /// backend instead of waiting out `upstream_header_timeout`. False when it ended so.
    pub fn wait(&self, watched: &Watched) -> bool {
        watched.wait();
        if self.dead.load(SeqCst)
            && watched
                .state
                .compare_exchange(WAITING, ABANDONED, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            shut(&watched.fd);
            return false;
        }
        true
    }

    /// Follows the upstream connection on `socket` for `abandon` and `close_all`; fails
    /// when the descriptor cannot be duplicated.
    pub fn watch(&self, socket: BorrowedFd<'_>) -> std::io::Result<Arc<Watched>> {
        let fd = socket.try_clone_to_owned()?;
        let watched = Arc::new(Watched {
            fd,
            state: AtomicU8::new(IDLE),
        });
        let mut sockets = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        sockets.retain(|w| w.strong_count() > 0);
        sockets.push(Arc::downgrade(&watched));
        Ok(watched)
    }

    pub fn drained(&self) -> &Notify {
        &self.drained
    }

    pub fn upgrade_started(&self) {
        self.upgraded.fetch_add(1, SeqCst);
    }

    pub fn upgrade_finished(&self) {
        self.upgraded.fetch_sub(1, SeqCst);
    }

    /// Record a failed exchange; returns the consecutive failure count.
    pub fn record_failure(&self) -> u32 {
        self.failures.fetch_add(1, SeqCst).saturating_add(1)
    }

    pub fn record_success(&self) {
        if self.failures.load(std::sync::atomic::Ordering::Relaxed) != 0 {
            self.failures.store(0, SeqCst);
        }
    }

    pub fn set_ejected(&self, ejected: bool) {
        self.ejected.store(ejected, SeqCst);
        if !ejected {
            self.failures.store(0, SeqCst);
        }
    }
}

impl InFlight {
    pub fn backend(&self) -> &Arc<Backend> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let b = &self.0;
        if b.in_flight.fetch_sub(1, SeqCst) == 1 && b.is_removed() {
            b.drained.notify_waiters();
        }
    }
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("id", &self.id)
            .field("addr", &self.addr)
            .field("in_flight", &self.in_flight())
            .finish()
    }
}
