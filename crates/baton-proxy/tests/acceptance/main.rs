//! Acceptance tests of the data plane with real sockets: real proxy, real backends,
//! real clients. No mocks and no timed assertions.
#![allow(clippy::unwrap_used)]

mod access_log;
mod common;
mod compression;
mod draining;
mod failures;
mod fast_path;
mod http2;
mod publish;
mod selection;
mod shutdown;
mod smuggling;
mod switching;
mod tls;
mod ws_close;
