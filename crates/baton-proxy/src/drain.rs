//! Draining a backend that the published snapshot no longer routes to: close its idle
//! upstream connections (the proxy is the client there, so this races with nothing),
//! wait for its in-flight requests, and at the deadline close what is left.

use crate::backend::Backend;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a drain waits, after its deadline, for upgraded tunnels to finish their
/// close handshake (each tunnel bounds its own handshake to about 4 s).
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// What a drain found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainReport {
    /// Every request finished before the deadline; the instance can be stopped.
    pub completed: bool,
    /// Requests (including upgraded connections) still running at the deadline; they
    /// were cancelled.
    pub in_flight_at_deadline: u64,
    /// Upgraded (WebSocket) connections closed at the deadline.
    pub upgraded_closed: u64,
    pub waited: Duration,
}

impl DrainReport {
    pub(crate) fn nothing() -> DrainReport {
        DrainReport {
            completed: true,
            in_flight_at_deadline: 0,
            upgraded_closed: 0,
            waited: Duration::ZERO,
        }
    }
}

pub(crate) async fn drain(backend: &Arc<Backend>, timeout: Duration) -> DrainReport {
    let start = Instant::now();
    if !backend.is_removed() {
        tracing::warn!(backend = %backend.id,
            "drain requested for a backend that is still routed; publish a table without it first");
        return DrainReport {
            completed: false,
            in_flight_at_deadline: backend.in_flight(),
            upgraded_closed: 0,
            waited: Duration::ZERO,
        };
    }
    backend.idle.clear();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let notified = backend.drained().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if backend.in_flight() == 0 {
            tracing::debug!(backend = %backend.id, waited = ?start.elapsed(), "backend drained");
            return DrainReport {
                completed: true,
                waited: start.elapsed(),
                ..DrainReport::nothing()
            };
        }
        if !backend.is_removed() {
            tracing::warn!(backend = %backend.id, "backend was routed again while draining; drain abandoned");
            return DrainReport {
                completed: false,
                in_flight_at_deadline: backend.in_flight(),
                upgraded_closed: 0,
                waited: start.elapsed(),
            };
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    let in_flight = backend.in_flight();
    let upgraded = backend.upgraded();
    if in_flight == 0 {
        return DrainReport {
            completed: true,
            waited: start.elapsed(),
            ..DrainReport::nothing()
        };
    }
    tracing::warn!(backend = %backend.id, in_flight, upgraded,
        "drain deadline reached; closing upgraded connections and cancelling requests");
    backend.close_all();
    // WebSocket tunnels now run their close handshake (bounded inside the tunnel) and
    // cancelled requests unwind. Wait for that, briefly, so the caller does not stop the
    // instance under a handshake still in progress and lose the echoes it owes.
    let grace = tokio::time::Instant::now() + CLOSE_GRACE;
    loop {
        let notified = backend.drained().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if backend.in_flight() == 0 {
            break;
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep_until(grace) => break,
        }
    }
    DrainReport {
        completed: false,
        in_flight_at_deadline: in_flight,
        upgraded_closed: upgraded,
        waited: start.elapsed(),
    }
}
