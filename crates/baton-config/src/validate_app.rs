//! Checks of one `[apps.NAME]` section: runtime, routing, health and strategy parameters.

use crate::kinds::RuntimeKind;
use crate::locate::{key, KeyPath};
use crate::model::AppConfig;
use crate::validate::{positive, Issue};
use baton_core::{validate_app_name, Quantity};
use baton_rollout::spec::{CanaryRule, CanaryStep};

pub(crate) fn check(name: &str, app: &AppConfig, issues: &mut Vec<Issue>) {
    if let Err(e) = validate_app_name(name) {
        issues.push((key!["apps", name], format!("{e}: rename [apps.{name}]")));
    }
    runtime(name, app, issues);
    if app.replicas == 0 {
        issues.push((
            key!["apps", name, "replicas"],
            format!("`replicas` in [apps.{name}] is 0: use 1 or more"),
        ));
    }
    routing(name, app, issues);
    health(name, app, issues);
    rolling(name, app, issues);
    canary(name, app, issues);
    ab_test(name, app, issues);
}

fn runtime(name: &str, app: &AppConfig, issues: &mut Vec<Issue>) {
    let has_command = app.command.as_deref().is_some_and(|c| !c.trim().is_empty());
    match app.runtime {
        RuntimeKind::Process if !has_command => issues.push((
            key!["apps", name, "command"],
            format!(
                "[apps.{name}] uses the process runtime but has no `command`: add the command \
                 that starts one instance, e.g. command = \"./server --port {{port}}\""
            ),
        )),
        RuntimeKind::Static => {
            for (key, set) in [
                ("command", app.command.is_some()),
                ("cwd", app.cwd.is_some()),
                ("env", !app.env.is_empty()),
            ] {
                if set {
                    issues.push((
                        key!["apps", name, key],
                        format!(
                            "`{key}` in [apps.{name}] has no effect with runtime = \"static\" \
                             (baton does not start its instances): remove it, or use runtime = \"process\""
                        ),
                    ));
                }
            }
        }
        _ => {}
    }
    for key in app.env.keys() {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            issues.push((
                key!["apps", name, "env", key],
                format!("{key:?} in [apps.{name}.env] is not a valid environment variable name"),
            ));
        }
    }
    if app.container_port == Some(0) {
        issues.push((
            key!["apps", name, "container_port"],
            "`container_port` must be a port from 1 to 65535".into(),
        ));
    }
}

fn routing(name: &str, app: &AppConfig, issues: &mut Vec<Issue>) {
    let bad_path = !app.path.starts_with('/')
        || app
            .path
            .chars()
            .any(|c| c.is_whitespace() || c == '?' || c == '#');
    if bad_path {
        issues.push((
            key!["apps", name, "path"],
            format!(
                "`path` in [apps.{name}] is {:?}: write a path prefix starting with /, e.g. \"/\" or \"/api\"",
                app.path
            ),
        ));
    }
    for (i, host) in app.hosts.iter().enumerate() {
        if let Err(why) = check_host(host) {
            issues.push((
                key!["apps", name, "hosts", i],
                format!("host {host:?} in [apps.{name}] {why}"),
            ));
        } else if app.hosts[..i].iter().any(|h| h.eq_ignore_ascii_case(host)) {
            issues.push((
                key!["apps", name, "hosts", i],
                format!("host {host:?} is listed twice in [apps.{name}]: remove the duplicate"),
            ));
        }
    }
}

fn check_host(host: &str) -> Result<(), &'static str> {
    let bare = host.strip_prefix("*.").unwrap_or(host);
    if bare.is_empty() {
        return Err("is empty: write a host name such as \"example.com\" or \"*.example.com\"");
    }
    if host.contains("://") || host.contains('/') {
        return Err("must be a host name only, without scheme or path (e.g. \"example.com\")");
    }
    if host.contains(':') {
        return Err("must not include a port: the proxy matches the host name only");
    }
    let ok = bare
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
    if ok {
        Ok(())
    } else {
        Err("is not a valid host name (a `*.` prefix is the only wildcard allowed)")
    }
}

fn health(name: &str, app: &AppConfig, issues: &mut Vec<Issue>) {
    let h = &app.health;
    let at = |key: &str| key!["apps", name, "health", key];
    positive(at("interval"), h.interval, issues);
    positive(at("timeout"), h.timeout, issues);
    positive(at("startup_timeout"), h.startup_timeout, issues);
    for (key, value) in [("healthy", h.healthy), ("unhealthy", h.unhealthy)] {
        if value == 0 {
            issues.push((
                at(key),
                format!("`{key}` in [apps.{name}.health] is 0: use 1 or more (consecutive probes)"),
            ));
        }
    }
    if !h.path.starts_with('/') {
        issues.push((
            at("path"),
            format!("`path` in [apps.{name}.health] is {:?}: write a path starting with /, e.g. \"/health\"", h.path),
        ));
    }
    for (i, status) in h.expect_status.iter().enumerate() {
        if !(100..=599).contains(status) {
            issues.push((
                key!["apps", name, "health", "expect_status", i],
                format!("{status} in `expect_status` is not an HTTP status: use 100-599"),
            ));
        }
    }
}

/// Both limits written as zero leave no room to replace anything. (Percentages that only
/// round down to zero for a small `replicas` are fine: the rollout then surges by one, as
/// Kubernetes does.)
fn rolling(name: &str, app: &AppConfig, issues: &mut Vec<Issue>) {
    let r = &app.rolling;
    let zero = |q: Quantity| matches!(q, Quantity::Count(0) | Quantity::Percent(0));
    if zero(r.max_surge) && zero(r.max_unavailable) {
        issues.push((
            key!["apps", name, "rolling", "max_surge"],
            format!(
                "[apps.{name}.rolling] max_surge = {} and max_unavailable = {} leave no room to \
                 replace an instance: raise one of them (e.g. max_surge = 1)",
                r.max_surge, r.max_unavailable
            ),
        ));
    }
}

fn canary(name: &str, app: &AppConfig, issues: &mut Vec<Issue>) {
    let at = |rest: KeyPath| {
        let mut p = key!["apps", name, "canary"];
        p.0.extend(rest.0);
        p
    };
    let mut previous: Option<u32> = None;
    for (i, step) in app.canary.steps.iter().enumerate() {
        let CanaryStep::Weight { weight } = *step else {
            continue;
        };
        if weight > 100 {
            issues.push((
                at(key!["steps", i, "weight"]),
                format!("canary weight {weight} is above 100: weights are percentages (0-100)"),
            ));
        } else if previous.is_some_and(|p| weight < p) {
            issues.push((
                at(key!["steps", i, "weight"]),
                format!(
                    "canary weight {weight} is below the previous step's {}: weights must not \
                     decrease (to go back, `baton abort` the deployment)",
                    previous.unwrap_or_default()
                ),
            ));
        }
        previous = Some(weight);
    }
    if previous.is_none() {
        issues.push((
            at(key!["steps"]),
            format!(
                "[apps.{name}.canary] has no weight step: add at least one, e.g. \
                 steps = [{{ weight = 10 }}, {{ pause = \"5m\" }}, {{ weight = 50 }}]"
            ),
        ));
    }
    rules(&at(key!["rules"]), &app.canary.rules, issues);
}

fn ab_test(name: &str, app: &AppConfig, issues: &mut Vec<Issue>) {
    let weight = app.ab_test.weight;
    if weight > 100 {
        issues.push((
            key!["apps", name, "ab_test", "weight"],
            format!(
                "ab_test weight {weight} is above 100: it is the new variant's percentage (0-100)"
            ),
        ));
    }
    rules(
        &key!["apps", name, "ab_test", "rules"],
        &app.ab_test.rules,
        issues,
    );
}

fn rules(at: &KeyPath, rules: &[CanaryRule], issues: &mut Vec<Issue>) {
    for (i, rule) in rules.iter().enumerate() {
        let mut here = at.clone();
        here.0.push(i.into());
        if let Err(e) = rule.to_rule("check") {
            let message = format!("invalid rule `{here}`: {e}");
            issues.push((here, message));
            continue;
        }
        let names = [&rule.header, &rule.cookie, &rule.query];
        if names.into_iter().flatten().any(|n| n.trim().is_empty()) {
            let message =
                format!("invalid rule `{here}`: the header, cookie or query name is empty");
            issues.push((here.clone(), message));
        }
        if let Some(Err(e)) = rule.regex.as_deref().map(regex::Regex::new) {
            let detail = e
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            let message = format!("invalid regex in rule `{here}`: {detail}");
            here.0.push("regex".into());
            issues.push((here, message));
        }
    }
}
