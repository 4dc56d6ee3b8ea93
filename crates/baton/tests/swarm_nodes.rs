//! baton with `runtime = "swarm"` on the 3-node lab (`lab/swarm`) where nodes and input
//! go wrong, and next to Swarm's own rolling update:
//!
//! - the same app and the same load client (it never retries) through Swarm's own
//!   `docker service update`, start-first and stop-first with a health check, and
//!   through baton rolling: the failed requests of each are printed (docs/RELIABILITY.md
//!   has them); baton's must be 0;
//! - a service of another owner named like baton's next instance, and an image missing on
//!   the node a task goes to: each a clear error naming the fix, nothing changed;
//! - a worker node cut off under load: when its task leaves routing, which requests
//!   failed, and that none fails after.
//!
//! Needs the `SWARM_LAB` prerequisite (and `nginx` for the comparison): without it a test
//! is reported as skipped, and fails in CI (common/prerequisite.rs). These tests stop a
//! node, so nextest runs them one at a time with the other lab tests (test group
//! `swarm-lab` in .config/nextest.toml).
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/docker.rs"]
mod docker_common;
#[path = "common/prerequisite.rs"]
mod prerequisite;
#[path = "common/swarm_app.rs"]
mod swarm_app;
#[path = "common/swarm_lab.rs"]
mod swarm_lab;

use baton_loadgen::{Load, LoadSpec, Profile, Report};
use bollard::models::{
    EndpointSpec, EndpointSpecModeEnum, HealthConfig, NetworkAttachmentConfig, ServiceSpec,
    ServiceSpecMode, ServiceSpecModeReplicated, ServiceUpdateStatusStateEnum, TaskSpec,
    TaskSpecContainerSpec, TaskSpecPlacement, TaskSpecPlacementPreferences,
    TaskSpecPlacementSpread,
};
use prerequisite::{run, tests, Test, NGINX, SWARM_LAB};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};
use swarm_app::*;
use swarm_lab::*;

fn main() {
    run(tests![
        swarms_own_update_and_baton_under_the_same_load[&SWARM_LAB, &NGINX],
        a_name_clash_or_an_image_missing_on_a_node_is_refused_and_changes_nothing[&SWARM_LAB],
        a_worker_node_lost_under_load_leaves_routing_and_no_request_fails_after[&SWARM_LAB]
    ]);
}

/// How long each compared update runs under load (the update starts 1 s in).
const PHASE: Duration = Duration::from_secs(15);

/// The load of every phase: keep-alive clients back to back, never retrying; a request
/// unanswered for 10 s is a failure (so a request stuck on a lost node ends in the phase).
fn load_spec(addr: SocketAddr, profile: Profile, clients: usize) -> LoadSpec {
    LoadSpec {
        clients,
        gap: Duration::from_millis(3),
        timeout: Duration::from_secs(10),
        ..LoadSpec::with_profile(addr, profile)
    }
}

fn image(tag: &str) -> String {
    format!("{}:{tag}", docker_common::IMAGE)
}

// === Swarm's own update next to baton's ===

fn swarms_own_update_and_baton_under_the_same_load() {
    let lab = SwarmLab::up();
    docker_common::ensure_images();
    for tag in ["v1", "v2"] {
        lab.load_image(&image(tag));
    }
    let rt = common::rt();
    let pid = std::process::id();
    let anchor = rt.block_on(async {
        Anchor::start(
            &docker_common::client().await,
            &format!("baton-lab-anchor-{pid}"),
        )
        .await
    });
    let mut rows: Vec<(String, Report, Duration)> = Vec::new();
    for order in ["start-first", "stop-first"] {
        let service = format!("baton-lab-update-{pid}-{order}");
        let _service = ServiceGuard(service.clone());
        rt.block_on(create_replicated(&service));
        let nginx = Nginx::start(&anchor, common::free_port(), &service);
        wait_answering(nginx.addr);
        let (report, took) = measure(&rt, nginx.addr, || swarm_update(&service, order));
        let status = rt.block_on(async {
            let docker = docker_common::client().await;
            docker.inspect_service(&service, None).await.unwrap()
        });
        let state = status.update_status.and_then(|u| u.state);
        assert_eq!(
            state,
            Some(ServiceUpdateStatusStateEnum::COMPLETED),
            "{order}: the update did not complete"
        );
        assert!(
            report.by_version.get("v2").copied().unwrap_or(0) > 0,
            "{order}: v2 never answered: {report:?}\nnginx: {}",
            nginx.log()
        );
        eprintln!("swarm {order}: update took {took:?}, {report:?}");
        rows.push((format!("docker service update, {order}"), report, took));
    }

    let b = common::Baton::start_in_netns(
        anchor.netns(),
        anchor.ip,
        common::free_port(),
        &swarm_app("rolling", ""),
    );
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let (report, took) = measure(&rt, b.proxy, || {
        b.cli_ok(&["deploy", "web", "v2"], 0);
    });
    eprintln!("baton rolling: deploy took {took:?}, {report:?}");
    rows.push(("baton, rolling".into(), report.clone(), took));
    eprintln!("\n| v1 -> v2, 3 replicas, {PHASE:?} of load | requests | failed | update took |");
    for (what, r, took) in &rows {
        eprintln!(
            "| {what} | {} | {} {:?} | {:.1} s |",
            r.sent,
            r.failed,
            r.failures,
            took.as_secs_f64()
        );
    }
    assert_eq!(
        report.failed,
        0,
        "baton: {report:?}\n{}",
        common::tail(&b.serve_log(), 40)
    );
    assert!(
        report.by_version.get("v2").copied().unwrap_or(0) > 0,
        "{report:?}"
    );
    let st = b.wait_status("only v2", |st| {
        st["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["version"] == "v2")
    });
    assert_eq!(common::state(&st), "succeeded", "{st:#}");
    let owner = b.store_path();
    drop(b);
    wait_no_services(&owner, "after baton stopped");
}

/// Runs the load for `PHASE`, with `update` started 1 s in; returns the report and how
/// long the update took.
fn measure(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    update: impl FnOnce(),
) -> (Report, Duration) {
    let load = rt.block_on(async { Load::start(load_spec(addr, Profile::KeepAlive, 4)) });
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let begun = Instant::now();
    update();
    let took = begun.elapsed();
    if let Some(rest) = PHASE.checked_sub(started.elapsed()) {
        std::thread::sleep(rest);
    }
    (rt.block_on(load.stop()), took)
}

/// A replicated service of the sample app as a Swarm user runs it: 3 replicas spread over
/// the nodes, on the overlay, endpoint mode dnsrr (this kernel has no IPVS for a VIP), a
/// health check (exec form: the image has no shell for `--health-cmd`'s `CMD-SHELL`), and
/// Swarm's rolling update one task at a time. Waits (bounded) for 3 running tasks.
async fn create_replicated(name: &str) {
    let docker = docker_common::client().await;
    let secs = |s: i64| s * 1_000_000_000;
    let spec = ServiceSpec {
        name: Some(name.to_string()),
        labels: Some(HashMap::from([("baton-lab-test".into(), "1".into())])),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(IMAGE_V1.to_string()),
                health_check: Some(HealthConfig {
                    test: Some(
                        [
                            "CMD",
                            "/sample-app",
                            "fetch",
                            "--attempts",
                            "1",
                            "http://127.0.0.1:8080/health",
                        ]
                        .map(String::from)
                        .to_vec(),
                    ),
                    interval: Some(secs(1)),
                    timeout: Some(secs(2)),
                    retries: Some(2),
                    start_period: Some(0),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            placement: Some(TaskSpecPlacement {
                preferences: Some(vec![TaskSpecPlacementPreferences {
                    spread: Some(TaskSpecPlacementSpread {
                        spread_descriptor: Some("node.labels.baton-lab".into()),
                    }),
                }]),
                ..Default::default()
            }),
            networks: Some(vec![NetworkAttachmentConfig {
                target: Some(OVERLAY.to_string()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(3) }),
            ..Default::default()
        }),
        endpoint_spec: Some(EndpointSpec {
            mode: Some(EndpointSpecModeEnum::DNSRR),
            ..Default::default()
        }),
        ..Default::default()
    };
    docker.create_service(spec, None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let nodes = running_task_nodes(&docker, name).await;
        if nodes.len() == 3 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "3 tasks of {name} not running after 180 s: on {nodes:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Swarm's own rolling update to v2, as its CLI runs it (waits until the update
/// converged). `--no-resolve-image`: there is no registry to ask for a digest.
fn swarm_update(service: &str, order: &str) {
    let out = Command::new("timeout")
        .args(["240", "docker", "service", "update", "--quiet"])
        .args(["--image", &image("v2"), "--no-resolve-image"])
        .args(["--update-order", order, "--update-parallelism", "1"])
        .args(["--update-delay", "0s", service])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker service update {order}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What a Swarm user without baton puts where the VIP would be: nginx on the overlay (in
/// the anchor's network namespace, as baton runs), resolving the dnsrr service's name
/// through Docker's embedded DNS at most 1 s old, one new upstream connection per request
/// to a task chosen round-robin, and no retry on another task (as the VIP's IPVS does
/// not retry either): a request Swarm's update breaks reaches the client as a failure.
struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
    addr: SocketAddr,
}

impl Nginx {
    fn start(anchor: &Anchor, port: u16, service: &str) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let conf = format!(
            r#"daemon off;
user root;
worker_processes 1;
pid {d}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    resolver 127.0.0.11 valid=1s ipv6=off;
    server {{
        listen {port};
        location / {{
            set $service {service};
            proxy_pass http://$service:8080;
            proxy_next_upstream off;
        }}
    }}
}}
"#
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let log = std::fs::File::create(dir.path().join("error.log")).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net={}", anchor.netns().display()))
            .args(["nginx", "-e", "stderr", "-p"])
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Nginx {
            child,
            dir,
            addr: SocketAddr::new(anchor.ip, port),
        }
    }

    fn log(&self) -> String {
        common::tail(
            &std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default(),
            20,
        )
    }
}

impl Drop for Nginx {
    /// SIGTERM (nginx's fast shutdown: the master stops its worker), then SIGKILL.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (bounded) until `GET /health` through `addr` answers 200.
fn wait_answering(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while Instant::now() < deadline {
        let get = || -> std::io::Result<String> {
            let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET /health HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        };
        match get() {
            Ok(resp) if resp.starts_with("HTTP/1.1 200") => return,
            Ok(resp) => last = resp,
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{addr} did not answer 200 within 60 s; last: {last}");
}

// === Bad input ===

fn a_name_clash_or_an_image_missing_on_a_node_is_refused_and_changes_nothing() {
    let lab = SwarmLab::up();
    docker_common::ensure_images();
    lab.load_image(&image("v1"));
    let node3 = lab
        .nodes()
        .iter()
        .find(|n| n.name == "node3")
        .unwrap()
        .clone();
    // v3 is on the manager (built there) and on no worker.
    for socket in lab.worker_sockets() {
        let _ = Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .args(["image", "rm", "-f", &image("v3")])
            .output();
    }
    let rt = common::rt();
    let pid = std::process::id();
    // Not baton's: the name baton gives the first instance of its first deployment
    // (`<instance>-<version>`, the instance `web-1-1`), no labels of baton's, no task.
    let foreign = "web-1-1-v1";
    let _foreign = ServiceGuard(foreign.to_string());
    let foreign_before = rt.block_on(async {
        let docker = docker_common::client().await;
        let spec = ServiceSpec {
            name: Some(foreign.to_string()),
            labels: Some(HashMap::from([("baton-lab-test".into(), "1".into())])),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some(IMAGE_V1.to_string()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            mode: Some(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated { replicas: Some(0) }),
                ..Default::default()
            }),
            ..Default::default()
        };
        docker.create_service(spec, None).await.unwrap();
        docker.inspect_service(foreign, None).await.unwrap()
    });
    let anchor = rt.block_on(async {
        Anchor::start(
            &docker_common::client().await,
            &format!("baton-lab-anchor-{pid}"),
        )
        .await
    });
    // Every task on node3, placed by Swarm.
    let b = common::Baton::start_in_netns(
        anchor.netns(),
        anchor.ip,
        common::free_port(),
        &swarm_app(
            "rolling",
            "constraints = [\"node.labels.baton-lab==node3\"]",
        ),
    );
    let owner = b.store_path();

    // The name clash: the deployment fails with the fix, the foreign service is as it was.
    let out = b.cli(&["deploy", "web", "v1"]);
    let st = b.wait_status("the clashing deployment over", common::finished);
    let told = what_was_told(&b, &out, &st);
    eprintln!("name clash: {told}");
    assert!(!out.status.success(), "{told}");
    assert!(
        told.contains("a service named web-1-1-v1 already exists on the swarm and is not this baton's instance: remove or rename that service, or rename the app"),
        "{told}"
    );
    assert_ne!(common::state(&st), "succeeded", "{st:#}");
    wait_no_services(&owner, "after the name clash");
    let foreign_after = rt.block_on(async {
        let docker = docker_common::client().await;
        docker.inspect_service(foreign, None).await.unwrap()
    });
    assert_eq!(
        foreign_after.version, foreign_before.version,
        "the foreign service was changed"
    );
    assert_eq!(foreign_after.spec, foreign_before.spec);

    // The next deployment's instances have other names: it runs, on node3.
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let services = services_of(&owner);
    assert_eq!(services.len(), 3, "{services:?}");
    let nodes: Vec<String> = rt.block_on(async {
        let docker = docker_common::client().await;
        let mut nodes = Vec::new();
        for s in &services {
            nodes.extend(running_task_nodes(&docker, s).await);
        }
        nodes
    });
    assert_eq!(nodes, vec![node3.id.clone(); 3], "{services:?}");

    // v3 is not on node3: the deployment fails naming image and node and how to get it
    // there; v1 keeps serving (no failed request) and no service of v3 is left.
    let load = rt.block_on(async { Load::start(load_spec(b.proxy, Profile::KeepAlive, 2)) });
    let out = b.cli(&["deploy", "web", "v3"]);
    let st = b.wait_status("the v3 deployment over", common::finished);
    let report = rt.block_on(load.stop());
    let told = what_was_told(&b, &out, &st);
    eprintln!("image missing: {told}\nload: {report:?}");
    assert!(!out.status.success(), "{told}");
    // The node by host name and ID (the lab's nodes all share the machine's host name).
    let missing = format!("image {} is missing on node ", image("v3"));
    let node_id = format!(" ({})", node3.id);
    let fix = format!("docker save {} | docker -H NODE load", image("v3"));
    assert!(
        told.contains(&missing) && told.contains(&node_id) && told.contains(&fix),
        "{told}"
    );
    assert_eq!(st["stable_version"], "v1", "{st:#}");
    assert_ne!(common::state(&st), "succeeded", "{st:#}");
    assert_eq!(report.failed, 0, "{report:?}");
    let st = b.wait_status("only v1 instances", |st| {
        st["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["version"] == "v1")
    });
    assert_eq!(st["instances"].as_array().unwrap().len(), 3, "{st:#}");
    let services = services_of(&owner);
    assert_eq!(services.len(), 3, "{services:?}");
    assert!(services.iter().all(|s| s.ends_with("-v1")), "{services:?}");
    drop(b);
    wait_no_services(&owner, "after baton stopped");
    let foreign_after = rt.block_on(async {
        let docker = docker_common::client().await;
        docker.inspect_service(foreign, None).await.unwrap()
    });
    assert_eq!(foreign_after.version, foreign_before.version);
}

/// What the user was told about a failed deployment: the CLI's output and the
/// deployment's history entry.
fn what_was_told(b: &common::Baton, out: &std::process::Output, st: &serde_json::Value) -> String {
    let id = st["deployment"]["id"].as_str().unwrap_or_default();
    format!(
        "deploy exited {:?}\nstdout: {}\nstderr: {}\nhistory: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        b.history_entry(id)
    )
}

// === A worker node lost ===

/// The lab's worker `node3` cut off from the others, as a crashed machine looks from
/// them: the host side of its veth down, so every packet to it is lost (no reset, no
/// ICMP). Brought back up on drop.
struct NodeCutOff(&'static str);

impl NodeCutOff {
    fn cut(veth: &'static str) -> NodeCutOff {
        let status = Command::new("ip")
            .args(["link", "set", veth, "down"])
            .status()
            .unwrap();
        assert!(status.success(), "ip link set {veth} down");
        NodeCutOff(veth)
    }
}

impl Drop for NodeCutOff {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "set", self.0, "up"])
            .status();
    }
}

/// `GET path` on baton's admin socket over HTTP/1.0 (so the body comes unchunked), as JSON.
fn admin_json(b: &common::Baton, path: &str) -> serde_json::Value {
    let mut s = std::os::unix::net::UnixStream::connect(b.dir.path().join("baton.sock")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: baton\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("GET {path}: {e}: {out}"))
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

fn a_worker_node_lost_under_load_leaves_routing_and_no_request_fails_after() {
    let lab = SwarmLab::up();
    docker_common::ensure_images();
    lab.load_image(&image("v1"));
    let node3 = lab
        .nodes()
        .iter()
        .find(|n| n.name == "node3")
        .unwrap()
        .clone();
    let rt = common::rt();
    let anchor = rt.block_on(async {
        let name = format!("baton-lab-anchor-{}", std::process::id());
        Anchor::start(&docker_common::client().await, &name).await
    });
    let b = common::Baton::start_in_netns(
        anchor.netns(),
        anchor.ip,
        common::free_port(),
        &swarm_app("rolling", ""),
    );
    b.cli_ok(&["deploy", "web", "v1"], 0);
    // The instance whose task runs on node3 (baton spreads them one per node).
    let services = services_of(&b.store_path());
    let on_node3: Vec<&String> = rt.block_on(async {
        let docker = docker_common::client().await;
        let mut found = Vec::new();
        for s in &services {
            if running_task_nodes(&docker, s).await.contains(&node3.id) {
                found.push(s);
            }
        }
        found
    });
    assert_eq!(on_node3.len(), 1, "{services:?}");
    let lost = on_node3[0].strip_suffix("-v1").unwrap().to_string();

    // Keep-alive clients and clients with a new connection per request.
    let load = rt.block_on(async {
        Load::start_mixed(vec![
            load_spec(b.proxy, Profile::KeepAlive, 4),
            load_spec(b.proxy, Profile::NewConnection, 2),
        ])
    });
    std::thread::sleep(Duration::from_secs(3));
    let cut_wall = SystemTime::now();
    let cut_at = Instant::now();
    let cut = NodeCutOff::cut("baton-lab-n3");
    // Detection: baton's first event about that instance after the cut (its health check
    // failing `unhealthy` times, or its task reported ended), which takes it out of
    // routing. Polled (bounded).
    let deadline = Instant::now() + Duration::from_secs(60);
    let detected = loop {
        let events = admin_json(&b, "/v1/apps/web/events?limit=200");
        let first = events.as_array().unwrap().iter().find(|e| {
            e["at"].as_u64().unwrap_or(0) >= unix_ms(cut_wall)
                && e["message"].as_str().unwrap_or("").contains(&lost)
        });
        if let Some(e) = first {
            break e.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{lost} on node3 still not out of routing 60 s after the cut: {events:#}\n{}",
            common::tail(&b.serve_log(), 40)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let detection = Duration::from_millis(detected["at"].as_u64().unwrap() - unix_ms(cut_wall));
    let st = b.status();
    let routed = st["instances"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["id"] == lost.as_str() && i["healthy"] == true);
    assert!(!routed, "{lost} still healthy after {detected}: {st:#}");
    // Steady load well past the detection.
    std::thread::sleep(
        (cut_at + detection + Duration::from_secs(8)).saturating_duration_since(Instant::now()),
    );
    let report = rt.block_on(load.stop());

    // Every request by when it started: before the cut (in flight when node3 went, or
    // done), between the cut and the detection, after the detection.
    let started = report.started.unwrap();
    let cut_us = cut_at.saturating_duration_since(started).as_micros() as u64;
    let detected_us = cut_us + detection.as_micros() as u64;
    let count = |from: u64, to: u64, failed: bool| {
        report
            .samples
            .iter()
            .filter(|s| s.at_us >= from && s.at_us < to && s.ok != failed)
            .count()
    };
    let in_flight_at_cut = report
        .samples
        .iter()
        .filter(|s| s.at_us < cut_us && s.at_us + s.latency_us >= cut_us)
        .count();
    let failed_before = count(0, cut_us, true);
    let failed_between = count(cut_us, detected_us, true);
    let failed_after = count(detected_us, u64::MAX, true);
    let sent_after = report
        .samples
        .iter()
        .filter(|s| s.at_us >= detected_us)
        .count();
    eprintln!(
        "node3 cut off: {lost} out of routing after {detection:?} ({} {}); \
         requests {}, failed {} {:?}: {failed_before} sent before the cut \
         ({in_flight_at_cut} requests were in flight at the cut, on any node), \
         {failed_between} between the cut and the detection, {failed_after} of {sent_after} after",
        detected["kind"], detected["message"], report.sent, report.failed, report.failures
    );
    assert_eq!(
        failed_after,
        0,
        "requests sent after {lost} left routing failed: {report:?}\n{}",
        common::tail(&b.serve_log(), 60)
    );
    // Nor any sent after the cut: those waiting on node3's instance were sent again to
    // another when its health check failed, and new connections to it were retried when
    // their connect timed out. Only requests in flight at the cut may fail.
    assert_eq!(
        failed_between,
        0,
        "requests sent between the cut and the detection failed: {report:?}\n{}",
        common::tail(&b.serve_log(), 60)
    );
    assert!(sent_after > 0, "no request after the detection: {report:?}");

    // node3 back: the lab is whole again for the tests after this one.
    drop(cut);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ready = rt.block_on(async {
            let docker = docker_common::client().await;
            let node = docker.inspect_node(&node3.id).await.unwrap();
            node.status.and_then(|s| s.state) == Some(bollard::models::NodeState::READY)
        });
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node3 not Ready 120 s after its link came back"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("node3 Ready again {:?} after the cut", cut_at.elapsed());
    let owner = b.store_path();
    drop(b);
    wait_no_services(&owner, "after baton stopped");
}
