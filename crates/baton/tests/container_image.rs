//! Baton in a container: docker/build-image.sh builds the `FROM
//! scratch` image from a static baton, and that image runs `--version` and `validate`
//! against a mounted config on the real engine. It needs the `docker` command and a
//! reachable engine: without them it is reported as skipped, and fails in CI (see
//! common/prerequisite.rs).
#![allow(clippy::unwrap_used)]

#[path = "common/prerequisite.rs"]
mod prerequisite;

use prerequisite::{run, tests, Test, DOCKER_CLI};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    run(tests![
        image_built_by_the_script_runs_version_and_validate[&DOCKER_CLI]
    ]);
}

/// Runs a command under coreutils `timeout`, so a stuck engine or build cannot hang the test.
fn bounded(secs: u32, program: &str, args: &[&str]) -> Output {
    Command::new("timeout")
        .arg(secs.to_string())
        .arg(program)
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Removes the test image (and anything run from it) even when an assertion fails.
struct ImageGuard(String);

impl Drop for ImageGuard {
    fn drop(&mut self) {
        let out = bounded(
            60,
            "docker",
            &["ps", "-aq", "--filter", &format!("ancestor={}", self.0)],
        );
        for id in text(&out.stdout).split_whitespace() {
            let _ = bounded(60, "docker", &["rm", "-f", id]);
        }
        let _ = bounded(60, "docker", &["rmi", "-f", &self.0]);
    }
}

fn image_built_by_the_script_runs_version_and_validate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let tag = format!("baton-image-test:{}-{nanos}", std::process::id());
    let _guard = ImageGuard(tag.clone());

    // A debug build keeps this quick; the recipe is the same as for a release image. The
    // first static build of the whole tree takes minutes (.config/nextest.toml gives this
    // test 20), later ones only rebuild what changed; our bound ends first so the guard runs.
    let script = root.join("docker/build-image.sh");
    let out = bounded(
        1100,
        "bash",
        &[script.to_str().unwrap(), "--debug", "--tag", &tag],
    );
    assert!(
        out.status.success(),
        "build-image.sh failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    let out = bounded(60, "docker", &["run", "--rm", &tag, "--version"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("baton {}", env!("CARGO_PKG_VERSION"))),
        "{}",
        text(&out.stdout)
    );

    // The documented layout: config read-only under /etc/baton, state in /var/lib/baton.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("baton.toml"),
        "[store]\npath = \"/var/lib/baton/state\"\n\n[admin]\nlisten = \"unix:/var/lib/baton/baton.sock\"\n\n\
         [apps.web]\nruntime = \"docker\"\nimage = \"myorg/web:{version}\"\ncontainer_port = 8080\n",
    )
    .unwrap();
    let mount = format!("{}:/etc/baton:ro", dir.path().display());
    let out = bounded(
        60,
        "docker",
        &[
            "run",
            "--rm",
            "-v",
            &mount,
            &tag,
            "validate",
            "-c",
            "/etc/baton/baton.toml",
        ],
    );
    assert!(
        out.status.success(),
        "validate in the container failed: {}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("ok (1 app(s): web)"),
        "{}",
        text(&out.stdout)
    );

    // A bad config gives the same exit code inside the container as outside.
    std::fs::write(
        dir.path().join("baton.toml"),
        "[apps.web]\nruntim = \"docker\"\n",
    )
    .unwrap();
    let out = bounded(
        60,
        "docker",
        &[
            "run",
            "--rm",
            "-v",
            &mount,
            &tag,
            "validate",
            "-c",
            "/etc/baton/baton.toml",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("runtime"),
        "{}",
        text(&out.stderr)
    );
}
