//! Operator requests: deploy, promote, abort, pause, resume, rollback. Each is answered
//! with an `Effect::Reply` — a new deployment only once it is stored.

use super::{Answer, AppCore, DeployRequest, Effect, Held, Op, Ticket};
use crate::model::DeploymentRecord;
use crate::ControlError;
use baton_rollout::{Input, Outcome, Rollout};

impl AppCore {
    fn reply(out: &mut Vec<Effect>, ticket: Ticket, result: Result<Answer, ControlError>) {
        out.push(Effect::Reply { ticket, result });
    }

    pub(super) fn deploy(&mut self, req: DeployRequest, ticket: Ticket, out: &mut Vec<Effect>) {
        if let Err(e) = self.try_deploy(req, ticket) {
            Self::reply(out, ticket, Err(e));
        }
    }

    /// Checks the request and records the deployment; `Ok` means the answer is held
    /// until it is stored.
    fn try_deploy(&mut self, req: DeployRequest, ticket: Ticket) -> Result<(), ControlError> {
        if let Some(d) = &self.record.deployment {
            let s = d.rollout.status();
            return Err(ControlError::InProgress {
                app: self.name.clone(),
                id: d.id.clone(),
                version: d.version.clone(),
                strategy: d.strategy.clone(),
                state: format!("{:?}", s.state).to_lowercase(),
            });
        }
        baton_core::validate_version(&req.version)
            .map_err(|e| ControlError::BadRequest(e.to_string()))?;
        if self.operator_targets && req.targets.is_empty() {
            return Err(ControlError::BadRequest(format!(
                "app {} uses the static runtime: pass the instances with --target HOST:PORT (once per instance)",
                self.name
            )));
        }
        if !self.operator_targets && !req.targets.is_empty() {
            return Err(ControlError::BadRequest(format!(
                "--target is only for apps with runtime = \"static\"; {} uses runtime = \"{}\"",
                self.name, self.runtime_kind
            )));
        }
        if self.can_switch_to_warm(&req.version) && self.targets_are_warm(&req.targets) {
            let reason = format!("{} was still warm: switched back at once", req.version);
            let keep_for = self.cfg.blue_green.scale_down_delay.get();
            if self
                .switch_to_warm(Outcome::Succeeded, reason, Some(keep_for), Some(ticket))
                .is_some()
            {
                return Ok(());
            }
        }
        let kind = req.strategy.unwrap_or(self.cfg.strategy);
        let strategy = self.cfg.strategy_spec(kind);
        let is_canary = matches!(strategy, baton_rollout::StrategySpec::Canary(_));
        let replicas = if self.operator_targets {
            req.targets.len() as u32
        } else {
            self.cfg.replicas
        };
        let seq = self.record.seq + 1;
        let id = format!("{}-{seq}", self.name);
        let spec = baton_rollout::RolloutSpec {
            app: self.name.clone(),
            deployment_id: id.clone(),
            from_version: self.record.stable_version.clone(),
            from_instances: self.stable_instances(),
            to_version: req.version.clone(),
            replicas,
            strategy,
            gates: self.configured_gates(),
            baseline: self.analysis_active() && self.cfg.analysis.baseline && is_canary,
        };
        spec.validate()
            .map_err(|e| ControlError::BadRequest(e.to_string()))?;
        // The deployment exists once it is stored; if it cannot be, nothing changed
        // (the warm version is not stopped either).
        self.begin_undoable(
            self.record.clone(),
            Some((
                ticket,
                "the deployment was not started and nothing changed".into(),
            )),
        );
        // Another version replaces the serving one: the warm version's time is over
        // (after the release hook, when there is one: a failed hook changes nothing).
        let release = self.release_hook();
        if release.is_none() {
            self.end_warm(&format!("deploying {}", req.version));
        }
        let irreversible_requested = req.irreversible || !self.cfg.hooks.reversible;
        self.record.seq = seq;
        let strategy_name = spec.strategy.name().to_string();
        self.record.deployment = Some(DeploymentRecord {
            id: id.clone(),
            version: req.version.clone(),
            strategy: strategy_name,
            started_at: self.now,
            rollout: Rollout::new(spec, self.now),
            targets: req.targets,
            pending_starts: Vec::new(),
            // Without a release hook, the operator's word marks the deployment at once.
            irreversible: irreversible_requested && release.is_none(),
            release,
            irreversible_requested,
            frozen: None,
        });
        self.commit(None, Vec::new());
        self.hold(Held::Begin { ticket, id });
        Ok(())
    }

    /// The new deployment is stored: answer, then take its first step.
    pub(super) fn begin(&mut self, ticket: Ticket, id: String, out: &mut Vec<Effect>) {
        self.reported_ready.clear();
        Self::reply(out, ticket, Ok(Answer::Deployment(id)));
        let Some(d) = self.record.deployment.as_ref() else {
            return;
        };
        let from = d
            .rollout
            .spec()
            .from_version
            .clone()
            .unwrap_or_else(|| "nothing".into());
        let msg = format!("deploying {} (from {from}) by {}", d.version, d.strategy);
        let ev = self.note("started", msg);
        if d.release.is_some() {
            self.commit(None, vec![ev]);
            // No instance starts before the release hook succeeded.
            return self.start_release();
        }
        self.feed(Input::Tick, vec![ev]);
        self.analysis_started();
    }

    pub(super) fn op(&mut self, op: Op, ticket: Ticket, out: &mut Vec<Effect>) {
        if self.record.deployment.is_none() {
            return self.op_after_deployment(op, ticket, out);
        }
        if self.release_pending() {
            return Self::reply(
                out,
                ticket,
                Err(ControlError::BadRequest(format!(
                    "the release hook of {} is running and no instance of the new version has started: \
                     wait for it to finish (at most its timeout, {}); a failed hook ends the deployment with nothing changed",
                    self.name, self.cfg.hooks.timeout
                ))),
            );
        }
        let going_back = match &op {
            Op::Abort { force } => Some(("abort", *force)),
            Op::Rollback { force } => Some(("rollback", *force)),
            _ => None,
        };
        if let Some(why) = going_back.and_then(|(what, force)| self.refuse_going_back(what, force))
        {
            return Self::reply(out, ticket, Err(ControlError::Irreversible(why)));
        }
        if let Op::Rollback { .. } = op {
            let warm = self
                .record
                .deployment
                .as_ref()
                .is_some_and(|d| d.rollout.can_roll_back_instantly());
            if !warm {
                return Self::reply(
                    out,
                    ticket,
                    Err(ControlError::BadRequest(format!(
                        "a deployment of {} is running: use `baton abort {}` to go back to the stable version",
                        self.name, self.name
                    ))),
                );
            }
        }
        let forced = matches!(op, Op::Abort { force: true } | Op::Rollback { force: true });
        let (input, what) = match op {
            Op::Promote { to } => (Input::Promote { to }, "promote"),
            Op::Abort { force } => (
                Input::Abort {
                    reason: if force {
                        "aborted by operator (--force)".into()
                    } else {
                        "aborted by operator".into()
                    },
                },
                "abort",
            ),
            Op::Pause => (Input::Pause, "pause"),
            Op::Resume => (Input::Resume, "resume"),
            Op::Rollback { .. } => (Input::Rollback, "rollback"),
        };
        if matches!(input, Input::Promote { .. } | Input::Resume) || forced {
            // The operator decided: the freeze is over (it comes back if the rollout
            // would go back on its own again).
            if let Some(d) = self.record.deployment.as_mut() {
                d.frozen = None;
            }
        }
        let ev = self.note("operator", format!("{what} requested"));
        self.forcing = forced;
        self.feed(input, vec![ev]);
        self.forcing = false;
        Self::reply(out, ticket, Ok(Answer::Done));
    }

    /// Operator requests with no deployment running: `rollback` switches back to the
    /// warm version, or deploys the previous one; `promote` ends the warm window now.
    fn op_after_deployment(&mut self, op: Op, ticket: Ticket, out: &mut Vec<Effect>) {
        match op {
            Op::Rollback { force } => {
                if let Some(why) = self.refuse_going_back("rollback", force) {
                    return Self::reply(out, ticket, Err(ControlError::Irreversible(why)));
                }
                let Some(prev) = self.record.previous_version.clone() else {
                    return Self::reply(
                        out,
                        ticket,
                        Err(ControlError::NothingToRollBack {
                            app: self.name.clone(),
                        }),
                    );
                };
                if self.can_switch_to_warm(&prev) {
                    let reason = format!("rolled back to {prev} by the operator");
                    if self
                        .switch_to_warm(Outcome::RolledBack, reason, None, Some(ticket))
                        .is_some()
                    {
                        return;
                    }
                }
                if self.operator_targets {
                    return Self::reply(
                        out,
                        ticket,
                        Err(ControlError::BadRequest(format!(
                            "{} uses the static runtime and {prev} is no longer running: `baton deploy {} {prev} --target ...`",
                            self.name, self.name
                        ))),
                    );
                }
                self.deploy(
                    DeployRequest {
                        version: prev,
                        strategy: None,
                        targets: Vec::new(),
                        irreversible: false,
                    },
                    ticket,
                    out,
                );
            }
            Op::Promote { .. } if self.record.warm.is_some() => {
                self.begin_undoable(
                    self.record.clone(),
                    Some((ticket, "the warm version was not stopped".into())),
                );
                self.end_warm("promote");
                self.hold(Held::Reply {
                    ticket,
                    answer: Answer::Done,
                });
            }
            _ => Self::reply(
                out,
                ticket,
                Err(ControlError::NoDeployment {
                    app: self.name.clone(),
                }),
            ),
        }
    }

    /// For the static runtime, a deploy of the warm version switches back only when it
    /// names exactly the warm instances' addresses.
    fn targets_are_warm(&self, targets: &[std::net::SocketAddr]) -> bool {
        if targets.is_empty() {
            return true;
        }
        let mut warm: Vec<std::net::SocketAddr> = self
            .record
            .warm
            .iter()
            .flat_map(|w| w.instances.iter())
            .filter_map(|id| self.record.instance(id))
            .map(|h| h.addr)
            .collect();
        let mut want = targets.to_vec();
        warm.sort();
        want.sort();
        warm.dedup();
        want.dedup();
        warm == want
    }
}
