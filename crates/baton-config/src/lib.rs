//! baton-config (to be written).
