//! Per-strategy logic (being written).
