//! What can go wrong driving a Swarm manager, each with what to do about it. A start
//! that fails leaves nothing on the swarm (the service it made is removed).

use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SwarmError {
    #[error("cannot reach the Docker Engine at {host}: {detail}; point DOCKER_HOST at a swarm manager's socket (e.g. DOCKER_HOST=unix:///var/run/docker.sock) and make sure this user may use it")]
    Unreachable { host: String, detail: String },

    #[error("the Docker Engine at {host} is not part of a swarm: run `docker swarm init` there (or join it to your swarm as a manager), or use runtime = \"docker\" for containers on this engine alone")]
    NotInSwarm { host: String },

    #[error("the Docker Engine at {host} is a swarm worker, not a manager: only managers create services; point DOCKER_HOST at a manager (`docker node ls` on a manager lists them under MANAGER STATUS) or promote this node with `docker node promote`")]
    NotManager { host: String },

    #[error("network {network:?} does not exist in the swarm: create it with `docker network create --driver overlay --attachable {network}`, or name an existing one in `network`")]
    NoNetwork { network: String },

    #[error("network {network:?} is a {driver:?} network, not a swarm overlay: baton reaches swarm tasks on an attachable overlay; create one with `docker network create --driver overlay --attachable NAME` and name it in `network`")]
    NotOverlay { network: String, driver: String },

    #[error("network {network:?} is not attachable: baton's proxies join it to reach the tasks; create an attachable overlay (`docker network create --driver overlay --attachable NAME`) and name it in `network` (an existing network cannot be made attachable)")]
    NotAttachable { network: String },

    #[error("a service named {service} already exists on the swarm and is not this baton's instance: remove or rename that service, or rename the app")]
    NameClash { service: String },

    #[error("the swarm has no {kind} named {name:?}: create it (`docker {kind} create {name} FILE`) or remove it from [apps.X.swarm]")]
    NoSecret { kind: &'static str, name: String },

    #[error("image {image} is missing on node {node}: {detail}; every node that may run a task needs the image: push it to a registry the nodes can pull from, or load it on each node (`docker save {image} | docker -H NODE load`), or keep tasks off that node with `constraints`")]
    ImageMissing {
        image: String,
        node: String,
        detail: String,
    },

    #[error("the task of instance {instance} did not start: {detail}")]
    TaskFailed { instance: String, detail: String },

    #[error("the task of instance {instance} was not running within {within:?} (health.startup_timeout); last seen: {last}")]
    NotRunning {
        instance: String,
        within: Duration,
        last: String,
    },

    #[error("the task of instance {instance} has no address on network {network:?}")]
    NoAddress { instance: String, network: String },

    #[error("this controller no longer holds the controller lease ({why}): another controller acts now; this one stops (restart it to stand by)")]
    LeaseLost { why: String },

    #[error("swarm manager at {host}: could not {action}: {detail}")]
    Api {
        host: String,
        action: String,
        detail: String,
    },
}

impl SwarmError {
    pub(crate) fn api(host: &str, action: &str, e: bollard::errors::Error) -> SwarmError {
        match crate::docker::DockerError::api(host, action, e) {
            crate::docker::DockerError::Unreachable { host, detail } => {
                SwarmError::Unreachable { host, detail }
            }
            other => SwarmError::Api {
                host: host.to_string(),
                action: action.to_string(),
                detail: match other {
                    crate::docker::DockerError::Api { detail, .. } => detail,
                    o => o.to_string(),
                },
            },
        }
    }
}

/// 404 from the engine.
pub(crate) fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}
