//! The docker runtime's wiring: `[apps.X]` keys become a `DockerSpec`, and the check run
//! before a deployment starts (the image of the target version is on the engine).

use crate::ControlError;
use baton_config::{parse_memory, AppConfig, PullPolicy};
use baton_runtime::{DockerRuntime, DockerSpec, Pull, Runtime, RuntimeEvent};
use tokio::sync::mpsc;

/// A docker runtime for app `name`; its containers are labelled with `owner` (the store
/// path). The engine is first contacted during recovery, which fails start-up with the
/// socket path and the fix if it does not answer.
pub(crate) fn runtime(
    name: &str,
    cfg: &AppConfig,
    owner: &str,
    events: mpsc::UnboundedSender<RuntimeEvent>,
) -> Result<DockerRuntime, ControlError> {
    let spec = spec(name, cfg, owner)?;
    let runtime = DockerRuntime::new(spec, events).map_err(baton_runtime::RuntimeError::from)?;
    Ok(runtime)
}

/// The `DockerSpec` of app `name` (`baton reload` replaces a running runtime's with it).
pub(crate) fn spec(name: &str, cfg: &AppConfig, owner: &str) -> Result<DockerSpec, ControlError> {
    let bad = |what: String| ControlError::BadRequest(format!("[apps.{name}]: {what}"));
    let image = cfg
        .image
        .clone()
        .ok_or_else(|| bad("runtime = \"docker\" needs `image`".into()))?;
    let container_port = cfg
        .container_port
        .ok_or_else(|| bad("runtime = \"docker\" needs `container_port`".into()))?;
    let command = cfg
        .command
        .as_deref()
        .map(DockerSpec::split_command)
        .transpose()?;
    let memory = cfg
        .memory
        .as_deref()
        .map(parse_memory)
        .transpose()
        .map_err(bad)?;
    let spec = DockerSpec {
        env: cfg.env.clone(),
        volumes: cfg.volumes.clone(),
        network: cfg.network.clone(),
        command,
        memory,
        cpus: cfg.cpus,
        pull: match cfg.pull {
            PullPolicy::Never => Pull::Never,
            PullPolicy::Missing => Pull::Missing,
            PullPolicy::Always => Pull::Always,
        },
        wait_healthcheck: cfg.wait_healthcheck,
        startup_timeout: cfg.health.startup_timeout.get(),
        ports: cfg.ports,
        stop_timeout: cfg.stop_timeout.get(),
        ..DockerSpec::new(image, container_port, owner)
    };
    Ok(spec)
}

/// Run before a deployment of `version` is accepted: what the runtime needs to start it
/// (for docker, the image) must be there, or the request fails with nothing changed.
pub(crate) async fn preflight(
    runtime: &dyn Runtime,
    app: &str,
    version: &str,
) -> Result<(), ControlError> {
    runtime.prepare(app, version).await.map_err(|e| {
        tracing::warn!(%app, %version, error = %e, "deployment refused before it started");
        ControlError::Runtime(e)
    })
}
