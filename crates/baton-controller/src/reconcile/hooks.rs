//! Hooks and migration safety. The release hook runs once per deployment, before any
//! new instance starts: it is stored as started before it runs and as finished after,
//! so a restarted baton re-runs it (with `BATON_HOOK_RERUN=1`) only if it had not
//! finished; a failure ends the deployment with nothing changed. `post_switch` runs once
//! traffic moved, `pre_stop` before each instance is drained (`Effect::DrainStop`).
//!
//! An irreversible deployment (its release step changed what the old version relies on)
//! never goes back on its own: an input that would make the rollout revert is not
//! applied; the rollout is paused where it is ("frozen"), with an event and a webhook,
//! and only the operator's `--force` sends traffic back.

use super::{AppCore, Effect, Held, Op, Ticket};
use crate::model::{HistoryEntry, HookRun, HookState};
use baton_config::{HookKind, PostSwitchFailure};
use baton_rollout::{Input, Outcome};
use baton_runtime::{TaskOutput, TaskRequest};

/// What a hook's output prints to say its step cannot be undone.
pub(crate) const IRREVERSIBLE_MARK: &str = "BATON_IRREVERSIBLE=1";

/// Requests of this ticket have no caller (a rollback a failed `post_switch` asked for).
const NO_CALLER: Ticket = 0;

impl AppCore {
    /// A new deployment's release hook, if configured: recorded as pending.
    pub(super) fn release_hook(&self) -> Option<HookRun> {
        self.cfg.hooks.release.as_ref().map(|command| HookRun {
            hook: HookKind::Release,
            command: command.clone(),
            state: HookState::Pending,
            attempts: 0,
            exit_code: None,
            result: None,
            output: Vec::new(),
        })
    }

    /// Whether the running deployment waits for its release hook.
    pub(super) fn release_pending(&self) -> bool {
        self.record
            .deployment
            .as_ref()
            .is_some_and(|d| d.release_pending())
    }

    /// Begins (or, after a restart, begins again) the release hook: the record saying
    /// it started is stored before it runs.
    pub(super) fn start_release(&mut self) {
        let Some(dep) = self.record.deployment.as_mut() else {
            return;
        };
        let Some(run) = dep.release.as_mut() else {
            return;
        };
        let rerun = run.state == HookState::Running;
        run.state = HookState::Running;
        run.attempts += 1;
        let attempt = run.attempts;
        let id = dep.id.clone();
        let msg = if rerun {
            format!("{id}: release hook started again (attempt {attempt}): baton restarted before it finished")
        } else {
            format!("{id}: release hook started")
        };
        let ev = self.note("hook", msg);
        self.commit(None, vec![ev]);
        self.hold(Held::Hook {
            hook: HookKind::Release,
            rerun,
        });
    }

    /// The request for a hook of the running deployment (release) or of the one that
    /// just finished (post_switch).
    pub(super) fn hook_request(
        &self,
        hook: HookKind,
        deployment: &str,
        version: &str,
        from: Option<&str>,
        rerun: bool,
    ) -> Option<TaskRequest> {
        let command = self.cfg.hooks.command(hook)?.to_string();
        let mut env = vec![
            ("BATON_HOOK".to_string(), hook.as_str().to_string()),
            ("BATON_DEPLOYMENT".to_string(), deployment.to_string()),
            (
                "BATON_FROM_VERSION".to_string(),
                from.unwrap_or_default().to_string(),
            ),
        ];
        if rerun {
            env.push(("BATON_HOOK_RERUN".to_string(), "1".to_string()));
        }
        Some(TaskRequest {
            app: self.name.clone(),
            version: version.to_string(),
            name: format!("{deployment}-{}", hook.as_str().replace('_', "-")),
            command,
            env,
            timeout: self.cfg.hooks.timeout.get(),
            port: None,
        })
    }

    /// `pre_stop` for an instance about to be drained, if configured.
    pub(super) fn pre_stop_request(
        &self,
        h: &baton_runtime::InstanceHandle,
    ) -> Option<TaskRequest> {
        let command = self.cfg.hooks.pre_stop.clone()?;
        Some(TaskRequest {
            app: self.name.clone(),
            version: h.version.clone(),
            name: format!("{}-pre-stop", h.id),
            command,
            env: vec![
                ("BATON_HOOK".to_string(), "pre_stop".to_string()),
                ("BATON_STOPPING_INSTANCE".to_string(), h.id.clone()),
            ],
            timeout: self.cfg.hooks.timeout.get(),
            port: Some(h.addr.port()),
        })
    }

    /// Carries out a held hook: the effect that runs it.
    pub(super) fn run_hook(&mut self, hook: HookKind, rerun: bool, out: &mut Vec<Effect>) {
        let target = match hook {
            HookKind::Release => self.record.deployment.as_ref().map(|d| {
                (
                    d.id.clone(),
                    d.version.clone(),
                    d.rollout.spec().from_version.clone(),
                )
            }),
            _ => self
                .last_finished
                .as_ref()
                .map(|h| (h.id.clone(), h.to_version.clone(), h.from_version.clone())),
        };
        let Some((deployment, version, from)) = target else {
            return;
        };
        if let Some(req) = self.hook_request(hook, &deployment, &version, from.as_deref(), rerun) {
            out.push(Effect::RunHook {
                deployment,
                hook,
                req: Box::new(req),
            });
        }
    }

    /// A hook ended (`Err`: it could not be run at all).
    pub(super) fn on_hook_done(
        &mut self,
        deployment: String,
        hook: HookKind,
        result: Result<TaskOutput, String>,
        out: &mut Vec<Effect>,
    ) {
        match hook {
            HookKind::Release => self.release_done(deployment, result),
            HookKind::PostSwitch => self.post_switch_done(deployment, result, out),
            HookKind::PreStop => {}
        }
    }

    fn release_done(&mut self, deployment: String, result: Result<TaskOutput, String>) {
        let timeout = self.cfg.hooks.timeout.get();
        let Some(dep) = self.record.deployment.as_mut() else {
            return;
        };
        let Some(run) = dep.release.as_mut() else {
            return;
        };
        if dep.id != deployment || run.state != HookState::Running {
            return;
        }
        let (ok, marked) = match &result {
            Ok(o) => (
                o.succeeded(),
                o.tail.iter().any(|l| l.trim() == IRREVERSIBLE_MARK),
            ),
            Err(_) => (false, false),
        };
        match result {
            Ok(o) => {
                run.exit_code = o.exit_code;
                run.result = Some(o.describe(timeout));
                run.output = o.tail;
            }
            Err(e) => run.result = Some(format!("could not run: {e}")),
        }
        run.state = if ok {
            HookState::Succeeded
        } else {
            HookState::Failed
        };
        let said = run.result.clone().unwrap_or_default();
        if !ok {
            let last = run
                .output
                .last()
                .map(|l| format!(": {l}"))
                .unwrap_or_default();
            return self.fail_before_start(format!("release hook failed ({said}){last}"));
        }
        if dep.irreversible_requested || marked {
            dep.irreversible = true;
        }
        let irreversible = dep.irreversible;
        let version = dep.version.clone();
        let mut msg = format!("{deployment}: release hook finished ({said})");
        if irreversible {
            msg.push_str(
                "; the deployment is irreversible: an automatic rollback freezes it instead",
            );
        }
        let ev = self.note("hook", msg);
        self.end_warm(&format!("deploying {version}"));
        self.feed(Input::Tick, vec![ev]);
        self.analysis_started();
    }

    /// The release hook failed: the deployment ends as failed with nothing changed (no
    /// instance was started, no route moved).
    fn fail_before_start(&mut self, reason: String) {
        let Some(dep) = self.record.deployment.take() else {
            return;
        };
        let now = self.now;
        let entry = HistoryEntry {
            id: dep.id.clone(),
            app: self.name.clone(),
            from_version: dep.rollout.spec().from_version.clone(),
            to_version: dep.version.clone(),
            strategy: dep.strategy.clone(),
            outcome: Outcome::Failed,
            started_at: dep.started_at,
            finished_at: now,
            duration_ms: now.since(dep.started_at).as_millis() as u64,
            reason: Some(format!("{reason}; nothing was changed")),
            warm_until: None,
            analysis: None,
            hooks: dep.release.iter().cloned().collect(),
            irreversible: false,
        };
        let mut ev = self.note(
            "finished",
            format!(
                "{} ({}) failed: {reason}; nothing was changed",
                dep.id, dep.version
            ),
        );
        ev.deployment = Some(dep.id.clone());
        self.reported_ready.clear();
        self.commit(Some(entry.clone()), vec![ev]);
        self.hold(Held::Finished(Box::new(entry)));
    }

    fn post_switch_done(
        &mut self,
        deployment: String,
        result: Result<TaskOutput, String>,
        out: &mut Vec<Effect>,
    ) {
        let timeout = self.cfg.hooks.timeout.get();
        let (ok, said) = match &result {
            Ok(o) => (o.succeeded(), o.describe(timeout)),
            Err(e) => (false, format!("could not run: {e}")),
        };
        if ok {
            let ev = self.note(
                "hook",
                format!("{deployment}: post_switch hook finished ({said})"),
            );
            return self.commit(None, vec![ev]);
        }
        let last = result
            .ok()
            .and_then(|o| o.tail.last().cloned())
            .map(|l| format!(": {l}"))
            .unwrap_or_default();
        let irreversible = self.last_finished.as_ref().is_some_and(|h| h.irreversible);
        let abort = self.cfg.hooks.post_switch_failure == PostSwitchFailure::Abort;
        let then = match (abort, irreversible) {
            (true, false) => "going back to the previous version",
            (true, true) => "NOT going back: the release step was irreversible (`baton rollback --force` goes back anyway)",
            (false, _) => "the new version keeps serving (post_switch_failure = \"report\")",
        };
        let ev = self.note(
            "hook_failed",
            format!("{deployment}: post_switch hook failed ({said}){last}; {then}"),
        );
        self.commit(None, vec![ev]);
        if abort && !irreversible && self.record.deployment.is_none() {
            self.op(Op::Rollback { force: false }, NO_CALLER, out);
        }
    }

    // === migration safety ===

    /// Whether `input` may be applied as is. An irreversible deployment never reverts on
    /// its own: when applying `input` would make the rollout go back, it is not applied
    /// and the rollout is frozen (paused where it is). `forced`: the operator insisted.
    pub(super) fn admit(&mut self, input: &Input) -> bool {
        if self.forcing {
            return true;
        }
        let now = self.now;
        let Some(dep) = self.record.deployment.as_ref() else {
            return true;
        };
        if !dep.irreversible || dep.rollout.is_reverting() || matches!(input, Input::Pause) {
            return true;
        }
        let mut trial = dep.rollout.clone();
        let _ = trial.handle(input.clone(), now);
        if !trial.is_reverting() {
            return true;
        }
        let why = trial
            .status()
            .reason
            .unwrap_or_else(|| "the rollout decided to go back".into());
        self.freeze(why);
        false
    }

    /// Pauses the rollout where it is, says why (event, webhook) and keeps it so.
    fn freeze(&mut self, why: String) {
        let Some(dep) = self.record.deployment.as_mut() else {
            return;
        };
        if dep.frozen.is_some() {
            return;
        }
        let id = dep.id.clone();
        let version = dep.version.clone();
        let reason = format!(
            "frozen: {why}; not going back because the release step of {version} is irreversible. \
             Fix forward (`baton resume` / `baton promote`), or go back anyway with `baton abort {} --force`",
            self.name
        );
        dep.frozen = Some(reason.clone());
        let commands = dep.rollout.handle(Input::Pause, self.now);
        let ev = self.note("frozen", format!("{id} ({version}) {reason}"));
        self.commit(None, vec![ev]);
        self.apply_commands(commands, Vec::new());
        if let Some(mut payload) = self.finish_payload(Some(reason), Outcome::Failed) {
            payload.outcome = Some("frozen".into());
            self.hold(Held::Notify {
                payload: Box::new(payload),
                outcome: Outcome::Failed,
            });
        }
    }

    /// Refuses an operator's going back on an irreversible deployment without `--force`.
    pub(super) fn refuse_going_back(&self, what: &str, force: bool) -> Option<String> {
        if force {
            return None;
        }
        let (id, version) = match &self.record.deployment {
            Some(d) if d.irreversible => (d.id.clone(), d.version.clone()),
            Some(_) => return None,
            None => match &self.last_finished {
                Some(h) if h.irreversible && h.outcome == Outcome::Succeeded => {
                    (h.id.clone(), h.to_version.clone())
                }
                _ => return None,
            },
        };
        Some(format!(
            "{id} ({version}) ran an irreversible release step (e.g. a schema migration the previous version \
             cannot use): `{what}` would send traffic back to the previous version. Fix forward with a new \
             deploy, or run `baton {what} {} --force` if the previous version is known to work with it",
            self.name
        ))
    }
}
