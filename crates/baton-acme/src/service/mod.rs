//! The `Acme` handle: start (stored certificates first, then the loop), reload of the
//! name sets, on-demand issuance, status.

mod order;
mod run;
mod state;

use crate::cert::Loaded;
use crate::challenges::Challenges;
use crate::client::{self, Http};
use crate::error::AcmeError;
use crate::persist;
use crate::plan;
use crate::settings::{normalize_name, normalize_set, set_key, AcmeSettings};
use crate::{CertSink, StoreAccess};
use baton_store::Store;
use rustls::sign::CertifiedKey;
use state::{Entry, State};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The running ACME service. Cheap to clone; every clone is the same service.
#[derive(Clone)]
pub struct Acme {
    shared: Arc<Shared>,
}

/// What one name set looks like from outside (`baton status`, the admin API).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CertStatus {
    /// The names of the certificate.
    pub names: Vec<String>,
    /// Expiry of the certificate served (RFC 3339), if there is one.
    pub not_after: Option<String>,
    /// Why the last order failed; `None` after a success.
    pub last_error: Option<String>,
    /// When the next order is due (RFC 3339); `None` when nothing is looked after.
    pub next_attempt: Option<String>,
    /// Issued on demand (not in the config).
    pub on_demand: bool,
}

pub(crate) struct Shared {
    settings: AcmeSettings,
    store: Arc<dyn StoreAccess>,
    sink: Arc<dyn CertSink>,
    challenges: Challenges,
    http: Http,
    state: Mutex<State>,
    /// Wakes the loop (new name sets).
    wake: Notify,
    /// One lock per name set: an order holds it, so the loop and on-demand callers never
    /// order the same set twice at once.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The account, once loaded or created (lazily: the CA may be down at start).
    account: tokio::sync::Mutex<Option<instant_acme::Account>>,
    shutdown: CancellationToken,
}

// === impl Acme ===

impl Acme {
    /// Checks the settings and name sets, installs every stored certificate through `sink`
    /// before any network I/O, then starts the background issue/renew loop (one order per
    /// name set) and returns at once; the CA may be down. Call from within a tokio runtime.
    /// Reads the store (blocking) before it returns.
    pub fn start(
        settings: AcmeSettings,
        store: Arc<dyn StoreAccess>,
        sink: Arc<dyn CertSink>,
        name_sets: Vec<Vec<String>>,
        shutdown: CancellationToken,
    ) -> Result<(Acme, Challenges), AcmeError> {
        settings.validate()?;
        let sets = normalize_sets(&name_sets)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            AcmeError::settings(
                "Acme::start was called outside a tokio runtime",
                "report this",
            )
        })?;
        let http = client::build(settings.ca_roots.as_deref())?;
        let opened = store.store().ok_or_else(|| AcmeError::StoreClosed {
            what: "reading the stored certificates".into(),
        })?;
        let state = load_state(&opened, &settings)?;
        drop(opened);
        let challenges = Challenges::default();
        let shared = Arc::new(Shared {
            settings,
            store,
            sink,
            challenges: challenges.clone(),
            http,
            state: Mutex::new(state),
            wake: Notify::new(),
            locks: Mutex::new(HashMap::new()),
            account: tokio::sync::Mutex::new(None),
            shutdown,
        });
        shared.install_stored();
        shared.apply_sets(sets);
        runtime.spawn(run::run(shared.clone()));
        Ok((Acme { shared }, challenges))
    }

    /// What [`Acme::start`] checks before it changes anything (the settings, the
    /// `ca_roots` file), without starting: a reload that would start ACME is refused
    /// with nothing changed when this fails.
    pub fn check(settings: &AcmeSettings) -> Result<(), AcmeError> {
        settings.validate()?;
        client::build(settings.ca_roots.as_deref()).map(drop)
    }

    /// Replaces the configured name sets (on reload). Checked first: on error nothing
    /// changes. New sets are ordered at once; a stored certificate for one is installed
    /// first; sets no longer listed are no longer renewed.
    pub fn set_name_sets(&self, name_sets: Vec<Vec<String>>) -> Result<(), AcmeError> {
        let sets = normalize_sets(&name_sets)?;
        self.shared.apply_sets(sets);
        self.shared.wake.notify_one();
        Ok(())
    }

    /// A certificate for `host`, which is not in the config: allowed by the allow list or
    /// the ask URL? then issued once (concurrent callers for the same name share one
    /// order; a recent failure answers at once with that failure).
    pub async fn on_demand(&self, host: &str) -> Result<Arc<CertifiedKey>, AcmeError> {
        order::on_demand(&self.shared, host).await
    }

    /// Every name set looked after, with its certificate's expiry and its last error.
    pub fn status(&self) -> Vec<CertStatus> {
        let state = self.shared.lock_state();
        state
            .entries
            .values()
            .filter(|e| e.configured || e.on_demand)
            .map(|e| CertStatus {
                names: e.names.clone(),
                not_after: e.cert.as_ref().map(|c| rfc3339(c.not_after)),
                last_error: e.last_error.clone(),
                next_attempt: e.looked_after().then(|| rfc3339(e.next_attempt)),
                on_demand: e.on_demand && !e.configured,
            })
            .collect()
    }
}

impl Shared {
    /// The store for one read or write (see [`StoreAccess`]).
    pub(crate) fn store(&self, what: &str) -> Result<Arc<Store>, AcmeError> {
        self.store
            .store()
            .ok_or_else(|| AcmeError::StoreClosed { what: what.into() })
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn normalize_sets(name_sets: &[Vec<String>]) -> Result<Vec<Vec<String>>, AcmeError> {
    name_sets.iter().map(|s| normalize_set(s)).collect()
}

/// The stored certificates as entries (none configured yet). An unusable one is logged and
/// left out, so it is ordered again.
fn load_state(store: &Store, settings: &AcmeSettings) -> Result<State, AcmeError> {
    let now = SystemTime::now();
    let mut state = State::default();
    for (key, stored) in persist::load_certs(store)? {
        let loaded = stored.and_then(|s| s.load().map(|l| (s, l)));
        let (stored, loaded) = match loaded {
            Ok(pair) => pair,
            Err(why) => {
                tracing::warn!(names = %key, %why, "stored certificate unusable; it will be ordered again");
                continue;
            }
        };
        let mut entry = Entry::new(stored.names, now);
        entry.on_demand = stored.on_demand && settings.on_demand.is_some();
        entry.cert = Some(loaded);
        entry.next_attempt = entry.renew_at(settings, now);
        state.entries.insert(key, entry);
    }
    Ok(state)
}

// === impl Shared ===

impl Shared {
    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_for(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        locks.entry(key.to_string()).or_default().clone()
    }

    /// Installs the stored certificates that are to be served (configured sets are
    /// installed by `apply_sets`; here the on-demand ones).
    fn install_stored(&self) {
        let state = self.lock_state();
        for e in state.entries.values().filter(|e| e.on_demand) {
            if let Some(cert) = &e.cert {
                self.install(&e.names, cert);
            }
        }
    }

    fn install(&self, names: &[String], cert: &Loaded) {
        tracing::info!(
            names = %names.join(","),
            not_after = %rfc3339(cert.not_after),
            "certificate installed"
        );
        self.sink.install(names, cert.key.clone());
    }

    /// Marks exactly `sets` as configured, installing the stored certificate of a set that
    /// was not configured before.
    fn apply_sets(&self, sets: Vec<Vec<String>>) {
        let now = SystemTime::now();
        let mut state = self.lock_state();
        let wanted: HashMap<String, Vec<String>> =
            sets.into_iter().map(|s| (set_key(&s), s)).collect();
        for (key, entry) in state.entries.iter_mut() {
            let configured = wanted.contains_key(key);
            if configured && !entry.configured {
                if let Some(cert) = &entry.cert {
                    self.install(&entry.names, cert);
                }
            }
            entry.configured = configured;
        }
        for (key, names) in wanted {
            state.entries.entry(key).or_insert_with(|| {
                let mut e = Entry::new(names, now);
                e.configured = true;
                e
            });
        }
    }

    /// The certificate served for `host`: its own (on-demand) one, else one of a
    /// configured set that names it.
    fn served(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        let state = self.lock_state();
        let own = state.entries.get(host).and_then(|e| e.cert.as_ref());
        let configured = || {
            state
                .entries
                .values()
                .filter(|e| e.configured && e.names.iter().any(|n| n == host))
                .find_map(|e| e.cert.as_ref())
        };
        own.or_else(configured).map(|c| c.key.clone())
    }
}

/// Whether an on-demand `host` may have a certificate: the allow list, then the ask URL.
async fn allowed(shared: &Shared, host: &str) -> Result<(), AcmeError> {
    let Some(od) = &shared.settings.on_demand else {
        return Err(AcmeError::OnDemandOff {
            host: host.to_string(),
        });
    };
    if plan::allow_list_matches(host, &od.allow) {
        return Ok(());
    }
    let refuse = |why: String| AcmeError::NotAllowed {
        host: host.to_string(),
        why,
    };
    let Some(url) = &od.ask else {
        return Err(refuse("it matches no entry of the allow list".into()));
    };
    match client::ask(&shared.http, url, host).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(refuse(format!("the ask URL {url} did not answer 200"))),
        Err(e) => Err(refuse(format!("the ask URL could not be asked: {e}"))),
    }
}

fn normalize_host(host: &str) -> Result<String, AcmeError> {
    normalize_name(host)
}
