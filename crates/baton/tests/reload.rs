//! `baton reload` under load: 20 reloads that add an app, remove it, change a health
//! check and add (then remove) a listener, while keep-alive, new-connection and h2
//! clients that never retry hit the app that stays. Nothing they send may fail. An added
//! app serves after its first deploy; a removed app's processes really exit and its host
//! gets the proxy's "no route" answer; a new listener accepts and a removed one refuses.
//! A broken file exits 2 with file:line and changes nothing, and so does an address that
//! cannot be bound; `--dry-run` changes nothing; SIGHUP reloads too; a proxy limit changes
//! live; a change to an app whose rollout is in progress is refused, naming the
//! deployment and the fix, and so is a runtime change for an app with instances.
#![allow(clippy::unwrap_used)]

mod common;

use baton_loadgen::{Load, LoadSpec, Profile};
use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// An app of the bundled sample app on `host`, with its own port block.
fn app(name: &str, host: &str, interval: &str) -> String {
    format!(
        r#"[apps.{name}]
command = "'{BATON}' sample-app --port {{port}} --version {{version}}"
ports = "{ports}"
hosts = ["{host}"]
replicas = 2
drain_timeout = "3s"
stop_timeout = "3s"

[apps.{name}.health]
path = "/health"
interval = "{interval}"
startup_timeout = "10s"
unhealthy = 2

[apps.{name}.canary]
steps = [{{ weight = 50 }}, {{ pause = "10m" }}]

"#,
        ports = port_range(),
    )
}

/// The whole file: `listen` addresses, then the apps.
fn file(b: &Baton, listen: &[SocketAddr], apps: &str) -> String {
    file_with(b, listen, "", apps)
}

/// `file` with more `[proxy]` keys (one line).
fn file_with(b: &Baton, listen: &[SocketAddr], proxy: &str, apps: &str) -> String {
    let listen: Vec<String> = listen.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "[proxy]\nlisten = [{}]{proxy}\n\n[admin]\nlisten = \"unix:{d}/baton.sock\"\n\n[store]\npath = \"{d}/state\"\n\n{apps}",
        listen.join(", "),
        d = b.dir.path().display()
    )
}

/// A POST with a `len`-byte body; the status code.
fn post(addr: SocketAddr, host: &str, len: usize) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST /echo HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    // The proxy may answer before reading the body; a refused write is fine.
    let _ = s.write_all(&vec![b'x'; len]);
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn write(b: &Baton, text: &str) {
    std::fs::write(&b.config, text).unwrap();
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// One HTTP/1.1 GET with `Host: host`; the status code and the body.
fn get(addr: SocketAddr, host: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

/// Live processes of this baton's app `app` (by their environment).
fn app_pids(b: &Baton, app: &str) -> Vec<i32> {
    let owner = format!("BATON_OWNER={}", b.store_path());
    pids_with_env(&[&owner, &format!("BATON_APP={app}")])
}

/// Polls `what` until it holds (bounded; no timing is asserted).
fn wait_for(what: &str, b: &Baton, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            tail(&b.serve_log(), 60)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `baton ARGS --admin SOCKET`: works whatever the config file holds.
fn admin_cli(b: &Baton, args: &[&str]) -> Value {
    let admin = format!("unix:{}/baton.sock", b.dir.path().display());
    let mut all = args.to_vec();
    all.extend(["--json", "--admin", &admin]);
    serde_json::from_str(&b.cli_ok(&all, 0)).unwrap()
}

fn apps(b: &Baton) -> Vec<String> {
    let all = admin_cli(b, &["status"]);
    all.as_array()
        .unwrap()
        .iter()
        .map(|a| a["app"].as_str().unwrap().to_string())
        .collect()
}

fn reload(b: &Baton) -> Value {
    serde_json::from_str(&b.cli_ok(&["reload", "--json"], 0)).unwrap()
}

fn load_on(rt: &tokio::runtime::Runtime, addr: SocketAddr) -> Load {
    let spec = |profile, clients| LoadSpec {
        clients,
        host: "web.test".into(),
        gap: Duration::from_millis(4),
        ..LoadSpec::with_profile(addr, profile)
    };
    rt.block_on(async {
        Load::start_mixed(vec![
            spec(Profile::KeepAlive, 2),
            spec(Profile::NewConnection, 2),
            spec(Profile::Http2, 1),
        ])
    })
}

#[test]
fn twenty_reloads_under_load_fail_no_request() {
    let web_fast = app("web", "web.test", "100ms");
    let web_slow = web_fast.replace("interval = \"100ms\"", "interval = \"150ms\"");
    let shop = app("shop", "shop.test", "100ms");
    let b = Baton::start(&web_fast);
    let main = b.proxy;
    write(&b, &file(&b, &[main], &web_fast));
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let web_pids = app_pids(&b, "web");
    assert_eq!(web_pids.len(), 2, "{web_pids:?}");
    let rt = rt();
    let load = load_on(&rt, main);
    std::thread::sleep(Duration::from_millis(300));

    let extra = free_addr();
    let mut web = web_fast.clone();
    for i in 0..20 {
        let cycle = i / 4;
        match i % 4 {
            // Add shop: routed at once, served after its first deploy.
            0 => {
                write(&b, &file(&b, &[main], &format!("{web}{shop}")));
                let r = reload(&b);
                assert_eq!(
                    r["diff"]["apps_added"],
                    serde_json::json!(["shop"]),
                    "{r:#}"
                );
                assert_eq!(r["applied"], true);
                let (code, _) = get(main, "shop.test");
                assert_eq!(code, 503, "shop has no instance before its first deploy");
                let v = format!("s{cycle}");
                b.cli_ok(&["deploy", "shop", &v], 0);
                let (code, text) = get(main, "shop.test");
                assert_eq!(code, 200, "{text}");
                assert!(text.contains(&v), "{text}");
                // Added back, shop came back empty (no stale instance) with its history
                // kept and its deployment ids going on.
                let st: Value =
                    serde_json::from_str(&b.cli_ok(&["status", "shop", "--json"], 0)).unwrap();
                let versions: Vec<&str> = st["instances"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i["version"].as_str().unwrap())
                    .collect();
                assert_eq!(versions, [v.as_str(), v.as_str()], "{st:#}");
                assert_eq!(st["previous_version"], Value::Null, "{st:#}");
                let h: Value =
                    serde_json::from_str(&b.cli_ok(&["history", "shop", "--json"], 0)).unwrap();
                assert_eq!(h.as_array().unwrap().len(), cycle + 1, "{h:#}");
                let mut ids: Vec<&str> = h
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["id"].as_str().unwrap())
                    .collect();
                ids.sort();
                ids.dedup();
                assert_eq!(ids.len(), cycle + 1, "ids are never reused: {h:#}");
            }
            // Change web's health check and add a listener.
            1 => {
                web = if web == web_fast {
                    web_slow.clone()
                } else {
                    web_fast.clone()
                };
                write(&b, &file(&b, &[main, extra], &format!("{web}{shop}")));
                let r = reload(&b);
                let changed = &r["diff"]["apps_changed"][0];
                assert_eq!(changed["app"], "web", "{r:#}");
                assert_eq!(changed["keys"][0]["key"], "health.interval", "{r:#}");
                assert_eq!(changed["keys"][0]["takes"], "next_probe", "{r:#}");
                assert_eq!(r["diff"]["listeners_added"][0], extra.to_string(), "{r:#}");
                let (code, text) = get(extra, "web.test");
                assert_eq!(code, 200, "the new listener serves: {text}");
            }
            // Remove the listener and shop.
            2 => {
                write(&b, &file(&b, &[main], &web));
                let r = reload(&b);
                assert_eq!(
                    r["diff"]["apps_removed"],
                    serde_json::json!(["shop"]),
                    "{r:#}"
                );
                assert_eq!(r["diff"]["listeners_removed"][0], extra.to_string());
                assert_eq!(r["stopped"]["shop"].as_array().unwrap().len(), 2, "{r:#}");
                wait_for("shop's processes to exit", &b, || {
                    app_pids(&b, "shop").is_empty()
                });
                wait_for("the removed listener to refuse", &b, || {
                    TcpStream::connect(extra).is_err()
                });
                let (code, text) = get(main, "shop.test");
                let (none, _) = get(main, "nothing.test");
                assert_eq!(
                    code, none,
                    "a removed app's host is like any unknown one: {text}"
                );
                assert_eq!(code, 404, "{text}");
            }
            // Change the health check again (the file with only web).
            _ => {
                web = if web == web_fast {
                    web_slow.clone()
                } else {
                    web_fast.clone()
                };
                write(&b, &file(&b, &[main], &web));
                let r = reload(&b);
                assert_eq!(r["diff"]["apps_changed"][0]["app"], "web", "{r:#}");
                assert!(r["diff"]["apps_added"].as_array().unwrap().is_empty());
            }
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let report = rt.block_on(load.stop());
    assert_eq!(
        report.failed,
        0,
        "failed requests on the app that stayed: {report:?}\n{}",
        tail(&b.serve_log(), 60)
    );
    for profile in ["keep-alive", "new-connection", "http2"] {
        let ok = report.by_profile.get(profile).map_or(0, |s| s.ok);
        assert!(ok > 0, "no {profile} request got through: {report:?}");
    }
    // The app that stayed kept its instances throughout.
    let mut now = app_pids(&b, "web");
    now.sort();
    let mut before = web_pids;
    before.sort();
    assert_eq!(now, before, "web's instances were not restarted");
}

#[test]
fn a_broken_file_a_busy_address_or_a_dry_run_change_nothing_and_sighup_reloads() {
    let web = app("web", "web.test", "100ms");
    let b = Baton::start(&web);
    let main = b.proxy;
    write(&b, &file(&b, &[main], &web));
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let before = b.cli_ok(&["status", "web", "--json"], 0);
    let before: Value = serde_json::from_str(&before).unwrap();
    let admin = format!("unix:{}/baton.sock", b.dir.path().display());
    let extra = free_addr();

    // A broken file: the server refuses it with the file:line `baton validate` gives, and
    // the CLI exits 2. (`--admin`, so that the CLI does not read the file itself.)
    let broken = file(
        &b,
        &[main, extra],
        &format!("{web}{}", app("shop", "shop.test", "100ms")),
    )
    .replace("replicas = 2\n", "replicas = \"two\"\n");
    write(&b, &broken);
    let validate = b.cli(&["validate"]);
    assert_eq!(validate.status.code(), Some(2));
    let expected = String::from_utf8_lossy(&validate.stderr).into_owned();
    let line = format!("{}:", b.config.display());
    assert!(expected.contains(&line), "{expected}");
    let out = b.cli(&["reload", "--admin", &admin]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr, expected, "reload says what validate says");
    let at = format!("{}:14:", b.config.display());
    assert!(
        stderr.contains(&at),
        "file:line of web's `replicas`: {stderr}"
    );
    // Without --admin the CLI reads the same file and refuses it the same way.
    let out = b.cli(&["reload"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    // SIGHUP with the broken file: logged, nothing changed.
    let refusals = |b: &Baton| b.serve_log().matches("reload refused").count();
    let before_hup = refusals(&b);
    hup(&b);
    wait_for("the refused SIGHUP reload in the log", &b, || {
        refusals(&b) > before_hup
    });
    assert_unchanged(&b, &before, main, extra);

    // A listener that cannot be bound fails the reload with nothing changed, the other
    // new listener and the new app included.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = busy.local_addr().unwrap();
    let good_apps = format!("{web}{}", app("shop", "shop.test", "100ms"));
    write(&b, &file(&b, &[main, extra, taken], &good_apps));
    let out = b.cli(&["reload"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {taken}"))
            && stderr.contains("nothing was changed"),
        "{stderr}"
    );
    assert_unchanged(&b, &before, main, extra);
    drop(busy);

    // A dry run shows the difference and changes nothing.
    write(&b, &file(&b, &[main, extra], &good_apps));
    let text = b.cli_ok(&["reload", "--dry-run"], 0);
    assert!(text.contains("+ app shop"), "{text}");
    assert!(text.contains(&format!("+ listen {extra}")), "{text}");
    assert!(text.contains("dry run: nothing was changed"), "{text}");
    assert_unchanged(&b, &before, main, extra);

    // SIGHUP applies it.
    hup(&b);
    wait_for("shop after SIGHUP", &b, || {
        apps(&b).contains(&"shop".to_string())
    });
    wait_for("the new listener after SIGHUP", &b, || {
        TcpStream::connect(extra).is_ok()
    });
    let (code, text) = get(extra, "web.test");
    assert_eq!(code, 200, "{text}");

    // A proxy limit changes live: a body the old setting let through gets 413.
    assert_eq!(post(main, "web.test", 4096), 200);
    write(
        &b,
        &file_with(
            &b,
            &[main, extra],
            "\nmax_request_body = \"1KiB\"",
            &good_apps,
        ),
    );
    let r = reload(&b);
    assert_eq!(r["diff"]["proxy"][0]["key"], "max_request_body", "{r:#}");
    assert_eq!(r["diff"]["proxy"][0]["takes"], "now", "{r:#}");
    assert_eq!(post(main, "web.test", 4096), 413);
    assert_eq!(post(main, "web.test", 512), 200);
}

#[test]
fn a_change_mid_rollout_or_of_a_running_apps_runtime_is_refused_with_the_fix() {
    // Two apps from the start: each is routed.
    let web = format!(
        "{}{}",
        app("web", "web.test", "100ms"),
        app("api", "api.test", "100ms")
    );
    let b = Baton::start(&web);
    let main = b.proxy;
    write(&b, &file(&b, &[main], &web));
    b.cli_ok(&["deploy", "web", "v1"], 0);
    b.cli_ok(&["deploy", "api", "a1"], 0);
    for (host, version) in [("web.test", "v1"), ("api.test", "a1")] {
        let (code, text) = get(main, host);
        assert_eq!(code, 200, "{host}: {text}");
        assert!(text.contains(version), "{text}");
    }
    // A canary that waits at 50% for ten minutes.
    b.cli_ok(
        &["deploy", "web", "v2", "--strategy", "canary", "--detach"],
        0,
    );
    b.wait_status("the canary at its pause", |st| {
        st["deployment"]["state"] == "running" && st["weights"]["v2"] == 50
    });
    let changed = web.replace("interval = \"100ms\"", "interval = \"200ms\"");
    let extra = free_addr();
    write(
        &b,
        &file(
            &b,
            &[main, extra],
            &format!("{changed}{}", app("shop", "shop.test", "100ms")),
        ),
    );
    let out = b.cli(&["reload"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("web has a rollout in progress (web-2: v2 by canary)")
            && stderr.contains("`baton abort web`")
            && stderr.contains("Nothing was changed"),
        "{stderr}"
    );
    // Nothing changed: no shop, no listener, the canary still at its pause.
    assert_eq!(apps(&b), ["api", "web"]);
    assert!(
        TcpStream::connect(extra).is_err(),
        "the new listener was not opened"
    );
    assert_eq!(b.status()["deployment"]["state"], "running");
    // The fix works: abort, then reload.
    b.cli_ok(&["abort", "web"], 0);
    b.wait_status("the abort", finished);
    let r = reload(&b);
    assert_eq!(r["applied"], true, "{r:#}");
    assert_eq!(apps(&b), ["api", "shop", "web"]);

    // Moving an app with running instances to another runtime is refused too.
    let text = std::fs::read_to_string(&b.config).unwrap();
    let start = text.find("[apps.api]").unwrap();
    let end = start + text[start..].find("\nports").unwrap();
    let moved = format!(
        "{}[apps.api]\nruntime = \"static\"{}",
        &text[..start],
        &text[end..]
    );
    write(&b, &moved);
    let out = b.cli(&["reload"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("api changes runtime from process to static while 2 instance(s) run")
            && stderr.contains("Nothing was changed"),
        "{stderr}"
    );
    let (code, text) = get(main, "api.test");
    assert_eq!(code, 200, "api still serves: {text}");
}

fn hup(b: &Baton) {
    let pid = b.server_pid().unwrap();
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// The apps, web's status and the routing are as `before`; `extra` is not listening.
fn assert_unchanged(b: &Baton, before: &Value, main: SocketAddr, extra: SocketAddr) {
    assert_eq!(apps(b), ["web"]);
    let st = admin_cli(b, &["status", "web"]);
    for key in ["stable_version", "weights", "instances"] {
        let strip = |v: &Value| {
            let mut v = v.clone();
            if let Some(list) = v.as_array_mut() {
                for i in list {
                    i["in_flight"] = Value::Null;
                }
            }
            v
        };
        assert_eq!(strip(&st[key]), strip(&before[key]), "{key} changed");
    }
    assert!(
        TcpStream::connect(extra).is_err(),
        "{extra} must not listen"
    );
    let (code, text) = get(main, "web.test");
    assert_eq!(code, 200, "{text}");
    let (code, _) = get(main, "shop.test");
    assert_eq!(code, 404);
}
