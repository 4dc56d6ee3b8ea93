//! Strategy parameters that cannot work, refused before a deployment starts.

use crate::{CanaryRule, CanaryStep, RolloutSpec, StrategySpec};
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpecError {
    #[error("app {app}: replicas = 0 deploys nothing; set `replicas` to 1 or more")]
    NoReplicas { app: String },
    #[error("app {app}: {strategy} weight {weight} is above 100; weights are percentages (0-100)")]
    Weight {
        app: String,
        strategy: &'static str,
        weight: u32,
    },
    #[error("app {app}: {strategy} targeting rule {index}: {problem}")]
    Rule {
        app: String,
        strategy: &'static str,
        index: usize,
        problem: String,
    },
}

impl RolloutSpec {
    /// Checks what `Rollout` would otherwise only find out while deploying. A spec that
    /// passes never fails for its own parameters.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.replicas == 0 {
            return Err(SpecError::NoReplicas {
                app: self.app.clone(),
            });
        }
        let strategy = self.strategy.name();
        let (weights, rules): (Vec<u32>, &[CanaryRule]) = match &self.strategy {
            StrategySpec::Canary(c) => {
                let weights = c.steps.iter().filter_map(|s| match s {
                    CanaryStep::Weight { weight } => Some(*weight),
                    CanaryStep::Pause { .. } => None,
                });
                (weights.collect(), &c.rules)
            }
            StrategySpec::AbTest(a) => (vec![a.weight], &a.rules),
            _ => (Vec::new(), &[]),
        };
        if let Some(&weight) = weights.iter().find(|&&w| w > 100) {
            let app = self.app.clone();
            return Err(SpecError::Weight {
                app,
                strategy,
                weight,
            });
        }
        for (i, rule) in rules.iter().enumerate() {
            if let Err(problem) = rule.to_rule(&self.to_version) {
                let app = self.app.clone();
                return Err(SpecError::Rule {
                    app,
                    strategy,
                    index: i + 1,
                    problem,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::*;

    fn spec(strategy: StrategySpec) -> RolloutSpec {
        RolloutSpec {
            app: "web".into(),
            deployment_id: "web-1".into(),
            from_version: Some("v1".into()),
            from_instances: vec!["a".into()],
            to_version: "v2".into(),
            replicas: 2,
            strategy,
            gates: Vec::new(),
            baseline: false,
        }
    }

    #[test]
    fn defaults_are_valid() {
        for s in [
            StrategySpec::Recreate(RecreateSpec::default()),
            StrategySpec::BlueGreen(BlueGreenSpec::default()),
            StrategySpec::Rolling(RollingSpec::default()),
            StrategySpec::Canary(CanarySpec::default()),
            StrategySpec::AbTest(AbTestSpec::default()),
        ] {
            assert_eq!(spec(s).validate(), Ok(()));
        }
    }

    #[test]
    fn bad_parameters_are_named_with_the_fix() {
        let mut s = spec(StrategySpec::Recreate(RecreateSpec::default()));
        s.replicas = 0;
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("set `replicas` to 1"));

        let c = CanarySpec {
            steps: vec![CanaryStep::Weight { weight: 150 }],
            ..CanarySpec::default()
        };
        let e = spec(StrategySpec::Canary(c)).validate().unwrap_err();
        assert_eq!(
            e.to_string(),
            "app web: canary weight 150 is above 100; weights are percentages (0-100)"
        );

        let a = AbTestSpec {
            rules: vec![CanaryRule {
                cookie: Some("beta".into()),
                ..CanaryRule::default()
            }],
            ..AbTestSpec::default()
        };
        let e = spec(StrategySpec::AbTest(a)).validate().unwrap_err();
        assert!(
            e.to_string().starts_with(
                "app web: ab_test targeting rule 1: a rule needs exactly one of `value"
            ),
            "{e}"
        );
    }
}
