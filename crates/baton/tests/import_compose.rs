//! `baton import compose` through the real binary: the produced config
//! passes `baton validate`, carries the translated keys, and every compose key it could
//! not translate is named. Fixtures live in tests/fixtures/compose/ (pennyway/ is the
//! seeds/002 setup: was_blue/was_green + rdb + cache, with its .env, deploy.sh and nginx).
//! The end-to-end import on the engine needs the `docker` command and a reachable engine:
//! without them it is reported as skipped, and fails in CI (see common/prerequisite.rs).
#![allow(clippy::unwrap_used)]

#[path = "common/prerequisite.rs"]
mod prerequisite;

#[path = "common/import.rs"]
mod import;

use import::{assert_has, assert_refused, assert_validates, text, BATON};
use prerequisite::{run, tests, Test, DOCKER_CLI};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn main() {
    run(tests![
        seeds_002_blue_green_pair_needs_a_choice_and_says_it_is_one_app,
        seeds_002_was_blue_becomes_one_blue_green_app_that_validates,
        json_result_has_the_toml_and_exactly_the_untranslated_keys,
        every_translatable_key_lands_and_the_rest_is_named,
        a_lone_blue_green_pair_is_imported_without_naming_a_service,
        existing_output_is_kept_unless_forced,
        bad_input_is_a_usage_error_and_writes_nothing,
        imported_blue_green_pair_deploys_and_rolls_back_on_the_engine[&DOCKER_CLI],
    ]);
}

fn fixture(rel: &str) -> String {
    import::fixture("compose", rel)
}

/// The variables the fixtures interpolate, unset for every run.
const COMPOSE_ENV: &[&str] = &[
    "WAS_VERSION",
    "WAS_BLUE_PORT",
    "WAS_GREEN_PORT",
    "COMPOSE_PROJECT_NAME",
];

fn baton(args: &[&str]) -> Output {
    import::baton(args, COMPOSE_ENV)
}

fn import_json(args: &[&str]) -> Value {
    import::import_json("compose", args, COMPOSE_ENV)
}

fn untranslated(v: &Value) -> BTreeSet<String> {
    import::keys(&v["untranslated"])
}

fn seeds_002_blue_green_pair_needs_a_choice_and_says_it_is_one_app() {
    let out = baton(&["import", "compose", &fixture("pennyway/docker-compose.yml")]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(out.stdout.is_empty(), "nothing printed as config");
    for s in ["was_blue, was_green", "rdb", "cache", "one app (was)"] {
        assert!(err.contains(s), "missing {s:?} in: {err}");
    }
}

fn seeds_002_was_blue_becomes_one_blue_green_app_that_validates() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("out.toml");
    let out = baton(&[
        "import",
        "compose",
        &fixture("pennyway/docker-compose.yml"),
        "was_blue",
        "-o",
        out_file.to_str().unwrap(),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(out.stdout.is_empty(), "-o writes the file, not stdout");
    let toml = std::fs::read_to_string(&out_file).unwrap();
    assert_has(
        &toml,
        &[
            "[apps.was]",
            "runtime = \"docker\"",
            "image = \"pennyway/pennyway-was:{version}\"",
            "container_port = 8080",
            "strategy = \"blue_green\"",
            "network = \"pennyway_default\"",
            "listen = [\"0.0.0.0:8080\"]",
            "TZ = \"Asia/Seoul\"",
        ],
    );
    // The secret in .env is named, never copied.
    assert!(!toml.contains("not-a-real-secret"), "{toml}");
    assert!(
        err.contains("DB_PASSWORD") && !err.contains("not-a-real-secret"),
        "{err}"
    );
    assert!(err.contains("was_blue and was_green are one app"), "{err}");
    assert!(err.contains("baton deploy was 1.4.2"), "{err}");
    for key in ["container_name:", "env_file:", "depends_on:"] {
        assert!(err.contains(key), "{key} not reported: {err}");
    }
    let out = baton(&["validate", "-c", out_file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

fn json_result_has_the_toml_and_exactly_the_untranslated_keys() {
    let v = import_json(&[&fixture("pennyway/docker-compose.yml"), "was_green"]);
    assert_eq!(v["app"], "was");
    assert_eq!(v["service"], "was_green");
    assert_eq!(v["current_version"], "1.4.2");
    assert!(v["written"].is_null());
    let expected: BTreeSet<String> = ["container_name", "env_file", "depends_on"]
        .map(String::from)
        .into();
    assert_eq!(untranslated(&v), expected);
    for u in v["untranslated"].as_array().unwrap() {
        assert!(u["why"].as_str().unwrap().len() > 20, "a reason: {u}");
    }
    let toml = v["toml"].as_str().unwrap();
    // Green published 8081 on the host; baton's proxy takes that port over.
    assert!(toml.contains("listen = [\"0.0.0.0:8081\"]"), "{toml}");
    let dir = tempfile::tempdir().unwrap();
    assert_validates(dir.path(), toml);
}

fn every_translatable_key_lands_and_the_rest_is_named() {
    let v = import_json(&[&fixture("full/compose.yaml"), "api"]);
    let toml = v["toml"].as_str().unwrap();
    let data_dir = fixture("full/data");
    assert_has(
        toml,
        &[
            "[apps.api]",
            "image = \"registry.example.com:5000/shop/api:{version}\"",
            "container_port = 8080",
            "listen = [\"127.0.0.1:9000\"]",
            "replicas = 2",
            "network = \"shop-backend\"",
            "command = \"./api --listen 0.0.0.0:8080 --name 'shop api'\"",
            &format!("\"{data_dir}:/srv/data\""),
            "\"shop_uploads:/srv/uploads:ro\"",
            "memory = \"512MiB\"",
            "cpus = 0.5",
            "pull = \"missing\"",
            "stop_timeout = \"90s\"",
            "RUST_LOG = \"info\"",
            "WORKERS = \"4\"",
            "DEBUG = \"false\"",
            "path = \"/healthz\"",
            "interval = \"10s\"",
            "timeout = \"3s\"",
            "unhealthy = 5",
            "startup_timeout = \"70s\"",
        ],
    );
    assert_eq!(v["current_version"], "2.3.1");
    let expected: BTreeSet<String> = [
        "build",
        "container_name",
        "depends_on",
        "deploy.resources.reservations",
        "deploy.update_config",
        "env_file",
        "environment.API_TOKEN",
        "labels",
        "logging",
        "ports[1]",
        "ports[2]",
        "restart",
        "volumes[2]",
    ]
    .map(String::from)
    .into();
    assert_eq!(untranslated(&v), expected);
    let dir = tempfile::tempdir().unwrap();
    assert_validates(dir.path(), toml);
}

fn a_lone_blue_green_pair_is_imported_without_naming_a_service() {
    let v = import_json(&[&fixture("pair-only.yml")]);
    assert_eq!(v["app"], "app");
    let toml = v["toml"].as_str().unwrap();
    assert_has(
        toml,
        &[
            "image = \"myorg/app:{version}\"",
            "container_port = 3000",
            "strategy = \"blue_green\"",
            "path = \"/ready\"",
        ],
    );
    assert!(untranslated(&v).is_empty(), "{v}");
    let dir = tempfile::tempdir().unwrap();
    assert_validates(dir.path(), toml);
}

fn existing_output_is_kept_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("baton.toml");
    std::fs::write(&out_file, "# mine\n").unwrap();
    let args = |force: bool| {
        let mut a = vec![
            "import".to_string(),
            "compose".into(),
            fixture("pair-only.yml"),
            "-o".into(),
            out_file.display().to_string(),
        ];
        if force {
            a.push("--force".into());
        }
        a
    };
    let a = args(false);
    let out = baton(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--force"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), "# mine\n");
    let a = args(true);
    let out = baton(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(std::fs::read_to_string(&out_file)
        .unwrap()
        .contains("[apps.app]"));
}

fn bad_input_is_a_usage_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("out.toml");
    let cases: [(Vec<String>, &str); 4] = [
        (
            vec![fixture("bad.yml")],
            "not valid YAML: mapping values are not allowed in this context at line 4",
        ),
        (vec![fixture("missing.yml")], "cannot read compose file"),
        (
            vec![fixture("full/compose.yaml"), "web".into()],
            "no service \"web\"",
        ),
        (vec![fixture("no-port.yml")], "--container-port"),
    ];
    for (args, expect) in cases {
        assert_refused("compose", &args, expect, &out_file, COMPOSE_ENV);
    }
    // The fix the message names works.
    let v = import_json(&[&fixture("no-port.yml"), "--container-port", "7000"]);
    assert!(v["toml"]
        .as_str()
        .unwrap()
        .contains("container_port = 7000"));
}

/// Runs a command under coreutils `timeout`, so a stuck engine or build cannot hang.
fn bounded(secs: u32, program: &str, args: &[&str]) -> Output {
    Command::new("timeout")
        .arg(secs.to_string())
        .arg(program)
        .args(args)
        .env_remove("WAS_VERSION")
        .output()
        .unwrap()
}

/// Kills the test's baton, then removes the containers it owned and the test images,
/// even when an assertion failed.
struct EngineGuard {
    serve: Option<std::process::Child>,
    owner: String,
    images: Vec<String>,
}

impl Drop for EngineGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.serve.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let filter = format!("label=baton.owner={}", self.owner);
        let out = bounded(60, "docker", &["ps", "-aq", "--filter", &filter]);
        for id in text(&out.stdout).split_whitespace() {
            let _ = bounded(60, "docker", &["rm", "-f", id]);
        }
        for image in &self.images {
            let _ = bounded(60, "docker", &["rmi", "-f", image]);
        }
    }
}

/// The statically linked sample app (same flags and target dir as the docker runtime's
/// test images, so one build serves both; not the container-image test's dir, whose
/// long static baton build would hold cargo's lock meanwhile).
fn static_sample_app() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("static-sample");
    let out = Command::new("timeout")
        .args(["600", "cargo", "build", "-p", "sample-app", "--target"])
        .arg("x86_64-unknown-linux-gnu")
        .arg("--target-dir")
        .arg(&target)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    target.join("x86_64-unknown-linux-gnu/debug/sample-app")
}

/// What the import promises end to end: the app written from a was_blue/was_green-style
/// compose file deploys on the real engine, switches blue/green and rolls back.
fn imported_blue_green_pair_deploys_and_rolls_back_on_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let repo = format!("baton-import-test-{}", std::process::id());
    let mut guard = EngineGuard {
        serve: None,
        owner: dir.path().join(".baton/state").display().to_string(),
        images: vec![
            format!("{repo}:base"),
            format!("{repo}:v1"),
            format!("{repo}:v2"),
        ],
    };
    // Images v1 and v2 of the sample app, built locally (the engine has no registry).
    let ctx = dir.path().join("image");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::copy(static_sample_app(), ctx.join("sample-app")).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY sample-app /sample-app\n\
         ENTRYPOINT [\"/sample-app\", \"--host\", \"0.0.0.0\", \"--port\", \"8080\"]\n",
    )
    .unwrap();
    let base = format!("{repo}:base");
    let out = bounded(
        120,
        "docker",
        &["build", "-q", "-t", &base, ctx.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    for v in ["v1", "v2"] {
        std::fs::write(
            ctx.join("Dockerfile"),
            format!("FROM {base}\nCMD [\"--version\", \"{v}\"]\n"),
        )
        .unwrap();
        let tag = format!("{repo}:{v}");
        let out = bounded(
            120,
            "docker",
            &["build", "-q", "-t", &tag, ctx.to_str().unwrap()],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
    }

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let service = |colour: &str| {
        format!(
            "  web_{colour}:\n    container_name: web_{colour}\n    image: {repo}:${{WEB_VERSION}}\n    \
             ports:\n      - \"127.0.0.1:{port}:8080\"\n    healthcheck:\n      \
             test: [\"CMD\", \"curl\", \"-f\", \"http://localhost:8080/health\"]\n      interval: 1s\n    \
             restart: always\n"
        )
    };
    let compose = dir.path().join("docker-compose.yml");
    std::fs::write(
        &compose,
        format!("services:\n{}{}", service("blue"), service("green")),
    )
    .unwrap();
    std::fs::write(dir.path().join(".env"), "WEB_VERSION=v1\n").unwrap();
    let config = dir.path().join("baton.toml");
    let c = config.to_str().unwrap();
    let out = baton(&["import", "compose", compose.to_str().unwrap(), "-o", c]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("baton deploy web v1"),
        "{}",
        text(&out.stderr)
    );

    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    guard.serve = Some(
        Command::new(BATON)
            .args(["serve", "-c", c])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let serve_log = || std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
    let get = || {
        let out = bounded(10, "curl", &["-s", &format!("http://127.0.0.1:{port}/")]);
        text(&out.stdout)
    };
    // Wait (bounded) until the server's admin API answers.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while bounded(10, BATON, &["-c", c, "status"]).status.code() != Some(0) {
        assert!(
            std::time::Instant::now() < deadline,
            "baton never answered:\n{}",
            serve_log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    for v in ["v1", "v2"] {
        let out = bounded(120, BATON, &["-c", c, "deploy", "web", v]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "deploy {v}: {}\n{}",
            text(&out.stderr),
            serve_log()
        );
        assert_eq!(get().trim(), v);
    }
    let out = bounded(60, BATON, &["-c", c, "rollback", "web"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(get().trim(), "v1");
}
