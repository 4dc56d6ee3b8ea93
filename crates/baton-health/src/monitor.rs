//! The per-instance monitor task: probes on an interval, feeds [`Thresholds`], and sends a
//! [`HealthEvent`] on each flip, or once `StartupTimeout` if the instance never became
//! healthy in time (after which the task ends: that instance has failed).

use crate::probe::probe;
use crate::thresholds::{Thresholds, Transition};
use baton_core::HealthSpec;
use std::net::SocketAddr;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// What the controller learns about an instance's health.
#[derive(Debug, Clone, PartialEq)]
pub enum HealthEvent {
    /// First healthy after start, or healthy again after being unhealthy.
    Healthy { id: String },
    /// A once-healthy instance failed `unhealthy` probes in a row; `reason` is the last.
    Unhealthy { id: String, reason: String },
    /// Not healthy within `startup_timeout` of the monitor starting; the monitor stops.
    StartupTimeout { id: String, last_error: String },
}

/// Owns a monitor task; dropping it (or [`MonitorHandle::stop`]) ends the task.
#[derive(Debug)]
pub struct MonitorHandle {
    task: JoinHandle<()>,
}

// === impl MonitorHandle ===

impl MonitorHandle {
    /// Ends the monitor. Events already in the channel stay there; no new one is sent.
    pub fn stop(self) {
        // `Drop` aborts the task.
    }

    /// Whether the task has ended (stopped, startup timeout, or the receiver went away).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl Drop for MonitorHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Spawns a task probing `addr` every `spec.interval` (first probe at once). Sends
/// `Healthy` on the first healthy flip, then `Unhealthy` / `Healthy` on each later flip,
/// and `StartupTimeout` if not healthy within `spec.startup_timeout` of this call.
/// The task also ends when `events` is closed.
pub fn spawn_monitor(
    id: String,
    addr: SocketAddr,
    spec: HealthSpec,
    events: mpsc::Sender<HealthEvent>,
) -> MonitorHandle {
    let deadline = Instant::now() + spec.startup_timeout.get();
    let thresholds = Thresholds::new(&spec);
    let task = tokio::spawn(run(id, addr, spec, thresholds, deadline, events));
    MonitorHandle { task }
}

/// Like [`spawn_monitor`] for an instance known to be healthy now (its monitor restarts
/// with a new spec, `baton reload`): no `Healthy` is sent first and there is no startup
/// deadline; `unhealthy` failures in a row send `Unhealthy`.
pub fn spawn_monitor_healthy(
    id: String,
    addr: SocketAddr,
    spec: HealthSpec,
    events: mpsc::Sender<HealthEvent>,
) -> MonitorHandle {
    let thresholds = Thresholds::healthy(&spec);
    let task = tokio::spawn(run(id, addr, spec, thresholds, Instant::now(), events));
    MonitorHandle { task }
}

async fn run(
    id: String,
    addr: SocketAddr,
    spec: HealthSpec,
    mut thresholds: Thresholds,
    deadline: Instant,
    events: mpsc::Sender<HealthEvent>,
) {
    let mut last_error = String::from("no probe finished yet");
    loop {
        let starting = !thresholds.has_been_healthy();
        // Biased: once the deadline has passed, a starting instance gets no further probe.
        let result = tokio::select! {
            biased;
            _ = tokio::time::sleep_until(deadline), if starting => {
                tracing::info!(instance = %id, %addr, error = %last_error, "not healthy within startup_timeout");
                let _ = events.send(HealthEvent::StartupTimeout { id, last_error }).await;
                return;
            }
            result = probe(addr, &spec) => result,
        };
        if let Err(error) = &result {
            tracing::debug!(instance = %id, %addr, %error, "health probe failed");
            last_error.clone_from(error);
        }
        let event = match thresholds.record(result.is_ok()) {
            Some(Transition::BecameHealthy) => Some(HealthEvent::Healthy { id: id.clone() }),
            Some(Transition::BecameUnhealthy) => Some(HealthEvent::Unhealthy {
                id: id.clone(),
                reason: last_error.clone(),
            }),
            None => None,
        };
        if let Some(event) = event {
            tracing::info!(instance = %id, %addr, ?event, "health changed");
            if events.send(event).await.is_err() {
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(spec.interval.get()) => {}
            _ = events.closed() => return,
        }
    }
}
