//! `baton serve`: open the store (refusing a second server), bind the proxy listeners,
//! recover and publish the stored routes, then accept traffic and admin requests until
//! SIGINT/SIGTERM. `baton upgrade` (or SIGUSR2) hands the listeners and the apps over to
//! the binary now at baton's path (see `upgrade.rs`); this process then drains and exits.

use crate::reload::ProxyListeners;
use crate::upgrade::{self, Inherited};
use crate::Failure;
use baton_api::{
    Hooks, ReloadFailed, ReloadHook, ReloadReport, ReloadRequest, UpgradeDone, UpgradeFailed,
    UpgradeHook, UpgradeRequest,
};
use baton_config::Config;
use baton_controller::Controller;
use baton_metrics::MetricsRegistry;
use baton_proxy::{Algorithm, Compression, Proxy, ProxyConfig, Scheme};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// How long a new process (upgrade) waits for the old one to release the store.
const STORE_HANDOVER_WAIT: Duration = Duration::from_secs(30);

pub fn proxy_config(config: &Config) -> ProxyConfig {
    let p = &config.proxy;
    // Passive ejection uses the strictest app setting (the proxy has one setting).
    let eject = config.apps.values().map(|a| &a.health);
    ProxyConfig {
        connect_timeout: p.connect_timeout.get(),
        upstream_header_timeout: p.upstream_header_timeout.get(),
        client_header_timeout: p.client_header_timeout.get(),
        client_idle_timeout: p.client_idle_timeout.get(),
        max_header_bytes: p.max_header_bytes,
        max_request_body: p.max_request_body_bytes(),
        request_buffering: p.request_buffering_bytes(),
        body_read_timeout: p.body_read_timeout.get(),
        trusted_proxies: p.trusted_proxies.clone(),
        eject_after: eject.clone().map(|h| h.eject_after).min().unwrap_or(5),
        eject_time: eject.map(|h| h.eject_time.get()).max().unwrap_or_default(),
        compression: p.compression.as_ref().map(|c| Arc::new(compression(c))),
        https_redirect: p
            .tls
            .redirect_http
            .then(|| p.tls_listen.first().map(|a| a.port()))
            .flatten(),
        hsts: p
            .tls
            .hsts_header()
            .and_then(|v| http::HeaderValue::from_str(&v).ok()),
        ..ProxyConfig::default()
    }
}

/// `[proxy.compression]` as the proxy takes it (validation has refused unknown names).
fn compression(c: &baton_config::CompressionSection) -> Compression {
    let default = Compression::default();
    Compression {
        algorithms: c
            .algorithms
            .iter()
            .filter_map(|a| Algorithm::from_name(a))
            .collect(),
        min_size: c.min_size_bytes(),
        types: c.types.as_ref().map_or(default.types, |t| {
            t.iter().map(|t| t.to_ascii_lowercase()).collect()
        }),
        level: c.level,
    }
}

pub fn load_config(path: &Path) -> Result<Config, Failure> {
    let cfg = baton_config::load(path).map_err(|e| Failure::usage(e.to_string()))?;
    // What only the apps' runtimes can tell: can they run the hooks at all.
    let issues = baton_controller::check_hooks(&cfg);
    match baton_config::locate_issues(&cfg.path, issues) {
        Some(e) => Err(Failure::usage(e.to_string())),
        None => Ok(cfg),
    }
}

/// What `run`'s loop carries out, one at a time: from the admin API (with a reply) or
/// from a signal (without).
enum Call {
    Upgrade(
        UpgradeRequest,
        Option<oneshot::Sender<Result<UpgradeDone, UpgradeFailed>>>,
    ),
    Reload(
        ReloadRequest,
        Option<oneshot::Sender<Result<ReloadReport, ReloadFailed>>>,
    ),
}

pub async fn run(
    config_path: &Path,
    stop_instances: bool,
    mut inherited: Option<Inherited>,
) -> Result<(), Failure> {
    let config = load_config(config_path)?;
    // Installed first: the default action of SIGUSR2 and SIGHUP would end the process.
    let install = |kind: tokio::signal::unix::SignalKind, name: &str| {
        tokio::signal::unix::signal(kind)
            .map_err(|e| Failure::failed(format!("cannot install the {name} handler ({e})")))
    };
    let mut usr2 = install(tokio::signal::unix::SignalKind::user_defined2(), "SIGUSR2")?;
    let mut hup = install(tokio::signal::unix::SignalKind::hangup(), "SIGHUP")?;
    let (stop_tx, mut stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = stop_tx.send(true);
    });
    let (calls_tx, mut calls) = mpsc::channel::<Call>(1);
    let upgrading = Arc::new(AtomicBool::new(false));
    let hooks = Hooks {
        upgrade: Some(upgrade_hook(calls_tx.clone(), upgrading.clone())),
        reload: Some(reload_hook(calls_tx)),
    };
    let state = match take_lease(&config, stop_instances, &mut stop_rx).await? {
        Lease::Local => None,
        Lease::Held(state) => Some(state),
        Lease::Stopped => return Ok(()),
    };
    let mut lost = state.as_ref().map(|s| s.lost());
    let running = start_with(&config, inherited.as_mut(), hooks, state.clone()).await?;
    if let Some(i) = inherited.as_mut() {
        i.report_ready();
        tracing::info!(
            pid = std::process::id(),
            "took over from the previous baton process"
        );
    }
    crate::systemd::serving(inherited.is_some(), &serving_status(&running));
    crate::purge::spawn();
    loop {
        let call = tokio::select! {
            _ = stop_rx.wait_for(|s| *s) => {
                crate::systemd::stopping();
                running.shutdown(stop_instances).await;
                if let Some(state) = &state {
                    state.release().await;
                }
                return Ok(());
            }
            why = lease_lost(&mut lost) => {
                // Another controller acts now: stop acting at once (each app's step ends,
                // and its record cannot be written any more), then stop serving. Under a
                // supervisor (Swarm, systemd) the restarted process stands by.
                crate::systemd::stopping();
                if let Err(error) = running.controller.suspend().await {
                    tracing::warn!(%error, "could not pause the controller before stopping");
                }
                running.shutdown(false).await;
                return Err(Failure::failed(format!(
                    "this controller lost the controller lease ({why}); another controller \
                     acts now. Start it again to stand by."
                )));
            }
            Some(_) = usr2.recv() => {
                if upgrading.swap(true, Ordering::SeqCst) {
                    tracing::warn!("SIGUSR2 ignored: an upgrade is already in progress");
                    continue;
                }
                tracing::info!("SIGUSR2: upgrading");
                Call::Upgrade(UpgradeRequest::default(), None)
            }
            Some(_) = hup.recv() => {
                tracing::info!("SIGHUP: reloading {}", config_path.display());
                Call::Reload(ReloadRequest::default(), None)
            }
            Some(call) = calls.recv() => call,
        };
        match call {
            Call::Upgrade(req, reply) => {
                crate::systemd::status("upgrading: starting the new baton");
                let outcome = running.upgrade(&req).await;
                let done = outcome.as_ref().ok().map(|d| d.new_pid);
                if done.is_none() {
                    crate::systemd::status(&format!(
                        "upgrade failed; {}",
                        serving_status(&running)
                    ));
                }
                if let Some(reply) = reply {
                    let _ = reply.send(outcome);
                }
                if let Some(new_pid) = done {
                    running.hand_off(new_pid).await;
                    return Ok(());
                }
                upgrading.store(false, Ordering::SeqCst);
            }
            Call::Reload(req, reply) => {
                let outcome = crate::reload::apply(&running, config_path, req.dry_run).await;
                match &outcome {
                    Ok(r) if !r.dry_run => {
                        tracing::info!(applied = r.applied, "reload done:\n{}", r.diff)
                    }
                    Ok(_) => {}
                    Err(f) => tracing::error!(status = f.status, "reload refused: {}", f.error),
                }
                if let Some(reply) = reply {
                    let _ = reply.send(outcome);
                }
            }
        }
    }
}

/// `STATUS=` for systemd: what is served where.
fn serving_status(running: &Running) -> String {
    let http = running.proxy_addrs.iter().map(|a| format!("http://{a}"));
    let https = running.tls_addrs.iter().map(|a| format!("https://{a}"));
    let addrs: Vec<String> = http.chain(https).collect();
    format!("serving on {}", addrs.join(", "))
}

/// The admin API's `POST /v1/reload`: carried out by `run`'s loop, after any upgrade
/// or reload before it.
fn reload_hook(calls: mpsc::Sender<Call>) -> ReloadHook {
    Arc::new(move |req| {
        let calls = calls.clone();
        Box::pin(async move {
            let gone = || ReloadFailed {
                status: 503,
                error: "baton is shutting down or handing over to a new process".into(),
            };
            let (reply, answer) = oneshot::channel();
            if calls.send(Call::Reload(req, Some(reply))).await.is_err() {
                return Err(gone());
            }
            answer.await.unwrap_or_else(|_| Err(gone()))
        })
    })
}

/// The admin API's `POST /v1/upgrade`: one upgrade at a time, carried out by `run`'s loop.
fn upgrade_hook(calls: mpsc::Sender<Call>, upgrading: Arc<AtomicBool>) -> UpgradeHook {
    Arc::new(move |req| {
        let calls = calls.clone();
        let upgrading = upgrading.clone();
        Box::pin(async move {
            let busy = |error: &str| UpgradeFailed {
                status: 409,
                error: error.to_string(),
                stderr: Vec::new(),
            };
            if upgrading.swap(true, Ordering::SeqCst) {
                return Err(busy(
                    "an upgrade is already in progress; wait for its outcome",
                ));
            }
            let (reply, answer) = oneshot::channel();
            if calls.send(Call::Upgrade(req, Some(reply))).await.is_err() {
                return Err(busy("baton is shutting down"));
            }
            answer
                .await
                .unwrap_or_else(|_| Err(busy("baton is shutting down")))
        })
    })
}

/// A running server: what `serve` and `demo` share.
pub struct Running {
    pub controller: Arc<Controller>,
    /// The HTTP listeners' addresses.
    pub proxy_addrs: Vec<std::net::SocketAddr>,
    /// The HTTPS listeners' addresses.
    pub tls_addrs: Vec<std::net::SocketAddr>,
    /// The certificate files served (a reload replaces them; the watcher follows).
    pub(crate) tls_files: watch::Sender<Arc<crate::tls::LoadedFiles>>,
    /// Automatic certificates, once `[proxy.tls.acme]` is set (at start, or by the
    /// first reload that adds it).
    pub(crate) acme: std::sync::OnceLock<baton_acme::Acme>,
    pub(crate) acme_stop: tokio_util::sync::CancellationToken,
    stop: watch::Sender<bool>,
    /// The admin API.
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The proxy's listeners (a reload adds and removes them) and copies of every
    /// listening socket, for a handover.
    pub(crate) listeners: tokio::sync::Mutex<ProxyListeners>,
    /// Set when the admin socket file belongs to the next process.
    keep_socket: Arc<AtomicBool>,
    access_log: crate::access_log::AccessLogging,
}

pub async fn start(config: &Config) -> Result<Running, Failure> {
    start_with(config, None, Hooks::default(), None).await
}

/// What `serve` holds before it starts: nothing to hold (`[cluster] state = "local"`),
/// the controller lease, or nothing because it was told to stop while standing by.
enum Lease {
    Local,
    Held(Arc<baton_controller::SwarmState>),
    Stopped,
}

/// `[cluster] state = "swarm"`: stands by until this process holds the controller lease
/// (renewed from then on by a task of its own), then brings the store up to date with
/// the records in Swarm's store. A wrong `DOCKER_HOST` fails here, before anything
/// listens.
async fn take_lease(
    config: &Config,
    stop_instances: bool,
    stop: &mut watch::Receiver<bool>,
) -> Result<Lease, Failure> {
    let Some(cluster) = config
        .cluster
        .as_ref()
        .filter(|c| c.state == baton_config::ClusterState::Swarm)
    else {
        return Ok(Lease::Local);
    };
    if stop_instances {
        return Err(Failure::usage(
            "--stop-instances with [cluster] state = \"swarm\": the instances belong to \
             whichever controller holds the lease, and a standby takes them over when this \
             one stops; stopping them would take the app down with this process. Start \
             without --stop-instances (to remove an app's instances, remove the app from \
             the config and `baton reload`, or `docker service rm` them)."
                .to_string(),
        ));
    }
    let state = baton_controller::SwarmState::connect(cluster.state_name(), cluster.lease_ttl())
        .await
        .map_err(|e| Failure::failed(format!("[cluster] state = \"swarm\": {e}")))?;
    let state = Arc::new(state);
    tracing::info!(holder = %state.me(), "waiting for the controller lease");
    tokio::select! {
        _ = stop.wait_for(|s| *s) => return Ok(Lease::Stopped),
        taken = state.acquire() => taken.map_err(|e| {
            Failure::failed(format!("[cluster] state = \"swarm\": {e}"))
        })?,
    }
    tokio::spawn(state.clone().keep());
    let taken = baton_controller::take_swarm_state(&config.store.path, &state).await;
    match taken {
        Ok(apps) => tracing::info!(apps, "records taken from the swarm's store"),
        Err(e) => {
            state.release().await;
            return Err(Failure::failed(format!(
                "[cluster] state = \"swarm\": taking the records from the swarm's store: {e}"
            )));
        }
    }
    Ok(Lease::Held(state))
}

/// Resolves with why once the lease is lost; never without a lease.
async fn lease_lost(lost: &mut Option<watch::Receiver<Option<String>>>) -> String {
    if let Some(rx) = lost {
        if let Ok(why) = rx.wait_for(Option::is_some).await {
            return why.clone().unwrap_or_default();
        }
    }
    std::future::pending().await
}

/// Opens the store; the new process of an upgrade waits (bounded) for the old one to
/// close it.
async fn open_store(config: &Config, handover: bool) -> Result<baton_store::Store, Failure> {
    let deadline = tokio::time::Instant::now() + STORE_HANDOVER_WAIT;
    loop {
        let path = config.store.path.clone();
        let opened = tokio::task::spawn_blocking(move || baton_store::Store::open(&path))
            .await
            .map_err(|e| Failure::failed(format!("opening the store: {e}")))?;
        match opened {
            Ok(store) => return Ok(store),
            Err(baton_store::StoreError::Locked { .. })
                if handover && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(Failure::failed(e.to_string())),
        }
    }
}

/// Starts proxy, controller and admin API. `inherited`: listeners handed over by the
/// previous process (used for the addresses the config still lists; others are bound).
/// `hooks`: what the admin API serves besides the controller (upgrade, reload).
async fn start_with(
    config: &Config,
    inherited: Option<&mut Inherited>,
    hooks: Hooks,
    state: Option<Arc<baton_controller::SwarmState>>,
) -> Result<Running, Failure> {
    let handover = inherited.is_some();
    let (old_proxy, old_admin, old_dashboard, old_cluster) = match inherited {
        Some(i) => (
            std::mem::take(&mut i.proxy),
            i.admin.take(),
            i.dashboard.take(),
            i.cluster.take(),
        ),
        None => (Vec::new(), None, None, None),
    };
    let store = open_store(config, handover).await?;
    let metrics = Arc::new(MetricsRegistry::new());
    let proxy = Proxy::new(proxy_config(config), metrics.clone());
    let access_log = crate::access_log::start(config, &proxy, &metrics)?;
    let tls_files = load_certificates(config, &proxy).await?;
    let listeners = bind_proxy_listeners(config, old_proxy).await?;
    let addrs = |want: Scheme| {
        listeners
            .iter()
            .filter(|(_, s)| *s == want)
            .filter_map(|(l, _)| l.local_addr().ok())
            .collect()
    };
    let (proxy_addrs, tls_addrs) = (addrs(Scheme::Http), addrs(Scheme::Https));
    let controller = Controller::start(config, store, proxy.clone(), metrics, state)
        .await
        .map_err(|e| Failure::failed(e.to_string()))?;
    let controller = Arc::new(controller);
    // Stored ACME certificates are in the proxy before any listener accepts.
    let acme_stop = tokio_util::sync::CancellationToken::new();
    let acme = std::sync::OnceLock::new();
    if let Some(started) = crate::tls::start_acme(config, &proxy, &controller, acme_stop.clone())
        .map_err(Failure::usage)?
    {
        let _ = acme.set(started);
    }
    let token = match &config.admin.token_file {
        Some(f) => Some(read_secret(f, "[admin] token_file")?),
        None => None,
    };
    let (stop, stop_rx) = watch::channel(false);
    let until_stop = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let admin_listener = match old_admin {
        Some(old) => {
            let old = old
                .into_tokio()
                .map_err(|e| Failure::failed(format!("inherited admin listener: {e}")))?;
            if old.is(&config.admin.listen) {
                Some(old)
            } else {
                None
            }
        }
        None => None,
    };
    let admin_listener = match admin_listener {
        Some(l) => l,
        None => baton_api::bind_admin(&config.admin.listen, token.is_some())
            .await
            .map_err(|e| Failure::failed(e.to_string()))?,
    };
    let mut proxy_listeners = ProxyListeners::new(proxy.clone(), stop_rx.clone());
    proxy_listeners
        .copies
        .add_admin(&admin_listener)
        .map_err(|e| Failure::failed(format!("cannot keep a copy of the admin listener ({e})")))?;
    let access = token.map(|t| {
        let d = config.dashboard.clone().unwrap_or_default();
        Arc::new(baton_api::Access::new(
            t,
            d.session_lifetime.get(),
            d.read_only,
        ))
    });
    let api = baton_api::router(controller.clone(), hooks);
    let (api, dashboard) = crate::dashboard::routers(
        config,
        api,
        &controller,
        access.as_ref(),
        until_stop(stop_rx.clone()),
    );
    let mut tasks = Vec::new();
    if let Some(app) = dashboard {
        let task = crate::dashboard::serve_own(
            config,
            old_dashboard,
            app,
            &mut proxy_listeners.copies,
            until_stop(stop_rx.clone()),
        )
        .await?;
        tasks.push(task);
    }
    if let Some(task) = serve_cluster(
        config,
        old_cluster,
        &controller,
        &mut proxy_listeners.copies,
        until_stop(stop_rx.clone()),
    )
    .await?
    {
        tasks.push(task);
    }
    let keep_socket = Arc::new(AtomicBool::new(false));
    let admin = baton_api::serve_admin_on(
        admin_listener,
        access,
        api,
        until_stop(stop_rx.clone()),
        keep_socket.clone(),
    );
    tasks.push(tokio::spawn(async move {
        if let Err(error) = admin.await {
            tracing::error!(%error, "admin API stopped");
        }
    }));
    // Routes are published (Controller::start) before the first accept.
    for (l, scheme) in listeners {
        proxy_listeners.serve(l, scheme).map_err(|e| {
            Failure::failed(format!("cannot keep a copy of a proxy listener ({e})"))
        })?;
    }
    let (tls_watch, tls_rx) = watch::channel(tls_files);
    crate::tls::watch_files(proxy.clone(), tls_rx, stop_rx.clone());
    tracing::info!(proxy = ?config.proxy.listen, tls = ?config.proxy.tls_listen, admin = ?config.admin.listen, pid = std::process::id(), "baton is serving");
    Ok(Running {
        controller,
        proxy_addrs,
        tls_addrs,
        tls_files: tls_watch,
        acme,
        acme_stop,
        stop,
        tasks,
        listeners: tokio::sync::Mutex::new(proxy_listeners),
        keep_socket,
        access_log,
    })
}

/// A secret from a file (`[admin] token_file`, `[cluster] token_file`), trimmed; an
/// empty one is refused (every caller would match it).
pub(crate) fn read_secret(file: &Path, key: &str) -> Result<String, Failure> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure::usage(format!("cannot read {key} {} ({e})", file.display())))?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(Failure::usage(format!(
            "{key} {} is empty: write a secret into it, e.g. `openssl rand -hex 32 > {}`",
            file.display(),
            file.display()
        )));
    }
    Ok(secret.to_string())
}

/// `[cluster] listen`: where proxies on other nodes follow this controller (on the
/// listener handed over by the previous process after an upgrade, else bound now).
async fn serve_cluster(
    config: &Config,
    inherited: Option<std::net::TcpListener>,
    controller: &Arc<Controller>,
    copies: &mut upgrade::Listeners,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Option<tokio::task::JoinHandle<()>>, Failure> {
    let Some(cluster) = &config.cluster else {
        return Ok(None);
    };
    let Some(addr) = cluster.listen else {
        return Ok(None);
    };
    let Some(file) = &cluster.token_file else {
        return Err(Failure::usage("[cluster] needs token_file"));
    };
    let token = read_secret(file, "[cluster] token_file")?;
    let inherited = inherited.filter(|l| l.local_addr().is_ok_and(|a| a == addr));
    let listener = match inherited {
        Some(l) => l
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpListener::from_std(l))
            .map_err(|e| Failure::failed(format!("inherited cluster listener: {e}")))?,
        None => tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            Failure::failed(format!(
                "cannot listen on {addr} for the cluster's proxies ({e}); change [cluster] \
                 listen or stop what uses it"
            ))
        })?,
    };
    copies.add_cluster(&listener).map_err(|e| {
        Failure::failed(format!("cannot keep a copy of the cluster listener ({e})"))
    })?;
    let router = baton_api::cluster::cluster_router(controller.clone(), &token);
    tracing::info!(%addr, "proxies on other nodes follow this controller at {addr}");
    Ok(Some(tokio::spawn(async move {
        if let Err(error) = baton_api::cluster::serve_cluster(listener, router, stop).await {
            tracing::error!(%error, "cluster listener stopped");
        }
    })))
}

/// Reads `[proxy.tls]`'s certificate files into `proxy` (none: nothing to read).
pub(crate) async fn load_certificates(
    config: &Config,
    proxy: &Proxy,
) -> Result<Arc<crate::tls::LoadedFiles>, Failure> {
    let files = crate::tls::TlsFiles::of(config);
    if files.certificates.is_empty() {
        return Ok(Arc::new(crate::tls::LoadedFiles::unread(files)));
    }
    let set = files.clone();
    let (table, print) = tokio::task::spawn_blocking(move || set.load())
        .await
        .map_err(|e| Failure::failed(format!("loading the certificates: {e}")))?
        .map_err(Failure::usage)?;
    files
        .check_overlap(&table, &crate::tls::acme_name_sets(config))
        .map_err(Failure::usage)?;
    proxy.set_certificates(table);
    // The watcher compares with the files as they were read here.
    Ok(Arc::new(crate::tls::LoadedFiles { files, print }))
}

/// The listeners of `[proxy] listen` and `tls_listen`: taken from `inherited` (a
/// handover) where the address matches, bound otherwise.
pub(crate) async fn bind_proxy_listeners(
    config: &Config,
    mut inherited: Vec<std::net::TcpListener>,
) -> Result<Vec<(tokio::net::TcpListener, Scheme)>, Failure> {
    let mut listeners = Vec::new();
    let plain = config.proxy.listen.iter().map(|a| (a, Scheme::Http));
    let tls = config.proxy.tls_listen.iter().map(|a| (a, Scheme::Https));
    for (addr, scheme) in plain.chain(tls) {
        let pos = inherited
            .iter()
            .position(|l| l.local_addr().is_ok_and(|a| a == *addr));
        let l = match pos.map(|p| inherited.swap_remove(p)) {
            Some(l) => l
                .set_nonblocking(true)
                .and_then(|()| tokio::net::TcpListener::from_std(l)),
            None => tokio::net::TcpListener::bind(addr).await,
        };
        let l = l.map_err(|e| {
            let key = if scheme == Scheme::Https {
                "tls_listen"
            } else {
                "listen"
            };
            Failure::failed(format!(
                "cannot listen on {addr} ({e}); change [proxy] {key} or stop what uses it"
            ))
        })?;
        listeners.push((l, scheme));
    }
    for l in inherited {
        tracing::info!(addr = ?l.local_addr().ok(), "inherited proxy listener no longer in [proxy] listen; closing it");
    }
    Ok(listeners)
}

impl Running {
    /// Stop accepting, let in-flight requests finish; optionally stop every instance.
    pub async fn shutdown(self, stop_instances: bool) {
        self.acme_stop.cancel();
        let _ = self.stop.send(true);
        self.listeners.lock().await.join().await;
        for t in self.tasks {
            let _ = t.await;
        }
        self.access_log.close().await;
        if stop_instances {
            self.controller.stop_all().await;
        } else {
            tracing::info!("app instances left running; the next `baton serve` re-adopts them");
        }
    }

    /// Hands the apps and the listeners to a new baton process (see `upgrade.rs`). On
    /// error this process is serving as before.
    async fn upgrade(&self, req: &UpgradeRequest) -> Result<UpgradeDone, UpgradeFailed> {
        let fail = |status, error: String| UpgradeFailed {
            status,
            error,
            stderr: Vec::new(),
        };
        let timeout = match req.timeout.as_deref() {
            Some(t) => t
                .parse::<baton_core::HumanDuration>()
                .map_err(|e| fail(400, format!("upgrade timeout: {e}")))?
                .get(),
            None => upgrade::DEFAULT_TIMEOUT,
        };
        let swarm_state = self.controller.config().cluster.as_ref().map(|c| c.state)
            == Some(baton_config::ClusterState::Swarm);
        if swarm_state {
            return Err(fail(
                409,
                "with [cluster] state = \"swarm\" the controller lease cannot be handed to \
                 another process: restart baton instead (a standby controller takes over at \
                 once when this one stops, and proxies keep serving meanwhile)"
                    .into(),
            ));
        }
        if let Err(e) = self.controller.suspend().await {
            let mut msg =
                format!("cannot pause the controller for the handover ({e}); not upgrading");
            if let Err(e) = self.controller.resume().await {
                msg.push_str(&format!("; resuming failed too ({e}): restart baton"));
            }
            return Err(fail(500, msg));
        }
        let listeners = self.listeners.lock().await;
        match upgrade::start_successor(&listeners.copies, timeout).await {
            Ok(done) => Ok(done),
            Err(mut failed) => {
                if let Err(e) = self.controller.resume().await {
                    failed.error.push_str(&format!(
                        "\nresuming this baton's controller failed too ({e}): the proxy still serves its last routes, but deployments are stopped; restart baton"
                    ));
                    tracing::error!(error = %e, "could not resume the controller after a failed upgrade");
                }
                Err(failed)
            }
        }
    }

    /// After a successful handover: stop accepting, finish open connections, leave the
    /// instances and the admin socket file to the new process.
    async fn hand_off(self, new_pid: u32) {
        tracing::info!(
            new_pid,
            "handed over; finishing open connections, then exiting"
        );
        self.keep_socket.store(true, Ordering::SeqCst);
        // The new process orders and renews from now on.
        self.acme_stop.cancel();
        let _ = self.stop.send(true);
        self.listeners.lock().await.join().await;
        for t in self.tasks {
            let _ = t.await;
        }
        self.access_log.close().await;
        tracing::info!(new_pid, "open connections finished; exiting");
    }
}

pub(crate) async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn proxy_keys_reach_the_data_plane() {
        let toml = "[proxy]\nmax_request_body = \"2MiB\"\nmax_header_bytes = 8192\n\
                    request_buffering = \"64KiB\"\nbody_read_timeout = \"5s\"\n\
                    [apps.web]\ncommand = \"./web {port}\"\n";
        let config = baton_config::parse(toml, Path::new("/srv/baton.toml")).unwrap();
        let p = proxy_config(&config);
        assert_eq!(p.max_request_body, Some(2 << 20));
        assert_eq!(p.max_header_bytes, 8192);
        assert_eq!(p.request_buffering, Some(64 << 10));
        assert_eq!(p.body_read_timeout, Duration::from_secs(5));
        let unset = baton_config::parse(
            "[apps.web]\ncommand = \"./web {port}\"\n",
            Path::new("/srv/baton.toml"),
        )
        .unwrap();
        let unset = proxy_config(&unset);
        assert_eq!(unset.max_request_body, None);
        // The config file's defaults are the proxy's.
        assert_eq!(
            unset.request_buffering,
            Some(baton_proxy::DEFAULT_REQUEST_BUFFERING)
        );
        assert_eq!(
            unset.body_read_timeout,
            ProxyConfig::default().body_read_timeout
        );
        assert_eq!(unset.compression, None);
    }

    #[test]
    fn compression_keys_reach_the_data_plane() {
        let parse = |extra: &str| {
            let toml = format!("[proxy.compression]\n{extra}[apps.web]\ncommand = \"./web\"\n");
            let config = baton_config::parse(&toml, Path::new("/srv/baton.toml")).unwrap();
            proxy_config(&config).compression.unwrap()
        };
        // The table alone: the config file's defaults are the proxy's.
        assert_eq!(*parse(""), Compression::default());
        let c = parse(
            "algorithms = [\"gzip\", \"br\"]\nmin_size = \"2KiB\"\n\
             types = [\"Text/*\"]\nlevel = 9\n",
        );
        assert_eq!(c.algorithms, [Algorithm::Gzip, Algorithm::Brotli]);
        assert_eq!(c.min_size, 2048);
        assert_eq!(c.types, ["text/*"]);
        assert_eq!(c.level, 9);
    }
}
