//! Canary analysis as pure functions: is the canary worse than stable?
//!
//! The proxy records every request per version ([`baton_metrics::MetricsSnapshot`]); this
//! crate turns two such snapshots into a [`Judgement`] (pass / fail / inconclusive with
//! the figures behind it) and, for A/B experiments, into a [`VariantComparison`]. No I/O,
//! no clock, no randomness: the controller decides when to sample and what to do with a
//! verdict.
//!
//! - [`spec`]: `[apps.X.analysis]` — thresholds, gates, defaults and their validation.
//! - [`judge`]: one verdict from a stable and a canary snapshot.
//! - [`ab`]: per-variant figures and significance for `baton status` during `ab_test`.
//! - [`stats`]: the statistics (Mann–Whitney U, Hodges–Lehmann shift and its confidence
//!   interval, Fisher's exact test, the two-proportion z-test), checked against SciPy
//!   reference values in `tests/reference.rs`.

pub mod ab;
pub mod judge;
pub mod spec;
pub mod stats;

pub use ab::{
    compare_variants, required_sample_size, variant_stats, VariantComparison, VariantStats,
};
pub use judge::{
    judge, judge_versions, CheckOutcome, CheckResult, JudgeVerdict, Judgement, LatencyComparison,
    ProportionComparison,
};
pub use spec::{AnalysisSpec, AnalysisSpecError, KeyPart, Percentile, PromCheck, WebhookSpec};
