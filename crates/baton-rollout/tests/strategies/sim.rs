//! Seeded random simulation: random strategy parameters, delays, failures, operator
//! actions, verdicts, store/reload and time jumps at random points. Every run must keep
//! the contract (checked by the driver at every command), end with exactly one Finish,
//! and leave the app served by exactly the finished instances.

use crate::driver::*;
use crate::every_step::{drive, nudge};
use baton_core::Quantity::{self, Count, Percent};
use baton_rollout::*;

/// A 64-bit LCG (Knuth's MMIX constants): deterministic, no dependency.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize].clone()
    }
}

fn random_strategy(rng: &mut Lcg) -> StrategySpec {
    let quantities: [Quantity; 6] = [
        Count(0),
        Count(1),
        Count(2),
        Percent(25),
        Percent(50),
        Percent(100),
    ];
    match rng.below(5) {
        0 => StrategySpec::Recreate(RecreateSpec {}),
        1 => blue_green(rng.below(2) == 0, rng.below(10), rng.below(60)),
        2 => rolling(
            rng.pick(&quantities),
            rng.pick(&quantities),
            rng.pick(&[0, 0, 5]),
        ),
        3 => {
            let steps = (0..rng.below(5) + 1)
                .map(|_| match rng.below(5) {
                    0 | 1 => weight(rng.below(101) as u32),
                    2 | 3 => pause_for(rng.below(30)),
                    _ => pause_manual(),
                })
                .collect();
            canary(steps)
        }
        _ => StrategySpec::AbTest(AbTestSpec {
            weight: rng.below(101) as u32,
            ..AbTestSpec::default()
        }),
    }
}

struct Run {
    world: World,
    /// Failures injected (faults or live): at most one, so the app always stays served.
    failures: u32,
}

fn setup(seed: u64) -> (Run, Lcg) {
    let mut rng = Lcg(seed);
    let strategy = random_strategy(&mut rng);
    let replicas = 2 + rng.below(4) as u32;
    let spec = match rng.below(10) {
        0 => first_spec(strategy, replicas),
        1 => spec(strategy, replicas, replicas + 1),
        _ => spec(strategy, replicas, replicas),
    };
    let from = spec.from_instances.len() as u32;
    let bounds = match &spec.strategy {
        StrategySpec::Rolling(r) if from == replicas => {
            let s = r.max_surge.resolve(replicas, true);
            let u = r.max_unavailable.resolve(replicas, false);
            let (s, u) = if s == 0 && u == 0 { (1, 0) } else { (s, u) };
            Some((replicas - u, replicas + s))
        }
        _ => None,
    };
    let exclusive = matches!(spec.strategy, StrategySpec::Recreate(_));
    let mut w = World::new(spec);
    w.ready_delay = 200 + rng.below(2_000);
    w.stop_delay = 50 + rng.below(1_000);
    w.jitter = if rng.below(2) == 0 { 0 } else { rng.next() | 1 };
    w.bounds = bounds;
    w.exclusive = exclusive;
    let mut failures = 0;
    if rng.below(5) == 0 {
        let n = 1 + rng.below(8);
        let fault = rng.pick(&[Fault::StartError, Fault::NeverHealthy]);
        w.faults.insert(format!("{DEP}-{n}"), fault);
        w.bounds = bounds.map(|(lo, hi)| (lo.saturating_sub(1), hi));
        failures = 1;
    }
    (
        Run {
            world: w.started(),
            failures,
        },
        rng,
    )
}

fn operator_paused(w: &World) -> bool {
    let st = w.rollout.status();
    st.reason
        .is_some_and(|r| r.starts_with("paused by the operator"))
}

/// One random action (weights per mille); returns whether it was a failure, which may
/// stop instances even while paused.
fn act(run: &mut Run, rng: &mut Lcg) -> bool {
    let w = &mut run.world;
    match rng.below(1_000) {
        0..=599 => {
            if !w.step() {
                let input = nudge(w);
                w.feed(input);
            }
        }
        600..=614 if run.failures == 0 => {
            let (live, min) = if rng.below(3) == 0 {
                (w.live("v1"), 2)
            } else {
                (w.live("v2"), 1)
            };
            if live.len() >= min {
                let victim = rng.pick(&live);
                run.failures += 1;
                w.bounds = w.bounds.map(|(lo, hi)| (lo.saturating_sub(1), hi));
                w.fail(&victim);
                return true;
            }
        }
        615..=644 => w.feed(Input::Pause),
        645..=694 => w.feed(Input::Resume),
        695..=699 => w.feed(Input::Abort {
            reason: "sim abort".into(),
        }),
        700..=729 => {
            let to = rng.pick(&[None, Some("v1"), Some("v2"), Some("v3")]);
            w.feed(Input::Promote {
                to: to.map(str::to_string),
            });
        }
        730..=749 => w.feed(Input::Rollback),
        750..=789 => {
            let v = match rng.below(16) {
                0 => Verdict::Fail {
                    reason: "sim".into(),
                },
                1..=5 => Verdict::Inconclusive {
                    reason: "sim".into(),
                },
                _ => Verdict::Pass,
            };
            w.feed(Input::Verdict(v));
        }
        790..=829 => {
            let json = serde_json::to_string(&w.rollout).unwrap();
            w.rollout = serde_json::from_str(&json).unwrap();
        }
        _ => {
            let t = w.now + rng.below(20_000);
            w.advance_to(t);
        }
    }
    false
}

fn check_run(seed: u64, run: &Run) {
    let w = &run.world;
    let f = w.assert_clean_finish();
    let first =
        w.rollout.spec().from_instances.is_empty() && w.rollout.spec().from_version.is_none();
    if first && f.outcome != Outcome::Succeeded {
        assert!(f.instances.is_empty(), "seed {seed}");
        return;
    }
    assert!(
        !f.instances.is_empty(),
        "seed {seed}: the app is served: {f:?} {:?}",
        w.notes
    );
    let v = f.stable_version.clone().unwrap();
    assert_eq!(w.pools(), vec![(v, 100, f.instances.len())], "seed {seed}");
}

/// Runs one seed to the end; returns the strategy and outcome.
fn simulate(seed: u64) -> (&'static str, Outcome) {
    let (mut run, mut rng) = setup(seed);
    for _ in 0..400 {
        if run.world.finish.is_some() {
            break;
        }
        let paused = operator_paused(&run.world);
        let before = run.world.commands.len();
        let failure = act(&mut run, &mut rng);
        if paused && !failure && operator_paused(&run.world) {
            let acted = run.world.commands[before..]
                .iter()
                .any(|c| matches!(c, Command::Start { .. } | Command::Stop { .. }));
            assert!(!acted, "seed {seed}: progress while paused");
        }
    }
    if operator_paused(&run.world) {
        run.world.feed(Input::Resume);
    }
    drive(&mut run.world, None);
    check_run(seed, &run);
    let f = run.world.finish.as_ref().unwrap();
    (run.world.rollout.spec().strategy.name(), f.outcome)
}

#[test]
fn random_runs_keep_the_contract_and_end_served() {
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..3_000 {
        let (strategy, outcome) = simulate(seed);
        seen.insert(format!("{strategy} {outcome:?}"));
    }
    // The simulation must reach every ending of every strategy, or it proves little.
    for strategy in ["recreate", "blue_green", "rolling", "canary", "ab_test"] {
        for outcome in [Outcome::Succeeded, Outcome::Failed, Outcome::Aborted] {
            let key = format!("{strategy} {outcome:?}");
            assert!(seen.contains(&key), "never saw {key}: {seen:?}");
        }
    }
}
