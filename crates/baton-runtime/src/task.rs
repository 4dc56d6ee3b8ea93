//! One-off tasks: a hook command run once by an app's runtime with a given version (a
//! migration before a deploy, a step after the switch, a command before an instance
//! stops), with a timeout and its output kept (a bounded tail).

use std::time::Duration;

/// How many lines of a task's output are kept and handed back.
pub const TASK_TAIL_LINES: usize = 40;

/// A one-off task to run.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRequest {
    pub app: String,
    /// The version whose code runs it (the deployment's new version).
    pub version: String,
    /// Names the task (its log file, its container): unique per app, e.g. `web-4-release`.
    pub name: String,
    /// The command, written like the app's `command` (same placeholders).
    pub command: String,
    /// Set on top of the instance environment (`BATON_HOOK`, `BATON_DEPLOYMENT`, ...).
    pub env: Vec<(String, String)>,
    /// Killed after this (and reported as timed out).
    pub timeout: Duration,
    /// For `pre_stop`: the instance it runs for (its port fills `{port}` / `PORT`).
    pub port: Option<u16>,
}

/// How a one-off task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskOutput {
    /// The exit code; `None` when it was killed (by the timeout or a signal).
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    /// The last lines of its output (stdout and stderr), oldest first, at most
    /// [`TASK_TAIL_LINES`].
    pub tail: Vec<String>,
}

impl TaskOutput {
    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }

    /// "exit 0", "exit 3", "timed out after 5m", "killed by a signal".
    pub fn describe(&self, timeout: Duration) -> String {
        match (self.timed_out, self.exit_code) {
            (true, _) => format!("timed out after {}", humanize(timeout)),
            (false, Some(code)) => format!("exit {code}"),
            (false, None) => "killed by a signal".into(),
        }
    }
}

fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else if s > 0 {
        format!("{s}s")
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Keeps the last [`TASK_TAIL_LINES`] lines of `text`.
pub fn tail_of(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(TASK_TAIL_LINES);
    lines[from..].iter().map(|l| l.to_string()).collect()
}
