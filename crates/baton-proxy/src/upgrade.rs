//! Upgraded connections (WebSocket): after a 101 both sides are raw byte streams that
//! are copied in both directions. The tunnel counts as in flight on its backend; at the
//! backend's drain deadline (or when the proxy shuts down) both sides are closed
//! cleanly: write side shut down (FIN), unread input drained, so no side sees a reset.
//!
//! A WebSocket tunnel (`Upgrade: websocket`) is closed with a WebSocket close handshake
//! first, so clients see 1001 Going Away instead of an abnormal closure: each direction
//! counts frames while copying; at the deadline the frame in transfer is finished
//! (bounded by [`FRAME_FINISH`]), a masked Close goes to the backend, the backend's
//! remaining frames (echoes of what it already received) are relayed until its Close
//! reply, then a Close 1001 goes to the client and its reply is awaited (all bounded by
//! [`CLOSE_REPLY_WAIT`]) before both TCP sides are closed.

use crate::backend::InFlight;
use http::HeaderMap;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use ws_frames::{FrameTracker, OPCODE_CLOSE};

// Kept beside the tunnel that is its only user.
#[path = "ws_frames.rs"]
mod ws_frames;

/// How long a clean close may take before the sockets are simply dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// How long a WebSocket frame that is mid-transfer at the deadline may take to finish
/// before the tunnel gives up on a close handshake.
const FRAME_FINISH: Duration = Duration::from_secs(2);

/// How long the close handshake (backend's reply, then the client's) may take in all.
const CLOSE_REPLY_WAIT: Duration = Duration::from_secs(2);

/// Copy buffer per direction of a WebSocket tunnel.
const BUF_SIZE: usize = 16 * 1024;

/// Whether a 101 response switched to WebSocket (and the tunnel may speak its close
/// handshake).
pub(crate) fn is_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
}

/// Start the tunnel for an accepted upgrade. The guard keeps the backend's in-flight
/// count up until the tunnel ends. `websocket`: the 101 answered `Upgrade: websocket`.
/// Not inlined: the tunnel's future is built on the stack before it is moved into its
/// task, and inlined that room would be part of every request's stack frame (see the
/// text of `forward.rs`).
#[inline(never)]
pub(crate) fn spawn_tunnel(
    client: OnUpgrade,
    upstream: OnUpgrade,
    guard: InFlight,
    hard_stop: CancellationToken,
    websocket: bool,
) {
    let backend = guard.backend().clone();
    let mut close = backend.close_signal();
    let generation = *close.borrow_and_update();
    backend.upgrade_started();
    tokio::spawn(async move {
        let _count = UpgradeCount(guard);
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::debug!(backend = %backend.id, %error, "upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        if websocket {
            let stop = hard_stop.child_token();
            let finished = CancellationToken::new();
            let watch = async {
                tokio::select! {
                    _ = closed(&mut close, generation) => {
                        tracing::debug!(backend = %backend.id,
                            "closing WebSocket at drain deadline with a close handshake");
                        stop.cancel();
                    }
                    _ = stop.cancelled() => {}
                    _ = finished.cancelled() => {}
                }
            };
            let tunnel = async {
                websocket_tunnel(&mut client, &mut upstream, &stop).await;
                finished.cancel();
            };
            tokio::join!(watch, tunnel);
            return;
        }
        let close_now = tokio::select! {
            res = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                if let Err(error) = res {
                    tracing::debug!(backend = %backend.id, %error, "upgraded connection ended with an error");
                }
                false
            }
            _ = closed(&mut close, generation) => {
                tracing::debug!(backend = %backend.id, "closing upgraded connection at drain deadline");
                true
            }
            _ = hard_stop.cancelled() => true,
        };
        if close_now {
            close_cleanly(&mut client, &mut upstream).await;
        }
    });
}

/// Resolves once the backend's close generation moves past `generation`.
async fn closed(close: &mut tokio::sync::watch::Receiver<u64>, generation: u64) {
    let _ = close.wait_for(|g| *g != generation).await;
}

/// Decrements the backend's upgraded count and releases its in-flight unit on drop.
struct UpgradeCount(InFlight);

impl Drop for UpgradeCount {
    fn drop(&mut self) {
        self.0.backend().upgrade_finished();
    }
}

/// Copy a WebSocket tunnel both ways until it ends by itself or `stop` fires; then run
/// the close handshake (as far as frame boundaries allow) and close both sides.
async fn websocket_tunnel<C, U>(client: &mut C, upstream: &mut U, stop: &CancellationToken)
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (cr, cw) = tokio::io::split(client);
    let (ur, uw) = tokio::io::split(upstream);
    let mut to_backend = Pump::new(cr, uw);
    let mut to_client = Pump::new(ur, cw);
    let failed = CancellationToken::new();
    let (up, down) = tokio::join!(
        to_backend.forward(stop, &failed),
        to_client.forward(stop, &failed)
    );
    if !stop.is_cancelled() || up == Outcome::Failed || down == Outcome::Failed {
        // Ended by itself (both sides finished, or one failed): nothing to close politely.
        return;
    }
    let handshake_by = Instant::now() + CLOSE_REPLY_WAIT;
    let backend_told = up == Outcome::AtBoundary
        && write_before(
            &mut to_backend.w,
            &ws_frames::going_away(true),
            handshake_by,
        )
        .await;
    let server_side = async {
        if down != Outcome::AtBoundary {
            return;
        }
        if backend_told {
            // Frames the backend still sends (answers to what it received) reach the
            // client before the close; the backend's own Close is not forwarded.
            let relay = to_client.relay_until_close();
            if tokio::time::timeout_at(handshake_by, relay).await.is_err() {
                tracing::debug!("backend did not answer the WebSocket close in time");
            }
        }
        if to_client.frames.at_boundary() {
            let far = Instant::now() + CLOSE_GRACE;
            write_before(&mut to_client.w, &ws_frames::going_away(false), far).await;
        }
    };
    // The client's frames after the deadline can no longer be forwarded (the backend
    // got its Close); read them until the client's Close reply so none is reset.
    let client_side = async {
        if up == Outcome::Ended {
            return;
        }
        let wait = to_backend.skip_until_close();
        let _ = tokio::time::timeout_at(handshake_by + CLOSE_REPLY_WAIT, wait).await;
    };
    tokio::join!(server_side, client_side);
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        let _ = to_client.w.shutdown().await;
        let _ = to_backend.w.shutdown().await;
        tokio::join!(
            read_to_eof(&mut to_backend.r),
            read_to_eof(&mut to_client.r)
        );
    })
    .await;
}

/// Write `frame` and flush, giving up at `deadline`. Whether it was written.
async fn write_before<W: AsyncWrite + Unpin>(w: &mut W, frame: &[u8], deadline: Instant) -> bool {
    let write = async {
        w.write_all(frame).await?;
        w.flush().await
    };
    matches!(tokio::time::timeout_at(deadline, write).await, Ok(Ok(())))
}

/// How one direction's copy stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The source sent EOF; the destination's write side was shut down.
    Ended,
    /// A read or write failed; the tunnel is over.
    Failed,
    /// Stopped right after a complete frame: a Close may be written here.
    AtBoundary,
    /// Stopped inside a frame (it did not finish in time, or the stream is not framed
    /// as WebSocket): no Close can be written to this destination.
    MidFrame,
}

/// One direction of a WebSocket tunnel: a reused buffer whose `pos..len` bytes were
/// read but not yet accounted for, and the frame tracker of the bytes passed on.
struct Pump<R, W> {
    r: R,
    w: W,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    frames: FrameTracker,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Pump<R, W> {
    fn new(r: R, w: W) -> Self {
        Pump {
            r,
            w,
            buf: vec![0; BUF_SIZE],
            pos: 0,
            len: 0,
            frames: FrameTracker::default(),
        }
    }

    /// Read more bytes after the unaccounted ones (cancel safe). 0 means EOF.
    async fn fill(&mut self) -> io::Result<usize> {
        if self.pos == self.len {
            self.pos = 0;
            self.len = 0;
        } else if self.len == self.buf.len() {
            self.buf.copy_within(self.pos..self.len, 0);
            self.len -= self.pos;
            self.pos = 0;
        }
        let n = self.r.read(&mut self.buf[self.len..]).await?;
        self.len += n;
        Ok(n)
    }

    /// Copy until EOF, failure, or `stop`; after `stop`, finish the frame in transfer
    /// (bounded by [`FRAME_FINISH`]) and keep what follows it unread.
    async fn forward(&mut self, stop: &CancellationToken, failed: &CancellationToken) -> Outcome {
        let mut finish_by: Option<Instant> = None;
        loop {
            if finish_by.is_some() && self.frames.at_boundary() {
                return Outcome::AtBoundary;
            }
            let read = match finish_by {
                None => tokio::select! {
                    biased;
                    _ = failed.cancelled() => return Outcome::Failed,
                    _ = stop.cancelled() => {
                        finish_by = Some(Instant::now() + FRAME_FINISH);
                        continue;
                    }
                    read = self.fill() => read,
                },
                Some(deadline) => match tokio::time::timeout_at(deadline, self.fill()).await {
                    Ok(read) => read,
                    Err(_) => return Outcome::MidFrame,
                },
            };
            match read {
                Ok(0) => {
                    let _ = tokio::time::timeout(CLOSE_GRACE, self.w.shutdown()).await;
                    return Outcome::Ended;
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%error, "WebSocket tunnel read failed");
                    failed.cancel();
                    return Outcome::Failed;
                }
            }
            let k = self
                .frames
                .advance(&self.buf[self.pos..self.len], finish_by.is_some());
            let data = &self.buf[self.pos..self.pos + k];
            let written = match finish_by {
                None => {
                    let write = self.w.write_all(data);
                    tokio::pin!(write);
                    tokio::select! {
                        biased;
                        res = &mut write => Some(res),
                        _ = failed.cancelled() => return Outcome::Failed,
                        _ = stop.cancelled() => {
                            let deadline = Instant::now() + FRAME_FINISH;
                            finish_by = Some(deadline);
                            tokio::time::timeout_at(deadline, write).await.ok()
                        }
                    }
                }
                Some(deadline) => tokio::time::timeout_at(deadline, self.w.write_all(data))
                    .await
                    .ok(),
            };
            match written {
                None => return Outcome::MidFrame,
                Some(Err(error)) => {
                    tracing::debug!(%error, "WebSocket tunnel write failed");
                    failed.cancel();
                    return Outcome::Failed;
                }
                Some(Ok(())) => self.pos += k,
            }
        }
    }

    /// Pass on one whole frame (or drop it, without `forward`), starting at a frame
    /// boundary. `Ok(false)` at EOF.
    async fn pass_frame(&mut self, forward: bool) -> io::Result<bool> {
        loop {
            if self.pos == self.len && self.fill().await? == 0 {
                return Ok(false);
            }
            let k = self.frames.advance(&self.buf[self.pos..self.len], true);
            if forward {
                self.w.write_all(&self.buf[self.pos..self.pos + k]).await?;
            }
            self.pos += k;
            if self.frames.at_boundary() {
                return Ok(true);
            }
        }
    }

    /// Opcode of the next frame, reading its first byte if needed. `None` at EOF.
    async fn next_opcode(&mut self) -> io::Result<Option<u8>> {
        if self.pos == self.len && self.fill().await? == 0 {
            return Ok(None);
        }
        Ok(Some(ws_frames::opcode(self.buf[self.pos])))
    }

    /// Forward whole frames until the source's Close frame, which is consumed but not
    /// forwarded. Whether the Close came.
    async fn relay_until_close(&mut self) -> io::Result<bool> {
        self.pass_until_close(true).await
    }

    /// Drop whole frames up to and including the source's Close frame.
    async fn skip_until_close(&mut self) -> io::Result<bool> {
        self.pass_until_close(false).await
    }

    async fn pass_until_close(&mut self, forward: bool) -> io::Result<bool> {
        while self.frames.at_boundary() {
            let Some(op) = self.next_opcode().await? else {
                return Ok(false);
            };
            let close = op == OPCODE_CLOSE;
            if !self.pass_frame(forward && !close).await? {
                return Ok(false);
            }
            if close {
                if forward {
                    self.w.flush().await?;
                }
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Shut down both write sides, then read both until EOF so the final close sends FIN,
/// not RST.
async fn close_cleanly<A, B>(a: &mut A, b: &mut B)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        let _ = a.shutdown().await;
        let _ = b.shutdown().await;
        tokio::join!(read_to_eof(a), read_to_eof(b));
    })
    .await;
}

async fn read_to_eof<S: AsyncRead + Unpin>(s: &mut S) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn only_a_websocket_upgrade_gets_the_close_handshake() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(http::header::UPGRADE, HeaderValue::from_static(v));
            is_websocket(&h)
        };
        assert!(with("websocket"));
        assert!(with("WebSocket"));
        assert!(!with("h2c"));
        assert!(!with("websocket-ish"));
        assert!(!is_websocket(&HeaderMap::new()));
    }
}
