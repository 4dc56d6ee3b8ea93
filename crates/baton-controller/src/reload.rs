//! `baton reload` across apps: decide whether a new configuration can be applied now,
//! then apply it — new settings to the apps that stay, actors for the apps added,
//! routes replaced, and the apps removed unrouted, drained, stopped and retired.
//!
//! All or nothing: every check (a rollout in progress in an app that changes or goes, a
//! runtime change for an app with instances, a runtime that cannot be built) runs
//! before the first change, while deploys and operator requests wait (`gate`). The
//! listeners and the proxy's own settings are the server's (`baton/src/reload.rs`).
//!
//! What a removed app leaves: its record stays in the store as retired (no instances,
//! no stable version; history and id sequence kept), so `history` still answers after it
//! is added back, and it comes back empty, like a new app.

use crate::controller::{log_dir, owner, routes_of, start_app, AppHandle, Live};
use crate::driver::Driver;
use crate::shared::Shared;
use crate::{ControlError, Controller};
use baton_config::{AppConfig, Config, ConfigDiff};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// What a reload did (or, for a dry run, would do).
#[derive(Debug, Clone, Default)]
pub struct ReloadOutcome {
    pub diff: ConfigDiff,
    /// Whether anything was applied (false for a dry run and when nothing changed).
    pub applied: bool,
    /// Removed apps and the instances drained and stopped for each.
    pub stopped: BTreeMap<String, Vec<String>>,
    /// A dry run only: why the reload would be refused now.
    pub refused: Option<String>,
    /// Anything that went wrong after the point of no return (the rest was applied).
    pub warnings: Vec<String>,
}

/// The checked plan: what changes for which app.
struct Plan {
    diff: ConfigDiff,
    /// Apps that stay, with their new settings.
    changed: Vec<(String, AppConfig)>,
    /// Apps that go (including those whose runtime kind changes: they go and come back).
    removed: Vec<String>,
    /// Apps that come (including those whose runtime kind changes).
    added: Vec<String>,
}

// === impl Controller ===

impl Controller {
    /// The difference from the configuration in force to `new`, and whether applying it
    /// would be refused now. Changes nothing.
    pub async fn check_reload(&self, new: &Config) -> Result<ReloadOutcome, ControlError> {
        let live = self.live();
        let shared = live.shared.clone().ok_or(ControlError::Suspended)?;
        let old = self.boot.config();
        let mut outcome = ReloadOutcome {
            diff: baton_config::diff(&old, new),
            ..ReloadOutcome::default()
        };
        if let Err(e) = plan(&live, &shared, &old, new) {
            outcome.refused = Some(e.to_string());
        }
        Ok(outcome)
    }

    /// Applies `new` (already validated, listeners already bound by the server). Refused
    /// with nothing changed when a check fails; see the module doc.
    pub async fn reload(&self, new: &Config) -> Result<ReloadOutcome, ControlError> {
        let _turn = self.transition.lock().await;
        let gate = self.gate.write().await;
        let live = self.live();
        let shared = live.shared.clone().ok_or(ControlError::Suspended)?;
        let old = self.boot.config();
        let (plan, drivers) = plan(&live, &shared, &old, new)?;
        let mut outcome = ReloadOutcome {
            diff: plan.diff.clone(),
            applied: plan.diff.applies_anything(),
            ..ReloadOutcome::default()
        };
        if !outcome.applied {
            return Ok(outcome);
        }
        reconfigure_all(&live, &plan.changed).await?;
        // From here on nothing is refused: the rest is applied, and what fails is said.
        let warnings = &mut outcome.warnings;
        let mut apps = live.apps.clone();
        respec_all(&mut apps, &plan.changed, warnings);
        let retiring = retire_all(&shared, &mut apps, &plan, warnings).await;
        let actors = start_all(&shared, &mut apps, new, drivers, warnings).await;
        if let Err(e) = shared.routes.set_routes(routes_of(new)) {
            warnings.push(format!(
                "the new routes were refused ({e}); the previous ones serve"
            ));
        }
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Live {
            shared: Some(shared),
            apps,
        });
        self.actors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(actors);
        self.boot.set_config(in_force(&old, new));
        drop(gate);
        // The removed apps' instances drain (up to their `drain_timeout`) and stop while
        // deploys of the other apps go on.
        for (name, reply) in retiring {
            match answer(reply).await {
                Ok(ids) => {
                    outcome.stopped.insert(name, ids);
                }
                Err(e) => outcome.warnings.push(format!("retiring {name}: {e}")),
            }
        }
        for w in &outcome.warnings {
            tracing::error!("reload: {w}");
        }
        tracing::info!(diff = %plan.diff, "configuration reloaded");
        Ok(outcome)
    }
}

/// An added app's runtime and the receiving end of its event channel.
type NewDriver = (Driver, mpsc::UnboundedReceiver<baton_runtime::RuntimeEvent>);

/// The changed apps' runtimes take their new settings, for instances started from now on.
fn respec_all(
    apps: &mut BTreeMap<String, AppHandle>,
    changed: &[(String, AppConfig)],
    warnings: &mut Vec<String>,
) {
    for (name, cfg) in changed {
        if let Some(h) = apps.get_mut(name) {
            if let Err(e) = h.driver.respec(name, cfg) {
                warnings.push(format!("{name}: {e}"));
            }
            h.cfg = cfg.clone();
        }
    }
}

/// Unroutes the removed apps (one publish), tells their actors to retire and takes them
/// out of `apps`. An app whose runtime changes goes and comes back under the same name:
/// its old actor (with no instances) is waited for here. Returns the other answers to
/// wait for.
async fn retire_all(
    shared: &Shared,
    apps: &mut BTreeMap<String, AppHandle>,
    plan: &Plan,
    warnings: &mut Vec<String>,
) -> Vec<(String, Result<Retiring, ControlError>)> {
    if let Err(e) = shared.routes.retire(&plan.removed) {
        warnings.push(format!("unrouting {:?}: {e}", plan.removed));
    }
    let mut later = Vec::new();
    for name in &plan.removed {
        let Some(h) = apps.remove(name) else {
            continue;
        };
        let reply = retire(&h).await;
        if plan.added.contains(name) {
            if let Err(e) = answer(reply).await {
                warnings.push(format!("restarting {name} on its new runtime: {e}"));
            }
        } else {
            later.push((name.clone(), reply));
        }
    }
    later
}

/// Starts the actors of the added apps (their routing is published; the routes naming
/// them come after).
async fn start_all(
    shared: &Arc<Shared>,
    apps: &mut BTreeMap<String, AppHandle>,
    new: &Config,
    drivers: Vec<(String, NewDriver)>,
    warnings: &mut Vec<String>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut actors = Vec::new();
    for (name, (driver, events)) in drivers {
        let Some(cfg) = new.apps.get(&name) else {
            continue;
        };
        shared.routes.unretire(&name);
        match start_app(shared, &name, cfg, driver, events).await {
            Ok((handle, task)) => {
                apps.insert(name, handle);
                actors.push(task);
            }
            Err(e) => warnings.push(format!("adding {name}: {e}")),
        }
    }
    actors
}

/// Checks everything a reload from `old` to `new` needs, and builds the runtimes of the
/// apps that come (with their event channels), so that nothing can fail for them later.
fn plan(
    live: &Live,
    shared: &Shared,
    old: &Config,
    new: &Config,
) -> Result<(Plan, Vec<(String, NewDriver)>), ControlError> {
    let diff = baton_config::diff(old, new);
    let mut plan = Plan {
        changed: Vec::new(),
        removed: diff.apps_removed.clone(),
        added: diff.apps_added.clone(),
        diff,
    };
    for name in plan.diff.changed_apps() {
        let (Some(h), Some(cfg)) = (live.apps.get(name), new.apps.get(name)) else {
            continue;
        };
        if cfg.runtime != h.cfg.runtime {
            refuse_runtime_change(name, h, cfg)?;
            plan.removed.push(name.to_string());
            plan.added.push(name.to_string());
        } else {
            plan.changed.push((name.to_string(), cfg.clone()));
        }
    }
    let touched = plan
        .changed
        .iter()
        .map(|(n, _)| n.as_str())
        .chain(plan.removed.iter().map(String::as_str));
    for name in touched {
        if let Some(h) = live.apps.get(name) {
            refuse_during_rollout(name, h)?;
        }
    }
    let mut drivers = Vec::new();
    for name in &plan.added {
        let Some(cfg) = new.apps.get(name) else {
            continue;
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let driver = Driver::build(name, cfg, &log_dir(shared), &owner(shared), tx)
            .map_err(|e| refused(format!("cannot add {name}: {e}")))?;
        drivers.push((name.clone(), (driver, rx)));
    }
    Ok((plan, drivers))
}

/// The configuration in force after applying `new`: what a reload does not apply (the
/// admin, cluster and store sections, the worker threads, passive ejection, a `[proxy.tls.acme]`
/// that was there already: the running ACME client keeps its settings) keeps its old
/// value, so the next reload still reports it, and `resume` after a failed upgrade
/// reopens the store in use.
fn in_force(old: &Config, new: &Config) -> Config {
    let mut cfg = new.clone();
    cfg.admin = old.admin.clone();
    cfg.store = old.store.clone();
    cfg.cluster = old.cluster.clone();
    cfg.proxy.workers = old.proxy.workers;
    if old.proxy.tls.acme.is_some() {
        cfg.proxy.tls.acme = old.proxy.tls.acme.clone();
    }
    for (name, app) in &mut cfg.apps {
        if let Some(before) = old.apps.get(name) {
            app.health.eject_after = before.health.eject_after;
            app.health.eject_time = before.health.eject_time;
        }
    }
    cfg
}

fn refused(why: String) -> ControlError {
    ControlError::ReloadRefused(format!("{why}. Nothing was changed."))
}

fn refuse_during_rollout(name: &str, h: &AppHandle) -> Result<(), ControlError> {
    let view = h.view.borrow();
    let Some(d) = &view.record.deployment else {
        return Ok(());
    };
    Err(refused(format!(
        "{name} has a rollout in progress ({}: {} by {}): a reload cannot change or remove an \
         app mid-rollout. Wait for it to finish (`baton status {name}`) or stop it with \
         `baton abort {name}`, then reload again",
        d.id, d.version, d.strategy
    )))
}

/// A runtime kind change restarts the app from empty: only when nothing of it runs.
fn refuse_runtime_change(name: &str, h: &AppHandle, cfg: &AppConfig) -> Result<(), ControlError> {
    let view = h.view.borrow();
    let running = view.record.instances.len();
    if running == 0 && view.record.deployment.is_none() {
        return Ok(());
    }
    Err(refused(format!(
        "{name} changes runtime from {} to {} while {running} instance(s) run: baton cannot \
         move running instances between runtimes. Keep the runtime, or add the app under a \
         new name, deploy it, move its hosts over and remove {name}",
        h.cfg.runtime, cfg.runtime
    )))
}

/// Sends every changed app its new settings; if one refuses (a rollout began after the
/// checks), the others get their old settings back and the reload is refused.
async fn reconfigure_all(live: &Live, changed: &[(String, AppConfig)]) -> Result<(), ControlError> {
    let mut done: Vec<&str> = Vec::new();
    for (name, cfg) in changed {
        let Some(h) = live.apps.get(name) else {
            continue;
        };
        match reconfigure(h, cfg.clone()).await {
            Ok(()) => done.push(name),
            Err(e) => {
                for back in done {
                    if let Some(h) = live.apps.get(back) {
                        if let Err(e) = reconfigure(h, h.cfg.clone()).await {
                            tracing::error!(app = back, error = %e, "could not restore settings after a refused reload");
                        }
                    }
                }
                return Err(e);
            }
        }
    }
    Ok(())
}

async fn reconfigure(h: &AppHandle, cfg: AppConfig) -> Result<(), ControlError> {
    let tx = h.tx.clone().ok_or(ControlError::Suspended)?;
    let (reply, rx) = oneshot::channel();
    tx.send(crate::actor::Msg::Reconfigure {
        cfg: Box::new(cfg),
        reply,
    })
    .await
    .map_err(|_| ControlError::ShuttingDown)?;
    rx.await.map_err(|_| ControlError::ShuttingDown)?
}

/// An actor's answer to `Retire`: the instances it stopped.
type Retiring = oneshot::Receiver<Result<Vec<String>, ControlError>>;

/// Tells an app's actor to retire (its actor ends once the handles are gone).
async fn retire(h: &AppHandle) -> Result<Retiring, ControlError> {
    let (reply, rx) = oneshot::channel();
    match &h.tx {
        Some(tx) => tx
            .send(crate::actor::Msg::Retire { reply })
            .await
            .map(|()| rx)
            .map_err(|_| ControlError::ShuttingDown),
        None => Err(ControlError::Suspended),
    }
}

async fn answer(r: Result<Retiring, ControlError>) -> Result<Vec<String>, ControlError> {
    r?.await.map_err(|_| ControlError::ShuttingDown)?
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cfg(text: &str) -> Config {
        baton_config::parse(text, Path::new("/srv/baton.toml")).unwrap()
    }

    #[test]
    fn a_new_acme_section_is_in_force_and_a_changed_one_is_not() {
        let base = "[proxy]\ntls_listen = [\"127.0.0.1:8443\"]\n[proxy.tls.acme]\n{ACME}\
                    [apps.web]\ncommand = \"w {port}\"\nhosts = [\"a.test\"]\ntls = \"acme\"\n";
        let none = cfg("[apps.web]\ncommand = \"w {port}\"\n");
        let first = cfg(&base.replace("{ACME}", ""));
        // Started by the reload: in force.
        assert_eq!(in_force(&none, &first).proxy.tls.acme, first.proxy.tls.acme);
        // Changed: needs an upgrade, so the running settings stay and are reported again.
        let changed = cfg(&base.replace("{ACME}", "renew_before = \"45d\"\n"));
        let kept = in_force(&first, &changed);
        assert_eq!(kept.proxy.tls.acme, first.proxy.tls.acme);
        assert_eq!(
            baton_config::diff(&kept, &changed).not_applied(),
            ["[proxy] tls.acme.renew_before"]
        );
    }

    #[test]
    fn what_a_reload_does_not_apply_stays_in_force_and_is_reported_again() {
        let old = cfg("[proxy]\nworkers = 1\n[apps.web]\ncommand = \"w {port}\"\n");
        let new = cfg(
            "[proxy]\nworkers = 2\nconnect_timeout = \"1s\"\n[store]\npath = \"other\"\n\
             [apps.web]\ncommand = \"w {port}\"\n[apps.web.health]\neject_after = 1\ninterval = \"2s\"\n",
        );
        let kept = in_force(&old, &new);
        assert_eq!(kept.proxy.workers, 1);
        assert_eq!(kept.store, old.store);
        assert_eq!(kept.apps["web"].health.eject_after, 5);
        // What was applied is in force.
        assert_eq!(kept.proxy.connect_timeout, new.proxy.connect_timeout);
        assert_eq!(
            kept.apps["web"].health.interval,
            new.apps["web"].health.interval
        );
        // The next reload of the same file reports the rest again.
        let again = baton_config::diff(&kept, &new);
        assert_eq!(
            again.not_applied(),
            [
                "[apps.web] health.eject_after",
                "[proxy] workers",
                "store.path"
            ]
        );
        assert!(!again.applies_anything());
    }
}
