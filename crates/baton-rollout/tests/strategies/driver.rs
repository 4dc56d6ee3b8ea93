//! A fake controller around a `Rollout`: answers `Start` with `Ready` (or a failure)
//! after a delay and `Stop` with `Stopped`, ticks time to the rollout's deadlines, and
//! checks the controller contract on every command it receives.

use baton_core::{HumanDuration, Millis, Quantity};
use baton_rollout::*;
use std::collections::BTreeMap;

pub const T0: u64 = 1_000_000;
pub const APP: &str = "web";
pub const DEP: &str = "web-7";

/// How a new instance misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The start itself fails (the process never runs); like the real controller, a
    /// `Stop` sent before that is answered by the failure, never by `Stopped`.
    StartError,
    /// Runs but never becomes healthy (startup timeout).
    NeverHealthy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    Starting,
    Running,
    Unhealthy,
    Stopping,
    Stopped,
}

#[derive(Debug, Clone)]
pub struct Fake {
    pub version: String,
    pub life: Life,
}

pub struct World {
    pub rollout: Rollout,
    pub now: u64,
    pub fakes: BTreeMap<String, Fake>,
    /// What the proxy would be serving.
    pub route: RoutePlan,
    pub routes: Vec<RoutePlan>,
    pub notes: Vec<String>,
    pub finish: Option<Finish>,
    pub commands: Vec<Command>,
    pub inputs: Vec<(u64, Input)>,
    queue: Vec<(u64, u64, Input)>,
    seq: u64,
    pub ready_delay: u64,
    pub stop_delay: u64,
    pub faults: BTreeMap<String, Fault>,
    /// Checked after every step: (min instances routed, max instances running).
    pub bounds: Option<(u32, u32)>,
    /// Store and reload the rollout (JSON) before every input.
    pub roundtrip: bool,
    /// Checked after every step: never two versions running at once (recreate).
    pub exclusive: bool,
    /// Non-zero: each instance's delays vary (deterministically) with this seed.
    pub jitter: u64,
    /// Gates answered "no" with this reason (every other gate says go).
    pub gate_fail: BTreeMap<Gate, String>,
    /// Every `Command::Gate` received: (gate, step, weight).
    pub gates_asked: Vec<(Gate, Option<usize>, Option<u32>)>,
    /// How long a gate takes to answer.
    pub gate_delay: u64,
}

pub fn spec(strategy: StrategySpec, replicas: u32, from: u32) -> RolloutSpec {
    RolloutSpec {
        app: APP.into(),
        deployment_id: DEP.into(),
        from_version: Some("v1".into()),
        from_instances: (1..=from).map(|i| format!("web-3-{i}")).collect(),
        to_version: "v2".into(),
        replicas,
        strategy,
        gates: Vec::new(),
        baseline: false,
    }
}

/// Every gate the machine waits at.
pub fn all_gates() -> Vec<Gate> {
    vec![Gate::PreRollout, Gate::Step, Gate::PrePromote]
}

pub fn first_spec(strategy: StrategySpec, replicas: u32) -> RolloutSpec {
    RolloutSpec {
        from_version: None,
        from_instances: Vec::new(),
        ..spec(strategy, replicas, 0)
    }
}

pub fn secs(s: u64) -> HumanDuration {
    HumanDuration::from_secs(s)
}

pub fn rolling(surge: Quantity, unavailable: Quantity, pause: u64) -> StrategySpec {
    StrategySpec::Rolling(RollingSpec {
        max_surge: surge,
        max_unavailable: unavailable,
        batch_pause: secs(pause),
    })
}

pub fn blue_green(auto: bool, after: u64, delay: u64) -> StrategySpec {
    StrategySpec::BlueGreen(BlueGreenSpec {
        auto_promote: auto,
        auto_promote_after: secs(after),
        scale_down_delay: secs(delay),
    })
}

pub fn canary(steps: Vec<CanaryStep>) -> StrategySpec {
    StrategySpec::Canary(CanarySpec {
        steps,
        ..CanarySpec::default()
    })
}

pub fn weight(w: u32) -> CanaryStep {
    CanaryStep::Weight { weight: w }
}

pub fn pause_for(s: u64) -> CanaryStep {
    CanaryStep::Pause {
        pause: PauseSpec::For(secs(s)),
    }
}

pub fn pause_manual() -> CanaryStep {
    CanaryStep::Pause {
        pause: PauseSpec::Manual,
    }
}

// === impl World ===

impl World {
    pub fn new(spec: RolloutSpec) -> World {
        let mut fakes = BTreeMap::new();
        for id in &spec.from_instances {
            let version = spec.from_version.clone().unwrap_or_default();
            fakes.insert(
                id.clone(),
                Fake {
                    version,
                    life: Life::Running,
                },
            );
        }
        let route = match &spec.from_version {
            Some(v) if !spec.from_instances.is_empty() => RoutePlan {
                pools: vec![PoolPlan {
                    version: v.clone(),
                    weight: 100,
                    instances: spec.from_instances.clone(),
                }],
                ..RoutePlan::default()
            },
            _ => RoutePlan::default(),
        };
        World {
            rollout: Rollout::new(spec, Millis(T0)),
            now: T0,
            fakes,
            route,
            routes: Vec::new(),
            notes: Vec::new(),
            finish: None,
            commands: Vec::new(),
            inputs: Vec::new(),
            queue: Vec::new(),
            seq: 0,
            ready_delay: 1_000,
            stop_delay: 500,
            faults: BTreeMap::new(),
            bounds: None,
            roundtrip: false,
            exclusive: false,
            jitter: 0,
            gate_fail: BTreeMap::new(),
            gates_asked: Vec::new(),
            gate_delay: 200,
        }
    }

    /// Starts the deployment (the controller's first input).
    pub fn started(mut self) -> World {
        self.feed(Input::Tick);
        self
    }

    pub fn steps(&self) -> usize {
        self.inputs.len()
    }

    /// `base`, or with jitter anything up to twice `base`, fixed per instance and event.
    fn delay(&self, base: u64, id: &str, salt: u64) -> u64 {
        if self.jitter == 0 {
            return base;
        }
        let h = id.bytes().fold(self.jitter ^ salt, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        base + h % (base + 1)
    }

    fn schedule(&mut self, after: u64, input: Input) {
        self.seq += 1;
        self.queue.push((self.now + after, self.seq, input));
        self.queue.sort_by_key(|(at, seq, _)| (*at, *seq));
    }

    /// Feeds one input now and carries out the commands, checking the contract.
    pub fn feed(&mut self, input: Input) {
        if self.roundtrip {
            let json = serde_json::to_string(&self.rollout).unwrap();
            let back: Rollout = serde_json::from_str(&json).unwrap();
            assert_eq!(
                back, self.rollout,
                "the rollout must survive a store/load unchanged"
            );
            self.rollout = back;
        }
        self.inputs.push((self.now, input.clone()));
        let out = self.rollout.handle(input, Millis(self.now));
        for cmd in out {
            self.carry_out(cmd.clone());
            self.commands.push(cmd);
        }
        let _ = self.rollout.status();
        self.check_bounds();
    }

    fn carry_out(&mut self, cmd: Command) {
        assert!(self.finish.is_none(), "command after Finish: {cmd:?}");
        match cmd {
            Command::Start { instance, version } => self.start(instance, version),
            Command::Stop { instance } => self.stop(instance),
            Command::Route(plan) => {
                for id in plan.pools.iter().flat_map(|p| &p.instances) {
                    let life = self.fakes.get(id).map(|f| f.life);
                    assert_eq!(
                        life,
                        Some(Life::Running),
                        "routed {id} must be running: {plan:?}"
                    );
                }
                self.route = plan.clone();
                self.routes.push(plan);
            }
            Command::Note { message } => self.notes.push(message),
            Command::Gate { gate, step, weight } => {
                self.gates_asked.push((gate, step, weight));
                let refusal = self.gate_fail.get(&gate).cloned();
                let input = Input::GateResult {
                    gate,
                    step,
                    ok: refusal.is_none(),
                    reason: refusal,
                };
                self.schedule(self.gate_delay, input);
            }
            Command::Finish(f) => self.finish = Some(f),
        }
    }

    fn start(&mut self, id: String, version: String) {
        assert!(
            id.starts_with(&format!("{DEP}-")),
            "new ids are {DEP}-n: {id}"
        );
        assert!(
            !self.fakes.contains_key(&id),
            "{id} started twice (ids are never reused)"
        );
        self.fakes.insert(
            id.clone(),
            Fake {
                version,
                life: Life::Starting,
            },
        );
        let delay = self.delay(self.ready_delay, &id, 1);
        match self.faults.get(&id) {
            None => self.schedule(delay, Input::Ready { instance: id }),
            Some(Fault::StartError) => self.schedule(
                delay / 2,
                Input::Failed {
                    instance: id,
                    reason: "exited with status 1".into(),
                },
            ),
            Some(Fault::NeverHealthy) => self.schedule(
                delay * 3,
                Input::Failed {
                    instance: id,
                    reason: "not healthy within startup_timeout".into(),
                },
            ),
        }
    }

    fn stop(&mut self, id: String) {
        let in_route = self.route.pools.iter().any(|p| p.instances.contains(&id));
        assert!(!in_route, "Stop {id} while it is routed: {:?}", self.route);
        let fake = self
            .fakes
            .get_mut(&id)
            .unwrap_or_else(|| panic!("Stop of unknown {id}"));
        assert!(
            !matches!(fake.life, Life::Stopping | Life::Stopped),
            "{id} stopped twice"
        );
        let start_error =
            fake.life == Life::Starting && self.faults.get(&id) == Some(&Fault::StartError);
        fake.life = Life::Stopping;
        if !start_error {
            let delay = self.delay(self.stop_delay, &id, 2);
            self.schedule(delay, Input::Stopped { instance: id });
        }
    }

    /// An instance turns unhealthy / exits now.
    pub fn fail(&mut self, id: &str) {
        if let Some(f) = self.fakes.get_mut(id) {
            assert!(
                matches!(f.life, Life::Starting | Life::Running),
                "fail a live instance"
            );
            f.life = Life::Unhealthy;
        }
        self.route
            .pools
            .iter_mut()
            .for_each(|p| p.instances.retain(|i| i != id));
        self.feed(Input::Failed {
            instance: id.into(),
            reason: "turned unhealthy".into(),
        });
    }

    fn deliver(&mut self, input: Input) {
        let id = match &input {
            Input::Ready { instance }
            | Input::Failed { instance, .. }
            | Input::Stopped { instance } => instance.clone(),
            _ => return self.feed(input),
        };
        let Some(fake) = self.fakes.get_mut(&id) else {
            return self.feed(input);
        };
        match (&input, fake.life) {
            (Input::Ready { .. }, Life::Starting) => fake.life = Life::Running,
            (Input::Failed { .. }, Life::Starting) => fake.life = Life::Unhealthy,
            // A start error after a Stop: the real controller reports only the failure.
            (Input::Failed { .. }, Life::Stopping) => fake.life = Life::Stopped,
            (Input::Stopped { .. }, Life::Stopping) => fake.life = Life::Stopped,
            // Stopped before it was ready: the controller never reports it ready.
            _ => return,
        }
        self.feed(input);
    }

    /// One step: the next event or deadline. `false` when there is nothing to wait for.
    pub fn step(&mut self) -> bool {
        if self.finish.is_some() {
            return false;
        }
        let deadline = self.rollout.next_deadline().map(|m| m.0.max(self.now));
        let event = self.queue.first().map(|(at, _, _)| *at);
        match (deadline, event) {
            (Some(d), e) if e.is_none_or(|e| d < e) => {
                self.now = d;
                self.feed(Input::Tick);
            }
            (_, Some(at)) => {
                let (_, _, input) = self.queue.remove(0);
                self.now = self.now.max(at);
                self.deliver(input);
            }
            (None, None) => return false,
            _ => unreachable!(),
        }
        true
    }

    /// Runs until finished or waiting for an operator.
    pub fn run(&mut self) -> &mut World {
        for _ in 0..100_000 {
            if !self.step() {
                return self;
            }
        }
        panic!("the rollout did not settle within 100000 steps");
    }

    pub fn run_steps(&mut self, n: usize) {
        while self.steps() < n && self.step() {}
    }

    /// Delivers everything due up to `t` (ticks included), then moves time to `t`.
    pub fn advance_to(&mut self, t: u64) {
        for _ in 0..100_000 {
            let deadline = self.rollout.next_deadline().map(|m| m.0);
            let event = self.queue.first().map(|(at, _, _)| *at);
            let next = [deadline, event].into_iter().flatten().min();
            match next {
                Some(n) if n <= t && self.finish.is_none() => {
                    self.step();
                }
                _ => break,
            }
        }
        self.now = self.now.max(t);
    }

    fn check_bounds(&self) {
        if self.exclusive {
            let mut versions: Vec<&str> = self
                .fakes
                .values()
                .filter(|f| f.life != Life::Stopped)
                .map(|f| f.version.as_str())
                .collect();
            versions.sort_unstable();
            versions.dedup();
            assert!(
                versions.len() <= 1,
                "two versions running at {}: {:?}",
                self.now,
                self.fakes
            );
        }
        let Some((min_routed, max_running)) = self.bounds else {
            return;
        };
        let routed: usize = self.route.pools.iter().map(|p| p.instances.len()).sum();
        let running = self
            .fakes
            .values()
            .filter(|f| f.life != Life::Stopped)
            .count();
        assert!(
            routed as u32 >= min_routed,
            "only {routed} routed at {} (min {min_routed})",
            self.now
        );
        assert!(
            running as u32 <= max_running,
            "{running} running at {} (max {max_running})",
            self.now
        );
    }

    // --- reading the world ---

    pub fn running(&self, version: &str) -> Vec<String> {
        let it = self
            .fakes
            .iter()
            .filter(|(_, f)| f.version == version && f.life != Life::Stopped);
        it.map(|(id, _)| id.clone()).collect()
    }

    /// Live instances of `version` that the rollout could still be waiting on.
    pub fn live(&self, version: &str) -> Vec<String> {
        let it = self.fakes.iter().filter(|(_, f)| {
            f.version == version && matches!(f.life, Life::Starting | Life::Running)
        });
        it.map(|(id, _)| id.clone()).collect()
    }

    /// `(version, weight, instance count)` of the current route, in order.
    pub fn pools(&self) -> Vec<(String, u32, usize)> {
        let it = self.route.pools.iter();
        it.map(|p| (p.version.clone(), p.weight, p.instances.len()))
            .collect()
    }

    pub fn starts(&self) -> usize {
        self.commands
            .iter()
            .filter(|c| matches!(c, Command::Start { .. }))
            .count()
    }

    pub fn state(&self) -> State {
        self.rollout.status().state
    }

    /// The common end-of-deployment checks: one Finish, the app's instances are exactly
    /// the finished stable set plus the warm hand-over (blue/green), none of the warm
    /// ones routed, and nothing else runs.
    pub fn assert_clean_finish(&self) -> &Finish {
        let f = self
            .finish
            .as_ref()
            .unwrap_or_else(|| panic!("no Finish; notes: {:?}", self.notes));
        let finishes = self
            .commands
            .iter()
            .filter(|c| matches!(c, Command::Finish(_)))
            .count();
        assert_eq!(finishes, 1);
        let mut running: Vec<String> = self
            .fakes
            .iter()
            .filter(|(_, fk)| fk.life != Life::Stopped)
            .map(|(id, _)| id.clone())
            .collect();
        let mut kept = f.instances.clone();
        if let Some(w) = &f.warm {
            assert!(w.keep_for_ms > 0, "{w:?}");
            for id in &w.instances {
                assert_eq!(Some(&w.version), self.fakes.get(id).map(|x| &x.version));
                assert!(
                    self.pools().iter().all(|(v, _, _)| v != &w.version),
                    "warm instances are out of routing: {:?}",
                    self.pools()
                );
            }
            assert_ne!(Some(&w.version), f.stable_version.as_ref());
            kept.extend(w.instances.iter().cloned());
        }
        running.sort();
        kept.sort();
        assert_eq!(
            running, kept,
            "exactly the finished and warm instances keep running"
        );
        for id in &f.instances {
            assert_eq!(
                Some(&f.stable_version.clone().unwrap_or_default()),
                self.fakes.get(id).map(|x| &x.version)
            );
        }
        assert!(self.rollout.is_finished());
        assert_eq!(self.rollout.next_deadline(), None);
        f
    }
}
