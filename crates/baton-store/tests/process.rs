//! Real processes: a second process is refused while one holds the store, and a writer
//! killed with SIGKILL at arbitrary moments loses no acknowledged commit.
//!
//! The child processes are this test binary re-executed with `BATON_STORE_CHILD` set; the
//! ignored test `child_entry` is their entry point.

#![allow(clippy::unwrap_used)]

mod common;

use baton_store::{Store, StoreError};
use common::TestDir;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};

const MODE_VAR: &str = "BATON_STORE_CHILD";
const PATH_VAR: &str = "BATON_STORE_CHILD_PATH";
/// Apps the writer cycles through.
const APPS: u64 = 3;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Counter {
    n: u64,
}

fn app_of(n: u64) -> String {
    format!("app{}", n % APPS)
}

// --- child side ---

#[test]
#[ignore = "entry point of the child processes spawned by the other tests in this file"]
fn child_entry() {
    let (Ok(mode), Ok(path)) = (std::env::var(MODE_VAR), std::env::var(PATH_VAR)) else {
        return;
    };
    let path = Path::new(&path);
    match mode.as_str() {
        "hold" => hold(path),
        "write" => write_forever(path),
        "fill" => fill(path),
        "open" => open_once(path),
        other => panic!("unknown child mode {other}"),
    }
}

/// Marks the child's own lines: libtest may print "test child_entry ... " on the same line.
const MARK: &str = "#child# ";

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{MARK}{line}").unwrap();
    out.flush().unwrap();
}

/// Opens the store, commits one record, says "ready", and holds the store until stdin closes.
fn hold(path: &Path) {
    let store = Store::open(path).unwrap();
    store
        .commit(
            "held",
            Some(&Counter { n: 1 }),
            None::<&Counter>,
            &[Counter { n: 1 }],
        )
        .unwrap();
    say("ready");
    let mut sink = Vec::new();
    std::io::stdin().read_to_end(&mut sink).unwrap();
}

/// Commits numbered records (record + history entry + two events per commit) and prints
/// "ack N" after each commit returns. Stops by itself after a bounded number.
fn write_forever(path: &Path) {
    let store = Store::open(path).unwrap();
    let start = last_written(&store).map_or(0, |n| n + 1);
    for n in start..start + 100_000 {
        let c = Counter { n };
        store
            .commit(&app_of(n), Some(&c), Some(&c), &[c.clone(), c.clone()])
            .unwrap();
        say(&format!("ack {n}"));
    }
}

/// Grows the store with large records until a write fails, then reports the error.
fn fill(path: &Path) {
    let store = Store::open(path).unwrap();
    let blob = "x".repeat(256 * 1024);
    for n in 0..10_000u64 {
        let record = serde_json::json!({ "n": n, "blob": blob });
        match store.commit(&format!("big{n}"), Some(&record), None::<&u64>, &[n]) {
            Ok(()) => say(&format!("ack {n}")),
            Err(e) => {
                let kind = if matches!(e, StoreError::NoSpace { .. }) {
                    "nospace"
                } else {
                    "other"
                };
                say(&format!("error {kind} {e}"));
                return;
            }
        }
    }
    say("never failed");
}

/// Opens the store once and reports the outcome ("opened", or "error KIND MESSAGE").
fn open_once(path: &Path) {
    match Store::open(path) {
        Ok(_) => say("opened"),
        Err(e) => {
            let kind = match e {
                StoreError::NoSpaceToCreate { .. } => "nospace-create",
                StoreError::Corrupt { .. } => "corrupt",
                _ => "other",
            };
            say(&format!("error {kind} {e}"));
        }
    }
}

// --- parent side ---

/// A child process that is killed and reaped when dropped, so a failing test leaves no
/// process behind.
struct ChildGuard(Child);

impl ChildGuard {
    fn stdout(&mut self) -> BufReader<ChildStdout> {
        BufReader::new(self.0.stdout.take().unwrap())
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn_child(mode: &str, path: &Path) -> ChildGuard {
    ChildGuard(child_command(
        mode,
        path,
        Command::new(std::env::current_exe().unwrap()),
    ))
}

fn child_command(mode: &str, path: &Path, command: Command) -> Child {
    child_command_with(mode, path, command, Stdio::inherit())
}

fn child_command_with(mode: &str, path: &Path, mut command: Command, stderr: Stdio) -> Child {
    command
        .args([
            "--exact",
            "child_entry",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(MODE_VAR, mode)
        .env(PATH_VAR, path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

/// The next line the child said that starts with `prefix`, or `None` at end of output.
fn next_line(out: &mut BufReader<ChildStdout>, prefix: &str) -> Option<String> {
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            return None;
        }
        // A line cut short by the kill has no newline; it was never acknowledged.
        let said = line.strip_suffix('\n').and_then(|l| l.split_once(MARK));
        if let Some((_, said)) = said.filter(|(_, said)| said.starts_with(prefix)) {
            return Some(said.to_string());
        }
    }
}

fn parse_ack(line: &str) -> u64 {
    line.strip_prefix("ack ").unwrap().parse().unwrap()
}

/// The highest counter committed so far, from the event log.
fn last_written(store: &Store) -> Option<u64> {
    let events: Vec<(u64, Counter)> = store.events_since(0, usize::MAX).unwrap();
    events.last().map(|(_, c)| c.n)
}

#[test]
fn a_second_process_is_refused_while_the_first_holds_the_store() {
    let dir = TestDir::new("lock-proc");
    let path = dir.join("state");
    let mut child = spawn_child("hold", &path);
    let mut out = child.stdout();
    assert_eq!(next_line(&mut out, "ready").as_deref(), Some("ready"));

    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    // The error names the holder, so the operator knows what to stop.
    let msg = err.to_string();
    let pid = child.0.id();
    assert!(
        msg.contains(&format!(
            "in use by another baton (baton pid {pid}, started "
        )),
        "{msg}"
    );
    assert!(msg.contains(&path.display().to_string()), "{msg}");

    // The lock dies with its holder, even on SIGKILL, and its commit is there. The
    // holder's record it could not remove does not stand in the way.
    child.kill();
    assert!(dir.join("state.lock-owner").exists());
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.get_app::<Counter>("held").unwrap(),
        Some(Counter { n: 1 })
    );
}

/// Runs a child in `mode` to completion (bounded), with its stderr captured: (the line
/// it said, its stderr).
fn run_child(mode: &str, path: &Path, command: Command) -> (String, String) {
    let mut child = ChildGuard(child_command_with(mode, path, command, Stdio::piped()));
    let mut out = child.stdout();
    let said = next_line(&mut out, "").expect("child ended without reporting");
    let mut stderr = child.0.stderr.take().unwrap();
    // The child exits right after saying its line; its stderr ends with it. The guard
    // kills it if it does not (reading stops at the kill).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.0.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "child did not exit");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut err = String::new();
    stderr.read_to_string(&mut err).unwrap();
    (said, err)
}

/// Creating the store where it cannot fit (here a file size limit, which fails the writes
/// as a full disk does): the error names the configured path, the cause and the fix, and
/// the temporary file the store was being built in is gone.
#[test]
fn a_store_that_cannot_be_created_leaves_nothing_behind() {
    let dir = TestDir::new("create-full");
    let path = dir.join("state");
    let mut shell = Command::new("sh");
    // 8 blocks of 512 bytes: far less than an empty store needs.
    shell
        .arg("-c")
        .arg("ulimit -f 8 && trap '' XFSZ && exec \"$0\" \"$@\"")
        .arg(std::env::current_exe().unwrap());
    let (said, _) = run_child("open", &path, shell);
    eprintln!("{said}");
    let error = said
        .strip_prefix("error ")
        .unwrap_or_else(|| panic!("{said}"));
    assert!(error.starts_with("nospace-create "), "{error}");
    assert!(
        error.contains(&format!(
            "no space left to create the store at {}",
            path.display()
        )),
        "{error}"
    );
    assert!(error.contains("free space on /"), "{error}");
    assert!(error.contains("set [store] path elsewhere"), "{error}");
    assert!(!error.contains(".init-"), "{error}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    // With room, the same path becomes a store.
    drop(Store::open(&path).unwrap());
}

/// A truncated store is refused with our error only: redb's internal panic, caught by the
/// store, is not printed to stderr.
#[test]
fn a_truncated_store_is_refused_without_panic_noise() {
    let dir = TestDir::new("quiet-panic");
    let path = dir.join("state");
    {
        let store = Store::open(&path).unwrap();
        for n in 0..50u64 {
            let record = serde_json::json!({ "n": n, "pad": "x".repeat(500) });
            store
                .commit(&app_of(n), Some(&record), None::<&u64>, &[n])
                .unwrap();
        }
    }
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let (said, stderr) = run_child(
        "open",
        &path,
        Command::new(std::env::current_exe().unwrap()),
    );
    assert!(said.starts_with("error corrupt "), "{said}");
    assert!(said.contains("truncated"), "{said}");
    assert!(
        !stderr.contains("panicked"),
        "panic text on stderr: {stderr}"
    );
}

#[test]
fn every_acknowledged_commit_survives_sigkill() {
    let dir = TestDir::new("crash");
    let path = dir.join("state");
    let mut highest_ack: Option<u64> = None;
    // Kill after a varying number of acknowledgements: early, mid-stream, later.
    for kill_after in [1usize, 9, 40, 3, 25] {
        let mut child = spawn_child("write", &path);
        let mut out = child.stdout();
        for _ in 0..kill_after {
            let line = next_line(&mut out, "ack ").expect("writer ended before acknowledging");
            highest_ack = Some(parse_ack(&line));
        }
        child.kill();
        // Acks already in the pipe were acknowledged before the kill.
        while let Some(line) = next_line(&mut out, "ack ") {
            highest_ack = Some(parse_ack(&line));
        }
        verify_after_crash(&path, highest_ack.unwrap());
    }
}

/// Everything acknowledged is present, and every commit is whole: its record, history
/// entry and both events, or none of them.
fn verify_after_crash(path: &Path, highest_ack: u64) {
    let store = Store::open(path).unwrap();
    let events: Vec<(u64, Counter)> = store.events_since(0, usize::MAX).unwrap();
    assert_eq!(events.len() % 2, 0, "half a commit's events are stored");
    for (i, (seq, c)) in events.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1, "event numbers have a gap");
        assert_eq!(c.n, i as u64 / 2, "events out of order or missing");
    }
    let last = last_written(&store).unwrap();
    assert!(
        last >= highest_ack,
        "acknowledged commit {highest_ack} lost; store ends at {last}"
    );
    for a in 0..APPS {
        let app = format!("app{a}");
        let history: Vec<Counter> = store.history(&app, usize::MAX).unwrap();
        let expected: Vec<u64> = (0..=last).filter(|n| n % APPS == a).collect();
        assert_eq!(
            history.iter().map(|c| c.n).collect::<Vec<_>>(),
            expected,
            "{app}"
        );
        let record: Option<Counter> = store.get_app(&app).unwrap();
        assert_eq!(record.map(|c| c.n), expected.last().copied(), "{app}");
    }
}

#[test]
fn a_full_disk_is_a_clear_error_and_loses_nothing_acknowledged() {
    let dir = TestDir::new("full");
    let path = dir.join("state");
    drop(Store::open(&path).unwrap());
    // Cap the child's file size a few MiB above the empty store (in 512-byte blocks, the
    // smaller of the units shells use), and ignore SIGXFSZ so the write fails with EFBIG,
    // the way it fails with ENOSPC on a full disk.
    let size = std::fs::metadata(&path).unwrap().len();
    let blocks = size / 512 + 8 * 1024;
    let mut shell = Command::new("sh");
    shell
        .arg("-c")
        .arg(format!(
            "ulimit -f {blocks} && trap '' XFSZ && exec \"$0\" \"$@\""
        ))
        .arg(std::env::current_exe().unwrap());
    let mut child = ChildGuard(child_command("fill", &path, shell));
    let mut out = child.stdout();
    let mut acked = Vec::new();
    let error = loop {
        let line = next_line(&mut out, "").expect("child ended without reporting");
        if let Some(n) = line.strip_prefix("ack ") {
            acked.push(n.parse::<u64>().unwrap());
        } else if let Some(e) = line.strip_prefix("error ") {
            break e.to_string();
        } else if line == "never failed" {
            panic!("the file size limit was never reached");
        }
    };
    child.kill();
    eprintln!("after {} commits: {error}", acked.len());
    assert!(error.starts_with("nospace "), "{error}");
    assert!(error.contains("no space left"), "{error}");
    assert!(error.contains(&path.display().to_string()), "{error}");
    assert!(!acked.is_empty(), "nothing was written before the limit");

    let store = Store::open(&path).unwrap();
    for n in &acked {
        let record: Option<serde_json::Value> = store.get_app(&format!("big{n}")).unwrap();
        assert_eq!(record.unwrap()["n"], *n);
    }
    // And the store still takes writes once there is room again.
    store
        .commit("after", Some(&1u64), None::<&u64>, &[0u64])
        .unwrap();
}
