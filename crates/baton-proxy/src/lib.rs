//! baton-proxy (to be written).
