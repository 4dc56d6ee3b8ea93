//! `[apps.X.health]`: how an instance is judged healthy. Pure data; the
//! probing lives in `baton-health`.

use crate::HumanDuration;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSpec {
    /// `"http"` (default) or `"tcp"` (connect only).
    pub kind: ProbeKind,
    /// HTTP path probed.
    pub path: String,
    /// Accepted statuses; empty means any 2xx.
    pub expect_status: Vec<u16>,
    /// `Host` header to send, for apps that validate it.
    pub host: Option<String>,
    pub interval: HumanDuration,
    pub timeout: HumanDuration,
    /// Consecutive successes before an instance counts as healthy.
    pub healthy: u32,
    /// Consecutive failures before a healthy instance counts as unhealthy.
    pub unhealthy: u32,
    /// A new instance that is not healthy by then has failed.
    pub startup_timeout: HumanDuration,
    /// Passive: consecutive 5xx / connection failures seen by the proxy that eject an
    /// instance for `eject_time` (never the last instance of a version). 0 disables.
    pub eject_after: u32,
    pub eject_time: HumanDuration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    Http,
    Tcp,
}

impl Default for HealthSpec {
    fn default() -> Self {
        HealthSpec {
            kind: ProbeKind::Http,
            path: "/".into(),
            expect_status: Vec::new(),
            host: None,
            interval: HumanDuration::from_secs(1),
            timeout: HumanDuration::from_secs(2),
            healthy: 1,
            unhealthy: 3,
            startup_timeout: HumanDuration::from_secs(60),
            eject_after: 5,
            eject_time: HumanDuration::from_secs(30),
        }
    }
}

impl HealthSpec {
    /// Whether an HTTP status counts as a passing probe.
    pub fn accepts(&self, status: u16) -> bool {
        if self.expect_status.is_empty() {
            (200..300).contains(&status)
        } else {
            self.expect_status.contains(&status)
        }
    }
}
