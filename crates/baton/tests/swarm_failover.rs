//! A controller replaced on another manager (`[cluster] state = "swarm"`), on the real
//! 3-node lab with node2 and node3 made managers: the controller lease and the records as
//! compare-and-swap writes on Swarm services, a controller killed mid-canary and then a
//! whole node lost mid-canary (its `dockerd` stopped) while proxies on the other nodes
//! keep serving and the standby resumes the deployment. Needs the `SWARM_LAB`
//! prerequisite (common/prerequisite.rs).
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/docker.rs"]
mod docker_common;
#[path = "common/follower.rs"]
mod follower;
#[path = "common/prerequisite.rs"]
mod prerequisite;
#[path = "common/swarm_app.rs"]
mod swarm_app;
#[path = "common/swarm_lab.rs"]
mod swarm_lab;

use baton_controller::SwarmState;
use bollard::query_parameters::ListServicesOptionsBuilder;
use bollard::Docker;
use prerequisite::{run, tests, Test, SWARM_LAB};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use swarm_app::*;
use swarm_lab::*;

fn main() {
    run(tests![
        the_lease_and_the_records_are_compare_and_swap_writes_in_the_swarm[&SWARM_LAB],
        a_controller_killed_or_lost_with_its_node_is_replaced_by_one_on_another_manager[&SWARM_LAB]
    ]);
}

/// Removes the lease and record services of `[cluster] state_name` NAME (they outlive
/// every controller by design) and any instance service left under its owner.
struct StateServices(String);

impl StateServices {
    fn list(&self) -> Vec<(String, HashMap<String, String>)> {
        common::rt().block_on(async {
            let docker = docker_common::client().await;
            let mut out = Vec::new();
            for label in ["baton.lease", "baton.state"] {
                let filters = HashMap::from([("label", vec![format!("{label}={}", self.0)])]);
                let options = ListServicesOptionsBuilder::new().filters(&filters).build();
                for s in docker.list_services(Some(options)).await.unwrap() {
                    let spec = s.spec.unwrap();
                    out.push((spec.name.unwrap(), spec.labels.unwrap_or_default()));
                }
            }
            out
        })
    }
}

impl Drop for StateServices {
    fn drop(&mut self) {
        let mut names: Vec<String> = self.list().into_iter().map(|(n, _)| n).collect();
        names.extend(services_of(&format!("swarm-state:{}", self.0)));
        if !names.is_empty() {
            let _ = std::process::Command::new("docker")
                .args(["service", "rm"])
                .args(&names)
                .output();
        }
    }
}

fn the_lease_and_the_records_are_compare_and_swap_writes_in_the_swarm() {
    let _lab = SwarmLab::up();
    let name = format!("cas{}", std::process::id());
    let services = StateServices(name.clone());
    let rt = common::rt();
    let second = rt.block_on(async {
        let ttl = Duration::from_secs(10);
        // The first controller finds no lease and takes it at once.
        let first = std::sync::Arc::new(SwarmState::connect(&name, ttl).await.unwrap());
        first.acquire().await.unwrap();
        first.put("web", r#"{"n":1}"#, None).await.unwrap();
        first
            .put("web", r#"{"n":2}"#, Some(r#"{"id":"d1"}"#))
            .await
            .unwrap();
        let keeper = tokio::spawn(first.clone().keep());

        // A second one stands by while the first renews; it takes over once the first
        // stops renewing (its keeper is stopped, as when its process is frozen or its
        // node is cut off), and reads what the first wrote.
        let second = SwarmState::connect(&name, ttl).await.unwrap();
        let mut taking = Box::pin(second.acquire());
        let raced = tokio::time::timeout(Duration::from_secs(3), &mut taking).await;
        assert!(
            raced.is_err(),
            "the standby took a lease that was being renewed"
        );
        keeper.abort();
        let took = Instant::now();
        taking.await.unwrap();
        assert!(
            took.elapsed() >= ttl / 2,
            "taken after {:?}",
            took.elapsed()
        );
        let stored = second.load().await.unwrap();
        assert_eq!(stored.len(), 1, "{stored:?}");
        assert_eq!(stored[0].app, "web");
        assert_eq!(stored[0].record, r#"{"n":2}"#);
        assert_eq!(stored[0].last.as_deref(), Some(r#"{"id":"d1"}"#));

        // The first, back, cannot write: its version of the holder is stale (the second
        // claimed it), and it learns it lost the lease.
        let refused = first.put("web", r#"{"n":3}"#, None).await.unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("no longer holds the controller lease"),
            "{refused}"
        );
        assert!(first.lost().borrow().is_some());
        // Nor can it release what it no longer holds.
        first.release().await;
        second.put("web", r#"{"n":4}"#, None).await.unwrap();
        second
    });
    // A write without a history entry keeps the newest one.
    let (_, labels) = services
        .list()
        .into_iter()
        .find(|(n, _)| n == &format!("{name}-state-web"))
        .unwrap();
    assert_eq!(labels["baton.state.record"], r#"{"n":4}"#);
    assert_eq!(labels["baton.state.last"], r#"{"id":"d1"}"#);
    let (_, lease) = services
        .list()
        .into_iter()
        .find(|(n, _)| n == &format!("{name}-lease"))
        .unwrap();
    assert_eq!(lease["baton.lease.holder"], second.me());
    assert_eq!(lease["baton.lease.term"], "2");

    rt.block_on(async {
        // A clean stop releases the lease: a third takes it at once, with no ttl to wait.
        second.release().await;
        let third = SwarmState::connect(&name, Duration::from_secs(600))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(60), third.acquire())
            .await
            .expect("a released lease is taken at once, not after its ttl")
            .unwrap();
    });
    drop(services);
}

/// The controller config: the canary app, `[cluster]` with the state in the swarm.
fn controller_config(cluster_port: u16, token: &std::path::Path, state_name: &str) -> String {
    local_config(cluster_port, token) + &swarm_state(state_name)
}

/// `controller_config` with the state kept locally (`[cluster]` last).
fn local_config(cluster_port: u16, token: &std::path::Path) -> String {
    swarm_app("canary", "")
        + &format!(
            "\n[cluster]\nlisten = \"0.0.0.0:{cluster_port}\"\ntoken_file = \"{}\"\n",
            token.display()
        )
}

/// The `[cluster]` keys that put the state in the swarm.
fn swarm_state(state_name: &str) -> String {
    format!("state = \"swarm\"\nstate_name = \"{state_name}\"\nlease_ttl = \"4s\"\n")
}

/// `kill SIGNAL PID`.
fn signal(signal: &str, pid: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, pid])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

/// The log written since `from` bytes.
fn log_since(b: &common::Baton, from: usize) -> String {
    b.serve_log().get(from..).unwrap_or_default().to_string()
}

/// Stops the two loads and checks neither failed a request; prints their figures.
fn no_failed(what: &str, loads: (follower::NetnsLoad, follower::NetnsLoad), log: &str) -> String {
    let (r1, r2) = (loads.0.stop(), loads.1.stop());
    for (which, r) in [("node1's proxy", &r1), ("node2's proxy", &r2)] {
        assert_eq!(
            r.failed,
            0,
            "{what}, {which}: {r:?}\n{}",
            common::tail(log, 40)
        );
        assert!(r.ok > 0, "{what}, {which}: {r:?}");
    }
    format!("{what}: node1's proxy {r1:?}, node2's proxy {r2:?}")
}

/// Waits (up to `secs`) until controller `who` has finished deployment `id`, which it
/// took over, and returns the stable version.
fn resumed(ctl: &common::Baton, who: &str, id: &str, secs: u64) -> String {
    let st = ctl.wait_status_within(
        Duration::from_secs(secs),
        &format!("the canary finished under {who}"),
        common::finished,
    );
    assert_eq!(
        st["deployment"]["id"], id,
        "{who} did not resume deployment {id}: {st:#}"
    );
    eprintln!("failover: {id} under {who}: {}", st["deployment"]["state"]);
    st["stable_version"].as_str().unwrap().to_string()
}

/// Waits until exactly `version`'s 3 services of `owner` are left.
fn wait_services(owner: &str, version: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let services = services_of(owner);
        if services.len() == 3 && services.iter().all(|s| s.ends_with(&format!("-{version}"))) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "services left besides {version}'s three: {services:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn a_controller_killed_or_lost_with_its_node_is_replaced_by_one_on_another_manager() {
    let t0 = Instant::now();
    let phase = |what: &str| eprintln!("failover: {what} at {:.1}s", t0.elapsed().as_secs_f64());
    let lab = SwarmLab::up();
    docker_common::ensure_images();
    for tag in ["v1", "v2"] {
        lab.load_image(&format!("{}:{tag}", docker_common::IMAGE));
    }
    let managers = lab.managers();
    phase("lab up with 3 managers");
    let state_name = format!("fo{}", std::process::id());
    let owner = format!("swarm-state:{state_name}");
    let services = StateServices(state_name.clone());
    let sockets = lab.worker_sockets();
    let (sock2, sock3): (PathBuf, PathBuf) = (sockets[0].clone(), sockets[1].clone());
    let rt = common::rt();
    let base = format!("baton-lab-fo-{}", std::process::id());
    // Controller A on node2, controller B on node3 (each in a container's namespace there,
    // each driving its own node's engine); proxies on node1 and node2.
    let (anchor1, anchor2, anchor3) = rt.block_on(async {
        let docker = docker_common::client().await;
        let engine = |sock: &PathBuf| {
            Docker::connect_with_unix(&sock.to_string_lossy(), 60, bollard::API_DEFAULT_VERSION)
                .unwrap()
        };
        let a1 = Anchor::start(&docker, &format!("{base}-n1")).await;
        let a2 =
            Anchor::start_on(&engine(&sock2), Some(sock2.clone()), &format!("{base}-n2")).await;
        let a3 =
            Anchor::start_on(&engine(&sock3), Some(sock3.clone()), &format!("{base}-n3")).await;
        (a1, a2, a3)
    });
    let secrets = tempfile::tempdir().unwrap();
    let token = secrets.path().join("cluster.token");
    std::fs::write(&token, "swarm-failover-cluster-secret").unwrap();
    let cluster_port = common::free_port();
    let config = controller_config(cluster_port, &token, &state_name);
    let docker_host = |sock: &PathBuf| {
        (
            "DOCKER_HOST".to_string(),
            format!("unix://{}", sock.display()),
        )
    };

    // 0. Controller A first keeps its state locally and deploys v1; restarted with
    // `state = "swarm"` it writes its record to the swarm and adopts its running instances
    // (relabelled from its store path to the shared owner), leaving none behind.
    let mut a = common::Baton::configure_in_netns(
        anchor2.netns(),
        anchor2.ip,
        common::free_port(),
        &local_config(cluster_port, &token),
    );
    a.env.push(docker_host(&sock2));
    a.stop_instances = false;
    a.serve();
    a.cli_ok(&["deploy", "web", "v1"], 0);
    let local_owner = a.store_path();
    let before = services_of(&local_owner);
    assert_eq!(before.len(), 3, "{before:?}");
    assert!(a.stop().success(), "{}", common::tail(&a.serve_log(), 20));
    let mut text = std::fs::read_to_string(&a.config).unwrap();
    text.push_str(&swarm_state(&state_name));
    std::fs::write(&a.config, text).unwrap();
    a.serve();
    let st = a.status();
    assert_eq!(st["instances"].as_array().unwrap().len(), 3, "{st:#}");
    assert!(services_of(&local_owner).is_empty());
    let mut adopted = services_of(&owner);
    adopted.sort();
    let mut expected = before.clone();
    expected.sort();
    assert_eq!(
        adopted, expected,
        "the same services, under the shared owner"
    );
    assert!(
        a.serve_log()
            .contains("writing a record only this store had"),
        "{}",
        common::tail(&a.serve_log(), 20)
    );
    phase("A moved from local state to the swarm's, its v1 instances adopted");
    let mut b = common::Baton::configure_in_netns(
        anchor3.netns(),
        anchor3.ip,
        common::free_port(),
        &config,
    );
    b.env.push(docker_host(&sock3));
    b.stop_instances = false;
    b.spawn_serve();
    follower::wait_for("controller B standing by", || {
        b.serve_log()
            .contains("another controller holds the lease")
            .then_some(())
    });
    assert!(
        !b.cli(&["status"]).status.success(),
        "a standby controller answers: {}",
        b.serve_log()
    );
    phase("controller A holds the lease, B stands by");
    // The lease is not handed from process to process: `baton upgrade` says to restart.
    let out = a.cli(&["upgrade"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the controller lease cannot be handed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let controllers = [
        format!("{}:{cluster_port}", anchor2.overlay_ip),
        format!("{}:{cluster_port}", anchor3.overlay_ip),
        format!("{}:{cluster_port}", anchor1.overlay_ip),
    ];
    let (p1, p2) = (common::free_port(), common::free_port());
    let mut f1 = follower::Follower::start_named(
        "node1",
        Some(anchor1.netns()),
        format!("0.0.0.0:{p1}").parse().unwrap(),
        std::net::SocketAddr::new(anchor1.ip, p1),
        &controllers,
        &token,
        &swarm_app("canary", ""),
    );
    let mut f2 = follower::Follower::start_named(
        "node2",
        Some(anchor2.netns()),
        format!("0.0.0.0:{p2}").parse().unwrap(),
        std::net::SocketAddr::new(anchor2.overlay_ip, p2),
        &controllers,
        &token,
        &swarm_app("canary", ""),
    );
    f1.wait_serving("v1");
    f2.wait_serving("v1");
    phase("v1 served by both proxies");
    let load_spec = |addr| baton_loadgen::LoadSpec {
        clients: 4,
        gap: Duration::from_millis(3),
        ..baton_loadgen::LoadSpec::new(addr)
    };
    // Load from this host to node1's proxy, and from node1's container over the overlay
    // to node2's proxy; neither client retries.
    let (proxy1, proxy2, netns1) = (f1.proxy, f2.proxy, anchor1.netns());
    let loads = || {
        (
            follower::NetnsLoad::start(None, load_spec(proxy1)),
            follower::NetnsLoad::start(Some(netns1.clone()), load_spec(proxy2)),
        )
    };

    // 1. Controller A is killed (kill -9) mid-canary v1 -> v2.
    let (l1, l2) = loads();
    a.cli_ok(&["deploy", "web", "v2", "--detach"], 0);
    let st = a.wait_status("v2 taking a canary's share", |st| {
        st["weights"]["v2"].as_u64().unwrap_or(0) > 0 && st["deployment"]["finished_at"].is_null()
    });
    let deployment = st["deployment"]["id"].as_str().unwrap().to_string();
    // The record is in the swarm's store, on the app's holder service.
    let (_, labels) = services
        .list()
        .into_iter()
        .find(|(n, _)| n == &format!("{state_name}-state-web"))
        .expect("no record holder for app web");
    assert!(
        labels["baton.state.record"].contains(&deployment),
        "{labels:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    a.kill9();
    phase("controller A killed mid-canary");
    b.wait_admin(Duration::from_secs(90));
    phase("controller B took over");
    assert!(
        b.serve_log().contains("stopped renewing it; taking over"),
        "{}",
        common::tail(&b.serve_log(), 30)
    );
    let stable = resumed(&b, "B", &deployment, 120);
    phase(&format!(
        "deployment {deployment} finished under B (stable {stable})"
    ));
    f1.wait_serving(&stable);
    f2.wait_serving(&stable);
    std::thread::sleep(Duration::from_millis(500));
    phase(&no_failed("controller killed", (l1, l2), &b.serve_log()));
    wait_services(&owner, &stable, 60);

    // 2. A comes back as the standby (its own store now stale); then B's whole node is
    // lost mid-canary: B killed and node3's dockerd stopped (its tasks stop with it).
    let from = a.serve_log().len();
    a.spawn_serve();
    follower::wait_for("controller A standing by", || {
        log_since(&a, from)
            .contains("another controller holds the lease")
            .then_some(())
    });
    let target = if stable == "v1" { "v2" } else { "v1" };
    let (l1, l2) = loads();
    b.cli_ok(&["deploy", "web", target, "--detach"], 0);
    let st = b.wait_status(&format!("{target} taking a canary's share"), |st| {
        st["weights"][target].as_u64().unwrap_or(0) > 0 && st["deployment"]["finished_at"].is_null()
    });
    let deployment = st["deployment"]["id"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(500));
    b.kill9();
    lab.node("stop", "node3");
    phase("node3 lost (controller B killed, its dockerd stopped) mid-canary");
    a.wait_admin(Duration::from_secs(90));
    phase("controller A took over");
    let stable = resumed(&a, "A", &deployment, 240);
    phase(&format!(
        "deployment {deployment} finished under A (stable {stable})"
    ));
    f1.wait_serving(&stable);
    f2.wait_serving(&stable);
    let st = a.wait_status_within(
        Duration::from_secs(240),
        "3 healthy instances of the stable version",
        |st| {
            let instances = st["instances"].as_array().unwrap();
            instances.len() == 3 && instances.iter().all(|i| i["version"] == stable.as_str())
        },
    );
    phase(&format!(
        "instances after node3 was lost: {}",
        st["instances"]
    ));
    std::thread::sleep(Duration::from_millis(500));
    phase(&no_failed("node3 lost", (l1, l2), &a.serve_log()));
    wait_services(&owner, &stable, 120);

    // node3 back: no task of a removed service runs there.
    lab.node("start", "node3");
    let names = services_of(&owner);
    follower::wait_for("node3's old task containers to be removed", || {
        let out = std::process::Command::new("docker")
            .args(["-H", &format!("unix://{}", sock3.display())])
            .args([
                "ps",
                "-a",
                "--format",
                "{{.Label \"com.docker.swarm.service.name\"}}",
            ])
            .output()
            .unwrap();
        let left: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|s| s.starts_with("web-") && !names.iter().any(|n| n == s))
            .map(str::to_string)
            .collect();
        left.is_empty().then_some(())
    });
    phase("node3 back, nothing of the removed services on it");

    // 3. A controller frozen past its lease (a paused VM, a process cut off) finds, when
    // it runs again, that a standby took over: it stops acting and exits, saying why.
    // The standby this time runs on node1 (node3's container went with its dockerd).
    let mut c = common::Baton::configure_in_netns(
        anchor1.netns(),
        anchor1.ip,
        common::free_port(),
        &config,
    );
    c.stop_instances = false;
    c.spawn_serve();
    follower::wait_for("controller C standing by", || {
        c.serve_log()
            .contains("another controller holds the lease")
            .then_some(())
    });
    let (l1, l2) = loads();
    let frozen = a.server_pid().unwrap().to_string();
    signal("-STOP", &frozen);
    phase("controller A frozen");
    c.wait_admin(Duration::from_secs(90));
    phase("controller C took over");
    signal("-CONT", &frozen);
    let exited = a.wait_exit(Duration::from_secs(60));
    phase(&format!("controller A woke up and exited: {exited}"));
    assert!(!exited.success(), "{}", common::tail(&a.serve_log(), 20));
    assert!(
        a.serve_log().contains("lost the controller lease"),
        "{}",
        common::tail(&a.serve_log(), 20)
    );
    let st = c.wait_status_within(
        Duration::from_secs(60),
        "C serving the stable version",
        |st| st["instances"].as_array().unwrap().len() == 3,
    );
    assert_eq!(st["stable_version"], stable.as_str(), "{st:#}");
    f1.wait_serving(&stable);
    f2.wait_serving(&stable);
    std::thread::sleep(Duration::from_millis(500));
    phase(&no_failed(
        "controller frozen past its lease",
        (l1, l2),
        &c.serve_log(),
    ));
    wait_services(&owner, &stable, 60);
    drop((f1, f2));
    drop(b);
    drop(a);
    drop(c);
    // The instances outlive the controllers (the next one to hold the lease adopts them);
    // the test removes them and the state services.
    let left = services_of(&owner);
    assert_eq!(left.len(), 3, "{left:?}");
    drop(services);
    wait_no_services(&owner, "after the test removed them");
    drop((anchor1, anchor2, anchor3));
    drop(managers);
}
