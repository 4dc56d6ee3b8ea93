//! baton-health (to be written).
