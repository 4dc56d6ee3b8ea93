//! A worker's small socket writes, gathered over one pass of its event loop and handed
//! to the kernel in one `io_uring_enter`.
//!
//! A keep-alive request costs the proxy four kernel entries: a read and a write on each
//! side. Where an entry is dear (a kernel that clears CPU buffers and returns through a
//! safe thunk at every user/kernel boundary, in a virtual machine: 0.7 µs a bare call),
//! the entries are a tenth of a request's CPU. A read has to be a call of its own (the
//! task goes on with what it returns), but a write only has to reach the kernel before
//! the task waits for the answer to it: a small write (a response to a client, a request
//! head to an upstream: `socket::Socket`) is copied into the worker's batch and the task
//! goes on at once. The worker's flusher task, woken by the first write of a batch, runs
//! after every task that was ready with it and submits them all, each an
//! `IORING_OP_SEND` with `MSG_DONTWAIT`: a send the socket has room for completes inside
//! that one call; one that finds the send buffer full completes with what it took. The
//! kernel never holds a buffer after the call returns, so no completion is ever awaited
//! and the ring is never polled.
//!
//! What a send did not take stays with the socket (`unsent`), and its owner writes it
//! through the reactor before anything else, woken for it; a send that failed leaves its
//! error for the socket's next call (as `NotSent`: an upstream client retries a head
//! that never left). A batched socket is shared (`Shared`) between its owner and the
//! batch, so a connection closed with a write still in the batch keeps its descriptor,
//! and its number, until the write is submitted, and what a send left on a connection
//! nobody owns is written out by a task of its own (`finish_later`); the proxy's
//! shutdown waits for both (`settle`). A flush leaves batched bytes where they are (they
//! go at the end of the pass whatever happens); a shutdown submits them first. Writes
//! larger than `BATCH_MAX` go straight to the kernel after the socket's batched bytes,
//! as do all writes on a thread that is not a worker or where io_uring is refused
//! (seccomp in a container, `kernel.io_uring_disabled`).

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// The largest write that is batched (copied); larger ones go straight to the kernel.
pub(crate) const BATCH_MAX: usize = 16 * 1024;
/// Sends gathered before the batch is submitted without waiting for the flusher.
const BATCH_ENTRIES: usize = 64;
/// The most bytes one socket's entry gathers before they are submitted.
const ENTRY_MAX: usize = 2 * BATCH_MAX;
/// Buffers kept for reuse, and the largest one kept (memory comes back after a load).
const SPARE_BUFFERS: usize = 64;
const SPARE_CAPACITY: usize = 4 * 1024;

/// A client socket as its owner and the batch share it: the descriptor stays open while
/// either holds it. The request path takes no lock: where the socket's entry is, and
/// whether a send left anything, are atomics; only what a send left (rare: a full send
/// buffer, a failed send) sits behind a lock.
pub(crate) struct Shared {
    socket: std::net::TcpStream,
    /// This socket's entry in the batch being gathered, if it has one: the batch's id
    /// and the entry's place (`queued_at`), or `NOT_QUEUED`. Written by the worker that
    /// owns the socket; atomic only so that the type can move between threads.
    queued: AtomicU64,
    /// Whether `left` holds anything: read before locking it.
    has_left: AtomicBool,
    left: Mutex<Left>,
}

const NOT_QUEUED: u64 = 0;

/// `Shared::queued` for the entry at `index` of batch `id` (ids start at 1, so never
/// `NOT_QUEUED`).
fn queued_at(id: u64, index: usize) -> u64 {
    (id << 32) | index as u64
}

/// What batched sends left a socket.
#[derive(Default)]
struct Left {
    /// What a batched send did not take (the send buffer was full), from the offset on.
    unsent: Option<(Vec<u8>, usize)>,
    /// What a batched send failed with.
    error: Option<io::Error>,
}

impl Shared {
    pub(crate) fn new(socket: std::net::TcpStream) -> Arc<Shared> {
        Arc::new(Shared {
            socket,
            queued: AtomicU64::new(NOT_QUEUED),
            has_left: AtomicBool::new(false),
            left: Mutex::new(Left::default()),
        })
    }

    pub(crate) fn socket(&self) -> &std::net::TcpStream {
        &self.socket
    }

    /// `left`, locked; `has_left` is brought up to date when the guard goes.
    fn left(&self) -> LeftGuard<'_> {
        // A panic while the lock was held left nothing half-done that matters here.
        let guard = self
            .left
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        LeftGuard {
            guard,
            has_left: &self.has_left,
        }
    }

    /// Whether the socket has bytes in the batch being gathered.
    pub(crate) fn is_queued(&self) -> bool {
        self.queued.load(Ordering::Acquire) != NOT_QUEUED
    }

    /// What batched sends left: the error one failed with (once), else the bytes one
    /// did not take, to be written before anything else. A socket's every read and
    /// write asks: one atomic load when nothing is left.
    pub(crate) fn take_left(&self) -> Result<Option<(Vec<u8>, usize)>, io::Error> {
        if !self.has_left.load(Ordering::Acquire) {
            return Ok(None);
        }
        let mut left = self.left();
        match left.error.take() {
            Some(error) => Err(error),
            None => Ok(left.unsent.take()),
        }
    }

    /// The bytes a batched send did not take, to be written before anything else.
    pub(crate) fn take_unsent(&self) -> Option<(Vec<u8>, usize)> {
        if !self.has_left.load(Ordering::Acquire) {
            return None;
        }
        self.left().unsent.take()
    }

    /// Puts back what is still unsent after a write of part of it.
    pub(crate) fn put_unsent(&self, buf: Vec<u8>, offset: usize) {
        self.left().unsent = Some((buf, offset));
    }

    /// Whether no batched send failed or left bytes: nothing stands between the socket's
    /// next write and the kernel.
    pub(crate) fn is_sound(&self) -> bool {
        !self.has_left.load(Ordering::Acquire)
    }

    /// Whether bytes a batched send did not take are waiting.
    pub(crate) fn has_unsent(&self) -> bool {
        self.has_left.load(Ordering::Acquire) && self.left().unsent.is_some()
    }
}

/// `Shared::left` locked: on release, `has_left` says whether anything is left.
struct LeftGuard<'a> {
    guard: std::sync::MutexGuard<'a, Left>,
    has_left: &'a AtomicBool,
}

impl std::ops::Deref for LeftGuard<'_> {
    type Target = Left;
    fn deref(&self) -> &Left {
        &self.guard
    }
}

impl std::ops::DerefMut for LeftGuard<'_> {
    fn deref_mut(&mut self) -> &mut Left {
        &mut self.guard
    }
}

impl Drop for LeftGuard<'_> {
    fn drop(&mut self) {
        let any = self.guard.unsent.is_some() || self.guard.error.is_some();
        self.has_left.store(any, Ordering::Release);
    }
}

impl AsRawFd for Shared {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

/// The error of a batched send that failed: none of its bytes reached the kernel. The
/// socket's next call returns it (with the failure's kind); a client of an upstream
/// tells by it that a request head was never sent (`was_not_sent`).
#[derive(Debug, thiserror::Error)]
#[error("a batched write was not sent: {0}")]
pub(crate) struct NotSent(io::Error);

/// Whether `error` is a batched send's that failed with none of its bytes taken.
pub(crate) fn was_not_sent(error: &io::Error) -> bool {
    error.get_ref().is_some_and(|inner| inner.is::<NotSent>())
}

/// One socket's bytes in the batch.
struct Entry {
    shared: Arc<Shared>,
    buf: Vec<u8>,
    /// The task that wrote last: woken when the send leaves bytes or fails.
    writer: Waker,
}

struct Batch {
    /// Told apart from the other workers' batches (`Shared::queued`).
    id: u64,
    /// A submission failed in a way that leaves the kernel's use of the buffers
    /// unknown: nothing more is batched on this worker.
    broken: bool,
    ring: io_uring::IoUring,
    entries: Vec<Entry>,
    spare: Vec<Vec<u8>>,
    /// The flusher task, woken by a batch's first write.
    flusher: Option<Waker>,
    /// Completions of one submission, gathered before any socket is woken.
    done: Vec<(u64, i32)>,
    /// Submissions made (what the tests count).
    submissions: u64,
}

thread_local! {
    /// The calling worker's batch; `None` where writes are not batched.
    static BATCH: RefCell<Option<Batch>> = const { RefCell::new(None) };
}

/// Sets up batching on the calling thread (a worker, before it serves). Returns why not
/// where the kernel refuses io_uring; writes then go straight to the kernel.
pub(crate) fn install() -> io::Result<()> {
    let ring = io_uring::IoUring::builder()
        .setup_single_issuer()
        .setup_coop_taskrun()
        .build(BATCH_ENTRIES as u32)?;
    static IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    BATCH.with(|batch| {
        *batch.borrow_mut() = Some(Batch {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            broken: false,
            ring,
            entries: Vec::with_capacity(BATCH_ENTRIES),
            spare: Vec::new(),
            flusher: None,
            done: Vec::with_capacity(BATCH_ENTRIES),
            submissions: 0,
        });
    });
    Ok(())
}

/// The flusher: submits the batch each time a first write wakes it. Spawned once on each
/// worker that `install`ed a batch; it runs after the tasks that were ready with the
/// write, so their writes go in the same submission.
pub(crate) async fn flusher() {
    std::future::poll_fn(|cx: &mut Context<'_>| {
        BATCH.with(|batch| {
            if let Some(batch) = batch.borrow_mut().as_mut() {
                match &batch.flusher {
                    Some(waker) if waker.will_wake(cx.waker()) => {}
                    _ => batch.flusher = Some(cx.waker().clone()),
                }
            }
        });
        flush();
        Poll::<()>::Pending
    })
    .await;
}

/// What `queue` did with a write.
pub(crate) enum Queued {
    /// Copied into the batch: it reaches the kernel at the end of the pass.
    Yes,
    /// Not batched (no batch on this thread, too many bytes at once, an entry grown to
    /// its bound): the caller writes it, after the socket's batched bytes.
    No,
}

/// Copies `bufs` (`len` bytes) into the calling worker's batch as a send on `shared`,
/// behind any bytes the socket already has there.
pub(crate) fn queue(
    shared: &Arc<Shared>,
    bufs: &[io::IoSlice<'_>],
    len: usize,
    cx: &Context<'_>,
) -> io::Result<Queued> {
    if len > BATCH_MAX {
        return Ok(Queued::No);
    }
    let full = BATCH.with(|batch| {
        let mut batch = batch.borrow_mut();
        let Some(batch) = batch.as_mut().filter(|b| !b.broken) else {
            return Ok(None);
        };
        let queued = shared.queued.load(Ordering::Acquire);
        let index = if queued == NOT_QUEUED {
            if batch.entries.is_empty() {
                if let Some(flusher) = &batch.flusher {
                    flusher.wake_by_ref();
                }
            }
            let index = batch.entries.len();
            shared
                .queued
                .store(queued_at(batch.id, index), Ordering::Release);
            let buf = batch.spare.pop().unwrap_or_default();
            batch.entries.push(Entry {
                shared: shared.clone(),
                buf,
                writer: cx.waker().clone(),
            });
            index
        } else {
            let index = (queued & u64::from(u32::MAX)) as usize;
            if queued >> 32 != batch.id || index >= batch.entries.len() {
                // A connection lives on the worker that accepted it; bytes of one socket
                // in two workers' batches could leave out of order.
                return Err(io::Error::other(
                    "a socket was written from two proxy workers",
                ));
            }
            let entry = &mut batch.entries[index];
            // A socket written to over and over in one pass (a streamed body) has its
            // bytes submitted before its entry grows past a bound.
            if entry.buf.len() + len > ENTRY_MAX {
                return Ok(None);
            }
            if !entry.writer.will_wake(cx.waker()) {
                entry.writer = cx.waker().clone();
            }
            index
        };
        let buf = &mut batch.entries[index].buf;
        for b in bufs {
            buf.extend_from_slice(b);
        }
        Ok(Some(batch.entries.len() >= BATCH_ENTRIES))
    })?;
    Ok(match full {
        None => Queued::No,
        Some(full) => {
            if full {
                flush();
            }
            Queued::Yes
        }
    })
}

/// Submits the calling worker's batch now: every send it holds reaches the kernel
/// before this returns. Anyone about to act on a socket behind the batch's back (a
/// shutdown by descriptor) calls it first.
pub(crate) fn flush() {
    let woken = BATCH.with(|batch| {
        let mut batch = batch.borrow_mut();
        let Some(batch) = batch.as_mut() else {
            return Vec::new();
        };
        batch.submit()
    });
    for waker in woken {
        waker.wake();
    }
}

/// The calling thread's submissions so far.
#[cfg(test)]
pub(crate) fn submissions() -> u64 {
    BATCH.with(|batch| batch.borrow().as_ref().map_or(0, |b| b.submissions))
}

impl Batch {
    /// Submits every entry and settles each from its completion; returns the writers to
    /// wake (their sockets have a remainder or an error).
    fn submit(&mut self) -> Vec<Waker> {
        let mut woken = Vec::new();
        if self.entries.is_empty() {
            return woken;
        }
        let flags = nix::libc::MSG_DONTWAIT | nix::libc::MSG_NOSIGNAL;
        {
            let mut sq = self.ring.submission();
            for (index, entry) in self.entries.iter().enumerate() {
                let len = u32::try_from(entry.buf.len()).unwrap_or(u32::MAX);
                let send = io_uring::opcode::Send::new(
                    io_uring::types::Fd(entry.shared.as_raw_fd()),
                    entry.buf.as_ptr(),
                    len,
                )
                .flags(flags)
                .build()
                .user_data(index as u64);
                // SAFETY: the buffer and the descriptor the send names are owned by
                // `self.entries` (the `Vec`'s heap block and the `Arc<Shared>`), which
                // are neither touched nor dropped until `reap` has the completion of
                // every entry submitted here. The submission queue has room for
                // `BATCH_ENTRIES` and is empty between submissions.
                #[allow(unsafe_code)]
                let pushed = unsafe { sq.push(&send) };
                if pushed.is_err() {
                    unreachable!("the submission queue holds BATCH_ENTRIES entries");
                }
            }
        }
        let wanted = self.entries.len();
        self.submissions += 1;
        self.done.clear();
        while self.done.len() < wanted {
            match self.ring.submit_and_wait(wanted - self.done.len()) {
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    // The kernel may still hold the buffers: they are never freed, and
                    // from now on this worker's writes go straight to the kernel. The
                    // sockets' bytes are lost: their next calls fail.
                    tracing::error!(%error, "io_uring submission failed; writes are no longer batched");
                    self.broken = true;
                    for entry in &self.entries {
                        entry.shared.queued.store(NOT_QUEUED, Ordering::Release);
                        entry.shared.left().error = Some(io::Error::other(format!(
                            "a batched write was lost: io_uring failed: {error}"
                        )));
                        woken.push(entry.writer.clone());
                    }
                    std::mem::forget(std::mem::take(&mut self.entries));
                    return woken;
                }
            }
            self.done
                .extend(self.ring.completion().map(|c| (c.user_data(), c.result())));
        }
        for (index, result) in self.done.drain(..) {
            let Some(entry) = self.entries.get_mut(index as usize) else {
                continue;
            };
            let buf = std::mem::take(&mut entry.buf);
            entry.shared.queued.store(NOT_QUEUED, Ordering::Release);
            let sent = match usize::try_from(result) {
                Ok(n) => n,
                Err(_) if -result == nix::libc::EAGAIN => 0,
                Err(_) => {
                    let error = io::Error::from_raw_os_error(-result);
                    entry.shared.left().error = Some(io::Error::new(error.kind(), NotSent(error)));
                    woken.push(entry.writer.clone());
                    continue;
                }
            };
            if sent < buf.len() {
                entry.shared.left().unsent = Some((buf, sent));
                woken.push(entry.writer.clone());
                continue;
            }
            if self.spare.len() < SPARE_BUFFERS && buf.capacity() <= SPARE_CAPACITY {
                let mut buf = buf;
                buf.clear();
                self.spare.push(buf);
            }
        }
        for entry in self.entries.drain(..) {
            if Arc::strong_count(&entry.shared) == 1 {
                finish_later(entry.shared);
            }
        }
        woken
    }
}

/// Closed connections whose last bytes are still being written out (`finish`).
static FINISHING: AtomicUsize = AtomicUsize::new(0);

/// A socket nobody owns any more: what batched sends left on it is written out by a task
/// of its own, then it closes.
pub(crate) fn finish_later(shared: Arc<Shared>) {
    if !shared.has_unsent() {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            FINISHING.fetch_add(1, Ordering::AcqRel);
            runtime.spawn(async move {
                finish(shared).await;
                FINISHING.fetch_sub(1, Ordering::AcqRel);
            });
        }
        Err(_) => tracing::debug!("a closed connection's last bytes are dropped: no runtime"),
    }
}

/// How often `settle` looks whether closed connections' last bytes are out.
const SETTLE_POLL: Duration = Duration::from_millis(5);

/// Once the proxy's connections have ended (at shutdown, before the process may exit):
/// every worker's batch submitted, and what sends left on closed connections written
/// out. The caller bounds the wait (a client that stopped reading holds it).
pub(crate) async fn settle(workers: &[tokio::runtime::Handle]) {
    for worker in workers {
        let _ = worker.spawn(async { flush() }).await;
    }
    while FINISHING.load(Ordering::Acquire) > 0 {
        tokio::time::sleep(SETTLE_POLL).await;
    }
}

/// Writes out what a batched send left on a socket nobody owns any more.
async fn finish(shared: Arc<Shared>) {
    use tokio::io::unix::AsyncFd;
    let Some((buf, mut offset)) = shared.take_unsent() else {
        return;
    };
    // SAFETY: the `AsyncFd` owns the socket's last handle, so the descriptor it registers
    // stays open and unchanged until the `AsyncFd` deregisters it when dropped.
    #[allow(unsafe_code)]
    let registered =
        unsafe { AsyncFd::register_with_interest(SharedFd(shared), tokio::io::Interest::WRITABLE) };
    let fd = match registered {
        Ok(fd) => fd,
        Err(error) => {
            let error = error.into_parts().1;
            tracing::debug!(%error, "cannot wait to finish a closed connection's last write");
            return;
        }
    };
    while offset < buf.len() {
        let Ok(mut ready) = fd.writable().await else {
            return;
        };
        match ready.try_io(|fd| {
            use std::io::Write as _;
            (&fd.get_ref().0.socket).write(&buf[offset..])
        }) {
            Ok(Ok(n)) => offset += n,
            Ok(Err(error)) if error.kind() == io::ErrorKind::Interrupted => {}
            Ok(Err(_)) => return,
            Err(_would_block) => {}
        }
    }
}

/// A shared socket as the reactor registers it.
pub(crate) struct SharedFd(pub(crate) Arc<Shared>);

impl AsRawFd for SharedFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}
