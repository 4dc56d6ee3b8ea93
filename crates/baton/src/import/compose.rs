//! `baton import compose FILE [SERVICE]`: a docker-compose service becomes a
//! `baton.toml` app on the docker runtime. `was_blue` / `was_green`-style twins are
//! recognised as one app deployed blue/green.

use super::service::{self, scalar, split_image, Context, Draft, Target};
use super::text::{self, Vars};
use super::{interpolate, render, FileKind, Report};
use crate::Failure;
use serde_json::json;
use std::path::{Path, PathBuf};
use yaml_serde::{Mapping, Value};

/// The command line of `baton import compose`.
pub struct Args {
    pub file: PathBuf,
    pub service: Option<String>,
    pub output: Option<PathBuf>,
    pub force: bool,
    pub app: Option<String>,
    pub container_port: Option<u16>,
    pub json: bool,
}

const COMPOSE_FILE: FileKind = FileKind {
    name: "compose file",
    expected: "a docker-compose.yml",
    check: "docker compose -f {file} config",
};

pub fn run(args: Args) -> Result<(), Failure> {
    let file = args.file.display().to_string();
    let root = super::read_yaml(&args.file, &COMPOSE_FILE)?;
    let top = root.as_mapping().ok_or_else(|| {
        Failure::usage(format!(
            "{file} is not a compose file: expected a mapping with `services:`"
        ))
    })?;
    let services = services_of(top).ok_or_else(|| {
        Failure::usage(format!(
            "{file} has no `services:` section: it is not a docker-compose file"
        ))
    })?;
    let names: Vec<String> = services.keys().map(scalar).collect();
    if names.is_empty() {
        return Err(Failure::usage(format!("{file} defines no services")));
    }
    let groups = group_twins(services, &names);
    let chosen = match &args.service {
        Some(s) if names.contains(s) => s.clone(),
        Some(s) => {
            return Err(Failure::usage(format!(
                "{file} has no service {s:?}: choose one of {}",
                names.join(", ")
            )))
        }
        None if groups.len() == 1 => groups[0].services[0].clone(),
        None => return Err(choose(&file, services, &groups, args.json)),
    };
    let group = groups
        .iter()
        .find(|g| g.services.contains(&chosen))
        .ok_or_else(|| Failure::failed("internal: service not grouped"))?;
    let Some(Value::Mapping(raw_svc)) = services.get(chosen.as_str()) else {
        return Err(Failure::usage(format!(
            "service {chosen:?} in {file} is not a mapping of settings"
        )));
    };

    let abs = std::path::absolute(&args.file)
        .map_err(|e| Failure::usage(format!("cannot resolve the path {file} ({e})")))?;
    let compose_dir = abs.parent().unwrap_or(Path::new("/")).to_path_buf();
    let dotenv = std::fs::read_to_string(compose_dir.join(".env"))
        .map(|t| text::parse_dotenv(&t))
        .unwrap_or_default();
    let mut vars = Vars::new(dotenv, true);
    let project = project_name(top, &compose_dir, &mut vars);

    let mut report = Report::default();
    let mut draft = Draft {
        runtime: "docker",
        strategy: "rolling",
        ..Draft::default()
    };
    draft.app = app_name(args.app.as_deref(), group, &chosen, raw_svc)?;
    if group.services.len() == 2 {
        draft.strategy = "blue_green";
        let twin = group
            .services
            .iter()
            .find(|s| **s != chosen)
            .cloned()
            .unwrap_or_default();
        report.note(format!(
            "{chosen} and {twin} are one app with two versions: baton starts the new version beside the serving one on every deploy, switches traffic when it is healthy and keeps the old one warm for `baton rollback` (strategy = \"blue_green\"); remove both services from compose once baton serves the app"
        ));
        if let Some(Value::Mapping(t)) = services.get(twin.as_str()) {
            let differ: Vec<String> = raw_svc
                .iter()
                .chain(t.iter())
                .map(|(k, _)| scalar(k))
                .filter(|k| !matches!(k.as_str(), "container_name" | "ports"))
                .filter(|k| raw_svc.get(k.as_str()) != t.get(k.as_str()))
                .fold(Vec::new(), |mut acc, k| {
                    if !acc.contains(&k) {
                        acc.push(k);
                    }
                    acc
                });
            if !differ.is_empty() {
                report.note(format!(
                    "{twin} differs from {chosen} in {}: only {chosen} was read",
                    differ.join(", ")
                ));
            }
        }
    }
    let others: Vec<String> = names
        .iter()
        .filter(|n| !group.services.contains(n))
        .cloned()
        .collect();

    let raw_image = raw_svc.get("image").map(scalar);
    let mut svc = Value::Mapping(raw_svc.clone());
    interpolate(&mut svc, &mut vars);
    let mut top_volumes = top.get("volumes").cloned().unwrap_or(Value::Null);
    let mut top_networks = top.get("networks").cloned().unwrap_or(Value::Null);
    interpolate(&mut top_volumes, &mut vars);
    interpolate(&mut top_networks, &mut vars);
    let ctx = Context {
        service: &chosen,
        project: &project,
        compose_dir: &compose_dir,
        top_volumes: top_volumes.as_mapping(),
        top_networks: top_networks.as_mapping(),
        others,
        raw_image,
        target: Target::Docker,
    };
    let svc_map = svc.as_mapping().cloned().unwrap_or_default();
    service::translate(&svc_map, &ctx, &mut report, &mut draft).map_err(Failure::usage)?;
    report.name_app(&draft.app);
    match (draft.container_port, args.container_port) {
        (_, Some(0)) => {
            return Err(Failure::usage("--container-port must be from 1 to 65535"))
        }
        (Some(found), Some(p)) if found != p => {
            report.note(format!("--container-port {p} replaces {found} from the compose file"));
            draft.container_port = Some(p);
        }
        (_, Some(p)) => draft.container_port = Some(p),
        (Some(_), None) => {}
        (None, None) => {
            return Err(Failure::usage(format!(
                "service {chosen:?} has no `ports`, `expose` or health check port, so the port its container listens on is unknown: pass --container-port PORT"
            )))
        }
    }
    for v in &vars.missing {
        report.note(format!(
            "variable {v} is set nowhere (not in the environment, not in .env): compose would substitute an empty string, and so did this import"
        ));
    }

    let command_line = format!("baton import compose {file} {chosen}");
    let toml = render::render(&[(&draft, &report)], &command_line);
    super::check_and_write(&toml, args.output.as_deref(), args.force)?;
    let result = args.json.then(|| {
        json!({
            "file": file,
            "service": chosen,
            "app": draft.app,
            "toml": toml,
            "untranslated": report.untranslated,
            "notes": report.notes,
            "current_version": report.current_version,
            "written": args.output,
        })
    });
    let human = human_report(&file, &chosen, &draft, &report, args.output.as_deref());
    super::emit(result, &toml, args.output.is_some(), &human);
    Ok(())
}

/// `services:`, or the top level itself in a version-1 file (services without a section).
fn services_of(top: &Mapping) -> Option<&Mapping> {
    if let Some(s) = top.get("services") {
        return s.as_mapping();
    }
    let v1 = !top.contains_key("version")
        && !top.is_empty()
        && top.values().all(|v| {
            v.as_mapping()
                .is_some_and(|m| m.contains_key("image") || m.contains_key("build"))
        });
    v1.then_some(top)
}

/// Services that become one app: a single service, or a blue/green twin pair.
struct Group {
    services: Vec<String>,
    /// The name the pair shares once the colour is removed (`was` for `was_blue`).
    stem: Option<String>,
}

/// `was_blue` → (`was`, the same name with `green`), and the other way round.
fn twin_of(name: &str) -> Option<(String, String)> {
    let lower = name.to_ascii_lowercase();
    for (c, other) in [("blue", "green"), ("green", "blue")] {
        for sep in ['_', '-', '.'] {
            if let Some(stem) = lower.strip_suffix(&format!("{sep}{c}")) {
                return Some((
                    stem.to_string(),
                    format!("{}{sep}{other}", &name[..stem.len()]),
                ));
            }
            if let Some(stem) = lower.strip_prefix(&format!("{c}{sep}")) {
                return Some((
                    stem.to_string(),
                    format!("{other}{sep}{}", &name[c.len() + 1..]),
                ));
            }
        }
        if lower == c {
            return Some((String::new(), other.to_string()));
        }
    }
    None
}

fn group_twins(services: &Mapping, names: &[String]) -> Vec<Group> {
    let repo = |n: &str| {
        services
            .get(n)
            .and_then(|s| s.get("image"))
            .map(|i| split_image(&scalar(i)).0)
    };
    let mut groups: Vec<Group> = Vec::new();
    for n in names {
        if groups.iter().any(|g| g.services.contains(n)) {
            continue;
        }
        let pair = twin_of(n).and_then(|(stem, twin)| {
            let twin = names.iter().find(|m| m.eq_ignore_ascii_case(&twin))?;
            (repo(n) == repo(twin)).then(|| (stem, twin.clone()))
        });
        groups.push(match pair {
            Some((stem, twin)) => Group {
                services: vec![n.clone(), twin],
                stem: Some(stem),
            },
            None => Group {
                services: vec![n.clone()],
                stem: None,
            },
        });
    }
    groups
}

/// The error for "which service?": lists them, pairs as one app.
fn choose(file: &str, services: &Mapping, groups: &[Group], json: bool) -> Failure {
    let first = groups
        .iter()
        .find(|g| g.services.len() == 2)
        .or(groups.first())
        .map(|g| g.services[0].clone())
        .unwrap_or_default();
    if json {
        let list: Vec<_> = groups
            .iter()
            .map(|g| json!({"services": g.services, "one_app": g.stem}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"choose_one_of": list})).unwrap_or_default()
        );
    }
    let mut msg = format!(
        "{file} has {} services; name the one to import:\n",
        services.len()
    );
    for g in groups {
        let image = services
            .get(g.services[0].as_str())
            .and_then(|s| s.get("image"))
            .map(scalar)
            .unwrap_or_else(|| "(built locally)".into());
        let what = match &g.stem {
            Some(stem) => format!(
                "one app ({}) in two colours: import either, baton runs both versions itself — {image}",
                if stem.is_empty() { "app" } else { stem }
            ),
            None => image,
        };
        msg.push_str(&format!("  {:<24} {what}\n", g.services.join(", ")));
    }
    msg.push_str(&format!("e.g. baton import compose {file} {first}"));
    Failure::usage(msg)
}

/// The compose project name: `name:`, `COMPOSE_PROJECT_NAME`, or the directory name,
/// normalised as compose does. Named volumes and networks carry it as a prefix.
fn project_name(top: &Mapping, dir: &Path, vars: &mut Vars) -> String {
    let raw = top
        .get("name")
        .map(|n| vars.interpolate(&scalar(n)))
        .or_else(|| vars.lookup("COMPOSE_PROJECT_NAME").map(|(v, _)| v))
        .unwrap_or_else(|| {
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
    super::project_from(&raw)
}

/// `--app`, else the twin pair's stem, else the service name, made a valid app name.
fn app_name(
    given: Option<&str>,
    group: &Group,
    chosen: &str,
    svc: &Mapping,
) -> Result<String, Failure> {
    if let Some(a) = given {
        baton_core::validate_app_name(a).map_err(|e| Failure::usage(format!("--app: {e}")))?;
        return Ok(a.to_string());
    }
    let base = match &group.stem {
        Some(s) if !s.is_empty() => s.clone(),
        Some(_) => svc
            .get("image")
            .map(|i| split_image(&scalar(i)).0)
            .and_then(|r| r.rsplit('/').next().map(str::to_string))
            .unwrap_or_else(|| "app".into()),
        None => chosen.to_string(),
    };
    let name = super::app_name_from(&base);
    baton_core::validate_app_name(&name).map_err(|e| {
        Failure::usage(format!(
            "cannot make an app name from service {chosen:?} ({e}): pass --app NAME"
        ))
    })?;
    Ok(name)
}

fn human_report(
    file: &str,
    service: &str,
    draft: &Draft,
    report: &Report,
    written: Option<&Path>,
) -> String {
    let mut s = format!(
        "imported service `{service}` of {file} as app `{}`{}\n",
        draft.app,
        written.map_or(String::new(), |p| format!(" into {}", p.display()))
    );
    s.push_str(&report.lines());
    let config = written.map_or("baton.toml".to_string(), |p| p.display().to_string());
    s.push_str(&format!(
        "next: baton validate -c {config} && baton serve -c {config}, then baton deploy {} {}\n",
        draft.app,
        report.current_version.as_deref().unwrap_or("VERSION")
    ));
    s
}
