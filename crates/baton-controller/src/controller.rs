//! The controller's public handle: starts one actor per app from the stored state and
//! answers the CLI / admin API. Reads (status, history, logs, plan) never wait on an
//! actor; writes go through the app's actor so each app has exactly one writer.

use crate::actor::{AppActor, DeployRequest, Msg, Op};
use crate::driver::Driver;
use crate::fleet::Fleet;
use crate::model::{Event, HistoryEntry};
use crate::plan::{self, PlanReport};
use crate::recovery::recover;
use crate::routes::RouteBook;
use crate::sampler::{self, Sampler};
use crate::shared::Shared;
use crate::status::{AppStatus, AppView};
use crate::ControlError;
use baton_config::{AppConfig, Config, StrategyKind};
use baton_core::RouteSpec;
use baton_metrics::MetricsRegistry;
use baton_proxy::{PassiveEvent, Proxy};
use baton_runtime::SwarmState;
use baton_store::Store;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

#[derive(Clone)]
pub(crate) struct AppHandle {
    /// `None` while suspended: operator requests are refused until `resume`.
    pub tx: Option<mpsc::Sender<Msg>>,
    pub view: watch::Receiver<AppView>,
    pub driver: Driver,
    pub cfg: AppConfig,
}

/// What a running (or suspended) controller is made of; swapped as a whole by
/// `suspend`/`resume`, so a request in progress keeps the state it started with.
pub(crate) struct Live {
    /// `None` while suspended (the store is closed).
    pub shared: Option<Arc<Shared>>,
    pub apps: BTreeMap<String, AppHandle>,
}

/// What survives a suspend/resume: the config, the data plane and the event stream.
pub(crate) struct Boot {
    /// Replaced by `baton reload`.
    config: RwLock<Config>,
    pub proxy: Proxy,
    metrics: Arc<MetricsRegistry>,
    events: broadcast::Sender<Event>,
    sampler: Arc<Sampler>,
    fleet: Arc<Fleet>,
    /// `[cluster] state = "swarm"`: the lease this controller holds and the records'
    /// replicated copy.
    state: Option<Arc<SwarmState>>,
}

pub struct Controller {
    pub(crate) boot: Boot,
    pub(crate) live: RwLock<Arc<Live>>,
    /// The app actors of the current `Live`, awaited by `suspend`.
    pub(crate) actors: Mutex<Vec<JoinHandle<()>>>,
    /// Serializes `suspend`, `resume` and `reload`.
    pub(crate) transition: tokio::sync::Mutex<()>,
    /// Deploys and operator requests hold it shared; a reload holds it alone, so no
    /// rollout starts between the reload's checks and its changes.
    pub(crate) gate: tokio::sync::RwLock<()>,
}

/// This controller process among the ones a proxy may follow: the table stream's epoch.
fn epoch() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 40)
}

/// How long `resume` waits for another process to release the store.
const STORE_RELEASE_WAIT: Duration = Duration::from_secs(15);

impl Controller {
    /// Recovers every app from `store`, publishes its routing to `proxy` (before this
    /// returns, so the caller can start accepting afterwards) and starts its actor.
    /// `state`: with `[cluster] state = "swarm"`, the lease this process holds (the
    /// store was brought up to date with it by [`crate::take_swarm_state`]); every record
    /// is written there before the store.
    pub async fn start(
        config: &Config,
        store: Store,
        proxy: Proxy,
        metrics: Arc<MetricsRegistry>,
        state: Option<Arc<SwarmState>>,
    ) -> Result<Controller, ControlError> {
        let (events, _) = broadcast::channel(1024);
        let sampler = Arc::new(Sampler::default());
        let fleet = Arc::new(Fleet::new(epoch()));
        sampler::spawn(
            proxy.clone(),
            metrics.clone(),
            fleet.clone(),
            sampler.clone(),
        );
        let boot = Boot {
            config: RwLock::new(config.clone()),
            proxy,
            metrics,
            events,
            sampler,
            fleet,
            state,
        };
        forward_passive_events(&boot.proxy, boot.events.clone());
        let (live, actors) = boot.go_live(store).await?;
        Ok(Controller {
            boot,
            live: RwLock::new(Arc::new(live)),
            actors: Mutex::new(actors),
            transition: tokio::sync::Mutex::new(()),
            gate: tokio::sync::RwLock::new(()),
        })
    }

    /// Quiesces the controller for a handover to another baton process (`baton
    /// upgrade`): each app actor finishes the step it is in (its record is stored), then
    /// stops; instances keep running and the proxy keeps its current routes. When this
    /// returns the store is closed, so another process can open it. Operator requests
    /// are refused meanwhile; status, logs and plans still answer from the last state.
    pub async fn suspend(&self) -> Result<(), ControlError> {
        let _turn = self.transition.lock().await;
        let old = {
            let mut live = self.live.write().unwrap_or_else(|p| p.into_inner());
            let Some(shared) = live.shared.clone() else {
                return Ok(());
            };
            let frozen = Live {
                shared: None,
                apps: live
                    .apps
                    .iter()
                    .map(|(name, h)| {
                        let h = AppHandle {
                            tx: None,
                            ..h.clone()
                        };
                        (name.clone(), h)
                    })
                    .collect(),
            };
            *live = Arc::new(frozen);
            shared
        };
        // The actors stop once their inbox closes: when the requests in progress (which
        // hold the previous `Live`) have their answers.
        let store = Arc::downgrade(&old.store);
        drop(old);
        let actors = std::mem::take(&mut *self.actors.lock().unwrap_or_else(|p| p.into_inner()));
        for a in actors {
            let _ = a.await;
        }
        // Stored records are all written; wait for the last reference to the store.
        let deadline = tokio::time::Instant::now() + STORE_RELEASE_WAIT;
        while store.strong_count() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return Err(ControlError::BadRequest(
                    "the store is still in use after the app actors stopped; not handing over"
                        .into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracing::info!("controller suspended: store closed, instances left running");
        Ok(())
    }

    /// Undoes `suspend` (the handover did not happen): reopens the store, waiting up to
    /// 15 s for another process to release it, and recovers every app as at start-up —
    /// the instances are re-adopted, deployments continue where their record says.
    pub async fn resume(&self) -> Result<(), ControlError> {
        let _turn = self.transition.lock().await;
        if self.live().shared.is_some() {
            return Ok(());
        }
        let path = self.boot.config().store.path.clone();
        let deadline = tokio::time::Instant::now() + STORE_RELEASE_WAIT;
        let store = loop {
            let p = path.clone();
            let opened = tokio::task::spawn_blocking(move || Store::open(&p))
                .await
                .map_err(|e| ControlError::BadRequest(format!("opening the store: {e}")))?;
            match opened {
                Ok(store) => break store,
                Err(baton_store::StoreError::Locked { .. })
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let (live, actors) = self.boot.go_live(store).await?;
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(live);
        *self.actors.lock().unwrap_or_else(|p| p.into_inner()) = actors;
        tracing::info!("controller resumed");
        Ok(())
    }

    /// Whether `suspend` is in effect.
    pub fn is_suspended(&self) -> bool {
        self.live().shared.is_none()
    }

    /// The configuration in force (the last one reloaded).
    pub fn config(&self) -> Config {
        self.boot.config()
    }

    /// The store, for others that keep data in it (ACME); `None` while suspended for a
    /// handover. Hold it only for one read or write: `suspend` waits for every holder.
    pub fn store(&self) -> Option<Arc<baton_store::Store>> {
        self.live().shared.as_ref().map(|s| s.store.clone())
    }

    pub(crate) fn live(&self) -> Arc<Live> {
        self.live.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn shared(&self) -> Result<Arc<Shared>, ControlError> {
        self.live().shared.clone().ok_or(ControlError::Suspended)
    }

    /// The sender to `app`'s actor; refused while suspended.
    fn sender(&self, app: &str) -> Result<mpsc::Sender<Msg>, ControlError> {
        let live = self.live();
        live.app(app)?.tx.clone().ok_or(ControlError::Suspended)
    }

    pub fn app_names(&self) -> Vec<String> {
        self.live().apps.keys().cloned().collect()
    }

    pub async fn deploy(
        &self,
        app: &str,
        version: &str,
        strategy: Option<StrategyKind>,
        targets: Vec<std::net::SocketAddr>,
        irreversible: bool,
    ) -> Result<String, ControlError> {
        let _gate = self.gate.read().await;
        let tx = self.sender(app)?;
        let runtime = self.live().app(app)?.driver.runtime.clone();
        crate::docker::preflight(runtime.as_ref(), app, version).await?;
        let (reply, rx) = oneshot::channel();
        let req = DeployRequest {
            version: version.to_string(),
            strategy,
            targets,
            irreversible,
        };
        tx.send(Msg::Deploy { req, reply })
            .await
            .map_err(|_| ControlError::ShuttingDown)?;
        rx.await.map_err(|_| ControlError::ShuttingDown)?
    }

    pub async fn op(&self, app: &str, op: Op) -> Result<(), ControlError> {
        let _gate = self.gate.read().await;
        let tx = self.sender(app)?;
        let (reply, rx) = oneshot::channel();
        tx.send(Msg::Op { op, reply })
            .await
            .map_err(|_| ControlError::ShuttingDown)?;
        rx.await.map_err(|_| ControlError::ShuttingDown)?
    }

    pub fn status(&self, app: &str) -> Result<AppStatus, ControlError> {
        let live = self.live();
        let view = live.app(app)?.view.borrow().clone();
        let proxy = &self.boot.proxy;
        Ok(view.status(|id| proxy.in_flight(id), &self.boot.sampler))
    }

    pub fn statuses(&self) -> Vec<AppStatus> {
        self.live()
            .apps
            .keys()
            .filter_map(|a| self.status(a).ok())
            .collect()
    }

    pub fn history(&self, app: &str, limit: usize) -> Result<Vec<HistoryEntry>, ControlError> {
        self.live().app(app)?;
        Ok(self.shared()?.store.history(app, limit)?)
    }

    /// How often `app` deploys, how often a change fails and how long restoring takes,
    /// over the last 7 and 30 days (`crate::delivery`).
    pub fn delivery(&self, app: &str) -> Result<crate::delivery::Delivery, ControlError> {
        let history = self.history(app, usize::MAX)?;
        Ok(crate::delivery::delivery(
            app,
            &history,
            baton_core::Millis::now(),
        ))
    }

    /// The last `lines` lines of each instance's output (optionally one version's).
    pub async fn logs(
        &self,
        app: &str,
        version: Option<&str>,
        lines: usize,
    ) -> Result<Vec<(String, String, Vec<String>)>, ControlError> {
        let live = self.live();
        let h = live.app(app)?;
        let view = h.view.borrow().clone();
        let mut out = Vec::new();
        for inst in view
            .record
            .instances
            .iter()
            .filter(|i| version.is_none_or(|v| v == i.version))
        {
            let text = h.driver.runtime.logs(inst, lines).await?;
            out.push((inst.id.clone(), inst.version.clone(), text));
        }
        // The hooks of the running deployment, else of the last finished one.
        let hooks = match &view.record.deployment {
            Some(d) => d
                .release
                .iter()
                .map(|r| (d.id.clone(), d.version.clone(), r.clone()))
                .collect::<Vec<_>>(),
            None => view
                .last_finished
                .iter()
                .flat_map(|f| {
                    f.hooks
                        .iter()
                        .map(|r| (f.id.clone(), f.to_version.clone(), r.clone()))
                })
                .collect(),
        };
        for (deployment, v, run) in hooks {
            if version.is_some_and(|want| want != v) {
                continue;
            }
            let skip = run.output.len().saturating_sub(lines);
            let mut text: Vec<String> = run.output.into_iter().skip(skip).collect();
            text.push(format!(
                "[baton] {} hook {}: {}",
                run.hook,
                format!("{:?}", run.state).to_lowercase(),
                run.result.unwrap_or_else(|| "running".into())
            ));
            out.push((format!("{deployment}-{}-hook", run.hook), v, text));
        }
        Ok(out)
    }

    pub fn plan(
        &self,
        app: &str,
        version: &str,
        strategy: Option<StrategyKind>,
    ) -> Result<PlanReport, ControlError> {
        let live = self.live();
        let h = live.app(app)?;
        let view = h.view.borrow().clone();
        Ok(plan::plan(&h.cfg, &view.record, version, strategy))
    }

    /// Stops every instance of every app (used when baton exits with `--stop-instances`
    /// and by the demo). Traffic must already be stopped.
    pub async fn stop_all(&self) {
        let mut tasks = Vec::new();
        let live = self.live();
        for h in live.apps.values() {
            for inst in h.view.borrow().record.instances.clone() {
                let runtime = h.driver.runtime.clone();
                tasks.push(tokio::spawn(async move {
                    if let Err(error) = runtime.stop(&inst).await {
                        tracing::warn!(instance = %inst.id, %error, "could not stop instance");
                    }
                }));
            }
        }
        for t in tasks {
            let _ = t.await;
        }
        // What no record names: an instance whose start was still running when the
        // actor stopped (its task cut short at shutdown) is this baton's all the same.
        for (app, h) in &live.apps {
            match h.driver.runtime.remove_strays(app, &HashSet::new()).await {
                Ok(removed) if !removed.is_empty() => {
                    tracing::info!(%app, ?removed, "stopped instances whose start was cut short");
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%app, %error, "could not look for instances left by a start cut short");
                }
            }
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.boot.events.subscribe()
    }

    pub fn events_since(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Event)>, ControlError> {
        Ok(self.shared()?.store.events_since(after, limit)?)
    }

    /// The newest `limit` stored events of `app`, oldest first.
    pub fn app_events(&self, app: &str, limit: usize) -> Result<Vec<Event>, ControlError> {
        self.live().app(app)?;
        Ok(self
            .shared()?
            .store
            .recent_events(limit, |e: &Event| e.app == app)?
            .into_iter()
            .map(|(_, e)| e)
            .collect())
    }

    pub fn metrics(&self) -> &MetricsRegistry {
        &self.boot.metrics
    }

    /// This process's proxy: what it serves is the table proxies on other nodes follow.
    pub fn proxy(&self) -> &Proxy {
        &self.boot.proxy
    }

    pub fn sampler(&self) -> &Sampler {
        &self.boot.sampler
    }

    /// The proxies on other nodes that follow this controller (`[cluster]`).
    pub fn fleet(&self) -> &Arc<Fleet> {
        &self.boot.fleet
    }
}

impl Live {
    pub(crate) fn app(&self, app: &str) -> Result<&AppHandle, ControlError> {
        self.apps.get(app).ok_or_else(|| ControlError::UnknownApp {
            app: app.to_string(),
            known: self.apps.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }
}

impl Boot {
    pub(crate) fn config(&self) -> Config {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_config(&self, config: Config) {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
    }

    /// Recovers every app from `store` and starts its actor (routes are published
    /// before this returns).
    async fn go_live(&self, store: Store) -> Result<(Live, Vec<JoinHandle<()>>), ControlError> {
        let config = self.config();
        let store = Arc::new(store);
        let shared = Arc::new(Shared {
            routes: RouteBook::new(self.proxy.clone(), routes_of(&config)),
            store,
            events: self.events.clone(),
            fleet: self.fleet.clone(),
            state: self.state.clone(),
        });
        let mut apps = BTreeMap::new();
        let mut actors = Vec::new();
        for (name, cfg) in &config.apps {
            let (rt_tx, rt_rx) = mpsc::unbounded_channel();
            let driver = Driver::build(name, cfg, &log_dir(&shared), &owner(&shared), rt_tx)?;
            let (handle, actor) = start_app(&shared, name, cfg, driver, rt_rx).await?;
            actors.push(actor);
            apps.insert(name.clone(), handle);
        }
        let live = Live {
            shared: Some(shared),
            apps,
        };
        Ok((live, actors))
    }
}

/// What marks this baton's instances: the store path; with `[cluster] state = "swarm"`,
/// a name every controller that may take over shares.
pub(crate) fn owner(shared: &Shared) -> String {
    match &shared.state {
        Some(state) => state.owner(),
        None => shared.store.path().display().to_string(),
    }
}

/// Instance logs go to `logs/` beside the store.
pub(crate) fn log_dir(shared: &Shared) -> PathBuf {
    shared
        .store
        .path()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
        .join("logs")
}

/// Recovers app `name` from the store (re-adopting its instances, removing strays),
/// publishes its routing and starts its actor. An app with no record starts empty: its
/// instances come with its first deployment.
pub(crate) async fn start_app(
    shared: &Arc<Shared>,
    name: &str,
    cfg: &AppConfig,
    driver: Driver,
    rt_rx: mpsc::UnboundedReceiver<baton_runtime::RuntimeEvent>,
) -> Result<(AppHandle, JoinHandle<()>), ControlError> {
    let rec = recover(name, cfg, driver.runtime.as_ref(), &shared.store).await?;
    let (actor, view_rx) = AppActor::new(
        cfg.clone(),
        rec.record,
        driver.runtime.clone(),
        shared.clone(),
        rec.healthy,
        rec.last_finished,
    );
    actor.publish();
    let (tx, rx) = mpsc::channel(64);
    let task = tokio::spawn(actor.run(rx, rt_rx, rec.lost));
    let handle = AppHandle {
        tx: Some(tx),
        view: view_rx,
        driver,
        cfg: cfg.clone(),
    };
    Ok((handle, task))
}

/// The proxy ejects failing backends by itself (passive health); the controller turns
/// its signals into deployment events so `baton` users see them.
fn forward_passive_events(proxy: &Proxy, events: broadcast::Sender<Event>) {
    let mut rx = proxy.subscribe_events();
    tokio::spawn(async move {
        loop {
            let ev = match rx.recv().await {
                Ok(ev) => ev,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => break,
            };
            let (app, kind, message) = match ev {
                PassiveEvent::Ejected {
                    backend_id,
                    app,
                    version,
                    reason,
                } => (
                    app,
                    "ejected",
                    format!("{backend_id} ({version}) ejected by passive health: {reason}"),
                ),
                PassiveEvent::Restored {
                    backend_id,
                    app,
                    version,
                } => (
                    app,
                    "restored",
                    format!("{backend_id} ({version}) back in rotation"),
                ),
            };
            tracing::warn!(%app, kind, "{message}");
            let _ = events.send(Event {
                at: baton_core::Millis::now(),
                app,
                deployment: None,
                kind: kind.to_string(),
                message,
            });
        }
    });
}

/// Host/path routes from the config; an app with no `hosts` answers for any host.
pub(crate) fn routes_of(config: &Config) -> Vec<RouteSpec> {
    let mut routes = Vec::new();
    for (name, app) in &config.apps {
        if app.hosts.is_empty() {
            routes.push(RouteSpec {
                host: None,
                path_prefix: app.path.clone(),
                app: name.clone(),
            });
        }
        for host in &app.hosts {
            routes.push(RouteSpec {
                host: Some(host.clone()),
                path_prefix: app.path.clone(),
                app: name.clone(),
            });
        }
    }
    routes
}
