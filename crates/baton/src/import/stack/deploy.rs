//! A stack service's `deploy:` section on the swarm runtime: placement becomes
//! `[apps.APP.swarm]`, `update_config` becomes `[apps.APP.rolling]` where the meaning is
//! the same, and what Swarm does that baton does itself (restarts, the VIP, rollbacks) is
//! named. `replicas` and the memory / cpus limits are read by `service::resources`.

use super::super::service::{resources_not_translated, scalar, Draft, Rolling};
use super::super::text::{format_ms, parse_duration_ms};
use super::super::Report;
use yaml_serde::{Mapping, Value};

pub fn deploy(svc: &Mapping, report: &mut Report, draft: &mut Draft) {
    let Some(deploy) = svc.get("deploy").and_then(Value::as_mapping) else {
        return;
    };
    for (k, v) in deploy {
        let k = scalar(k);
        let key = format!("deploy.{k}");
        match k.as_str() {
            "replicas" => {}
            "resources" => resources_not_translated(v, report),
            "placement" => placement(v, report, draft),
            "update_config" => update_config(v, report, draft),
            "mode" => mode(&scalar(v), report),
            "endpoint_mode" if scalar(v) == "dnsrr" => {}
            "endpoint_mode" => report.skip(
                &key,
                format!("{}: baton makes each service with endpoint mode dnsrr (no VIP) and routes to each task's overlay address itself", scalar(v)),
            ),
            "restart_policy" => report.skip(
                &key,
                "baton makes each service with restart condition none and replaces a task that ends itself: a new instance, health-checked before it takes traffic".into(),
            ),
            "rollback_config" => report.skip(
                &key,
                "baton rolls a failed deployment back under the app's own strategy bounds ([apps.APP.rolling] for rolling); there is no separate rollback setting".into(),
            ),
            "labels" => report.skip(
                &key,
                "baton labels its services itself (baton.owner, baton.app, baton.version, baton.instance) and has no key for more".into(),
            ),
            _ => report.skip(&key, format!("Swarm's deploy.{k} has no baton equivalent")),
        }
    }
}

fn mode(mode: &str, report: &mut Report) {
    let why = match mode {
        "replicated" => return,
        "global" => "baton runs `replicas` instances, spread over the ready nodes, not one on every node: set replicas to the number of nodes that should run one",
        "replicated-job" | "global-job" => "a job runs to completion; baton runs long-lived instances behind its proxy",
        _ => "not a Swarm service mode baton knows",
    };
    report.skip("deploy.mode", format!("{mode}: {why}"));
}

fn placement(v: &Value, report: &mut Report, draft: &mut Draft) {
    for (k, v) in v.as_mapping().into_iter().flatten() {
        let k = scalar(k);
        let items = v.as_sequence().map(Vec::as_slice).unwrap_or_default();
        match k.as_str() {
            "constraints" => {
                for (i, c) in items.iter().enumerate() {
                    let c = scalar(c);
                    if c.contains("==") || c.contains("!=") {
                        draft.swarm.constraints.push(c);
                    } else {
                        report.skip(
                            &format!("deploy.placement.constraints[{i}]"),
                            format!("{c:?} has no == or !=, so Swarm would refuse it too"),
                        );
                    }
                }
                if !draft.swarm.constraints.is_empty() {
                    report.note("placement constraints: Swarm places each task within them, as in the stack (baton spreads a version over the nodes itself only without constraints)".into());
                }
            }
            "preferences" => {
                for (i, p) in items.iter().enumerate() {
                    let key = format!("deploy.placement.preferences[{i}]");
                    match (p.get("spread").map(scalar), &draft.swarm.spread) {
                        (Some(s), None) => draft.swarm.spread = Some(s),
                        (Some(s), Some(first)) => report.skip(
                            &key,
                            format!("spread: {s}: baton spreads over one attribute ({first})"),
                        ),
                        (None, _) => report.skip(&key, "only `spread` preferences exist in baton".into()),
                    }
                }
            }
            "max_replicas_per_node" => report.skip(
                "deploy.placement.max_replicas_per_node",
                "baton has no per-node cap: it puts each new task on the ready node with the fewest tasks of that version".into(),
            ),
            _ => report.skip(
                &format!("deploy.placement.{k}"),
                "no baton equivalent".into(),
            ),
        }
    }
}

/// `update_config` as rolling bounds: Swarm replaces `parallelism` tasks at a time (0:
/// all), stopping the old ones first (`stop-first`, its default: baton's
/// `max_unavailable`) or starting the new ones first (`start-first`: `max_surge`), and
/// waits `delay` between batches (`batch_pause`).
fn update_config(v: &Value, report: &mut Report, draft: &mut Draft) {
    let Some(m) = v.as_mapping() else {
        report.skip("deploy.update_config", "not a mapping of settings".into());
        return;
    };
    let key = |k: &str| format!("deploy.update_config.{k}");
    let mut parallelism = 1;
    let mut start_first = false;
    let mut delay_ms = 0;
    for (k, v) in m {
        let k = scalar(k);
        let text = scalar(v);
        match k.as_str() {
            "parallelism" => match v.as_u64() {
                Some(n) => parallelism = n,
                None => report.skip(&key(&k), format!("{text:?} is not a count")),
            },
            "order" => match text.as_str() {
                "start-first" => start_first = true,
                "stop-first" => {}
                _ => report.skip(&key(&k), format!("{text:?} is neither start-first nor stop-first")),
            },
            "delay" => match parse_duration_ms(&text) {
                Ok(ms) => delay_ms = ms,
                Err(e) => report.skip(&key(&k), e),
            },
            "failure_action" if text == "rollback" => report.note(
                "update_config failure_action: rollback is what baton does: a new instance that fails its start or health check rolls the deployment back".into(),
            ),
            "failure_action" => report.skip(
                &key(&k),
                format!("{text}: baton rolls a failed deployment back; it never leaves it paused or carries on"),
            ),
            "monitor" => report.skip(
                &key(&k),
                "baton watches no fixed window: a new instance takes traffic once its health check passes, and one that fails before the deployment ends rolls it back".into(),
            ),
            "max_failure_ratio" => report.skip(
                &key(&k),
                "baton tolerates no failed instance in a deployment: the first one rolls it back".into(),
            ),
            _ => report.skip(&key(&k), "no baton equivalent".into()),
        }
    }
    let batch = if parallelism == 0 {
        "\"100%\"".to_string()
    } else {
        parallelism.to_string()
    };
    let (max_surge, max_unavailable) = if start_first {
        (batch, "0".to_string())
    } else {
        ("0".to_string(), batch)
    };
    let order = if start_first {
        "start-first"
    } else {
        "stop-first"
    };
    let replicas = draft.replicas.unwrap_or(1);
    if !start_first && (parallelism == 0 || parallelism >= replicas) {
        report.note(format!(
            "update_config order: stop-first with parallelism {parallelism} and {replicas} replica(s) stops every instance at once, so the app serves nothing until the new ones are healthy, as in the stack; order: start-first (max_surge) replaces them with no gap"
        ));
    }
    draft.rolling = Some(Rolling {
        max_surge,
        max_unavailable,
        batch_pause: (delay_ms > 0).then(|| format_ms(delay_ms)),
        source: format!(
            "deploy.update_config: parallelism {parallelism}, order {order}{}",
            if delay_ms > 0 {
                format!(", delay {}", format_ms(delay_ms))
            } else {
                String::new()
            }
        ),
    });
}
