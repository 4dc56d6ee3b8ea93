//! Ordering for one name set, shared by the loop and on-demand callers: the account
//! (loaded or created once), the order, storing and installing the result, and the
//! bookkeeping of success or failure.

use super::{allowed, normalize_host, Shared};
use crate::cert::{Loaded, StoredCert};
use crate::error::{chain, AcmeError};
use crate::issue;
use crate::persist;
use crate::settings::set_key;
use instant_acme::{Account, AccountCredentials, NewAccount};
use rustls::sign::CertifiedKey;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::rfc3339;
use super::state::Entry;

/// The longest one order may take, all polling included; a CA that hangs fails the order
/// instead of stalling the loop.
const ORDER_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest loading or creating the account may take.
const ACCOUNT_TIMEOUT: Duration = Duration::from_secs(60);

/// On-demand issuance for `host` (see `Acme::on_demand`).
pub(super) async fn on_demand(
    shared: &Arc<Shared>,
    host: &str,
) -> Result<Arc<CertifiedKey>, AcmeError> {
    if shared.shutdown.is_cancelled() {
        return Err(AcmeError::Shutdown);
    }
    let host = normalize_host(host)?;
    if let Some(cert) = shared.served(&host) {
        return Ok(cert);
    }
    allowed(shared, &host).await?;
    let lock = shared.lock_for(&host);
    let _order = lock.lock().await;
    // Another caller may have issued it (or failed) while this one waited.
    if let Some(cert) = shared.served(&host) {
        return Ok(cert);
    }
    if let Some(err) = recent_failure(shared, &host) {
        return Err(err);
    }
    {
        let mut state = shared.lock_state();
        let entry = state
            .entries
            .entry(host.clone())
            .or_insert_with(|| Entry::new(vec![host.clone()], SystemTime::now()));
        entry.on_demand = true;
    }
    order_for(shared, &host).await
}

fn recent_failure(shared: &Shared, host: &str) -> Option<AcmeError> {
    let state = shared.lock_state();
    let entry = state.entries.get(host)?;
    let error = entry.last_error.clone()?;
    (entry.next_attempt > SystemTime::now()).then(|| AcmeError::RecentFailure {
        host: host.to_string(),
        error,
        retry_at: rfc3339(entry.next_attempt),
    })
}

/// Orders the certificate of the name set `key`, then stores and installs it. The caller
/// holds the set's lock. Success and failure are recorded on the entry and logged.
pub(super) async fn order_for(shared: &Shared, key: &str) -> Result<Arc<CertifiedKey>, AcmeError> {
    let Some((names, on_demand)) = ({
        let state = shared.lock_state();
        state
            .entries
            .get(key)
            .map(|e| (e.names.clone(), e.on_demand && !e.configured))
    }) else {
        return Err(AcmeError::Shutdown);
    };
    match issue_and_store(shared, &names, on_demand).await {
        Ok(cert) => Ok(cert),
        Err(err) => {
            let text = err.to_string();
            if text.contains("urn:ietf:params:acme:error:accountDoesNotExist") {
                forget_account(shared).await;
            }
            let mut state = shared.lock_state();
            if let Some(entry) = state.entries.get_mut(key) {
                entry.failed(text.clone(), &shared.settings, SystemTime::now());
                tracing::warn!(
                    names = %names.join(","),
                    failures = entry.failures,
                    next_attempt = %rfc3339(entry.next_attempt),
                    error = %text,
                    "ACME order failed; stored certificates keep being served"
                );
            }
            Err(err)
        }
    }
}

async fn issue_and_store(
    shared: &Shared,
    names: &[String],
    on_demand: bool,
) -> Result<Arc<CertifiedKey>, AcmeError> {
    let account = account(shared, names).await?;
    tracing::info!(names = %names.join(","), challenge = ?shared.settings.challenge, "ACME order started");
    let order = issue::order(
        &account,
        names,
        shared.settings.challenge,
        &shared.challenges,
    );
    let (chain_pem, key_pem) = match tokio::time::timeout(ORDER_TIMEOUT, order).await {
        Ok(Ok(issued)) => issued,
        Ok(Err(reason)) => return Err(order_error(names, reason)),
        Err(_) => {
            let reason = format!("the CA did not finish in {}s", ORDER_TIMEOUT.as_secs());
            return Err(order_error(names, reason));
        }
    };
    let stored = StoredCert {
        names: names.to_vec(),
        chain_pem,
        key_pem,
        on_demand,
    };
    let loaded = stored.load().map_err(|reason| AcmeError::BadCertificate {
        names: names.to_vec(),
        reason,
    })?;
    // Serve it even if it cannot be stored: it is valid; the store error is shown.
    shared.install(names, &loaded);
    let key = loaded.key.clone();
    let store_error = save(shared, stored).await;
    record_success(shared, names, loaded, store_error);
    Ok(key)
}

/// Stores an issued certificate; the error text if that failed.
async fn save(shared: &Shared, stored: StoredCert) -> Option<String> {
    let store = shared.store.clone();
    match tokio::task::spawn_blocking(move || persist::save_cert(&store, &stored)).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(e) => Some(format!("storing the certificate panicked: {e}")),
    }
}

fn record_success(shared: &Shared, names: &[String], loaded: Loaded, store_error: Option<String>) {
    let joined = names.join(",");
    let not_after = rfc3339(loaded.not_after);
    let mut state = shared.lock_state();
    let Some(entry) = state.entries.get_mut(&set_key(names)) else {
        return;
    };
    entry.succeeded(loaded, &shared.settings, SystemTime::now());
    if let Some(err) = store_error {
        tracing::error!(names = %joined, error = %err, "issued certificate not stored; it is served, and ordered again after a restart");
        entry.last_error = Some(err);
    }
    tracing::info!(
        names = %joined,
        %not_after,
        next_renewal = %rfc3339(entry.next_attempt),
        "ACME certificate issued"
    );
}

fn order_error(names: &[String], reason: String) -> AcmeError {
    AcmeError::Order {
        names: names.to_vec(),
        reason,
    }
}

/// The CA no longer knows our account (a test CA restarted, an account deactivated):
/// drop it, here and in the store, so the next order creates a new one.
async fn forget_account(shared: &Shared) {
    shared.account.lock().await.take();
    let store = shared.store.clone();
    let directory = shared.settings.directory.clone();
    let dir = directory.clone();
    let removed = tokio::task::spawn_blocking(move || persist::forget_account(&store, &dir)).await;
    tracing::warn!(directory = %directory, removed = ?removed.map(|r| r.is_ok()), "the CA does not know our ACME account; a new one is created for the next order");
}

/// The account for the directory: cached; else loaded from the store; else created at
/// the CA and stored. Errors name the directory, the names waiting and the fix.
async fn account(shared: &Shared, names: &[String]) -> Result<Account, AcmeError> {
    let mut cached = shared.account.lock().await;
    if let Some(account) = cached.as_ref() {
        return Ok(account.clone());
    }
    let directory_error = |reason: String| AcmeError::Directory {
        url: shared.settings.directory.clone(),
        names: names.to_vec(),
        reason,
    };
    let store = shared.store.clone();
    let dir = shared.settings.directory.clone();
    let stored = tokio::task::spawn_blocking(move || persist::load_account(&store, &dir))
        .await
        .map_err(|e| directory_error(format!("reading the account panicked: {e}")))??;
    let work = restore_or_create(shared, stored);
    let (account, created) = match tokio::time::timeout(ACCOUNT_TIMEOUT, work).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return Err(directory_error(chain(&e))),
        Err(_) => {
            let secs = ACCOUNT_TIMEOUT.as_secs();
            return Err(directory_error(format!("no answer in {secs}s")));
        }
    };
    if let Some(creds) = created {
        store_account(shared, creds, account.id()).await;
    }
    *cached = Some(account.clone());
    Ok(account)
}

/// The stored account (this fetches the directory), or a new one with its credentials.
async fn restore_or_create(
    shared: &Shared,
    stored: Option<AccountCredentials>,
) -> Result<(Account, Option<AccountCredentials>), instant_acme::Error> {
    let builder = Account::builder_with_http(Box::new(shared.http.clone()));
    if let Some(creds) = stored {
        return builder.from_credentials(creds).await.map(|a| (a, None));
    }
    let contact: Vec<&str> = shared.settings.contact.iter().map(String::as_str).collect();
    let new = NewAccount {
        contact: &contact,
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let directory = shared.settings.directory.clone();
    let (account, creds) = builder.create(&new, directory, None).await?;
    Ok((account, Some(creds)))
}

/// Stores new credentials. A failure is logged, not returned: the account works for this
/// run, and a restart without it creates another.
async fn store_account(shared: &Shared, creds: AccountCredentials, id: &str) {
    let store = shared.store.clone();
    let directory = shared.settings.directory.clone();
    let dir = directory.clone();
    let saved =
        tokio::task::spawn_blocking(move || persist::save_account(&store, &dir, &creds)).await;
    match saved {
        Ok(Ok(())) => tracing::info!(%directory, id, "ACME account created and stored"),
        Ok(Err(e)) => {
            tracing::error!(%directory, id, error = %e, "ACME account created but not stored; a restart creates another")
        }
        Err(e) => tracing::error!(%directory, id, error = %e, "storing the ACME account panicked"),
    }
}
