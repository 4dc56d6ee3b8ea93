//! `baton import stack FILE`: the services of a compose v3 stack file (the one given to
//! `docker stack deploy -c`) become `baton.toml` apps on the swarm runtime. Keys that
//! mean the same on a swarm service are read as `import compose` reads them
//! (`service.rs`); `deploy:` is read by `deploy.rs`, the overlay network, secrets and
//! configs by `refs.rs`.

mod deploy;
mod refs;

use super::service::{self, scalar, Context, Draft, Target};
use super::text::Vars;
use super::{app_name_from, interpolate, render, FileKind, Report};
use crate::Failure;
use refs::Stack;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use yaml_serde::{Mapping, Value};

/// The command line of `baton import stack`.
pub struct Args {
    pub file: PathBuf,
    /// Services to import; empty: every service with a port baton can route to.
    pub services: Vec<String>,
    /// The attachable overlay for every app, instead of the stack's networks.
    pub network: Option<String>,
    /// The name the stack is deployed as; default the file's directory name.
    pub stack: Option<String>,
    pub output: Option<PathBuf>,
    pub force: bool,
    pub json: bool,
}

const STACK_FILE: FileKind = FileKind {
    name: "stack file",
    expected: "the compose file given to `docker stack deploy -c`",
    check: "docker stack config -c {file}",
};

/// One service imported as an app.
struct Imported {
    service: String,
    draft: Draft,
    report: Report,
}

/// A service of the file that stays in the stack, and why.
struct LeftOut {
    service: String,
    why: String,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let file = args.file.display().to_string();
    let root = super::read_yaml(&args.file, &STACK_FILE)?;
    let top = root.as_mapping().ok_or_else(|| {
        Failure::usage(format!(
            "{file} is not a compose file: expected a mapping with `services:`"
        ))
    })?;
    check_version(top, &file)?;
    let services = top
        .get("services")
        .and_then(Value::as_mapping)
        .ok_or_else(|| {
            Failure::usage(format!(
                "{file} has no `services:` section: it is not a compose file `docker stack deploy` could run"
            ))
        })?;
    let names: Vec<String> = services.keys().map(scalar).collect();
    if names.is_empty() {
        return Err(Failure::usage(format!(
            "{file} defines no services: add the stack's services under `services:`"
        )));
    }
    let (chosen, explicit) = choose(&file, &names, &args.services)?;
    if args.network.as_deref().is_some_and(|n| n.trim().is_empty()) {
        return Err(Failure::usage(
            "--network is empty: name the attachable overlay the apps' tasks join",
        ));
    }
    let abs = std::path::absolute(&args.file)
        .map_err(|e| Failure::usage(format!("cannot resolve the path {file} ({e})")))?;
    let dir = abs.parent().unwrap_or(Path::new("/")).to_path_buf();
    let (stack_name, mut notes) = stack_name(args.stack.as_deref(), &dir)?;

    // `docker stack deploy` interpolates from the shell's environment only (no `.env`).
    let mut vars = Vars::new(BTreeMap::new(), true);
    let mut doc = Value::Mapping(top.clone());
    interpolate(&mut doc, &mut vars);
    let itop = doc.as_mapping().cloned().unwrap_or_default();
    let stack = Stack {
        file: &file,
        name: &stack_name,
        top: &itop,
    };
    let picked = Picked {
        services,
        chosen: &chosen,
        explicit,
    };
    let (mut imported, left_out) =
        import_services(&picked, &stack, &dir, args.network.as_deref(), &mut notes)?;
    placeholder_hosts(&mut imported);
    for v in &vars.missing {
        notes.push(format!(
            "variable {v} is not set in the environment: `docker stack deploy` would substitute an empty string (it reads no .env file), and so did this import"
        ));
    }

    let command_line = command_line(&file, &args);
    let apps: Vec<(&Draft, &Report)> = imported.iter().map(|i| (&i.draft, &i.report)).collect();
    let toml = render::render(&apps, &command_line);
    super::check_and_write(&toml, args.output.as_deref(), args.force)?;
    let result = args.json.then(|| {
        result_json(
            &file,
            &stack_name,
            &imported,
            &left_out,
            &notes,
            &toml,
            &args,
        )
    });
    let human = human_report(&file, &imported, &left_out, &notes, args.output.as_deref());
    super::emit(result, &toml, args.output.is_some(), &human);
    Ok(())
}

/// The services chosen from the file, as written (before interpolation).
struct Picked<'a> {
    services: &'a Mapping,
    chosen: &'a [String],
    /// Named with --service: a service that cannot be imported is an error, not left out.
    explicit: bool,
}

/// Each chosen service as an app, or left in the stack when it has no port; what to know
/// about each overlay goes into `notes` once.
fn import_services(
    picked: &Picked,
    stack: &Stack,
    dir: &Path,
    network: Option<&str>,
    notes: &mut Vec<String>,
) -> Result<(Vec<Imported>, Vec<LeftOut>), Failure> {
    let file = stack.file;
    let mut imported: Vec<Imported> = Vec::new();
    let mut left_out = Vec::new();
    for name in picked.chosen {
        let Some(Value::Mapping(raw)) = picked.services.get(name.as_str()) else {
            return Err(Failure::usage(format!(
                "service {name:?} in {file} is not a mapping of settings"
            )));
        };
        if !raw.contains_key("image") {
            return Err(build_only(file, name, picked.explicit));
        }
        let svc = stack
            .top
            .get("services")
            .and_then(|s| s.get(name.as_str()))
            .and_then(Value::as_mapping)
            .cloned()
            .unwrap_or_default();
        let (one, overlay) = translate(name, raw, &svc, stack, dir, network)?;
        if one.draft.container_port.is_none() {
            let why = format!(
                "no `ports`, `expose` or health check port, so not an HTTP app baton can route to; to import it, add `expose: [\"PORT\"]` to it in {file} and name it with --service {name}"
            );
            if picked.explicit {
                return Err(Failure::usage(format!("service {name:?}: {why}")));
            }
            left_out.push(LeftOut {
                service: name.clone(),
                why,
            });
            continue;
        }
        if let Some(other) = imported.iter().find(|i| i.draft.app == one.draft.app) {
            return Err(Failure::usage(format!(
                "services {:?} and {name:?} both become app {:?}: rename one of them in {file}, or import them one at a time with --service",
                other.service, one.draft.app
            )));
        }
        if !notes.contains(&overlay) {
            notes.push(overlay);
        }
        imported.push(one);
    }
    if imported.is_empty() {
        return Err(Failure::usage(format!(
            "no service of {file} says which port it listens on (`ports`, `expose` or a health check), so none is an app baton can route to: add `expose: [\"PORT\"]` to the HTTP services and name them with --service"
        )));
    }
    Ok((imported, left_out))
}

/// The command line as given, for the file's first comment.
fn command_line(file: &str, args: &Args) -> String {
    let mut line = format!("baton import stack {file}");
    for s in &args.services {
        line.push_str(&format!(" --service {s}"));
    }
    for (flag, value) in [("--network", &args.network), ("--stack", &args.stack)] {
        if let Some(v) = value {
            line.push_str(&format!(" {flag} {v}"));
        }
    }
    line
}

/// `docker stack deploy` reads version 3 files (and the compose specification, which
/// has no version); `deploy:` means nothing to it in a version 1 or 2 file.
fn check_version(top: &Mapping, file: &str) -> Result<(), Failure> {
    let Some(v) = top.get("version").map(scalar) else {
        return Ok(());
    };
    let major = v
        .trim()
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    match major {
        Some(m) if m < 3 => Err(Failure::usage(format!(
            "{file} is a version {v} compose file, and `docker stack deploy` reads version 3 files (where `deploy:` sections live): import its services for one engine with `baton import compose {file} SERVICE`, or move the file to version: \"3.8\""
        ))),
        _ => Ok(()),
    }
}

/// The services to import, and whether the user named them.
fn choose(file: &str, names: &[String], wanted: &[String]) -> Result<(Vec<String>, bool), Failure> {
    if wanted.is_empty() {
        return Ok((names.to_vec(), false));
    }
    let mut chosen: Vec<String> = Vec::new();
    for w in wanted {
        if !names.contains(w) {
            return Err(Failure::usage(format!(
                "{file} has no service {w:?}: choose from {}",
                names.join(", ")
            )));
        }
        if !chosen.contains(w) {
            chosen.push(w.clone());
        }
    }
    Ok((chosen, true))
}

/// `--stack`, else the file's directory name, and a note when it was guessed.
fn stack_name(given: Option<&str>, dir: &Path) -> Result<(String, Vec<String>), Failure> {
    if let Some(s) = given {
        let ok = !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !ok {
            return Err(Failure::usage(format!(
                "--stack {s:?} is not a stack name: give the name used with `docker stack deploy -c FILE NAME` (letters, digits, _ - .)"
            )));
        }
        return Ok((s.to_string(), Vec::new()));
    }
    let base = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut name = super::project_from(&base);
    if name.is_empty() {
        name = "stack".into();
    }
    let note = format!(
        "the stack is taken to be deployed as `{name}` (the file's directory): the networks, volumes and secrets it makes are named {name}_NAME; pass --stack NAME if `docker stack deploy` used another name"
    );
    Ok((name, vec![note]))
}

fn build_only(file: &str, name: &str, explicit: bool) -> Failure {
    let or = if explicit {
        ""
    } else {
        ", or import the other services with --service"
    };
    Failure::usage(format!(
        "service {name:?} in {file} has no `image` (it is only built), and `docker stack deploy` cannot run it either: build and push an image every node can pull (docker build -t REGISTRY/{name}:v1 . && docker push REGISTRY/{name}:v1), set `image:` in {file} and import again{or}"
    ))
}

/// One service as an app; the second value is what to know about its overlay.
fn translate(
    name: &str,
    raw: &Mapping,
    svc: &Mapping,
    stack: &Stack,
    dir: &Path,
    network: Option<&str>,
) -> Result<(Imported, String), Failure> {
    let app = app_name_from(name);
    baton_core::validate_app_name(&app).map_err(|e| {
        Failure::usage(format!(
            "cannot make an app name from service {name:?} ({e}): rename the service"
        ))
    })?;
    let mut report = Report::default();
    let mut draft = Draft {
        app,
        runtime: "swarm",
        strategy: "rolling",
        ..Draft::default()
    };
    let section = |k: &str| stack.top.get(k).and_then(Value::as_mapping);
    let ctx = Context {
        service: name,
        project: stack.name,
        compose_dir: dir,
        top_volumes: section("volumes"),
        top_networks: section("networks"),
        others: Vec::new(),
        raw_image: raw.get("image").map(scalar),
        target: Target::Swarm,
    };
    service::translate(svc, &ctx, &mut report, &mut draft).map_err(Failure::usage)?;
    deploy::deploy(svc, &mut report, &mut draft);
    let overlay = refs::network(svc, stack, network, &mut report, &mut draft);
    refs::references(refs::SECRETS, svc, stack, &mut report, &mut draft);
    refs::references(refs::CONFIGS, svc, stack, &mut report, &mut draft);
    report.name_app(&draft.app);
    let one = Imported {
        service: name.to_string(),
        draft,
        report,
    };
    Ok((one, overlay))
}

/// The first app takes every host at `/`, as the stack's first published port did; the
/// others get a host that resolves nowhere, to be replaced by the user: baton routes by
/// host and path, not by the port a client connects to.
fn placeholder_hosts(apps: &mut [Imported]) {
    let Some(first) = apps.first().map(|a| a.draft.app.clone()) else {
        return;
    };
    for a in apps.iter_mut().skip(1) {
        let host = format!("{}.invalid", a.draft.app);
        a.report.note(format!(
            "hosts = [\"{host}\"] is a placeholder: baton routes by host and path on its own listeners, not by the port a client connects to, and {first} takes every other host at /; set the host name clients use for {}",
            a.draft.app
        ));
        a.draft.hosts = Some((
            vec![host],
            "placeholder: the host name clients use for this app".into(),
        ));
    }
}

fn human_report(
    file: &str,
    imported: &[Imported],
    left_out: &[LeftOut],
    notes: &[String],
    written: Option<&Path>,
) -> String {
    let mut s = format!(
        "imported {} service(s) of {file} as swarm apps{}\n",
        imported.len(),
        written.map_or(String::new(), |p| format!(" into {}", p.display()))
    );
    for i in imported {
        s.push_str(&format!(
            "\napp `{}` (service {}):\n",
            i.draft.app, i.service
        ));
        s.push_str(&i.report.lines());
    }
    if !left_out.is_empty() {
        s.push_str("\nleft in the stack:\n");
        for l in left_out {
            s.push_str(&format!("  - {}: {}\n", l.service, l.why));
        }
    }
    s.push_str("\nthe stack and its overlay:\n");
    for n in notes {
        s.push_str(&format!("  - {n}\n"));
    }
    let config = written.map_or("baton.toml".to_string(), |p| p.display().to_string());
    let deploys: Vec<String> = imported
        .iter()
        .map(|i| {
            format!(
                "baton deploy {} {}",
                i.draft.app,
                i.report.current_version.as_deref().unwrap_or("VERSION")
            )
        })
        .collect();
    s.push_str(&format!(
        "next: baton validate -c {config}; run baton on the overlay (docs/swarm.md), then {}; then remove the imported services from the stack\n",
        deploys.join(", ")
    ));
    s
}

fn result_json(
    file: &str,
    stack: &str,
    imported: &[Imported],
    left_out: &[LeftOut],
    notes: &[String],
    toml: &str,
    args: &Args,
) -> serde_json::Value {
    let apps: Vec<_> = imported
        .iter()
        .map(|i| {
            json!({
                "service": i.service,
                "app": i.draft.app,
                "untranslated": i.report.untranslated,
                "notes": i.report.notes,
                "current_version": i.report.current_version,
            })
        })
        .collect();
    let left: Vec<_> = left_out
        .iter()
        .map(|l| json!({"service": l.service, "why": l.why}))
        .collect();
    json!({
        "file": file,
        "stack": stack,
        "apps": apps,
        "left_out": left,
        "notes": notes,
        "toml": toml,
        "written": args.output,
    })
}

#[cfg(test)]
mod tests;
