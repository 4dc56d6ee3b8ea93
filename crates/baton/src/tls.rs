//! `[proxy.tls]` to the proxy: the certificate files loaded at start (a file that cannot
//! be used stops `serve`, naming it), on `reload` (refused with nothing changed), and
//! whenever a file changes on disk (certbot renewing, a deploy script copying): a
//! watcher looks at each file every [`WATCH_PERIOD`] and loads the whole set anew; a
//! set that cannot be used is logged and the certificates served stay as they were.
//! Connections already open keep the certificate they were opened with.

use baton_config::Config;
use baton_proxy::{CertTable, CertificateFiles, Proxy};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// How often the certificate files are looked at for changes.
pub const WATCH_PERIOD: Duration = Duration::from_secs(2);

/// What the TLS listeners serve, as configured.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TlsFiles {
    pub certificates: Vec<CertificateFiles>,
    pub default_host: Option<String>,
    /// Where each entry is written in the config file, for errors.
    places: baton_config::Places,
}

impl TlsFiles {
    pub fn of(config: &Config) -> TlsFiles {
        let t = &config.proxy.tls;
        TlsFiles {
            places: config.places.clone(),
            certificates: t
                .certificates
                .iter()
                .map(|c| CertificateFiles {
                    cert: c.cert.clone(),
                    key: c.key.clone(),
                    hosts: c.hosts.clone(),
                })
                .collect(),
            default_host: t.default_host.clone(),
        }
    }

    /// Loads every file (blocking reads of small files), with the fingerprint of the
    /// files taken just before they were read (see [`LoadedFiles`]).
    pub fn load(&self) -> Result<(CertTable, Fingerprint), String> {
        let print = self.fingerprint();
        let table = CertTable::load_entries(&self.certificates, self.default_host.as_deref())
            .map_err(|e| self.locate(e))?;
        warn_expiry(&table);
        Ok((table, print))
    }

    /// The error as `baton.toml:LINE:COLUMN: …`, at the key of the entry it is about.
    fn locate(&self, e: baton_proxy::EntryError) -> String {
        use baton_proxy::TlsError as E;
        let Some(i) = e.entry else {
            return self
                .places
                .problem(
                    "proxy.tls.default_host",
                    format!("[proxy.tls]: {}", e.error),
                )
                .to_string();
        };
        let listed_hosts = self
            .certificates
            .get(i)
            .is_some_and(|c| !c.hosts.is_empty());
        let field = match &e.error {
            E::Read { what, .. } => *what,
            E::NoKey { .. } | E::BadKey { .. } | E::KeyMismatch { .. } => "key",
            E::HostNotCovered { .. } | E::Duplicate { .. } if listed_hosts => "hosts",
            _ => "cert",
        };
        self.places
            .problem(
                &format!("proxy.tls.certificates[{i}].{field}"),
                format!("[[proxy.tls.certificates]] #{}: {}", i + 1, e.error),
            )
            .to_string()
    }

    /// A host served by a certificate file and by ACME: refused, naming both and where
    /// the file is configured.
    pub fn check_overlap(
        &self,
        table: &CertTable,
        acme_sets: &[Vec<String>],
    ) -> Result<(), String> {
        check_overlap(table, acme_sets).map_err(|(cert, message)| {
            let entry = self
                .certificates
                .iter()
                .position(|c| Some(&c.cert) == cert.as_ref());
            match entry {
                Some(i) => self
                    .places
                    .problem(&format!("proxy.tls.certificates[{i}]"), message)
                    .to_string(),
                None => message,
            }
        })
    }

    /// What the files look like now: changes when one is replaced, rewritten or renamed
    /// over (certbot's symlinks are followed).
    pub fn fingerprint(&self) -> Fingerprint {
        use std::os::unix::fs::MetadataExt;
        let paths: Vec<&PathBuf> = self
            .certificates
            .iter()
            .flat_map(|c| [&c.cert, &c.key])
            .collect();
        paths
            .into_iter()
            .map(|p| {
                let m = std::fs::metadata(p).ok()?;
                Some((m.ino(), m.len(), m.modified().ok()?))
            })
            .collect()
    }
}

/// Each file's inode, length and modification time (`None`: unreadable), in the order of
/// the set.
pub type Fingerprint = Vec<Option<(u64, u64, SystemTime)>>;

/// A set of files as served, with the fingerprint taken when they were read (before the
/// reads), for the watcher: a file changed after that, however soon, differs from it and
/// is loaded at the watcher's next look. (A fingerprint taken later, when the watcher
/// first sees the set, would already include the change and hide it.)
#[derive(Debug, Clone, Default)]
pub struct LoadedFiles {
    pub files: TlsFiles,
    pub print: Fingerprint,
}

impl LoadedFiles {
    /// A set nothing was read from (no certificate files): nothing to watch.
    pub fn unread(files: TlsFiles) -> LoadedFiles {
        LoadedFiles {
            files,
            print: Vec::new(),
        }
    }
}

/// Logs certificates that are expired or expire within two weeks.
fn warn_expiry(table: &CertTable) {
    let soon = SystemTime::now() + Duration::from_secs(14 * 24 * 3600);
    for c in table.certificates() {
        if c.not_after <= SystemTime::now() {
            tracing::error!(cert = %c.path.display(), names = ?c.names, "this certificate has EXPIRED: clients refuse it; renew it (the file is reloaded when it changes)");
        } else if c.not_after <= soon {
            tracing::warn!(cert = %c.path.display(), names = ?c.names, "this certificate expires within two weeks; renew it");
        }
    }
}

/// Watches the configured files for changes until `stop`; `files` follows reloads. A
/// reload replaces the set and installs its certificates while it holds the watch
/// value's lock (`send_modify`), and the watcher installs a table only while that value
/// is still the set it loaded (checked under the lock): a table from a set a reload
/// replaced is never installed over the reload's.
pub fn watch_files(
    proxy: Proxy,
    files: watch::Receiver<Arc<LoadedFiles>>,
    mut stop: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let mut current = files.borrow().clone();
        let mut seen = current.print.clone();
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(WATCH_PERIOD) => {}
            }
            let now = files.borrow().clone();
            if !Arc::ptr_eq(&now, &current) {
                // A reload loaded (and installed) this set itself; compare with what the
                // files were when it read them.
                current = now;
                seen = current.print.clone();
            }
            if current.files.certificates.is_empty() {
                continue;
            }
            let print = current.files.fingerprint();
            if print == seen {
                continue;
            }
            // Unusable files are not tried again until they change again.
            seen = print;
            let set = current.clone();
            match tokio::task::spawn_blocking(move || set.files.load()).await {
                Ok(Ok((table, print))) => {
                    seen = print;
                    let latest = files.borrow();
                    if Arc::ptr_eq(&latest, &current) {
                        proxy.set_certificates(table);
                        tracing::info!("a certificate file changed; certificates reloaded");
                    }
                }
                Ok(Err(e)) => tracing::error!(
                    "a certificate file changed but cannot be used; still serving the certificates loaded before: {e}"
                ),
                Err(e) => tracing::error!(error = %e, "loading the certificate files failed"),
            }
        }
    });
}

// === ACME ===

/// The hosts of each app with `tls = "acme"`: one certificate (one order) per app.
pub fn acme_name_sets(config: &Config) -> Vec<Vec<String>> {
    config
        .apps
        .values()
        .filter(|a| a.tls == Some(baton_config::AppTls::Acme))
        .map(|a| a.hosts.iter().map(|h| h.to_ascii_lowercase()).collect())
        .collect()
}

/// `[proxy.tls.acme]` as the ACME client's settings.
pub fn acme_settings(section: &baton_config::AcmeSection) -> baton_acme::AcmeSettings {
    let mut s = baton_acme::AcmeSettings::new(section.directory.clone());
    s.contact = section
        .email
        .iter()
        .map(|e| {
            if e.starts_with("mailto:") {
                e.clone()
            } else {
                format!("mailto:{e}")
            }
        })
        .collect();
    s.challenge = match section.challenge.as_str() {
        "tls-alpn-01" => baton_acme::ChallengeKind::TlsAlpn01,
        _ => baton_acme::ChallengeKind::Http01,
    };
    s.ca_roots = section.ca_roots.clone();
    s.renew_before = section.renew_before.get();
    s.retry_min = section.retry_min.get();
    s.retry_max = section.retry_max.get();
    s.on_demand = section.on_demand.as_ref().map(|o| baton_acme::OnDemand {
        allow: o.allow.clone(),
        ask: o.ask.clone(),
    });
    s
}

/// A host served by a certificate file and by ACME: refused, naming both (with the
/// certificate file, when known).
fn check_overlap(
    table: &CertTable,
    acme_sets: &[Vec<String>],
) -> Result<(), (Option<PathBuf>, String)> {
    let files = table.hosts();
    for host in acme_sets.iter().flatten() {
        if files.iter().any(|h| h == host) {
            let cert = table
                .certificates()
                .iter()
                .find(|c| c.names.iter().any(|n| n == host))
                .map(|c| c.path.clone());
            let file = cert.as_ref().map_or_else(
                || "a certificate file".to_string(),
                |p| p.display().to_string(),
            );
            return Err((
                cert,
                format!(
                    "[proxy.tls]: host {host:?} is served by {file} and by ACME (an app with `tls = \"acme\"`): keep one (remove the file, or `tls` from the app)"
                ),
            ));
        }
    }
    Ok(())
}

/// ACME's certificates go to the proxy's SNI table.
struct ProxySink(Proxy);

impl baton_acme::CertSink for ProxySink {
    fn install(&self, names: &[String], cert: Arc<baton_proxy::CertifiedKey>) {
        self.0.install_certificate(names, cert);
    }
}

/// ACME reaches the controller's store, which is closed during a handover.
struct ControllerStore(Arc<baton_controller::Controller>);

impl baton_acme::StoreAccess for ControllerStore {
    fn store(&self) -> Option<Arc<baton_store::Store>> {
        self.0.store()
    }
}

/// The proxy's view of ACME: challenge answers, and on-demand issuance.
struct Responder {
    acme: baton_acme::Acme,
    challenges: baton_acme::Challenges,
    on_demand: bool,
}

/// How long a handshake for a new on-demand name waits for its certificate.
const ON_DEMAND_WAIT: Duration = Duration::from_secs(60);

impl baton_proxy::AcmeResponder for Responder {
    fn http01(&self, token: &str) -> Option<String> {
        self.challenges.http01(token)
    }

    fn tls_alpn01(&self, host: &str) -> Option<Arc<baton_proxy::CertifiedKey>> {
        self.challenges.tls_alpn01(host)
    }

    fn on_demand<'a>(
        &'a self,
        host: &'a str,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Option<Arc<baton_proxy::CertifiedKey>>> + Send + 'a>,
    > {
        Box::pin(async move {
            if !self.on_demand {
                return None;
            }
            // In a task of its own: a client that gives up does not cancel the order,
            // and the next handshake for the name finds the certificate.
            let acme = self.acme.clone();
            let name = host.to_string();
            let order = tokio::spawn(async move { acme.on_demand(&name).await });
            match tokio::time::timeout(ON_DEMAND_WAIT, order).await {
                Ok(Ok(Ok(cert))) => Some(cert),
                Ok(Ok(Err(e))) => {
                    tracing::info!(host, error = %e, "no on-demand certificate");
                    None
                }
                Ok(Err(e)) => {
                    tracing::error!(host, error = %e, "on-demand issuance failed");
                    None
                }
                Err(_) => {
                    tracing::warn!(host, "on-demand issuance still running; this handshake fails, the next one gets the certificate");
                    None
                }
            }
        })
    }
}

/// Starts ACME when `[proxy.tls.acme]` is set: stored certificates are installed in
/// the proxy before this returns (so before the listeners accept), then certificates
/// are ordered and renewed in the background until `stop`.
pub fn start_acme(
    config: &Config,
    proxy: &Proxy,
    controller: &Arc<baton_controller::Controller>,
    stop: tokio_util::sync::CancellationToken,
) -> Result<Option<baton_acme::Acme>, String> {
    let Some(section) = &config.proxy.tls.acme else {
        return Ok(None);
    };
    let settings = acme_settings(section);
    let on_demand = settings.on_demand.is_some();
    let (acme, challenges) = baton_acme::Acme::start(
        settings,
        Arc::new(ControllerStore(controller.clone())),
        Arc::new(ProxySink(proxy.clone())),
        acme_name_sets(config),
        stop,
    )
    .map_err(|e| e.to_string())?;
    proxy.set_acme(Arc::new(Responder {
        acme: acme.clone(),
        challenges,
        on_demand,
    }));
    Ok(Some(acme))
}
