//! Automatic certificates end to end: the real `baton serve` against a real ACME CA
//! (pebble, with pebble-challtestsrv resolving every name to 127.0.0.1), pebble
//! validating on baton's own listeners. A certificate issued by HTTP-01 and one by
//! TLS-ALPN-01, served to a real TLS client (curl trusting only pebble's root) for the
//! right SNI; renewal under HTTPS load with no failed request; a restart with the CA
//! down serving the stored certificate and saying what is wrong; on-demand issuance
//! refused for a name the allow rule rejects (no order reaches the CA) and done for one
//! it allows; a directory that is down at start does not stop baton from serving; a
//! `baton reload` that adds `[proxy.tls.acme]` starts ACME, and says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../../baton-acme/tests/env/mod.rs"]
mod env;
#[path = "common/prerequisite.rs"]
mod prerequisite;

use baton_loadgen::{Load, LoadSpec, Profile, Tls};
use common::*;
use env::{Pebble, PebbleOptions};
use prerequisite::{run, tests, Test, PEBBLE};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    run(tests![
        http01_issues_renews_under_load_and_a_restart_with_the_ca_down_serves_the_stored_certificate[&PEBBLE],
        tls_alpn01_issues_and_on_demand_follows_the_allow_rule[&PEBBLE],
        a_directory_that_is_down_at_start_leaves_baton_serving_and_says_why[&PEBBLE],
        a_reload_that_adds_acme_starts_it_and_the_certificate_is_served[&PEBBLE],
    ]);
}

fn rt_block<F: std::future::Future>(f: F) -> F::Output {
    rt().block_on(f)
}

/// `[proxy]` keys: the TLS listener and `[proxy.tls.acme]` for this pebble.
fn acme_proxy(pebble: &Pebble, tls_port: u16, challenge: &str, more: &str) -> String {
    format!(
        "tls_listen = [\"127.0.0.1:{tls_port}\"]\n\n[proxy.tls.acme]\ndirectory = \"{}\"\nemail = \"ops@baton.test\"\nchallenge = \"{challenge}\"\nca_roots = \"{}\"\nretry_min = \"1s\"\nretry_max = \"3s\"\n{more}",
        pebble.directory,
        pebble.tls_ca.display()
    )
}

/// The app of the other e2e tests, with `hosts` and `tls = "acme"`.
fn acme_app(hosts: &[&str]) -> String {
    let hosts: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
    app_config("rolling", 1, "").replacen(
        "replicas = 1\n",
        &format!(
            "replicas = 1\nhosts = [{}]\ntls = \"acme\"\n",
            hosts.join(", ")
        ),
        1,
    )
}

/// pebble's issuing root, written to `dir/pebble-root.pem` (the only root curl trusts).
fn write_root(pebble: &Pebble, dir: &Path) -> std::path::PathBuf {
    let pem = rt_block(pebble.root_pem());
    let path = dir.join("pebble-root.pem");
    std::fs::write(&path, pem).unwrap();
    path
}

/// `curl https://HOST:PORT/` trusting only `root`; `Ok(status)` or the error text.
fn curl_https(root: &Path, host: &str, port: u16) -> Result<String, String> {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg("--cacert")
        .arg(root)
        .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
        .arg(format!("https://{host}:{port}/"))
        .output()
        .expect("curl cannot be started; .ci/run installs it");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

/// Waits (bounded) until curl gets 200 from `host` with a certificate from pebble.
fn wait_served(b: &Baton, pebble: &Pebble, root: &Path, host: &str, port: u16) {
    let deadline = Instant::now() + env::WAIT;
    loop {
        match curl_https(root, host, port) {
            Ok(code) if code == "200" => return,
            other => assert!(
                Instant::now() < deadline,
                "{host} not served with a certificate from pebble: {other:?}\n{}\n{}",
                tail(&b.serve_log(), 30),
                pebble.logs()
            ),
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn http01_issues_renews_under_load_and_a_restart_with_the_ca_down_serves_the_stored_certificate() {
    let (http_port, tls_port) = (free_port(), free_port());
    // Certificates of one hour, renewed when less than 3595 s remain: due 5 s after
    // each issuance, so renewals happen while the load runs.
    let mut pebble = rt_block(Pebble::start(
        http_port,
        tls_port,
        PebbleOptions {
            validity_secs: Some(3600),
        },
    ));
    let proxy = acme_proxy(&pebble, tls_port, "http-01", "renew_before = \"3595s\"\n");
    let mut b = Baton::start_on(http_port, |_| proxy, &acme_app(&["web.baton.test"]));
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let root = write_root(&pebble, b.dir.path());
    wait_served(&b, &pebble, &root, "web.baton.test", tls_port);
    let first = served_serial(tls_port, "web.baton.test");

    // HTTPS load (HTTP/1.1 keep-alive, new connections, h2 by ALPN) across renewals.
    let tls = Tls::new(&root, "web.baton.test").unwrap();
    let addr = format!("127.0.0.1:{tls_port}").parse().unwrap();
    let spec = |profile| LoadSpec {
        clients: 2,
        host: "web.baton.test".into(),
        gap: Duration::from_millis(5),
        tls: Some(tls.clone()),
        ..LoadSpec::with_profile(addr, profile)
    };
    let rt = rt();
    let load = rt.block_on(async {
        Load::start_mixed(vec![
            spec(Profile::KeepAlive),
            spec(Profile::NewConnection),
            spec(Profile::Http2),
        ])
    });
    let mut serials = vec![first.clone()];
    let deadline = Instant::now() + env::WAIT;
    while serials.len() < 3 {
        let now = served_serial(tls_port, "web.baton.test");
        if serials.last() != Some(&now) {
            serials.push(now);
        }
        assert!(
            Instant::now() < deadline,
            "no two renewals: {serials:?}\n{}",
            tail(&b.serve_log(), 30)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let report = rt.block_on(load.stop());
    assert_eq!(report.failed, 0, "failed during renewals: {report:?}");
    assert!(report.ok > 100, "{report:?}");
    assert!(b.serve_log().contains("ACME certificate issued"));

    // The CA goes down and baton restarts: the stored certificate is served, and the
    // log says why no renewal happens, naming the host and the fix.
    pebble.kill_ca();
    b.kill9();
    b.serve();
    let stored = served_serial(tls_port, "web.baton.test");
    assert!(
        serials.contains(&stored),
        "{stored} is not one of {serials:?}"
    );
    assert_eq!(
        curl_https(&root, "web.baton.test", tls_port).unwrap(),
        "200"
    );
    let deadline = Instant::now() + env::WAIT;
    loop {
        let log = b.serve_log();
        let restarted = log.rsplit("baton is serving").next().unwrap_or("");
        if restarted.contains("unreachable") && restarted.contains("web.baton.test") {
            assert!(
                restarted.contains("stored certificates keep being served"),
                "{restarted}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no error about the CA: {}",
            tail(&log, 30)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(
        curl_https(&root, "web.baton.test", tls_port).unwrap(),
        "200"
    );
}

fn tls_alpn01_issues_and_on_demand_follows_the_allow_rule() {
    let (http_port, tls_port) = (free_port(), free_port());
    // pebble would try HTTP-01 on a port where nothing listens: only TLS-ALPN-01, on
    // baton's TLS listener, can succeed.
    let pebble = rt_block(Pebble::start(
        free_port(),
        tls_port,
        PebbleOptions::default(),
    ));
    let proxy = acme_proxy(
        &pebble,
        tls_port,
        "tls-alpn-01",
        "\n[proxy.tls.acme.on_demand]\nallow = [\"*.shops.baton.test\"]\n",
    );
    // An app for every other host serves the on-demand names.
    let apps = format!(
        "{}\n[apps.shops]\ncommand = \"'{BATON}' sample-app --port {{port}} --version {{version}}\"\nports = \"{}\"\n[apps.shops.health]\npath = \"/health\"\ninterval = \"100ms\"\n",
        acme_app(&["api.baton.test"]),
        port_range()
    );
    let b = Baton::start_on(http_port, |_| proxy, &apps);
    b.cli_ok(&["deploy", "web", "v1"], 0);
    b.cli_ok(&["deploy", "shops", "v1"], 0);
    let root = write_root(&pebble, b.dir.path());
    wait_served(&b, &pebble, &root, "api.baton.test", tls_port);

    // A name the allow rule rejects: the handshake fails and the CA never hears of it.
    let refused = curl_https(&root, "evil.baton.test", tls_port);
    assert!(refused.is_err(), "{refused:?}");
    assert!(
        !pebble.logs().contains("evil.baton.test"),
        "an order for a refused name reached the CA"
    );
    // A name it allows gets a certificate at its first handshake.
    wait_served(&b, &pebble, &root, "a.shops.baton.test", tls_port);
}

fn a_directory_that_is_down_at_start_leaves_baton_serving_and_says_why() {
    let (http_port, tls_port) = (free_port(), free_port());
    let mut pebble = rt_block(Pebble::start(http_port, tls_port, PebbleOptions::default()));
    pebble.kill_ca();
    let proxy = acme_proxy(&pebble, tls_port, "http-01", "");
    let b = Baton::start_on(http_port, |_| proxy, &acme_app(&["down.baton.test"]));
    b.cli_ok(&["deploy", "web", "v1"], 0);
    // Plain HTTP keeps working (the redirect answers), and the log names the host,
    // the directory and the fix.
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["-H", "Host: down.baton.test"])
        .arg(format!("http://127.0.0.1:{http_port}/"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "308");
    let deadline = Instant::now() + env::WAIT;
    loop {
        let log = b.serve_log();
        if log.contains("down.baton.test")
            && log.contains(&pebble.directory)
            && log.contains("Fix:")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no clear error: {}",
            tail(&log, 30)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn a_reload_that_adds_acme_starts_it_and_the_certificate_is_served() {
    let (http_port, tls_port) = (free_port(), free_port());
    let pebble = rt_block(Pebble::start(http_port, tls_port, PebbleOptions::default()));
    // Serving HTTPS from a file at first (another name), no ACME.
    let b = Baton::start_on(
        http_port,
        |dir| {
            TestCa::new(dir).leaf(dir, "files", &["files.baton.test"], false);
            format!(
                "tls_listen = [\"127.0.0.1:{tls_port}\"]\n\n[[proxy.tls.certificates]]\ncert = \"{}\"\nkey = \"{}\"\n",
                dir.join("files.pem").display(),
                dir.join("files.key").display()
            )
        },
        &acme_app(&["web.baton.test"]).replace("tls = \"acme\"\n", ""),
    );
    b.cli_ok(&["deploy", "web", "v1"], 0);
    // The operator adds [proxy.tls.acme] and `tls = "acme"`, and reloads.
    let text = std::fs::read_to_string(&b.config).unwrap();
    let acme = format!(
        "[proxy.tls.acme]\ndirectory = \"{}\"\nemail = \"ops@baton.test\"\nca_roots = \"{}\"\nretry_min = \"1s\"\nretry_max = \"3s\"\n\n[admin]",
        pebble.directory,
        pebble.tls_ca.display()
    );
    let text = text.replacen("[admin]", &acme, 1).replacen(
        "hosts = [\"web.baton.test\"]\n",
        "hosts = [\"web.baton.test\"]\ntls = \"acme\"\n",
        1,
    );
    std::fs::write(&b.config, text).unwrap();
    let out = b.cli_ok(&["reload"], 0);
    assert!(
        out.contains("+ proxy [proxy.tls.acme] (ACME starts now"),
        "{out}"
    );
    assert!(
        out.contains("tls.acme.renew_before: - → \"30d\" (at once)"),
        "{out}"
    );
    assert!(!out.contains("NOT APPLIED"), "{out}");
    assert!(out.trim_end().ends_with("applied"), "{out}");
    let root = write_root(&pebble, b.dir.path());
    wait_served(&b, &pebble, &root, "web.baton.test", tls_port);
    assert!(
        b.serve_log().contains("ACME started"),
        "{}",
        tail(&b.serve_log(), 20)
    );
}
