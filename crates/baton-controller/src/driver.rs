//! Each app's runtime, built from its `[apps.X]` settings, with what `baton reload`
//! needs to change those settings later: instances started from then on use the new
//! ones, running instances keep theirs.

use crate::ControlError;
use baton_config::{AppConfig, RuntimeKind};
use baton_runtime::{
    DockerRuntime, ProcessRuntime, ProcessSpec, Runtime, RuntimeEvent, SwarmRuntime,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::mpsc;

/// An app's runtime and the handle to replace its settings.
#[derive(Clone)]
pub(crate) struct Driver {
    pub runtime: Arc<dyn Runtime>,
    respec: Respec,
    /// Where instance logs go, and the owner mark (the store path).
    log_dir: PathBuf,
    owner: String,
}

#[derive(Clone)]
enum Respec {
    Process(ProcessRuntime),
    Docker(DockerRuntime),
    Swarm(SwarmRuntime),
    /// Nothing to replace: the operator names the instances.
    Fixed,
}

// === impl Driver ===

impl Driver {
    /// The runtime of app `name`; instances that exit on their own are reported on
    /// `events`.
    pub fn build(
        name: &str,
        cfg: &AppConfig,
        log_dir: &Path,
        owner: &str,
        events: mpsc::UnboundedSender<RuntimeEvent>,
    ) -> Result<Driver, ControlError> {
        let (runtime, respec): (Arc<dyn Runtime>, Respec) = match cfg.runtime {
            RuntimeKind::Process => {
                let rt = ProcessRuntime::new(process_spec(name, cfg, log_dir, owner)?, events);
                (Arc::new(rt.clone()), Respec::Process(rt))
            }
            RuntimeKind::Static => (Arc::new(baton_runtime::StaticRuntime::new()), Respec::Fixed),
            RuntimeKind::Docker => {
                let rt = crate::docker::runtime(name, cfg, owner, events)?;
                (Arc::new(rt.clone()), Respec::Docker(rt))
            }
            RuntimeKind::Swarm => {
                let rt = crate::swarm::runtime(name, cfg, owner, events)?;
                (Arc::new(rt.clone()), Respec::Swarm(rt))
            }
        };
        Ok(Driver {
            runtime,
            respec,
            log_dir: log_dir.to_path_buf(),
            owner: owner.to_string(),
        })
    }

    /// New settings of the same runtime kind, for instances started from now on.
    pub fn respec(&self, name: &str, cfg: &AppConfig) -> Result<(), ControlError> {
        match &self.respec {
            Respec::Process(rt) => {
                rt.set_spec(process_spec(name, cfg, &self.log_dir, &self.owner)?);
            }
            Respec::Docker(rt) => rt.set_spec(crate::docker::spec(name, cfg, &self.owner)?),
            Respec::Swarm(rt) => rt.set_spec(crate::swarm::spec(name, cfg, &self.owner)?),
            Respec::Fixed => {}
        }
        Ok(())
    }
}

fn process_spec(
    name: &str,
    cfg: &AppConfig,
    log_dir: &Path,
    owner: &str,
) -> Result<ProcessSpec, ControlError> {
    let Some(command) = cfg.command.clone() else {
        return Err(ControlError::BadRequest(format!(
            "[apps.{name}] uses runtime = \"process\" but has no `command`"
        )));
    };
    let mut env = cfg.env.clone();
    env.insert("BATON_OWNER".into(), owner.to_string());
    Ok(ProcessSpec {
        command,
        cwd: cfg.cwd.clone(),
        env,
        ports: cfg.ports,
        stop_timeout: cfg.stop_timeout.get(),
        log_dir: log_dir.to_path_buf(),
        log_max_bytes: 1 << 20,
    })
}

/// The checks of `[apps.X.hooks]` only a runtime can answer, for `baton validate` and
/// `serve`: whether the app's runtime runs one-off tasks at all (asked, never inferred
/// from its name), and whether each hook's command can run there (the process runtime:
/// the program exists and is executable). Each issue is (key path, message).
pub fn check_hooks(cfg: &baton_config::Config) -> Vec<(Vec<String>, String)> {
    let mut issues = Vec::new();
    for (name, app) in &cfg.apps {
        let hooks: Vec<_> = app.hooks.runtime_hooks().collect();
        if hooks.is_empty() {
            continue;
        }
        let (events, _) = mpsc::unbounded_channel();
        let Ok(driver) = Driver::build(name, app, &cfg.base_dir, "validate", events) else {
            // The config's own checks report what keeps the runtime from being built.
            continue;
        };
        let runtime = driver.runtime;
        for (hook, command) in hooks {
            let at = vec![
                "apps".into(),
                name.clone(),
                "hooks".into(),
                hook.as_str().into(),
            ];
            if !runtime.one_off_tasks() {
                issues.push((
                    at,
                    format!(
                        "`{hook}` in [apps.{name}.hooks]: the {} runtime cannot run one-off tasks \
                         (baton does not run this app's instances); remove the hook, or run the \
                         migration where the instances run",
                        runtime.kind()
                    ),
                ));
                continue;
            }
            if let Err(why) = runtime.check_task(command) {
                issues.push((
                    at,
                    format!(
                        "`{hook}` in [apps.{name}.hooks] cannot run: {why}; give the program's full \
                         path, or install it"
                    ),
                ));
            }
        }
    }
    issues
}
