//! One compose service to one baton app: every key is either translated into a field of
//! [`Draft`] or reported with the reason it was not. The keys that mean the same on the
//! docker and the swarm runtime are read here for both; a stack's `deploy`, `networks`,
//! `secrets` and `configs` are read by `stack/`.

use super::text::{format_memory, format_ms, parse_docker_memory, parse_duration_ms};
use super::Report;
use std::path::{Component, Path, PathBuf};
use yaml_serde::{Mapping, Value};

/// Which runtime the app is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `import compose`: containers on this engine.
    Docker,
    /// `import stack`: services on a swarm, behind baton instead of the routing mesh.
    Swarm,
}

/// The app as it will be written.
#[derive(Default)]
pub struct Draft {
    pub app: String,
    /// `"docker"` or `"swarm"`.
    pub runtime: &'static str,
    /// `hosts` and why they were chosen.
    pub hosts: Option<(Vec<String>, String)>,
    /// `[proxy] listen` and the compose text it came from.
    pub listen: Option<(String, String)>,
    pub image: String,
    pub container_port: Option<u16>,
    pub strategy: &'static str,
    pub replicas: Option<u64>,
    pub env: Vec<(String, String)>,
    pub volumes: Vec<String>,
    /// The network and why it was chosen.
    pub network: Option<(String, String)>,
    pub command: Option<String>,
    pub memory: Option<String>,
    pub cpus: Option<f64>,
    pub pull: Option<&'static str>,
    pub stop_timeout: Option<String>,
    pub health: Health,
    /// `[apps.APP.swarm]`.
    pub swarm: Swarm,
    /// `[apps.APP.rolling]`, when the source said how versions replace each other.
    pub rolling: Option<Rolling>,
}

/// `[apps.APP.swarm]` as it will be written.
#[derive(Default)]
pub struct Swarm {
    pub constraints: Vec<String>,
    pub spread: Option<String>,
    pub secrets: Vec<String>,
    pub configs: Vec<String>,
}

/// `[apps.APP.rolling]` as it will be written: values as TOML text (`2`, `"100%"`).
pub struct Rolling {
    pub max_surge: String,
    pub max_unavailable: String,
    pub batch_pause: Option<String>,
    /// What it was read from, for a comment.
    pub source: String,
}

#[derive(Default)]
pub struct Health {
    pub tcp: bool,
    pub path: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub unhealthy: Option<u64>,
    pub startup_timeout: Option<String>,
    /// The compose test it came from, for a comment.
    pub source: Option<String>,
}

/// What the translation needs to know besides the service itself.
pub struct Context<'a> {
    pub service: &'a str,
    /// The compose project name: prefixes named volumes and networks on the engine.
    pub project: &'a str,
    pub compose_dir: &'a Path,
    /// Top-level `volumes:` and `networks:`.
    pub top_volumes: Option<&'a Mapping>,
    pub top_networks: Option<&'a Mapping>,
    /// Other services of the file that stay in compose (not this one or its twin).
    pub others: Vec<String>,
    /// The image as written, before interpolation, to see where its tag came from.
    pub raw_image: Option<String>,
    pub target: Target,
}

pub fn translate(
    svc: &Mapping,
    ctx: &Context,
    report: &mut Report,
    draft: &mut Draft,
) -> Result<(), String> {
    // Keys read together with another key, so the loop below skips them.
    const HANDLED: &[&str] = &[
        "image",
        "ports",
        "expose",
        "environment",
        "volumes",
        "command",
        "mem_limit",
        "cpus",
        "scale",
        "healthcheck",
        "pull_policy",
        "stop_grace_period",
        "build",
        "env_file",
    ];
    // Keys the caller reads (swarm) or that are read below (docker).
    let own: &[&str] = match ctx.target {
        Target::Docker => &["networks", "network_mode", "deploy"],
        Target::Swarm => &["networks", "deploy", "secrets", "configs"],
    };
    image(svc, ctx, report, draft);
    ports(svc, ctx, report, draft)?;
    environment(svc, report, draft);
    volumes(svc, ctx, report, draft);
    if ctx.target == Target::Docker {
        network(svc, ctx, report, draft);
        deploy_keys(svc, report);
    }
    if let Some(c) = svc.get("command") {
        draft.command = match c {
            Value::Sequence(items) => {
                let words: Vec<String> = items.iter().map(scalar).collect();
                Some(shell_words::join(words))
            }
            other => Some(scalar(other)),
        };
    }
    resources(svc, report, draft);
    healthcheck(svc, ctx, report, draft);
    env_file(svc, ctx, report, draft);
    pull_policy(svc, ctx, report, draft);
    if let Some(g) = svc.get("stop_grace_period") {
        match parse_duration_ms(&scalar(g)) {
            Ok(ms) => draft.stop_timeout = Some(format_ms(ms)),
            Err(e) => report.skip("stop_grace_period", e),
        }
    }
    for (k, _) in svc {
        let k = scalar(k);
        if HANDLED.contains(&k.as_str()) || own.contains(&k.as_str()) || k.starts_with("x-") {
            continue;
        }
        report.skip(&k, why_not(&k, ctx));
    }
    Ok(())
}

fn pull_policy(svc: &Mapping, ctx: &Context, report: &mut Report, draft: &mut Draft) {
    let Some(p) = svc.get("pull_policy") else {
        return;
    };
    let p = scalar(p);
    if ctx.target == Target::Swarm {
        report.skip(
            "pull_policy",
            format!("{p:?}: each node fetches the image itself when Swarm starts a task there, so baton's `pull` does not apply to the swarm runtime"),
        );
        return;
    }
    draft.pull = match p.as_str() {
        "always" | "daily" | "weekly" => Some("always"),
        "missing" | "if_not_present" => Some("missing"),
        "never" => Some("never"),
        _ => {
            report.skip(
                "pull_policy",
                format!(
                    "{p:?} has no baton equivalent (pull = never | missing | always); baton never builds"
                ),
            );
            None
        }
    };
}

/// A scalar as compose would read it (numbers and booleans as text).
pub fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => yaml_serde::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// The reason a key has no translation.
fn why_not(key: &str, ctx: &Context) -> String {
    let stays = if ctx.others.is_empty() {
        "its dependencies".to_string()
    } else {
        ctx.others.join(", ")
    };
    if ctx.target == Target::Swarm {
        if let Some(why) = why_not_on_swarm(key) {
            return why.into();
        }
    }
    match key {
        "container_name" => "baton names each container itself (app, version, instance): two versions run side by side, so one fixed name would collide".into(),
        "depends_on" => format!("baton starts only this app; keep {stays} running with compose (or however you run them now) before `baton serve`"),
        "links" | "external_links" => "legacy compose links: put the app on a shared `network` and reach other containers by name".into(),
        "restart" => "baton owns the container's lifecycle (an instance that exits is reported to its deployment); a Docker restart policy would fight it".into(),
        "labels" => "baton sets its own container labels (baton.app, baton.version, baton.instance) and has no key for extra ones".into(),
        "logging" => "baton reads container output through the Docker API (`baton logs`); the container keeps Docker's default log driver".into(),
        "entrypoint" => "no baton key: bake the entrypoint into the image (ENTRYPOINT) or fold it into `command`".into(),
        "profiles" => "compose profiles choose which services start; baton starts this app on `baton deploy`".into(),
        "extends" => "resolve `extends` first (`docker compose config` prints the merged service) and import that".into(),
        "secrets" | "configs" => "baton has no secrets/configs mount: use `volumes` with a read-only file, or env".into(),
        "hostname" | "domainname" => "each instance gets Docker's default hostname; two versions share no fixed name".into(),
        _ => format!("baton has no key for `{key}`: set it in the image (Dockerfile) or keep this part outside baton"),
    }
}

/// The reasons that differ for a stack file: keys `docker stack deploy` ignores too, and
/// what baton's swarm services do instead.
fn why_not_on_swarm(key: &str) -> Option<&'static str> {
    Some(match key {
        "container_name" => "`docker stack deploy` ignores it too; baton names each instance's service <app>-<seq>-<version>, as two versions run side by side",
        "depends_on" => "`docker stack deploy` ignores it too; baton starts only its apps: keep the services they need in the stack",
        "links" | "external_links" => "`docker stack deploy` ignores them too: the app reaches the stack's services by name on its overlay `network`",
        "restart" => "`docker stack deploy` ignores it too (deploy.restart_policy is Swarm's); baton makes each service with restart condition none and replaces an exited task itself",
        "network_mode" => "`docker stack deploy` ignores it too; baton's tasks join the overlay named in `network`",
        "labels" => "baton sets its own container labels (baton.app, baton.version, baton.instance) and has no key for extra ones",
        "logging" => "baton reads each task's output through the manager's Engine API (`baton logs`); the tasks keep the engine's default log driver",
        "hostname" | "domainname" => "each task gets Swarm's default hostname (its container id); two versions share no fixed name",
        _ => return None,
    })
}

fn image(svc: &Mapping, ctx: &Context, report: &mut Report, draft: &mut Draft) {
    let built = svc.contains_key("build");
    let Some(img) = svc.get("image").map(scalar) else {
        draft.image = format!("{}:{{version}}", ctx.service);
        report.skip(
            "build",
            format!(
                "baton never builds images: build and tag each version before deploying it, e.g. `docker build -t {}:v2 <context>` then `baton deploy APP v2`",
                ctx.service
            ),
        );
        return;
    };
    if built {
        report.skip(
            "build",
            format!(
                "baton never builds images: build and tag each version as {img} before `baton deploy`"
            ),
        );
    }
    let (repo, tag, digest) = split_image(&img);
    draft.image = format!("{repo}:{{version}}");
    if let Some(d) = digest {
        report.skip(
            "image",
            format!("the digest pin @{d} is dropped: baton deploys tags, so deploy the tag that digest belongs to"),
        );
    }
    // Where the tag came from: a variable names the version each deploy sets.
    let raw_tag = ctx
        .raw_image
        .as_deref()
        .map(split_image)
        .and_then(|(_, t, _)| t);
    let from_var = raw_tag.filter(|t| t.contains('$'));
    match (tag, from_var) {
        (Some(t), Some(var)) if !t.is_empty() => {
            report.note(format!(
                "image tag {var} is the version: it is {t} now, so `baton deploy {} {t}` runs what compose runs",
                draft.app
            ));
            report.current_version = Some(t);
        }
        (_, Some(var)) => {
            report.note(format!(
                "image tag {var} is the version, but it is not set here: deploy with `baton deploy {} VERSION` where VERSION is the tag compose would use",
                draft.app
            ));
        }
        (Some(t), None) => {
            report.note(format!(
                "image {img} becomes the template {}; deploy the current version with `baton deploy {} {t}`",
                draft.image, draft.app
            ));
            report.current_version = Some(t);
        }
        (None, None) => {
            report.note(format!(
                "image {img} has no tag (Docker means `latest`); baton deploys named versions: tag builds ({repo}:v2) and run `baton deploy {} v2`",
                draft.app
            ));
            report.current_version = Some("latest".into());
        }
    }
}

/// `[registry[:port]/]repo[:tag][@digest]` into (repo, tag, digest).
pub fn split_image(img: &str) -> (String, Option<String>, Option<String>) {
    let (name, digest) = match img.split_once('@') {
        Some((n, d)) => (n, Some(d.to_string())),
        None => (img, None),
    };
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[last_slash..].rfind(':') {
        Some(i) => {
            let at = last_slash + i;
            (
                name[..at].to_string(),
                Some(name[at + 1..].to_string()),
                digest,
            )
        }
        None => (name.to_string(), None, digest),
    }
}

/// One `ports` entry: host address, host port, container port.
struct PortMap {
    host_ip: Option<String>,
    published: Option<String>,
    target: u16,
    udp: bool,
    /// Long syntax `mode: host`: published on the task's node, not the routing mesh.
    host_mode: bool,
}

fn parse_short_port(s: &str) -> Result<PortMap, String> {
    let (spec, proto) = s.split_once('/').unwrap_or((s, "tcp"));
    let (host_ip, rest) = match spec.strip_prefix('[') {
        Some(r) => {
            let (ip, r) = r
                .split_once("]:")
                .ok_or_else(|| format!("{s:?} is not a port mapping"))?;
            (Some(ip.to_string()), r)
        }
        None => (None, spec),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (ip, published, target) = match parts.as_slice() {
        [t] => (host_ip, None, *t),
        [p, t] => (host_ip, Some(p.to_string()), *t),
        [ip, p, t] => (Some(ip.to_string()), Some(p.to_string()), *t),
        _ => return Err(format!("{s:?} is not a port mapping")),
    };
    let target = target.parse::<u16>().map_err(|_| {
        format!("{s:?}: container port {target:?} is not one port (ranges are not translated)")
    })?;
    Ok(PortMap {
        host_ip: ip.filter(|i| !i.is_empty()),
        published: published.filter(|p| !p.is_empty()),
        target,
        udp: proto.eq_ignore_ascii_case("udp"),
        host_mode: false,
    })
}

fn parse_port(v: &Value) -> Result<PortMap, String> {
    match v {
        Value::Mapping(m) => {
            let target = m
                .get("target")
                .map(scalar)
                .and_then(|t| t.parse::<u16>().ok())
                .ok_or_else(|| "a long-syntax port without a numeric `target`".to_string())?;
            Ok(PortMap {
                host_ip: m.get("host_ip").map(scalar),
                published: m.get("published").map(scalar).filter(|p| !p.is_empty()),
                target,
                udp: m.get("protocol").map(scalar).as_deref() == Some("udp"),
                host_mode: m.get("mode").map(scalar).as_deref() == Some("host"),
            })
        }
        other => parse_short_port(&scalar(other)),
    }
}

fn ports(
    svc: &Mapping,
    ctx: &Context,
    report: &mut Report,
    draft: &mut Draft,
) -> Result<(), String> {
    let list = |k: &str| match svc.get(k) {
        Some(Value::Sequence(s)) => s.clone(),
        _ => Vec::new(),
    };
    for (i, p) in list("ports").iter().enumerate() {
        let key = format!("ports[{i}]");
        let text = scalar(p);
        let map = match parse_port(p) {
            Ok(m) => m,
            Err(e) => {
                report.skip(&key, e);
                continue;
            }
        };
        if map.udp {
            report.skip(&key, format!("{text}: baton proxies HTTP over TCP only"));
            continue;
        }
        if ctx.target == Target::Swarm {
            swarm_port(&key, &text, &map, report, draft);
            continue;
        }
        match draft.container_port {
            None => {
                draft.container_port = Some(map.target);
                match map.published.as_deref().map(str::parse::<u16>) {
                    Some(Ok(host_port)) => {
                        let ip = map.host_ip.clone().unwrap_or_else(|| "0.0.0.0".into());
                        let addr = if ip.contains(':') {
                            format!("[{ip}]:{host_port}")
                        } else {
                            format!("{ip}:{host_port}")
                        };
                        draft.listen = Some((addr, text.clone()));
                        report.note(format!(
                            "ports {text}: the container port {} becomes container_port; the host port {host_port} is now baton's [proxy] listen (baton gives every instance its own address, so versions can run side by side)",
                            map.target
                        ));
                    }
                    Some(Err(_)) => report.skip(
                        &key,
                        format!("{text}: host port range not translated; [proxy] listen keeps its default"),
                    ),
                    None => report.note(format!(
                        "ports {text}: no host port was published; [proxy] listen keeps its default 127.0.0.1:8080"
                    )),
                }
            }
            Some(first) if first == map.target => {}
            Some(first) => report.skip(
                &key,
                format!("{text}: baton routes one container port per app ({first}); serve this one with a second app or outside baton"),
            ),
        }
    }
    if draft.container_port.is_none() {
        for (i, e) in list("expose").iter().enumerate() {
            let t = scalar(e);
            let t = t.split('/').next().unwrap_or_default();
            match t.parse::<u16>() {
                Ok(p) => {
                    draft.container_port = Some(p);
                    report.note(format!("expose {t}: becomes container_port"));
                    break;
                }
                Err(_) => report.skip(&format!("expose[{i}]"), format!("{t:?} is not one port")),
            }
        }
    }
    Ok(())
}

/// A stack's port: the target is the container port; a published port is Swarm's routing
/// mesh (or, in host mode, the task's node), and baton takes that place.
fn swarm_port(key: &str, text: &str, map: &PortMap, report: &mut Report, draft: &mut Draft) {
    match draft.container_port {
        None => {
            draft.container_port = Some(map.target);
            report.note(format!(
                "ports {text}: the container port {} becomes container_port",
                map.target
            ));
        }
        Some(first) if first == map.target => {}
        Some(first) => {
            report.skip(
                key,
                format!("{text}: baton routes one container port per app ({first}); serve this one with a second app or keep it in the stack"),
            );
            return;
        }
    }
    if let Some(published) = &map.published {
        let via = if map.host_mode {
            "on the node of each task (mode: host)"
        } else {
            "on every node through Swarm's routing mesh, which balances over the service VIP"
        };
        report.skip(
            key,
            format!("{text}: the stack publishes port {published} {via}; baton is the entry point instead: publish baton's own listener on {published} (e.g. `docker run -p {published}:8080` with [proxy] listen = [\"0.0.0.0:8080\"]), and baton routes to each task's overlay address"),
        );
    }
}

/// `env_file` is not copied (its values are often secrets that should not land in
/// baton.toml); the report names the variables it defines so the user can choose.
fn env_file(svc: &Mapping, ctx: &Context, report: &mut Report, draft: &Draft) {
    let files: Vec<String> = match svc.get("env_file") {
        None => return,
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|i| match i {
                Value::Mapping(m) => m.get("path").map(scalar).unwrap_or_default(),
                other => scalar(other),
            })
            .collect(),
        Some(other) => vec![scalar(other)],
    };
    let mut why = format!(
        "baton has no env_file and does not copy its values (often secrets) into baton.toml: add the ones the app needs to [apps.{}.env]",
        draft.app
    );
    for f in &files {
        match std::fs::read_to_string(ctx.compose_dir.join(f)) {
            Ok(text) => {
                let names: Vec<String> = super::text::parse_dotenv(&text).into_keys().collect();
                why.push_str(&format!("; {f} defines {}", names.join(", ")));
            }
            Err(e) => why.push_str(&format!("; {f} could not be read ({e})")),
        }
    }
    report.skip("env_file", why);
}

fn environment(svc: &Mapping, report: &mut Report, draft: &mut Draft) {
    let mut unset = Vec::new();
    match svc.get("environment") {
        Some(Value::Sequence(items)) => {
            for item in items {
                let s = scalar(item);
                match s.split_once('=') {
                    Some((k, v)) => draft.env.push((k.to_string(), v.to_string())),
                    None => unset.push(s),
                }
            }
        }
        Some(Value::Mapping(m)) => {
            for (k, v) in m {
                if v.is_null() {
                    unset.push(scalar(k));
                } else {
                    draft.env.push((scalar(k), scalar(v)));
                }
            }
        }
        _ => {}
    }
    for k in unset {
        report.skip(
            &format!("environment.{k}"),
            "no value in the compose file (compose takes it from the shell at `up`): set it in [apps.APP.env]".into(),
        );
    }
}

/// `a/./b/../c` → `a/c`, without touching the file system (the path may not exist here).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The engine's name for a volume, network, secret or config `name` declared in `top`,
/// and whether it carries the project (stack) prefix.
pub fn engine_name(top: Option<&Mapping>, name: &str, project: &str) -> (String, bool) {
    let decl = top.and_then(|t| t.get(name)).and_then(Value::as_mapping);
    if let Some(n) = decl.and_then(|d| d.get("name")).map(scalar) {
        return (n, false);
    }
    match decl.and_then(|d| d.get("external")) {
        Some(Value::Bool(true)) => (name.to_string(), false),
        // The version-3 form `external: { name: real }`.
        Some(Value::Mapping(m)) => (
            m.get("name").map_or_else(|| name.to_string(), scalar),
            false,
        ),
        _ => (format!("{project}_{name}"), true),
    }
}

/// Whether a top-level declaration says the object exists already (`external: true` or
/// `external: { name: ... }`).
pub fn is_external(decl: &Mapping) -> bool {
    match decl.get("external") {
        Some(Value::Bool(b)) => *b,
        Some(Value::Mapping(_)) => true,
        _ => false,
    }
}

fn volumes(svc: &Mapping, ctx: &Context, report: &mut Report, draft: &mut Draft) {
    let Some(Value::Sequence(items)) = svc.get("volumes") else {
        return;
    };
    for (i, v) in items.iter().enumerate() {
        let key = format!("volumes[{i}]");
        let (source, target, ro, extra) = match v {
            Value::Mapping(m) => {
                let kind = m.get("type").map(scalar).unwrap_or_else(|| "volume".into());
                if kind != "bind" && kind != "volume" {
                    report.skip(&key, format!("a {kind} mount has no baton equivalent"));
                    continue;
                }
                let ro = m.get("read_only").and_then(Value::as_bool).unwrap_or(false);
                let options = ["bind", "volume", "tmpfs", "consistency"]
                    .iter()
                    .filter(|o| m.contains_key(**o))
                    .map(|o| o.to_string())
                    .collect::<Vec<_>>();
                (
                    m.get("source").map(scalar).unwrap_or_default(),
                    m.get("target").map(scalar).unwrap_or_default(),
                    ro,
                    options,
                )
            }
            other => {
                let s = scalar(other);
                let parts: Vec<&str> = s.split(':').collect();
                match parts.as_slice() {
                    [t] => (String::new(), t.to_string(), false, Vec::new()),
                    [src, t] => (src.to_string(), t.to_string(), false, Vec::new()),
                    [src, t, mode] => {
                        let modes: Vec<&str> = mode.split(',').collect();
                        let ro = modes.contains(&"ro");
                        let extra = modes
                            .iter()
                            .filter(|m| !matches!(**m, "ro" | "rw"))
                            .map(|m| m.to_string())
                            .collect();
                        (src.to_string(), t.to_string(), ro, extra)
                    }
                    _ => {
                        report.skip(&key, format!("{s:?} is not SOURCE:TARGET[:MODE]"));
                        continue;
                    }
                }
            }
        };
        if target.is_empty() {
            report.skip(&key, "no target path".into());
            continue;
        }
        if source.is_empty() {
            report.skip(
                &key,
                format!("anonymous volume {target}: every container gets a fresh one anyway; name it (data:{target}) to keep its content across versions"),
            );
            continue;
        }
        if !extra.is_empty() {
            report.skip(
                &key,
                format!(
                    "mount options {} dropped (baton mounts read-write or :ro)",
                    extra.join(",")
                ),
            );
        }
        let host = if source.starts_with('.') || source.starts_with('/') || source.starts_with('~')
        {
            let expanded = match source.strip_prefix("~/") {
                Some(r) => match std::env::var_os("HOME") {
                    Some(h) => PathBuf::from(h).join(r),
                    None => {
                        report.skip(&key, format!("{source}: HOME is not set to expand ~"));
                        continue;
                    }
                },
                None => ctx.compose_dir.join(&source),
            };
            let abs = normalize(&expanded).display().to_string();
            if abs != source {
                report.note(format!(
                    "volume {source}:{target}: the bind path is written as {abs} (Docker needs an absolute path)"
                ));
            }
            abs
        } else {
            let (name, prefixed) = engine_name(ctx.top_volumes, &source, ctx.project);
            if prefixed {
                let who = match ctx.target {
                    Target::Docker => "compose prefixes the project name",
                    Target::Swarm => "the stack prefixes its name",
                };
                report.note(format!(
                    "volume {source} is {name} on the engine ({who}), so the app keeps its data"
                ));
            }
            name
        };
        if ctx.target == Target::Swarm {
            report.note(format!(
                "volume {host}: on a swarm it is local to the node a task runs on (a bind path must exist there, a named volume is made there), as with `docker stack deploy`"
            ));
        }
        if !ro && draft.volumes.is_empty() {
            report.note(format!(
                "volume {host} is mounted read-write by two versions at once during a deploy (blue/green, canary, rolling); use strategy = \"recreate\" if the app cannot share it"
            ));
        }
        draft.volumes.push(if ro {
            format!("{host}:{target}:ro")
        } else {
            format!("{host}:{target}")
        });
    }
}

fn network(svc: &Mapping, ctx: &Context, report: &mut Report, draft: &mut Draft) {
    if let Some(mode) = svc.get("network_mode").map(scalar) {
        if mode != "bridge" {
            report.skip(
                "network_mode",
                format!("{mode:?}: baton gives every instance its own address, so two versions can run at once; host networking would make them collide on one port"),
            );
        }
        return;
    }
    let names = networks_of(svc);
    let Some((first, _)) = names.first() else {
        if !ctx.others.is_empty() {
            let (name, _) = engine_name(ctx.top_networks, "default", ctx.project);
            draft.network = Some((
                name.clone(),
                format!(
                    "compose's default network, so the app still reaches {} by name",
                    ctx.others.join(", ")
                ),
            ));
            report.note(format!(
                "no `networks`: compose put the service on {name}; baton attaches containers to it so {} stay reachable by name (it exists while the compose project is up)",
                ctx.others.join(", ")
            ));
        }
        return;
    };
    let (name, _) = engine_name(ctx.top_networks, first, ctx.project);
    draft.network = Some((name.clone(), format!("compose network {first}")));
    skip_other_networks(&names, &name, report);
}

/// The service's `networks`, in order, each with its per-service options.
pub fn networks_of(svc: &Mapping) -> Vec<(String, Option<&Value>)> {
    match svc.get("networks") {
        Some(Value::Sequence(s)) => s.iter().map(|n| (scalar(n), None)).collect(),
        Some(Value::Mapping(m)) => m.iter().map(|(k, v)| (scalar(k), Some(v))).collect(),
        _ => Vec::new(),
    }
}

/// Names the first network's per-service options and every network after it: baton
/// attaches an app to one network, `kept`.
pub fn skip_other_networks(names: &[(String, Option<&Value>)], kept: &str, report: &mut Report) {
    if let Some((first, Some(Value::Mapping(o)))) = names.first() {
        for k in o.keys() {
            report.skip(
                &format!("networks.{first}.{}", scalar(k)),
                "per-instance network options are not translated; instances get the network's defaults".into(),
            );
        }
    }
    for (other, _) in names.iter().skip(1) {
        report.skip(
            &format!("networks.{other}"),
            format!("baton attaches an app to one network ({kept})"),
        );
    }
}

fn resources(svc: &Mapping, report: &mut Report, draft: &mut Draft) {
    let deploy = svc.get("deploy").and_then(Value::as_mapping);
    let limits = deploy
        .and_then(|d| d.get("resources"))
        .and_then(|r| r.get("limits"));
    let mem = limits
        .and_then(|l| l.get("memory"))
        .map(|m| ("deploy.resources.limits.memory", m))
        .or_else(|| svc.get("mem_limit").map(|m| ("mem_limit", m)));
    if let Some((key, m)) = mem {
        match parse_docker_memory(&scalar(m)) {
            Ok(b) if b < 6 << 20 => report.skip(
                key,
                format!("{} is below 6MiB, Docker's minimum", scalar(m)),
            ),
            Ok(b) => draft.memory = Some(format_memory(b)),
            Err(e) => report.skip(key, e),
        }
    }
    let cpus = limits
        .and_then(|l| l.get("cpus"))
        .map(|c| ("deploy.resources.limits.cpus", c))
        .or_else(|| svc.get("cpus").map(|c| ("cpus", c)));
    if let Some((key, c)) = cpus {
        match scalar(c).trim().parse::<f64>() {
            Ok(n) if n > 0.0 && n.is_finite() => draft.cpus = Some(n),
            _ => report.skip(key, format!("{:?} is not a positive CPU count", scalar(c))),
        }
    }
    let replicas = deploy
        .and_then(|d| d.get("replicas"))
        .map(|r| ("deploy.replicas", r))
        .or_else(|| svc.get("scale").map(|r| ("scale", r)));
    if let Some((key, r)) = replicas {
        match r.as_u64() {
            Some(n) if n >= 1 => draft.replicas = Some(n),
            _ => report.skip(key, format!("{:?} is not a count of 1 or more", scalar(r))),
        }
    }
}

/// `deploy:` read for the docker runtime: replicas and limits are taken (see
/// [`resources`]), the rest is Swarm's and named.
fn deploy_keys(svc: &Mapping, report: &mut Report) {
    let Some(deploy) = svc.get("deploy").and_then(Value::as_mapping) else {
        return;
    };
    for (k, v) in deploy {
        let k = scalar(k);
        match k.as_str() {
            "replicas" => {}
            "resources" => resources_not_translated(v, report),
            "update_config" | "rollback_config" => report.skip(
                &format!("deploy.{k}"),
                "baton's `strategy` (and its [apps.APP.rolling] / [apps.APP.blue_green] sections) decides how versions replace each other".into(),
            ),
            "restart_policy" => report.skip(
                "deploy.restart_policy",
                "baton owns the container's lifecycle; a restart policy would fight it".into(),
            ),
            _ => report.skip(
                &format!("deploy.{k}"),
                "Swarm placement and mode are not translated (baton's docker runtime runs on this engine)".into(),
            ),
        }
    }
}

/// Names what `deploy.resources` holds besides the memory and cpus limits that
/// [`resources`] reads.
pub fn resources_not_translated(resources: &Value, report: &mut Report) {
    for (rk, rv) in resources.as_mapping().into_iter().flatten() {
        let rk = scalar(rk);
        if rk != "limits" {
            report.skip(
                &format!("deploy.resources.{rk}"),
                "baton sets limits only (memory, cpus), no reservations".into(),
            );
            continue;
        }
        for (lk, _) in rv.as_mapping().into_iter().flatten() {
            let lk = scalar(lk);
            if lk != "memory" && lk != "cpus" {
                report.skip(
                    &format!("deploy.resources.limits.{lk}"),
                    "baton limits memory and cpus only".into(),
                );
            }
        }
    }
}

/// A curl/wget/nc test against the container itself, as a baton probe.
enum Probe {
    Http { port: u16, path: String },
    Tcp { port: u16 },
}

fn parse_test(words: &[String]) -> Option<Probe> {
    // Only the first command of `a || exit 1` matters.
    let cmd: Vec<&String> = words
        .iter()
        .take_while(|w| !matches!(w.as_str(), "||" | "&&" | "|" | ";"))
        .collect();
    let prog = cmd.first()?.rsplit('/').next()?.to_string();
    let local = |h: &str| matches!(h, "localhost" | "127.0.0.1" | "0.0.0.0" | "[::1]" | "::1");
    match prog.as_str() {
        "curl" | "wget" => {
            let url = cmd.iter().find(|w| w.starts_with("http://"))?;
            let rest = url.trim_start_matches("http://");
            let (hostport, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            let (host, port) = match hostport.rsplit_once(':') {
                Some((h, p)) if !h.ends_with(':') => (h, p.parse().ok()?),
                _ => (hostport, 80),
            };
            local(host).then(|| Probe::Http {
                port,
                path: path.to_string(),
            })
        }
        "nc" | "netcat" => {
            let args: Vec<&&String> = cmd.iter().skip(1).filter(|w| !w.starts_with('-')).collect();
            match args.as_slice() {
                [host, port] if local(host) => Some(Probe::Tcp {
                    port: port.parse().ok()?,
                }),
                _ => None,
            }
        }
        _ => None,
    }
}

fn healthcheck(svc: &Mapping, ctx: &Context, report: &mut Report, draft: &mut Draft) {
    let Some(hc) = svc.get("healthcheck").and_then(Value::as_mapping) else {
        report.note(format!(
            "no healthcheck: baton will probe GET / on port {}; set [apps.{}.health] path to the app's health URL",
            draft.container_port.map_or("container_port".into(), |p| p.to_string()),
            draft.app
        ));
        return;
    };
    if hc.get("disable").and_then(Value::as_bool) == Some(true) {
        report.skip(
            "healthcheck.disable",
            "baton always checks new instances before routing to them (GET / by default)".into(),
        );
        return;
    }
    let words: Option<Vec<String>> = match hc.get("test") {
        Some(Value::Sequence(s)) => {
            let w: Vec<String> = s.iter().map(scalar).collect();
            match w.first().map(String::as_str) {
                Some("CMD") => Some(w[1..].to_vec()),
                Some("CMD-SHELL") => w.get(1).and_then(|s| shell_words::split(s).ok()),
                Some("NONE") => {
                    report.skip(
                        "healthcheck.test",
                        "NONE: baton always checks new instances before routing to them".into(),
                    );
                    return;
                }
                _ => Some(w),
            }
        }
        Some(Value::String(s)) => shell_words::split(s).ok(),
        _ => None,
    };
    let test_text = match hc.get("test") {
        Some(Value::Sequence(s)) => s.iter().map(scalar).collect::<Vec<_>>().join(" "),
        Some(other) => scalar(other),
        None => String::new(),
    };
    match words.as_deref().and_then(parse_test) {
        Some(probe) => {
            let port = match &probe {
                Probe::Http { port, .. } | Probe::Tcp { port } => *port,
            };
            match draft.container_port {
                None => draft.container_port = Some(port),
                Some(cp) if cp != port => report.skip(
                    "healthcheck.test",
                    format!("it checks port {port} but baton probes container_port {cp}; the path is kept, check it answers on {cp}"),
                ),
                Some(_) => {}
            }
            match probe {
                Probe::Http { path, .. } => draft.health.path = Some(path),
                Probe::Tcp { .. } => draft.health.tcp = true,
            }
            draft.health.source = Some(test_text);
        }
        None => {
            let or = match ctx.target {
                Target::Docker => {
                    ", or put the check in the image's HEALTHCHECK and set wait_healthcheck = true"
                }
                Target::Swarm => " (baton probes every task at its overlay address)",
            };
            report.skip(
                "healthcheck.test",
                format!(
                    "`{test_text}` runs inside the container and baton probes from outside (HTTP path or TCP): set [apps.{}.health] path{or}",
                    draft.app
                ),
            )
        }
    }
    let dur = |k: &str, report: &mut Report| -> Option<u64> {
        let v = hc.get(k)?;
        match parse_duration_ms(&scalar(v)) {
            Ok(ms) => Some(ms),
            Err(e) => {
                report.skip(&format!("healthcheck.{k}"), e);
                None
            }
        }
    };
    let interval = dur("interval", report);
    let timeout = dur("timeout", report);
    let start_period = dur("start_period", report);
    let retries = hc.get("retries").and_then(Value::as_u64);
    draft.health.interval = interval.map(format_ms);
    draft.health.timeout = timeout.map(format_ms);
    draft.health.unhealthy = retries.filter(|r| *r >= 1);
    if let Some(sp) = start_period {
        // Compose calls a container unhealthy `retries` failed checks after start_period.
        let total = sp + interval.unwrap_or(30_000) * retries.unwrap_or(3);
        draft.health.startup_timeout = Some(format_ms(total));
    }
    for k in hc.keys().map(scalar) {
        if !matches!(
            k.as_str(),
            "test" | "interval" | "timeout" | "retries" | "start_period" | "disable"
        ) {
            report.skip(
                &format!("healthcheck.{k}"),
                "no baton equivalent (baton probes at `interval`)".into(),
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        shell_words::split(s).unwrap()
    }

    #[test]
    fn image_references_split_at_the_tag() {
        assert_eq!(
            split_image("myorg/app:1.2"),
            ("myorg/app".into(), Some("1.2".into()), None)
        );
        assert_eq!(
            split_image("registry:5000/app"),
            ("registry:5000/app".into(), None, None)
        );
        assert_eq!(
            split_image("app:v1@sha256:abc"),
            ("app".into(), Some("v1".into()), Some("sha256:abc".into()))
        );
    }

    #[test]
    fn health_tests_become_probes() {
        match parse_test(&words("curl -f http://localhost:8080/health || exit 1")) {
            Some(Probe::Http { port, path }) => {
                assert_eq!((port, path.as_str()), (8080, "/health"))
            }
            _ => panic!("curl not recognised"),
        }
        match parse_test(&words("wget -qO- http://127.0.0.1/ready")) {
            Some(Probe::Http { port, path }) => assert_eq!((port, path.as_str()), (80, "/ready")),
            _ => panic!("wget not recognised"),
        }
        assert!(matches!(
            parse_test(&words("nc -z localhost 5432")),
            Some(Probe::Tcp { port: 5432 })
        ));
        assert!(parse_test(&words("pg_isready -U postgres")).is_none());
        assert!(parse_test(&words("curl -f http://db:8080/")).is_none());
    }

    #[test]
    fn short_port_syntax() {
        let p = parse_short_port("127.0.0.1:8080:80/tcp").unwrap();
        assert_eq!(
            (p.host_ip.as_deref(), p.published.as_deref(), p.target),
            (Some("127.0.0.1"), Some("8080"), 80)
        );
        let p = parse_short_port("[::1]:9000:9000").unwrap();
        assert_eq!(p.host_ip.as_deref(), Some("::1"));
        assert!(parse_short_port("3000").unwrap().published.is_none());
        assert!(parse_short_port("53:53/udp").unwrap().udp);
        assert!(parse_short_port("8000-8010:8000-8010").is_err());
    }
}
