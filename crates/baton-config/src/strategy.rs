//! `[apps.X.canary]` and `[apps.X.ab_test]` are read through strict mirrors of the
//! `baton_rollout` types: the rollout types accept unknown keys in canary steps and sticky
//! tables (untagged / internally tagged enums), and a typo there must be an error too.

use crate::kinds::StrategyKind;
use crate::model::AppConfig;
use baton_core::{HumanDuration, StickySpec};
use baton_rollout::spec::{AbTestSpec, CanaryRule, CanarySpec, CanaryStep, PauseSpec};
use baton_rollout::StrategySpec;
use serde::{Deserialize, Deserializer};

// === impl AppConfig ===

impl AppConfig {
    /// The parameters of strategy `kind` from this app's sections (the app's own
    /// `strategy` is just the default kind; `baton deploy --strategy` may pick another).
    pub fn strategy_spec(&self, kind: StrategyKind) -> StrategySpec {
        match kind {
            StrategyKind::Recreate => StrategySpec::Recreate(self.recreate.clone()),
            StrategyKind::BlueGreen => StrategySpec::BlueGreen(self.blue_green.clone()),
            StrategyKind::Rolling => StrategySpec::Rolling(self.rolling.clone()),
            StrategyKind::Canary => StrategySpec::Canary(self.canary.clone()),
            StrategyKind::AbTest => StrategySpec::AbTest(self.ab_test.clone()),
        }
    }
}

/// `deserialize_with` for `AppConfig::canary`.
pub(crate) fn canary<'de, D: Deserializer<'de>>(d: D) -> Result<CanarySpec, D::Error> {
    let fields = CanaryFields::deserialize(d)?;
    Ok(CanarySpec {
        steps: fields.steps.into_iter().map(|s| s.0).collect(),
        rules: fields.rules,
        sticky: fields.sticky.map(|s| s.0),
    })
}

/// `deserialize_with` for `AppConfig::ab_test`.
pub(crate) fn ab_test<'de, D: Deserializer<'de>>(d: D) -> Result<AbTestSpec, D::Error> {
    let fields = AbTestFields::deserialize(d)?;
    Ok(AbTestSpec {
        weight: fields.weight,
        rules: fields.rules,
        sticky: fields.sticky.map(|s| s.0),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CanaryFields {
    #[serde(default = "default_canary_steps")]
    steps: Vec<Step>,
    #[serde(default)]
    rules: Vec<CanaryRule>,
    #[serde(default)]
    sticky: Option<Sticky>,
}

fn default_canary_steps() -> Vec<Step> {
    CanarySpec::default().steps.into_iter().map(Step).collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AbTestFields {
    #[serde(default = "default_ab_weight")]
    weight: u32,
    #[serde(default)]
    rules: Vec<CanaryRule>,
    #[serde(default = "default_ab_sticky")]
    sticky: Option<Sticky>,
}

fn default_ab_weight() -> u32 {
    AbTestSpec::default().weight
}

fn default_ab_sticky() -> Option<Sticky> {
    AbTestSpec::default().sticky.map(Sticky)
}

/// One canary step: `{ weight = 10 }`, `{ pause = "5m" }` or `{ pause = "manual" }`.
#[derive(Deserialize)]
#[serde(try_from = "StepFields")]
struct Step(CanaryStep);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFields {
    weight: Option<u32>,
    pause: Option<PauseSpec>,
}

impl TryFrom<StepFields> for Step {
    type Error = String;
    fn try_from(f: StepFields) -> Result<Self, String> {
        match (f.weight, f.pause) {
            (Some(weight), None) => Ok(Step(CanaryStep::Weight { weight })),
            (None, Some(pause)) => Ok(Step(CanaryStep::Pause { pause })),
            (Some(_), Some(_)) => Err(
                "a canary step is either { weight = N } or { pause = \"5m\" }, not both: split it into two steps".into(),
            ),
            (None, None) => Err(
                "an empty canary step: write { weight = N }, { pause = \"5m\" } or { pause = \"manual\" }".into(),
            ),
        }
    }
}

/// `sticky = { kind = "cookie", name = "baton_canary", max_age = "1h" }`,
/// `{ kind = "header", name = "X-User-Id" }` or `{ kind = "hash_cookie", name = "session" }`.
#[derive(Deserialize)]
#[serde(try_from = "StickyFields")]
struct Sticky(StickySpec);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StickyFields {
    kind: StickyKind,
    name: String,
    max_age: Option<HumanDuration>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum StickyKind {
    Cookie,
    Header,
    HashCookie,
}

/// A sticky cookie without `max_age` lasts a day: longer than any rollout.
const DEFAULT_STICKY_MAX_AGE: HumanDuration = HumanDuration::from_secs(86_400);

impl TryFrom<StickyFields> for Sticky {
    type Error = String;
    fn try_from(f: StickyFields) -> Result<Self, String> {
        if f.name.trim().is_empty() {
            return Err("sticky `name` must not be empty".into());
        }
        let spec = match (f.kind, f.max_age) {
            (StickyKind::Cookie, max_age) => StickySpec::Cookie {
                name: f.name,
                max_age: max_age.unwrap_or(DEFAULT_STICKY_MAX_AGE),
            },
            (StickyKind::Header, None) => StickySpec::Header { name: f.name },
            (StickyKind::HashCookie, None) => StickySpec::HashCookie { name: f.name },
            (_, Some(_)) => {
                return Err(
                    "`max_age` applies only to kind = \"cookie\" (the proxy sets that cookie): remove it".into(),
                )
            }
        };
        Ok(Sticky(spec))
    }
}
