//! `baton reload` (and SIGHUP): the server re-reads the configuration file it was
//! started with, validates it exactly as at start, and applies the difference without
//! dropping a request. The order makes it all or nothing:
//!
//! 1. the file is loaded and validated (an invalid file: 422, the `file:line` problems);
//! 2. the certificate files are loaded and new `[proxy] listen` / `tls_listen` addresses
//!    are bound (a file that cannot be used, an address that cannot be bound: nothing
//!    changed);
//! 3. the controller checks and applies the apps' changes (`baton-controller`
//!    `reload.rs`; refused with nothing changed while a rollout runs in an app that
//!    changes or goes);
//! 4. the proxy takes its new settings, the new listeners start accepting, and the
//!    removed ones stop accepting while their open connections drain.
//!
//! Also here: the proxy listeners of a running server, and the CLI command.

use crate::client_cmds::Ctx;
use crate::serve::{proxy_config, Running};
use crate::tls::{LoadedFiles, TlsFiles};
use crate::upgrade::Listeners;
use crate::Failure;
use baton_api::client::ClientError;
use baton_api::{ReloadFailed, ReloadReport};
use baton_config::ConfigDiff;
use baton_controller::{ControlError, ReloadOutcome};
use baton_proxy::{Proxy, Scheme};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Re-reads `path` and applies it (or, with `dry_run`, only reports the difference).
pub async fn apply(
    running: &Running,
    path: &Path,
    dry_run: bool,
) -> Result<ReloadReport, ReloadFailed> {
    let new = baton_config::load(path).map_err(|e| fail(422, e.to_string()))?;
    // Hooks the apps' runtimes cannot run are refused as `validate` refuses them.
    if let Some(e) = baton_config::locate_issues(&new.path, baton_controller::check_hooks(&new)) {
        return Err(fail(422, e.to_string()));
    }
    let controller = &running.controller;
    // A `[proxy.tls.acme]` this server does not run yet is started by the reload; what
    // could stop it from starting (its settings, the `ca_roots` file) is checked here,
    // before anything changes.
    let start_acme = match &new.proxy.tls.acme {
        Some(section) if running.acme.get().is_none() => {
            baton_acme::Acme::check(&crate::tls::acme_settings(section))
                .map_err(|e| fail(422, format!("[proxy.tls.acme]: {e}; nothing was changed")))?;
            true
        }
        _ => false,
    };
    if dry_run {
        let outcome = controller.check_reload(&new).await.map_err(control)?;
        return Ok(report(path, true, outcome));
    }
    let diff = baton_config::diff(&controller.config(), &new);
    let mut listeners = running.listeners.lock().await;
    // Certificates are read before anything changes: one that cannot be used refuses
    // the reload. (Read again even when the config is the same: `reload` is also how
    // an operator says "the files changed".)
    let files = TlsFiles::of(&new);
    let (table, loaded) = if files.certificates.is_empty() {
        (None, LoadedFiles::unread(files))
    } else {
        let set = files.clone();
        let loaded = tokio::task::spawn_blocking(move || set.load())
            .await
            .map_err(|e| fail(500, format!("loading the certificates: {e}")))?;
        let (table, print) = loaded.map_err(|e| fail(422, format!("{e}; nothing was changed")))?;
        files
            .check_overlap(&table, &crate::tls::acme_name_sets(&new))
            .map_err(|e| fail(422, format!("{e}; nothing was changed")))?;
        // The watcher compares with the files as they were read here: a file changed
        // from now on is picked up, however soon after this reload.
        (Some(table), LoadedFiles { files, print })
    };
    let mut bound = bind(&diff.listeners_added, Scheme::Http).await?;
    bound.extend(bind(&diff.tls_listeners_added, Scheme::Https).await?);
    // Dropped unused if the controller refuses: nothing changed.
    let mut outcome = controller.reload(&new).await.map_err(control)?;
    // The new set and its certificates together, under the watch value's lock, so the
    // watcher cannot install a table of the set this replaces after them.
    running.tls_files.send_modify(|current| {
        if let Some(table) = table {
            listeners.proxy.set_certificates(table);
        }
        *current = Arc::new(loaded);
    });
    if let Some(acme) = running.acme.get() {
        // The names were checked with the file; an error here is a bug, not input.
        if let Err(e) = acme.set_name_sets(crate::tls::acme_name_sets(&new)) {
            tracing::error!(error = %e, "ACME names not replaced");
        }
    } else if start_acme {
        // Stored certificates are installed before this returns; orders go on in the
        // background. The checks above passed, so what is left to fail is the store
        // (closed during a handover): reported, and tried again by the next reload.
        match crate::tls::start_acme(
            &new,
            &listeners.proxy,
            controller,
            running.acme_stop.clone(),
        ) {
            Ok(Some(acme)) => {
                let _ = running.acme.set(acme);
                tracing::info!("[proxy.tls.acme] added: ACME started");
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "ACME could not be started by the reload");
                outcome.warnings.push(format!(
                    "[proxy.tls.acme] was not started ({e}); `baton reload` again, or `baton upgrade`"
                ));
            }
        }
    }
    if diff.proxy.iter().any(|k| k.takes.is_applied()) {
        listeners.proxy.set_config(proxy_config(&new));
    }
    for (l, scheme) in bound {
        if let Err(e) = listeners.serve(l, scheme) {
            tracing::error!(error = %e, "a new listener could not be served");
        }
    }
    for addr in diff
        .listeners_removed
        .iter()
        .chain(&diff.tls_listeners_removed)
    {
        listeners.close(*addr);
    }
    Ok(report(path, false, outcome))
}

/// Binds every address, or none: on error the ones bound so far are dropped.
async fn bind(
    addrs: &[SocketAddr],
    scheme: Scheme,
) -> Result<Vec<(TcpListener, Scheme)>, ReloadFailed> {
    let key = match scheme {
        Scheme::Http => "listen",
        Scheme::Https => "tls_listen",
    };
    let mut out = Vec::new();
    for addr in addrs {
        let l = TcpListener::bind(addr).await.map_err(|e| {
            fail(
                500,
                format!(
                    "cannot listen on {addr} ({e}): change [proxy] {key} or stop what uses it; \
                     nothing was changed"
                ),
            )
        })?;
        out.push((l, scheme));
    }
    Ok(out)
}

fn report(path: &Path, dry_run: bool, outcome: ReloadOutcome) -> ReloadReport {
    let diff: ConfigDiff = outcome.diff;
    ReloadReport {
        path: path.display().to_string(),
        dry_run,
        applied: !dry_run && diff.applies_anything(),
        not_applied: diff.not_applied(),
        diff,
        stopped: outcome.stopped,
        refused: outcome.refused,
        warnings: outcome.warnings,
    }
}

fn fail(status: u16, error: String) -> ReloadFailed {
    ReloadFailed { status, error }
}

fn control(e: ControlError) -> ReloadFailed {
    fail(e.status_code(), e.to_string())
}

/// The proxy's listening sockets, each served by its own task; a reload adds and
/// removes them.
pub struct ProxyListeners {
    pub proxy: Proxy,
    /// Set when the whole server stops.
    global: watch::Receiver<bool>,
    serving: BTreeMap<SocketAddr, Serving>,
    /// Listeners removed by a reload, still finishing their open connections.
    closing: Vec<JoinHandle<()>>,
    /// Copies of every listening socket (the admin one too), for `baton upgrade`.
    pub copies: Listeners,
}

struct Serving {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

// === impl ProxyListeners ===

impl ProxyListeners {
    pub fn new(proxy: Proxy, global: watch::Receiver<bool>) -> Self {
        ProxyListeners {
            proxy,
            global,
            serving: BTreeMap::new(),
            closing: Vec::new(),
            copies: Listeners::default(),
        }
    }

    /// Starts accepting on `l` (routes must be published already).
    pub fn serve(&mut self, l: TcpListener, scheme: Scheme) -> std::io::Result<()> {
        let addr = l.local_addr()?;
        self.copies.add_proxy(&l)?;
        let (stop, mut own) = watch::channel(false);
        let mut global = self.global.clone();
        let proxy = self.proxy.clone();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                tokio::select! {
                    _ = global.wait_for(|s| *s) => {}
                    _ = own.wait_for(|s| *s) => {}
                }
            };
            if let Err(error) = proxy.serve_scheme(l, scheme, shutdown).await {
                tracing::error!(%error, %addr, "proxy listener stopped");
            }
        });
        self.serving.insert(addr, Serving { stop, task });
        tracing::info!(%addr, ?scheme, "proxy listening");
        Ok(())
    }

    /// Stops accepting on `addr` (new connections are refused); open connections finish
    /// as at shutdown.
    pub fn close(&mut self, addr: SocketAddr) {
        self.copies.remove_proxy(addr);
        if let Some(s) = self.serving.remove(&addr) {
            let _ = s.stop.send(true);
            self.closing.push(s.task);
            tracing::info!(%addr, "proxy listener removed; open connections drain");
        }
    }

    /// Waits for every listener task (after the server's stop was sent).
    pub async fn join(&mut self) {
        let serving = std::mem::take(&mut self.serving);
        for (_, s) in serving {
            let _ = s.task.await;
        }
        for t in std::mem::take(&mut self.closing) {
            let _ = t.await;
        }
    }
}

/// `baton reload [--dry-run]`: exit 2 for an invalid file (with its `file:line`
/// problems), 1 when refused.
pub async fn command(ctx: &Ctx, dry_run: bool) -> Result<(), Failure> {
    let report = match ctx.client().reload(dry_run).await {
        Ok(r) => r,
        Err(ClientError::Api {
            status: 422,
            message,
        }) => return Err(Failure::usage(message)),
        Err(e) => return Err(Failure::failed(e.to_string())),
    };
    ctx.print(&report, human);
    match (&report.refused, report.dry_run) {
        (Some(why), true) => Err(Failure::failed(format!(
            "applying it would be refused: {why}"
        ))),
        _ => Ok(()),
    }
}

fn human(r: &ReloadReport) -> String {
    let mut out = format!("{}{}:\n", r.path, if r.dry_run { " (dry run)" } else { "" });
    out.push_str(&r.diff.to_string());
    for (app, ids) in &r.stopped {
        let what = if ids.is_empty() {
            "no instances".to_string()
        } else {
            ids.join(", ")
        };
        out.push_str(&format!("removed {app}: stopped {what}\n"));
    }
    if !r.not_applied.is_empty() {
        out.push_str(&format!(
            "not applied (each needs `baton upgrade` or a restart): {}\n",
            r.not_applied.join(", ")
        ));
    }
    for w in &r.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    let verdict = match (r.dry_run, r.applied) {
        (true, _) => "dry run: nothing was changed",
        (false, true) => "applied",
        (false, false) => "nothing to apply",
    };
    out.push_str(verdict);
    out.push('\n');
    out
}
