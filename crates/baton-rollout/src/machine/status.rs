//! `Rollout::status`: what people and scripts see (state, step, weights, reason,
//! instances), derived from the machine without changing it.

use super::{Rollout, RolloutStatus};
use crate::book::{Phase, Side};
use crate::strategies::Progress;
use crate::{Outcome, RoutePlan, State};

fn state_of(outcome: Outcome) -> State {
    match outcome {
        Outcome::Succeeded => State::Succeeded,
        Outcome::Failed => State::Failed,
        // Both mean: an operator sent it back to the previous version.
        Outcome::Aborted | Outcome::RolledBack => State::Aborted,
    }
}

/// Pool weights as percentages summing to 100 (largest remainder), newest first.
pub(crate) fn percentages(route: &RoutePlan) -> Vec<(String, u32)> {
    let sum: u64 = route.pools.iter().map(|p| u64::from(p.weight)).sum();
    if sum == 0 {
        return route.pools.iter().map(|p| (p.version.clone(), 0)).collect();
    }
    let exact: Vec<(u64, u64)> = route
        .pools
        .iter()
        .map(|p| {
            let scaled = u64::from(p.weight) * 100;
            (scaled / sum, scaled % sum)
        })
        .collect();
    let mut out: Vec<u32> = exact.iter().map(|(q, _)| *q as u32).collect();
    let mut left = 100 - out.iter().sum::<u32>();
    let mut order: Vec<usize> = (0..exact.len()).collect();
    order.sort_by(|&a, &b| exact[b].1.cmp(&exact[a].1).then(a.cmp(&b)));
    for i in order {
        if left == 0 {
            break;
        }
        out[i] += 1;
        left -= 1;
    }
    route
        .pools
        .iter()
        .zip(out)
        .map(|(p, w)| (p.version.clone(), w))
        .collect()
}

// === impl Rollout (status) ===

impl Rollout {
    pub fn status(&self) -> RolloutStatus {
        let p = self.plan.progress(&self.spec, &self.book);
        let total_steps = p.total;
        let (state, reason) = self.state_and_reason(&p);
        let (step, step_index) = self.step_text(p);
        let weights = self.book.last_route().map(percentages).unwrap_or_default();
        let mut instances = Vec::new();
        for side in [Side::New, Side::Old, Side::Baseline] {
            let Some(version) = self.book.version(side) else {
                continue;
            };
            for inst in self.book.insts() {
                if inst.side == side && inst.phase != Phase::Stopped {
                    instances.push((inst.id.clone(), version.to_string()));
                }
            }
        }
        RolloutStatus {
            state,
            step,
            step_index,
            total_steps,
            weights,
            reason,
            instances,
            verdict: self.book.verdict.clone(),
        }
    }

    fn state_and_reason(&self, p: &Progress) -> (State, Option<String>) {
        if let Some(f) = self.book.finished() {
            return (state_of(f.outcome), f.reason.clone());
        }
        if let Some(c) = &self.ending {
            return (state_of(c.outcome), c.reason.clone());
        }
        if self.plan.switched() {
            return (State::Succeeded, None);
        }
        if self.book.paused {
            return (
                State::Paused,
                Some("paused by the operator; `resume` continues".into()),
            );
        }
        if let Some(why) = self.plan.waiting(&self.spec) {
            return (State::Paused, Some(why));
        }
        if let Some(ask) = self.book.gate_pending() {
            let at = ask
                .step
                .map(|s| format!(" (step {})", s + 1))
                .unwrap_or_default();
            return (
                State::Running,
                Some(format!("waiting for the {} gate{at}", ask.gate.name())),
            );
        }
        (State::Running, p.reason.clone())
    }

    fn step_text(&self, p: Progress) -> (String, usize) {
        let last = p.total.saturating_sub(1);
        if let Some(f) = self.book.finished() {
            let v = f.stable_version.as_deref().unwrap_or("nothing");
            let outcome = format!("{:?}", f.outcome).to_lowercase();
            return (format!("done: {outcome}, serving {v}"), last);
        }
        match &self.ending {
            Some(c) if c.outcome == Outcome::Succeeded => (c.describe(&self.book), last),
            Some(c) => (c.describe(&self.book), p.index),
            None => (p.step, p.index),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::percentages;
    use crate::{PoolPlan, RoutePlan};

    fn route(weights: &[u32]) -> RoutePlan {
        let pools = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| PoolPlan {
                version: format!("v{i}"),
                weight: w,
                instances: vec![format!("i{i}")],
            })
            .collect();
        RoutePlan {
            pools,
            ..RoutePlan::default()
        }
    }

    #[test]
    fn weights_are_percentages_summing_to_100() {
        let w = percentages(&route(&[1, 2]));
        assert_eq!(w, vec![("v0".into(), 33), ("v1".into(), 67)]);
        let w = percentages(&route(&[10, 90]));
        assert_eq!(w, vec![("v0".into(), 10), ("v1".into(), 90)]);
        let w = percentages(&route(&[1, 1, 1]));
        assert_eq!(w.iter().map(|x| x.1).sum::<u32>(), 100);
        assert_eq!(percentages(&route(&[0])), vec![("v0".into(), 0)]);
    }
}
