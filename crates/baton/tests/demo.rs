//! `baton demo` runs end to end: canary succeeds, the broken version is rolled back,
//! the summary reports zero failed requests, and nothing is left running.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn demo_runs_with_zero_failed_requests_and_cleans_up() {
    let out = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["demo", "--quick"])
        .env("BATON_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("failed: 0"), "{stdout}");
    assert!(
        stdout.contains("deploy v2 (canary 10% → 50% → 100%): succeeded"),
        "{stdout}"
    );
    assert!(
        stdout.contains("deploy v3 (never healthy):           failed"),
        "{stdout}"
    );
    assert!(stdout.contains("now serving: v2"), "{stdout}");
    let dir = std::env::temp_dir().join(format!("baton-demo-{}", out_pid(&stdout)));
    assert!(!dir.exists(), "demo left {} behind", dir.display());
    let owner = format!("BATON_OWNER={}/state", dir.display());
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("environ"))
                .map(|env| env.split(|b| *b == 0).any(|kv| kv == owner.as_bytes()))
                .unwrap_or(false)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(left.is_empty(), "demo left processes running: {left:?}");
}

/// The demo prints its config path, which names its process id.
fn out_pid(stdout: &str) -> String {
    stdout
        .split("baton-demo-")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .unwrap_or("none")
        .to_string()
}
