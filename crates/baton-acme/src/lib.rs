//! Automatic certificates (ACME) for baton's TLS listener.
//!
//! [`Acme::start`] installs every stored certificate through a [`CertSink`] (the proxy's
//! SNI table) before it touches the network, then runs one background task that orders
//! what is missing or due, one order per name set at a time, with back-off per name set
//! after failures. The CA being down never takes a stored certificate away: it only shows
//! as an error in the log and in [`Acme::status`].
//!
//! Modules: `settings` (input and its checks), `plan` (pure: due, back-off, allow list),
//! `cert` (stored and served forms, validity), `challenges` (answers shared with the
//! proxy), `issue` (one order), `persist` (the store), `client` (HTTP), `service` (the
//! handle, its state and the loop).

mod cert;
mod challenges;
mod client;
mod error;
mod issue;
mod persist;
pub mod plan;
mod service;
mod settings;

pub use challenges::{Challenges, ACME_TLS_ALPN};
pub use error::AcmeError;
pub use service::{Acme, CertStatus};
pub use settings::{normalize_name, AcmeSettings, ChallengeKind, OnDemand};

use rustls::sign::CertifiedKey;
use std::sync::Arc;

/// Where issued (and stored) certificates go: the proxy's SNI table.
pub trait CertSink: Send + Sync + 'static {
    /// Serve `cert` for each of `names` from now on (replacing an older one).
    fn install(&self, names: &[String], cert: Arc<CertifiedKey>);
}
