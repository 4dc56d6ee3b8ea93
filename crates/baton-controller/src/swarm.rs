//! The swarm runtime's wiring: `[apps.X]` keys and `[apps.X.swarm]` become a
//! `SwarmSpec`. The manager is first contacted during recovery (listing baton's services),
//! which fails start-up with the socket and the fix if it does not answer or is not a
//! manager.

use crate::ControlError;
use baton_config::{parse_memory, AppConfig};
use baton_runtime::{DockerSpec, RuntimeEvent, SwarmRuntime, SwarmSpec};
use tokio::sync::mpsc;

/// A swarm runtime for app `name`; its services are labelled with `owner`.
pub(crate) fn runtime(
    name: &str,
    cfg: &AppConfig,
    owner: &str,
    events: mpsc::UnboundedSender<RuntimeEvent>,
) -> Result<SwarmRuntime, ControlError> {
    let spec = spec(name, cfg, owner)?;
    let runtime = SwarmRuntime::new(spec, events).map_err(baton_runtime::RuntimeError::from)?;
    Ok(runtime)
}

/// The `SwarmSpec` of app `name` (`baton reload` replaces a running runtime's with it).
pub(crate) fn spec(name: &str, cfg: &AppConfig, owner: &str) -> Result<SwarmSpec, ControlError> {
    let bad = |what: String| ControlError::BadRequest(format!("[apps.{name}]: {what}"));
    let image = cfg
        .image
        .clone()
        .ok_or_else(|| bad("runtime = \"swarm\" needs `image`".into()))?;
    let container_port = cfg
        .container_port
        .ok_or_else(|| bad("runtime = \"swarm\" needs `container_port`".into()))?;
    let network = cfg
        .network
        .clone()
        .ok_or_else(|| bad("runtime = \"swarm\" needs `network` (an attachable overlay)".into()))?;
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
    Ok(SwarmSpec {
        env: cfg.env.clone(),
        volumes: cfg.volumes.clone(),
        command,
        memory,
        cpus: cfg.cpus,
        constraints: cfg.swarm.constraints.clone(),
        spread: cfg.swarm.spread.clone(),
        secrets: cfg.swarm.secrets.clone(),
        configs: cfg.swarm.configs.clone(),
        startup_timeout: cfg.health.startup_timeout.get(),
        stop_timeout: cfg.stop_timeout.get(),
        ..SwarmSpec::new(image, container_port, network, owner)
    })
}
