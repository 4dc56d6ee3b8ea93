//! The swarm runtime: each instance is one single-replica Docker Swarm service, created
//! through a manager's Engine API (bollard), reached at its task's address on an
//! attachable overlay network — never through a service VIP or the ingress mesh (endpoint
//! mode `dnsrr`: the service has no VIP at all).
//!
//! Why a service per instance and not one per release scaled up and down: when a
//! replicated service is scaled down, Swarm chooses which task to remove (node balance
//! first, then tasks that are not running), so baton could not drain the task that is
//! about to go. With one service per instance, baton drains an instance, then removes
//! exactly its service. The services of one release share the labels `baton.app` and
//! `baton.version` and the name `<app>-<seq>-<version>`; `docker service ls --filter
//! label=baton.version=v2` lists a release.
//!
//! Tasks are created with restart condition `none`: when one ends (crash, node lost),
//! Swarm does not start another in its service; baton notices (it polls each task twice a
//! second), reports the instance as exited, and its controller replaces it the way it does
//! on every runtime (health-checked, then routed).

mod engine;
mod error;
mod state;

pub use error::SwarmError;
pub use state::{StoredApp, SwarmState};

use crate::docker::{
    default_host, fill, instance_env, labels, LABEL_APP, LABEL_INSTANCE, LABEL_OWNER, LABEL_VERSION,
};
use crate::{HandleDetail, InstanceHandle, Runtime, RuntimeError, RuntimeEvent, StartRequest};
use async_trait::async_trait;
use baton_core::{validate_app_name, validate_version, Millis};
use bollard::models::{
    EndpointSpec, EndpointSpecModeEnum, Limit, LocalNodeState, Mount, MountType,
    NetworkAttachmentConfig, NodeSpecAvailabilityEnum, NodeState, ServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicated, TaskSpec, TaskSpecContainerSpec, TaskSpecContainerSpecConfigs,
    TaskSpecContainerSpecFile, TaskSpecContainerSpecFile1, TaskSpecContainerSpecSecrets,
    TaskSpecPlacement, TaskSpecPlacementPreferences, TaskSpecPlacementSpread, TaskSpecResources,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};
use bollard::query_parameters::{
    ListConfigsOptionsBuilder, ListSecretsOptionsBuilder, ListServicesOptionsBuilder,
    ListTasksOptionsBuilder, LogsOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// How often a starting task, and then a running one, is looked at.
const START_POLL: Duration = Duration::from_millis(250);
const WATCH_POLL: Duration = Duration::from_millis(500);

/// How one app's services are made (`[apps.X]` with `runtime = "swarm"`).
#[derive(Debug, Clone, PartialEq)]
pub struct SwarmSpec {
    /// Image template; `{version}` becomes the deployed version. Every node that may run
    /// a task needs it (from a registry, or loaded).
    pub image: String,
    /// The port the app listens on inside the container.
    pub container_port: u16,
    /// Extra environment; values may use `{version}` `{app}` `{instance}` `{port}`.
    pub env: BTreeMap<String, String>,
    /// `source:target[:ro]`: a bind mount when the source is a path, else a volume.
    pub volumes: Vec<String>,
    /// The attachable overlay network tasks join; baton reaches them there.
    pub network: String,
    /// Overrides the image's CMD (already split; placeholders as in `env`).
    pub command: Option<Vec<String>>,
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// CPU limit in CPUs.
    pub cpus: Option<f64>,
    /// Placement constraints, in Swarm's syntax (`node.labels.zone==a`).
    pub constraints: Vec<String>,
    /// A placement preference: spread tasks over the values of this node attribute
    /// (`node.labels.zone`).
    pub spread: Option<String>,
    /// Swarm secrets (by name) mounted at `/run/secrets/<name>`.
    pub secrets: Vec<String>,
    /// Swarm configs (by name) mounted at `/<name>`.
    pub configs: Vec<String>,
    /// How long a task may take to run.
    pub startup_timeout: Duration,
    /// Swarm's stop grace period: SIGTERM to SIGKILL.
    pub stop_timeout: Duration,
    /// Who owns the services: the store path (the `baton.owner` label).
    pub owner: String,
}

impl SwarmSpec {
    /// Defaults for everything but the image, the container port, the network and the
    /// owner.
    pub fn new(
        image: impl Into<String>,
        container_port: u16,
        network: impl Into<String>,
        owner: impl Into<String>,
    ) -> SwarmSpec {
        SwarmSpec {
            image: image.into(),
            container_port,
            env: BTreeMap::new(),
            volumes: Vec::new(),
            network: network.into(),
            command: None,
            memory: None,
            cpus: None,
            constraints: Vec::new(),
            spread: None,
            secrets: Vec::new(),
            configs: Vec::new(),
            startup_timeout: Duration::from_secs(60),
            stop_timeout: Duration::from_secs(10),
            owner: owner.into(),
        }
    }

    /// The image reference for `version`.
    pub fn image_for(&self, version: &str) -> String {
        self.image.replace("{version}", version)
    }
}

/// Runs instances as Swarm services.
#[derive(Clone)]
pub struct SwarmRuntime {
    docker: Docker,
    /// Where the manager's engine is, for messages and the raw task reads.
    host: Arc<str>,
    spec: Arc<std::sync::RwLock<Arc<SwarmSpec>>>,
    events: mpsc::UnboundedSender<RuntimeEvent>,
    /// Instances being stopped on purpose: their end is not reported.
    stopping: Arc<Mutex<HashSet<String>>>,
    /// Held from picking a node to creating the service, so that instances started
    /// together see each other's placement.
    placing: Arc<tokio::sync::Mutex<()>>,
}

/// A service of baton's: its name, labels and the node it is pinned to.
struct Placed {
    name: String,
    instance: String,
    version: String,
    node: Option<String>,
}

/// The constraint that pins a service to one node.
const PIN: &str = "node.id==";

/// What a task is doing, read from the engine's raw answer.
#[derive(Debug, Clone, PartialEq)]
struct TaskView {
    state: String,
    desired: String,
    node: String,
    /// Swarm's error for the task (`No such image: …`), or its status message.
    why: String,
    exit_code: Option<i64>,
}

impl TaskView {
    fn from_json(task: &serde_json::Value) -> TaskView {
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        let status = &task["Status"];
        let err = text(&status["Err"]);
        TaskView {
            state: text(&status["State"]),
            desired: text(&task["DesiredState"]),
            node: text(&task["NodeID"]),
            why: if err.is_empty() {
                text(&status["Message"])
            } else {
                err
            },
            exit_code: status["ContainerStatus"]["ExitCode"].as_i64(),
        }
    }

    fn running(&self) -> bool {
        self.state == "running" && self.desired == "running"
    }

    /// A state the task never leaves (Swarm's task model).
    fn ended(&self) -> bool {
        matches!(
            self.state.as_str(),
            "complete" | "shutdown" | "failed" | "rejected" | "remove" | "orphaned"
        ) || !matches!(self.desired.as_str(), "running" | "ready" | "accepted" | "")
    }

    /// The task's end as a sentence.
    fn describe(&self) -> String {
        let mut s = format!("task is {} on node {}", self.state, short(&self.node));
        if let Some(code) = self.exit_code.filter(|c| *c != 0) {
            s.push_str(&format!(", exit status {code}"));
        }
        if !self.why.is_empty() {
            s.push_str(&format!(": {}", self.why));
        }
        s
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

// === impl SwarmRuntime ===

impl SwarmRuntime {
    /// A client for the manager named by `DOCKER_HOST` (default the local socket).
    /// Nothing is sent yet.
    pub fn new(
        spec: SwarmSpec,
        events: mpsc::UnboundedSender<RuntimeEvent>,
    ) -> Result<SwarmRuntime, SwarmError> {
        Self::with_host(&default_host(), spec, events)
    }

    /// Like [`SwarmRuntime::new`], for the manager's engine at `host`.
    pub fn with_host(
        host: &str,
        spec: SwarmSpec,
        events: mpsc::UnboundedSender<RuntimeEvent>,
    ) -> Result<SwarmRuntime, SwarmError> {
        let docker = Docker::connect_with_host(host).map_err(|e| SwarmError::Unreachable {
            host: host.to_string(),
            detail: e.to_string(),
        })?;
        Ok(SwarmRuntime {
            docker,
            host: host.into(),
            spec: Arc::new(std::sync::RwLock::new(Arc::new(spec))),
            events,
            stopping: Arc::default(),
            placing: Arc::default(),
        })
    }

    fn spec(&self) -> Arc<SwarmSpec> {
        self.spec.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces how services are made (`baton reload`): instances started from now on
    /// use `spec`; running ones keep theirs.
    pub fn set_spec(&self, spec: SwarmSpec) {
        *self.spec.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(spec);
    }

    /// The engine client (tests look at baton's services with it).
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    fn api(&self, action: &str, e: bollard::errors::Error) -> SwarmError {
        SwarmError::api(&self.host, action, e)
    }

    /// The engine answers, is a swarm manager, and the network is an attachable overlay
    /// of the swarm. Changes nothing.
    pub async fn check(&self) -> Result<(), SwarmError> {
        let negotiate = self.docker.clone().negotiate_version();
        match tokio::time::timeout(Duration::from_secs(10), negotiate).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(self.api("answer", e)),
            Err(_) => {
                return Err(SwarmError::Unreachable {
                    host: self.host.to_string(),
                    detail: "no answer within 10s".into(),
                })
            }
        }
        let info = self
            .docker
            .info()
            .await
            .map_err(|e| self.api("read its swarm state", e))?;
        let swarm = info.swarm.unwrap_or_default();
        if swarm.local_node_state != Some(LocalNodeState::ACTIVE) {
            return Err(SwarmError::NotInSwarm {
                host: self.host.to_string(),
            });
        }
        if swarm.control_available != Some(true) {
            return Err(SwarmError::NotManager {
                host: self.host.to_string(),
            });
        }
        let network = self.spec().network.clone();
        let inspected = self.docker.inspect_network(&network, None).await;
        let net = match inspected {
            Ok(n) => n,
            Err(e) if error::is_not_found(&e) => {
                return Err(SwarmError::NoNetwork { network });
            }
            Err(e) => return Err(self.api(&format!("inspect network {network}"), e)),
        };
        if net.driver.as_deref() != Some("overlay") || net.scope.as_deref() != Some("swarm") {
            return Err(SwarmError::NotOverlay {
                network,
                driver: net.driver.unwrap_or_default(),
            });
        }
        if net.attachable != Some(true) {
            return Err(SwarmError::NotAttachable { network });
        }
        Ok(())
    }

    /// `<app>-<seq>-<version>` (the instance id is `<app>-<seq>`), made a valid service
    /// name: letters, digits and `-`, at most 63 characters.
    fn service_name(req_id: &str, version: &str) -> String {
        let raw = format!("{req_id}-{version}");
        let mut name: String = raw
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        name.truncate(63);
        name.trim_matches('-').to_string()
    }

    /// The ids of the named secrets and configs, or which one is missing.
    async fn references(
        &self,
    ) -> Result<
        (
            Vec<TaskSpecContainerSpecSecrets>,
            Vec<TaskSpecContainerSpecConfigs>,
        ),
        SwarmError,
    > {
        let spec = self.spec();
        let mut secrets = Vec::new();
        for name in &spec.secrets {
            let filters = HashMap::from([("name", vec![name.clone()])]);
            let options = ListSecretsOptionsBuilder::new().filters(&filters).build();
            let found = self
                .docker
                .list_secrets(Some(options))
                .await
                .map_err(|e| self.api(&format!("look up secret {name}"), e))?;
            let id = found
                .into_iter()
                .find(|s| s.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(name))
                .and_then(|s| s.id)
                .ok_or_else(|| SwarmError::NoSecret {
                    kind: "secret",
                    name: name.clone(),
                })?;
            secrets.push(TaskSpecContainerSpecSecrets {
                file: Some(TaskSpecContainerSpecFile {
                    name: Some(name.clone()),
                    uid: Some("0".into()),
                    gid: Some("0".into()),
                    mode: Some(0o444),
                }),
                secret_id: Some(id),
                secret_name: Some(name.clone()),
            });
        }
        let mut configs = Vec::new();
        for name in &spec.configs {
            let filters = HashMap::from([("name", vec![name.clone()])]);
            let options = ListConfigsOptionsBuilder::new().filters(&filters).build();
            let found = self
                .docker
                .list_configs(Some(options))
                .await
                .map_err(|e| self.api(&format!("look up config {name}"), e))?;
            let id = found
                .into_iter()
                .find(|c| c.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(name))
                .and_then(|c| c.id)
                .ok_or_else(|| SwarmError::NoSecret {
                    kind: "config",
                    name: name.clone(),
                })?;
            configs.push(TaskSpecContainerSpecConfigs {
                file: Some(TaskSpecContainerSpecFile1 {
                    name: Some(format!("/{name}")),
                    uid: Some("0".into()),
                    gid: Some("0".into()),
                    mode: Some(0o444),
                }),
                config_id: Some(id),
                config_name: Some(name.clone()),
                ..Default::default()
            });
        }
        Ok((secrets, configs))
    }

    async fn service_spec(
        &self,
        req: &StartRequest,
        name: &str,
        image: &str,
    ) -> Result<ServiceSpec, SwarmError> {
        let spec = self.spec();
        let env = instance_env(&spec.env, req, spec.container_port);
        let mounts: Vec<Mount> = spec.volumes.iter().filter_map(|v| mount(v)).collect();
        let (secrets, configs) = self.references().await?;
        let labels = labels(&spec.owner, req);
        let nanos = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        Ok(ServiceSpec {
            name: Some(name.to_string()),
            labels: Some(labels.clone()),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some(image.to_string()),
                    labels: Some(labels),
                    args: spec.command.as_ref().map(|argv| {
                        argv.iter()
                            .map(|a| fill(a, req, spec.container_port))
                            .collect()
                    }),
                    env: Some(env),
                    mounts: (!mounts.is_empty()).then_some(mounts),
                    secrets: (!secrets.is_empty()).then_some(secrets),
                    configs: (!configs.is_empty()).then_some(configs),
                    stop_grace_period: Some(nanos(spec.stop_timeout)),
                    ..Default::default()
                }),
                resources: Some(TaskSpecResources {
                    limits: Some(Limit {
                        nano_cpus: spec.cpus.map(|c| (c * 1e9).round() as i64),
                        memory_bytes: spec.memory.and_then(|m| i64::try_from(m).ok()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                restart_policy: Some(TaskSpecRestartPolicy {
                    condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                    ..Default::default()
                }),
                placement: Some(TaskSpecPlacement {
                    constraints: (!spec.constraints.is_empty()).then(|| spec.constraints.clone()),
                    preferences: spec.spread.as_ref().map(|s| {
                        vec![TaskSpecPlacementPreferences {
                            spread: Some(TaskSpecPlacementSpread {
                                spread_descriptor: Some(s.clone()),
                            }),
                        }]
                    }),
                    ..Default::default()
                }),
                networks: Some(vec![NetworkAttachmentConfig {
                    target: Some(spec.network.clone()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            mode: Some(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
                ..Default::default()
            }),
            endpoint_spec: Some(EndpointSpec {
                mode: Some(EndpointSpecModeEnum::DNSRR),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    /// Sets the `baton.owner` label of service `name` to this runtime's owner.
    async fn relabel_owner(&self, name: &str) -> Result<(), SwarmError> {
        let service = self
            .docker
            .inspect_service(name, None)
            .await
            .map_err(|e| self.api(&format!("inspect service {name}"), e))?;
        let version = service.version.and_then(|v| v.index).unwrap_or(0);
        let mut spec = service.spec.unwrap_or_default();
        spec.labels
            .get_or_insert_with(HashMap::new)
            .insert(LABEL_OWNER.to_string(), self.spec().owner.clone());
        let options = bollard::query_parameters::UpdateServiceOptions {
            version: i32::try_from(version).unwrap_or(i32::MAX),
            ..Default::default()
        };
        self.docker
            .update_service(name, spec, options, None)
            .await
            .map_err(|e| self.api(&format!("relabel service {name}"), e))?;
        Ok(())
    }

    /// A node as an operator knows it: its host name and ID (the ID alone when the
    /// manager cannot say more).
    async fn node_name(&self, id: &str) -> String {
        match self.docker.inspect_node(id).await {
            Ok(node) => match node.description.and_then(|d| d.hostname) {
                Some(host) => format!("{host} ({id})"),
                None => id.to_string(),
            },
            Err(_) => id.to_string(),
        }
    }

    /// The service named `name`'s labels, if it exists.
    async fn existing(&self, name: &str) -> Result<Option<HashMap<String, String>>, SwarmError> {
        match self.docker.inspect_service(name, None).await {
            Ok(s) => Ok(Some(s.spec.and_then(|s| s.labels).unwrap_or_default())),
            Err(e) if error::is_not_found(&e) => Ok(None),
            Err(e) => Err(self.api(&format!("inspect service {name}"), e)),
        }
    }

    /// Removes a service; quiet when it is already gone.
    async fn remove_service(&self, name: &str) -> Result<(), SwarmError> {
        match self.docker.delete_service(name).await {
            Ok(()) => Ok(()),
            Err(e) if error::is_not_found(&e) => Ok(()),
            Err(e) => Err(self.api(&format!("remove service {name}"), e)),
        }
    }

    async fn task(&self, task_id: &str) -> Result<Option<serde_json::Value>, SwarmError> {
        engine::get_json(&self.host, &format!("/tasks/{task_id}"))
            .await
            .map_err(|detail| SwarmError::Api {
                host: self.host.to_string(),
                action: format!("inspect task {task_id}"),
                detail,
            })
    }

    /// Waits (at most `startup_timeout`) for the service's task to run, and returns its
    /// id, node and address on the network.
    async fn wait_running(
        &self,
        req: &StartRequest,
        service: &str,
    ) -> Result<(String, String, SocketAddr), SwarmError> {
        let spec = self.spec();
        let deadline = tokio::time::Instant::now() + spec.startup_timeout;
        let filters = HashMap::from([("service", vec![service.to_string()])]);
        let mut last = String::from("no task yet");
        loop {
            let options = ListTasksOptionsBuilder::new().filters(&filters).build();
            let tasks = self
                .docker
                .list_tasks(Some(options))
                .await
                .map_err(|e| self.api(&format!("list the tasks of service {service}"), e))?;
            if let Some(id) = tasks.iter().find_map(|t| t.id.clone()) {
                if let Some(raw) = self.task(&id).await? {
                    let view = TaskView::from_json(&raw);
                    if view.running() {
                        let ip = engine::task_address(&raw, &spec.network).ok_or_else(|| {
                            SwarmError::NoAddress {
                                instance: req.id.clone(),
                                network: spec.network.clone(),
                            }
                        })?;
                        let addr = SocketAddr::new(ip, spec.container_port);
                        return Ok((id, view.node, addr));
                    }
                    if view.ended() {
                        return Err(if view.why.contains("No such image") {
                            SwarmError::ImageMissing {
                                image: spec.image_for(&req.version),
                                node: self.node_name(&view.node).await,
                                detail: view.why.clone(),
                            }
                        } else {
                            SwarmError::TaskFailed {
                                instance: req.id.clone(),
                                detail: view.describe(),
                            }
                        });
                    }
                    last = view.describe();
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(SwarmError::NotRunning {
                    instance: req.id.clone(),
                    within: spec.startup_timeout,
                    last,
                });
            }
            tokio::time::sleep(START_POLL).await;
        }
    }

    /// Reports the instance as exited once its task stops running, unless baton is
    /// stopping it, and removes its service (its logs are read first). Polls (Swarm
    /// sends no task events).
    fn watch(&self, instance: &str, service: &str, task_id: &str) {
        let rt = self.clone();
        let instance = instance.to_string();
        let service = service.to_string();
        let task_id = task_id.to_string();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(WATCH_POLL).await;
                if rt.is_stopping(&instance) {
                    return;
                }
                let view = match rt.task(&task_id).await {
                    Ok(Some(raw)) => TaskView::from_json(&raw),
                    Ok(None) => TaskView {
                        state: "remove".into(),
                        desired: "remove".into(),
                        node: String::new(),
                        why: "the task is gone from the swarm".into(),
                        exit_code: None,
                    },
                    Err(e) => {
                        tracing::debug!(%instance, error = %e, "could not read the task; trying again");
                        continue;
                    }
                };
                if view.running() {
                    continue;
                }
                if rt.is_stopping(&instance) {
                    return;
                }
                let last_logs = rt.tail(&task_id, 20).await.unwrap_or_default();
                tracing::warn!(%instance, task = %task_id, status = %view.describe(), "swarm task ended");
                if let Err(e) = rt.remove_service(&service).await {
                    tracing::warn!(%instance, %service, error = %e, "could not remove the service of an ended task");
                }
                let _ = rt.events.send(RuntimeEvent::Exited {
                    id: instance,
                    status: view.describe(),
                    last_logs,
                });
                return;
            }
        });
    }

    fn is_stopping(&self, instance: &str) -> bool {
        self.stopping
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(instance)
    }

    async fn tail(&self, task_id: &str, max_lines: usize) -> Result<Vec<String>, SwarmError> {
        let options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .tail(&max_lines.to_string())
            .build();
        let mut stream = self.docker.task_logs(task_id, Some(options));
        let mut text = String::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(out) => text.push_str(&String::from_utf8_lossy(out.as_ref())),
                Err(e) => return Err(self.api(&format!("read the logs of task {task_id}"), e)),
            }
        }
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        let skip = lines.len().saturating_sub(max_lines);
        Ok(lines.into_iter().skip(skip).collect())
    }

    /// baton's services of `app` (by label).
    async fn services_of(&self, app: &str) -> Result<Vec<Placed>, SwarmError> {
        let filters = HashMap::from([(
            "label",
            vec![
                format!("{LABEL_OWNER}={}", self.spec().owner),
                format!("{LABEL_APP}={app}"),
            ],
        )]);
        let options = ListServicesOptionsBuilder::new().filters(&filters).build();
        let services = self
            .docker
            .list_services(Some(options))
            .await
            .map_err(|e| self.api(&format!("list the services of app {app}"), e))?;
        Ok(services
            .into_iter()
            .filter_map(|s| {
                let spec = s.spec?;
                let node = spec
                    .task_template
                    .as_ref()
                    .and_then(|t| t.placement.as_ref())
                    .and_then(|p| p.constraints.as_ref())
                    .and_then(|c| {
                        c.iter()
                            .find_map(|c| c.strip_prefix(PIN).map(str::to_string))
                    });
                let labels = spec.labels?;
                Some(Placed {
                    instance: labels.get(LABEL_INSTANCE)?.clone(),
                    version: labels.get(LABEL_VERSION).cloned().unwrap_or_default(),
                    name: spec.name?,
                    node,
                })
            })
            .collect())
    }

    /// The node a new instance of `version` is pinned to, spreading each version's
    /// instances over the ready nodes: Swarm balances the tasks of one service, but each
    /// instance is a service of its own. Picks the group (the value of the `spread`
    /// attribute, else the node itself) with the fewest tasks of this version, then that
    /// group's node with the fewest. `None` — Swarm places the task — with
    /// `constraints` (baton does not evaluate them) or fewer than two ready nodes.
    async fn pick_node(&self, app: &str, version: &str) -> Result<Option<String>, SwarmError> {
        let spec = self.spec();
        if !spec.constraints.is_empty() {
            return Ok(None);
        }
        let nodes = self
            .docker
            .list_nodes(None::<bollard::query_parameters::ListNodesOptions>)
            .await
            .map_err(|e| self.api("list the swarm's nodes", e))?;
        let ready: Vec<(String, String)> = nodes
            .into_iter()
            .filter(|n| {
                n.status.as_ref().and_then(|s| s.state) == Some(NodeState::READY)
                    && n.spec.as_ref().and_then(|s| s.availability)
                        == Some(NodeSpecAvailabilityEnum::ACTIVE)
            })
            .filter_map(|n| {
                let group = spread_group(&n, spec.spread.as_deref());
                Some((n.id?, group))
            })
            .collect();
        if ready.len() < 2 {
            return Ok(None);
        }
        // Counted from the services' own pins, which exist as soon as a service does
        // (its task may not yet).
        let mut per_node: HashMap<String, usize> = HashMap::new();
        for placed in self.services_of(app).await? {
            if let (true, Some(node)) = (placed.version == version, placed.node) {
                *per_node.entry(node).or_default() += 1;
            }
        }
        Ok(least_loaded(&ready, &per_node))
    }
}

/// The value of the spread attribute (`node.labels.X`, `engine.labels.X`) on `node`;
/// the node's own id when there is none.
fn spread_group(node: &bollard::models::Node, spread: Option<&str>) -> String {
    let own = || node.id.clone().unwrap_or_default();
    let Some(descriptor) = spread else {
        return own();
    };
    let value = if let Some(key) = descriptor.strip_prefix("node.labels.") {
        node.spec
            .as_ref()
            .and_then(|s| s.labels.as_ref())
            .and_then(|l| l.get(key))
            .cloned()
    } else if let Some(key) = descriptor.strip_prefix("engine.labels.") {
        node.description
            .as_ref()
            .and_then(|d| d.engine.as_ref())
            .and_then(|e| e.labels.as_ref())
            .and_then(|l| l.get(key))
            .cloned()
    } else {
        None
    };
    value
        .map(|v| format!("{descriptor}={v}"))
        .unwrap_or_else(own)
}

/// Of `nodes` (id, group), the one in the group with the fewest tasks, and the fewest
/// itself within it; ties go to the smaller group name and node id.
fn least_loaded(nodes: &[(String, String)], per_node: &HashMap<String, usize>) -> Option<String> {
    let count = |id: &String| per_node.get(id).copied().unwrap_or(0);
    let mut per_group: BTreeMap<&str, usize> = BTreeMap::new();
    for (id, group) in nodes {
        *per_group.entry(group).or_default() += count(id);
    }
    nodes
        .iter()
        .min_by(|(a, ga), (b, gb)| {
            (per_group[ga.as_str()], ga, count(a), a).cmp(&(
                per_group[gb.as_str()],
                gb,
                count(b),
                b,
            ))
        })
        .map(|(id, _)| id.clone())
}

/// `source:target[:ro|:rw]` as a Swarm mount: a bind mount when the source is a path,
/// else a named volume.
fn mount(volume: &str) -> Option<Mount> {
    let parts: Vec<&str> = volume.split(':').collect();
    let (source, target, read_only) = match parts.as_slice() {
        [s, t] => (*s, *t, false),
        [s, t, mode] => (*s, *t, *mode == "ro"),
        _ => return None,
    };
    Some(Mount {
        source: Some(source.to_string()),
        target: Some(target.to_string()),
        typ: Some(if source.starts_with('/') {
            MountType::BIND
        } else {
            MountType::VOLUME
        }),
        read_only: Some(read_only),
        ..Default::default()
    })
}

/// The service identity in a handle.
fn swarm_detail(handle: &InstanceHandle) -> Result<(&str, &str), RuntimeError> {
    match &handle.detail {
        HandleDetail::Swarm {
            service_name,
            task_id,
            ..
        } => Ok((service_name, task_id)),
        other => Err(RuntimeError::WrongKind {
            id: handle.id.clone(),
            expected: "swarm",
            found: other.kind(),
        }),
    }
}

#[async_trait]
impl Runtime for SwarmRuntime {
    fn kind(&self) -> &'static str {
        "swarm"
    }

    async fn start(&self, req: StartRequest) -> Result<InstanceHandle, RuntimeError> {
        validate_app_name(&req.app)?;
        validate_version(&req.version)?;
        validate_version(&req.id)?;
        let name = Self::service_name(&req.id, &req.version);
        match self.existing(&name).await? {
            None => {}
            // Only a start cut short by a crash leaves one of baton's own.
            Some(labels)
                if labels.get(LABEL_OWNER) == Some(&self.spec().owner)
                    && labels.get(LABEL_INSTANCE) == Some(&req.id) =>
            {
                self.remove_service(&name).await?;
            }
            Some(_) => return Err(SwarmError::NameClash { service: name }.into()),
        }
        let image = self.spec().image_for(&req.version);
        let mut body = self.service_spec(&req, &name, &image).await?;
        let placing = self.placing.lock().await;
        if let Some(node) = self.pick_node(&req.app, &req.version).await? {
            if let Some(placement) = body
                .task_template
                .as_mut()
                .and_then(|t| t.placement.as_mut())
            {
                placement
                    .constraints
                    .get_or_insert_with(Vec::new)
                    .push(format!("{PIN}{node}"));
            }
        }
        let created = self
            .docker
            .create_service(body, None)
            .await
            .map_err(|e| self.api(&format!("create service {name}"), e))?;
        drop(placing);
        let service_id = created.id.unwrap_or_else(|| name.clone());
        let (task_id, node_id, addr) = match self.wait_running(&req, &name).await {
            Ok(found) => found,
            Err(e) => {
                // Nothing of a failed start stays on the swarm.
                if let Err(removal) = self.remove_service(&name).await {
                    tracing::warn!(service = %name, error = %removal, "could not remove the service of a failed start");
                }
                return Err(e.into());
            }
        };
        let handle = InstanceHandle {
            id: req.id,
            app: req.app,
            version: req.version,
            addr,
            started_at: Millis::now(),
            detail: HandleDetail::Swarm {
                service_id,
                service_name: name.clone(),
                task_id: task_id.clone(),
                node_id: node_id.clone(),
                image,
            },
        };
        self.watch(&handle.id, &name, &task_id);
        tracing::info!(app = %handle.app, version = %handle.version, instance = %handle.id, service = %name, task = %task_id, node = %node_id, %addr, "swarm service started");
        Ok(handle)
    }

    async fn stop(&self, handle: &InstanceHandle) -> Result<(), RuntimeError> {
        let (name, task_id) = swarm_detail(handle)?;
        self.stopping
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(handle.id.clone());
        tracing::info!(instance = %handle.id, service = %name, "removing swarm service");
        let removed = self.remove_service(name).await;
        // Swarm stops the task after the removal returns: wait (bounded) until it has
        // ended, so that a stopped instance no longer runs.
        let deadline =
            tokio::time::Instant::now() + self.spec().stop_timeout + Duration::from_secs(10);
        while removed.is_ok() && tokio::time::Instant::now() < deadline {
            match self.task(task_id).await {
                Ok(Some(raw)) if !TaskView::from_json(&raw).state.eq("running") => break,
                Ok(None) => break,
                _ => tokio::time::sleep(START_POLL).await,
            }
        }
        self.stopping
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&handle.id);
        removed.map_err(RuntimeError::from)
    }

    async fn adopt(&self, handle: &InstanceHandle) -> Result<bool, RuntimeError> {
        let (name, task_id) = swarm_detail(handle)?;
        let Some(labels) = self.existing(name).await? else {
            return Ok(false);
        };
        let owner = self.spec().owner.clone();
        if labels.get(LABEL_INSTANCE) != Some(&handle.id)
            || labels.get(LABEL_APP) != Some(&handle.app)
        {
            return Ok(false);
        }
        match labels.get(LABEL_OWNER) {
            Some(o) if *o == owner => {}
            // The record names this service, made under another owner: the controller
            // moved from `state = "local"` (owner: its store path) to `state = "swarm"`
            // (owner: shared by every controller). It is relabelled, so that it is found
            // as this controller's from now on (a label change restarts no task).
            Some(previous) => {
                tracing::info!(instance = %handle.id, service = %name, %previous, %owner, "adopting a service made under another owner");
                self.relabel_owner(name).await?;
            }
            None => return Ok(false),
        }
        let running = match self.task(task_id).await? {
            Some(raw) => TaskView::from_json(&raw).running(),
            None => false,
        };
        if running {
            self.watch(&handle.id, name, task_id);
        }
        Ok(running)
    }

    async fn logs(
        &self,
        handle: &InstanceHandle,
        max_lines: usize,
    ) -> Result<Vec<String>, RuntimeError> {
        let (_, task_id) = swarm_detail(handle)?;
        Ok(self.tail(task_id, max_lines).await?)
    }

    async fn prepare(&self, _app: &str, version: &str) -> Result<(), RuntimeError> {
        validate_version(version)?;
        Ok(self.check().await?)
    }

    async fn remove_strays(
        &self,
        app: &str,
        known: &HashSet<String>,
    ) -> Result<Vec<String>, RuntimeError> {
        self.check().await?;
        let mut removed = Vec::new();
        for placed in self.services_of(app).await? {
            if known.contains(&placed.instance) {
                continue;
            }
            self.remove_service(&placed.name).await?;
            removed.push(placed.name);
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_are_valid_and_name_app_instance_and_version() {
        assert_eq!(SwarmRuntime::service_name("web-7", "v2"), "web-7-v2");
        assert_eq!(
            SwarmRuntime::service_name("web-7", "1.4.0_rc1"),
            "web-7-1-4-0-rc1"
        );
        let long = SwarmRuntime::service_name(&"a".repeat(60), "v2");
        assert!(long.len() <= 63, "{long}");
    }

    #[test]
    fn a_new_instance_goes_to_the_least_loaded_group_then_node() {
        let nodes = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(n, g)| (n.to_string(), g.to_string()))
                .collect()
        };
        let counts = |list: &[(&str, usize)]| -> HashMap<String, usize> {
            list.iter().map(|(n, c)| (n.to_string(), *c)).collect()
        };
        // One group per node: the node with the fewest tasks, ties to the smaller id.
        let three = nodes(&[("n1", "n1"), ("n2", "n2"), ("n3", "n3")]);
        assert_eq!(least_loaded(&three, &counts(&[])).as_deref(), Some("n1"));
        assert_eq!(
            least_loaded(&three, &counts(&[("n1", 1)])).as_deref(),
            Some("n2")
        );
        assert_eq!(
            least_loaded(&three, &counts(&[("n1", 1), ("n2", 1)])).as_deref(),
            Some("n3")
        );
        // Zones: zone b (one node, empty) before zone a's emptier node.
        let zones = nodes(&[("n1", "zone=a"), ("n2", "zone=a"), ("n3", "zone=b")]);
        assert_eq!(
            least_loaded(&zones, &counts(&[("n1", 1)])).as_deref(),
            Some("n3")
        );
        assert_eq!(
            least_loaded(&zones, &counts(&[("n1", 1), ("n3", 1)])).as_deref(),
            Some("n2")
        );
        assert_eq!(least_loaded(&[], &counts(&[])), None);
    }

    #[test]
    fn mounts_from_volume_strings() {
        let bind = mount("/srv/data:/data:ro").unwrap();
        assert_eq!(bind.typ, Some(MountType::BIND));
        assert_eq!(bind.read_only, Some(true));
        let volume = mount("cache:/cache").unwrap();
        assert_eq!(volume.typ, Some(MountType::VOLUME));
        assert_eq!(volume.read_only, Some(false));
        assert!(mount("nonsense").is_none());
    }

    #[test]
    fn task_states_read_from_the_engine() {
        let running = serde_json::json!({
            "NodeID": "abcdefghijklmnop",
            "DesiredState": "running",
            "Status": {"State": "running", "Message": "started"}
        });
        let v = TaskView::from_json(&running);
        assert!(v.running() && !v.ended());
        let rejected = serde_json::json!({
            "NodeID": "abcdefghijklmnop",
            "DesiredState": "shutdown",
            "Status": {"State": "rejected", "Err": "No such image: app:v9"}
        });
        let v = TaskView::from_json(&rejected);
        assert!(!v.running() && v.ended());
        assert_eq!(
            v.describe(),
            "task is rejected on node abcdefghijkl: No such image: app:v9"
        );
        let crashed = serde_json::json!({
            "NodeID": "n1",
            "DesiredState": "shutdown",
            "Status": {"State": "failed", "Err": "task: non-zero exit (3)", "ContainerStatus": {"ExitCode": 3}}
        });
        assert_eq!(
            TaskView::from_json(&crashed).describe(),
            "task is failed on node n1, exit status 3: task: non-zero exit (3)"
        );
        let preparing = serde_json::json!({
            "DesiredState": "running",
            "Status": {"State": "preparing"}
        });
        let v = TaskView::from_json(&preparing);
        assert!(!v.running() && !v.ended());
    }
}
