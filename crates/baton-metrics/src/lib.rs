//! baton-metrics (to be written).
