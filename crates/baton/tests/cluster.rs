//! baton on several nodes (`[cluster]`): a controller (`baton serve` with `[cluster]
//! listen`) and a proxy of its own process (`baton proxy`) that follows its route table,
//! as they would run on two machines — here two processes on loopback. Load goes only
//! through the second proxy, so what the controller knows of that traffic (the canary
//! judge's verdict, the proxies' list) came from the proxy's reports.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/follower.rs"]
mod follower;

use baton_loadgen::{Load, LoadSpec};
use common::*;
use follower::{controller_section, proxies, wait_for, Follower};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

const TOKEN: &str = "a-cluster-secret-for-tests";

/// The cluster secret in a file of a temporary directory (kept while the directory
/// lives) and a free address for the controller's `[cluster] listen`.
fn secret_and_address() -> (tempfile::TempDir, std::path::PathBuf, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster.token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let addr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    (dir, file, addr)
}

/// Writes `request` on a new connection to `addr` and reads until the peer closes.
fn exchange(addr: SocketAddr, request: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    r
}

fn load_through(addr: SocketAddr) -> LoadSpec {
    LoadSpec {
        clients: 4,
        gap: Duration::from_millis(3),
        ..LoadSpec::new(addr)
    }
}

#[test]
fn a_proxy_on_another_node_follows_reports_back_and_outlives_its_controller() {
    let (_token_dir, token_file, cluster) = secret_and_address();
    // The judge needs 30 requests of each version per verdict; no request reaches the
    // controller's own proxy in this test, so a pass can only come from the reports.
    let apps = analysis_app_config(
        "canary",
        "",
        r#"[{ weight = 30 }, { pause = "3s" }, { weight = 60 }, { pause = "3s" }]"#,
        "interval = \"1s\"\nmin_requests = 30\nmax_error_rate = 0.05\nprogress_deadline = \"30s\"",
    );
    let mut b = Baton::start(&(apps.clone() + &controller_section(cluster, &token_file)));
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let mut f = Follower::start(cluster, &token_file, &apps);
    f.wait_serving("v1");
    let listed = wait_for("the proxy in the controller's list", || {
        proxies(&b)
            .into_iter()
            .find(|p| p["name"] == "node2" && p["live"] == true)
    });
    assert!(
        listed["serving"]["generation"].as_u64().unwrap() > 0,
        "{listed}"
    );
    let text = b.cli_ok(&["status"], 0);
    assert!(
        text.contains("proxies on other nodes:") && text.contains("node2") && text.contains("live"),
        "{text}"
    );

    // A canary judged on the second proxy's traffic alone.
    let rt = rt();
    let load = rt.block_on(async { Load::start(load_through(f.proxy)) });
    let out = b.cli_ok(&["deploy", "web", "v2"], 0);
    let report = rt.block_on(load.stop());
    assert_eq!(report.failed, 0, "{report:?}\n{}", tail(&f.log(), 30));
    assert!(
        report.by_version.get("v2").copied().unwrap_or(0) > 0,
        "{report:?}"
    );
    let history = b.history();
    let last = history.as_array().unwrap().last().unwrap();
    assert_eq!(last["to_version"], "v2", "{last:#}");
    assert_eq!(last["outcome"], "succeeded", "{out}\n{last:#}");
    let analysis = last["analysis"].as_str().unwrap();
    assert!(analysis.starts_with("pass:"), "{analysis}");
    f.wait_serving("v2");
    // The controller counted what the proxy served (its reports come every second).
    let counted = wait_for("the proxy's count", || {
        let n = proxies(&b).into_iter().find(|p| p["name"] == "node2")?["requests"].as_u64()?;
        (n >= report.ok).then_some(n)
    });
    assert!(counted >= report.ok);

    // The controller dies mid-canary (kill -9): the proxy keeps serving its last table,
    // a restarted proxy serves it from its cache, and a new controller resumes the
    // deployment (or rolls it back) with the proxy following it again.
    let load = rt.block_on(async { Load::start(load_through(f.proxy)) });
    b.cli_ok(&["deploy", "web", "v3", "--detach"], 0);
    b.wait_status("v3 taking traffic", |st| {
        st["weights"]["v3"].as_u64().unwrap_or(0) > 0
            && st["instances"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["version"] == "v3" && i["healthy"] == true)
    });
    std::thread::sleep(Duration::from_millis(500));
    b.kill9();
    std::thread::sleep(Duration::from_secs(2));
    let during = rt.block_on(load.stop());
    assert_eq!(during.failed, 0, "{during:?}\n{}", tail(&f.log(), 30));
    assert!(
        during.by_version.get("v3").copied().unwrap_or(0) > 0,
        "{during:?}"
    );
    assert!(
        f.log().contains("the last route table keeps serving"),
        "{}",
        tail(&f.log(), 20)
    );

    assert!(f.stop().success(), "{}", tail(&f.log(), 20));
    f.spawn();
    f.wait_serving("v2");
    assert!(
        f.log().contains("serving the cached route table"),
        "{}",
        tail(&f.log(), 20)
    );

    let load = rt.block_on(async { Load::start(load_through(f.proxy)) });
    b.serve();
    let st = b.wait_status("the deployment finished after the restart", |st| {
        finished(st)
    });
    // Another deploy through the new controller, judged on the proxy's reports again.
    let next = if st["stable_version"] == "v3" {
        "v4"
    } else {
        "v3"
    };
    b.cli_ok(&["deploy", "web", next], 0);
    let after = rt.block_on(load.stop());
    assert_eq!(after.failed, 0, "{after:?}\n{}", tail(&f.log(), 30));
    f.wait_serving(next);
    let back = wait_for("the proxy following the new controller", || {
        proxies(&b)
            .into_iter()
            .find(|p| p["name"] == "node2" && p["live"] == true)
    });
    assert!(back["requests"].as_u64().unwrap() > 0, "{back}");
    assert!(f.stop().success(), "{}", tail(&f.log(), 20));
}

#[test]
fn a_proxy_with_a_wrong_token_or_no_controller_is_refused_with_the_fix() {
    let (token_dir, token_file, cluster) = secret_and_address();
    let apps = app_config("rolling", 1, "");
    let b = Baton::start(&(apps.clone() + &controller_section(cluster, &token_file)));
    b.cli_ok(&["deploy", "web", "v1"], 0);

    // A proxy with another secret gets nothing and says why; it never serves.
    let wrong = token_dir.path().join("wrong.token");
    std::fs::write(&wrong, "not-the-secret").unwrap();
    let f = Follower::start(cluster, &wrong, &apps);
    wait_for("the refusal in the proxy's log", || {
        f.log().contains("refused this proxy's token").then_some(())
    });
    assert!(f.get().is_none(), "a proxy without a table must not accept");
    assert!(proxies(&b).is_empty());
    drop(f);

    // The routes without the token: 401, and the answer names the fix.
    let raw = exchange(
        cluster,
        "GET /v1/cluster/routes HTTP/1.1\r\nHost: c\r\nConnection: close\r\n\r\n",
    );
    assert!(raw.starts_with("HTTP/1.1 401"), "{raw}");
    assert!(raw.contains("[cluster] token_file"), "{raw}");

    // `baton proxy` without controllers, or with an empty token file: refused at start.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("baton.toml");
    std::fs::write(
        &config,
        format!(
            "[proxy]\nlisten = [\"127.0.0.1:{}\"]\n\n{apps}",
            free_port()
        ),
    )
    .unwrap();
    let err = refused(&["proxy", "-c"], &config);
    assert!(err.contains("controllers = ["), "{err}");
    let empty = dir.path().join("empty.token");
    std::fs::write(&empty, "\n").unwrap();
    std::fs::write(
        &config,
        format!(
            "[proxy]\nlisten = [\"127.0.0.1:{}\"]\n\n[cluster]\ncontrollers = [\"{cluster}\"]\ntoken_file = \"{}\"\n\n{apps}",
            free_port(),
            empty.display()
        ),
    )
    .unwrap();
    let err = refused(&["proxy", "-c"], &config);
    assert!(
        err.contains("is empty") && err.contains("openssl rand"),
        "{err}"
    );

    // A controller whose state is in the swarm may not stop its instances when it stops:
    // a standby takes them over. Refused before anything is contacted or bound.
    std::fs::write(
        &config,
        format!(
            "[proxy]\nlisten = [\"127.0.0.1:{}\"]\n\n[store]\npath = \"{}/state\"\n\n\
             [cluster]\nlisten = \"127.0.0.1:{}\"\ntoken_file = \"{}\"\nstate = \"swarm\"\n",
            free_port(),
            dir.path().display(),
            free_port(),
            token_file.display()
        ),
    )
    .unwrap();
    let err = refused(&["serve", "--stop-instances", "-c"], &config);
    assert!(
        err.contains("--stop-instances with [cluster] state = \"swarm\"")
            && err.contains("Start without --stop-instances"),
        "{err}"
    );
    assert!(!dir.path().join("state").exists(), "the store was made");
}

/// An instance that stops answering (accepts, never responds) under load through a proxy
/// on another node: once the controller's health check finds it dead, the requests that
/// proxy has waiting on it go to the other instance, so none fails (without that they
/// would wait for the 60 s response-head timeout, past the client's 8 s).
#[test]
fn requests_waiting_on_a_hung_instance_through_another_nodes_proxy_go_elsewhere() {
    let (_token_dir, token_file, cluster) = secret_and_address();
    // A long drain: the proxy drains a backend its table drops, and at the drain's
    // deadline a GET still waiting there is sent elsewhere too; here only finding the
    // instance dead can save it within the client's 8 s.
    let apps =
        app_config("rolling", 2, "").replace("drain_timeout = \"3s\"", "drain_timeout = \"60s\"");
    let b = Baton::start(&(apps.clone() + &controller_section(cluster, &token_file)));
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let st = b.wait_status("two healthy instances", |st| {
        let i = st["instances"].as_array().unwrap();
        i.len() == 2 && i.iter().all(|i| i["healthy"] == true)
    });
    let hung = st["instances"][0].clone();
    let mut f = Follower::start(cluster, &token_file, &apps);
    f.wait_serving("v1");
    let rt = rt();
    let load = rt.block_on(async {
        Load::start(LoadSpec {
            clients: 4,
            timeout: Duration::from_secs(8),
            ..LoadSpec::new(f.proxy)
        })
    });
    std::thread::sleep(Duration::from_millis(500));
    let addr: SocketAddr = hung["address"].as_str().unwrap().parse().unwrap();
    let raw = exchange(
        addr,
        "POST /admin/hang?on=1 HTTP/1.1\r\nHost: web\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    b.wait_status("the hung instance out of routing", |st| {
        st["instances"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == hung["id"] && i["healthy"] == false)
    });
    // Past the client's timeout: a request still waiting on the hung instance by then is
    // counted failed (one in flight when the load stops would not be counted at all).
    std::thread::sleep(Duration::from_secs(9));
    let report = rt.block_on(load.stop());
    eprintln!("through the other node's proxy while an instance hung: {report:?}");
    assert_eq!(report.failed, 0, "{report:?}\n{}", tail(&f.log(), 20));
    assert!(report.ok > 0);
}

/// Runs `baton ARGS CONFIG`, expected to be refused as a usage error (exit 2); its
/// stderr.
fn refused(args: &[&str], config: &std::path::Path) -> String {
    let out = Command::new(BATON).args(args).arg(config).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    err
}
