//! What can go wrong talking to the Docker Engine, with what to do about it.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum DockerError {
    #[error("cannot reach the Docker Engine at {host}: {detail}; start Docker (e.g. `systemctl start docker`), or point DOCKER_HOST at its socket (e.g. DOCKER_HOST=unix:///var/run/docker.sock), and make sure this user may use it (root or the `docker` group)")]
    Unreachable { host: String, detail: String },

    #[error("image {image} is not present on this engine; build or pull it first (or set pull = \"missing\" in [apps.{app}] to let baton pull it)")]
    ImageMissing { app: String, image: String },

    #[error("could not pull image {image}: {detail}; check the image name and tag and that the engine can reach its registry (or build it locally and leave pull = \"never\")")]
    Pull { image: String, detail: String },

    #[error("the container of instance {instance} {status} right after starting{}", show_logs(.logs))]
    ExitedAtStart {
        instance: String,
        status: String,
        logs: Vec<String>,
    },

    #[error("the container of instance {instance} is not healthy: {detail}")]
    Unhealthy { instance: String, detail: String },

    #[error("the container of instance {instance} has no address on network {network:?}: check that the network exists (`docker network ls`) and is a bridge or overlay network")]
    NoAddress { instance: String, network: String },

    #[error("Docker Engine at {host}: could not {action}: {detail}")]
    Api {
        host: String,
        action: String,
        detail: String,
    },
}

impl DockerError {
    /// An engine that does not answer at all is `Unreachable` (with the fix); an error
    /// the engine sent is `Api`.
    pub(crate) fn api(host: &str, action: &str, e: bollard::errors::Error) -> DockerError {
        let detail = describe(&e);
        if is_connection(&e) {
            return DockerError::Unreachable {
                host: host.to_string(),
                detail: format!("could not {action}: {detail}"),
            };
        }
        DockerError::Api {
            host: host.to_string(),
            action: action.to_string(),
            detail,
        }
    }
}

fn show_logs(logs: &[String]) -> String {
    if logs.is_empty() {
        "; it printed nothing".into()
    } else {
        format!("; its last output:\n  {}", logs.join("\n  "))
    }
}

/// The engine's own message when it sent one, the client error otherwise.
pub(crate) fn describe(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

fn status(e: &bollard::errors::Error) -> Option<u16> {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// No answer from the engine at all (as opposed to an error it sent).
fn is_connection(e: &bollard::errors::Error) -> bool {
    use bollard::errors::Error as E;
    !matches!(
        e,
        E::DockerResponseServerError { .. }
            | E::DockerContainerWaitError { .. }
            | E::JsonDataError { .. }
    )
}

pub(crate) fn is_not_found(e: &bollard::errors::Error) -> bool {
    status(e) == Some(404)
}

pub(crate) fn is_not_modified(e: &bollard::errors::Error) -> bool {
    status(e) == Some(304)
}

pub(crate) fn is_removal_in_progress(e: &bollard::errors::Error) -> bool {
    status(e) == Some(409) && describe(e).contains("in progress")
}

/// The host port picked for publishing was taken between picking and starting.
pub(crate) fn is_port_clash(e: &bollard::errors::Error) -> bool {
    let m = describe(e);
    m.contains("port is already allocated") || m.contains("address already in use")
}
