//! One-off tasks of the docker runtime: a container from the new version's image with the
//! instances' environment, volumes and network (no published port), the hook command as
//! its entrypoint, labelled like an instance (`baton.instance` = the task's name, plus
//! `baton.task`) so a restarted baton removes one left running. It is waited for (at most
//! the timeout), its output tail read, and it is removed.

use super::{error, image, DockerRuntime, DockerSpec, LABEL_TASK};
use crate::task::{tail_of, TaskOutput, TaskRequest, TASK_TAIL_LINES};
use crate::{RuntimeError, StartRequest};
use bollard::query_parameters::CreateContainerOptionsBuilder;
use futures_util::StreamExt;

pub(crate) async fn run(rt: &DockerRuntime, req: TaskRequest) -> Result<TaskOutput, RuntimeError> {
    let image = rt.spec().image_for(&req.version);
    image::ensure_present(rt, &req.app, &image, false).await?;
    let as_start = StartRequest {
        id: req.name.clone(),
        app: req.app.clone(),
        version: req.version.clone(),
        target: None,
    };
    let argv: Vec<String> = DockerSpec::split_command(&req.command)?
        .iter()
        .map(|a| rt.fill(a, &as_start))
        .collect();
    let mut body = rt.body(&as_start, &image, None);
    body.entrypoint = Some(argv[..1].to_vec());
    body.cmd = Some(argv[1..].to_vec());
    body.exposed_ports = None;
    if let Some(env) = body.env.as_mut() {
        env.extend(req.env.iter().map(|(k, v)| format!("{k}={v}")));
    }
    if let Some(labels) = body.labels.as_mut() {
        labels.insert(LABEL_TASK.to_string(), "hook".to_string());
    }
    let name = rt.container_name(&req.app, &req.name);
    // Left by a baton killed while it ran: this run replaces it.
    rt.remove_quietly(&name).await;
    let options = CreateContainerOptionsBuilder::new().name(&name).build();
    let id = rt
        .docker
        .create_container(Some(options), body)
        .await
        .map_err(|e| rt.api(&format!("create task container {name}"), e))?
        .id;
    if let Err(e) = rt.docker.start_container(&id, None).await {
        rt.remove_quietly(&id).await;
        return Err(rt.api(&format!("start task container {name}"), e).into());
    }
    tracing::info!(app = %req.app, task = %req.name, container = %id, "task container started");
    let waited = tokio::time::timeout(req.timeout, wait(rt, &id)).await;
    let (exit_code, timed_out) = match waited {
        Ok(Ok(code)) => (Some(code), false),
        Ok(Err(e)) => {
            rt.remove_quietly(&id).await;
            return Err(e);
        }
        Err(_) => (None, true),
    };
    let tail = rt
        .tail(&id, TASK_TAIL_LINES)
        .await
        .map(|lines| tail_of(&lines.join("\n")))
        .unwrap_or_default();
    rt.remove_quietly(&id).await;
    Ok(TaskOutput {
        exit_code,
        timed_out,
        tail,
    })
}

/// The container's exit code, once it exits.
async fn wait(rt: &DockerRuntime, id: &str) -> Result<i32, RuntimeError> {
    let mut stream = rt.docker.wait_container(id, None);
    match stream.next().await {
        Some(Ok(r)) => Ok(i32::try_from(r.status_code).unwrap_or(i32::MAX)),
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
            Ok(i32::try_from(code).unwrap_or(i32::MAX))
        }
        Some(Err(e)) if error::is_not_found(&e) => Ok(-1),
        Some(Err(e)) => Err(rt.api(&format!("wait for task container {id}"), e).into()),
        None => Ok(-1),
    }
}
