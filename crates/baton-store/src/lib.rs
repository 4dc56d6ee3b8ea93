//! baton-store (to be written).
