//! Active health checks: one probe is an HTTP GET or a TCP connect bounded by a
//! timeout; [`Thresholds`] turns probe results into healthy/unhealthy flips only after N
//! consecutive results; [`spawn_monitor`] runs both on an interval for one instance and
//! reports the flips as [`HealthEvent`]s.

mod monitor;
mod probe;
mod thresholds;

pub use monitor::{spawn_monitor, spawn_monitor_healthy, HealthEvent, MonitorHandle};
pub use probe::{check, probe, ProbeError};
pub use thresholds::{Thresholds, Transition};
