//! Passive outlier ejection from live traffic: after `eject_after` consecutive 5xx
//! answers or connection failures a backend is skipped for `eject_time`, unless it is
//! the last one of its version still serving. Ejections and restorations are broadcast
//! to the controller.

use crate::backend::Backend;
use crate::lock;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

/// A passive health signal for the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassiveEvent {
    Ejected {
        backend_id: String,
        app: String,
        version: String,
        reason: String,
    },
    Restored {
        backend_id: String,
        app: String,
        version: String,
    },
}

pub(crate) struct Passive {
    eject_after: u32,
    eject_time: Duration,
    events: broadcast::Sender<PassiveEvent>,
    /// Serialises eject decisions so two failing siblings cannot both leave.
    decide: Mutex<()>,
}

impl Passive {
    pub fn new(eject_after: u32, eject_time: Duration) -> Passive {
        Passive {
            eject_after,
            eject_time,
            events: broadcast::channel(1024).0,
            decide: Mutex::new(()),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<PassiveEvent> {
        self.events.subscribe()
    }

    pub fn success(&self, backend: &Backend) {
        backend.record_success();
    }

    /// Count a failure; eject the backend when the threshold is reached and one of
    /// `siblings` (its version's pool) keeps serving.
    pub fn failure(&self, backend: &Arc<Backend>, siblings: &[Arc<Backend>], reason: &str) {
        if self.eject_after == 0 || self.eject_time.is_zero() {
            return;
        }
        let failures = backend.record_failure();
        if failures < self.eject_after || backend.is_ejected() {
            return;
        }
        {
            let _decide = lock(&self.decide);
            let others = siblings
                .iter()
                .any(|s| !Arc::ptr_eq(s, backend) && !s.is_ejected() && !s.is_removed());
            if backend.is_ejected() || !others {
                return;
            }
            backend.set_ejected(true);
        }
        let reason = format!("{failures} consecutive failures, last: {reason}");
        tracing::warn!(backend = %backend.id, app = %backend.app, version = %backend.version,
            %reason, eject_for = ?self.eject_time, "ejecting backend");
        let _ = self.events.send(PassiveEvent::Ejected {
            backend_id: backend.id.to_string(),
            app: backend.app.to_string(),
            version: backend.version.to_string(),
            reason,
        });
        let backend = backend.clone();
        let events = self.events.clone();
        let eject_time = self.eject_time;
        tokio::spawn(async move {
            tokio::time::sleep(eject_time).await;
            backend.set_ejected(false);
            tracing::info!(backend = %backend.id, "restoring ejected backend");
            let _ = events.send(PassiveEvent::Restored {
                backend_id: backend.id.to_string(),
                app: backend.app.to_string(),
                version: backend.version.to_string(),
            });
        });
    }
}
