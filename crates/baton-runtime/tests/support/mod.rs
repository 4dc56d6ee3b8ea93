//! Shared fixture for process-runtime tests: a runtime on a free port range with its own
//! temporary log directory, and a reaper that SIGKILLs every process group a test started
//! (only if it is still the same process) even when the test fails.

#![allow(dead_code, clippy::unwrap_used)]

use baton_core::PortRange;
use baton_runtime::{
    HandleDetail, InstanceHandle, ProcessRuntime, ProcessSpec, Runtime, RuntimeEvent, StartRequest,
};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Bound for every wait in these tests: long enough for a loaded machine, short enough
/// for a broken runtime to fail instead of hanging.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub struct Fixture {
    pub rt: ProcessRuntime,
    pub events: mpsc::UnboundedReceiver<RuntimeEvent>,
    pub dir: PathBuf,
    pub spec: ProcessSpec,
    reaper: Reaper,
}

impl Fixture {
    pub fn new(command: &str) -> Fixture {
        Self::with(command, |_| {})
    }

    pub fn with(command: &str, tweak: impl FnOnce(&mut ProcessSpec)) -> Fixture {
        let dir = temp_dir();
        let mut spec = ProcessSpec::new(command, dir.join("logs"));
        spec.ports = free_range(10);
        spec.stop_timeout = Duration::from_secs(5);
        tweak(&mut spec);
        let (tx, events) = mpsc::unbounded_channel();
        Fixture {
            rt: ProcessRuntime::new(spec.clone(), tx),
            events,
            dir,
            spec,
            reaper: Reaper::default(),
        }
    }

    /// Starts `id` of app `web` at `version`; the reaper will kill it after the test.
    pub async fn start(&self, id: &str, version: &str) -> InstanceHandle {
        let handle = self.rt.start(req(id, version)).await.unwrap();
        self.reaper.track(&handle);
        handle
    }

    pub async fn next_event(&mut self) -> RuntimeEvent {
        tokio::time::timeout(PATIENCE, self.events.recv())
            .await
            .expect("no runtime event in time")
            .expect("event channel closed")
    }

    /// Reads logs until the last line is `last` (bounded).
    pub async fn logs_until_last(&self, h: &InstanceHandle, last: &str) -> Vec<String> {
        for _ in 0..400 {
            let lines = self.rt.logs(h, 100).await.unwrap();
            if lines.last().is_some_and(|l| l == last) {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "log never ended with {last:?}: {:?}",
            self.rt.logs(h, 100).await
        );
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.reaper.kill_all();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn req(id: &str, version: &str) -> StartRequest {
    StartRequest {
        id: id.into(),
        app: "web".into(),
        version: version.into(),
        target: None,
    }
}

pub fn process_of(h: &InstanceHandle) -> (i32, u64, PathBuf) {
    match &h.detail {
        HandleDetail::Process {
            pid,
            proc_start_ticks,
            log_path,
            ..
        } => (*pid, *proc_start_ticks, log_path.clone()),
        other => panic!("not a process handle: {other:?}"),
    }
}

/// Whether any live (non-zombie) process is in process group `pgid`.
pub fn group_has_live_members(pgid: i32) -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .any(|text| {
            let Some(close) = text.rfind(')') else {
                return false;
            };
            let f: Vec<&str> = text[close + 1..].split_whitespace().collect();
            f.len() > 2 && f[0] != "Z" && f[2] == pgid.to_string()
        })
}

/// `/proc/<pid>/stat` field 22, if the process exists and is not a zombie.
pub fn live_start_ticks(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    if fields[0] == "Z" {
        return None;
    }
    fields.get(19)?.parse().ok()
}

pub fn is_running(h: &InstanceHandle) -> bool {
    let (pid, ticks, _) = process_of(h);
    live_start_ticks(pid) == Some(ticks)
}

/// Connects until something listens at `addr` (bounded).
pub async fn wait_listening(addr: SocketAddr) {
    for _ in 0..400 {
        if TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on {addr}");
}

/// A plain HTTP/1.0 GET; the whole response as text.
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Waits until `path` exists (bounded).
pub async fn wait_file(path: &Path) {
    for _ in 0..400 {
        if path.exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} never appeared", path.display());
}

/// A small range of ports that were free a moment ago.
pub fn free_range(n: u16) -> PortRange {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let first = l.local_addr().unwrap().port().min(65535 - n);
    PortRange {
        first,
        last: first + n - 1,
    }
}

pub fn temp_dir() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("baton-runtime-test-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Kills every tracked process group that still is what the test started.
#[derive(Default)]
pub struct Reaper {
    groups: Mutex<Vec<(i32, u64)>>,
}

impl Reaper {
    pub fn track(&self, h: &InstanceHandle) {
        let (pid, ticks, _) = process_of(h);
        self.groups.lock().unwrap().push((pid, ticks));
    }

    fn kill_all(&self) {
        for (pid, ticks) in self
            .groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            if live_start_ticks(pid) == Some(ticks) {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}
