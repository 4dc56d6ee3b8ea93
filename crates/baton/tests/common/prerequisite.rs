//! Tests that need something from outside the repository (a Docker Engine, a Prometheus
//! binary, pebble, permission to mount a tmpfs) say so when it is missing: they never pass
//! without it.
//!
//! A test binary with such tests runs under this harness (`harness = false` for it in
//! `crates/baton/Cargo.toml`; `libtest-mimic` underneath) and lists its tests in `main`
//! with `tests![...]`, each with the prerequisites it needs:
//!
//! ```ignore
//! fn main() {
//!     run(tests![plain_test, engine_test[&DOCKER_ENGINE]]);
//! }
//! ```
//!
//! The rule for a test whose prerequisite is missing:
//!
//! - with `CI=true` (CI runs `bash .ci/run` so) it runs and FAILS at its start, naming what
//!   is missing, why, and how `.ci/run` provides it;
//! - elsewhere it is listed as ignored, so nextest reports it as SKIPPED (and `cargo test`
//!   as ignored), never as passed. `cargo nextest run --run-ignored all` runs it anyway,
//!   and it then fails with the same message.
//!
//! The prerequisites are checked each time the binary lists its tests (nextest lists every
//! binary at the start of every run), so starting Docker or installing Prometheus counts
//! from the next run on, without a rebuild. A test that runs checks its prerequisites
//! again first: one that went away between listing and running fails the test.
//!
//! A test function registered nowhere is dead code, which clippy (`-D warnings`) refuses,
//! so no test can be dropped from a binary by forgetting to list it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// Something a test needs that the repository does not contain.
pub struct Prerequisite {
    /// What it is, as the messages name it.
    pub what: &'static str,
    /// How `.ci/run` makes sure it is there.
    pub in_ci: &'static str,
    /// `Err(why)` when it is missing on this machine.
    check: fn() -> Result<(), String>,
}

/// The Docker Engine API, at `DOCKER_HOST` or the default socket, answers a ping.
pub static DOCKER_ENGINE: Prerequisite = Prerequisite {
    what: "a reachable Docker Engine",
    in_ci: ".ci/run installs docker.io when there is no `docker` command, starts the \
            service when `docker info` fails, and stops with an error if it still fails",
    check: docker_engine,
};

/// The `docker` command reaches the engine (`docker info` succeeds).
pub static DOCKER_CLI: Prerequisite = Prerequisite {
    what: "the `docker` command with a reachable Docker Engine",
    in_ci: ".ci/run installs docker.io when there is no `docker` command, starts the \
            service when `docker info` fails, and stops with an error if it still fails",
    check: docker_cli,
};

/// A `prometheus` executable on `PATH`.
pub static PROMETHEUS: Prerequisite = Prerequisite {
    what: "a `prometheus` binary on PATH",
    in_ci: ".ci/run installs the Debian package prometheus when the command is missing",
    check: prometheus_check,
};

/// `pebble` (Let's Encrypt's test CA) and `pebble-challtestsrv` (its DNS) on `PATH`.
pub static PEBBLE: Prerequisite = Prerequisite {
    what: "the `pebble` and `pebble-challtestsrv` binaries on PATH",
    in_ci: ".ci/run installs the Debian package pebble when the command is missing",
    check: pebble_check,
};

/// Permission to mount a tmpfs (root, or CAP_SYS_ADMIN).
pub static TMPFS_MOUNT: Prerequisite = Prerequisite {
    what: "permission to mount a tmpfs",
    in_ci: "CI runs .ci/run as root, and .ci/run checks that `mount -t tmpfs` works \
            before the tests",
    check: tmpfs_mount,
};

/// A headless Chromium (`chromium`, or `BATON_TEST_CHROMIUM`) for the dashboard tests.
pub static CHROMIUM: Prerequisite = Prerequisite {
    what: "a `chromium` binary (headless browser) on PATH",
    in_ci: ".ci/run installs the Debian package chromium when the command is missing",
    check: chromium_check,
};

/// What the multi-node Swarm lab (`lab/swarm/up`) needs: root, the `docker` command with
/// a reachable engine that is in no swarm the lab did not create, the `dockerd`, `ip`,
/// `nsenter`, `flock`, `iptables` and `unshare` commands, and VXLAN in the kernel (the
/// overlay network between the nodes).
pub static SWARM_LAB: Prerequisite = Prerequisite {
    what: "the multi-node Docker Swarm lab's needs (root, docker and dockerd, iproute2, \
           util-linux, iptables, kernel VXLAN, an engine in no foreign swarm)",
    in_ci: "CI runs .ci/run as root; it installs docker.io, iproute2, util-linux and \
            iptables when their commands are missing and stops with an error when the \
            engine or VXLAN is missing",
    check: swarm_lab_check,
};

/// An `nginx` executable on `PATH` (the swarm lab's stand-in for a service VIP when
/// Swarm's own update is measured).
pub static NGINX: Prerequisite = Prerequisite {
    what: "an `nginx` binary on PATH",
    in_ci: ".ci/run installs the Debian package nginx-light when the command is missing",
    check: nginx_check,
};

/// One test of a binary: its name (the function's), what it needs, and the function.
pub struct Test {
    pub name: &'static str,
    pub needs: Vec<&'static Prerequisite>,
    pub run: fn(),
}

/// `tests![a, b[&DOCKER_ENGINE], c]`: the tests of a binary, named after their functions,
/// each with the prerequisites in brackets. `Test` must be in scope.
macro_rules! tests {
    ($($name:ident $([$($needs:expr),+ $(,)?])?),* $(,)?) => {
        vec![$(Test {
            name: stringify!($name),
            needs: vec![$($($needs),+)?],
            run: $name,
        }),*]
    };
}
pub(crate) use tests;

/// Whether this is a CI run (`CI=true`, as `.ci/run` is run; `1` counts too).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

impl Prerequisite {
    /// `Some(why)` when it is missing here.
    pub fn missing(&self) -> Option<String> {
        (self.check)().err()
    }

    /// Fails the calling test, saying what is missing and how CI provides it, unless
    /// the prerequisite is there.
    #[track_caller]
    pub fn require(&self, test: &str) {
        if let Some(why) = self.missing() {
            panic!(
                "{test} needs {what}, and it is missing: {why}\n\
                 In CI (CI=true) this is a failure: {in_ci}.\n\
                 Outside CI the test is reported as skipped while it is missing.",
                what = self.what,
                in_ci = self.in_ci,
            );
        }
    }
}

/// Runs the binary's tests under the rule above, with libtest's command line (the one
/// nextest and `cargo test` use), and exits.
pub fn run(tests: Vec<Test>) -> ! {
    let mut args = libtest_mimic::Arguments::from_args();
    // nextest lists the tests (where the skip is decided), then runs each chosen test in
    // its own process as `--exact NAME`, adding `--ignored` for one listed as ignored. A
    // test it chose always runs, whatever this process would decide: deciding again here
    // could turn the test into "0 run", which nextest would count as a pass.
    let chosen_by_nextest = std::env::var_os("NEXTEST").is_some() && !args.list;
    if chosen_by_nextest {
        args.ignored = false;
        args.include_ignored = true;
    }
    let ci = in_ci();
    let mut checked: HashMap<&'static str, Option<String>> = HashMap::new();
    let trials = tests
        .into_iter()
        .map(|test| {
            let mut skip = Vec::new();
            if !ci && !chosen_by_nextest {
                for p in &test.needs {
                    let missing = checked.entry(p.what).or_insert_with(|| p.missing());
                    if let Some(why) = missing {
                        skip.push(format!("{} ({why})", p.what));
                    }
                }
            }
            if !skip.is_empty() && !args.list {
                eprintln!("skipped {}: needs {}", test.name, skip.join(", "));
            }
            let Test { name, needs, run } = test;
            libtest_mimic::Trial::test(name, move || {
                for p in &needs {
                    p.require(name);
                }
                run();
                Ok(())
            })
            .with_ignored_flag(!skip.is_empty())
        })
        .collect();
    libtest_mimic::run(&args, trials).exit()
}

/// The `prometheus` executable on `PATH`.
pub fn prometheus_binary() -> Result<PathBuf, String> {
    binary_on_path("prometheus")
}

/// An executable called `name` in a directory of `PATH`.
pub fn binary_on_path(name: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
        .ok_or_else(|| format!("no executable `{name}` in any directory of PATH"))
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn nginx_check() -> Result<(), String> {
    binary_on_path("nginx").map(|_| ())
}

fn prometheus_check() -> Result<(), String> {
    prometheus_binary().map(|_| ())
}

fn chromium_check() -> Result<(), String> {
    let bin = std::env::var("BATON_TEST_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    if bin.contains('/') {
        return if std::path::Path::new(&bin).is_file() {
            Ok(())
        } else {
            Err(format!("BATON_TEST_CHROMIUM={bin} is not a file"))
        };
    }
    binary_on_path(&bin).map(|_| ())
}

fn pebble_check() -> Result<(), String> {
    binary_on_path("pebble")?;
    binary_on_path("pebble-challtestsrv").map(|_| ())
}

fn docker_engine() -> Result<(), String> {
    let at = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime to reach the engine: {e}"))?;
    rt.block_on(async {
        let docker = bollard::Docker::connect_with_local_defaults()
            .map_err(|e| format!("cannot connect to the engine at {at}: {e}"))?;
        // A bound, not a measurement: an engine that does not answer is missing.
        match tokio::time::timeout(Duration::from_secs(20), docker.ping()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("the engine at {at} does not answer: {e}")),
            Err(_) => Err(format!("the engine at {at} gave no answer in 20 s")),
        }
    })
}

fn docker_cli() -> Result<(), String> {
    let out = Command::new("timeout")
        .args(["30", "docker", "info", "--format", "{{.ServerVersion}}"])
        .output()
        .map_err(|e| format!("cannot run `timeout 30 docker info`: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    Err(match out.status.code() {
        Some(127) => "no `docker` command on PATH".to_string(),
        Some(124) => "`docker info` gave no answer in 30 s".to_string(),
        _ => format!("`docker info` failed: {}", err.trim()),
    })
}

fn tmpfs_mount() -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("no temporary directory: {e}"))?;
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(dir.path())
        .output()
        .map_err(|e| format!("cannot run `mount`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`mount -t tmpfs` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let _ = Command::new("umount").arg(dir.path()).status();
    Ok(())
}

fn swarm_lab_check() -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .unwrap_or("?");
    if euid != "0" {
        return Err(format!(
            "not root (effective uid {euid}): the lab makes network namespaces, a bridge \
             and daemons"
        ));
    }
    for tool in ["dockerd", "ip", "nsenter", "flock", "iptables", "unshare"] {
        binary_on_path(tool)?;
    }
    docker_cli()?;
    // VXLAN, tried in a network namespace of its own that goes away with the command.
    let out = Command::new("unshare")
        .args(["--net", "ip", "link", "add", "vxcheck", "type", "vxlan"])
        .args(["id", "42", "dstport", "4789"])
        .output()
        .map_err(|e| format!("cannot run `unshare --net ip link add ... type vxlan`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "the kernel cannot make a VXLAN device (the overlay network needs one): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let out = Command::new("timeout")
        .args([
            "30",
            "docker",
            "info",
            "--format",
            "{{.Swarm.LocalNodeState}}",
        ])
        .output()
        .map_err(|e| format!("cannot run `docker info`: {e}"))?;
    let swarm = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let labs = std::path::Path::new("/run/baton-swarm-lab/state").exists();
    if swarm != "inactive" && !labs {
        return Err(format!(
            "the engine is in a swarm the lab did not create (state {swarm}); the lab never \
             leaves or changes such a swarm"
        ));
    }
    Ok(())
}
