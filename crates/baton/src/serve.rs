//! `baton serve`: open the store (refusing a second server), bind the proxy listeners,
//! recover and publish the stored routes, then accept traffic and admin requests until
//! SIGINT/SIGTERM.

use crate::Failure;
use baton_config::Config;
use baton_controller::Controller;
use baton_metrics::MetricsRegistry;
use baton_proxy::{Proxy, ProxyConfig};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::watch;

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
        trusted_proxies: p.trusted_proxies.clone(),
        eject_after: eject.clone().map(|h| h.eject_after).min().unwrap_or(5),
        eject_time: eject.map(|h| h.eject_time.get()).max().unwrap_or_default(),
        ..ProxyConfig::default()
    }
}

pub fn load_config(path: &Path) -> Result<Config, Failure> {
    baton_config::load(path).map_err(|e| Failure::usage(e.to_string()))
}

pub async fn run(config_path: &Path, stop_instances: bool) -> Result<(), Failure> {
    let config = load_config(config_path)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = stop_tx.send(true);
    });
    let running = start(&config).await?;
    let mut rx = stop_rx.clone();
    let _ = rx.wait_for(|s| *s).await;
    running.shutdown(stop_instances).await;
    Ok(())
}

/// A running server: what `serve` and `demo` share.
pub struct Running {
    pub controller: Arc<Controller>,
    pub proxy_addrs: Vec<std::net::SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

pub async fn start(config: &Config) -> Result<Running, Failure> {
    let store =
        baton_store::Store::open(&config.store.path).map_err(|e| Failure::failed(e.to_string()))?;
    let metrics = Arc::new(MetricsRegistry::new());
    let proxy = Proxy::new(proxy_config(config), metrics.clone());
    let mut listeners = Vec::new();
    for addr in &config.proxy.listen {
        let l = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            Failure::failed(format!(
                "cannot listen on {addr} ({e}); change [proxy] listen or stop what uses it"
            ))
        })?;
        listeners.push(l);
    }
    let proxy_addrs = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();
    let controller = Controller::start(config, store, proxy.clone(), metrics)
        .await
        .map_err(|e| Failure::failed(e.to_string()))?;
    let controller = Arc::new(controller);
    let token = match &config.admin.token_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .map_err(|e| {
                    Failure::usage(format!("cannot read token_file {} ({e})", f.display()))
                })?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let (stop, stop_rx) = watch::channel(false);
    let until_stop = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let admin = baton_api::serve_admin(
        &config.admin.listen,
        token,
        baton_api::router(controller.clone()),
        until_stop(stop_rx.clone()),
    )
    .await
    .map_err(|e| Failure::failed(e.to_string()))?;
    let mut tasks = vec![tokio::spawn(async move {
        if let Err(error) = admin.await {
            tracing::error!(%error, "admin API stopped");
        }
    })];
    // Routes are published (Controller::start) before the first accept.
    for l in listeners {
        let proxy = proxy.clone();
        let rx = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(error) = proxy.serve(l, until_stop(rx)).await {
                tracing::error!(%error, "proxy listener stopped");
            }
        }));
    }
    tracing::info!(proxy = ?config.proxy.listen, admin = ?config.admin.listen, "baton is serving");
    Ok(Running {
        controller,
        proxy_addrs,
        stop,
        tasks,
    })
}

impl Running {
    /// Stop accepting, let in-flight requests finish; optionally stop every instance.
    pub async fn shutdown(self, stop_instances: bool) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        if stop_instances {
            self.controller.stop_all().await;
        } else {
            tracing::info!("app instances left running; the next `baton serve` re-adopts them");
        }
    }
}

async fn wait_for_signal() {
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
