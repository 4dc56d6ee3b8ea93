//! `baton plan APP VERSION`: a dry run — the steps a deployment would take, its peak
//! instance count and the extra memory it needs, estimated from the running instances'
//! resident memory (seeds/004 wondered whether a second Spring app fits a 1.8 GiB box).

use crate::model::AppRecord;
use baton_config::{AppConfig, StrategyKind};
use baton_rollout::{CanaryStep, PauseSpec, StrategySpec};
use baton_runtime::HandleDetail;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlanReport {
    pub app: String,
    pub from_version: Option<String>,
    pub to_version: String,
    pub strategy: String,
    pub steps: Vec<String>,
    pub replicas: u32,
    pub peak_instances: u32,
    pub extra_instances: u32,
    /// Average resident memory of the running instances, when it can be read.
    pub rss_per_instance_bytes: Option<u64>,
    pub extra_memory_bytes: Option<u64>,
    pub available_memory_bytes: Option<u64>,
    pub warning: Option<String>,
}

pub fn plan(
    cfg: &AppConfig,
    record: &AppRecord,
    version: &str,
    kind: Option<StrategyKind>,
) -> PlanReport {
    let n = cfg.replicas;
    let spec = cfg.strategy_spec(kind.unwrap_or(cfg.strategy));
    let first = record.stable_version.is_none();
    let (steps, peak) = if first {
        (
            vec![
                format!("start {n} × {version}"),
                "route 100% to it when healthy".into(),
            ],
            n,
        )
    } else {
        steps_of(&spec, n, version, cfg)
    };
    let rss = average_rss(record);
    let extra_instances = peak.saturating_sub(if first { 0 } else { n });
    let extra_memory = rss.map(|r| r * u64::from(extra_instances));
    let available = mem_available();
    let warning = match (extra_memory, available) {
        (Some(need), Some(have)) if need > have => Some(format!(
            "needs about {} MiB more memory at its peak but only {} MiB is available; consider rolling with max_surge = 0 or recreate",
            need >> 20,
            have >> 20
        )),
        _ => None,
    };
    PlanReport {
        app: record.name.clone(),
        from_version: record.stable_version.clone(),
        to_version: version.to_string(),
        strategy: spec.name().to_string(),
        steps,
        replicas: n,
        peak_instances: peak,
        extra_instances,
        rss_per_instance_bytes: rss,
        extra_memory_bytes: extra_memory,
        available_memory_bytes: available,
        warning,
    }
}

fn steps_of(spec: &StrategySpec, n: u32, v: &str, cfg: &AppConfig) -> (Vec<String>, u32) {
    match spec {
        StrategySpec::Recreate(_) => (
            vec![
                format!("hold new requests (up to {})", cfg.hold_timeout),
                format!("drain and stop {n} × current"),
                format!("start {n} × {v}; release held requests when healthy"),
            ],
            n,
        ),
        StrategySpec::BlueGreen(b) => {
            let switch = if b.auto_promote {
                "switch 100% to green at once".to_string()
            } else {
                "wait for `baton promote`, then switch 100% to green".to_string()
            };
            (
                vec![
                    format!("start {n} × {v} (green) beside blue"),
                    format!(
                        "wait until all are healthy (startup_timeout {})",
                        cfg.health.startup_timeout
                    ),
                    switch,
                    format!(
                        "keep blue warm for {} (instant rollback)",
                        b.scale_down_delay
                    ),
                    "drain and stop blue".into(),
                ],
                2 * n,
            )
        }
        StrategySpec::Rolling(r) => {
            let mut surge = r.max_surge.resolve(n, true);
            let unavailable = r.max_unavailable.resolve(n, false);
            if surge == 0 && unavailable == 0 {
                surge = 1;
            }
            let batch = surge.max(unavailable).max(1);
            (
                vec![
                    format!("replace {n} instances in batches of up to {batch} (max_surge {surge}, max_unavailable {unavailable})"),
                    format!("serving capacity stays at or above {}", n - unavailable.min(n)),
                    format!("pause {} between batches", r.batch_pause),
                ],
                n + surge,
            )
        }
        StrategySpec::Canary(c) => {
            let mut steps: Vec<String> = c
                .steps
                .iter()
                .map(|s| match s {
                    CanaryStep::Weight { weight } => {
                        let inst = (u64::from(n) * u64::from(*weight)).div_ceil(100).max(1);
                        format!("send {weight}% to {v} ({inst} instance(s))")
                    }
                    CanaryStep::Pause {
                        pause: PauseSpec::For(d),
                    } => format!("pause {d}"),
                    CanaryStep::Pause {
                        pause: PauseSpec::Manual,
                    } => "pause until `baton promote`".into(),
                })
                .collect();
            steps.push(format!(
                "scale {v} to {n}, send 100%, drain and stop the old version"
            ));
            (steps, 2 * n)
        }
        StrategySpec::AbTest(a) => (
            vec![
                format!("start {n} × {v} beside the current version"),
                format!("split traffic {}% to {v}, sticky per client", a.weight),
                "run until `baton promote APP --to VARIANT`".into(),
            ],
            2 * n,
        ),
    }
}

fn average_rss(record: &AppRecord) -> Option<u64> {
    let values: Vec<u64> = record
        .instances
        .iter()
        .filter_map(|h| match &h.detail {
            HandleDetail::Process { pid, .. } => rss_of(*pid),
            _ => None,
        })
        .collect();
    if values.is_empty() {
        None
    } else {
        Some(values.iter().sum::<u64>() / values.len() as u64)
    }
}

/// Resident memory of a process in bytes, from /proc.
fn rss_of(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    kib_field(&status, "VmRSS:")
}

fn mem_available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    kib_field(&info, "MemAvailable:")
}

fn kib_field(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kib: u64 = line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kib_fields() {
        let text = "MemTotal:       24000000 kB\nMemAvailable:    1000 kB\n";
        assert_eq!(kib_field(text, "MemAvailable:"), Some(1_024_000));
        assert_eq!(kib_field(text, "Nope:"), None);
    }

    #[test]
    fn own_process_has_rss() {
        assert!(rss_of(std::process::id() as i32).is_some_and(|r| r > 0));
    }
}
