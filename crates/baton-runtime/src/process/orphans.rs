//! Finds processes a previous baton started but never recorded (it was killed between
//! spawning and storing), by the `BATON_OWNER` / `BATON_APP` / `BATON_INSTANCE`
//! environment every instance gets, and stops them: no orphan survives a restart.

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::collections::HashSet;
use std::time::Duration;

/// A process started for `app` by the baton that owns `owner`, not in `known`.
#[derive(Debug, Clone, PartialEq)]
pub struct Orphan {
    pub pid: i32,
    pub pgid: i32,
    pub instance: String,
}

pub fn find(owner: &str, app: &str, known: &HashSet<String>) -> Vec<Orphan> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let mut vars = environ
            .split(|b| *b == 0)
            .filter_map(|kv| std::str::from_utf8(kv).ok());
        let (mut o, mut a, mut i) = (None, None, None);
        for kv in vars.by_ref() {
            if let Some(v) = kv.strip_prefix("BATON_OWNER=") {
                o = Some(v);
            } else if let Some(v) = kv.strip_prefix("BATON_APP=") {
                a = Some(v);
            } else if let Some(v) = kv.strip_prefix("BATON_INSTANCE=") {
                i = Some(v);
            }
        }
        if o == Some(owner) && a == Some(app) {
            if let Some(instance) = i.filter(|i| !known.contains(*i)) {
                let pgid = nix::unistd::getpgid(Some(Pid::from_raw(pid)))
                    .map(|p| p.as_raw())
                    .unwrap_or(pid);
                found.push(Orphan {
                    pid,
                    pgid,
                    instance: instance.to_string(),
                });
            }
        }
    }
    found
}

/// SIGTERM each orphan's process group, then SIGKILL what is left after `grace`.
pub async fn reap(orphans: &[Orphan], grace: Duration) {
    for o in orphans {
        tracing::warn!(pid = o.pid, instance = %o.instance, "stopping an instance no record owns");
        let _ = killpg(Pid::from_raw(o.pgid), Signal::SIGTERM);
    }
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline
        && orphans
            .iter()
            .any(|o| std::path::Path::new(&format!("/proc/{}", o.pid)).exists())
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for o in orphans {
        let _ = killpg(Pid::from_raw(o.pgid), Signal::SIGKILL);
    }
}
