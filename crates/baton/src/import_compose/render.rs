//! The draft as `baton.toml` text, with comments saying where each value came from.

use super::service::Draft;
use super::text::{key, quote};
use super::Report;

/// A comment on one line, whatever the compose text held.
fn comment(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

pub fn render(d: &Draft, command_line: &str, report: &Report) -> String {
    let mut t = String::new();
    t.push_str(&format!("# Written by `{}`.\n", comment(command_line)));
    if !report.untranslated.is_empty() {
        let keys: Vec<&str> = report.untranslated.iter().map(|u| u.key.as_str()).collect();
        t.push_str(&format!(
            "# Not translated (the import printed why): {}.\n",
            comment(&keys.join(", "))
        ));
    }
    t.push_str(&format!(
        "# To add this app to an existing baton.toml, copy its [apps.{}] tables.\n",
        d.app
    ));
    if let Some((listen, from)) = &d.listen {
        t.push_str(&format!(
            "\n[proxy]\nlisten = [{}]   # compose published {}\n",
            quote(listen),
            comment(from)
        ));
    }
    let a = key(&d.app);
    t.push_str(&format!("\n[apps.{a}]\nruntime = \"docker\"\n"));
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
    let h = &d.health;
    t.push_str(&format!("\n[apps.{a}.health]\n"));
    match &h.source {
        Some(src) => t.push_str(&format!(
            "# from the compose healthcheck: {}\n",
            comment(src)
        )),
        None => t.push_str(
            "# compose had no usable healthcheck: set the path of the app's health URL\n",
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
    t
}
