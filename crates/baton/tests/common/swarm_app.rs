//! baton on the swarm lab, from the test side: the anchor container in whose network
//! namespace a test runs baton (or another proxy) on the lab's overlay, the swarm app's
//! configuration, and baton's services and their tasks as the manager lists them.
//! Needs the `SWARM_LAB` prerequisite (common/prerequisite.rs).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use crate::swarm_lab::{OVERLAY, OVERLAY_PREFIX};
use bollard::models::{ContainerCreateBody, TaskState};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListServicesOptionsBuilder, ListTasksOptionsBuilder,
};
use bollard::Docker;
use std::collections::HashMap;
use std::time::Duration;

/// The image every container of these tests runs.
pub const IMAGE_V1: &str = "baton-test-sample:v1";

/// A container attached to the lab's overlay, in whose network namespace a baton process
/// runs (`nsenter --net=`) and so reaches the tasks on every node by their overlay
/// addresses, as a baton container would on a real swarm. On the manager it is also on the
/// machine's default bridge, so this host reaches it; on a worker (whose engine has no
/// bridge) only the overlay reaches it. Removed on drop.
pub struct Anchor {
    pub id: String,
    pub pid: i64,
    /// Its address on the default bridge (the manager's anchor), else on the overlay.
    pub ip: std::net::IpAddr,
    /// Its address on the overlay.
    pub overlay_ip: std::net::IpAddr,
    /// The worker engine it runs on (`None`: the manager's).
    pub engine: Option<std::path::PathBuf>,
}

impl Anchor {
    pub async fn start(docker: &Docker, name: &str) -> Anchor {
        Anchor::start_on(docker, None, name).await
    }

    /// On the node of `engine` (a worker's socket; `None`: the manager).
    pub async fn start_on(
        docker: &Docker,
        engine: Option<std::path::PathBuf>,
        name: &str,
    ) -> Anchor {
        let on_worker = engine.is_some();
        let body = ContainerCreateBody {
            image: Some(IMAGE_V1.to_string()),
            labels: Some(HashMap::from([("baton-lab-test".into(), "1".into())])),
            // A worker has no bridge: it joins the overlay at creation.
            host_config: on_worker.then(|| bollard::models::HostConfig {
                network_mode: Some(OVERLAY.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::new().name(name).build();
        let id = docker
            .create_container(Some(options), body)
            .await
            .unwrap()
            .id;
        let unspecified = std::net::IpAddr::from(std::net::Ipv4Addr::UNSPECIFIED);
        let mut a = Anchor {
            id: id.clone(),
            pid: 0,
            ip: unspecified,
            overlay_ip: unspecified,
            engine,
        };
        docker.start_container(&id, None).await.unwrap();
        if !on_worker {
            let connect = bollard::models::NetworkConnectRequest {
                container: id.clone(),
                ..Default::default()
            };
            docker.connect_network(OVERLAY, connect).await.unwrap();
        }
        let c = docker.inspect_container(&id, None).await.unwrap();
        a.pid = c.state.and_then(|s| s.pid).unwrap();
        let networks = c.network_settings.and_then(|n| n.networks).unwrap();
        let ip_on = |net: &str| -> std::net::IpAddr {
            networks
                .get(net)
                .and_then(|e| e.ip_address.as_deref())
                .unwrap_or_else(|| panic!("anchor {name} not on {net}: {networks:?}"))
                .parse()
                .unwrap()
        };
        a.overlay_ip = ip_on(OVERLAY);
        assert!(
            a.overlay_ip.to_string().starts_with(OVERLAY_PREFIX),
            "anchor {name} not on {OVERLAY}: {networks:?}"
        );
        a.ip = if on_worker {
            a.overlay_ip
        } else {
            ip_on("bridge")
        };
        a
    }

    pub fn netns(&self) -> std::path::PathBuf {
        format!("/proc/{}/ns/net", self.pid).into()
    }
}

impl Drop for Anchor {
    fn drop(&mut self) {
        let mut docker = std::process::Command::new("docker");
        if let Some(engine) = &self.engine {
            docker.arg("-H").arg(format!("unix://{}", engine.display()));
        }
        let _ = docker.args(["rm", "-f", &self.id]).output();
    }
}

/// The swarm app `web`: the sample app's images, 3 replicas spread over the lab's
/// nodes; `swarm` is appended to its `[apps.web.swarm]` table (e.g. `constraints`).
pub fn swarm_app(strategy: &str, swarm: &str) -> String {
    format!(
        r#"[apps.web]
runtime = "swarm"
image = "{}:{{version}}"
container_port = 8080
network = "{OVERLAY}"
replicas = 3
strategy = "{strategy}"
drain_timeout = "3s"
stop_timeout = "2s"

[apps.web.swarm]
spread = "node.labels.baton-lab"
{swarm}

[apps.web.health]
path = "/health"
interval = "200ms"
startup_timeout = "60s"
unhealthy = 2

[apps.web.blue_green]
scale_down_delay = "1s"

[apps.web.canary]
steps = [{{ weight = 20 }}, {{ pause = "2s" }}, {{ weight = 60 }}, {{ pause = "2s" }}]
"#,
        crate::docker_common::IMAGE
    )
}

/// The names of baton's services on the swarm (by its owner label).
pub fn services_of(owner: &str) -> Vec<String> {
    crate::common::rt().block_on(async {
        let docker = crate::docker_common::client().await;
        let filters = HashMap::from([("label", vec![format!("baton.owner={owner}")])]);
        let options = ListServicesOptionsBuilder::new().filters(&filters).build();
        docker
            .list_services(Some(options))
            .await
            .unwrap()
            .into_iter()
            .filter_map(|s| s.spec.and_then(|s| s.name))
            .collect()
    })
}

/// Waits (bounded) until baton's services of `owner` are gone; panics naming those left.
pub fn wait_no_services(owner: &str, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let left = services_of(owner);
        if left.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: baton's services still on the swarm after 60 s: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The node of each running task of `service` (desired and actual state running).
pub async fn running_task_nodes(docker: &Docker, service: &str) -> Vec<String> {
    let filters = HashMap::from([
        ("service", vec![service.to_string()]),
        ("desired-state", vec!["running".to_string()]),
    ]);
    let options = ListTasksOptionsBuilder::new().filters(&filters).build();
    docker
        .list_tasks(Some(options))
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING))
        .filter_map(|t| t.node_id)
        .collect()
}

/// Removes a service of the test's own on drop (and waits, bounded, until its task
/// containers on the manager are gone, so `lab/swarm/down` finds none).
pub struct ServiceGuard(pub String);

impl Drop for ServiceGuard {
    fn drop(&mut self) {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            let Ok(docker) = Docker::connect_with_local_defaults() else {
                return;
            };
            let _ = docker.delete_service(&self.0).await;
            let filters = HashMap::from([(
                "label".to_string(),
                vec![format!("com.docker.swarm.service.name={}", self.0)],
            )]);
            for _ in 0..60 {
                let options = bollard::query_parameters::ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&filters)
                    .build();
                match docker.list_containers(Some(options)).await {
                    Ok(list) if list.is_empty() => return,
                    Err(_) => return,
                    Ok(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
        });
    }
}
