//! A store that fails on demand (`BATON_STORE_FAULT_FILE`: while the named file exists,
//! every write of the real store fails): nothing that a record must make durable takes
//! effect before it is stored. A deploy that cannot be stored changes nothing; a rollout
//! step that cannot be stored does not reach the proxy, and goes out once the store
//! works again.
#![allow(clippy::unwrap_used)]

mod common;

use baton_loadgen::{Load, LoadSpec};
use common::*;
use std::time::Duration;

/// Share of the requests of a short load that `version` served.
fn share_of(b: &Baton, version: &str) -> f64 {
    let rt = rt();
    let load = rt.block_on(async { Load::start(LoadSpec::new(b.proxy)) });
    std::thread::sleep(Duration::from_millis(800));
    let report = rt.block_on(load.stop());
    assert_eq!(report.failed, 0, "{report:?}");
    let total: u64 = report.by_version.values().sum();
    assert!(total > 50, "too few requests to judge: {report:?}");
    report.by_version.get(version).copied().unwrap_or(0) as f64 / total as f64
}

#[test]
fn a_store_that_fails_blocks_effects_until_it_works_again() {
    let dir = tempfile::tempdir().unwrap();
    let trigger = dir.path().join("fail-writes");
    // Inherited by `baton serve` (each test runs in its own process).
    std::env::set_var("BATON_STORE_FAULT_FILE", &trigger);
    let cfg = app_config("canary", 1, "").replace("pause = \"1s\"", "pause = \"3s\"");
    let b = Baton::start(&cfg);
    b.cli_ok(&["deploy", "web", "v1"], 0);

    // 1. A deploy whose record cannot be stored is refused, and nothing changed.
    std::fs::write(&trigger, b"").unwrap();
    let out = b.cli(&["deploy", "web", "v2"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("injected fault") && err.contains("nothing changed"),
        "{err}"
    );
    let st = b.status();
    assert_eq!(st["stable_version"], "v1", "{st:#}");
    assert_eq!(st["deployment"]["id"], "web-1", "no new deployment: {st:#}");
    assert!(
        st["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["version"] == "v1"),
        "nothing started: {st:#}"
    );
    assert!(st["store_error"].is_string(), "{st:#}");
    assert_eq!(share_of(&b, "v1"), 1.0);
    std::fs::remove_file(&trigger).unwrap();

    // 2. A canary whose next step cannot be stored keeps its published weight.
    let mut deploy = b.cli_spawn(&["deploy", "web", "v2"]);
    b.wait_status("canary at 20%", |st| st["weights"]["v2"] == 20);
    std::fs::write(&trigger, b"").unwrap();
    // The machine moves on to the 60% step once the pause is over; that step is not
    // stored...
    let st = b.wait_status("the 60% step computed but not stored", |st| {
        st["deployment"]["step_index"].as_u64().unwrap_or(0) >= 2 && st["store_error"].is_string()
    });
    assert_eq!(st["deployment"]["state"], "running", "{st:#}");
    // ...so status reports the weights the proxy has, and the proxy still splits 20/80
    // (60% would put v2 far above 40%).
    assert_eq!(st["weights"]["v2"], 20, "{st:#}");
    let canary = share_of(&b, "v2");
    assert!(
        canary < 0.4,
        "an unstored step reached the proxy: v2 served {canary}"
    );

    // 3. The store works again: the held step goes out and the deployment finishes.
    std::fs::remove_file(&trigger).unwrap();
    let status = deploy.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(deploy.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}\n{}", tail(&b.serve_log(), 40));
    let st = b.wait_status("v2 stable, store healthy", |st| {
        finished(st) && st["store_error"].is_null()
    });
    assert_eq!(st["stable_version"], "v2", "{st:#}");
    assert_eq!(share_of(&b, "v2"), 1.0);
}
