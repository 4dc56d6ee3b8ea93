//! The multi-node Docker Swarm lab from the test side: `SwarmLab::up()` brings up
//! `lab/swarm` (3 nodes: this engine as manager, two worker dockerds in network
//! namespaces, the attachable overlay `baton-lab`) and `Drop` takes it down again when the
//! last test process using it is done.
//!
//! nextest runs every test in a process of its own, and several test binaries at once, so
//! the bookkeeping is across processes: every `up`, `down` and `load-image` runs under one
//! `flock` (`/run/lock/baton-swarm-lab.lock`, the one the scripts take themselves), and
//! each user of the lab is a file `PID-STARTTIME-N` in `/run/lock/baton-swarm-lab.users/`.
//! The last user to leave runs `down`, unless the lab was already up before the first
//! user came (brought up by hand or by a script: then it stays as it was found). A user
//! that died without leaving (SIGKILL, a nextest timeout) is pruned by the next one to come
//! or go; `.ci/run` runs `lab/swarm/down` on exit as the last safety net.
//! Needs the `SWARM_LAB` prerequisite (common/prerequisite.rs).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The lab's attachable overlay network (`lab/swarm/lib.sh`'s `LAB_OVERLAY`).
pub const OVERLAY: &str = "baton-lab";
/// Its subnet: every task and container on it has an address in here.
pub const OVERLAY_PREFIX: &str = "10.231.96.";
/// Where `lab/swarm/up` keeps the lab's state and the workers' sockets.
const LAB_DIR: &str = "/run/baton-swarm-lab";
const LOCK: &str = "/run/lock/baton-swarm-lab.lock";
const USERS: &str = "/run/lock/baton-swarm-lab.users";
/// In `USERS`: `harness` when a test brought the lab up (so the last user takes it down),
/// `outside` when it was up before any test came.
const OWNER: &str = "owner";

/// One node of the lab.
#[derive(Debug, Clone)]
pub struct LabNode {
    /// The Swarm node ID.
    pub id: String,
    /// Its `baton-lab` node label: `node1` (the manager), `node2`, `node3`.
    pub name: String,
    /// Its address on the lab bridge.
    pub addr: String,
    /// Whether `docker node ls` says Ready.
    pub ready: bool,
    /// The engine socket of a worker; `None` for the manager (the machine's own engine).
    pub socket: Option<PathBuf>,
}

/// A test's hold on the running lab; dropping it leaves (and takes the lab down when this
/// was the last user and a test brought it up).
pub struct SwarmLab {
    user: PathBuf,
    nodes: Vec<LabNode>,
}

impl SwarmLab {
    /// Brings the lab up (or joins it when it is up) and waits for 3 Ready nodes.
    pub fn up() -> SwarmLab {
        let lock = Lock::take();
        prune_dead_users();
        let was_up = lab_complete();
        if live_users().is_empty() {
            let previous = std::fs::read_to_string(Path::new(USERS).join(OWNER)).ok();
            let owner = match (was_up, previous.as_deref().map(str::trim)) {
                (false, _) | (true, Some("harness")) => "harness",
                (true, _) => "outside",
            };
            std::fs::create_dir_all(USERS).unwrap();
            std::fs::write(Path::new(USERS).join(OWNER), owner).unwrap();
        }
        script("up", &[]);
        let user = register_user();
        drop(lock);
        let nodes = crate::common::rt().block_on(nodes());
        SwarmLab { user, nodes }
    }

    /// The three nodes, in label order (node1 = manager first).
    pub fn nodes(&self) -> &[LabNode] {
        &self.nodes
    }

    /// The workers' engine sockets (node2, node3).
    pub fn worker_sockets(&self) -> Vec<PathBuf> {
        self.nodes.iter().filter_map(|n| n.socket.clone()).collect()
    }

    /// Copies `image` from the manager's engine onto every worker (`lab/swarm/load-image`).
    pub fn load_image(&self, image: &str) {
        let _lock = Lock::take();
        script("load-image", &[image]);
    }

    /// `lab/swarm/node ACTION NODE` (promote, demote, stop or start node2 or node3);
    /// panics with its output when it fails.
    pub fn node(&self, action: &str, node: &str) {
        let _lock = Lock::take();
        script("node", &[action, node]);
    }

    /// Makes node2 and node3 managers until the guard is dropped (3 managers: the swarm
    /// keeps its quorum when one node is lost). Dropping it starts a stopped node's
    /// dockerd again and makes both workers, as the other lab tests expect.
    pub fn managers(&self) -> Managers<'_> {
        for n in ["node2", "node3"] {
            self.node("promote", n);
        }
        Managers { lab: self }
    }
}

/// See [`SwarmLab::managers`].
pub struct Managers<'a> {
    lab: &'a SwarmLab,
}

impl Managers<'_> {
    /// Whether NODE's dockerd is running (its pidfile names a live process).
    pub fn running(node: &str) -> bool {
        std::fs::read_to_string(Path::new(LAB_DIR).join(node).join("docker.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
    }
}

impl Drop for Managers<'_> {
    fn drop(&mut self) {
        let _lock = Lock::take();
        for n in ["node2", "node3"] {
            if !Managers::running(n) {
                let out = run_script("node", &["start", n]);
                if !out.status.success() {
                    eprintln!(
                        "lab/swarm/node start {n} failed:\n{}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            }
        }
        for n in ["node2", "node3"] {
            let out = run_script("node", &["demote", n]);
            if !out.status.success() {
                eprintln!(
                    "lab/swarm/node demote {n} failed:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let _ = &self.lab;
    }
}

impl Drop for SwarmLab {
    fn drop(&mut self) {
        let _lock = Lock::take();
        let _ = std::fs::remove_file(&self.user);
        prune_dead_users();
        if !live_users().is_empty() {
            return;
        }
        let owner = std::fs::read_to_string(Path::new(USERS).join(OWNER)).unwrap_or_default();
        if owner.trim() != "harness" {
            return;
        }
        let out = run_script("down", &[]);
        if out.status.success() {
            let _ = std::fs::remove_file(Path::new(USERS).join(OWNER));
            let _ = std::fs::remove_dir(USERS);
        } else {
            eprintln!(
                "lab/swarm/down failed; run it by hand:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// The lab's cross-process lock, held while this value lives.
struct Lock(File);

impl Lock {
    /// Waits (bounded) for the lock: its holders run `up`, `down` or `load-image`, each
    /// bounded itself.
    fn take() -> Lock {
        std::fs::create_dir_all("/run/lock").unwrap();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(LOCK)
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(900);
        loop {
            if file.try_lock().is_ok() {
                return Lock(file);
            }
            assert!(
                Instant::now() < deadline,
                "{LOCK} was held by another process for 900 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn lab_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../lab/swarm")
        .join(name)
}

/// Runs a lab script; the caller holds the lock, which the script is told.
fn run_script(name: &str, args: &[&str]) -> std::process::Output {
    Command::new("bash")
        .arg(lab_script(name))
        .args(args)
        .env("BATON_SWARM_LAB_LOCKED", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run lab/swarm/{name}: {e}"))
}

fn script(name: &str, args: &[&str]) {
    let out = run_script(name, args);
    assert!(
        out.status.success(),
        "lab/swarm/{name} {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn lab_complete() -> bool {
    std::fs::read_to_string(Path::new(LAB_DIR).join("state"))
        .is_ok_and(|s| s.lines().any(|l| l == "complete=1"))
}

/// This process's start time (field 22 of `/proc/PID/stat`), so a reused PID is not
/// mistaken for a live user.
fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')')? + 2..];
    after.split_whitespace().nth(19).map(str::to_string)
}

fn register_user() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    let started = start_time(pid).expect("own /proc/PID/stat");
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::fs::create_dir_all(USERS).unwrap();
    let path = Path::new(USERS).join(format!("{pid}-{started}-{n}"));
    File::create(&path).unwrap();
    path
}

fn live_users() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(USERS) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n != OWNER))
        .collect()
}

/// Removes the user files of processes that are gone.
fn prune_dead_users() {
    for path in live_users() {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let mut parts = name.splitn(3, '-');
        let pid = parts.next().and_then(|p| p.parse::<u32>().ok());
        let started = parts.next();
        let alive = pid.is_some_and(|pid| start_time(pid).as_deref() == started);
        if !alive {
            let _ = std::fs::remove_file(&path);
        }
    }
}

async fn nodes() -> Vec<LabNode> {
    let docker = crate::docker_common::client().await;
    let mut nodes: Vec<LabNode> = docker
        .list_nodes(None)
        .await
        .unwrap()
        .into_iter()
        .map(|n| {
            let name = n
                .spec
                .and_then(|s| s.labels)
                .and_then(|l| l.get("baton-lab").cloned())
                .unwrap_or_default();
            let status = n.status.unwrap_or_default();
            let socket =
                (name != "node1").then(|| Path::new(LAB_DIR).join(&name).join("docker.sock"));
            LabNode {
                id: n.id.unwrap_or_default(),
                ready: status.state == Some(bollard::models::NodeState::READY),
                addr: status.addr.unwrap_or_default(),
                name,
                socket,
            }
        })
        .collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    nodes
}

/// `GET path` on an engine's unix socket, the body as JSON. For what bollard's typed
/// models leave out: its `Task` has no `NetworksAttachments` (the Engine API's swagger
/// does not list it, though the engine sends it).
pub fn engine_get_json(socket: &Path, path: &str) -> serde_json::Value {
    let mut stream = std::os::unix::net::UnixStream::connect(socket)
        .unwrap_or_else(|e| panic!("connect {}: {e}", socket.display()));
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // HTTP/1.0: the engine answers without chunking and closes the connection.
    write!(stream, "GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n").unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "GET {path} on {}: {head}\n{body}",
        socket.display()
    );
    serde_json::from_str(body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// The manager's (this machine's) engine socket.
pub fn manager_socket() -> PathBuf {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"))
}
