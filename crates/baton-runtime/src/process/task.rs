//! One-off tasks of the process runtime: the hook command rendered like `command` (same
//! placeholders, same environment as an instance, plus the task's own), run in its own
//! process group with the instance environment (`BATON_OWNER`, `BATON_APP`,
//! `BATON_INSTANCE` = the task's name), so that a baton restarted after `kill -9` finds a
//! task left running by the previous one and stops it (`remove_strays`). Its output goes
//! to `<log_dir>/<app>/<task>.log`; the tail of this run is handed back.

use super::{logs, template, ProcessSpec};
use crate::task::{tail_of, TaskOutput, TaskRequest};
use crate::RuntimeError;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};

/// The line written before each run: the tail handed back starts after the last one.
const RUN_MARK: &str = "[baton] running task";

pub(crate) async fn run(spec: &ProcessSpec, req: TaskRequest) -> Result<TaskOutput, RuntimeError> {
    let vars = template::Vars {
        port: req.port.unwrap_or(0),
        version: &req.version,
        app: &req.app,
        instance: &req.name,
    };
    let argv = template::render(&req.command, &vars)?;
    let log_path = logs::path_for(&spec.log_dir, &req.app, &req.name);
    let io_err = |action, source| RuntimeError::Io {
        action,
        path: log_path.clone(),
        source,
    };
    let mut log = logs::open_for_child(&log_path).map_err(|e| io_err("open the log file", e))?;
    {
        use std::io::Write;
        writeln!(log, "{RUN_MARK} {} ({}): {argv:?}", req.name, req.version)
            .map_err(|e| io_err("write the log file", e))?;
    }
    let stderr = log
        .try_clone()
        .map_err(|e| io_err("open the log file", e))?;
    let mut env = vars.env(&spec.env);
    env.extend(req.env.iter().cloned());
    let mut cmd = super::child_command(&argv, env, spec.cwd.as_deref(), log, stderr);
    let mut child = cmd.spawn().map_err(|source| RuntimeError::Spawn {
        instance: req.name.clone(),
        command: req.command.clone(),
        source,
    })?;
    let pgid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
    let (exit_code, timed_out) = match tokio::time::timeout(req.timeout, child.wait()).await {
        Ok(Ok(status)) => (status.code(), false),
        Ok(Err(source)) => return Err(io_err("wait for the task of", source)),
        Err(_) => {
            if pgid > 1 {
                let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            }
            let _ = child.wait().await;
            (None, true)
        }
    };
    // The group may hold children the command left behind: they end with it.
    if pgid > 1 {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
    let tail = read_tail(&log_path).await;
    Ok(TaskOutput {
        exit_code,
        timed_out,
        tail,
    })
}

/// This run's output: what follows the last run mark.
async fn read_tail(path: &Path) -> Vec<String> {
    let path: PathBuf = path.to_path_buf();
    let text = tokio::task::spawn_blocking(move || std::fs::read(&path))
        .await
        .ok()
        .and_then(|r| r.ok())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let run = text.rfind(RUN_MARK).map_or(&text[..], |at| {
        let rest = &text[at..];
        rest.find('\n').map_or("", |nl| &rest[nl + 1..])
    });
    tail_of(run)
}

/// Whether the program of `command` can be run: a path must be an executable file
/// (relative to `cwd` when given), a bare name must be found on `PATH`.
pub(crate) fn check_program(command: &str, cwd: Option<&Path>) -> Result<(), String> {
    let words = shell_words::split(command).map_err(|_| "a quote is not closed".to_string())?;
    let Some(program) = words.first() else {
        return Err("it is empty".into());
    };
    if program.contains('{') {
        // A placeholder decides the program: only known when the task runs.
        return Ok(());
    }
    if program.contains('/') {
        let path = match cwd {
            Some(dir) if Path::new(program).is_relative() => dir.join(program),
            _ => PathBuf::from(program),
        };
        return if is_executable(&path) {
            Ok(())
        } else {
            Err(format!("{} is not an executable file", path.display()))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|dir| is_executable(&dir.join(program))) {
        Ok(())
    } else {
        Err(format!("`{program}` is not found on PATH"))
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
