//! The docker runtime: each instance is one container on the Docker Engine, driven through
//! its HTTP API (bollard), never the docker CLI. A container carries the labels
//! `baton.owner` (the store path), `baton.app`, `baton.version` and `baton.instance`, so a
//! restarted baton finds its own containers, re-adopts the ones its record owns and
//! removes the others. Its port is published on 127.0.0.1 at a port picked from the app's
//! range, or — with a `network` — it is reached at its address on that network.

mod adopt;
mod error;
mod image;
mod task;
mod watch;

pub use error::DockerError;

use crate::{
    HandleDetail, InstanceHandle, Runtime, RuntimeError, RuntimeEvent, StartRequest, TaskOutput,
    TaskRequest,
};
use async_trait::async_trait;
use baton_core::{validate_app_name, validate_version, Millis, PortRange};
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, EndpointSettings, HealthStatusEnum, HostConfig,
    NetworkingConfig, PortBinding,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Label keys every baton container carries.
pub(crate) const LABEL_OWNER: &str = "baton.owner";
pub(crate) const LABEL_APP: &str = "baton.app";
pub(crate) const LABEL_VERSION: &str = "baton.version";
pub(crate) const LABEL_INSTANCE: &str = "baton.instance";
/// On one-off task containers (hooks): what kind of task.
pub(crate) const LABEL_TASK: &str = "baton.task";

/// The engine's usual socket, used when `DOCKER_HOST` is not set.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// How often a port clash on publish is retried with another port.
const PUBLISH_ATTEMPTS: usize = 5;

/// Whether baton pulls the image (`pull` in `[apps.X]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pull {
    /// The image must already be on the engine.
    #[default]
    Never,
    /// Pulled when the engine lacks it.
    Missing,
    /// Pulled before every deployment.
    Always,
}

/// How one app's containers are run (`[apps.X]` with `runtime = "docker"`).
#[derive(Debug, Clone, PartialEq)]
pub struct DockerSpec {
    /// Image template; `{version}` becomes the deployed version.
    pub image: String,
    /// The port the app listens on inside the container.
    pub container_port: u16,
    /// Extra environment; values may use `{version}` `{app}` `{instance}` `{port}`.
    pub env: BTreeMap<String, String>,
    /// Docker bind syntax: `host_path:container_path[:ro]` or `volume:container_path`.
    pub volumes: Vec<String>,
    /// Attach to this network and reach the container at its address there.
    pub network: Option<String>,
    /// Overrides the image's CMD (already split; placeholders as in `env`).
    pub command: Option<Vec<String>>,
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// CPU limit in CPUs.
    pub cpus: Option<f64>,
    pub pull: Pull,
    /// Also wait for the image's HEALTHCHECK to say healthy before `start` returns.
    pub wait_healthcheck: bool,
    /// How long that wait may take.
    pub startup_timeout: Duration,
    /// Host ports for publishing (when no `network` is set).
    pub ports: PortRange,
    /// Docker stop's grace period before SIGKILL.
    pub stop_timeout: Duration,
    /// Who owns the containers: the store path (the `baton.owner` label).
    pub owner: String,
}

impl DockerSpec {
    /// Defaults for everything but the image, the container port and the owner.
    pub fn new(image: impl Into<String>, container_port: u16, owner: impl Into<String>) -> Self {
        DockerSpec {
            image: image.into(),
            container_port,
            env: BTreeMap::new(),
            volumes: Vec::new(),
            network: None,
            command: None,
            memory: None,
            cpus: None,
            pull: Pull::Never,
            wait_healthcheck: false,
            startup_timeout: Duration::from_secs(60),
            ports: PortRange::default(),
            stop_timeout: Duration::from_secs(10),
            owner: owner.into(),
        }
    }

    /// Splits a `command` override like a shell does (`serve --port {port}`).
    pub fn split_command(command: &str) -> Result<Vec<String>, RuntimeError> {
        let bad = |reason: String| RuntimeError::BadCommand {
            command: command.to_string(),
            reason,
        };
        let argv = shell_words::split(command).map_err(|e| bad(e.to_string()))?;
        if argv.is_empty() {
            return Err(bad(
                "it is empty: remove `command` to run the image's own CMD".into(),
            ));
        }
        Ok(argv)
    }

    /// The image reference for `version`.
    pub fn image_for(&self, version: &str) -> String {
        self.image.replace("{version}", version)
    }
}

/// Runs instances as Docker containers.
#[derive(Debug, Clone)]
pub struct DockerRuntime {
    docker: Docker,
    /// Where the engine is (`unix:///var/run/docker.sock`), for messages.
    host: Arc<str>,
    /// Shared by clones; replaced by `set_spec` (`baton reload`).
    spec: Arc<std::sync::RwLock<Arc<DockerSpec>>>,
    events: mpsc::UnboundedSender<RuntimeEvent>,
    state: Arc<watch::State>,
}

// === impl DockerRuntime ===

impl DockerRuntime {
    /// A client for the engine named by `DOCKER_HOST` (default the local socket). Nothing
    /// is sent yet: the first call (at start-up, listing baton's containers) tells whether
    /// the engine answers.
    pub fn new(
        spec: DockerSpec,
        events: mpsc::UnboundedSender<RuntimeEvent>,
    ) -> Result<DockerRuntime, DockerError> {
        Self::with_host(&default_host(), spec, events)
    }

    /// Like [`DockerRuntime::new`], for the engine at `host` (`unix:///path` or
    /// `tcp://host:port`).
    pub fn with_host(
        host: &str,
        spec: DockerSpec,
        events: mpsc::UnboundedSender<RuntimeEvent>,
    ) -> Result<DockerRuntime, DockerError> {
        let docker = Docker::connect_with_host(host).map_err(|e| DockerError::Unreachable {
            host: host.to_string(),
            detail: e.to_string(),
        })?;
        Ok(DockerRuntime {
            docker,
            host: host.into(),
            spec: Arc::new(std::sync::RwLock::new(Arc::new(spec))),
            events,
            state: Arc::default(),
        })
    }

    /// Checks that the engine answers (bounded), naming the socket and the fix if not,
    /// and settles on the API version both sides speak (an older engine refuses a newer
    /// client's version). Called before anything else is asked of the engine.
    pub async fn ping(&self) -> Result<(), DockerError> {
        let unreachable = |detail: String| DockerError::Unreachable {
            host: self.host.to_string(),
            detail,
        };
        // Clones share the negotiated version with `self.docker`.
        let negotiate = self.docker.clone().negotiate_version();
        match tokio::time::timeout(Duration::from_secs(10), negotiate).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(unreachable(error::describe(&e))),
            Err(_) => Err(unreachable("no answer within 10s".into())),
        }
    }

    /// The spec in force.
    pub(crate) fn spec(&self) -> Arc<DockerSpec> {
        self.spec.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces how containers are created (`baton reload`): containers started from now
    /// on use `spec`; running ones keep theirs.
    pub fn set_spec(&self, spec: DockerSpec) {
        *self.spec.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(spec);
    }

    /// The engine client (tests and tools use it to look at baton's containers).
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    fn api(&self, action: &str, e: bollard::errors::Error) -> DockerError {
        DockerError::api(&self.host, action, e)
    }

    /// `baton-<app>-<instance>-<owner hash>`: unique per engine even when several batons
    /// (different stores) run an app of the same name.
    fn container_name(&self, app: &str, instance: &str) -> String {
        format!(
            "baton-{app}-{instance}-{:08x}",
            fnv32(self.spec().owner.as_bytes())
        )
    }

    fn fill(&self, template: &str, req: &StartRequest) -> String {
        fill(template, req, self.spec().container_port)
    }

    fn body(&self, req: &StartRequest, image: &str, host_port: Option<u16>) -> ContainerCreateBody {
        let spec = self.spec();
        let exposed = format!("{}/tcp", spec.container_port);
        let env = instance_env(&spec.env, req, spec.container_port);
        let port_bindings = host_port.map(|p| {
            HashMap::from([(
                exposed.clone(),
                Some(vec![PortBinding {
                    host_ip: Some(Ipv4Addr::LOCALHOST.to_string()),
                    host_port: Some(p.to_string()),
                }]),
            )])
        });
        let host_config = HostConfig {
            port_bindings,
            binds: (!spec.volumes.is_empty()).then(|| spec.volumes.clone()),
            memory: spec.memory.and_then(|m| i64::try_from(m).ok()),
            nano_cpus: spec.cpus.map(|c| (c * 1e9).round() as i64),
            network_mode: spec.network.clone(),
            ..HostConfig::default()
        };
        let networking_config = spec.network.as_ref().map(|n| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(n.clone(), EndpointSettings::default())])),
        });
        ContainerCreateBody {
            image: Some(image.to_string()),
            cmd: spec
                .command
                .as_ref()
                .map(|argv| argv.iter().map(|a| self.fill(a, req)).collect()),
            env: Some(env),
            exposed_ports: Some(vec![exposed]),
            labels: Some(labels(&spec.owner, req)),
            stop_timeout: Some(secs(spec.stop_timeout)),
            host_config: Some(host_config),
            networking_config,
            ..ContainerCreateBody::default()
        }
    }

    /// Creates and starts the container, retrying on another host port when the one
    /// picked was taken meanwhile. Returns the container id and the host port.
    async fn create_and_start(
        &self,
        req: &StartRequest,
        name: &str,
        image: &str,
    ) -> Result<(String, Option<u16>), RuntimeError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = match self.spec().network {
                Some(_) => None,
                None => Some(
                    self.state
                        .reserve_port(&req.id, &req.app, self.spec().ports)?,
                ),
            };
            let options = CreateContainerOptionsBuilder::new().name(name).build();
            let created = self
                .docker
                .create_container(Some(options), self.body(req, image, port))
                .await;
            let id = match created {
                Ok(c) => c.id,
                Err(e) => {
                    self.state.release_port(&req.id);
                    return Err(self.api(&format!("create container {name}"), e).into());
                }
            };
            match self.docker.start_container(&id, None).await {
                Ok(()) => return Ok((id, port)),
                Err(e) => {
                    self.remove_quietly(&id).await;
                    let clash = error::is_port_clash(&e);
                    if clash && attempt < PUBLISH_ATTEMPTS {
                        tracing::info!(instance = %req.id, ?port, "host port taken meanwhile; trying another");
                        self.state.avoid_port(&req.id);
                        continue;
                    }
                    self.state.release_port(&req.id);
                    return Err(self.api(&format!("start container {name}"), e).into());
                }
            }
        }
    }

    async fn inspect(&self, id: &str) -> Result<Option<ContainerInspectResponse>, DockerError> {
        match self.docker.inspect_container(id, None).await {
            Ok(c) => Ok(Some(c)),
            Err(e) if error::is_not_found(&e) => Ok(None),
            Err(e) => Err(self.api(&format!("inspect container {id}"), e)),
        }
    }

    /// Where the proxy reaches the container: the published loopback port, or its address
    /// on the configured network.
    fn address(&self, c: &ContainerInspectResponse, host_port: Option<u16>) -> Option<SocketAddr> {
        if let Some(p) = host_port {
            return Some(SocketAddr::from((Ipv4Addr::LOCALHOST, p)));
        }
        let spec = self.spec();
        let network = spec.network.as_ref()?;
        let ip: IpAddr = c
            .network_settings
            .as_ref()?
            .networks
            .as_ref()?
            .get(network)?
            .ip_address
            .as_ref()?
            .parse()
            .ok()?;
        Some(SocketAddr::new(ip, self.spec().container_port))
    }

    /// Stops (ignoring "already stopped") and removes a container; quiet on failure.
    async fn remove_quietly(&self, id: &str) {
        let options = RemoveContainerOptionsBuilder::new().force(true).build();
        if let Err(e) = self.docker.remove_container(id, Some(options)).await {
            if !error::is_not_found(&e) && !error::is_removal_in_progress(&e) {
                tracing::warn!(container = %id, error = %error::describe(&e), "could not remove container");
            }
        }
    }

    async fn tail(&self, id: &str, max_lines: usize) -> Result<Vec<String>, DockerError> {
        let options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .tail(&max_lines.to_string())
            .build();
        let mut stream = self.docker.logs(id, Some(options));
        let mut text = String::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(out) => text.push_str(&String::from_utf8_lossy(out.as_ref())),
                Err(e) => return Err(self.api(&format!("read the logs of container {id}"), e)),
            }
        }
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        let skip = lines.len().saturating_sub(max_lines);
        Ok(lines.into_iter().skip(skip).collect())
    }

    /// The container's end as a sentence, and its last output.
    async fn post_mortem(&self, id: &str) -> (String, Vec<String>) {
        let state = self.inspect(id).await.ok().flatten().and_then(|c| c.state);
        let status = match state {
            Some(s) if s.oom_killed == Some(true) => {
                "was killed for exceeding its memory limit (OOM)".to_string()
            }
            Some(s) => match (s.exit_code, s.error.filter(|e| !e.is_empty())) {
                (_, Some(err)) => format!("failed: {err}"),
                (Some(code), None) => format!("exited with status {code}"),
                (None, None) => "stopped".to_string(),
            },
            None => "is gone".to_string(),
        };
        let logs = self.tail(id, 20).await.unwrap_or_default();
        (status, logs)
    }

    /// `wait_healthcheck`: polls until the image's HEALTHCHECK says healthy; an image
    /// without one passes at once.
    async fn wait_healthy(&self, req: &StartRequest, id: &str) -> Result<(), DockerError> {
        let deadline = tokio::time::Instant::now() + self.spec().startup_timeout;
        loop {
            let c = self.inspect(id).await?;
            let state = c.and_then(|c| c.state);
            let running = state.as_ref().and_then(|s| s.running) == Some(true);
            let health = state
                .as_ref()
                .and_then(|s| s.health.as_ref())
                .and_then(|h| h.status);
            if !running {
                let (status, logs) = self.post_mortem(id).await;
                return Err(DockerError::ExitedAtStart {
                    instance: req.id.clone(),
                    status,
                    logs,
                });
            }
            match health {
                None | Some(HealthStatusEnum::NONE | HealthStatusEnum::EMPTY) => return Ok(()),
                Some(HealthStatusEnum::HEALTHY) => return Ok(()),
                Some(HealthStatusEnum::UNHEALTHY) => {
                    return Err(DockerError::Unhealthy {
                        instance: req.id.clone(),
                        detail: "the image's HEALTHCHECK reports unhealthy".into(),
                    })
                }
                Some(HealthStatusEnum::STARTING) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(DockerError::Unhealthy {
                    instance: req.id.clone(),
                    detail: format!(
                        "the image's HEALTHCHECK did not report healthy within {:?} (health.startup_timeout)",
                        self.spec().startup_timeout
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// After create + start: the container must still run; then its address.
    async fn settle(
        &self,
        req: &StartRequest,
        id: &str,
        port: Option<u16>,
    ) -> Result<SocketAddr, RuntimeError> {
        let c = self.inspect(id).await?;
        let running = c
            .as_ref()
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.running)
            == Some(true);
        if !running {
            let (status, logs) = self.post_mortem(id).await;
            return Err(DockerError::ExitedAtStart {
                instance: req.id.clone(),
                status,
                logs,
            }
            .into());
        }
        let addr = c.as_ref().and_then(|c| self.address(c, port));
        let Some(addr) = addr else {
            return Err(DockerError::NoAddress {
                instance: req.id.clone(),
                network: self.spec().network.clone().unwrap_or_default(),
            }
            .into());
        };
        if self.spec().wait_healthcheck {
            self.wait_healthy(req, id).await?;
        }
        Ok(addr)
    }
}

/// The labels of an instance's container or service.
pub(crate) fn labels(owner: &str, req: &StartRequest) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_OWNER.to_string(), owner.to_string()),
        (LABEL_APP.to_string(), req.app.clone()),
        (LABEL_VERSION.to_string(), req.version.clone()),
        (LABEL_INSTANCE.to_string(), req.id.clone()),
    ])
}

/// `template` with `{version}` `{app}` `{instance}` `{port}` replaced.
pub(crate) fn fill(template: &str, req: &StartRequest, port: u16) -> String {
    template
        .replace("{version}", &req.version)
        .replace("{app}", &req.app)
        .replace("{instance}", &req.id)
        .replace("{port}", &port.to_string())
}

/// An instance's environment: `extra` (placeholders filled), then `PORT`, `BATON_APP`,
/// `BATON_VERSION` and `BATON_INSTANCE` unless `extra` sets them.
pub(crate) fn instance_env(
    extra: &BTreeMap<String, String>,
    req: &StartRequest,
    port: u16,
) -> Vec<String> {
    let mut env: Vec<String> = extra
        .iter()
        .map(|(k, v)| format!("{k}={}", fill(v, req, port)))
        .collect();
    for (k, v) in [
        ("PORT", port.to_string()),
        ("BATON_APP", req.app.clone()),
        ("BATON_VERSION", req.version.clone()),
        ("BATON_INSTANCE", req.id.clone()),
    ] {
        if !extra.contains_key(k) {
            env.push(format!("{k}={v}"));
        }
    }
    env
}

/// `DOCKER_HOST` if set, else the usual local socket.
pub fn default_host() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_HOST.to_string())
}

/// Whole seconds, rounded up, for the engine's integer timeouts.
fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_millis().div_ceil(1000)).unwrap_or(i64::MAX)
}

/// FNV-1a: a short stable tag of the owner for container names (not for security).
fn fnv32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// The container identity in a handle.
fn docker_detail(handle: &InstanceHandle) -> Result<(&str, &str), RuntimeError> {
    match &handle.detail {
        HandleDetail::Docker {
            container_id,
            container_name,
            ..
        } => Ok((container_id, container_name)),
        other => Err(RuntimeError::WrongKind {
            id: handle.id.clone(),
            expected: "docker",
            found: other.kind(),
        }),
    }
}

#[async_trait]
impl Runtime for DockerRuntime {
    fn kind(&self) -> &'static str {
        "docker"
    }

    async fn start(&self, req: StartRequest) -> Result<InstanceHandle, RuntimeError> {
        validate_app_name(&req.app)?;
        validate_version(&req.version)?;
        validate_version(&req.id)?;
        let image = self.spec().image_for(&req.version);
        image::ensure_present(self, &req.app, &image, false).await?;
        let name = self.container_name(&req.app, &req.id);
        // A container of that name can only be left from a start cut short by a crash.
        self.remove_quietly(&name).await;
        let (id, port) = self.create_and_start(&req, &name, &image).await?;
        let addr = match self.settle(&req, &id, port).await {
            Ok(addr) => addr,
            Err(e) => {
                self.remove_quietly(&id).await;
                self.state.release_port(&req.id);
                return Err(e);
            }
        };
        let handle = InstanceHandle {
            id: req.id,
            app: req.app,
            version: req.version,
            addr,
            started_at: Millis::now(),
            detail: HandleDetail::Docker {
                container_id: id.clone(),
                container_name: name,
                image,
            },
        };
        self.watch(&handle.id, &id, port);
        tracing::info!(app = %handle.app, version = %handle.version, instance = %handle.id, container = %id, %addr, "container started");
        Ok(handle)
    }

    async fn stop(&self, handle: &InstanceHandle) -> Result<(), RuntimeError> {
        let (id, name) = docker_detail(handle)?;
        self.state.mark_stopping(&handle.id);
        tracing::info!(instance = %handle.id, container = %name, "stopping container");
        let options = StopContainerOptionsBuilder::new()
            .t(i32::try_from(secs(self.spec().stop_timeout)).unwrap_or(i32::MAX))
            .build();
        let stopped = self.docker.stop_container(id, Some(options)).await;
        let result = match stopped {
            Ok(()) => Ok(()),
            Err(e) if error::is_not_found(&e) || error::is_not_modified(&e) => Ok(()),
            Err(e) => Err(self.api(&format!("stop container {name}"), e)),
        };
        let options = RemoveContainerOptionsBuilder::new().force(true).build();
        let removed = match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if error::is_not_found(&e) || error::is_removal_in_progress(&e) => Ok(()),
            Err(e) => Err(self.api(&format!("remove container {name}"), e)),
        };
        self.state.forget(&handle.id);
        result.and(removed).map_err(RuntimeError::from)
    }

    fn one_off_tasks(&self) -> bool {
        true
    }

    fn check_task(&self, command: &str) -> Result<(), String> {
        // The program is inside the image: only the engine can tell, when it runs.
        DockerSpec::split_command(command)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn run_task(&self, req: TaskRequest) -> Result<TaskOutput, RuntimeError> {
        validate_app_name(&req.app)?;
        validate_version(&req.version)?;
        validate_version(&req.name)?;
        task::run(self, req).await
    }

    async fn adopt(&self, handle: &InstanceHandle) -> Result<bool, RuntimeError> {
        adopt::adopt(self, handle).await
    }

    async fn logs(
        &self,
        handle: &InstanceHandle,
        max_lines: usize,
    ) -> Result<Vec<String>, RuntimeError> {
        let (id, _) = docker_detail(handle)?;
        Ok(self.tail(id, max_lines).await?)
    }

    async fn prepare(&self, app: &str, version: &str) -> Result<(), RuntimeError> {
        validate_version(version)?;
        let image = self.spec().image_for(version);
        image::ensure_present(self, app, &image, true).await?;
        let spec = self.spec();
        if spec.network.is_none() && !self.state.any_port_free(spec.ports) {
            return Err(RuntimeError::PortsExhausted {
                range: spec.ports,
                app: app.to_string(),
            });
        }
        Ok(())
    }

    async fn remove_strays(
        &self,
        app: &str,
        known: &HashSet<String>,
    ) -> Result<Vec<String>, RuntimeError> {
        self.ping().await?;
        adopt::remove_strays(self, app, known).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_images() {
        let spec = DockerSpec::new("myorg/app:{version}", 8080, "/srv/.baton/state");
        assert_eq!(spec.image_for("v3"), "myorg/app:v3");
        assert_eq!(secs(Duration::from_millis(2500)), 3);
        assert_eq!(fnv32(b"a"), fnv32(b"a"));
        assert_ne!(fnv32(b"/a/state"), fnv32(b"/b/state"));
    }
}
