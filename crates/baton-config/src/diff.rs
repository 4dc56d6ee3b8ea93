//! The typed difference between two loaded configurations, as `baton reload` shows and
//! applies it: apps added, removed and changed (with each changed key and when it takes
//! effect), proxy listeners added and removed, proxy settings changed, and the settings
//! that a running baton cannot take (admin, store, worker threads).
//!
//! Pure: two [`Config`]s in, a [`ConfigDiff`] out. Keys are compared leaf by leaf
//! (`health.interval`, `env.API_URL`, `canary.steps`), so a new key in the file's schema
//! is diffed without code here; [`app_key_takes`] says when each one takes effect.

use crate::model::{AppConfig, Config};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

/// What changes from one configuration to the next.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConfigDiff {
    /// Apps only in the new file: routed and given an actor; instances come with their
    /// first `baton deploy`.
    pub apps_added: Vec<String>,
    /// Apps only in the old file: unrouted, their instances drained and stopped.
    pub apps_removed: Vec<String>,
    /// Apps in both files whose settings differ.
    pub apps_changed: Vec<AppChange>,
    /// `[proxy] listen` addresses to open.
    #[schema(value_type = Vec<String>)]
    pub listeners_added: Vec<SocketAddr>,
    /// `[proxy] listen` addresses to close (open connections drain).
    #[schema(value_type = Vec<String>)]
    pub listeners_removed: Vec<SocketAddr>,
    /// `[proxy] tls_listen` addresses to open.
    #[schema(value_type = Vec<String>)]
    #[serde(default)]
    pub tls_listeners_added: Vec<SocketAddr>,
    /// `[proxy] tls_listen` addresses to close (open connections drain).
    #[schema(value_type = Vec<String>)]
    #[serde(default)]
    pub tls_listeners_removed: Vec<SocketAddr>,
    /// Other `[proxy]` settings.
    pub proxy: Vec<KeyChange>,
    /// `[admin]` and `[store]` settings: never applied by a reload.
    pub server: Vec<KeyChange>,
    /// `[proxy.tls.acme]` is new: the reload starts the ACME client (stored certificates
    /// installed, then orders for the apps with `tls = "acme"`). A changed or removed
    /// section is in `proxy` as needing `baton upgrade`.
    #[serde(default)]
    pub acme_started: bool,
}

/// One app's changed settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AppChange {
    pub app: String,
    pub keys: Vec<KeyChange>,
}

/// One setting that differs, with both values as written in TOML (`-` when unset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyChange {
    /// The key under its section, dotted for nested tables: `health.interval`.
    pub key: String,
    pub from: String,
    pub to: String,
    pub takes: Takes,
}

/// When a changed setting takes effect in a running baton.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Takes {
    /// For every request from now on.
    Now,
    /// For client connections accepted from now on; open ones keep their settings.
    NewConnections,
    /// From the next health probe: the monitors restart with the new spec.
    NextProbe,
    /// From the next deployment (`baton deploy`, `rollback`).
    NextRollout,
    /// For instances started from now on (deployments and replacements); running
    /// instances keep what they were started with.
    NextStart,
    /// For instances drained and stopped from now on.
    NextStop,
    /// Not applied: the running process cannot change it; `baton upgrade` (a new process
    /// reading the file, no request dropped) does.
    NeedsUpgrade,
    /// Not applied: needs baton to be restarted.
    NeedsRestart,
}

// === impl Takes ===

impl Takes {
    /// Whether a reload applies a change of this kind.
    pub fn is_applied(self) -> bool {
        !matches!(self, Takes::NeedsUpgrade | Takes::NeedsRestart)
    }

    /// How the CLI words it.
    pub fn describe(self) -> &'static str {
        match self {
            Takes::Now => "at once",
            Takes::NewConnections => "for new connections",
            Takes::NextProbe => "from the next health probe",
            Takes::NextRollout => "from the next deploy",
            Takes::NextStart => "for instances started from now on",
            Takes::NextStop => "for instances stopped from now on",
            Takes::NeedsUpgrade => "NOT APPLIED: needs `baton upgrade`",
            Takes::NeedsRestart => "NOT APPLIED: needs a restart of baton",
        }
    }
}

/// When a change to `[apps.X] key` (dotted for nested keys) takes effect. Every key of
/// an app is listed (a unit test walks them all); `None` for a key this does not know.
pub fn app_key_takes(key: &str) -> Option<Takes> {
    let top = key.split('.').next().unwrap_or(key);
    Some(match top {
        "hosts"
        | "path"
        | "upgrade_protocols"
        | "underscores_in_headers"
        | "hold_timeout"
        | "tls" => Takes::Now,
        // The proxy's passive ejection is one setting for all apps, fixed at start.
        "health" if matches!(key, "health.eject_after" | "health.eject_time") => {
            Takes::NeedsUpgrade
        }
        "health" => Takes::NextProbe,
        "strategy" | "replicas" | "analysis" | "recreate" | "blue_green" | "rolling" | "canary"
        | "ab_test" | "hooks" => Takes::NextRollout,
        "runtime" | "command" | "cwd" | "env" | "ports" | "image" | "container_port"
        | "volumes" | "network" | "memory" | "cpus" | "pull" | "wait_healthcheck" | "swarm" => {
            Takes::NextStart
        }
        "drain_timeout" | "stop_timeout" => Takes::NextStop,
        _ => return None,
    })
}

/// When a change to `[proxy] key` takes effect (`listen` and `tls_listen` are diffed
/// on their own). `[proxy.tls.acme]` where there was none is started by the reload
/// (see [`diff`]); this is for a section that was there already.
pub fn proxy_key_takes(key: &str) -> Takes {
    // The running ACME client's settings are read when it starts (the apps' `tls` is
    // applied live).
    if key.starts_with("tls.acme") {
        return Takes::NeedsUpgrade;
    }
    // Certificates are loaded anew (a file that cannot be used refuses the reload);
    // redirect and HSTS apply to the next request.
    if key.starts_with("tls.") {
        return Takes::Now;
    }
    match key {
        "connect_timeout"
        | "upstream_header_timeout"
        | "max_request_body"
        | "request_buffering"
        | "body_read_timeout" => Takes::Now,
        // `[proxy.compression]` is read by each request (`Proxy::set_config`).
        _ if key == "compression" || key.starts_with("compression.") => Takes::Now,
        "client_header_timeout"
        | "client_idle_timeout"
        | "max_header_bytes"
        | "trusted_proxies" => Takes::NewConnections,
        // Fixed when the process starts: the number of threads, the access log's file,
        // format and queue (a `baton upgrade` starts a process that reads them anew).
        _ => Takes::NeedsUpgrade,
    }
}

/// Addresses only in `new`, and addresses only in `old`.
fn added_removed(old: &[SocketAddr], new: &[SocketAddr]) -> (Vec<SocketAddr>, Vec<SocketAddr>) {
    let only =
        |a: &[SocketAddr], b: &[SocketAddr]| a.iter().filter(|x| !b.contains(x)).copied().collect();
    (only(new, old), only(old, new))
}

/// The difference from `old` to `new`.
pub fn diff(old: &Config, new: &Config) -> ConfigDiff {
    let mut d = ConfigDiff::default();
    for (name, app) in &new.apps {
        match old.apps.get(name) {
            None => d.apps_added.push(name.clone()),
            Some(before) => {
                let keys = app_changes(before, app);
                if !keys.is_empty() {
                    d.apps_changed.push(AppChange {
                        app: name.clone(),
                        keys,
                    });
                }
            }
        }
    }
    d.apps_removed = old
        .apps
        .keys()
        .filter(|n| !new.apps.contains_key(*n))
        .cloned()
        .collect();
    (d.listeners_added, d.listeners_removed) = added_removed(&old.proxy.listen, &new.proxy.listen);
    (d.tls_listeners_added, d.tls_listeners_removed) =
        added_removed(&old.proxy.tls_listen, &new.proxy.tls_listen);
    d.acme_started = old.proxy.tls.acme.is_none() && new.proxy.tls.acme.is_some();
    d.proxy = leaf_changes(&old.proxy, &new.proxy)
        .into_iter()
        .filter(|(key, ..)| key != "listen" && key != "tls_listen")
        .map(|(key, from, to)| {
            let takes = if d.acme_started && key.starts_with("tls.acme.") {
                Takes::Now
            } else {
                proxy_key_takes(&key)
            };
            KeyChange {
                key,
                from,
                to,
                takes,
            }
        })
        .collect();
    let server = [
        (
            "admin",
            leaf_changes(&old.admin, &new.admin),
            Takes::NeedsUpgrade,
        ),
        (
            "dashboard",
            leaf_changes(&old.dashboard, &new.dashboard),
            Takes::NeedsUpgrade,
        ),
        (
            "cluster",
            leaf_changes(&old.cluster, &new.cluster),
            Takes::NeedsRestart,
        ),
        (
            "store",
            leaf_changes(&old.store, &new.store),
            Takes::NeedsRestart,
        ),
    ];
    for (section, changes, takes) in server {
        d.server
            .extend(changes.into_iter().map(|(key, from, to)| KeyChange {
                key: format!("{section}.{key}"),
                from,
                to,
                takes,
            }));
    }
    d
}

fn app_changes(old: &AppConfig, new: &AppConfig) -> Vec<KeyChange> {
    leaf_changes(old, new)
        .into_iter()
        .map(|(key, from, to)| {
            let takes = app_key_takes(&key).unwrap_or(Takes::NextStart);
            KeyChange {
                key,
                from,
                to,
                takes,
            }
        })
        .collect()
}

// === impl ConfigDiff ===

impl ConfigDiff {
    /// Nothing differs.
    pub fn is_empty(&self) -> bool {
        self.apps_added.is_empty()
            && self.apps_removed.is_empty()
            && self.apps_changed.is_empty()
            && self.listeners_added.is_empty()
            && self.listeners_removed.is_empty()
            && self.tls_listeners_added.is_empty()
            && self.tls_listeners_removed.is_empty()
            && self.proxy.is_empty()
            && self.server.is_empty()
    }

    /// Whether a reload changes anything in the running server (apps, listeners, or a
    /// proxy setting it can take live).
    pub fn applies_anything(&self) -> bool {
        !self.apps_added.is_empty()
            || !self.apps_removed.is_empty()
            || self
                .apps_changed
                .iter()
                .any(|c| c.keys.iter().any(|k| k.takes.is_applied()))
            || !self.listeners_added.is_empty()
            || !self.listeners_removed.is_empty()
            || !self.tls_listeners_added.is_empty()
            || !self.tls_listeners_removed.is_empty()
            || self.proxy.iter().any(|k| k.takes.is_applied())
    }

    /// The changed apps' names.
    pub fn changed_apps(&self) -> impl Iterator<Item = &str> {
        self.apps_changed.iter().map(|c| c.app.as_str())
    }

    /// The changes a reload does not apply (they need `baton upgrade` or a restart).
    pub fn not_applied(&self) -> Vec<String> {
        let apps = self.apps_changed.iter().flat_map(|c| {
            c.keys
                .iter()
                .map(move |k| (format!("[apps.{}] {}", c.app, k.key), k.takes))
        });
        let proxy = self
            .proxy
            .iter()
            .map(|k| (format!("[proxy] {}", k.key), k.takes));
        let server = self.server.iter().map(|k| (k.key.clone(), k.takes));
        apps.chain(proxy)
            .chain(server)
            .filter(|(_, t)| !t.is_applied())
            .map(|(key, _)| key)
            .collect()
    }
}

/// One line per change, as `baton reload` prints it.
impl fmt::Display for ConfigDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return writeln!(f, "  no changes");
        }
        for app in &self.apps_added {
            writeln!(
                f,
                "  + app {app} (routed now; instances start with its first `baton deploy`)"
            )?;
        }
        for app in &self.apps_removed {
            writeln!(
                f,
                "  - app {app} (unrouted, its instances drained and stopped)"
            )?;
        }
        for c in &self.apps_changed {
            for k in &c.keys {
                writeln!(f, "  ~ app {} {}", c.app, k)?;
            }
        }
        for a in &self.listeners_added {
            writeln!(f, "  + listen {a}")?;
        }
        for a in &self.listeners_removed {
            writeln!(
                f,
                "  - listen {a} (stops accepting; open connections drain)"
            )?;
        }
        for a in &self.tls_listeners_added {
            writeln!(f, "  + tls_listen {a}")?;
        }
        for a in &self.tls_listeners_removed {
            writeln!(
                f,
                "  - tls_listen {a} (stops accepting; open connections drain)"
            )?;
        }
        if self.acme_started {
            writeln!(
                f,
                "  + proxy [proxy.tls.acme] (ACME starts now: stored certificates are served, \
                 the apps with tls = \"acme\" get theirs ordered)"
            )?;
        }
        for k in &self.proxy {
            writeln!(f, "  ~ proxy {k}")?;
        }
        for k in &self.server {
            writeln!(f, "  ~ {k}")?;
        }
        Ok(())
    }
}

impl fmt::Display for KeyChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} → {} ({})",
            self.key,
            self.from,
            self.to,
            self.takes.describe()
        )
    }
}

/// Every leaf key whose value differs between `old` and `new` (both serialized as TOML),
/// with both values; a key set on one side only is shown as `-` on the other.
fn leaf_changes<T: Serialize>(old: &T, new: &T) -> Vec<(String, String, String)> {
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    flatten("", toml::Value::try_from(old).ok(), &mut a);
    flatten("", toml::Value::try_from(new).ok(), &mut b);
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let show = |v: Option<&toml::Value>| v.map_or_else(|| "-".to_string(), render);
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| (k.clone(), show(a.get(k)), show(b.get(k))))
        .collect()
}

/// Tables become dotted keys; arrays and scalars are leaves.
fn flatten(prefix: &str, value: Option<toml::Value>, out: &mut BTreeMap<String, toml::Value>) {
    let Some(value) = value else {
        return;
    };
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, Some(v), out);
            }
        }
        leaf => {
            out.insert(prefix.to_string(), leaf);
        }
    }
}

/// A value as it would be written in the file.
fn render(v: &toml::Value) -> String {
    match v {
        toml::Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(render).collect();
            format!("[{}]", inner.join(", "))
        }
        toml::Value::Table(_) => "{…}".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cfg(text: &str) -> Config {
        crate::parse(text, Path::new("/srv/baton.toml")).unwrap()
    }

    const BASE: &str = r#"
[proxy]
listen = ["127.0.0.1:8080"]
[apps.web]
command = "./web {port}"
hosts = ["web.example"]
[apps.api]
command = "./api {port}"
path = "/api"
"#;

    #[test]
    fn the_same_file_differs_in_nothing() {
        let d = diff(&cfg(BASE), &cfg(BASE));
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(d.to_string(), "  no changes\n");
    }

    #[test]
    fn apps_added_and_removed_are_named() {
        let new = BASE.replace("[apps.api]", "[apps.shop]");
        let d = diff(&cfg(BASE), &cfg(&new));
        assert_eq!(d.apps_added, vec!["shop"]);
        assert_eq!(d.apps_removed, vec!["api"]);
        assert!(d.apps_changed.is_empty());
        let text = d.to_string();
        assert!(text.contains("+ app shop"), "{text}");
        assert!(text.contains("- app api"), "{text}");
    }

    #[test]
    fn a_changed_health_check_names_the_leaf_key_and_takes_at_the_next_probe() {
        let new = format!("{BASE}[apps.web.health]\ninterval = \"250ms\"\npath = \"/ready\"\n");
        let d = diff(&cfg(BASE), &cfg(&new));
        assert_eq!(d.apps_changed.len(), 1);
        let c = &d.apps_changed[0];
        assert_eq!(c.app, "web");
        let keys: Vec<&str> = c.keys.iter().map(|k| k.key.as_str()).collect();
        assert_eq!(keys, ["health.interval", "health.path"]);
        assert!(c.keys.iter().all(|k| k.takes == Takes::NextProbe));
        assert_eq!(c.keys[1].from, "\"/\"");
        assert_eq!(c.keys[1].to, "\"/ready\"");
        assert!(d.not_applied().is_empty());
    }

    #[test]
    fn each_kind_of_app_key_takes_effect_when_it_should() {
        let new = BASE.replace(
            "hosts = [\"web.example\"]",
            "hosts = [\"www.example\"]\nstrategy = \"canary\"\nreplicas = 2\n\
             env = { A = \"1\" }\ndrain_timeout = \"5s\"",
        );
        let d = diff(&cfg(BASE), &cfg(&new));
        let takes: BTreeMap<&str, Takes> = d.apps_changed[0]
            .keys
            .iter()
            .map(|k| (k.key.as_str(), k.takes))
            .collect();
        assert_eq!(takes["hosts"], Takes::Now);
        assert_eq!(takes["strategy"], Takes::NextRollout);
        assert_eq!(takes["replicas"], Takes::NextRollout);
        assert_eq!(takes["env.A"], Takes::NextStart);
        assert_eq!(takes["drain_timeout"], Takes::NextStop);
        assert_eq!(
            d.apps_changed[0]
                .keys
                .iter()
                .find(|k| k.key == "env.A")
                .unwrap()
                .from,
            "-"
        );
    }

    #[test]
    fn every_app_key_has_a_time_it_takes_effect() {
        // Every optional key set, so that each appears in the serialized form.
        let full = AppConfig {
            command: Some("x".into()),
            cwd: Some("/".into()),
            image: Some("i".into()),
            container_port: Some(1),
            network: Some("n".into()),
            memory: Some("8MiB".into()),
            cpus: Some(1.0),
            env: [("K".to_string(), "v".to_string())].into(),
            swarm: crate::model::SwarmConfig {
                constraints: vec!["node.role==worker".into()],
                spread: Some("node.labels.zone".into()),
                secrets: vec!["s".into()],
                configs: vec!["c".into()],
            },
            ..AppConfig::default()
        };
        let mut leaves = BTreeMap::new();
        flatten("", toml::Value::try_from(&full).ok(), &mut leaves);
        assert!(leaves.len() > 30, "{leaves:?}");
        for key in leaves.keys() {
            assert!(
                app_key_takes(key).is_some(),
                "no reload rule for [apps.X] {key}"
            );
        }
    }

    #[test]
    fn listeners_added_and_removed() {
        let new = BASE.replace(
            "listen = [\"127.0.0.1:8080\"]",
            "listen = [\"127.0.0.1:8081\", \"127.0.0.1:8082\"]",
        );
        let d = diff(&cfg(BASE), &cfg(&new));
        let addrs = |v: &[SocketAddr]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        assert_eq!(
            addrs(&d.listeners_added),
            ["127.0.0.1:8081", "127.0.0.1:8082"]
        );
        assert_eq!(addrs(&d.listeners_removed), ["127.0.0.1:8080"]);
        assert!(
            d.proxy.is_empty(),
            "listen is not a proxy setting: {:?}",
            d.proxy
        );
    }

    #[test]
    fn proxy_settings_say_whether_they_are_live() {
        let new = BASE.replace(
            "[proxy]\n",
            "[proxy]\nconnect_timeout = \"1s\"\nmax_header_bytes = 8192\nworkers = 2\n",
        );
        let d = diff(&cfg(BASE), &cfg(&new));
        let takes: BTreeMap<&str, Takes> =
            d.proxy.iter().map(|k| (k.key.as_str(), k.takes)).collect();
        assert_eq!(takes["connect_timeout"], Takes::Now);
        assert_eq!(takes["max_header_bytes"], Takes::NewConnections);
        assert_eq!(takes["workers"], Takes::NeedsUpgrade);
        assert_eq!(d.not_applied(), ["[proxy] workers"]);
        assert!(d
            .to_string()
            .contains("workers: 0 → 2 (NOT APPLIED: needs `baton upgrade`)"));
    }

    #[test]
    fn compression_settings_take_effect_at_once() {
        let on = format!("{BASE}[proxy.compression]\nlevel = 3\ntypes = [\"text/html\"]\n");
        let d = diff(&cfg(BASE), &cfg(&on));
        let keys: Vec<_> = d.proxy.iter().map(|k| (k.key.as_str(), k.takes)).collect();
        assert!(!keys.is_empty());
        assert!(
            keys.iter()
                .all(|(k, t)| k.starts_with("compression.") && *t == Takes::Now),
            "{keys:?}"
        );
        assert!(
            keys.contains(&("compression.level", Takes::Now)),
            "{keys:?}"
        );
        assert!(d.not_applied().is_empty());
    }

    #[test]
    fn admin_and_store_changes_are_reported_not_applied() {
        let new =
            format!("{BASE}[store]\npath = \"other/state\"\n[admin]\nlisten = \"unix:x.sock\"\n");
        let d = diff(&cfg(BASE), &cfg(&new));
        let keys: Vec<(&str, Takes)> = d.server.iter().map(|k| (k.key.as_str(), k.takes)).collect();
        assert_eq!(
            keys,
            [
                ("admin.listen", Takes::NeedsUpgrade),
                ("store.path", Takes::NeedsRestart)
            ]
        );
        assert_eq!(d.not_applied(), ["admin.listen", "store.path"]);
    }

    #[test]
    fn passive_ejection_settings_need_an_upgrade() {
        let new = format!("{BASE}[apps.web.health]\neject_after = 3\n");
        let d = diff(&cfg(BASE), &cfg(&new));
        assert_eq!(d.not_applied(), ["[apps.web] health.eject_after"]);
    }

    const TLS: &str = r#"
[proxy]
listen = ["127.0.0.1:8080"]
tls_listen = ["127.0.0.1:8443"]
[[proxy.tls.certificates]]
cert = "a.pem"
key = "a.key"
[apps.web]
command = "./web {port}"
hosts = ["web.example"]
"#;

    fn with_acme(extra: &str) -> String {
        TLS.replace(
            "[apps.web]\n",
            &format!("[proxy.tls.acme]\nemail = \"ops@example.com\"\n{extra}[apps.web]\ntls = \"acme\"\n"),
        )
    }

    #[test]
    fn a_new_acme_section_is_started_by_the_reload_and_says_so() {
        let d = diff(&cfg(TLS), &cfg(&with_acme("")));
        assert!(d.acme_started);
        assert!(d.not_applied().is_empty(), "{:?}", d.not_applied());
        assert!(d.applies_anything());
        let acme: Vec<_> = d
            .proxy
            .iter()
            .filter(|k| k.key.starts_with("tls.acme."))
            .collect();
        assert!(!acme.is_empty());
        assert!(acme.iter().all(|k| k.takes == Takes::Now), "{acme:?}");
        let text = d.to_string();
        assert!(
            text.contains("+ proxy [proxy.tls.acme] (ACME starts now"),
            "{text}"
        );
        assert!(
            text.contains("~ app web tls: - → \"acme\" (at once)"),
            "{text}"
        );
        // Durations as the file writes them.
        assert!(
            text.contains("tls.acme.renew_before: - → \"30d\" (at once)"),
            "{text}"
        );
        assert!(text.contains("tls.acme.retry_max: - → \"6h\""), "{text}");
    }

    #[test]
    fn a_changed_or_removed_acme_section_needs_an_upgrade() {
        let before = cfg(&with_acme(""));
        let changed = cfg(&with_acme("renew_before = \"45d\"\n"));
        let d = diff(&before, &changed);
        assert!(!d.acme_started);
        assert_eq!(d.not_applied(), ["[proxy] tls.acme.renew_before"]);
        assert!(d.to_string().contains(
            "tls.acme.renew_before: \"30d\" → \"45d\" (NOT APPLIED: needs `baton upgrade`)"
        ));
        let d = diff(&before, &cfg(TLS));
        assert!(!d.acme_started);
        assert!(d
            .not_applied()
            .contains(&"[proxy] tls.acme.directory".to_string()));
    }

    #[test]
    fn durations_are_shown_as_the_file_writes_them() {
        let new = format!("{TLS}[proxy.tls]\nhsts = \"8760h\"\n");
        let new = new.replace("[proxy]\n", "[proxy]\nclient_idle_timeout = \"90s\"\n");
        let text = diff(&cfg(TLS), &cfg(&new)).to_string();
        assert!(text.contains("tls.hsts: - → \"365d\""), "{text}");
        assert!(
            text.contains("client_idle_timeout: \"1m\" → \"90s\""),
            "{text}"
        );
        assert!(!text.contains("days") && !text.contains("month"), "{text}");
    }

    #[test]
    fn the_diff_round_trips_through_json() {
        let new = BASE.replace("[apps.api]", "[apps.shop]");
        let d = diff(&cfg(BASE), &cfg(&new));
        let json = serde_json::to_string(&d).unwrap();
        assert!(json.contains("\"apps_added\":[\"shop\"]"), "{json}");
        assert_eq!(serde_json::from_str::<ConfigDiff>(&json).unwrap(), d);
    }
}
