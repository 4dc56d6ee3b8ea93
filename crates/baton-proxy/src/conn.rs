//! The client connection's socket wrapper: feeds every read to the HTTP/1 framing
//! tracker (which may rewrite a request line's minor version in place, or end the
//! input when hyper would hang on it) and counts reads for the idle timeout. Writes
//! pass straight through. Over TLS it wraps the TLS stream, so it sees the plaintext.
//!
//! While the HTTP/1 fast path (`h1server`) reads the connection, the tracker is paused:
//! every head the fast path takes is one the tracker would pass without a verdict (a
//! `GET`/`HEAD` with no body framing, at most one `Host`, CRLF line ends), so the fast
//! path judges its heads itself and keeps the slow-head clock; at the first head it
//! leaves to hyper it hands the tracker the bytes it read and did not serve
//! (`resume_guard`), at a head boundary, with the count of heads it took.
//!
//! `Rewind` gives hyper a connection the HTTP/1 fast path (`h1server`) started: the
//! bytes the fast path read but did not serve come first, then the socket.

use crate::h1guard::{ConnState, Sniffer};
use bytes::{Buf, BytesMut};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection's graceful close (finish the response or streams in progress, then
/// close), asked for only by the task that serves the connection (`server.rs`'s
/// watchdog loop), which polls the connection again right after asking. So the
/// protocol being served looks at it on each poll and needs no wake-up: no waiter is
/// registered per wait, and nothing is allocated per connection (a
/// `CancellationToken` costs an allocation, a clone and a waiter list).
#[derive(Debug, Default)]
pub(crate) struct Graceful(AtomicBool);

impl Graceful {
    pub fn cancel(&self) {
        self.0.store(true, Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Relaxed)
    }

    /// Ready once cancelled, for a `select!` beside the connection's own future. It
    /// registers no wake-up (see above): only for a future polled by the task that
    /// cancels.
    pub fn cancelled(&self) -> impl std::future::Future<Output = ()> + '_ {
        std::future::poll_fn(move |_| {
            if self.is_cancelled() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }
}

/// `AsyncWrite` for a read-side wrapper: every write goes straight to `inner`.
macro_rules! writes_pass_through {
    ($wrapper:ident) => {
        impl<S: AsyncWrite + Unpin> AsyncWrite for $wrapper<S> {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.inner.is_write_vectored()
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.get_mut().inner).poll_flush(cx)
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
            }
        }
    };
}

pub(crate) struct TrackedIo<S> {
    inner: S,
    sniffer: Sniffer,
    state: Arc<ConnState>,
    /// The reader above judges the heads itself (see the module's text).
    paused: bool,
}

impl<S> TrackedIo<S> {
    pub fn new(inner: S, state: Arc<ConnState>, max_head: usize) -> TrackedIo<S> {
        TrackedIo {
            inner,
            sniffer: Sniffer::new(max_head),
            state,
            paused: false,
        }
    }

    /// The connection's shared facts (slow-head clock, reads, verdicts).
    pub fn state(&self) -> &ConnState {
        &self.state
    }

    /// From now on reads reach the caller unjudged: it must take only heads the tracker
    /// would pass without a verdict, and keep the slow-head clock itself. Only at the
    /// start of the connection.
    pub fn pause_guard(&mut self) {
        self.paused = true;
    }

    /// The tracker takes over again after `heads` heads taken while it was paused:
    /// `pending` (read, not yet handed on, starting at a head boundary) is judged now,
    /// as if just read, and cut after a byte that poisons the connection.
    pub fn resume_guard(&mut self, heads: u64, pending: &mut BytesMut) {
        if !self.paused {
            return;
        }
        self.paused = false;
        self.sniffer.skip_heads(heads);
        if !pending.is_empty() {
            let kept = self.sniffer.feed(pending, &self.state);
            pending.truncate(kept);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for TrackedIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.sniffer.poisoned() {
            // hyper would wait for ever on what it has; end its input so the body
            // fails and the upstream request is aborted.
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let new = &mut buf.filled_mut()[before..];
        if !new.is_empty() {
            this.state.note_read();
            if this.paused {
                return Poll::Ready(Ok(()));
            }
            let kept = this.sniffer.feed(new, &this.state);
            if kept < new.len() {
                // Poisoned: hyper gets nothing after the offending byte.
                buf.set_filled(before + kept);
            }
        }
        Poll::Ready(Ok(()))
    }
}

writes_pass_through!(TrackedIo);

/// A stream with bytes already read put back in front of it.
pub(crate) struct Rewind<S> {
    first: BytesMut,
    inner: S,
}

impl<S> Rewind<S> {
    pub fn new(first: BytesMut, inner: S) -> Rewind<S> {
        Rewind { first, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.first.is_empty() {
            let n = this.first.len().min(buf.remaining());
            buf.put_slice(&this.first[..n]);
            this.first.advance(n);
            if this.first.is_empty() {
                this.first = BytesMut::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

writes_pass_through!(Rewind);
