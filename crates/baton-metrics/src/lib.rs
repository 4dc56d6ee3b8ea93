//! Per-version request metrics for the baton data plane.
//!
//! The proxy records every finished request into a [`VersionMetrics`] with a handful of
//! relaxed atomic operations (no lock, no allocation). The controller reads them as
//! [`MetricsSnapshot`]s, subtracts two snapshots to get a window ([`MetricsSnapshot::delta`])
//! for canary analysis, and renders the whole [`MetricsRegistry`] as Prometheus text.
//!
//! **Invariant:** nothing reachable from [`VersionMetrics::request_started`] or
//! [`VersionMetrics::request_finished`] takes a lock or allocates.

mod error;
mod histogram;
mod prometheus;
mod registry;
mod version;

pub use error::MetricsError;
pub use histogram::{Histogram, BUCKETS, MAX_TRACKABLE_MICROS};
pub use registry::{AccessLogDrop, MetricsRegistry};
pub use version::{status_class, MetricsSnapshot, VersionMetrics, CLASS_LABELS};
