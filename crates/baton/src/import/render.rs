//! Drafts as `baton.toml` text, with comments saying where each value came from.

use super::service::{Draft, Rolling, Swarm};
use super::text::{key, quote};
use super::Report;

/// A comment on one line, whatever the compose text held.
fn comment(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// The whole file: a header naming what was not translated, `[proxy]` when a draft
/// carries a listen address, then each app.
pub fn render(apps: &[(&Draft, &Report)], command_line: &str) -> String {
    let mut t = String::new();
    t.push_str(&format!("# Written by `{}`.\n", comment(command_line)));
    for (d, report) in apps {
        if report.untranslated.is_empty() {
            continue;
        }
        let keys: Vec<&str> = report.untranslated.iter().map(|u| u.key.as_str()).collect();
        let of = if apps.len() == 1 {
            String::new()
        } else {
            format!(" in {}", d.app)
        };
        t.push_str(&format!(
            "# Not translated{of} (the import printed why): {}.\n",
            comment(&keys.join(", "))
        ));
    }
    match apps {
        [(d, _)] => t.push_str(&format!(
            "# To add this app to an existing baton.toml, copy its [apps.{}] tables.\n",
            d.app
        )),
        _ => t.push_str(
            "# To add these apps to an existing baton.toml, copy their [apps.NAME] tables.\n",
        ),
    }
    if let Some((listen, from)) = apps.iter().find_map(|(d, _)| d.listen.as_ref()) {
        t.push_str(&format!(
            "\n[proxy]\nlisten = [{}]   # compose published {}\n",
            quote(listen),
            comment(from)
        ));
    }
    for (d, _) in apps {
        app(&mut t, d);
    }
    t
}

fn app(t: &mut String, d: &Draft) {
    let a = key(&d.app);
    t.push_str(&format!("\n[apps.{a}]\nruntime = \"{}\"\n", d.runtime));
    t.push_str(&format!("image = {}\n", quote(&d.image)));
    if let Some(p) = d.container_port {
        t.push_str(&format!("container_port = {p}\n"));
    }
    let strategy_note = if d.strategy == "blue_green" {
        "the blue/green pair of services"
    } else {
        "or blue_green, canary, recreate, ab_test"
    };
    t.push_str(&format!(
        "strategy = \"{}\"   # {strategy_note}\n",
        d.strategy
    ));
    if let Some(r) = d.replicas {
        t.push_str(&format!("replicas = {r}\n"));
    }
    if let Some((hosts, why)) = &d.hosts {
        let h: Vec<String> = hosts.iter().map(|h| quote(h)).collect();
        t.push_str(&format!(
            "hosts = [{}]   # {}\n",
            h.join(", "),
            comment(why)
        ));
    }
    if let Some((n, why)) = &d.network {
        t.push_str(&format!("network = {}   # {}\n", quote(n), comment(why)));
    }
    if let Some(c) = &d.command {
        t.push_str(&format!("command = {}\n", quote(c)));
    }
    if !d.volumes.is_empty() {
        let v: Vec<String> = d.volumes.iter().map(|v| quote(v)).collect();
        t.push_str(&format!("volumes = [{}]\n", v.join(", ")));
    }
    if let Some(m) = &d.memory {
        t.push_str(&format!("memory = {}\n", quote(m)));
    }
    if let Some(c) = d.cpus {
        t.push_str(&format!("cpus = {c:?}\n"));
    }
    if let Some(p) = d.pull {
        t.push_str(&format!("pull = \"{p}\"\n"));
    }
    if let Some(s) = &d.stop_timeout {
        t.push_str(&format!(
            "stop_timeout = {}   # compose stop_grace_period\n",
            quote(s)
        ));
    }
    if !d.env.is_empty() {
        t.push_str(&format!("\n[apps.{a}.env]\n"));
        for (k, v) in &d.env {
            t.push_str(&format!("{} = {}\n", key(k), quote(v)));
        }
    }
    swarm(t, &a, &d.swarm);
    if let Some(r) = &d.rolling {
        rolling(t, &a, r);
    }
    let h = &d.health;
    t.push_str(&format!("\n[apps.{a}.health]\n"));
    match &h.source {
        Some(src) => t.push_str(&format!("# from the healthcheck: {}\n", comment(src))),
        None => t.push_str(
            "# no usable healthcheck in the file: set the path of the app's health URL\n",
        ),
    }
    if h.tcp {
        t.push_str("kind = \"tcp\"\n");
    } else {
        t.push_str(&format!(
            "path = {}\n",
            quote(h.path.as_deref().unwrap_or("/"))
        ));
    }
    if let Some(i) = &h.interval {
        t.push_str(&format!("interval = {}\n", quote(i)));
    }
    if let Some(i) = &h.timeout {
        t.push_str(&format!("timeout = {}\n", quote(i)));
    }
    if let Some(u) = h.unhealthy {
        t.push_str(&format!("unhealthy = {u}   # compose retries\n"));
    }
    if let Some(s) = &h.startup_timeout {
        t.push_str(&format!(
            "startup_timeout = {}   # start_period + interval x retries\n",
            quote(s)
        ));
    }
}

fn swarm(t: &mut String, a: &str, s: &Swarm) {
    let list = |items: &[String]| {
        let q: Vec<String> = items.iter().map(|i| quote(i)).collect();
        format!("[{}]", q.join(", "))
    };
    let empty = s.constraints.is_empty()
        && s.spread.is_none()
        && s.secrets.is_empty()
        && s.configs.is_empty();
    if empty {
        return;
    }
    t.push_str(&format!("\n[apps.{a}.swarm]\n"));
    if !s.constraints.is_empty() {
        t.push_str(&format!("constraints = {}\n", list(&s.constraints)));
    }
    if let Some(spread) = &s.spread {
        t.push_str(&format!("spread = {}\n", quote(spread)));
    }
    if !s.secrets.is_empty() {
        t.push_str(&format!(
            "secrets = {}   # at /run/secrets/NAME\n",
            list(&s.secrets)
        ));
    }
    if !s.configs.is_empty() {
        t.push_str(&format!("configs = {}   # at /NAME\n", list(&s.configs)));
    }
}

fn rolling(t: &mut String, a: &str, r: &Rolling) {
    t.push_str(&format!(
        "\n[apps.{a}.rolling]\n# from {}\n",
        comment(&r.source)
    ));
    t.push_str(&format!("max_surge = {}\n", r.max_surge));
    t.push_str(&format!("max_unavailable = {}\n", r.max_unavailable));
    if let Some(p) = &r.batch_pause {
        t.push_str(&format!("batch_pause = {}\n", quote(p)));
    }
}
