//! Docker test helpers: the `FROM scratch` sample-app images (built once per machine from
//! the statically linked sample app, through the Engine API), the docker app section, and
//! a guard that removes every container a test's baton left behind.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use bollard::query_parameters::{
    BuildImageOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const IMAGE: &str = "baton-test-sample";

/// The tags built, each with the lines that follow `FROM` the base image: plain
/// versions, one that exits at start (it is told to listen on an address the container
/// does not have, so it fails before any probe can reach it), one whose health check
/// always fails, and two with an image HEALTHCHECK that passes or never does.
const TAGS: [(&str, &str); 7] = [
    ("v1", r#"CMD ["--version", "v1"]"#),
    ("v2", r#"CMD ["--version", "v2"]"#),
    ("v3", r#"CMD ["--version", "v3"]"#),
    (
        "nobind",
        "ENTRYPOINT [\"/sample-app\", \"--host\", \"192.0.2.1\", \"--port\", \"8080\"]\n\
         CMD [\"--version\", \"nobind\"]",
    ),
    ("sick", r#"CMD ["--version", "sick", "--fail-health"]"#),
    (
        "hcok",
        "CMD [\"--version\", \"hcok\"]\n\
         HEALTHCHECK --interval=1s --timeout=5s --retries=1 CMD [\"/sample-app\", \"--help\"]",
    ),
    (
        "hcbad",
        "CMD [\"--version\", \"hcbad\"]\n\
         HEALTHCHECK --interval=1s --timeout=5s --retries=1 CMD [\"/no-such-check\"]",
    ),
];

pub async fn client() -> Docker {
    Docker::connect_with_local_defaults()
        .unwrap()
        .negotiate_version()
        .await
        .unwrap()
}

/// Builds the test images unless present and made from the current sample app (a
/// label on them carries a hash of its binary, so images an older sample app left on
/// the engine are rebuilt); a file lock keeps parallel tests from building at once.
pub fn ensure_images() {
    let lock =
        std::fs::File::create(std::env::temp_dir().join("baton-test-docker-images.lock")).unwrap();
    lock.lock().unwrap();
    let binary = static_sample_app();
    let bin = std::fs::read(&binary).unwrap();
    let stamp = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        bin.hash(&mut h);
        format!("{:016x}", h.finish())
    };
    let rt = crate::common::rt();
    rt.block_on(async {
        let docker = client().await;
        let mut stale = false;
        for (tag, _) in TAGS {
            let label = docker
                .inspect_image(&format!("{IMAGE}:{tag}"))
                .await
                .ok()
                .and_then(|i| i.config)
                .and_then(|c| c.labels)
                .and_then(|l| l.get(STAMP_LABEL).cloned());
            if label.as_deref() != Some(stamp.as_str()) {
                stale = true;
            }
        }
        if !stale {
            return;
        }
        let base = format!("{IMAGE}:base");
        let dockerfile = format!(
            "FROM scratch\nCOPY sample-app /sample-app\nLABEL {STAMP_LABEL}=\"{stamp}\"\n\
             ENTRYPOINT [\"/sample-app\", \"--host\", \"0.0.0.0\", \"--port\", \"8080\"]\n"
        );
        build(&docker, &base, &dockerfile, Some(("sample-app", &bin))).await;
        for (tag, lines) in TAGS {
            let file = format!("FROM {base}\n{lines}\n");
            build(&docker, &format!("{IMAGE}:{tag}"), &file, None).await;
        }
    });
    drop(lock);
}

/// The label whose value says which sample-app binary an image holds.
const STAMP_LABEL: &str = "baton.test.sample-app";

/// The sample app linked statically (runs in a `FROM scratch` image). It has its own
/// target dir: the container-image test builds a static baton meanwhile, and sharing
/// cargo's lock with that build would stall every Docker test behind it. Cargo makes
/// this a no-op when the binary is up to date.
fn static_sample_app() -> PathBuf {
    let target_dir = Path::new(crate::common::BATON)
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("static-sample");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "-p",
            "sample-app",
            "--target",
            "x86_64-unknown-linux-gnu",
            "--target-dir",
        ])
        .arg(&target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .status()
        .unwrap();
    assert!(status.success(), "static build of sample-app failed");
    target_dir.join("x86_64-unknown-linux-gnu/debug/sample-app")
}

async fn build(docker: &Docker, tag: &str, dockerfile: &str, file: Option<(&str, &[u8])>) {
    let mut entries: Vec<(&str, &[u8], u32)> = vec![("Dockerfile", dockerfile.as_bytes(), 0o644)];
    if let Some((name, data)) = file {
        entries.push((name, data, 0o755));
    }
    let context = tar(&entries);
    let options = BuildImageOptionsBuilder::new()
        .dockerfile("Dockerfile")
        .t(tag)
        .rm(true)
        .build();
    let mut stream = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    while let Some(step) = stream.next().await {
        let info = step.unwrap_or_else(|e| panic!("building {tag}: {e}"));
        if let Some(err) = info.error_detail.and_then(|d| d.message) {
            panic!("building {tag}: {err}");
        }
    }
}

/// A ustar archive of regular files (the build context).
fn tar(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data, mode) in entries {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        let mut field = |at: usize, len: usize, value: u64| {
            let s = format!("{value:0w$o}\0", w = len - 1);
            h[at..at + len].copy_from_slice(s.as_bytes());
        };
        field(100, 8, u64::from(*mode));
        field(108, 8, 0);
        field(116, 8, 0);
        field(124, 12, data.len() as u64);
        field(136, 12, 0);
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// The docker app section (`web`, images `baton-test-sample:{version}`).
pub fn docker_app(strategy: &str, replicas: u32, ports: &str, extra: &str) -> String {
    format!(
        r#"[apps.web]
runtime = "docker"
image = "{IMAGE}:{{version}}"
container_port = 8080
ports = "{ports}"
replicas = {replicas}
strategy = "{strategy}"
drain_timeout = "3s"
stop_timeout = "2s"
{extra}
[apps.web.health]
path = "/health"
interval = "100ms"
startup_timeout = "8s"
unhealthy = 2

[apps.web.blue_green]
scale_down_delay = "1s"

[apps.web.canary]
steps = [{{ weight = 20 }}, {{ pause = "1s" }}, {{ weight = 60 }}, {{ pause = "1s" }}]
"#
    )
}

/// Containers labelled as started by the baton whose store is `owner`: (name, instance).
pub fn containers_of(owner: &str) -> Vec<(String, String)> {
    crate::common::rt().block_on(async {
        let docker = client().await;
        let filters = HashMap::from([("label", vec![format!("baton.owner={owner}")])]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        docker
            .list_containers(Some(options))
            .await
            .unwrap()
            .into_iter()
            .map(|c| {
                let name = c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .unwrap_or_default();
                let instance = c
                    .labels
                    .and_then(|l| l.get("baton.instance").cloned())
                    .unwrap_or_default();
                (name, instance)
            })
            .collect()
    })
}

/// Removes every container of `owner` on drop (after the test's baton is gone).
pub struct ContainerGuard(pub String);

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let owner = self.0.clone();
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
            let Ok(docker) = docker.negotiate_version().await else {
                return;
            };
            let filters = HashMap::from([("label", vec![format!("baton.owner={owner}")])]);
            let options = ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filters)
                .build();
            for c in docker
                .list_containers(Some(options))
                .await
                .unwrap_or_default()
            {
                if let Some(id) = c.id {
                    let force = RemoveContainerOptionsBuilder::new().force(true).build();
                    let _ = docker.remove_container(&id, Some(force)).await;
                }
            }
        });
    }
}

/// A bridge network for one test, removed on drop (declare it before the baton and the
/// container guard, so it goes last).
pub struct NetworkGuard(pub String);

impl NetworkGuard {
    pub fn create(name: &str) -> NetworkGuard {
        crate::common::rt().block_on(async {
            let request = bollard::models::NetworkCreateRequest {
                name: name.to_string(),
                ..Default::default()
            };
            client().await.create_network(request).await.unwrap();
        });
        NetworkGuard(name.to_string())
    }
}

impl Drop for NetworkGuard {
    fn drop(&mut self) {
        let name = self.0.clone();
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            if let Ok(docker) = Docker::connect_with_local_defaults() {
                if let Ok(docker) = docker.negotiate_version().await {
                    let _ = docker.remove_network(&name).await;
                }
            }
        });
    }
}
