//! Upgraded connections (WebSocket): after a 101 both sides are raw byte streams that
//! are copied in both directions. The tunnel counts as in flight on its backend; at the
//! backend's drain deadline (or when the proxy shuts down) both sides are closed
//! cleanly: write side shut down (FIN), unread input drained, so no side sees a reset.

use crate::backend::InFlight;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// How long a clean close may take before the sockets are simply dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Start the tunnel for an accepted upgrade. The guard keeps the backend's in-flight
/// count up until the tunnel ends.
pub(crate) fn spawn_tunnel(
    client: OnUpgrade,
    upstream: OnUpgrade,
    guard: InFlight,
    hard_stop: CancellationToken,
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
