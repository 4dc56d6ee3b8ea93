//! `baton proxy`: the data plane alone, on a node other than the controller's. It follows
//! the route table of the first controller in `[cluster] controllers` that answers (long
//! polls on the controller's `[cluster] listen`), keeps serving the last table it has
//! whenever none answers, and reports back every second — and at once after taking a
//! new table — its per-version counters (the canary judge sums the fleet's) and its
//! requests still in flight on backends the table dropped (a drain on the controller
//! waits for them). With `[cluster] routes_cache` the last table is also written to disk,
//! so a proxy restarted while no controller answers serves it again.
//!
//! Nothing here decides anything: no store, no runtime, no health checks of its own
//! beyond the proxy's passive ones. The listeners, limits, TLS certificate files and the
//! access log come from the same `baton.toml` as the controller's.

use crate::serve::{bind_proxy_listeners, load_certificates, proxy_config, read_secret};
use crate::Failure;
use baton_api::client::{AdminAddr, AdminClient, ClientError};
use baton_api::cluster::LONG_POLL;
use baton_config::Config;
use baton_controller::fleet::{Position, ProxyReport, RoutesFrame, VersionCounters};
use baton_core::RouteTableSpec;
use baton_metrics::MetricsRegistry;
use baton_proxy::Proxy;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// How often a proxy reports when nothing changed.
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// A report that takes longer is given up (the next one follows).
const REPORT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause after a controller did not answer, before the next one is tried.
const RETRY_AFTER: Duration = Duration::from_millis(500);
/// Reports in a row the followed controller did not take before its long poll is given
/// up and the next controller tried: a controller whose node is lost leaves the poll
/// hanging (no reset comes back), while a standby may have taken over meanwhile.
const SILENT_AFTER: u32 = 3;

/// Where this proxy is: the controller it follows and the table it serves.
#[derive(Clone, Default)]
struct Following {
    controller: Option<String>,
    position: Position,
    /// A table is serving (from a controller or the cache).
    ready: bool,
}

struct Follower {
    proxy: Proxy,
    metrics: Arc<MetricsRegistry>,
    controllers: Vec<String>,
    token: String,
    name: String,
    boot: u64,
    cache: Option<PathBuf>,
    /// How long a backend the table dropped may keep its requests here.
    drain: Duration,
    state: watch::Sender<Following>,
    /// Wakes the reporter at once (a new table was taken).
    report_now: Notify,
    /// The followed controller stopped taking reports (`SILENT_AFTER`).
    silent: Notify,
    /// The instances the controller's last table said were found dead.
    dead: std::sync::Mutex<BTreeSet<String>>,
}

pub async fn run(config_path: &Path) -> Result<(), Failure> {
    let config = crate::serve::load_config(config_path)?;
    let cluster = config.cluster.clone().unwrap_or_default();
    if cluster.controllers.is_empty() {
        return Err(Failure::usage(format!(
            "`baton proxy` follows a controller, and {} names none: add to it\n\
             [cluster]\ncontrollers = [\"controller-host:9400\"]   # the controller's [cluster] listen\n\
             token_file = \"cluster.token\"                 # the same secret on every node",
            config_path.display()
        )));
    }
    let Some(token_file) = &cluster.token_file else {
        return Err(Failure::usage("[cluster] needs token_file"));
    };
    if config.proxy.tls.acme.is_some() {
        return Err(Failure::usage(
            "`baton proxy` serves certificate files only ([proxy.tls] certificates); \
             [proxy.tls.acme] runs on one node: terminate TLS with certificate files on \
             every proxy node, or remove [proxy.tls.acme] from this node's file",
        ));
    }
    let token = read_secret(token_file, "[cluster] token_file")?;
    let metrics = Arc::new(MetricsRegistry::new());
    let proxy = Proxy::new(proxy_config(&config), metrics.clone());
    let access_log = crate::access_log::start(&config, &proxy, &metrics)?;
    let tls_files = load_certificates(&config, &proxy).await?;
    let listeners = bind_proxy_listeners(&config, Vec::new()).await?;
    let follower = Arc::new(Follower {
        proxy: proxy.clone(),
        metrics,
        controllers: cluster.controllers.clone(),
        token,
        name: cluster.name.clone().unwrap_or_else(default_name),
        boot: boot_id(),
        cache: cluster.routes_cache.clone(),
        drain: drain_timeout(&config),
        state: watch::channel(Following::default()).0,
        report_now: Notify::new(),
        silent: Notify::new(),
        dead: Default::default(),
    });
    follower.load_cache();
    let (stop, stop_rx) = watch::channel(false);
    let follow = tokio::spawn(follower.clone().follow(stop_rx.clone()));
    let report = tokio::spawn(follower.clone().report(stop_rx.clone()));
    crate::purge::spawn();
    let (signal_tx, mut signalled) = watch::channel(false);
    tokio::spawn(async move {
        crate::serve::wait_for_signal().await;
        let _ = signal_tx.send(true);
    });
    // Accept only once a table serves: before that every request would be a 404.
    let mut state = follower.state.subscribe();
    tokio::select! {
        _ = state.wait_for(|s| s.ready) => {}
        _ = signalled.wait_for(|s| *s) => {
            let _ = stop.send(true);
            let _ = tokio::join!(follow, report);
            access_log.close().await;
            return Ok(());
        }
    }
    let mut serving = crate::reload::ProxyListeners::new(proxy.clone(), stop_rx.clone());
    let mut addrs = Vec::new();
    for (l, scheme) in listeners {
        addrs.push(format!(
            "{scheme:?} {}",
            l.local_addr()
                .map_or_else(|_| "?".into(), |a| a.to_string())
        ));
        serving.serve(l, scheme).map_err(|e| {
            Failure::failed(format!("cannot keep a copy of a proxy listener ({e})"))
        })?;
    }
    let (_tls_watch, tls_rx) = watch::channel(tls_files);
    crate::tls::watch_files(proxy, tls_rx, stop_rx);
    tracing::info!(name = %follower.name, listening = ?addrs, controllers = ?follower.controllers, "baton proxy is serving");
    crate::systemd::serving(
        false,
        &format!("proxy {} serving on {}", follower.name, addrs.join(", ")),
    );
    let _ = signalled.wait_for(|s| *s).await;
    crate::systemd::stopping();
    tracing::info!("stopping: open connections finish first");
    let _ = stop.send(true);
    serving.join().await;
    let _ = tokio::join!(follow, report);
    access_log.close().await;
    Ok(())
}

impl Follower {
    fn client(&self, controller: &str) -> AdminClient {
        AdminClient::new(
            AdminAddr::Tcp(controller.to_string()),
            Some(self.token.clone()),
        )
    }

    /// Serves the table the cache holds, if any (a proxy restarted while its controller
    /// is away keeps serving what it served).
    fn load_cache(&self) {
        let Some(path) = &self.cache else {
            return;
        };
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the routes cache; waiting for a controller");
                return;
            }
        };
        match serde_json::from_slice::<RoutesFrame>(&text) {
            Ok(frame) => {
                if self.apply(&frame, None) {
                    tracing::info!(path = %path.display(), "serving the cached route table until a controller answers");
                }
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "the routes cache is not a route table; ignoring it");
            }
        }
    }

    /// Swaps `frame`'s table in; backends it no longer routes to are drained here (their
    /// idle connections closed, their requests given `drain` to finish). A table the proxy
    /// refuses leaves the previous one serving. Returns whether it serves now.
    fn apply(&self, frame: &RoutesFrame, from: Option<&str>) -> bool {
        let before = backend_ids(&self.proxy.current_spec());
        if let Err(e) = self.proxy.publish(&frame.table) {
            tracing::error!(error = %e, controller = ?from, "the controller's route table was refused; the previous one keeps serving");
            return false;
        }
        // Instances the controller found dead: what waits on them here goes elsewhere
        // (once per time they are found dead).
        let mut dead = self.dead.lock().unwrap_or_else(|p| p.into_inner());
        for id in &frame.abandoned {
            if !dead.contains(id) {
                self.proxy.abandon(id);
            }
        }
        *dead = frame.abandoned.iter().cloned().collect();
        drop(dead);
        let after = backend_ids(&frame.table);
        for gone in before.difference(&after) {
            let (proxy, id, drain) = (self.proxy.clone(), gone.clone(), self.drain);
            tokio::spawn(async move {
                let report = proxy.drain(&id, drain).await;
                if !report.completed {
                    tracing::warn!(instance = %id, left = report.in_flight_at_deadline, "drain deadline reached");
                }
            });
        }
        self.state.send_modify(|s| {
            s.position = frame.position;
            s.ready = true;
            if let Some(c) = from {
                s.controller = Some(c.to_string());
            }
        });
        self.report_now.notify_one();
        if from.is_some() {
            self.write_cache(frame);
        }
        true
    }

    fn write_cache(&self, frame: &RoutesFrame) {
        let Some(path) = &self.cache else {
            return;
        };
        let write = || -> std::io::Result<()> {
            let tmp = path.with_extension("tmp");
            let bytes = serde_json::to_vec(frame).map_err(std::io::Error::other)?;
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, path)
        };
        if let Err(e) = write() {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the routes cache");
        }
    }

    /// Follows the controllers' tables until `stop`: one long poll after another on the
    /// controller that answers; when it does not, the next one in the list.
    async fn follow(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut at = 0;
        let mut failures = 0u32;
        loop {
            let controller = self.controllers[at % self.controllers.len()].clone();
            let since = self.state.borrow().position;
            let client = self.client(&controller);
            let ask = tokio::time::timeout(
                LONG_POLL + Duration::from_secs(10),
                client.cluster_routes(since),
            );
            let mut ask = std::pin::pin!(ask);
            let answer = loop {
                tokio::select! {
                    a = &mut ask => break Some(a),
                    // Only about the controller being asked (the reports go to the one
                    // followed, which may be another while this one is tried).
                    _ = self.silent.notified() => {
                        if self.state.borrow().controller.as_deref() == Some(&controller) {
                            break None;
                        }
                    }
                    _ = stop.wait_for(|s| *s) => return,
                }
            };
            let Some(answer) = answer else {
                failed(
                    &mut failures,
                    &controller,
                    "the controller stopped taking this proxy's reports",
                );
                at += 1;
                continue;
            };
            match answer {
                Ok(Ok(frame)) => {
                    if failures > 0 {
                        tracing::info!(%controller, "following the controller");
                    }
                    failures = 0;
                    let following = self.state.borrow().controller.as_deref() == Some(&controller);
                    if frame.position != since || !following {
                        self.apply(&frame, Some(&controller));
                    }
                    continue;
                }
                Ok(Err(e)) => failed(&mut failures, &controller, &unreachable(&e)),
                Err(_) => failed(
                    &mut failures,
                    &controller,
                    "the controller did not answer in time",
                ),
            }
            at += 1;
            tokio::select! {
                _ = tokio::time::sleep(RETRY_AFTER) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// Reports to the controller it follows every second, and at once after a new table.
    async fn report(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut missed = 0u32;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(REPORT_EVERY) => {}
                _ = self.report_now.notified() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let state = self.state.borrow().clone();
            let Some(controller) = state.controller else {
                continue;
            };
            // Versions the table has not routed for a while are not reported again
            // (the controller forgets them at the same time).
            self.proxy.retire_metrics(baton_proxy::METRICS_KEPT);
            let report = ProxyReport {
                name: self.name.clone(),
                boot: self.boot,
                serving: state.position,
                versions: self
                    .metrics
                    .snapshot_all()
                    .into_iter()
                    .map(|(app, version, metrics)| VersionCounters {
                        app,
                        version,
                        metrics,
                    })
                    .collect(),
                lingering: self.proxy.lingering(),
            };
            let client = self.client(&controller);
            let sent = tokio::time::timeout(REPORT_TIMEOUT, client.cluster_report(&report)).await;
            match sent {
                Ok(Ok(_)) => missed = 0,
                Ok(Err(e)) => {
                    tracing::debug!(%controller, "report not taken: {}", unreachable(&e));
                    missed += 1;
                }
                Err(_) => missed += 1,
            }
            if missed >= SILENT_AFTER {
                missed = 0;
                self.silent.notify_one();
            }
        }
    }
}

/// Counts a controller that did not answer; says so the first time and every 20th.
fn failed(failures: &mut u32, controller: &str, why: &str) {
    *failures += 1;
    if *failures == 1 || failures.is_multiple_of(20) {
        tracing::warn!(%controller, "{why}; the last route table keeps serving");
    }
}

/// A client error said for a proxy's log (the client's own texts speak to the CLI).
fn unreachable(e: &ClientError) -> String {
    match e {
        ClientError::Unreachable { addr, source } => {
            format!("cannot reach the controller at {addr} ({source})")
        }
        ClientError::Api { status: 401, .. } => "the controller refused this proxy's token: \
             [cluster] token_file must hold the same secret on every node"
            .to_string(),
        ClientError::Api { status, message } => {
            format!("the controller answered {status}: {message}")
        }
        ClientError::Protocol { detail, .. } => format!("the controller's answer: {detail}"),
    }
}

fn backend_ids(table: &RouteTableSpec) -> BTreeSet<String> {
    table
        .apps
        .values()
        .flat_map(|a| &a.pools)
        .flat_map(|p| &p.backends)
        .map(|b| b.id.clone())
        .collect()
}

/// The longest `drain_timeout` of the apps (the controller waits no longer than its
/// app's own), else 30 s.
fn drain_timeout(config: &Config) -> Duration {
    config
        .apps
        .values()
        .map(|a| a.drain_timeout.get())
        .max()
        .unwrap_or(Duration::from_secs(30))
}

/// The host name and this process's id: unique among the proxies of one controller.
fn default_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let host: String = host.chars().filter(|c| !c.is_control()).take(40).collect();
    let host = if host.is_empty() {
        "proxy".into()
    } else {
        host
    };
    format!("{host}-{}", std::process::id())
}

fn boot_id() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ u64::from(std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_core::{AppRouteSpec, BackendSpec};

    #[test]
    fn backends_of_a_table_are_every_pools_instances() {
        let mut table = RouteTableSpec::default();
        let b = |id: &str, port: u16| BackendSpec {
            id: id.into(),
            addr: ([127, 0, 0, 1], port).into(),
        };
        table.apps.insert(
            "web".into(),
            AppRouteSpec::single("v1", vec![b("web-1", 1), b("web-2", 2)]),
        );
        table.apps.insert(
            "api".into(),
            AppRouteSpec::single("v3", vec![b("api-1", 3)]),
        );
        let ids: Vec<String> = backend_ids(&table).into_iter().collect();
        assert_eq!(ids, ["api-1", "web-1", "web-2"]);
    }

    #[test]
    fn a_default_name_fits_the_controllers_limit() {
        let name = default_name();
        assert!(!name.is_empty() && name.len() <= 64, "{name}");
        assert!(name.ends_with(&std::process::id().to_string()));
    }
}
