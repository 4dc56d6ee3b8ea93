//! Deploy hooks end to end with the real binary, real processes and load through the
//! proxy: a failing release hook changes nothing; a succeeding one runs exactly once per
//! deploy with 0 failed requests, also when baton is `kill -9`ed during it (re-run once,
//! told so by `BATON_HOOK_RERUN=1`) or right after it (not re-run); an irreversible canary
//! that fails the judge freezes instead of sending traffic back; bad hook input is refused
//! by `baton validate` at file:line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use baton_loadgen::{Load, LoadSpec, Profile};
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A release hook script in its own directory: it appends `start <deployment>
/// rerun=<0|1>` to `runs`, fails with exit 3 while `fail` exists, waits while `hold`
/// exists, then appends `done <deployment>`.
struct Hook {
    dir: tempfile::TempDir,
}

impl Hook {
    fn new() -> Hook {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let script = format!(
            "#!/bin/sh\n\
             echo \"start $BATON_DEPLOYMENT rerun=${{BATON_HOOK_RERUN:-0}} version=$BATON_VERSION hook=$BATON_HOOK\" >> {d}/runs\n\
             echo \"migrating to $BATON_VERSION\"\n\
             if [ -f {d}/fail ]; then echo \"ERROR 1060: Duplicate column name 'email'\"; exit 3; fi\n\
             while [ -f {d}/hold ]; do sleep 0.05; done\n\
             echo \"done $BATON_DEPLOYMENT\" >> {d}/runs\n\
             echo \"migrated\"\n"
        );
        let path = dir.path().join("release.sh");
        std::fs::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Hook { dir }
    }

    fn script(&self) -> PathBuf {
        self.dir.path().join("release.sh")
    }

    fn flag(&self, name: &str, on: bool) {
        let p = self.dir.path().join(name);
        if on {
            std::fs::write(p, "").unwrap();
        } else {
            let _ = std::fs::remove_file(p);
        }
    }

    fn runs(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("runs"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn count(&self, prefix: &str) -> usize {
        self.runs().iter().filter(|l| l.starts_with(prefix)).count()
    }

    fn wait_for(&self, what: &str, b: &Baton, pred: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !pred(&self.runs()) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; runs: {:?}\n{}",
                self.runs(),
                tail(&b.serve_log(), 40)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn section(&self, more: &str) -> String {
        format!(
            "\n[apps.web.hooks]\nrelease = \"{}\"\ntimeout = \"2m\"\n{more}",
            self.script().display()
        )
    }
}

fn instance_ids(st: &Value) -> Vec<String> {
    let mut ids: Vec<String> = st["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// The version that answers a GET through the proxy.
fn served_version(b: &Baton) -> String {
    let resp = proxy_get(b, "/");
    resp.lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-version: ")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no x-version in {resp}"))
}

#[test]
fn a_failing_release_hook_leaves_the_app_untouched() {
    let hook = Hook::new();
    let b = Baton::start(&app_config("rolling", 2, &hook.section("")));
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let before = b.wait_status("v1 healthy", |st| {
        st["instances"].as_array().unwrap().len() == 2
            && st["instances"]
                .as_array()
                .unwrap()
                .iter()
                .all(|i| i["healthy"] == true)
    });
    let routes_before = before["weights"].clone();
    hook.flag("fail", true);
    let out = b.cli(&["deploy", "web", "v2"]);
    assert!(
        !out.status.success(),
        "a failed release hook fails the deploy"
    );
    let st = b.status();
    assert_eq!(st["stable_version"], "v1");
    assert_eq!(instance_ids(&st), instance_ids(&before), "same instances");
    assert_eq!(st["weights"], routes_before, "same routes");
    assert_eq!(served_version(&b), "v1");
    let h = b.history_entry("web-2");
    assert_eq!(h["outcome"], "failed");
    let reason = h["reason"].as_str().unwrap();
    assert!(
        reason.contains("release hook failed (exit 3)")
            && reason.contains("Duplicate column")
            && reason.contains("nothing was changed"),
        "{reason}"
    );
    let output = h["hooks"][0]["output"].to_string();
    assert!(
        output.contains("migrating to v2"),
        "history keeps the output: {h:#}"
    );
    let logs = b.cli_ok(&["logs", "web"], 0);
    assert!(
        logs.contains("Duplicate column"),
        "baton logs shows it: {logs}"
    );
    assert_eq!(hook.count("start web-2"), 1);
    assert_eq!(hook.count("done web-2"), 0);
}

#[test]
fn a_release_hook_runs_exactly_once_per_deploy_with_no_failed_requests() {
    let hook = Hook::new();
    let b = Baton::start(&app_config("rolling", 2, &hook.section("")));
    let (report, _) = deploy_v2_under_load(&b, "rolling", 2, Profile::KeepAlive);
    assert_eq!(report.failed, 0);
    for d in ["web-1", "web-2"] {
        assert_eq!(
            hook.count(&format!("start {d} rerun=0")),
            1,
            "{:?}",
            hook.runs()
        );
        assert_eq!(hook.count(&format!("done {d}")), 1, "{:?}", hook.runs());
    }
    assert_eq!(hook.runs().len(), 4, "{:?}", hook.runs());
    assert!(
        hook.runs()[2].contains("version=v2 hook=release"),
        "{:?}",
        hook.runs()
    );
    let h = b.history_entry("web-2");
    assert_eq!(h["hooks"][0]["state"], "succeeded");
    assert_eq!(h["hooks"][0]["attempts"], 1);
}

#[test]
fn kill_9_during_the_release_hook_reruns_it_exactly_once_and_says_so() {
    let hook = Hook::new();
    let mut b = Baton::start(&app_config("rolling", 2, &hook.section("")));
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let rt = rt();
    let load = rt.block_on(async { Load::start(LoadSpec::new(b.proxy)) });
    hook.flag("hold", true);
    b.cli_ok(&["deploy", "web", "v2", "--detach"], 0);
    hook.wait_for("the hook to start", &b, |r| {
        r.iter().any(|l| l.starts_with("start web-2"))
    });
    let report = rt.block_on(load.stop());
    assert_eq!(report.failed, 0, "while the hook ran: {report:?}");
    b.kill9();
    b.serve();
    let load = rt.block_on(async { Load::start(LoadSpec::new(b.proxy)) });
    hook.wait_for("the hook to start again", &b, |r| {
        r.iter().filter(|l| l.starts_with("start web-2")).count() == 2
    });
    assert_eq!(hook.count("start web-2 rerun=1"), 1, "{:?}", hook.runs());
    // The first run died with its baton: releasing the hold lets only the re-run finish.
    hook.flag("hold", false);
    let st = b.wait_status("v2 deployed", |st| {
        st["deployment"]["id"] == "web-2" && finished(st)
    });
    assert_eq!(st["stable_version"], "v2", "{st:#}");
    let report = rt.block_on(load.stop());
    assert_eq!(report.failed, 0, "{report:?}\n{}", tail(&b.serve_log(), 40));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(hook.count("start web-2"), 2, "{:?}", hook.runs());
    assert_eq!(hook.count("done web-2"), 1, "{:?}", hook.runs());
    let h = b.history_entry("web-2");
    assert_eq!(h["hooks"][0]["attempts"], 2, "{h:#}");
}

#[test]
fn kill_9_after_the_release_hook_finished_does_not_run_it_again() {
    let hook = Hook::new();
    // A canary with pauses: the rollout is still going when the hook has finished.
    let mut b = Baton::start(&app_config("canary", 2, &hook.section("")));
    b.cli_ok(&["deploy", "web", "v1"], 0);
    b.cli_ok(&["deploy", "web", "v2", "--detach"], 0);
    // Killed once the hook is stored as finished and the canary's instance is up (a kill
    // while that instance is still starting loses it, and the canary then fails by
    // design: not what this test is about).
    b.wait_status(
        "the release hook finished and a v2 instance healthy",
        |st| {
            st["deployment"]["id"] == "web-2"
                && st["deployment"]["hooks"][0]["state"] == "succeeded"
                && st["instances"].as_array().is_some_and(|all| {
                    all.iter()
                        .any(|i| i["version"] == "v2" && i["healthy"] == true)
                })
        },
    );
    b.kill9();
    b.serve();
    let st = b.wait_status("v2 deployed", |st| {
        st["deployment"]["id"] == "web-2" && finished(st)
    });
    assert_eq!(st["stable_version"], "v2", "{st:#}");
    assert_eq!(hook.count("start web-2"), 1, "{:?}", hook.runs());
    assert_eq!(hook.count("done web-2"), 1, "{:?}", hook.runs());
}

#[test]
fn an_irreversible_canary_failing_the_judge_freezes_and_rollback_needs_force() {
    let hook = Hook::new();
    let events = hook.dir.path().join("events");
    let on_event = format!(
        "on_event = 'echo \"$BATON_EVENT_KIND $BATON_EVENT_DEPLOYMENT\" >> {}'\n",
        events.display()
    );
    let extra = hook.section(&on_event)
        + "\n[apps.web.analysis]\ninterval = \"1s\"\nmin_requests = 30\nmax_error_rate = 0.01\n";
    let cfg = app_config("canary", 2, &extra)
        .replace(
            "--crash-version crash",
            "--crash-version crash --error-rate-for-version v2=0.2",
        )
        .replace(
            r#"steps = [{ weight = 20 }, { pause = "1s" }, { weight = 60 }, { pause = "1s" }]"#,
            r#"steps = [{ weight = 30 }, { pause = "1h" }]"#,
        );
    let b = Baton::start(&cfg);
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let rt = rt();
    let load = rt.block_on(async {
        Load::start(LoadSpec {
            clients: 4,
            gap: Duration::from_millis(3),
            ..LoadSpec::new(b.proxy)
        })
    });
    b.cli_ok(&["deploy", "web", "v2", "--detach", "--irreversible"], 0);
    let st = b.wait_status("the canary frozen", |st| {
        !st["deployment"]["frozen"].is_null()
    });
    let _ = rt.block_on(load.stop());
    let why = st["deployment"]["frozen"].as_str().unwrap();
    assert!(
        why.contains("analysis failed") && why.contains("irreversible"),
        "{why}"
    );
    assert_eq!(st["deployment"]["irreversible"], true);
    assert_eq!(st["deployment"]["state"], "paused", "{st:#}");
    assert_eq!(st["weights"]["v2"], 30, "v2 keeps its share: {st:#}");
    // Through the proxy, v2 still serves its share.
    let seen: Vec<String> = (0..60).map(|_| served_version(&b)).collect();
    assert!(seen.iter().any(|v| v == "v2"), "v2 still served: {seen:?}");
    assert!(seen.iter().any(|v| v == "v1"), "{seen:?}");
    // The freeze is an event, and the operator's on_event command hears it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = std::fs::read_to_string(&events).unwrap_or_default();
        if seen.contains("frozen web-2") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "on_event never saw the freeze: {seen}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for op in ["rollback", "abort"] {
        let out = b.cli(&[op, "web"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{op} without --force refused");
        assert!(
            err.contains("irreversible") && err.contains("--force"),
            "{op}: {err}"
        );
    }
    let st = b.status();
    assert!(!st["deployment"]["frozen"].is_null(), "still frozen");
    b.cli_ok(&["abort", "web", "--force"], 0);
    let st = b.wait_status("back on v1", finished);
    assert_eq!(st["stable_version"], "v1");
    assert_eq!(served_version(&b), "v1");
}

fn validate(dir: &Path, apps: &str) -> (i32, String) {
    let config = dir.join("baton.toml");
    std::fs::write(&config, apps).unwrap();
    let out = std::process::Command::new(BATON)
        .args(["validate", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_refuses_bad_hooks_at_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let base = "[apps.web]\ncommand = \"sleep 100\"\n\n[apps.web.hooks]\n";
    let (code, err) = validate(
        dir.path(),
        &format!("{base}release = \"no-such-migrate-tool up\"\n"),
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("baton.toml:5:")
            && err.contains("no-such-migrate-tool")
            && err.contains("not found on PATH"),
        "{err}"
    );
    let (code, err) = validate(dir.path(), &format!("{base}release = \"./bin/migrate\"\n"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not an executable file"), "{err}");
    let (code, err) = validate(
        dir.path(),
        &format!("{base}release = \"true\"\ntimeout = \"0s\"\n"),
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("baton.toml:6:") && err.contains("timeout"),
        "{err}"
    );
    let (code, err) = validate(
        dir.path(),
        "[apps.web]\nruntime = \"static\"\n\n[apps.web.hooks]\nrelease = \"true\"\n",
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("baton.toml:5:") && err.contains("cannot run one-off tasks"),
        "{err}"
    );
    let (code, err) = validate(
        dir.path(),
        &format!("{base}release = \"true\"\npre_stop = \"true\"\n"),
    );
    assert_eq!(code, 0, "{err}");
}

#[test]
fn post_switch_runs_after_the_switch_and_pre_stop_before_each_stop() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hooks.log");
    let script = dir.path().join("note.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$BATON_HOOK ${{BATON_DEPLOYMENT:-}}${{BATON_STOPPING_INSTANCE:-}} $BATON_VERSION\" >> {}\n",
            log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let hooks = format!(
        "\n[apps.web.hooks]\npost_switch = \"{s}\"\npre_stop = \"{s}\"\n",
        s = script.display()
    );
    let b = Baton::start(&app_config("rolling", 2, &hooks));
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let v1 = instance_ids(&b.status());
    b.cli_ok(&["deploy", "web", "v2"], 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let lines = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        let stops = lines.iter().filter(|l| l.starts_with("pre_stop")).count();
        if stops == v1.len() && lines.iter().any(|l| l == "post_switch web-2 v2") {
            break lines;
        }
        assert!(Instant::now() < deadline, "hooks seen: {lines:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        lines.contains(&"post_switch web-1 v1".to_string()),
        "{lines:?}"
    );
    for id in &v1 {
        assert!(
            lines.contains(&format!("pre_stop {id} v1")),
            "{id}: {lines:?}"
        );
    }
}
