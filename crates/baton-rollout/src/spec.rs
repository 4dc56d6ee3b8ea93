//! What a deployment is asked to do: the strategy and its parameters. These types are
//! also what `baton.toml` deserializes into (`[apps.X.canary]` etc.), so their serde
//! shape is the config's shape and unknown keys are refused.

use crate::InstanceId;
use baton_core::{HumanDuration, Quantity, RuleSpec, StickySpec};
use serde::{Deserialize, Serialize};

/// Everything a rollout needs to know at creation. The stable instances are given here;
/// new instance ids are derived from `deployment_id` so they are unique and stable
/// across restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutSpec {
    pub app: String,
    /// Unique id of this deployment, e.g. `"web-7"`; new instances are named
    /// `"{deployment_id}-{n}"`.
    pub deployment_id: String,
    /// The version serving now (`None` on an app's first deploy).
    pub from_version: Option<String>,
    /// Its running instances (all routable when the deployment starts).
    pub from_instances: Vec<InstanceId>,
    /// The version being deployed.
    pub to_version: String,
    /// Desired instance count of the final version (and of each ab_test variant).
    pub replicas: u32,
    pub strategy: StrategySpec,
    /// External gates this deployment waits at (`Command::Gate`); empty: none.
    #[serde(default)]
    pub gates: Vec<crate::Gate>,
    /// Canary only: run a fair baseline instance of the previous version.
    #[serde(default)]
    pub baseline: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "strategy")]
pub enum StrategySpec {
    Recreate(RecreateSpec),
    BlueGreen(BlueGreenSpec),
    Rolling(RollingSpec),
    Canary(CanarySpec),
    AbTest(AbTestSpec),
}

impl StrategySpec {
    pub fn name(&self) -> &'static str {
        match self {
            StrategySpec::Recreate(_) => "recreate",
            StrategySpec::BlueGreen(_) => "blue_green",
            StrategySpec::Rolling(_) => "rolling",
            StrategySpec::Canary(_) => "canary",
            StrategySpec::AbTest(_) => "ab_test",
        }
    }
}

/// `[apps.X.recreate]`
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecreateSpec {}

/// `[apps.X.blue_green]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlueGreenSpec {
    /// Switch as soon as green is healthy; `false` waits for `baton promote`.
    pub auto_promote: bool,
    /// With `auto_promote`, wait this long after green is healthy before switching.
    pub auto_promote_after: HumanDuration,
    /// Keep blue running this long after the switch so `rollback` is instant.
    pub scale_down_delay: HumanDuration,
}

impl Default for BlueGreenSpec {
    fn default() -> Self {
        BlueGreenSpec {
            auto_promote: true,
            auto_promote_after: HumanDuration::from_secs(0),
            scale_down_delay: HumanDuration::from_secs(30),
        }
    }
}

/// `[apps.X.rolling]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RollingSpec {
    pub max_surge: Quantity,
    pub max_unavailable: Quantity,
    /// Wait this long after each batch becomes ready before the next one.
    pub batch_pause: HumanDuration,
}

impl Default for RollingSpec {
    fn default() -> Self {
        RollingSpec {
            max_surge: Quantity::Count(1),
            max_unavailable: Quantity::Count(0),
            batch_pause: HumanDuration::from_secs(0),
        }
    }
}

/// `[apps.X.canary]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CanarySpec {
    pub steps: Vec<CanaryStep>,
    /// Requests matching any rule go to the canary whatever its weight.
    pub rules: Vec<CanaryRule>,
    pub sticky: Option<StickySpec>,
}

impl Default for CanarySpec {
    fn default() -> Self {
        CanarySpec {
            steps: vec![
                CanaryStep::Weight { weight: 10 },
                CanaryStep::Pause {
                    pause: PauseSpec::For(HumanDuration::from_secs(60)),
                },
                CanaryStep::Weight { weight: 50 },
                CanaryStep::Pause {
                    pause: PauseSpec::For(HumanDuration::from_secs(60)),
                },
            ],
            rules: Vec::new(),
            sticky: None,
        }
    }
}

/// One canary step: `{ weight = 10 }`, `{ pause = "5m" }` or `{ pause = "manual" }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CanaryStep {
    /// Percentage of traffic (0-100) sent to the canary.
    Weight {
        weight: u32,
    },
    Pause {
        pause: PauseSpec,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum PauseSpec {
    For(HumanDuration),
    /// Until `baton promote` (or `resume`).
    Manual,
}

impl Serialize for PauseSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PauseSpec::For(d) => d.serialize(s),
            PauseSpec::Manual => s.serialize_str("manual"),
        }
    }
}

impl<'de> Deserialize<'de> for PauseSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.trim() == "manual" {
            Ok(PauseSpec::Manual)
        } else {
            s.parse()
                .map(PauseSpec::For)
                .map_err(|e: String| serde::de::Error::custom(format!("{e}, or \"manual\"")))
        }
    }
}

/// A targeting rule in config: which requests always see the new version.
/// `{ header = "X-Role", value = "admin" }`, `{ cookie = "beta", regex = "^1$" }`,
/// `{ query = "canary", present = true }`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryRule {
    pub header: Option<String>,
    pub cookie: Option<String>,
    pub query: Option<String>,
    pub value: Option<String>,
    pub regex: Option<String>,
    #[serde(default)]
    pub present: bool,
}

/// `[apps.X.ab_test]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AbTestSpec {
    /// Percentage of traffic for the new variant (the rest stays on the current version).
    pub weight: u32,
    /// Requests matching any rule go to the new variant.
    pub rules: Vec<CanaryRule>,
    pub sticky: Option<StickySpec>,
}

impl Default for AbTestSpec {
    fn default() -> Self {
        AbTestSpec {
            weight: 50,
            rules: Vec::new(),
            sticky: Some(StickySpec::Cookie {
                name: "baton_variant".into(),
                max_age: HumanDuration::from_secs(86_400),
            }),
        }
    }
}

impl CanaryRule {
    /// The data-plane rule sending matching requests to `version`; `Err` names the problem.
    pub fn to_rule(&self, version: &str) -> Result<RuleSpec, String> {
        use baton_core::{MatchSpec, ValueMatch};
        let value = match (&self.value, &self.regex, self.present) {
            (Some(v), None, false) => ValueMatch::Exact(v.clone()),
            (None, Some(r), false) => ValueMatch::Regex(r.clone()),
            (None, None, true) => ValueMatch::Present,
            _ => {
                return Err(
                    "a rule needs exactly one of `value = \"...\"`, `regex = \"...\"` or `present = true`"
                        .into(),
                )
            }
        };
        let matcher = match (&self.header, &self.cookie, &self.query) {
            (Some(name), None, None) => MatchSpec::Header { name: name.clone(), value },
            (None, Some(name), None) => MatchSpec::Cookie { name: name.clone(), value },
            (None, None, Some(name)) => MatchSpec::Query { name: name.clone(), value },
            _ => {
                return Err(
                    "a rule needs exactly one of `header = \"...\"`, `cookie = \"...\"` or `query = \"...\"`"
                        .into(),
                )
            }
        };
        Ok(RuleSpec {
            matcher,
            version: version.to_string(),
        })
    }
}
