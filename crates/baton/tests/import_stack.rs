//! `baton import stack` through the real binary: the apps it writes from a stack file
//! pass `baton validate`, carry the translated keys, every key it could not translate is
//! named, and bad input is refused with nothing written. Fixtures live in
//! tests/fixtures/stack/ (shop/ is a three-service stack: web behind the routing mesh,
//! api inside, postgres). No Docker or swarm is needed.
#![allow(clippy::unwrap_used)]

#[path = "common/import.rs"]
mod import;

use import::{assert_has, assert_refused, assert_validates, keys, text};
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Output;

fn fixture(rel: &str) -> String {
    import::fixture("stack", rel)
}

/// Runs baton without the variable the shop fixture interpolates.
fn baton(args: &[&str]) -> Output {
    import::baton(args, &["WEB_VERSION"])
}

fn import_json(args: &[&str]) -> Value {
    import::import_json("stack", args, &["WEB_VERSION"])
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The lines of `[apps.NAME]` and its subtables, up to the next app or the end.
fn app_section(toml: &str, app: &str) -> String {
    let mut inside = false;
    let mut out = String::new();
    for line in toml.lines() {
        if line.starts_with('[') {
            inside = line == format!("[apps.{app}]") || line.starts_with(&format!("[apps.{app}."));
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(!out.is_empty(), "no [apps.{app}] in:\n{toml}");
    out.trim_end().to_string() + "\n"
}

#[test]
fn shop_stack_becomes_swarm_apps_that_validate() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("out.toml");
    let o = out_file.to_str().unwrap();
    let stack = fixture("shop/stack.yml");
    let out = baton(&["import", "stack", &stack, "--stack", "shop", "-o", o]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(out.stdout.is_empty(), "-o writes the file, not stdout");
    let toml = std::fs::read_to_string(&out_file).unwrap();
    let web = app_section(&toml, "web");
    let expected_web = "[apps.web]
runtime = \"swarm\"
image = \"registry.example.com/shop/web:{version}\"
container_port = 8080
strategy = \"rolling\"   # or blue_green, canary, recreate, ab_test
replicas = 3
network = \"shop_front\"   # the stack's network front
command = \"./web --port 8080\"
memory = \"512MiB\"
cpus = 0.5
stop_timeout = \"30s\"   # compose stop_grace_period

[apps.web.env]
RUST_LOG = \"info\"
API_URL = \"http://api:9000\"

[apps.web.swarm]
constraints = [\"node.role==worker\", \"node.labels.zone!=dmz\"]
spread = \"node.labels.zone\"
secrets = [\"db_password\", \"shop_tls_key_v2\"]   # at /run/secrets/NAME
configs = [\"web_conf\"]   # at /NAME

[apps.web.rolling]
# from deploy.update_config: parallelism 2, order start-first, delay 10s
max_surge = 2
max_unavailable = 0
batch_pause = \"10s\"

[apps.web.health]
# from the healthcheck: CMD curl -f http://localhost:8080/healthz
path = \"/healthz\"
interval = \"10s\"
timeout = \"3s\"
unhealthy = 3   # compose retries
";
    assert_eq!(web, expected_web, "whole file:\n{toml}");
    let api = app_section(&toml, "api");
    assert_has(
        &api,
        &[
            "runtime = \"swarm\"",
            "image = \"registry.example.com/shop/api:{version}\"",
            "container_port = 9000",
            "hosts = [\"api.invalid\"]",
            "network = \"shop_back\"",
            "volumes = [\"shop_uploads:/srv/uploads\"]",
            "max_surge = 0\nmax_unavailable = 1\n",
        ],
    );
    assert!(!api.contains("[apps.api.swarm]"), "{api}");
    assert!(
        !toml.contains("[apps.db"),
        "db has no port: it stays in the stack"
    );
    assert!(
        !toml.contains("[proxy]"),
        "the mesh port is not baton's listener"
    );
    // The env_file's values are named, never copied.
    assert!(!toml.contains("not-a-real-secret") && !err.contains("not-a-real-secret"));
    assert!(
        err.contains("web.env defines LOG_FORMAT, SESSION_KEY"),
        "{err}"
    );
    for s in [
        "imported 2 service(s)",
        "left in the stack:\n  - db: no `ports`",
        "network shop_front is made by `docker stack deploy",
        "with attachable: true",
        "network shop_back (`back` in",
        "docker network create --driver overlay --attachable shop_back",
        "baton deploy web 1.4.2, baton deploy api 2.0.1",
    ] {
        assert!(err.contains(s), "missing {s:?} in:\n{err}");
    }
    let out = baton(&["validate", "-c", o]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("2 app(s): api, web"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn json_names_exactly_the_untranslated_keys_of_each_app() {
    let v = import_json(&[&fixture("shop/stack.yml"), "--stack", "shop"]);
    assert_eq!(v["stack"], "shop");
    let apps = v["apps"].as_array().unwrap();
    let names: Vec<&str> = apps.iter().map(|a| a["app"].as_str().unwrap()).collect();
    assert_eq!(names, ["web", "api"]);
    assert_eq!(
        keys(&apps[0]["untranslated"]),
        set(&[
            "ports[0]",
            "env_file",
            "container_name",
            "restart",
            "deploy.endpoint_mode",
            "deploy.placement.max_replicas_per_node",
            "deploy.resources.reservations",
            "deploy.update_config.monitor",
            "deploy.rollback_config",
            "deploy.restart_policy",
            "deploy.labels",
            "networks.back",
            "secrets[1].target",
            "secrets[1].mode",
        ])
    );
    assert_eq!(
        keys(&apps[1]["untranslated"]),
        set(&["deploy.mode", "networks.back.aliases", "secrets[0]"])
    );
    for a in apps {
        for u in a["untranslated"].as_array().unwrap() {
            assert!(u["why"].as_str().unwrap().len() > 20, "a reason: {u}");
        }
    }
    let why = |app: usize, key: &str| -> String {
        apps[app]["untranslated"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["key"] == key)
            .unwrap()["why"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(why(0, "ports[0]").contains("routing mesh"));
    assert!(why(0, "deploy.endpoint_mode").contains("dnsrr"));
    assert!(why(1, "deploy.mode").starts_with("global:"));
    assert!(why(1, "secrets[0]").contains("docker secret create shop_api_token ./api_token.txt"));
    assert_eq!(v["left_out"][0]["service"], "db");
    assert_eq!(apps[0]["current_version"], "1.4.2");
    assert!(v["written"].is_null());
    let dir = tempfile::tempdir().unwrap();
    assert_validates(dir.path(), v["toml"].as_str().unwrap());
}

#[test]
fn named_services_and_a_given_overlay() {
    let v = import_json(&[
        &fixture("shop/stack.yml"),
        "--service",
        "api",
        "--network",
        "edge-net",
    ]);
    let toml = v["toml"].as_str().unwrap();
    assert_eq!(v["apps"].as_array().unwrap().len(), 1);
    assert!(
        toml.contains("[apps.api]") && !toml.contains("[apps.web]"),
        "{toml}"
    );
    assert!(
        toml.contains("network = \"edge-net\"   # --network"),
        "{toml}"
    );
    assert!(
        !toml.contains("hosts ="),
        "a single app takes every host:\n{toml}"
    );
    // The directory's name is taken as the stack's, and the user told so.
    assert_eq!(v["stack"], "shop");
    let notes = v["notes"].to_string();
    assert!(notes.contains("pass --stack NAME"), "{notes}");
    assert!(notes.contains("--attachable edge-net"), "{notes}");
    assert_eq!(v["left_out"].as_array().unwrap().len(), 0);
    let dir = tempfile::tempdir().unwrap();
    assert_validates(dir.path(), toml);
}

#[test]
fn the_default_network_and_a_mesh_port() {
    let v = import_json(&[&fixture("simple/stack.yml")]);
    let toml = v["toml"].as_str().unwrap();
    assert_has(
        toml,
        &[
            "image = \"myorg/app:{version}\"",
            "container_port = 3000",
            "replicas = 2",
            "network = \"simple_default\"",
            "max_surge = 1\nmax_unavailable = 0\n",
            "path = \"/ready\"",
        ],
    );
    assert_eq!(keys(&v["apps"][0]["untranslated"]), set(&["ports[0]"]));
    let notes = v["notes"].to_string();
    assert!(notes.contains("the stack's default network"), "{notes}");
    assert!(notes.contains("attachable"), "{notes}");
    let dir = tempfile::tempdir().unwrap();
    assert_validates(dir.path(), toml);
}

#[test]
fn existing_output_is_kept_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("baton.toml");
    std::fs::write(&out_file, "# mine\n").unwrap();
    let stack = fixture("simple/stack.yml");
    let o = out_file.to_str().unwrap();
    let out = baton(&["import", "stack", &stack, "-o", o]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--force"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), "# mine\n");
    let out = baton(&["import", "stack", &stack, "-o", o, "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(std::fs::read_to_string(&out_file)
        .unwrap()
        .contains("[apps.app]"));
}

#[test]
fn bad_input_is_a_usage_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("out.toml");
    let shop = fixture("shop/stack.yml");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![fixture("missing.yml")], "cannot read stack file"),
        (vec![fixture("bad.yml")], "is not valid YAML"),
        (
            vec![fixture("not-compose.yml")],
            "is not a compose file: expected a mapping with `services:`",
        ),
        (
            vec![fixture("v2.yml")],
            "is a version 2.4 compose file, and `docker stack deploy` reads version 3 files",
        ),
        (vec![fixture("no-services.yml")], "defines no services"),
        (vec![fixture("build-only.yml")], "service \"web\" in"),
        (
            vec![shop.clone(), "--service".into(), "cart".into()],
            "has no service \"cart\": choose from web, api, db",
        ),
        (
            vec![shop.clone(), "--service".into(), "db".into()],
            "service \"db\": no `ports`, `expose` or health check port",
        ),
        (vec![fixture("no-port.yml")], "no service of"),
        (
            vec![shop.clone(), "--network".into(), " ".into()],
            "--network is empty",
        ),
        (
            vec![shop, "--stack".into(), "my stack".into()],
            "--stack \"my stack\"",
        ),
    ];
    for (args, expect) in cases {
        assert_refused("stack", &args, expect, &out_file, &["WEB_VERSION"]);
    }
    // The errors name the fix.
    let out = baton(&["import", "stack", &fixture("build-only.yml")]);
    assert!(
        text(&out.stderr).contains("set `image:`"),
        "{}",
        text(&out.stderr)
    );
    let out = baton(&["import", "stack", &fixture("v2.yml")]);
    assert!(
        text(&out.stderr).contains("baton import compose"),
        "{}",
        text(&out.stderr)
    );
}
