//! The executor's side of hooks: running one through the app's runtime (its output to
//! the log and back to the reconciler), `pre_stop` before a drain, and the operator's
//! `on_event` command on baton's own host.

use crate::model::Event as Note;
use baton_runtime::{Runtime, TaskOutput, TaskRequest};
use std::process::Stdio;
use std::time::Duration;

/// Runs a release / post_switch hook; `Err` when it could not be run at all.
pub(super) async fn run(runtime: &dyn Runtime, req: TaskRequest) -> Result<TaskOutput, String> {
    let (app, name, timeout) = (req.app.clone(), req.name.clone(), req.timeout);
    tracing::info!(%app, task = %name, command = %req.command, "running hook");
    let result = runtime.run_task(req).await.map_err(|e| e.to_string());
    match &result {
        Ok(o) => {
            for line in &o.tail {
                tracing::info!(%app, task = %name, "hook: {line}");
            }
            tracing::info!(%app, task = %name, result = %o.describe(timeout), "hook finished");
        }
        Err(error) => tracing::warn!(%app, task = %name, %error, "hook could not run"),
    }
    result
}

/// `pre_stop` for instance `id`: a failure is logged and the stop proceeds.
pub(super) async fn pre_stop(runtime: &dyn Runtime, app: &str, id: &str, req: TaskRequest) {
    let timeout = req.timeout;
    match runtime.run_task(req).await {
        Ok(o) if o.succeeded() => {
            tracing::info!(%app, instance = %id, "pre_stop hook finished");
        }
        Ok(o) => {
            let last = o.tail.last().cloned().unwrap_or_default();
            tracing::warn!(%app, instance = %id, result = %o.describe(timeout), %last, "pre_stop hook failed; stopping anyway");
        }
        Err(error) => {
            tracing::warn!(%app, instance = %id, %error, "pre_stop hook could not run; stopping anyway")
        }
    }
}

/// `on_event`: `sh -c COMMAND` on baton's host with the event in `BATON_EVENT_KIND`,
/// `BATON_EVENT_APP`, `BATON_EVENT_DEPLOYMENT`, `BATON_EVENT_MESSAGE`, `BATON_EVENT_AT`
/// (ms since the epoch) and as JSON in `BATON_EVENT_JSON`. Killed after `timeout`.
pub(super) async fn on_event(command: String, event: Note, timeout: Duration) {
    let json = serde_json::to_string(&event).unwrap_or_default();
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(&command)
        .env("BATON_EVENT_KIND", &event.kind)
        .env("BATON_EVENT_APP", &event.app)
        .env(
            "BATON_EVENT_DEPLOYMENT",
            event.deployment.as_deref().unwrap_or_default(),
        )
        .env("BATON_EVENT_MESSAGE", &event.message)
        .env("BATON_EVENT_AT", event.at.0.to_string())
        .env("BATON_EVENT_JSON", json)
        // Not an instance: never taken for an orphan of this baton.
        .env_remove("BATON_INSTANCE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(error) => {
            tracing::warn!(app = %event.app, %error, "on_event hook could not start");
            return;
        }
    };
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) if out.status.success() => {}
        Ok(Ok(out)) => {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err.lines().last().unwrap_or_default();
            tracing::warn!(app = %event.app, kind = %event.kind, status = %out.status, %last, "on_event hook failed");
        }
        Ok(Err(error)) => tracing::warn!(app = %event.app, %error, "on_event hook failed"),
        Err(_) => {
            tracing::warn!(app = %event.app, kind = %event.kind, "on_event hook timed out; killed")
        }
    }
}
