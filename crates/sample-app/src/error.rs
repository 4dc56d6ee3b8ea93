//! Errors that stop the sample app from starting or serving.

use std::io;
use std::net::SocketAddr;

/// Why the sample app could not run.
#[derive(Debug, thiserror::Error)]
pub enum SampleAppError {
    /// The listening address could not be bound.
    #[error("cannot listen on {addr}: {source}; pick a free port with --port (0 = any free port)")]
    Bind {
        /// Address asked for.
        addr: SocketAddr,
        /// Underlying error.
        source: io::Error,
    },
    /// SIGTERM/SIGINT handlers could not be installed.
    #[error("cannot install SIGTERM/SIGINT handlers: {0}")]
    Signals(#[source] io::Error),
    /// The async runtime could not start.
    #[error("cannot start the tokio runtime: {0}")]
    Runtime(#[source] io::Error),
    /// Serving failed after start.
    #[error("serving failed: {0}")]
    Serve(#[source] io::Error),
}
