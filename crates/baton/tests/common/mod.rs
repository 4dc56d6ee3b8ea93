//! End-to-end harness: a real `baton serve` process on free ports with the bundled sample
//! app as the process runtime's command, the real CLI, and load through the proxy.
//! Everything a test starts is stopped when the `Baton` is dropped, even on failure.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BATON: &str = env!("CARGO_BIN_EXE_baton");

pub struct Baton {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub proxy: SocketAddr,
    server: Option<Child>,
    /// `baton serve` runs in this network namespace (`nsenter --net=PATH`) when set.
    netns: Option<PathBuf>,
    /// Set in `baton serve`'s environment (e.g. `DOCKER_HOST`).
    pub env: Vec<(String, String)>,
    /// `baton serve --stop-instances` (the default here: nothing outlives the test).
    pub stop_instances: bool,
}

/// The baton binary to run in the network namespace `netns` (`nsenter --net=`; `None`:
/// this one), its stderr appended to `log`, its stdout discarded.
pub fn baton_in(netns: Option<&std::path::Path>, log: &std::path::Path) -> Command {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut command = match netns {
        Some(netns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", netns.display())).arg(BATON);
            c
        }
        None => Command::new(BATON),
    };
    command.stdout(Stdio::null()).stderr(log);
    command
}

/// A port for a listener the test will start (baton's proxy, TLS or admin listener, a
/// fake upstream): the next bindable one of a port block this test process holds (see
/// `port_range`). Not one the kernel hands out for port 0: those come from the ephemeral
/// range, where another test's outgoing connection can take the port between this call
/// and the bind (a test failed on "Address already in use" that way).
pub fn free_port() -> u16 {
    use std::sync::Mutex;
    static NEXT: Mutex<Option<(u32, u32)>> = Mutex::new(None);
    let mut next = NEXT.lock().unwrap();
    loop {
        let (port, end) = match *next {
            Some((port, end)) if port <= end => (port, end),
            _ => {
                let base = claim_block();
                (base, base + 99)
            }
        };
        *next = Some((port + 1, end));
        let port = port as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A block of 100 host ports that no other test process holds, below Linux's ephemeral
/// range (32768+) so outgoing connections cannot take an instance's port meanwhile.
///
/// Every harness (process and Docker tests alike) takes its blocks here: each block is
/// claimed with an exclusive `flock` on a file in the temp dir, and the lock is kept until
/// this test process exits (nextest runs one test per process), so two concurrent tests can
/// never be handed overlapping ranges.
pub fn port_range() -> String {
    let base = claim_block();
    format!("{base}-{}", base + 99)
}

/// Claims a block of 100 ports (see `port_range`) for the rest of this process; returns
/// its first port.
fn claim_block() -> u32 {
    use std::sync::Mutex;
    static HELD: Mutex<Vec<std::fs::File>> = Mutex::new(Vec::new());
    const FIRST: u32 = 20_000;
    const BLOCKS: u32 = 127; // 20000..=32699
    let dir = std::env::temp_dir().join("baton-test-port-blocks");
    std::fs::create_dir_all(&dir).unwrap();
    let start = u32::from(fastrand_u16()) % BLOCKS;
    for i in 0..BLOCKS {
        let base = FIRST + (start + i) % BLOCKS * 100;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("{base}.lock")))
            .unwrap();
        if file.try_lock().is_ok() {
            HELD.lock().unwrap().push(file);
            return base;
        }
    }
    panic!("all {BLOCKS} test port blocks are held by other test processes");
}

fn fastrand_u16() -> u16 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    (t.subsec_nanos() ^ std::process::id()) as u16
}

/// The app section every test starts from; `extra` is appended (more TOML).
pub fn app_config(strategy: &str, replicas: u32, extra: &str) -> String {
    format!(
        r#"[apps.web]
runtime = "process"
command = "'{BATON}' sample-app --port {{port}} --version {{version}} --broken-version bad --crash-version crash"
ports = "{ports}"
replicas = {replicas}
strategy = "{strategy}"
drain_timeout = "3s"
stop_timeout = "3s"

[apps.web.health]
path = "/health"
interval = "100ms"
startup_timeout = "5s"
unhealthy = 2

[apps.web.blue_green]
scale_down_delay = "1s"

[apps.web.canary]
steps = [{{ weight = 20 }}, {{ pause = "1s" }}, {{ weight = 60 }}, {{ pause = "1s" }}]
{extra}"#,
        ports = port_range(),
    )
}

/// `app_config` with per-version faults on the sample app's command line (e.g.
/// `--error-rate-for-version v2=0.3`), these canary steps, and `analysis` as the
/// `[apps.web.analysis]` body.
pub fn analysis_app_config(strategy: &str, faults: &str, steps: &str, analysis: &str) -> String {
    app_config(strategy, 2, "")
        .replace(
            "--crash-version crash",
            &format!("--crash-version crash {faults}"),
        )
        .replace(
            r#"steps = [{ weight = 20 }, { pause = "1s" }, { weight = 60 }, { pause = "1s" }]"#,
            &format!("steps = {steps}"),
        )
        + &format!("\n[apps.web.analysis]\n{analysis}\n")
}

impl Baton {
    /// Writes baton.toml (proxy + admin + store in a temp dir, then `apps`) and starts
    /// `baton serve`, waiting until its admin API answers.
    pub fn start(apps: &str) -> Baton {
        Baton::start_with(|_| String::new(), apps)
    }

    /// `start` with more `[proxy]` keys (and tables after them): `proxy` gets the
    /// test's directory (for certificate files and the like).
    pub fn start_with(proxy: impl FnOnce(&std::path::Path) -> String, apps: &str) -> Baton {
        Baton::start_on(free_port(), proxy, apps)
    }

    /// `start_with` with the HTTP listener on `port` of 127.0.0.1.
    pub fn start_on(
        port: u16,
        proxy: impl FnOnce(&std::path::Path) -> String,
        apps: &str,
    ) -> Baton {
        Baton::start_full(port, proxy, |_| String::new(), apps)
    }

    /// `start_on` with more `[admin]` keys too: `admin` gets the test's directory (to
    /// write a token file there).
    pub fn start_full(
        port: u16,
        proxy: impl FnOnce(&std::path::Path) -> String,
        admin: impl FnOnce(&std::path::Path) -> String,
        apps: &str,
    ) -> Baton {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[proxy]\nlisten = [\"127.0.0.1:{port}\"]\n{proxy}\n\n[admin]\nlisten = \"unix:{d}/baton.sock\"\n{admin}\n\n[store]\npath = \"{d}/state\"\n\n{apps}",
            proxy = proxy(dir.path()),
            admin = admin(dir.path()),
            d = dir.path().display()
        );
        let config = dir.path().join("baton.toml");
        std::fs::write(&config, text).unwrap();
        let mut b = Baton {
            dir,
            config,
            proxy: format!("127.0.0.1:{port}").parse().unwrap(),
            server: None,
            netns: None,
            env: Vec::new(),
            stop_instances: true,
        };
        b.serve();
        b
    }

    /// `start` with `baton serve` in the network namespace `netns` (a container's, to
    /// reach a Swarm overlay), its proxy listening on `port` of every address there; the
    /// test reaches it at `host` (the namespace's address on a network this host is on).
    /// The admin API stays a unix socket in the test's directory.
    pub fn start_in_netns(netns: PathBuf, host: std::net::IpAddr, port: u16, apps: &str) -> Baton {
        let mut b = Baton::configure_in_netns(netns, host, port, apps);
        b.serve();
        b
    }

    /// `start_in_netns` without starting `baton serve` (the caller sets `env`, then
    /// `serve` or `spawn_serve`).
    pub fn configure_in_netns(
        netns: PathBuf,
        host: std::net::IpAddr,
        port: u16,
        apps: &str,
    ) -> Baton {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[proxy]\nlisten = [\"0.0.0.0:{port}\"]\n\n[admin]\nlisten = \"unix:{d}/baton.sock\"\n\n[store]\npath = \"{d}/state\"\n\n{apps}",
            d = dir.path().display()
        );
        let config = dir.path().join("baton.toml");
        std::fs::write(&config, text).unwrap();
        Baton {
            dir,
            config,
            proxy: SocketAddr::new(host, port),
            server: None,
            netns: Some(netns),
            env: Vec::new(),
            stop_instances: true,
        }
    }

    /// Starts `baton serve` and waits (bounded) until its admin API answers.
    pub fn serve(&mut self) {
        self.spawn_serve();
        self.wait_admin(Duration::from_secs(30));
    }

    /// Starts `baton serve` (`--stop-instances`) without waiting for it.
    pub fn spawn_serve(&mut self) {
        let stop = if self.stop_instances {
            &["--stop-instances"][..]
        } else {
            &[]
        };
        let child = baton_in(self.netns.as_deref(), &self.dir.path().join("serve.log"))
            .arg("serve")
            .args(stop)
            .arg("-c")
            .arg(&self.config)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .spawn()
            .unwrap();
        self.server = Some(child);
    }

    /// Waits up to `within` for the admin API to answer; panics with the log if the
    /// server exits first or the time runs out.
    pub fn wait_admin(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if self.cli(&["status", "--json"]).status.success() {
                return;
            }
            if let Some(s) = self
                .server
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("baton serve exited with {s}: {}", self.serve_log());
            }
            assert!(
                Instant::now() < deadline,
                "baton serve did not come up: {}",
                self.serve_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits up to `within` for `baton serve` to exit by itself; its exit status.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        let child = self.server.as_mut().expect("baton serve is not running");
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.server = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "baton serve did not exit within {within:?}: {}",
                tail(&self.serve_log(), 30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The pid of `baton serve` (to signal it).
    pub fn server_pid(&self) -> Option<u32> {
        self.server.as_ref().map(Child::id)
    }

    pub fn serve_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BATON)
            .args(args)
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Starts the CLI in the background (e.g. a `deploy` that waits for its rollout);
    /// stdout is discarded, stderr piped for the caller.
    pub fn cli_spawn(&self, args: &[&str]) -> Child {
        Command::new(BATON)
            .args(args)
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Runs the CLI and asserts the exit code, returning stdout.
    pub fn cli_ok(&self, args: &[&str], code: i32) -> String {
        let out = self.cli(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "baton {args:?} exited {:?}\nstdout: {}\nstderr: {}\nserve log:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.serve_log(), 60)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn status(&self) -> Value {
        let out = self.cli_ok(&["status", "web", "--json"], 0);
        serde_json::from_str(&out).unwrap()
    }

    pub fn history(&self) -> Value {
        let out = self.cli_ok(&["history", "web", "--json"], 0);
        serde_json::from_str(&out).unwrap()
    }

    /// Polls status until `pred` holds (bounded: 60 s).
    pub fn wait_status(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_status_within(Duration::from_secs(60), what, pred)
    }

    /// Polls status until `pred` holds, for up to `within`.
    pub fn wait_status_within(
        &self,
        within: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let st = self.status();
            if pred(&st) {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last status: {st:#}\n{}",
                tail(&self.serve_log(), 60)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The history entry of deployment `id` (panics, showing the history, without one).
    pub fn history_entry(&self, id: &str) -> Value {
        let history = self.history();
        history
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no history entry {id}: {history:#}"))
    }

    pub fn store_path(&self) -> String {
        self.dir.path().join("state").display().to_string()
    }

    /// SIGTERM to the server, and its exit status once it has stopped.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.server.take().expect("baton serve is not running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        child.wait().unwrap()
    }

    /// `kill -9` of the server (instances survive, as after a crash).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Processes started for this baton (by their BATON_OWNER environment).
    pub fn instance_pids(&self) -> Vec<i32> {
        owned_pids(&self.store_path())
    }
}

impl Drop for Baton {
    fn drop(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if c.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        for pid in owned_pids(&self.store_path()) {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
        }
    }
}

pub fn owned_pids(owner: &str) -> Vec<i32> {
    pids_with_env(&[&format!("BATON_OWNER={owner}")])
}

/// Live processes whose environment holds every `KEY=VALUE` of `needles`.
pub fn pids_with_env(needles: &[&str]) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(env) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        // Zombies have an empty environ; only live processes count.
        let vars: Vec<&[u8]> = env.split(|b| *b == 0).collect();
        if needles.iter().all(|n| vars.contains(&n.as_bytes())) {
            pids.push(pid);
        }
    }
    pids
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub fn state(st: &Value) -> &str {
    st["deployment"]["state"].as_str().unwrap_or("")
}

/// The deployment is over (not merely switched): its end state is the app's state.
pub fn finished(st: &Value) -> bool {
    !st["deployment"]["finished_at"].is_null()
}

/// Deploys v1 on `b`, then v2 (by the app's strategy) while `profile` load runs through the
/// proxy. Asserts 0 failed requests, that v2 served, and that the deployment succeeded
/// with only v2 instances, `replicas` of them, left. Returns the load report and the final
/// status. Shared by the process-runtime and Docker runs of the same acceptance.
pub fn deploy_v2_under_load(
    b: &Baton,
    strategy: &str,
    replicas: u32,
    profile: baton_loadgen::Profile,
) -> (baton_loadgen::Report, Value) {
    use baton_loadgen::{Load, LoadSpec};
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let rt = rt();
    let load = rt.block_on(async {
        Load::start(LoadSpec {
            clients: 4,
            profile,
            gap: Duration::from_millis(3),
            ..LoadSpec::new(b.proxy)
        })
    });
    std::thread::sleep(Duration::from_millis(300));
    b.cli_ok(&["deploy", "web", "v2"], 0);
    std::thread::sleep(Duration::from_millis(300));
    let report = rt.block_on(load.stop());
    assert_eq!(
        report.failed,
        0,
        "{strategy}: failed requests: {report:?}\n{}",
        tail(&b.serve_log(), 40)
    );
    assert!(
        report.by_version.get("v2").copied().unwrap_or(0) > 0,
        "{report:?}"
    );
    let st = b.wait_status("old instances gone", |st| {
        st["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["version"] == "v2")
    });
    assert_eq!(st["stable_version"], "v2");
    assert_eq!(state(&st), "succeeded");
    assert_eq!(
        st["instances"].as_array().unwrap().len(),
        replicas as usize,
        "{st:#}"
    );
    (report, st)
}

/// A raw HTTP/1.1 GET of `path` for the app `web` through the proxy, on a connection of
/// its own: the whole response as text.
pub fn proxy_get(b: &Baton, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(b.proxy).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp
}

/// A raw HTTP/1.1 GET over the admin Unix socket.
pub fn admin_get(b: &Baton, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(b.dir.path().join("baton.sock")).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: baton\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// A tmpfs of `size` mounted at a fresh directory, unmounted on drop. The tests that use
/// it need TMPFS_MOUNT, which the prerequisite harness checks before they start.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    pub fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap().keep();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount -t tmpfs at {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Fills the file system holding `dir` until a write fails with ENOSPC (asserted), then
/// the last partial page too; returns the filler file (remove it to free the space).
pub fn fill(dir: &std::path::Path) -> PathBuf {
    use std::io::Write;
    let filler = dir.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    loop {
        if let Err(e) = f.write_all(&chunk) {
            assert_eq!(e.raw_os_error(), Some(28), "{e}");
            break;
        }
    }
    while f.write_all(&[0u8; 64]).is_ok() {}
    let _ = f.sync_all();
    filler
}

/// The serial number of the certificate a TLS listener on 127.0.0.1:`port` presents for
/// `sni` (`serial=…`, as `openssl x509 -serial` prints it).
pub fn served_serial(port: u16, sni: &str) -> String {
    use std::io::Write;
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", sni])
        .stdin(Stdio::null())
        .output()
        .expect("openssl cannot be started; .ci/run installs it");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let start = text
        .find("-----BEGIN CERTIFICATE-----")
        .unwrap_or_else(|| panic!("no certificate for {sni}: {text}"));
    let end = text.find("-----END CERTIFICATE-----").unwrap() + 25;
    let mut child = Command::new("openssl")
        .args(["x509", "-noout", "-serial"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&text.as_bytes()[start..end])
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A test CA (rcgen) that writes `ca.pem` and signs leaf certificates as PEM files, for
/// the HTTPS listener.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl TestCa {
    /// Writes `dir/ca.pem`.
    pub fn new(dir: &std::path::Path) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "baton e2e CA");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join("ca.pem"), cert.pem()).unwrap();
        TestCa { cert, key }
    }

    /// Writes `<name>.pem` and `<name>.key` in `dir`, each renamed over the old file as
    /// certbot and deploy scripts do; `expired`: valid 2020–2021 only.
    pub fn leaf(&self, dir: &std::path::Path, name: &str, hosts: &[&str], expired: bool) {
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(hosts).unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let write = |file: String, text: String| {
            let path = dir.join(file);
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
        };
        write(format!("{name}.pem"), cert.pem());
        write(format!("{name}.key"), key.serialize_pem());
    }
}

/// `[proxy]` keys for an HTTPS listener on 127.0.0.1:`tls_port` serving `app.test`
/// (a certificate from a new `TestCa` in `dir`; clients trust `dir/ca.pem`). The HTTP
/// listener keeps serving (no redirect), so plain and TLS loads can run side by side.
pub fn https_for_app_test(dir: &std::path::Path, tls_port: u16) -> String {
    let ca = TestCa::new(dir);
    ca.leaf(dir, "app", &["app.test"], false);
    format!(
        "tls_listen = [\"127.0.0.1:{tls_port}\"]\n\n[proxy.tls]\nredirect_http = false\n\n[[proxy.tls.certificates]]\ncert = \"{}\"\nkey = \"{}\"\n",
        dir.join("app.pem").display(),
        dir.join("app.key").display()
    )
}

/// Load over HTTPS to `app.test` on 127.0.0.1:`tls_port`: HTTP/1.1 keep-alive, a new
/// connection (and TLS handshake) per request, and h2, by ALPN.
pub fn https_load_specs(dir: &std::path::Path, tls_port: u16) -> Vec<baton_loadgen::LoadSpec> {
    use baton_loadgen::{LoadSpec, Profile, Tls};
    let tls = Tls::new(&dir.join("ca.pem"), "app.test").unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{tls_port}").parse().unwrap();
    [Profile::KeepAlive, Profile::NewConnection, Profile::Http2]
        .into_iter()
        .map(|profile| LoadSpec {
            clients: 1,
            host: "app.test".into(),
            gap: Duration::from_millis(5),
            tls: Some(tls.clone()),
            ..LoadSpec::with_profile(addr, profile)
        })
        .collect()
}
