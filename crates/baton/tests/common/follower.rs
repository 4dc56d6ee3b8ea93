//! baton on several nodes from the test side: a `baton proxy` process that follows a
//! controller (`Follower`), on loopback or in another network namespace (a container's on
//! another Swarm node), the controller's list of proxies, and load and requests sent from
//! inside a network namespace (a thread that entered it: sockets are made in the thread's
//! namespace), for proxies this host cannot reach directly.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use crate::common::{admin_get, tail, Baton};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A `baton proxy` process following the controllers at `controllers`.
pub struct Follower {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    /// Where its proxy listens (from its network namespace when it has one).
    pub proxy: SocketAddr,
    netns: Option<PathBuf>,
    child: Option<Child>,
}

impl Follower {
    /// On loopback, on a free port, named `node2`.
    pub fn start(cluster: SocketAddr, token_file: &Path, apps: &str) -> Follower {
        let port = crate::common::free_port();
        let proxy = format!("127.0.0.1:{port}").parse().unwrap();
        Follower::start_full(None, proxy, proxy, &cluster.to_string(), token_file, apps)
    }

    /// In the network namespace `netns` (`nsenter --net=`), listening on `listen` there,
    /// reached at `reach`.
    pub fn start_full(
        netns: Option<PathBuf>,
        listen: SocketAddr,
        reach: SocketAddr,
        controller: &str,
        token_file: &Path,
        apps: &str,
    ) -> Follower {
        Follower::start_named(
            "node2",
            netns,
            listen,
            reach,
            &[controller.to_string()],
            token_file,
            apps,
        )
    }

    /// `start_full` with its own name and a list of controllers.
    pub fn start_named(
        name: &str,
        netns: Option<PathBuf>,
        listen: SocketAddr,
        reach: SocketAddr,
        controllers: &[String],
        token_file: &Path,
        apps: &str,
    ) -> Follower {
        let dir = tempfile::tempdir().unwrap();
        let controllers = controllers
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let text = format!(
            "[proxy]\nlisten = [\"{listen}\"]\n\n[cluster]\ncontrollers = [{controllers}]\n\
             token_file = \"{token}\"\nname = \"{name}\"\nroutes_cache = \"{d}/routes.json\"\n\n{apps}",
            token = token_file.display(),
            d = dir.path().display(),
        );
        let config = dir.path().join("baton.toml");
        std::fs::write(&config, text).unwrap();
        let mut f = Follower {
            dir,
            config,
            proxy: reach,
            netns,
            child: None,
        };
        f.spawn();
        f
    }

    pub fn spawn(&mut self) {
        let child =
            crate::common::baton_in(self.netns.as_deref(), &self.dir.path().join("proxy.log"))
                .args(["proxy", "-c"])
                .arg(&self.config)
                .spawn()
                .unwrap();
        self.child = Some(child);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("proxy.log")).unwrap_or_default()
    }

    /// A GET of `/` for the app through this proxy: (status line, X-Version).
    pub fn get(&self) -> Option<(String, String)> {
        let proxy = self.proxy;
        in_netns(self.netns.clone(), move || get_version(proxy))
    }

    /// Waits until this proxy answers `/` from `version`.
    pub fn wait_serving(&mut self, version: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some((status, v)) = self.get() {
                if status.contains(" 200 ") && v == version {
                    return;
                }
            }
            if let Some(s) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("baton proxy exited with {s}: {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "the proxy does not serve {version}: {}",
                tail(&self.log(), 30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, and the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        child.wait().unwrap()
    }

    /// Load through this proxy (from its network namespace when it has one).
    pub fn load(&self, spec: impl FnOnce(SocketAddr) -> baton_loadgen::LoadSpec) -> NetnsLoad {
        NetnsLoad::start(self.netns.clone(), spec(self.proxy))
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A GET of `/` for the app `web` at `addr` on a connection of its own.
fn get_version(addr: SocketAddr) -> Option<(String, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let status = resp.lines().next()?.to_string();
    let version = resp
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-version:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default();
    Some((status, version))
}

/// Runs `f` on a thread of its own inside the network namespace `netns` (none: here).
pub fn in_netns<T: Send + 'static>(
    netns: Option<PathBuf>,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        if let Some(path) = netns {
            enter(&path);
        }
        f()
    })
    .join()
    .unwrap()
}

fn enter(netns: &Path) {
    let file = std::fs::File::open(netns).unwrap();
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
        .unwrap_or_else(|e| panic!("setns {}: {e}", netns.display()));
}

/// A load run by a thread inside a network namespace (its own runtime there).
pub struct NetnsLoad {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<baton_loadgen::Report>,
}

impl NetnsLoad {
    pub fn start(netns: Option<PathBuf>, spec: baton_loadgen::LoadSpec) -> NetnsLoad {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            if let Some(path) = netns {
                enter(&path);
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let load = rt.block_on(async { baton_loadgen::Load::start(spec) });
            // The runtime runs the load while this thread waits in it for the stop.
            rt.block_on(async {
                while let Err(std::sync::mpsc::TryRecvError::Empty) = stopped.try_recv() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
            rt.block_on(load.stop())
        });
        NetnsLoad { stop, thread }
    }

    pub fn stop(self) -> baton_loadgen::Report {
        let _ = self.stop.send(());
        self.thread.join().unwrap()
    }
}

/// The proxies the controller lists (`GET /v1/cluster/proxies`).
pub fn proxies(b: &Baton) -> Vec<Value> {
    let body = admin_get(b, "/v1/cluster/proxies");
    let json = body.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str::<Value>(json.trim())
        .unwrap_or_else(|e| panic!("{e}: {body}"))
        .as_array()
        .cloned()
        .unwrap()
}

/// Waits (bounded) until `f` gives a value.
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The `[cluster]` section of a controller listening for proxies on `listen`.
pub fn controller_section(listen: SocketAddr, token_file: &Path) -> String {
    format!(
        "\n[cluster]\nlisten = \"{listen}\"\ntoken_file = \"{}\"\n",
        token_file.display()
    )
}
