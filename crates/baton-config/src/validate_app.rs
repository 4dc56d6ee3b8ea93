//! Checks of one `[apps.NAME]` section: runtime, routing, health and strategy parameters.

use crate::kinds::RuntimeKind;
use crate::locate::{key, KeyPath, Seg};
use crate::model::AppConfig;
use crate::validate::{positive, Issue};
use baton_analysis::KeyPart;
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
    analysis(name, app, issues);
    crate::hooks::check(name, &app.hooks, issues);
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
        RuntimeKind::Swarm => {
            if app.network.is_none() {
                issues.push((
                    key!["apps", name, "network"],
                    format!(
                        "[apps.{name}] uses the swarm runtime but has no `network`: name the attachable \
                         overlay network its tasks join and baton reaches them on, e.g. network = \"{name}-net\" \
                         (created with `docker network create --driver overlay --attachable {name}-net`)"
                    ),
                ));
            }
            for (key, set) in [
                ("pull", app.pull != crate::model::PullPolicy::Never),
                ("wait_healthcheck", app.wait_healthcheck),
            ] {
                if set {
                    issues.push((
                        key!["apps", name, key],
                        format!(
                            "`{key}` in [apps.{name}] has no effect with runtime = \"swarm\" (each node \
                             fetches the image itself, and baton health-checks every task): remove it"
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
    docker(name, app, issues);
}

/// The docker keys: required ones for `runtime = "docker"`, well-formed values always, and
/// no docker-only key on a runtime that would ignore it.
fn docker(name: &str, app: &AppConfig, issues: &mut Vec<Issue>) {
    let at = |k: &str| key!["apps", name, k];
    let runtime = app.runtime;
    if matches!(runtime, RuntimeKind::Docker | RuntimeKind::Swarm) {
        match app.image.as_deref().map(str::trim) {
            None | Some("") => issues.push((
                at("image"),
                format!(
                    "[apps.{name}] uses the {runtime} runtime but has no `image`: add the image to \
                     run, e.g. image = \"myorg/{name}:{{version}}\" ({{version}} is replaced by \
                     the deployed version)"
                ),
            )),
            Some(image) if image.chars().any(char::is_whitespace) => issues.push((
                at("image"),
                format!("`image` in [apps.{name}] is {image:?}: an image reference has no spaces"),
            )),
            Some(_) => {}
        }
        if app.container_port.is_none() {
            issues.push((
                at("container_port"),
                format!(
                    "[apps.{name}] uses the {runtime} runtime but has no `container_port`: add the \
                     port the container listens on, e.g. container_port = 8080"
                ),
            ));
        }
        if app.cwd.is_some() {
            issues.push((
                at("cwd"),
                format!(
                    "`cwd` in [apps.{name}] has no effect with runtime = \"{runtime}\" (the image \
                     sets the working directory): remove it"
                ),
            ));
        }
    } else if matches!(app.runtime, RuntimeKind::Process | RuntimeKind::Static) {
        for (key, set) in [
            ("volumes", !app.volumes.is_empty()),
            ("network", app.network.is_some()),
            ("memory", app.memory.is_some()),
            ("cpus", app.cpus.is_some()),
            ("pull", app.pull != crate::model::PullPolicy::Never),
            ("wait_healthcheck", app.wait_healthcheck),
        ] {
            if set {
                issues.push((
                    at(key),
                    format!(
                        "`{key}` in [apps.{name}] only applies to runtime = \"docker\", and \
                         this app uses runtime = \"{}\": remove it, or set runtime = \"docker\"",
                        app.runtime
                    ),
                ));
            }
        }
    }
    if runtime != RuntimeKind::Swarm && !app.swarm.is_empty() {
        issues.push((
            at("swarm"),
            format!(
                "[apps.{name}.swarm] only applies to runtime = \"swarm\", and this app uses \
                 runtime = \"{runtime}\": remove the section, or set runtime = \"swarm\""
            ),
        ));
    }
    for (i, c) in app.swarm.constraints.iter().enumerate() {
        if !["==", "!="].iter().any(|op| c.contains(op)) {
            issues.push((
                key!["apps", name, "swarm", "constraints", i],
                format!(
                    "constraint {c:?} in [apps.{name}.swarm] has no == or !=: write it as Swarm does, \
                     e.g. \"node.labels.zone==a\" or \"node.role!=manager\""
                ),
            ));
        }
    }
    if let Some(memory) = &app.memory {
        if let Err(e) = crate::model::parse_memory(memory) {
            issues.push((at("memory"), format!("`memory` in [apps.{name}]: {e}")));
        }
    }
    if let Some(cpus) = app.cpus {
        if !(cpus.is_finite() && cpus > 0.0) {
            issues.push((
                at("cpus"),
                format!(
                    "`cpus` in [apps.{name}] is {cpus}: give a number of CPUs above zero, e.g. \
                     cpus = 0.5 or cpus = 2"
                ),
            ));
        }
    }
    if app.network.as_deref().is_some_and(|n| n.trim().is_empty()) {
        issues.push((
            at("network"),
            format!(
                "`network` in [apps.{name}] is empty: name a Docker network, or remove the key"
            ),
        ));
    }
    for (i, volume) in app.volumes.iter().enumerate() {
        if let Err(why) = check_volume(volume) {
            issues.push((
                key!["apps", name, "volumes", i],
                format!(
                    "volume {volume:?} in [apps.{name}] {why}: write \"HOST_PATH:CONTAINER_PATH\" \
                     or \"VOLUME_NAME:CONTAINER_PATH\", optionally followed by \":ro\""
                ),
            ));
        }
    }
}

/// `source:target[:ro|:rw]` with an absolute target.
fn check_volume(volume: &str) -> Result<(), &'static str> {
    let parts: Vec<&str> = volume.split(':').collect();
    let (source, target) = match parts.as_slice() {
        [s, t] | [s, t, "ro" | "rw"] => (*s, *t),
        [_, _, _] => return Err("has an unknown mode (use ro or rw)"),
        _ => return Err("is not of the form source:target"),
    };
    if source.trim().is_empty() {
        return Err("has no source");
    }
    if source.contains('/') && !source.starts_with('/') {
        return Err("has a relative host path (Docker needs it absolute)");
    }
    if !target.starts_with('/') {
        return Err("needs an absolute path inside the container");
    }
    Ok(())
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
    upgrade_protocols(name, app, issues);
}

/// Each entry an RFC 9110 token naming a protocol the app speaks after `Upgrade`;
/// `h2c` would tunnel HTTP/2 past the proxy's routing and header rules.
fn upgrade_protocols(name: &str, app: &AppConfig, issues: &mut Vec<Issue>) {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&b))
            && !s.starts_with('/')
            && !s.ends_with('/')
            && s.matches('/').count() <= 1
    };
    for (i, proto) in app.upgrade_protocols.iter().enumerate() {
        let at = key!["apps", name, "upgrade_protocols", i];
        if !token(proto) {
            issues.push((
                at,
                format!(
                    "{proto:?} in `upgrade_protocols` of [apps.{name}] is not a protocol name: \
                     write the name the client sends in `Upgrade`, e.g. \"myproto\" or \"myproto/2\""
                ),
            ));
        } else if proto
            .split('/')
            .next()
            .is_some_and(|n| n.eq_ignore_ascii_case("h2c"))
        {
            issues.push((
                at,
                format!(
                    "`upgrade_protocols` of [apps.{name}] lists {proto:?}: baton never forwards an \
                     h2c upgrade (the tunnelled HTTP/2 would bypass routing and the X-Forwarded-For \
                     rewrite); remove it, clients can speak HTTP/2 to baton directly"
                ),
            ));
        } else if app.upgrade_protocols[..i]
            .iter()
            .any(|p| p.eq_ignore_ascii_case(proto))
        {
            issues.push((
                at,
                format!("{proto:?} is listed twice in `upgrade_protocols` of [apps.{name}]: remove the duplicate"),
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

/// `[apps.NAME.analysis]`: the spec checks itself (baton-analysis owns its rules); here its
/// key paths become file positions.
fn analysis(name: &str, app: &AppConfig, issues: &mut Vec<Issue>) {
    for e in app.analysis.validate_all() {
        let mut at = key!["apps", name, "analysis"];
        at.0.extend(e.key.iter().map(|part| match part {
            KeyPart::Key(k) => Seg::Key(k.clone()),
            KeyPart::Index(i) => Seg::Index(*i),
        }));
        issues.push((at, format!("[apps.{name}.analysis] {}", e.message)));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod docker_tests {
    use crate::{parse, parse_memory, PullPolicy};
    use std::path::Path;

    const BASE: &str = "[apps.web]\nruntime = \"docker\"\n";

    fn err(extra: &str) -> String {
        let text = format!("{BASE}{extra}");
        parse(&text, Path::new("baton.toml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn docker_keys_parse_with_their_defaults() {
        let text = format!(
            "{BASE}image = \"myorg/web:{{version}}\"\ncontainer_port = 8080\n\
             volumes = [\"/srv/data:/data:ro\", \"cache:/cache\"]\nnetwork = \"backend\"\n\
             command = \"serve --fast\"\nmemory = \"512MiB\"\ncpus = 1.5\npull = \"missing\"\n\
             wait_healthcheck = true\n"
        );
        let cfg = parse(&text, Path::new("baton.toml")).unwrap();
        let web = &cfg.apps["web"];
        assert_eq!(web.image.as_deref(), Some("myorg/web:{version}"));
        assert_eq!(web.container_port, Some(8080));
        assert_eq!(web.volumes.len(), 2);
        assert_eq!(web.network.as_deref(), Some("backend"));
        assert_eq!(web.memory.as_deref(), Some("512MiB"));
        assert_eq!(web.cpus, Some(1.5));
        assert_eq!(web.pull, PullPolicy::Missing);
        assert!(web.wait_healthcheck);
        let min = format!("{BASE}image = \"web\"\ncontainer_port = 80\n");
        let web = parse(&min, Path::new("baton.toml")).unwrap().apps["web"].clone();
        assert_eq!((web.pull, web.wait_healthcheck), (PullPolicy::Never, false));
    }

    #[test]
    fn docker_nonsense_is_refused_with_its_line() {
        let e = err("container_port = 80\n");
        assert!(e.contains("no `image`"), "{e}");
        let e = err("image = \"web\"\n");
        assert!(e.contains("no `container_port`"), "{e}");
        let ok = "image = \"web\"\ncontainer_port = 80\n";
        let e = err(&format!("{ok}memory = \"12 parsecs\"\n"));
        assert!(
            e.contains("baton.toml:5") && e.contains("unknown unit"),
            "{e}"
        );
        let e = err(&format!("{ok}cpus = 0\n"));
        assert!(
            e.contains("baton.toml:5") && e.contains("above zero"),
            "{e}"
        );
        let e = err(&format!("{ok}volumes = [\"data\"]\n"));
        assert!(e.contains("source:target"), "{e}");
        let e = err(&format!("{ok}volumes = [\"data:rel\"]\n"));
        assert!(e.contains("absolute path"), "{e}");
        let e = err(&format!("{ok}volumes = [\"./data:/data\"]\n"));
        assert!(e.contains("relative host path"), "{e}");
        let e = err(&format!("{ok}pull = \"sometimes\"\n"));
        assert!(e.contains("baton.toml:5"), "{e}");
        let text = "[apps.web]\ncommand = \"./web\"\nmemory = \"1GiB\"\n";
        let e = parse(text, Path::new("baton.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("only applies to runtime = \"docker\""), "{e}");
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("512MiB"), Ok(512 << 20));
        assert_eq!(parse_memory("1g"), Ok(1 << 30));
        assert_eq!(parse_memory("100MB"), Ok(100_000_000));
        assert!(parse_memory("1KiB").unwrap_err().contains("6MiB"));
        assert!(parse_memory("lots").is_err());
        assert!(parse_memory("99999999999999TiB").is_err());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod request_policy_tests {
    use crate::parse;
    use baton_core::UnderscoreHeaders;
    use std::path::Path;

    const BASE: &str = "[apps.web]\ncommand = \"./web\"\n";

    fn parsed(extra: &str) -> Result<crate::Config, String> {
        parse(&format!("{BASE}{extra}"), Path::new("baton.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn upgrade_protocols_and_underscores_parse_with_their_defaults() {
        let web = parsed("").unwrap().apps["web"].clone();
        assert!(web.upgrade_protocols.is_empty());
        assert_eq!(web.underscores_in_headers, UnderscoreHeaders::Drop);
        let web = parsed(
            "upgrade_protocols = [\"myproto\", \"other/2\"]\nunderscores_in_headers = \"forward\"\n",
        )
        .unwrap()
        .apps["web"]
            .clone();
        assert_eq!(web.upgrade_protocols, ["myproto", "other/2"]);
        assert_eq!(web.underscores_in_headers, UnderscoreHeaders::Forward);
    }

    #[test]
    fn bad_upgrade_protocols_are_refused_with_their_line() {
        let e = parsed("upgrade_protocols = [\"h2c\"]\n").unwrap_err();
        assert!(
            e.contains("baton.toml:3") && e.contains("never forwards an h2c"),
            "{e}"
        );
        let e = parsed("upgrade_protocols = [\"H2C/1\"]\n").unwrap_err();
        assert!(e.contains("h2c"), "{e}");
        for bad in ["", "my proto", "a/b/c", "/x", "x,y"] {
            let e = parsed(&format!("upgrade_protocols = [{bad:?}]\n")).unwrap_err();
            assert!(e.contains("is not a protocol name"), "{bad:?}: {e}");
        }
        let e = parsed("upgrade_protocols = [\"a\", \"A\"]\n").unwrap_err();
        assert!(e.contains("listed twice"), "{e}");
        let e = parsed("underscores_in_headers = \"keep\"\n").unwrap_err();
        assert!(e.contains("baton.toml:3"), "{e}");
    }
}
