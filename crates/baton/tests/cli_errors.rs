//! Bad input gets a clear message and the specified exit code, and
//! changes nothing.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::process::Command;

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(BATON).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn malformed_toml_and_unknown_keys_are_usage_errors_with_line_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("baton.toml");
    std::fs::write(&p, "[apps.web\nruntime = \"process\"\n").unwrap();
    let (code, err) = run(&["validate", "-c", p.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("baton.toml:1"), "{err}");

    std::fs::write(
        &p,
        "[apps.web]\nruntime = \"process\"\ncommand = \"x {port}\"\nreplica = 2\n",
    )
    .unwrap();
    let (code, err) = run(&["validate", "-c", p.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("baton.toml:4") && err.contains("replicas"),
        "{err}"
    );

    let (code, err) = run(&[
        "validate",
        "-c",
        dir.path().join("missing.toml").to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2), "{err}");
}

#[test]
fn unknown_command_is_a_usage_error() {
    let (code, err) = run(&["frobnicate"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("frobnicate"), "{err}");
}

#[test]
fn unreachable_admin_socket_says_how_to_fix_it() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("nope.sock");
    let (code, err) = run(&["status", "--admin", &format!("unix:{}", sock.display())]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("cannot reach baton") && err.contains("baton serve"),
        "{err}"
    );
}

#[test]
fn bad_requests_to_a_running_server_change_nothing() {
    let b = Baton::start(&app_config("canary", 1, ""));
    b.cli_ok(&["deploy", "web", "v1"], 0);

    let out = b.cli(&["deploy", "nope", "v1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown app \"nope\""));

    let out = b.cli(&["deploy", "web", "v1;rm"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("version"));

    // A second deploy while one runs is refused and leaves the first one alone.
    b.cli_ok(&["deploy", "web", "v2", "--detach"], 0);
    let out = b.cli(&["deploy", "web", "v3"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("in progress") && err.contains("baton abort web"),
        "{err}"
    );
    let st = b.wait_status("v2 done", |st| finished(st) && state(st) == "succeeded");
    assert_eq!(st["stable_version"], "v2");
    let h = b.history();
    assert!(h
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["to_version"] != "v3"));

    let out = b.cli(&["deploy", "web", "v4", "--strategy", "yolo"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown strategy"));
    assert_eq!(b.status()["stable_version"], "v2");
}

#[test]
fn exhausted_port_range_fails_the_deploy_and_keeps_the_old_version() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Exactly one port: v1 takes it, v2 has nowhere to go.
    let cfg = with_ports(&app_config("blue_green", 1, ""), &format!("{port}-{port}"));
    let b = Baton::start(&cfg);
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let out = b.cli(&["deploy", "web", "v2"]);
    assert_eq!(out.status.code(), Some(1));
    let h = b.history();
    let reason = h.as_array().unwrap().last().unwrap()["reason"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(reason.contains("no free port"), "{reason}");
    let st = b.status();
    assert_eq!(st["stable_version"], "v1");
    assert_eq!(st["instances"].as_array().unwrap().len(), 1);
}

fn with_ports(cfg: &str, range: &str) -> String {
    cfg.lines()
        .map(|l| {
            if l.starts_with("ports = ") {
                format!("ports = \"{range}\"")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn wrong_admin_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "guess\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = format!(
        "[proxy]\nlisten = [\"127.0.0.1:{port}\"]\n[admin]\nlisten = \"127.0.0.1:{admin_port}\"\ntoken_file = \"{}\"\n[store]\npath = \"{}/state\"\n{}",
        token.display(),
        dir.path().display(),
        app_config("rolling", 1, "")
    );
    let p = dir.path().join("baton.toml");
    std::fs::write(&p, cfg).unwrap();
    let mut server = Command::new(BATON)
        .args(["serve", "--stop-instances", "-c", p.to_str().unwrap()])
        .spawn()
        .unwrap();
    let admin = format!("127.0.0.1:{admin_port}");
    let mut ok = false;
    for _ in 0..100 {
        let (code, _) = run(&[
            "status",
            "--admin",
            &admin,
            "--token-file",
            token.to_str().unwrap(),
        ]);
        if code == Some(0) {
            ok = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (code, err) = run(&[
        "status",
        "--admin",
        &admin,
        "--token-file",
        wrong.to_str().unwrap(),
    ]);
    let (code_none, _) = run(&["status", "--admin", &admin]);
    // Raw requests that would change something: refused, and nothing changes.
    let http = |method: &str, path: &str, auth: Option<&str>| -> String {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(&admin) else {
            return "connect failed".into();
        };
        let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(10)));
        let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
        let body = "{\"version\":\"v1\"}";
        let _ = write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: baton\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    let deploy_none = http("POST", "/v1/apps/web/deployments", None);
    let deploy_wrong = http("POST", "/v1/apps/web/deployments", Some("Bearer guess"));
    let deploy_basic = http(
        "POST",
        "/v1/apps/web/deployments",
        Some("Basic czNjcmV0LXRva2Vu"),
    );
    let rollback_wrong = http(
        "POST",
        "/v1/apps/web/rollback",
        Some("Bearer s3cret-token-x"),
    );
    let history = http("GET", "/v1/apps/web/history", Some("Bearer s3cret-token"));
    let status = http("GET", "/v1/apps/web", Some("Bearer s3cret-token"));
    let _ = Command::new("kill").arg(server.id().to_string()).status();
    let _ = server.wait();
    assert!(ok, "server with the right token never answered");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("token"), "{err}");
    assert_eq!(code_none, Some(1));
    for answer in [&deploy_none, &deploy_wrong, &deploy_basic, &rollback_wrong] {
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    }
    assert!(history.starts_with("HTTP/1.1 200"), "{history}");
    assert!(
        history.trim_end().ends_with("[]"),
        "a refused request changed something: {history}"
    );
    assert!(
        status.starts_with("HTTP/1.1 200") && status.contains("\"deployment\":null"),
        "a refused request started a deployment: {status}"
    );
}

#[test]
fn a_second_server_on_the_same_store_refuses_to_start() {
    let b = Baton::start(&app_config("rolling", 1, ""));
    let out = Command::new(BATON)
        .args(["serve", "-c", b.config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another baton"), "{err}");
    // The first server is untouched.
    b.cli_ok(&["deploy", "web", "v1"], 0);
}
