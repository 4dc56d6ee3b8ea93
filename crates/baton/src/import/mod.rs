//! `baton import compose` and `baton import stack`: another tool's description of a
//! service becomes `baton.toml` apps. Every key is either translated or named with the
//! reason it was not, so nothing is dropped silently. What both commands share lives
//! here and in `service.rs` (one service's keys), `render.rs` (the TOML text) and
//! `text.rs` (interpolation, durations, sizes, quoting).

pub mod compose;
mod render;
mod service;
pub mod stack;
mod text;

use crate::Failure;
use serde::Serialize;
use std::io::Write;
use std::path::Path;
use text::Vars;
use yaml_serde::Value;

/// A key that has no translation, and why.
#[derive(Debug, Serialize)]
pub struct Skipped {
    pub key: String,
    pub why: String,
}

/// What the import could not carry over, and what the user should know.
#[derive(Debug, Default)]
pub struct Report {
    pub untranslated: Vec<Skipped>,
    pub notes: Vec<String>,
    /// The version running now, to deploy first.
    pub current_version: Option<String>,
}

// === impl Report ===

impl Report {
    fn skip(&mut self, key: &str, why: String) {
        self.untranslated.push(Skipped {
            key: key.to_string(),
            why,
        });
    }

    fn note(&mut self, s: String) {
        self.notes.push(s);
    }

    /// Reasons are written before the app's name is final: `APP` becomes `app`.
    fn name_app(&mut self, app: &str) {
        for u in &mut self.untranslated {
            u.why = u
                .why
                .replace("[apps.APP", &format!("[apps.{app}"))
                .replace("deploy APP ", &format!("deploy {app} "));
        }
    }

    /// The notes and the untranslated keys, one `  - ` line each.
    fn lines(&self) -> String {
        let mut s = String::new();
        for n in &self.notes {
            s.push_str(&format!("  - {n}\n"));
        }
        if self.untranslated.is_empty() {
            s.push_str("every key was translated\n");
        } else {
            s.push_str(&format!("not translated ({}):\n", self.untranslated.len()));
            for u in &self.untranslated {
                s.push_str(&format!("  - {}: {}\n", u.key, u.why));
            }
        }
        s
    }
}

/// How a command names the file it reads, in its errors.
struct FileKind {
    /// "compose file"
    name: &'static str,
    /// What to give instead: "a docker-compose.yml".
    expected: &'static str,
    /// The command that shows a YAML problem the same way, `{file}` for the file.
    check: &'static str,
}

/// Reads `path` as YAML with `<<` merge keys applied.
fn read_yaml(path: &Path, kind: &FileKind) -> Result<Value, Failure> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::usage(format!(
            "cannot read {} {file} ({e}): give the path of {}",
            kind.name, kind.expected
        ))
    })?;
    let check = kind.check.replace("{file}", &file);
    let mut root: Value = yaml_serde::from_str(&text).map_err(|e| {
        Failure::usage(format!(
            "{file} is not valid YAML: {e}; fix it (`{check}` shows the same problem)"
        ))
    })?;
    root.apply_merge()
        .map_err(|e| Failure::usage(format!("{file}: cannot apply a `<<` merge key: {e}")))?;
    Ok(root)
}

/// Compose interpolates every string of the file before reading it.
fn interpolate(v: &mut Value, vars: &mut Vars) {
    match v {
        Value::String(s) => *s = vars.interpolate(s),
        Value::Sequence(items) => items.iter_mut().for_each(|i| interpolate(i, vars)),
        Value::Mapping(m) => m.values_mut().for_each(|i| interpolate(i, vars)),
        Value::Tagged(t) => interpolate(&mut t.value, vars),
        _ => {}
    }
}

/// A compose project or stack name as Docker normalises it: lower case, letters, digits,
/// `_` and `-`, starting with a letter or digit.
fn project_from(raw: &str) -> String {
    let cleaned: String = raw
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    cleaned
        .trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

/// `base` as an app name: characters an app name cannot hold become `-`, leading
/// punctuation goes, at most 63 characters.
fn app_name_from(base: &str) -> String {
    let mut name: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .skip_while(|c| !c.is_ascii_alphanumeric())
        .collect();
    name.truncate(63);
    name
}

/// Checks the generated text as `baton validate` would, then writes it to `output` (an
/// existing file only with `force`). Nothing is written when it does not validate.
fn check_and_write(toml: &str, output: Option<&Path>, force: bool) -> Result<(), Failure> {
    let target = output.unwrap_or(Path::new("baton.toml"));
    if let Err(e) = baton_config::parse(toml, target) {
        return Err(Failure::failed(format!(
            "the generated config does not validate, so nothing was written:\n{e}\n--- generated text ---\n{toml}"
        )));
    }
    match output {
        Some(out) => write_output(out, toml, force),
        None => Ok(()),
    }
}

/// Prints the result: the JSON document with `--json`, else the TOML on stdout (unless
/// it was `written` to a file) and the report on stderr.
fn emit(json: Option<serde_json::Value>, toml: &str, written: bool, human: &str) {
    match json {
        Some(v) => println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default()),
        None => {
            if !written {
                print!("{toml}");
            }
            eprint!("{human}");
        }
    }
}

/// Writes the file; an existing one only with `--force`.
fn write_output(out: &Path, toml: &str, force: bool) -> Result<(), Failure> {
    let shown = out.display();
    let mut f = if force {
        std::fs::File::create(out)
    } else {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(out)
    }
    .map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Failure::usage(format!(
                "{shown} already exists: pass --force to overwrite it, or write elsewhere with -o"
            ))
        } else {
            Failure::failed(format!("cannot create {shown} ({e})"))
        }
    })?;
    f.write_all(toml.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| Failure::failed(format!("cannot write {shown} ({e})")))
}
