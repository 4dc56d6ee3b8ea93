//! baton-controller (to be written).
