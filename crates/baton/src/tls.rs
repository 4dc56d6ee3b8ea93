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
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsFiles {
    pub certificates: Vec<CertificateFiles>,
    pub default_host: Option<String>,
}

impl TlsFiles {
    pub fn of(config: &Config) -> TlsFiles {
        let t = &config.proxy.tls;
        TlsFiles {
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

    /// Loads every file (blocking reads of small files).
    pub fn load(&self) -> Result<CertTable, String> {
        let table = CertTable::load(&self.certificates, self.default_host.as_deref())
            .map_err(|e| format!("[proxy.tls]: {e}"))?;
        warn_expiry(&table);
        Ok(table)
    }

    /// What the files look like now: changes when one is replaced, rewritten or renamed
    /// over (certbot's symlinks are followed).
    fn fingerprint(&self) -> Vec<Option<(u64, u64, SystemTime)>> {
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

/// Watches the configured files for changes until `stop`; `files` follows reloads.
pub fn watch_files(
    proxy: Proxy,
    files: watch::Receiver<Arc<TlsFiles>>,
    mut stop: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let mut current = files.borrow().clone();
        let mut seen = current.fingerprint();
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(WATCH_PERIOD) => {}
            }
            let now = files.borrow().clone();
            if !Arc::ptr_eq(&now, &current) {
                // A reload loaded (and installed) this set itself.
                current = now;
                seen = current.fingerprint();
                continue;
            }
            let print = current.fingerprint();
            if print == seen || current.certificates.is_empty() {
                continue;
            }
            seen = print;
            let set = current.clone();
            match tokio::task::spawn_blocking(move || set.load()).await {
                Ok(Ok(table)) => {
                    tracing::info!("a certificate file changed; certificates reloaded");
                    proxy.set_certificates(table);
                }
                Ok(Err(e)) => tracing::error!(
                    "a certificate file changed but cannot be used; still serving the certificates loaded before: {e}"
                ),
                Err(e) => tracing::error!(error = %e, "loading the certificate files failed"),
            }
        }
    });
}
