//! ACME data in baton's store: the account credentials once per directory URL, and one
//! certificate per name set. Each write is one store transaction (fsync'd). Blocking: call
//! from a blocking thread, or at start.

use crate::cert::StoredCert;
use crate::error::AcmeError;
use crate::settings::set_key;
use baton_store::Store;
use instant_acme::AccountCredentials;

/// Blob kind of account credentials, keyed by directory URL.
const ACCOUNT: &str = "acme-account";
/// Blob kind of certificates, keyed by the name set (names joined with ',').
const CERT: &str = "acme-cert";

pub(crate) fn load_account(
    store: &Store,
    directory: &str,
) -> Result<Option<AccountCredentials>, AcmeError> {
    let what = || format!("reading the ACME account for {directory}");
    let Some(bytes) = store
        .get_blob(ACCOUNT, directory)
        .map_err(|e| AcmeError::store(what(), e))?
    else {
        return Ok(None);
    };
    match serde_json::from_slice(&bytes) {
        Ok(creds) => Ok(Some(creds)),
        Err(e) => {
            // A damaged record costs a new account, not the service.
            tracing::warn!(directory, error = %e, "stored ACME account unreadable; creating a new one");
            Ok(None)
        }
    }
}

pub(crate) fn save_account(
    store: &Store,
    directory: &str,
    creds: &AccountCredentials,
) -> Result<(), AcmeError> {
    let what = || format!("storing the ACME account for {directory}");
    let bytes = serde_json::to_vec(creds).map_err(|e| {
        AcmeError::settings(
            format!("{}: cannot encode the account: {e}", what()),
            "report this",
        )
    })?;
    store
        .put_blob(ACCOUNT, directory, &bytes)
        .map_err(|e| AcmeError::store(what(), e))
}

pub(crate) fn forget_account(store: &Store, directory: &str) -> Result<(), AcmeError> {
    store
        .delete_blob(ACCOUNT, directory)
        .map_err(|e| AcmeError::store(format!("removing the ACME account for {directory}"), e))
}

/// A stored certificate by its key, or why it cannot be decoded.
pub(crate) type StoredRow = (String, Result<StoredCert, String>);

/// Every stored certificate; one that cannot be decoded comes back as `Err(why)` with its
/// key, so it is reissued rather than stopping the others.
pub(crate) fn load_certs(store: &Store) -> Result<Vec<StoredRow>, AcmeError> {
    let rows = store
        .blobs(CERT)
        .map_err(|e| AcmeError::store("reading the stored certificates", e))?;
    Ok(rows
        .into_iter()
        .map(|(key, bytes)| {
            let cert =
                serde_json::from_slice(&bytes).map_err(|e| format!("undecodable record: {e}"));
            (key, cert)
        })
        .collect())
}

pub(crate) fn save_cert(store: &Store, cert: &StoredCert) -> Result<(), AcmeError> {
    let key = set_key(&cert.names);
    let what = || format!("storing the certificate for {key}");
    let bytes = serde_json::to_vec(cert).map_err(|e| {
        AcmeError::settings(format!("{}: cannot encode it: {e}", what()), "report this")
    })?;
    store
        .put_blob(CERT, &key, &bytes)
        .map_err(|e| AcmeError::store(what(), e))
}
