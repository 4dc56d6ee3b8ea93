//! What a stack service refers to by name: its overlay network (which baton's tasks
//! join, so it must be attachable), and its secrets and configs (mounted by name; the
//! ones `docker stack deploy` would make from a file are named, not made).

use super::super::service::{
    engine_name, is_external, networks_of, scalar, skip_other_networks, Draft,
};
use super::super::Report;
use yaml_serde::{Mapping, Value};

/// Where the stack's names come from.
pub struct Stack<'a> {
    pub file: &'a str,
    /// The name given to `docker stack deploy`: prefixes what the stack makes.
    pub name: &'a str,
    pub top: &'a Mapping,
}

impl Stack<'_> {
    fn section(&self, key: &str) -> Option<&Mapping> {
        self.top.get(key).and_then(Value::as_mapping)
    }
}

/// The overlay `network`: `--network`, else the service's first network (Swarm's
/// `default` when it names none). Returns what the user must know about that overlay,
/// once per network however many apps join it.
pub fn network(
    svc: &Mapping,
    stack: &Stack,
    given: Option<&str>,
    report: &mut Report,
    draft: &mut Draft,
) -> String {
    let names = networks_of(svc);
    let first = names
        .first()
        .map_or_else(|| "default".to_string(), |(n, _)| n.clone());
    let (engine, _) = engine_name(stack.section("networks"), &first, stack.name);
    skip_other_networks(&names, given.unwrap_or(&engine), report);
    if let Some(n) = given {
        draft.network = Some((n.to_string(), "--network".into()));
        if n != engine {
            report.note(format!(
                "--network {n} replaces the stack's network {engine}"
            ));
        }
        return format!(
            "network {n} (--network) must be an attachable overlay that the stack's other services are on too; if it does not exist: docker network create --driver overlay --attachable {n}"
        );
    }
    draft.network = Some((engine.clone(), format!("the stack's network {first}")));
    attachable_note(stack, &first, &engine)
}

/// What the user must do so that baton's tasks can join `engine`, the stack's `key`.
fn attachable_note(stack: &Stack, key: &str, engine: &str) -> String {
    let decl = stack
        .section("networks")
        .and_then(|n| n.get(key))
        .and_then(Value::as_mapping);
    let file = stack.file;
    let name = stack.name;
    if decl.is_some_and(is_external) {
        return format!(
            "network {engine} is external to the stack: baton's tasks can join it only if it is an attachable overlay (`docker network inspect -f '{{{{.Attachable}}}}' {engine}` prints true); if not, make one with `docker network create --driver overlay --attachable NAME`, put the stack's services on it and pass --network NAME"
        );
    }
    let attachable = decl
        .and_then(|d| d.get("attachable"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if attachable {
        return format!(
            "network {engine} is made by `docker stack deploy -c {file} {name}` with attachable: true, so baton's tasks join it beside the stack's other services"
        );
    }
    let what = if key == "default" && decl.is_none() {
        "the stack's default network".to_string()
    } else {
        format!("`{key}` in {file}")
    };
    format!(
        "network {engine} ({what}) is made without `attachable: true`, and baton's tasks can join only an attachable overlay; an existing network cannot be made attachable, so once: `docker stack rm {name}` (wait until `docker network ls` no longer lists {engine}), `docker network create --driver overlay --attachable {engine}`, declare it in {file} as networks: {key}: {{external: true, name: {engine}}}, and `docker stack deploy -c {file} {name}`; or pass --network with another attachable overlay"
    )
}

/// A secret or a config: where Swarm mounts it and how to make one.
#[derive(Clone, Copy)]
pub struct RefKind {
    /// `secrets` / `configs`: the service key, the top-level section and the swarm key.
    pub key: &'static str,
    /// `secret` / `config`.
    pub one: &'static str,
    /// Where a target without a leading `/` is, and the default one: `/run/secrets/`.
    pub dir: &'static str,
}

pub const SECRETS: RefKind = RefKind {
    key: "secrets",
    one: "secret",
    dir: "/run/secrets/",
};

pub const CONFIGS: RefKind = RefKind {
    key: "configs",
    one: "config",
    dir: "/",
};

/// The service's secrets (or configs) that exist outside the stack, by name, into
/// `[apps.APP.swarm]`; the rest named.
pub fn references(
    kind: RefKind,
    svc: &Mapping,
    stack: &Stack,
    report: &mut Report,
    draft: &mut Draft,
) {
    let Some(items) = svc.get(kind.key).and_then(Value::as_sequence) else {
        return;
    };
    for (i, item) in items.iter().enumerate() {
        let key = format!("{}[{i}]", kind.key);
        let long = item.as_mapping();
        let source = long.map_or_else(
            || scalar(item),
            |m| m.get("source").map(scalar).unwrap_or_default(),
        );
        let Some(decl) = stack
            .section(kind.key)
            .and_then(|s| s.get(source.as_str()))
            .and_then(Value::as_mapping)
        else {
            report.skip(
                &key,
                format!("{source:?} is not declared under the top-level {}: (docker stack deploy refuses it too)", kind.key),
            );
            continue;
        };
        let (engine, _) = engine_name(stack.section(kind.key), &source, stack.name);
        if !is_external(decl) {
            report.skip(&key, made_by_stack(kind, &source, &engine, decl, stack));
            continue;
        }
        mount_options(kind, &key, &source, &engine, long, report);
        let list = match kind.key {
            "secrets" => &mut draft.swarm.secrets,
            _ => &mut draft.swarm.configs,
        };
        if !list.contains(&engine) {
            list.push(engine);
        }
    }
}

/// Why a secret `docker stack deploy` makes from a file (or the environment) is not
/// carried over, and how to make it once.
fn made_by_stack(
    kind: RefKind,
    source: &str,
    engine: &str,
    decl: &Mapping,
    stack: &Stack,
) -> String {
    let (from, create) = match (decl.get("file"), decl.get("environment")) {
        (Some(f), _) => (
            format!("the file {}", scalar(f)),
            format!("docker {} create {engine} {}", kind.one, scalar(f)),
        ),
        (None, Some(v)) => (
            format!("the variable {}", scalar(v)),
            format!(
                "printf %s \"${}\" | docker {} create {engine} -",
                scalar(v),
                kind.one
            ),
        ),
        (None, None) => (
            "its declaration".to_string(),
            format!("docker {} create {engine} FILE", kind.one),
        ),
    };
    format!(
        "`docker stack deploy -c {} {}` makes this {} from {from} as {engine}; baton mounts existing {} by name and makes none: create it once (`{create}`), declare it external in the stack, and add \"{engine}\" to [apps.APP.swarm] {} (the app reads it at {}{engine}, where the stack mounted {}{source})",
        stack.file, stack.name, kind.one, kind.key, kind.key, kind.dir, kind.dir
    )
}

/// The long syntax's target, uid, gid and mode: baton mounts `NAME` at `dir/NAME`,
/// owned by root, mode 0444.
fn mount_options(
    kind: RefKind,
    key: &str,
    source: &str,
    engine: &str,
    long: Option<&Mapping>,
    report: &mut Report,
) {
    let baton_path = format!("{}{engine}", kind.dir);
    let stack_path = match long.and_then(|m| m.get("target")).map(scalar) {
        Some(t) if t.starts_with('/') => t,
        Some(t) => format!("{}{t}", kind.dir),
        None => format!("{}{source}", kind.dir),
    };
    if stack_path != baton_path {
        report.skip(
            &format!("{key}.target"),
            format!("the stack mounts it at {stack_path}; baton mounts {} {engine} at {baton_path}: have the app read it there", kind.one),
        );
    }
    for k in ["uid", "gid", "mode"] {
        if long.is_some_and(|m| m.contains_key(k)) {
            report.skip(
                &format!("{key}.{k}"),
                "baton mounts it owned by root (uid 0, gid 0), mode 0444".into(),
            );
        }
    }
}
