//! baton-runtime (to be written).
