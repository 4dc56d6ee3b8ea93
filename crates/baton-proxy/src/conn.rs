//! The client connection's socket wrapper: feeds every read to the HTTP/1 framing
//! tracker (which may rewrite a request line's minor version in place, or end the
//! input when hyper would hang on it) and counts reads for the idle timeout. Writes
//! pass straight through. Over TLS it wraps the TLS stream, so it sees the plaintext.
//!
//! `Rewind` gives hyper a connection the HTTP/1 fast path (`h1server`) started: the
//! bytes the fast path read but did not serve come first, then the socket.

use crate::h1guard::{ConnState, Sniffer};
use bytes::{Buf, BytesMut};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

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
}

impl<S> TrackedIo<S> {
    pub fn new(inner: S, state: Arc<ConnState>, max_head: usize) -> TrackedIo<S> {
        TrackedIo {
            inner,
            sniffer: Sniffer::new(max_head),
            state,
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
