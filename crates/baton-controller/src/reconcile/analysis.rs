//! Canary analysis and external gates in the reconciler.
//!
//! Every `interval` during a canary, the judge (`baton-analysis`, pure) compares the
//! canary's requests with stable's — or with the fair baseline pool's — taken from the
//! proxy's per-version counters as differences since the canary first received traffic
//! (or over the last `window`; read by the executor, `Effect::Sample`), and the Prometheus
//! rules are queried by the executor (`Effect::QueryPrometheus`). The combined verdict
//! goes to the rollout as `Input::Verdict` and to the event stream with its figures:
//! `failure_limit` consecutive failed verdicts send `Fail` (fewer hold the step, like an
//! inconclusive verdict); a step held past `progress_deadline` fails the deployment.
//! During an ab_test the same loop computes the variant comparison `status` shows; it
//! never aborts an experiment (the operator picks the winner).
//!
//! Gates: `Command::Gate` becomes `Effect::CallGate` whose answer comes back as
//! `Input::GateResult`; `post_promote` and `rollback` are called when a deployment
//! finishes (`Effect::Notify`) and only reported.

use super::{AppCore, Effect, Event};
use crate::gates::{GatePayload, PromOutcome};
use crate::status::ExperimentStatus;
use baton_analysis::{compare_variants, judge_versions, JudgeVerdict, Judgement};
use baton_core::Millis;
use baton_metrics::MetricsSnapshot;
use baton_rollout::{Gate, Input, Outcome, State, StrategySpec, Verdict};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// Counters of the versions analysis looks at, at one moment.
type Sample = (Millis, BTreeMap<String, MetricsSnapshot>);

/// Samples kept for `window` (one per round).
const KEEP_SAMPLES: usize = 4096;

/// Analysis bookkeeping of the running deployment (in memory: after a restart the
/// window starts again, which only delays the next conclusive verdict).
#[derive(Debug, Default)]
pub(crate) struct AnalysisRun {
    /// The deployment these figures belong to.
    deployment: Option<String>,
    last_round: Option<Millis>,
    /// When the canary (or A/B variant) first had traffic routed to it.
    canary_since: Option<Millis>,
    /// Consecutive failed verdicts.
    fails: u32,
    /// Since when the current step is held by an inconclusive verdict.
    held_since: Option<Millis>,
    /// Prometheus queries are out.
    busy: bool,
    /// The counters when the canary first had traffic, then one sample per round.
    samples: VecDeque<Sample>,
    /// The last verdict with its figures, for history.
    pub(crate) last_summary: Option<String>,
    /// The A/B comparison `status` shows.
    pub(crate) experiment: Option<ExperimentStatus>,
}

/// One analysis round's inputs, handed to the Prometheus task and back.
#[derive(Debug)]
pub(crate) struct Round {
    deployment: String,
    judgement: Judgement,
    figures: String,
    pub(crate) prom: Vec<PromOutcome>,
}

fn pct(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

fn ms(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1000.0)
}

/// `"stable v1: 812 req, 0.00% err, p50 1.2ms, p99 3.4ms"`.
fn figures(role: &str, version: &str, s: &MetricsSnapshot) -> String {
    format!(
        "{role} {version}: {} req, {} err, p50 {}, p99 {}",
        s.requests,
        pct(s.error_rate()),
        ms(s.quantile(0.5)),
        ms(s.quantile(0.99))
    )
}

impl AppCore {
    /// Whether analysis (and its gates) apply to this app.
    pub(super) fn analysis_active(&self) -> bool {
        self.cfg.analysis.is_active()
    }

    /// The gates a new deployment waits at: the configured webhooks.
    pub(super) fn configured_gates(&self) -> Vec<Gate> {
        if !self.analysis_active() {
            return Vec::new();
        }
        let w = &self.cfg.analysis.webhooks;
        [
            (Gate::PreRollout, &w.pre_rollout),
            (Gate::Step, &w.step),
            (Gate::PrePromote, &w.pre_promote),
        ]
        .into_iter()
        .filter(|(_, url)| url.is_some())
        .map(|(g, _)| g)
        .collect()
    }

    /// A canary with analysis starts with an inconclusive verdict, so no timed pause
    /// ends before the judge has seen the canary's traffic.
    pub(super) fn analysis_started(&mut self) {
        self.analysis = AnalysisRun::default();
        let canary = self.record.deployment.as_ref().is_some_and(|d| {
            matches!(d.rollout.spec().strategy, StrategySpec::Canary(_))
                && d.rollout.spec().from_version.is_some()
        });
        if self.analysis_active() && canary {
            self.feed(
                Input::Verdict(Verdict::Inconclusive {
                    reason: "no verdict yet: the canary has not been judged".into(),
                }),
                Vec::new(),
            );
        }
    }

    /// Called on every tick: one analysis round per `interval` while a canary or A/B
    /// variant receives traffic. The counters are read by the executor
    /// (`Effect::Sample`), the round continues in `on_sampled`.
    pub(super) fn analyze(&mut self, out: &mut Vec<Effect>) {
        let Some(dep) = self.record.deployment.as_ref() else {
            self.analysis.experiment = None;
            return;
        };
        if !self.analysis_active() || self.analysis.busy {
            return;
        }
        if self.analysis.deployment.as_deref() != Some(dep.id.as_str()) {
            self.analysis = AnalysisRun {
                deployment: Some(dep.id.clone()),
                ..AnalysisRun::default()
            };
        }
        // Only while undecided: once it converges, nothing a verdict says matters.
        if !matches!(dep.rollout.status().state, State::Running | State::Paused) {
            return;
        }
        let spec = dep.rollout.spec();
        if !matches!(
            spec.strategy,
            StrategySpec::Canary(_) | StrategySpec::AbTest(_)
        ) {
            return;
        }
        let Some(from) = spec.from_version.clone() else {
            return;
        };
        let to = spec.to_version.clone();
        let now = self.now;
        let interval = self.cfg.analysis.interval.get();
        if self
            .analysis
            .last_round
            .is_some_and(|l| now.since(l) < interval)
        {
            return;
        }
        let route = &self.record.route;
        let live = route.pools.iter().any(|p| {
            p.version == to && !p.instances.is_empty() && (p.weight > 0 || !route.rules.is_empty())
        });
        if !live {
            return;
        }
        self.analysis.last_round = Some(now);
        self.analysis.busy = true;
        let baseline = baton_rollout::baseline_label(&from);
        out.push(Effect::Sample {
            deployment: dep.id.clone(),
            versions: [Some(from), baseline, Some(to)]
                .into_iter()
                .flatten()
                .collect(),
        });
    }

    /// The counters of a round: judge them (or, for an A/B test, compare them).
    pub(super) fn on_sampled(
        &mut self,
        deployment: String,
        current: BTreeMap<String, MetricsSnapshot>,
        out: &mut Vec<Effect>,
    ) {
        self.analysis.busy = false;
        let Some(dep) = self.record.deployment.as_ref() else {
            return;
        };
        if dep.id != deployment {
            return;
        }
        let spec = dep.rollout.spec();
        let ab = matches!(spec.strategy, StrategySpec::AbTest(_));
        let Some(from) = spec.from_version.clone() else {
            return;
        };
        let to = spec.to_version.clone();
        let now = self.now;
        let route = &self.record.route;
        let baseline = baton_rollout::baseline_label(&from);
        // The fair baseline when it is routed, else the stable fleet.
        let control = baseline
            .filter(|b| {
                route
                    .pools
                    .iter()
                    .any(|p| &p.version == b && !p.instances.is_empty())
            })
            .unwrap_or_else(|| from.clone());
        let samples = &mut self.analysis.samples;
        if samples.len() >= KEEP_SAMPLES {
            samples.remove(1);
        }
        samples.push_back((now, current.clone()));
        let Some(canary_since) = self.analysis.canary_since else {
            // The first round only marks where the canary's traffic starts.
            self.analysis.canary_since = Some(now);
            return;
        };
        let base = match self.cfg.analysis.window {
            Some(w) => {
                let from_t = now.0.saturating_sub(w.get().as_millis() as u64);
                samples
                    .iter()
                    .rev()
                    .find(|(t, _)| t.0 <= from_t)
                    .or(samples.front())
            }
            None => samples.front(),
        };
        let delta = |v: &str| -> MetricsSnapshot {
            let now_s = current.get(v).cloned().unwrap_or_default();
            match base.and_then(|(_, m)| m.get(v)) {
                Some(b) => now_s.delta(b),
                None => now_s,
            }
        };
        let stable = delta(&control);
        let canary = delta(&to);
        let a = &self.cfg.analysis;
        if ab {
            let cmp = compare_variants(a.confidence, a.mde, (&from, &stable), (&to, &canary));
            self.analysis.experiment = Some(ExperimentStatus {
                since: canary_since,
                confidence: a.confidence,
                mde_error_rate: a.mde,
                control: from,
                variants: vec![cmp.control_stats.clone(), cmp.variant_stats.clone()],
                comparisons: vec![cmp],
            });
            return;
        }
        let judgement = judge_versions(a, (&control, &stable), (&to, &canary));
        let figures = format!(
            "{}; {}",
            figures("canary", &to, &canary),
            figures("against", &control, &stable)
        );
        let round = Round {
            deployment: dep.id.clone(),
            judgement,
            figures,
            prom: Vec::new(),
        };
        if a.prometheus.is_empty() {
            return self.conclude(round);
        }
        self.analysis.busy = true;
        out.push(Effect::QueryPrometheus {
            round: Box::new(round),
            checks: a.prometheus.clone(),
            vars: vec![
                ("app".into(), self.name.clone()),
                ("version".into(), to),
                ("stable_version".into(), from),
            ],
            timeout: a.webhooks.timeout.get(),
        });
    }

    /// Turns a round into a verdict for the rollout, an event and the history summary.
    pub(super) fn conclude(&mut self, round: Round) {
        self.analysis.busy = false;
        let current = self.record.deployment.as_ref().map(|d| d.id.clone());
        if current.as_deref() != Some(round.deployment.as_str()) {
            return;
        }
        let j = &round.judgement;
        let mut fails = Vec::new();
        let mut unsure = Vec::new();
        match j.verdict {
            JudgeVerdict::Fail => fails.push(j.reason.clone()),
            JudgeVerdict::Inconclusive => unsure.push(j.reason.clone()),
            JudgeVerdict::Pass => {}
        }
        let mut prom_figures = Vec::new();
        for p in &round.prom {
            match p {
                PromOutcome::Pass { value } => prom_figures.push(format!("{value}")),
                PromOutcome::Fail { reason, .. } => fails.push(reason.clone()),
                PromOutcome::NoData { reason } => unsure.push(reason.clone()),
            }
        }
        let limit = self.cfg.analysis.failure_limit.max(1);
        let (input, word, reason) = if !fails.is_empty() {
            self.analysis.fails += 1;
            let reason = fails.join("; ");
            if self.analysis.fails >= limit {
                (
                    Verdict::Fail {
                        reason: reason.clone(),
                    },
                    "fail",
                    reason,
                )
            } else {
                let held = format!(
                    "failed verdict {} of {limit} allowed in a row: {reason}",
                    self.analysis.fails
                );
                (
                    Verdict::Inconclusive {
                        reason: held.clone(),
                    },
                    "fail",
                    held,
                )
            }
        } else if !unsure.is_empty() {
            let reason = unsure.join("; ");
            (
                Verdict::Inconclusive {
                    reason: reason.clone(),
                },
                "inconclusive",
                reason,
            )
        } else {
            self.analysis.fails = 0;
            (Verdict::Pass, "pass", j.reason.clone())
        };
        let mut summary = format!("{word}: {reason} [{}]", round.figures);
        if !prom_figures.is_empty() {
            summary.push_str(&format!(" prometheus: {}", prom_figures.join(", ")));
        }
        self.analysis.last_summary = Some(summary.clone());
        let ev = self.note("analysis", summary);
        self.feed(Input::Verdict(input), vec![ev]);
        self.check_progress_deadline();
    }

    /// A step held by inconclusive (or not yet limit-reaching failed) verdicts longer
    /// than `progress_deadline` fails the deployment.
    fn check_progress_deadline(&mut self) {
        let Some(dep) = self.record.deployment.as_ref() else {
            return;
        };
        let st = dep.rollout.status();
        let held = st
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with("held: analysis"));
        if !held {
            self.analysis.held_since = None;
            return;
        }
        let now = self.now;
        let since = *self.analysis.held_since.get_or_insert(now);
        let deadline = self.cfg.analysis.progress_deadline;
        if now.since(since) < deadline.get() {
            return;
        }
        let last = self.analysis.last_summary.clone().unwrap_or_default();
        let reason = format!(
            "no conclusive verdict within progress_deadline ({deadline}) at {}; last: {last}",
            st.step
        );
        self.feed(Input::Verdict(Verdict::Fail { reason }), Vec::new());
    }

    // === gates ===

    fn payload(&self, gate: Gate, step: Option<usize>, weight: Option<u32>) -> Option<GatePayload> {
        let d = self.record.deployment.as_ref()?;
        Some(GatePayload {
            app: self.name.clone(),
            deployment: d.id.clone(),
            from_version: d.rollout.spec().from_version.clone(),
            to_version: d.version.clone(),
            strategy: d.strategy.clone(),
            gate: gate.name().into(),
            step: step.map(|s| s + 1),
            weight,
            outcome: None,
            reason: None,
        })
    }

    fn webhook_url(&self, gate: Gate) -> Option<String> {
        let w = &self.cfg.analysis.webhooks;
        match gate {
            Gate::PreRollout => w.pre_rollout.clone(),
            Gate::Step => w.step.clone(),
            Gate::PrePromote => w.pre_promote.clone(),
            Gate::PostPromote => w.post_promote.clone(),
            Gate::Rollback => w.rollback.clone(),
        }
    }

    /// Asks an external gate; the answer comes back as `Input::GateResult`. A gate with
    /// no URL (the config changed under a running deployment) says go.
    pub(super) fn ask_gate(
        &mut self,
        gate: Gate,
        step: Option<usize>,
        weight: Option<u32>,
        out: &mut Vec<Effect>,
    ) {
        let (Some(url), Some(payload)) = (self.webhook_url(gate), self.payload(gate, step, weight))
        else {
            self.follow_ups.push_back(Event::GateAnswered {
                gate,
                step,
                result: Ok(()),
            });
            return;
        };
        out.push(Effect::CallGate {
            gate,
            step,
            url,
            payload: Box::new(payload),
            timeout: self.cfg.analysis.webhooks.timeout.get(),
        });
    }

    /// After a deployment finished: `post_promote` on success, `rollback` otherwise.
    /// Their answers are reported (event and log), they change nothing.
    pub(super) fn notify_finished(
        &mut self,
        mut payload: GatePayload,
        outcome: Outcome,
        out: &mut Vec<Effect>,
    ) {
        let gate = if outcome == Outcome::Succeeded {
            Gate::PostPromote
        } else {
            Gate::Rollback
        };
        let Some(url) = self.webhook_url(gate).filter(|_| self.analysis_active()) else {
            return;
        };
        payload.gate = gate.name().into();
        out.push(Effect::Notify {
            gate,
            url,
            payload: Box::new(payload),
            timeout: self.cfg.analysis.webhooks.timeout.get(),
        });
    }

    /// The payload for `notify_finished`, taken before the deployment record goes.
    pub(super) fn finish_payload(
        &self,
        reason: Option<String>,
        outcome: Outcome,
    ) -> Option<GatePayload> {
        let mut p = self.payload(Gate::PostPromote, None, None)?;
        p.outcome = Some(format!("{outcome:?}").to_lowercase());
        p.reason = reason;
        Some(p)
    }

    /// A `post_promote` / `rollback` webhook answered: reported, nothing changes.
    pub(super) fn on_notified(
        &mut self,
        gate: Gate,
        deployment: String,
        result: Result<(), String>,
    ) {
        let msg = match &result {
            Ok(()) => format!("{deployment}: {} webhook answered 2xx", gate.name()),
            Err(e) if gate == Gate::PostPromote => format!(
                "{deployment}: post_promote webhook failed: {e}; the deployment stays finished (`baton rollback {}` goes back)",
                self.name
            ),
            Err(e) => format!("{deployment}: rollback webhook failed: {e}"),
        };
        if let Err(e) = &result {
            tracing::warn!(app = %self.name, gate = gate.name(), error = %e, "webhook failed");
        }
        let mut ev = self.note("gate", msg);
        ev.deployment = Some(deployment);
        self.commit(None, vec![ev]);
    }
}
