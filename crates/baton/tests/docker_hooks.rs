//! Release hooks on the real Docker Engine: the hook runs in a one-off container from
//! the new version's image, with the instances' volumes and environment (the sample
//! app's `migrate` on a SQLite file in a volume), is removed after, fails a deploy with
//! nothing changed, and after `kill -9` of baton during it is run again exactly once in
//! a new container told `BATON_HOOK_RERUN=1`. Needs a reachable engine: reported as
//! skipped without one, failed in CI (common/prerequisite.rs).
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/docker.rs"]
mod docker_common;
#[path = "common/prerequisite.rs"]
mod prerequisite;

use baton_loadgen::Profile;
use common::*;
use docker_common::*;
use prerequisite::{run, tests, Test, DOCKER_ENGINE};
use std::path::Path;
use std::time::{Duration, Instant};

fn main() {
    run(tests![
        docker_release_hook_migrates_sqlite_in_a_one_off_container[&DOCKER_ENGINE],
        docker_kill_9_during_the_release_hook_reruns_it_once[&DOCKER_ENGINE],
    ]);
}

/// The docker app with `data` mounted at /data, instances reading `/data/app.db`, and
/// `release` as the release hook.
fn start(strategy: &str, data: &Path, release: &str) -> (ContainerGuard, Baton) {
    ensure_images();
    let extra = format!(
        "volumes = [\"{}:/data\"]\ncommand = \"--version {{version}} --db /data/app.db\"\n\n\
         [apps.web.hooks]\nrelease = \"{release}\"\ntimeout = \"2m\"\n",
        data.display()
    );
    let b = Baton::start(&docker_app(strategy, 2, &port_range(), &extra));
    (ContainerGuard(b.store_path()), b)
}

/// Only the instances' containers are left (the task containers were removed).
fn only_instances(b: &Baton) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left: Vec<String> = containers_of(&b.store_path())
            .into_iter()
            .map(|(_, i)| i)
            .filter(|i| i.ends_with("-release"))
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "task containers left: {left:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn docker_release_hook_migrates_sqlite_in_a_one_off_container() {
    let data = tempfile::tempdir().unwrap();
    let (_guard, b) = start(
        "rolling",
        data.path(),
        "/sample-app migrate --db /data/app.db --fail-for-version v3",
    );
    let (report, _) = deploy_v2_under_load(&b, "rolling", 2, Profile::KeepAlive);
    assert_eq!(report.failed, 0);
    only_instances(&b);
    let users = proxy_get(&b, "/users");
    assert!(users.contains("1 ada ada@example.com"), "{users}");
    let h = b.history_entry("web-2");
    assert_eq!(h["hooks"][0]["state"], "succeeded", "{h:#}");
    let out = h["hooks"][0]["output"].to_string();
    assert!(
        out.contains("schema of /data/app.db is at version 2"),
        "{out}"
    );
    // The first deploy created the schema, the second found nothing to do.
    assert!(out.contains("nothing to do"), "{out}");

    // A hook that fails (the migration refuses v3): nothing changes.
    let before = b.status();
    let out = b.cli(&["deploy", "web", "v3"]);
    assert!(!out.status.success());
    let st = b.status();
    assert_eq!(st["stable_version"], "v2");
    assert_eq!(st["instances"], before["instances"]);
    let h = b.history_entry("web-3");
    assert_eq!(h["outcome"], "failed");
    let reason = h["reason"].as_str().unwrap();
    assert!(
        reason.contains("release hook failed (exit 3)") && reason.contains("simulated failure"),
        "{h:#}"
    );
    assert!(proxy_get(&b, "/").contains("v2"));
    only_instances(&b);
}

fn docker_kill_9_during_the_release_hook_reruns_it_once() {
    let data = tempfile::tempdir().unwrap();
    let go = data.path().join("go");
    std::fs::write(&go, "").unwrap();
    let (_guard, mut b) = start(
        "rolling",
        data.path(),
        "/sample-app migrate --db /data/app.db --wait-for /data/go",
    );
    b.cli_ok(&["deploy", "web", "v1"], 0);
    std::fs::remove_file(&go).unwrap();
    b.cli_ok(&["deploy", "web", "v2", "--detach"], 0);
    let first = wait_task_container(&b, None);
    b.kill9();
    b.serve();
    let second = wait_task_container(&b, Some(&first));
    let env = container_env(&second);
    assert!(
        env.iter().any(|e| e == "BATON_HOOK_RERUN=1"),
        "the re-run is told so: {env:?}"
    );
    std::fs::write(&go, "").unwrap();
    let st = b.wait_status("v2 deployed", |st| {
        st["deployment"]["id"] == "web-2" && finished(st)
    });
    assert_eq!(st["stable_version"], "v2", "{st:#}");
    let h = b.history_entry("web-2");
    assert_eq!(h["hooks"][0]["attempts"], 2, "{h:#}");
    assert_eq!(h["hooks"][0]["state"], "succeeded", "{h:#}");
    only_instances(&b);
}

/// The id of the running `web-2-release` task container (other than `not`).
fn wait_task_container(b: &Baton, not: Option<&str>) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = crate::common::rt().block_on(async {
            let docker = client().await;
            let filters = std::collections::HashMap::from([(
                "label",
                vec![
                    format!("baton.owner={}", b.store_path()),
                    "baton.instance=web-2-release".to_string(),
                ],
            )]);
            let options = bollard::query_parameters::ListContainersOptionsBuilder::new()
                .filters(&filters)
                .build();
            docker
                .list_containers(Some(options))
                .await
                .unwrap()
                .into_iter()
                .filter_map(|c| c.id)
                .find(|id| Some(id.as_str()) != not)
        });
        if let Some(id) = found {
            return id;
        }
        assert!(
            Instant::now() < deadline,
            "no running task container{}\n{}",
            not.map(|_| " after the restart").unwrap_or_default(),
            tail(&b.serve_log(), 40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn container_env(id: &str) -> Vec<String> {
    crate::common::rt().block_on(async {
        let c = client().await.inspect_container(id, None).await.unwrap();
        c.config.and_then(|c| c.env).unwrap_or_default()
    })
}
