//! The crate's one error type: what went wrong, for which names, and what to do.

use std::path::PathBuf;

/// Everything `baton-acme` can fail with. Messages name the input or the hosts and say
/// how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// A setting is wrong (checked by `Acme::start` before anything else happens).
    #[error("ACME settings: {what}; {fix}")]
    Settings { what: String, fix: String },

    /// A host name that cannot be put in a certificate.
    #[error("ACME: {name:?} is not a valid host name for a certificate: {reason}")]
    InvalidName { name: String, reason: String },

    /// The extra CA roots file could not be read or holds no certificate.
    #[error("ACME: cannot use the CA roots file {path}: {reason}; give a PEM file with the CA certificate(s) that sign the ACME directory's TLS certificate")]
    CaRoots { path: PathBuf, reason: String },

    /// baton's store failed while reading or writing ACME data.
    #[error("ACME: the store failed while {what}: {source}")]
    Store {
        what: String,
        #[source]
        source: baton_store::StoreError,
    },

    /// The ACME directory could not be reached or refused the account.
    #[error("ACME: the directory {url} is unreachable or refused us: {reason}; certificates for {names} cannot be issued or renewed until it answers (stored certificates keep being served). Fix: check the directory URL and that this host can reach it (DNS, firewall, outgoing proxy)", names = .names.join(", "))]
    Directory {
        url: String,
        names: Vec<String>,
        reason: String,
    },

    /// An order failed at the CA.
    #[error("ACME: the order for {names} failed: {reason}", names = .names.join(", "))]
    Order { names: Vec<String>, reason: String },

    /// An issued certificate could not be used (bad PEM, unsupported key).
    #[error("ACME: the certificate for {names} cannot be used: {reason}", names = .names.join(", "))]
    BadCertificate { names: Vec<String>, reason: String },

    /// On-demand issuance is not configured, so hosts not in the config get no certificate.
    #[error(
        "ACME: no certificate for {host:?}: it is not in the config and on-demand issuance is off"
    )]
    OnDemandOff { host: String },

    /// The allow rule said no.
    #[error("ACME: on-demand issuance refused for {host:?}: {why}")]
    NotAllowed { host: String, why: String },

    /// A recent order for this host failed; the next one waits for its back-off.
    #[error("ACME: no certificate for {host:?} yet: the last order failed ({error}); next attempt after {retry_at}")]
    RecentFailure {
        host: String,
        error: String,
        retry_at: String,
    },

    /// The ACME service is shutting down.
    #[error("ACME: shutting down")]
    Shutdown,
}

impl AcmeError {
    pub(crate) fn settings(what: impl Into<String>, fix: impl Into<String>) -> AcmeError {
        AcmeError::Settings {
            what: what.into(),
            fix: fix.into(),
        }
    }

    pub(crate) fn store(what: impl Into<String>, source: baton_store::StoreError) -> AcmeError {
        AcmeError::Store {
            what: what.into(),
            source,
        }
    }
}

/// An error and its sources on one line ("a: b: c"): hyper and rustls put the useful part
/// (connection refused, unknown issuer) in the source chain.
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = e.source();
    }
    out
}
