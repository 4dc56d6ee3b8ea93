//! The controller's public handle: starts one actor per app from the stored state and
//! answers the CLI / admin API. Reads (status, history, logs, plan) never wait on an
//! actor; writes go through the app's actor so each app has exactly one writer.

use crate::actor::{AppActor, DeployRequest, Msg, Op};
use crate::model::{Event, HistoryEntry};
use crate::plan::{self, PlanReport};
use crate::recovery::recover;
use crate::routes::RouteBook;
use crate::sampler::{self, Sampler};
use crate::shared::Shared;
use crate::status::{AppStatus, AppView};
use crate::ControlError;
use baton_config::{AppConfig, Config, RuntimeKind, StrategyKind};
use baton_core::RouteSpec;
use baton_metrics::MetricsRegistry;
use baton_proxy::{PassiveEvent, Proxy};
use baton_runtime::{ProcessRuntime, ProcessSpec, Runtime, StaticRuntime};
use baton_store::Store;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

struct AppHandle {
    tx: mpsc::Sender<Msg>,
    view: watch::Receiver<AppView>,
    runtime: Arc<dyn Runtime>,
    cfg: AppConfig,
}

pub struct Controller {
    shared: Arc<Shared>,
    apps: BTreeMap<String, AppHandle>,
}

impl Controller {
    /// Recovers every app from `store`, publishes its routing to `proxy` (before this
    /// returns, so the caller can start accepting afterwards) and starts its actor.
    pub async fn start(
        config: &Config,
        store: Store,
        proxy: Proxy,
        metrics: Arc<MetricsRegistry>,
    ) -> Result<Controller, ControlError> {
        let store = Arc::new(store);
        let owner = store.path().display().to_string();
        let log_dir = store
            .path()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
            .join("logs");
        let (events, _) = broadcast::channel(1024);
        let sampler = Arc::new(Sampler::default());
        sampler::spawn(metrics.clone(), sampler.clone());
        let shared = Arc::new(Shared {
            routes: RouteBook::new(proxy, routes_of(config)),
            store,
            events,
            metrics,
            sampler,
        });
        forward_passive_events(&shared);
        let mut apps = BTreeMap::new();
        for (name, cfg) in &config.apps {
            let (rt_tx, rt_rx) = mpsc::unbounded_channel();
            let runtime = build_runtime(name, cfg, &log_dir, &owner, rt_tx)?;
            let rec = recover(name, cfg, runtime.as_ref(), &shared.store, &owner).await?;
            let (view_tx, view_rx) = watch::channel(AppView {
                record: rec.record.clone(),
                healthy: rec.healthy.clone(),
                rollout: None,
                last_finished: rec.last_finished.clone(),
            });
            let actor = AppActor::new(
                name.clone(),
                cfg.clone(),
                rec.record,
                runtime.clone(),
                shared.clone(),
                rec.healthy,
                rec.last_finished,
                view_tx,
            );
            actor.publish();
            let (tx, rx) = mpsc::channel(64);
            tokio::spawn(actor.run(rx, rt_rx, rec.lost));
            apps.insert(
                name.clone(),
                AppHandle {
                    tx,
                    view: view_rx,
                    runtime,
                    cfg: cfg.clone(),
                },
            );
        }
        Ok(Controller { shared, apps })
    }

    fn app(&self, app: &str) -> Result<&AppHandle, ControlError> {
        self.apps.get(app).ok_or_else(|| ControlError::UnknownApp {
            app: app.to_string(),
            known: self.apps.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }

    pub fn app_names(&self) -> Vec<String> {
        self.apps.keys().cloned().collect()
    }

    pub async fn deploy(
        &self,
        app: &str,
        version: &str,
        strategy: Option<StrategyKind>,
        targets: Vec<std::net::SocketAddr>,
    ) -> Result<String, ControlError> {
        let h = self.app(app)?;
        let (reply, rx) = oneshot::channel();
        let req = DeployRequest {
            version: version.to_string(),
            strategy,
            targets,
        };
        h.tx.send(Msg::Deploy { req, reply })
            .await
            .map_err(|_| ControlError::ShuttingDown)?;
        rx.await.map_err(|_| ControlError::ShuttingDown)?
    }

    pub async fn op(&self, app: &str, op: Op) -> Result<(), ControlError> {
        let h = self.app(app)?;
        let (reply, rx) = oneshot::channel();
        h.tx.send(Msg::Op { op, reply })
            .await
            .map_err(|_| ControlError::ShuttingDown)?;
        rx.await.map_err(|_| ControlError::ShuttingDown)?
    }

    pub fn status(&self, app: &str) -> Result<AppStatus, ControlError> {
        let h = self.app(app)?;
        let view = h.view.borrow().clone();
        let proxy = self.shared.routes.proxy();
        Ok(view.status(|id| proxy.in_flight(id), &self.shared.sampler))
    }

    pub fn statuses(&self) -> Vec<AppStatus> {
        self.apps
            .keys()
            .filter_map(|a| self.status(a).ok())
            .collect()
    }

    pub fn history(&self, app: &str, limit: usize) -> Result<Vec<HistoryEntry>, ControlError> {
        self.app(app)?;
        Ok(self.shared.store.history(app, limit)?)
    }

    /// The last `lines` lines of each instance's output (optionally one version's).
    pub async fn logs(
        &self,
        app: &str,
        version: Option<&str>,
        lines: usize,
    ) -> Result<Vec<(String, String, Vec<String>)>, ControlError> {
        let h = self.app(app)?;
        let instances = h.view.borrow().record.instances.clone();
        let mut out = Vec::new();
        for inst in instances
            .iter()
            .filter(|i| version.is_none_or(|v| v == i.version))
        {
            let text = h.runtime.logs(inst, lines).await?;
            out.push((inst.id.clone(), inst.version.clone(), text));
        }
        Ok(out)
    }

    pub fn plan(
        &self,
        app: &str,
        version: &str,
        strategy: Option<StrategyKind>,
    ) -> Result<PlanReport, ControlError> {
        let h = self.app(app)?;
        let view = h.view.borrow().clone();
        Ok(plan::plan(&h.cfg, &view.record, version, strategy))
    }

    /// Stops every instance of every app (used when baton exits with `--stop-instances`
    /// and by the demo). Traffic must already be stopped.
    pub async fn stop_all(&self) {
        let mut tasks = Vec::new();
        for h in self.apps.values() {
            for inst in h.view.borrow().record.instances.clone() {
                let runtime = h.runtime.clone();
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
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    pub fn events_since(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Event)>, ControlError> {
        Ok(self.shared.store.events_since(after, limit)?)
    }

    pub fn metrics(&self) -> &MetricsRegistry {
        &self.shared.metrics
    }

    pub fn sampler(&self) -> &Sampler {
        &self.shared.sampler
    }
}

/// The proxy ejects failing backends by itself (passive health); the controller turns
/// its signals into deployment events so `baton` users see them.
fn forward_passive_events(shared: &Arc<Shared>) {
    let mut rx = shared.routes.proxy().subscribe_events();
    let events = shared.events.clone();
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
fn routes_of(config: &Config) -> Vec<RouteSpec> {
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

fn build_runtime(
    name: &str,
    cfg: &AppConfig,
    log_dir: &Path,
    owner: &str,
    events: mpsc::UnboundedSender<baton_runtime::RuntimeEvent>,
) -> Result<Arc<dyn Runtime>, ControlError> {
    match cfg.runtime {
        RuntimeKind::Process => {
            let Some(command) = cfg.command.clone() else {
                return Err(ControlError::BadRequest(format!(
                    "[apps.{name}] uses runtime = \"process\" but has no `command`"
                )));
            };
            let mut env = cfg.env.clone();
            env.insert("BATON_OWNER".into(), owner.to_string());
            let spec = ProcessSpec {
                command,
                cwd: cfg.cwd.clone(),
                env,
                ports: cfg.ports,
                stop_timeout: cfg.stop_timeout.get(),
                log_dir: log_dir.to_path_buf(),
                log_max_bytes: 1 << 20,
            };
            Ok(Arc::new(ProcessRuntime::new(spec, events)))
        }
        RuntimeKind::Static => Ok(Arc::new(StaticRuntime::new())),
        other => Err(ControlError::BadRequest(format!(
            "[apps.{name}] runtime = \"{other:?}\" is not available in this build; use \"process\" or \"static\""
        ))),
    }
}
