//! baton-api (to be written).
