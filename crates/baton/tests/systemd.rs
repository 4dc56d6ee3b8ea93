//! baton under systemd's `Type=notify` protocol, with the test as systemd: it binds the
//! datagram socket named in `NOTIFY_SOCKET` and reads what `baton serve` sends. READY=1
//! comes when the proxy listener accepts; after `baton upgrade` the new process sends
//! MAINPID=<its pid> then READY=1; app instances never see the variable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The notify socket and everything started; stops the servers and instances on drop.
struct Systemd {
    dir: tempfile::TempDir,
    config: PathBuf,
    proxy: SocketAddr,
    socket: UnixDatagram,
    first: Child,
    servers: Vec<u32>,
}

impl Systemd {
    fn start() -> Systemd {
        let dir = tempfile::tempdir().unwrap();
        let notify = dir.path().join("notify");
        let socket = UnixDatagram::bind(&notify).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let text = format!(
            "[proxy]\nlisten = [\"127.0.0.1:{port}\"]\n\n[admin]\nlisten = \"unix:{d}/baton.sock\"\n\n[store]\npath = \"{d}/state\"\n\n{apps}",
            d = dir.path().display(),
            apps = app_config("rolling", 1, ""),
        );
        let config = dir.path().join("baton.toml");
        std::fs::write(&config, text).unwrap();
        let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
        let first = Command::new(BATON)
            .args(["serve", "--stop-instances", "-c"])
            .arg(&config)
            .env("NOTIFY_SOCKET", &notify)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let servers = vec![first.id()];
        Systemd {
            dir,
            config,
            proxy: format!("127.0.0.1:{port}").parse().unwrap(),
            socket,
            first,
            servers,
        }
    }

    /// The next datagram (60 s at most).
    fn next(&self) -> String {
        let mut buf = [0u8; 4096];
        let n = self
            .socket
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no sd_notify message ({e}): {}", self.log()));
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Datagrams until one has `line`; returns it.
    fn until(&self, line: &str) -> String {
        loop {
            let m = self.next();
            eprintln!("sd_notify: {m:?}");
            if m.lines().any(|l| l == line || l.starts_with(line)) {
                return m;
            }
        }
    }

    fn log(&self) -> String {
        tail(
            &std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default(),
            30,
        )
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(BATON)
            .args(args)
            .arg("-c")
            .arg(&self.config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "baton {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn store(&self) -> String {
        self.dir.path().join("state").display().to_string()
    }
}

impl Drop for Systemd {
    fn drop(&mut self) {
        for pid in &self.servers {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let _ = self.first.wait();
        for pid in owned_pids(&self.store()) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// One plain HTTP/1.1 request through the proxy; the status line and the body.
fn get(proxy: SocketAddr) -> String {
    let mut s = std::net::TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Field 3 is the state; a zombie has exited.
    !stat.is_empty()
        && stat
            .rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
}

fn environ_has(pid: i32, var: &str) -> bool {
    let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    env.split(|b| *b == 0)
        .any(|kv| kv.starts_with(format!("{var}=").as_bytes()))
}

#[test]
fn ready_after_the_listener_accepts_and_the_new_main_pid_after_an_upgrade() {
    let mut sd = Systemd::start();
    let ready = sd.until("READY=1");
    assert!(!ready.contains("MAINPID="), "{ready:?}");
    assert!(
        ready.contains(&format!("STATUS=serving on http://{}", sd.proxy)),
        "{ready:?}"
    );
    // READY means the listener accepts: a request is answered at once (no app is
    // deployed yet, so by the proxy itself).
    let answer = get(sd.proxy);
    assert!(answer.starts_with("HTTP/1.1 "), "{answer}");

    sd.cli(&["deploy", "web", "v1"]);
    let instances = owned_pids(&sd.store());
    assert!(!instances.is_empty());
    for pid in &instances {
        assert!(
            !environ_has(*pid, "NOTIFY_SOCKET"),
            "instance {pid} got NOTIFY_SOCKET"
        );
    }

    let old = sd.first.id();
    sd.cli(&["upgrade"]);
    let announced = sd.until("MAINPID=");
    let lines: Vec<&str> = announced.lines().collect();
    let main = lines
        .iter()
        .position(|l| l.starts_with("MAINPID="))
        .unwrap();
    let ready = lines.iter().position(|l| *l == "READY=1");
    assert!(
        ready.is_some_and(|r| r > main),
        "MAINPID then READY=1: {announced:?}"
    );
    let new: u32 = lines[main]["MAINPID=".len()..].parse().unwrap();
    sd.servers.push(new);
    assert_ne!(new, old, "{announced:?}");
    let cmdline = std::fs::read(format!("/proc/{new}/cmdline")).unwrap();
    assert!(
        String::from_utf8_lossy(&cmdline).contains("serve"),
        "pid {new} is not a baton serve"
    );
    assert!(
        environ_has(new as i32, "NOTIFY_SOCKET"),
        "the new process must keep NOTIFY_SOCKET for its own upgrades"
    );
    // The old process finishes its connections and exits; the new one serves.
    let status = sd.first.wait().unwrap();
    assert!(status.success(), "old baton: {status}: {}", sd.log());
    let answer = get(sd.proxy);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(alive(new));

    // A stop: STOPPING=1 from the new main process, which then exits.
    assert!(Command::new("kill")
        .args(["-TERM", &new.to_string()])
        .status()
        .unwrap()
        .success());
    let stopping = sd.until("STOPPING=1");
    assert!(stopping.contains("STATUS=stopping"), "{stopping:?}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while alive(new) {
        assert!(
            Instant::now() < deadline,
            "baton {new} did not stop: {}",
            sd.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
