//! Response bodies: small fixed bodies, and a streamed body of N bytes for throughput tests.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Full};

/// Every response body the app sends.
pub type AppBody = Either<Full<Bytes>, RepeatBody>;

/// A small in-memory body.
pub fn full(data: impl Into<Bytes>) -> AppBody {
    Either::Left(Full::new(data.into()))
}

/// Size of each chunk of a [`RepeatBody`].
const CHUNK_LEN: usize = 64 * 1024;

/// Source of every chunk: a static buffer, so streaming N bytes allocates nothing.
static CHUNK: [u8; CHUNK_LEN] = [b'x'; CHUNK_LEN];

/// `len` bytes of `x`, streamed in 64 KiB chunks with an exact size hint
/// (so hyper sends `Content-Length`).
#[derive(Debug)]
pub struct RepeatBody {
    /// Bytes still to send.
    remaining: u64,
    /// Bytes promised on top of `remaining` but never sent (a truncated body).
    missing: u64,
}

// === impl RepeatBody ===

impl RepeatBody {
    /// A body of exactly `len` bytes.
    pub fn new(len: u64) -> AppBody {
        Either::Right(RepeatBody {
            remaining: len,
            missing: 0,
        })
    }

    /// Promises `2 * sent` bytes (`Content-Length`) but ends after `sent`: hyper then
    /// closes the connection mid-response, as a backend dying while it answers would.
    pub fn truncated(sent: u64) -> AppBody {
        Either::Right(RepeatBody {
            remaining: sent,
            missing: sent.max(1),
        })
    }
}

impl Body for RepeatBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = usize::try_from(self.remaining).map_or(CHUNK_LEN, |r| r.min(CHUNK_LEN));
        self.remaining -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&CHUNK[..n])))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining + self.missing)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn repeat_body_has_exact_length() {
        for len in [0, 1, CHUNK_LEN as u64, CHUNK_LEN as u64 * 3 + 17] {
            let body = RepeatBody::new(len);
            assert_eq!(body.size_hint().exact(), Some(len));
            let bytes = body.collect().await.unwrap().to_bytes();
            assert_eq!(bytes.len() as u64, len);
            assert!(bytes.iter().all(|&b| b == b'x'));
        }
    }
}
