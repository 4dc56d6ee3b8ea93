//! After a baton restart: re-adopt the containers the record owns (same container id,
//! still running, carrying this baton's labels) and remove the ones no record owns.

use super::LABEL_VERSION;
use super::{docker_detail, DockerRuntime, LABEL_APP, LABEL_INSTANCE, LABEL_OWNER};
use crate::{InstanceHandle, RuntimeError};
use bollard::query_parameters::ListContainersOptionsBuilder;
use std::collections::{HashMap, HashSet};

pub(super) async fn adopt(
    rt: &DockerRuntime,
    handle: &InstanceHandle,
) -> Result<bool, RuntimeError> {
    let (id, name) = docker_detail(handle)?;
    if rt.state.is_watched(&handle.id) {
        return Ok(true);
    }
    let Some(c) = rt.inspect(id).await? else {
        tracing::info!(instance = %handle.id, container = %name, "not adopted: the container is gone");
        return Ok(false);
    };
    let labels = c
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default();
    let label = |k: &str| labels.get(k).map(String::as_str);
    let ours = label(LABEL_OWNER) == Some(rt.spec().owner.as_str())
        && label(LABEL_APP) == Some(handle.app.as_str())
        && label(LABEL_VERSION) == Some(handle.version.as_str())
        && label(LABEL_INSTANCE) == Some(handle.id.as_str());
    if !ours {
        // Not ours to remove either: leave it alone.
        tracing::warn!(instance = %handle.id, container = %id, "not adopted: the container carries another owner's labels");
        return Ok(false);
    }
    let running = c.state.as_ref().and_then(|s| s.running) == Some(true);
    let port = rt.spec().network.is_none().then(|| handle.addr.port());
    let same_addr = rt.address(&c, port) == Some(handle.addr);
    if !running || !same_addr {
        tracing::info!(instance = %handle.id, container = %name, running, "not adopted: the container stopped or moved; removing it");
        rt.remove_quietly(id).await;
        return Ok(false);
    }
    rt.watch(&handle.id, id, port);
    tracing::info!(instance = %handle.id, container = %name, "adopted running container");
    Ok(true)
}

pub(super) async fn remove_strays(
    rt: &DockerRuntime,
    app: &str,
    known: &HashSet<String>,
) -> Result<Vec<String>, RuntimeError> {
    let filters = HashMap::from([(
        "label",
        vec![
            format!("{LABEL_OWNER}={}", rt.spec().owner),
            format!("{LABEL_APP}={app}"),
        ],
    )]);
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    let list = rt
        .docker
        .list_containers(Some(options))
        .await
        .map_err(|e| rt.api("list baton's containers", e))?;
    let mut removed = Vec::new();
    for c in list {
        let Some(id) = c.id else { continue };
        let instance = c
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_INSTANCE))
            .cloned()
            .unwrap_or_default();
        if known.contains(&instance) {
            continue;
        }
        tracing::warn!(%instance, container = %id, "removing a container no record owns");
        rt.remove_quietly(&id).await;
        removed.push(instance);
    }
    Ok(removed)
}
