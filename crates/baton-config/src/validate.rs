//! Checks that need the whole file or more than one key: listeners, the admin token rule,
//! and routes shared by two apps; and `[proxy]`'s own keys, `[proxy.compression]` too. Per-app checks are in `validate_app`.

use crate::kinds::{AdminListen, RuntimeKind};
use crate::locate::{key, KeyPath};
use crate::model::{AppConfig, RawConfig};
use crate::validate_app;
use baton_core::HumanDuration;
use std::collections::BTreeMap;

/// A problem found by a semantic check: where (a key path) and what.
pub(crate) type Issue = (KeyPath, String);

pub(crate) fn validate(raw: &RawConfig) -> Vec<Issue> {
    let mut issues = Vec::new();
    proxy(raw, &mut issues);
    admin(raw, &mut issues);
    dashboard(raw, &mut issues);
    cluster(raw, &mut issues);
    for (name, app) in &raw.apps {
        validate_app::check(name, app, &mut issues);
    }
    routes(&raw.apps, &mut issues);
    issues
}

fn proxy(raw: &RawConfig, issues: &mut Vec<Issue>) {
    let p = &raw.proxy;
    if p.listen.is_empty() {
        issues.push((
            key!["proxy", "listen"],
            "`listen` in [proxy] is empty: give at least one address, e.g. listen = [\"127.0.0.1:8080\"]".into(),
        ));
    }
    for (i, addr) in p.listen.iter().enumerate() {
        if p.listen[..i].contains(addr) {
            issues.push((
                key!["proxy", "listen", i],
                format!("{addr} is listed twice in `listen` in [proxy]: remove the duplicate"),
            ));
        }
    }
    let timeouts = [
        ("connect_timeout", p.connect_timeout),
        ("upstream_header_timeout", p.upstream_header_timeout),
        ("client_header_timeout", p.client_header_timeout),
        ("client_idle_timeout", p.client_idle_timeout),
        ("body_read_timeout", p.body_read_timeout),
    ];
    for (key, value) in timeouts {
        positive(key!["proxy", key], value, issues);
    }
    if p.max_header_bytes < 1024 {
        issues.push((
            key!["proxy", "max_header_bytes"],
            format!(
                "`max_header_bytes` in [proxy] is {}: use at least 1024 (the default is 65536)",
                p.max_header_bytes
            ),
        ));
    }
    if let Some(text) = &p.max_request_body {
        match crate::model::parse_size("max_request_body", text) {
            Err(e) => issues.push((key!["proxy", "max_request_body"], e)),
            Ok(0) => issues.push((
                key!["proxy", "max_request_body"],
                "`max_request_body` in [proxy] is 0, which refuses every body: give a size such \
                 as \"10MiB\", or remove the key for no limit"
                    .into(),
            )),
            Ok(_) => {}
        }
    }
    if !p.request_buffering.trim().eq_ignore_ascii_case("off") {
        match crate::model::parse_size("request_buffering", &p.request_buffering) {
            Err(e) => issues.push((
                key!["proxy", "request_buffering"],
                format!("{e}, or \"off\" to stream every body at once"),
            )),
            Ok(0) => issues.push((
                key!["proxy", "request_buffering"],
                "`request_buffering` in [proxy] is 0: give a size such as \"1MiB\", or \"off\" \
                 to stream every body at once"
                    .into(),
            )),
            Ok(_) => {}
        }
    }
    if let Some(log) = &p.access_log {
        access_log(log, issues);
    }
    if let Some(c) = &p.compression {
        compression(c, issues);
    }
    tls(raw, issues);
    if p.workers > MAX_WORKERS {
        issues.push((
            key!["proxy", "workers"],
            format!(
                "`workers` in [proxy] is {}: use 1 to {MAX_WORKERS}, or 0 for one per CPU core (the default)",
                p.workers
            ),
        ));
    }
}

/// The shape of `tls_listen`, `[proxy.tls]` and the apps' `tls`; the certificate files
/// are read when the proxy loads them (at start and on reload), which names a file that
/// cannot be used.
fn tls(raw: &RawConfig, issues: &mut Vec<Issue>) {
    let p = &raw.proxy;
    let t = &p.tls;
    let acme_apps: Vec<&String> = raw
        .apps
        .iter()
        .filter(|(_, a)| a.tls.is_some())
        .map(|(n, _)| n)
        .collect();
    for addr in &p.tls_listen {
        if p.listen.contains(addr) {
            issues.push((
                key!["proxy", "tls_listen"],
                format!(
                    "{addr} is in both `listen` and `tls_listen` of [proxy]: one address speaks \
                     either HTTP or HTTPS; remove it from one of them"
                ),
            ));
        }
    }
    if !p.tls_listen.is_empty()
        && t.certificates.is_empty()
        && acme_apps.is_empty()
        && t.acme.as_ref().is_none_or(|a| a.on_demand.is_none())
    {
        issues.push((
            key!["proxy", "tls_listen"],
            "`tls_listen` is set but there is no certificate: add [[proxy.tls.certificates]] \
             with `cert` and `key` (PEM files), or [proxy.tls.acme] and `tls = \"acme\"` in \
             the apps"
                .into(),
        ));
    }
    if p.tls_listen.is_empty() && !t.certificates.is_empty() {
        issues.push((
            key!["proxy", "tls", "certificates"],
            "certificates are given but nothing serves them: add `tls_listen = [\"0.0.0.0:443\"]` \
             to [proxy]"
                .into(),
        ));
    }
    if p.tls_listen.is_empty() && (!acme_apps.is_empty() || t.acme.is_some()) {
        issues.push((
            key!["proxy", "tls", "acme"],
            "ACME certificates are asked for but nothing serves them: add \
             `tls_listen = [\"0.0.0.0:443\"]` to [proxy]"
                .into(),
        ));
    }
    for (i, c) in t.certificates.iter().enumerate() {
        for (field, path) in [("cert", &c.cert), ("key", &c.key)] {
            if path.as_os_str().is_empty() {
                issues.push((
                    key!["proxy", "tls", "certificates", i, field],
                    format!(
                        "`{field}` of [[proxy.tls.certificates]] #{} is empty: give a PEM file",
                        i + 1
                    ),
                ));
            }
        }
        for h in &c.hosts {
            if let Err(why) = tls_host(h) {
                issues.push((
                    key!["proxy", "tls", "certificates", i, "hosts"],
                    format!("host {h:?} of [[proxy.tls.certificates]] #{}: {why}", i + 1),
                ));
            }
            for app in &acme_apps {
                if raw.apps[*app]
                    .hosts
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(h))
                {
                    issues.push((
                        key!["proxy", "tls", "certificates", i, "hosts"],
                        format!(
                            "host {h:?} has a certificate file here and ACME in [apps.{app}] \
                             (`tls = \"acme\"`): keep one (remove it from `hosts` here, or \
                             `tls` from the app)"
                        ),
                    ));
                }
            }
        }
    }
    if let Some(h) = &t.default_host {
        if let Err(why) = tls_host(h) {
            issues.push((
                key!["proxy", "tls", "default_host"],
                format!("`default_host` {h:?}: {why}"),
            ));
        }
    }
    if t.hsts.is_some_and(|d| d.get().is_zero()) {
        issues.push((
            key!["proxy", "tls", "hsts"],
            "`hsts` is 0: give how long browsers keep to HTTPS, e.g. \"365d\", or remove the key"
                .into(),
        ));
    }
    if let Some(acme) = &t.acme {
        acme_section(acme, issues);
    }
    for app in &acme_apps {
        let a = &raw.apps[*app];
        if t.acme.is_none() {
            issues.push((
                key!["apps", app.as_str(), "tls"],
                format!(
                    "[apps.{app}] asks for `tls = \"acme\"` but there is no [proxy.tls.acme]: add \
                     it (an empty table uses Let's Encrypt with HTTP-01)"
                ),
            ));
        }
        if a.hosts.is_empty() {
            issues.push((
                key!["apps", app.as_str(), "tls"],
                format!(
                    "[apps.{app}] asks for `tls = \"acme\"` but lists no `hosts`: a certificate \
                     names hosts; add them, e.g. hosts = [\"example.com\"]"
                ),
            ));
        }
        for h in a.hosts.iter().filter(|h| h.starts_with("*.")) {
            issues.push((
                key!["apps", app.as_str(), "hosts"],
                format!(
                    "[apps.{app}] host {h:?}: ACME gives no wildcard certificates over HTTP-01 \
                     or TLS-ALPN-01; list the names, use a certificate file for the wildcard, \
                     or [proxy.tls.acme.on_demand]"
                ),
            ));
        }
    }
}

fn acme_section(a: &crate::model::AcmeSection, issues: &mut Vec<Issue>) {
    if !(a.directory.starts_with("https://") || a.directory.starts_with("http://")) {
        issues.push((
            key!["proxy", "tls", "acme", "directory"],
            format!(
                "`directory` {:?} is not a URL: give the CA's ACME directory, e.g. \"{}\"",
                a.directory,
                crate::model::LETS_ENCRYPT
            ),
        ));
    }
    if !matches!(a.challenge.as_str(), "http-01" | "tls-alpn-01") {
        issues.push((
            key!["proxy", "tls", "acme", "challenge"],
            format!(
                "`challenge` {:?}: use \"http-01\" (the CA fetches a file on port 80) or \
                 \"tls-alpn-01\" (the CA connects to port 443)",
                a.challenge
            ),
        ));
    }
    if let Some(e) = &a.email {
        let address = e.strip_prefix("mailto:").unwrap_or(e);
        if !address.contains('@') || address.contains(char::is_whitespace) {
            issues.push((
                key!["proxy", "tls", "acme", "email"],
                format!("`email` {e:?} is not an email address: write e.g. \"ops@example.com\""),
            ));
        }
    }
    if a.retry_min.get().is_zero() || a.retry_min.get() > a.retry_max.get() {
        issues.push((
            key!["proxy", "tls", "acme", "retry_min"],
            "`retry_min` must be above 0 and at most `retry_max`".into(),
        ));
    }
    if let Some(od) = &a.on_demand {
        if od.allow.is_empty() && od.ask.is_none() {
            issues.push((
                key!["proxy", "tls", "acme", "on_demand"],
                "[proxy.tls.acme.on_demand] allows nothing: give `allow = [\"*.example.com\"]` \
                 or `ask = \"http://127.0.0.1:9000/allowed\"` (issuance is never open-ended)"
                    .into(),
            ));
        }
        for h in &od.allow {
            if let Err(why) = tls_host(h) {
                issues.push((
                    key!["proxy", "tls", "acme", "on_demand", "allow"],
                    format!("{h:?}: {why}"),
                ));
            }
        }
    }
}

/// A host name for a certificate: a DNS name, or `*.` and one.
fn tls_host(h: &str) -> Result<(), String> {
    let name = h.strip_prefix("*.").unwrap_or(h);
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(
            "not a DNS name: write e.g. \"example.com\" or \"*.example.com\" (no port, no scheme)"
                .into(),
        )
    }
}

fn access_log(log: &crate::model::AccessLogSection, issues: &mut Vec<Issue>) {
    if log.path.as_os_str().is_empty() {
        issues.push((
            key!["proxy", "access_log", "path"],
            "`path` in [proxy.access_log] is empty: give a file, e.g. \"/var/log/baton/access.log\", \
             or \"-\" for standard output"
                .into(),
        ));
    }
    if !(1..=MAX_ACCESS_LOG_QUEUE).contains(&log.queue) {
        issues.push((
            key!["proxy", "access_log", "queue"],
            format!(
                "`queue` in [proxy.access_log] is {}: use 1 to {MAX_ACCESS_LOG_QUEUE} (the default is 8192)",
                log.queue
            ),
        ));
    }
}

fn compression(c: &crate::model::CompressionSection, issues: &mut Vec<Issue>) {
    const TABLE: &str = "[proxy.compression]";
    if c.algorithms.is_empty() {
        issues.push((
            key!["proxy", "compression", "algorithms"],
            format!(
                "`algorithms` in {TABLE} is empty: give algorithms = [\"br\", \"gzip\"], or \
                 remove {TABLE} to turn compression off"
            ),
        ));
    }
    for (i, name) in c.algorithms.iter().enumerate() {
        let at = key!["proxy", "compression", "algorithms", i];
        if !COMPRESSION_ALGORITHMS.contains(&name.as_str()) {
            let hint = match name.to_ascii_lowercase().as_str() {
                "brotli" => " (brotli is written \"br\")",
                "zstd" | "deflate" | "compress" => " (baton compresses with br and gzip only)",
                _ => "",
            };
            issues.push((
                at,
                format!("{name:?} in `algorithms` in {TABLE} is not an algorithm baton has{hint}: use \"br\" or \"gzip\""),
            ));
        } else if c.algorithms[..i].contains(name) {
            issues.push((
                at,
                format!(
                    "{name:?} is listed twice in `algorithms` in {TABLE}: remove the duplicate"
                ),
            ));
        }
    }
    if let Err(e) = crate::model::parse_size("min_size", &c.min_size) {
        issues.push((
            key!["proxy", "compression", "min_size"],
            format!("`min_size` in {TABLE}: {e}, or a number of bytes such as 1024"),
        ));
    }
    if let Some(types) = &c.types {
        if types.is_empty() {
            issues.push((
                key!["proxy", "compression", "types"],
                format!(
                    "`types` in {TABLE} is empty: list media types such as [\"text/html\", \
                     \"application/json\"], or remove the key for baton's list of text types"
                ),
            ));
        }
        for (i, t) in types.iter().enumerate() {
            if let Err(why) = media_range(t) {
                issues.push((
                    key!["proxy", "compression", "types", i],
                    format!("{t:?} in `types` in {TABLE} {why}"),
                ));
            }
        }
    }
    if !(1..=9).contains(&c.level) {
        issues.push((
            key!["proxy", "compression", "level"],
            format!(
                "`level` in {TABLE} is {}: use 1 (fastest) to 9 (smallest); the default is 5",
                c.level
            ),
        ));
    }
}

/// The algorithms the proxy can compress with (`baton_proxy::Algorithm`).
const COMPRESSION_ALGORITHMS: &[&str] = &["br", "gzip"];

/// `type/subtype` or `type/*`, without parameters; why not otherwise.
fn media_range(text: &str) -> Result<(), String> {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    if text.contains(';') {
        return Err("has parameters: give the media type alone, e.g. \"text/html\"".into());
    }
    match text.trim().split_once('/') {
        Some(("*", _)) => Err(
            "would compress every type, images and archives too: list the types, e.g. \"text/*\""
                .into(),
        ),
        Some((t, "*")) if token(t) => Ok(()),
        Some((t, s)) if token(t) && token(s) => Ok(()),
        _ => Err(
            "is not a media type: write it as type/subtype, e.g. \"text/html\", or \"text/*\""
                .into(),
        ),
    }
}

/// Records waiting for the access log writer take about 300 bytes each.
const MAX_ACCESS_LOG_QUEUE: usize = 1 << 20;

/// More threads than this only adds scheduling overhead on any machine baton targets.
const MAX_WORKERS: usize = 256;

fn admin(raw: &RawConfig, issues: &mut Vec<Issue>) {
    let AdminListen::Tcp(addr) = raw.admin.listen else {
        return;
    };
    if raw.admin.token_file.is_none() {
        let reach = if addr.ip().is_loopback() {
            "any local user"
        } else {
            "anyone on the network"
        };
        issues.push((
            key!["admin", "listen"],
            format!(
                "the admin API on TCP ({addr}) requires `token_file` in [admin], otherwise {reach} \
                 could deploy: add token_file = \"admin.token\" (a file holding a secret), or \
                 listen on a Unix socket: listen = \"unix:.baton/baton.sock\""
            ),
        ));
    }
    if raw.proxy.listen.contains(&addr) {
        issues.push((
            key!["admin", "listen"],
            format!("the admin API and the proxy both listen on {addr}: give them different ports"),
        ));
    }
}

fn dashboard(raw: &RawConfig, issues: &mut Vec<Issue>) {
    let Some(d) = &raw.dashboard else {
        return;
    };
    if raw.admin.token_file.is_none() {
        issues.push((
            key!["dashboard"],
            "the dashboard's login is the admin token: add token_file = \"admin.token\" (a \
             file holding a secret) to [admin]"
                .to_string(),
        ));
    }
    match (d.listen, &raw.admin.listen) {
        (None, AdminListen::Unix(_)) => issues.push((
            key!["dashboard"],
            "the dashboard needs a TCP address a browser can reach, and [admin] listens on a \
             Unix socket: add listen = \"127.0.0.1:9300\" to [dashboard] (or put [admin] \
             listen on TCP)"
                .to_string(),
        )),
        (Some(addr), admin) => {
            if raw.proxy.listen.contains(&addr) || raw.proxy.tls_listen.contains(&addr) {
                issues.push((
                    key!["dashboard", "listen"],
                    format!(
                        "the dashboard and the proxy both listen on {addr}: give them different ports"
                    ),
                ));
            }
            if *admin == AdminListen::Tcp(addr) {
                issues.push((
                    key!["dashboard", "listen"],
                    format!(
                        "the dashboard and the admin API both listen on {addr}: leave out \
                         [dashboard] listen to serve the dashboard on the admin listener"
                    ),
                ));
            }
        }
        (None, AdminListen::Tcp(_)) => {}
    }
    positive(
        key!["dashboard", "session_lifetime"],
        d.session_lifetime,
        issues,
    );
}

fn cluster(raw: &RawConfig, issues: &mut Vec<Issue>) {
    let Some(c) = &raw.cluster else {
        return;
    };
    if c.token_file.is_none() {
        issues.push((
            key!["cluster"],
            "the controller and its proxies prove themselves with a shared secret: add \
             token_file = \"cluster.token\" (a file holding a secret, the same on every node) \
             to [cluster]"
                .to_string(),
        ));
    }
    if c.listen.is_none() && c.controllers.is_empty() {
        issues.push((
            key!["cluster"],
            "[cluster] needs listen = \"0.0.0.0:9400\" (where `baton serve` takes its proxies) \
             or controllers = [\"controller-host:9400\"] (where `baton proxy` finds the \
             controller), or both"
                .to_string(),
        ));
    }
    if let Some(addr) = c.listen {
        let taken = raw.proxy.listen.contains(&addr)
            || raw.proxy.tls_listen.contains(&addr)
            || raw.admin.listen == AdminListen::Tcp(addr)
            || raw.dashboard.as_ref().and_then(|d| d.listen) == Some(addr);
        if taken {
            issues.push((
                key!["cluster", "listen"],
                format!(
                    "{addr} is already taken by the proxy, the admin API or the dashboard: \
                     give [cluster] listen a port of its own"
                ),
            ));
        }
    }
    for (i, target) in c.controllers.iter().enumerate() {
        let port = target
            .rsplit_once(':')
            .map(|(host, port)| (host, port.parse::<u16>()));
        if !matches!(port, Some((host, Ok(p))) if !host.is_empty() && p != 0) {
            issues.push((
                key!["cluster", "controllers", i],
                format!(
                    "{target:?} is not HOST:PORT: write it as \"baton-controller:9400\" or \
                     \"10.0.0.5:9400\" (the controller's [cluster] listen)"
                ),
            ));
        }
    }
    if let Some(name) = &c.state_name {
        let ok = !name.is_empty()
            && name.len() <= 32
            && name
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
            && !name.starts_with('-');
        if !ok {
            issues.push((
                key!["cluster", "state_name"],
                format!(
                    "{name:?} cannot name Swarm services: use 1 to 32 lower-case letters, \
                     digits and dashes, e.g. \"baton\""
                ),
            ));
        }
    }
    if let Some(ttl) = c.lease_ttl {
        if ttl.get() < std::time::Duration::from_secs(2) {
            issues.push((
                key!["cluster", "lease_ttl"],
                format!(
                    "{ttl} is too short for a lease renewed through the swarm's store: use \
                     \"2s\" or more (default \"10s\")"
                ),
            ));
        }
    }
    if c.state == crate::ClusterState::Swarm {
        for (name, app) in &raw.apps {
            if matches!(app.runtime, RuntimeKind::Process | RuntimeKind::Docker) {
                issues.push((
                    key!["apps", name.as_str(), "runtime"],
                    format!(
                        "[cluster] state = \"swarm\" lets a controller on another node take \
                         over, but app {name}'s instances run on this machine (runtime = \
                         \"{}\"), where no other controller can reach them: use runtime = \
                         \"swarm\" (or \"static\"), or state = \"local\"",
                        if app.runtime == RuntimeKind::Process {
                            "process"
                        } else {
                            "docker"
                        }
                    ),
                ));
            }
        }
    }
    if c.state == crate::ClusterState::Swarm && c.listen.is_none() {
        issues.push((
            key!["cluster", "state"],
            "state = \"swarm\" is the controller's (`baton serve`): add listen = \
             \"0.0.0.0:9400\" so that proxies on other nodes follow whichever controller \
             holds the lease, or remove state"
                .to_string(),
        ));
    }
    if let Some(name) = &c.name {
        if name.is_empty() || name.len() > 64 || name.chars().any(|ch| ch.is_control()) {
            issues.push((
                key!["cluster", "name"],
                "a proxy's name is 1 to 64 printable characters, e.g. \"node2\"".to_string(),
            ));
        }
    }
}

/// A duration that must be above zero.
pub(crate) fn positive(key: KeyPath, value: HumanDuration, issues: &mut Vec<Issue>) {
    if value.get().is_zero() {
        let leaf = key.leaf().unwrap_or("value").to_string();
        let table = key.parent().describe_as_container();
        issues.push((
            key,
            format!("`{leaf}` {table} must be longer than zero, e.g. \"1s\""),
        ));
    }
}

/// Two apps may not claim the same host and path prefix.
fn routes(apps: &BTreeMap<String, AppConfig>, issues: &mut Vec<Issue>) {
    let mut claimed: BTreeMap<(Option<String>, String), &str> = BTreeMap::new();
    for (name, app) in apps {
        let path = normalize_path(&app.path);
        let hosts: Vec<Option<String>> = if app.hosts.is_empty() {
            vec![None]
        } else {
            app.hosts
                .iter()
                .map(|h| Some(h.to_ascii_lowercase()))
                .collect()
        };
        for host in hosts {
            let key = (host.clone(), path.clone());
            if let Some(other) = claimed.get(&key) {
                let host = host.map_or("any host".to_string(), |h| format!("host {h}"));
                issues.push((
                    key!["apps", name, "path"],
                    format!(
                        "apps `{other}` and `{name}` both route {host} with path {path}: \
                         give one of them different `hosts` or a different `path`"
                    ),
                ));
            } else {
                claimed.insert(key, name);
            }
        }
    }
}

/// `/api/` and `/api` are the same prefix.
fn normalize_path(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".into()
    } else {
        trimmed.into()
    }
}
