//! One-off tasks (hooks) of the process runtime, on real processes: the instance
//! environment plus the task's own, the exit code and output tail of this run only, a
//! timeout that kills the whole group, and the program check `baton validate` uses.

#![allow(clippy::unwrap_used)]

mod support;

use baton_runtime::{Runtime, TaskRequest};
use std::time::Duration;
use support::Fixture;

fn task(command: &str, timeout: Duration) -> TaskRequest {
    TaskRequest {
        app: "web".into(),
        version: "v2".into(),
        name: "web-2-release".into(),
        command: command.into(),
        env: vec![("BATON_HOOK".into(), "release".into())],
        timeout,
        port: None,
    }
}

#[tokio::test]
async fn a_task_gets_the_instance_environment_and_its_own() {
    let fx = Fixture::with("unused", |s| {
        s.env
            .insert("DATABASE_URL".into(), "sqlite://{app}-{version}.db".into());
    });
    assert!(fx.rt.one_off_tasks());
    let out = fx
        .rt
        .run_task(task(
            "sh -c 'echo \"$BATON_HOOK $BATON_VERSION $BATON_INSTANCE $DATABASE_URL\"; echo to-stderr >&2'",
            Duration::from_secs(30),
        ))
        .await
        .unwrap();
    assert!(out.succeeded(), "{out:?}");
    assert_eq!(
        out.tail,
        vec![
            "release v2 web-2-release sqlite://web-v2.db".to_string(),
            "to-stderr".into()
        ]
    );
}

#[tokio::test]
async fn the_exit_code_and_only_this_runs_output_come_back() {
    let fx = Fixture::new("unused");
    let first = fx
        .rt
        .run_task(task("sh -c 'echo first run'", Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(first.exit_code, Some(0));
    let out = fx
        .rt
        .run_task(task(
            "sh -c 'echo column exists; exit 3'",
            Duration::from_secs(30),
        ))
        .await
        .unwrap();
    assert_eq!(out.exit_code, Some(3));
    assert!(!out.succeeded());
    assert_eq!(out.tail, vec!["column exists".to_string()]);
    assert_eq!(out.describe(Duration::from_secs(1)), "exit 3");
}

#[tokio::test]
async fn a_task_past_its_timeout_is_killed_with_its_children() {
    let fx = Fixture::new("unused");
    let marker = fx.dir.join("child-still-ran");
    let cmd = format!(
        "sh -c 'echo waiting; (sleep 2; touch {}) & sleep 30'",
        marker.display()
    );
    let out = fx
        .rt
        .run_task(task(&cmd, Duration::from_millis(500)))
        .await
        .unwrap();
    assert!(out.timed_out && out.exit_code.is_none(), "{out:?}");
    assert_eq!(
        out.describe(Duration::from_millis(500)),
        "timed out after 500ms"
    );
    assert_eq!(out.tail, vec!["waiting".to_string()]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!marker.exists(), "a child of the task outlived it");
}

#[test]
fn the_program_check_finds_paths_and_names_on_path() {
    let fx = Fixture::new("unused");
    assert!(fx.rt.check_task("sh -c 'exit 0'").is_ok());
    let e = fx.rt.check_task("no-such-migrate-tool up").unwrap_err();
    assert!(e.contains("not found on PATH"), "{e}");
    let e = fx.rt.check_task("./bin/migrate up").unwrap_err();
    assert!(e.contains("not an executable file"), "{e}");
    assert!(fx.rt.check_task("/bin/sh -c true").is_ok());
}
