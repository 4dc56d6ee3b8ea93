//! Errors of the metrics crate (only decoding can fail; recording never does).

/// What went wrong while decoding metrics data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    /// A serialized histogram names a bucket this build does not have.
    #[error(
        "histogram bucket index {index} is out of range (this build has {buckets} buckets); \
         the data was produced by an incompatible baton version, re-collect it with this one"
    )]
    BucketOutOfRange {
        /// The index found in the data.
        index: usize,
        /// How many buckets this build has.
        buckets: usize,
    },
}
