//! `baton.toml`: loading, defaults and validation.
//!
//! [`load`] reads the file and [`parse`] does the rest: TOML syntax, the schema (every
//! section refuses unknown keys), then checks across keys. Every error names the file,
//! line, column and key, and says how to fix it; a misspelt key or value gets the closest
//! valid one suggested:
//!
//! ```text
//! baton.toml:7:1: unknown key `replica` in [apps.web]; did you mean `replicas`?
//! ```
//!
//! Relative paths in the file (store, admin socket, token file, app `cwd`) are resolved
//! against the directory of the file, so a `Config` means the same thing whatever the
//! current directory of the process reading it.

mod diagnose;
pub mod diff;
mod error;
mod hooks;
mod kinds;
mod locate;
mod model;
mod strategy;
mod validate;
mod validate_app;

pub use diff::{diff, AppChange, ConfigDiff, KeyChange, Takes};
pub use error::{ConfigError, Problem};
pub use hooks::{HookKind, HooksConfig, PostSwitchFailure};
pub use kinds::{AdminListen, RuntimeKind, StrategyKind};
pub use locate::Places;
pub use model::{
    parse_memory, parse_size, AccessLogFormatKind, AccessLogSection, AcmeSection, AdminSection,
    AppConfig, AppTls, CertificateSection, ClusterSection, ClusterState, CompressionSection,
    Config, DashboardSection, OnDemandSection, ProxySection, PullPolicy, StoreSection, SwarmConfig,
    TlsSection, LETS_ENCRYPT,
};

use diagnose::Found;
use locate::{line_col, Locator};
use model::RawConfig;
use std::io;
use std::path::{Path, PathBuf};

/// The file name `baton` looks for when no `-c FILE` is given.
pub const DEFAULT_FILE: &str = "baton.toml";

/// Reads and validates the configuration at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            ConfigError::NotFound {
                path: path.to_path_buf(),
                dir: absolute(parent_dir(path)),
                name: path
                    .file_name()
                    .map_or_else(|| DEFAULT_FILE.into(), |n| n.to_string_lossy().into_owned()),
            }
        } else {
            ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    parse(&text, path)
}

/// Parses and validates `text` as if read from `path` (used for messages and to resolve
/// relative paths; the file itself is not touched).
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let problem = |found: Found| place(text, path, found);
    let locator = Locator::new(text)
        .map_err(|e| ConfigError::Invalid(vec![problem(diagnose::syntax(&e))]))?;
    let raw: RawConfig = toml::from_str(text)
        .map_err(|e| ConfigError::Invalid(vec![problem(diagnose::schema(&e, &locator))]))?;
    let issues = validate::validate(&raw);
    if !issues.is_empty() {
        let problems = issues
            .into_iter()
            .map(|(key, message)| {
                let offset = locator.offset_of(&key);
                problem(Found {
                    offset,
                    key: Some(key),
                    message,
                })
            })
            .collect();
        return Err(ConfigError::Invalid(problems));
    }
    let mut config = resolve(raw, path);
    config.places = Places::new(path, text, &locator);
    Ok(config)
}

/// Places checks made outside this crate (e.g. a runtime's answer about a hook) at the
/// file:line of their key, read again from `path`: `key` is the dotted path
/// (`["apps", "web", "hooks", "release"]`). `None` when there is nothing to report.
pub fn locate_issues(path: &Path, issues: Vec<(Vec<String>, String)>) -> Option<ConfigError> {
    if issues.is_empty() {
        return None;
    }
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let locator = Locator::new(&text).ok();
    let problems = issues
        .into_iter()
        .map(|(segs, message)| {
            let key = locate::KeyPath(segs.into_iter().map(locate::Seg::Key).collect());
            let offset = locator.as_ref().and_then(|l| l.offset_of(&key));
            place(
                &text,
                path,
                Found {
                    offset,
                    key: Some(key),
                    message,
                },
            )
        })
        .collect();
    Some(ConfigError::Invalid(problems))
}

/// A commented example `baton.toml` (it parses; the docs and `baton init`-style help use it).
pub fn example() -> &'static str {
    include_str!("example.toml")
}

fn place(text: &str, path: &Path, found: Found) -> Problem {
    let (line, column) = match found.offset.map(|o| line_col(text, o)) {
        Some((l, c)) => (Some(l), Some(c)),
        None => (None, None),
    };
    Problem {
        file: path.to_path_buf(),
        line,
        column,
        key: found.key.map(|k| k.to_string()),
        message: found.message,
    }
}

/// Makes every relative path in the file relative to the file's directory.
fn resolve(raw: RawConfig, path: &Path) -> Config {
    let base_dir = absolute(parent_dir(path));
    let mut admin = raw.admin;
    if let AdminListen::Unix(socket) = &admin.listen {
        admin.listen = AdminListen::Unix(base_dir.join(socket));
    }
    admin.token_file = admin.token_file.map(|f| base_dir.join(f));
    let mut store = raw.store;
    store.path = base_dir.join(&store.path);
    let mut cluster = raw.cluster;
    if let Some(c) = cluster.as_mut() {
        c.token_file = c.token_file.take().map(|f| base_dir.join(f));
        c.routes_cache = c.routes_cache.take().map(|f| base_dir.join(f));
    }
    let mut proxy = raw.proxy;
    if let Some(log) = proxy.access_log.as_mut().filter(|l| !l.is_stdout()) {
        log.path = base_dir.join(&log.path);
    }
    if let Some(acme) = proxy.tls.acme.as_mut() {
        acme.ca_roots = acme.ca_roots.take().map(|p| base_dir.join(p));
    }
    for c in &mut proxy.tls.certificates {
        c.cert = base_dir.join(&c.cert);
        c.key = base_dir.join(&c.key);
    }
    let mut apps = raw.apps;
    for app in apps.values_mut() {
        app.cwd = app.cwd.take().map(|cwd| base_dir.join(cwd));
    }
    Config {
        path: path.to_path_buf(),
        base_dir,
        proxy,
        admin,
        dashboard: raw.dashboard,
        cluster,
        store,
        apps,
        places: Places::default(),
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// An absolute form of `dir` without touching the file system beyond the current directory.
fn absolute(dir: &Path) -> PathBuf {
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}
