//! Operator commands end to end: the static runtime with `--target`, pause / resume /
//! abort of a canary, instant blue/green rollback, `plan` and `logs`, the shape of
//! `status` and `history`, and the served OpenAPI document against the router and its
//! answers.
#![allow(clippy::unwrap_used)]

mod common;

use baton_loadgen::{Load, LoadSpec};
use common::*;
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A sample app run by "someone else" for the static runtime.
struct External(Child);

impl External {
    fn start(port: u16, version: &str) -> External {
        External(
            Command::new(BATON)
                .args([
                    "sample-app",
                    "--port",
                    &port.to_string(),
                    "--version",
                    version,
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }
}

impl Drop for External {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn static_runtime_moves_traffic_between_targets_it_does_not_run() {
    let cfg = "[apps.web]\nruntime = \"static\"\nstrategy = \"blue_green\"\n[apps.web.health]\npath = \"/health\"\ninterval = \"100ms\"\n[apps.web.blue_green]\nscale_down_delay = \"0s\"\n";
    let b = Baton::start(cfg);
    let (p1, p2) = (port(), port());
    let _a = External::start(p1, "v1");
    let _b = External::start(p2, "v2");
    let out = b.cli(&["deploy", "web", "v1"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "static deploy without --target must be refused"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--target"));
    b.cli_ok(
        &[
            "deploy",
            "web",
            "v1",
            "--target",
            &format!("127.0.0.1:{p1}"),
        ],
        0,
    );
    let rt = rt();
    let load = rt.block_on(async { Load::start(LoadSpec::new(b.proxy)) });
    b.cli_ok(
        &[
            "deploy",
            "web",
            "v2",
            "--target",
            &format!("127.0.0.1:{p2}"),
        ],
        0,
    );
    std::thread::sleep(Duration::from_millis(300));
    let report = rt.block_on(load.stop());
    assert_eq!(report.failed, 0, "{report:?}");
    assert!(
        report.by_version.get("v2").copied().unwrap_or(0) > 0,
        "{report:?}"
    );
    let st = b.wait_status("v2 only", |st| {
        finished(st) && st["instances"].as_array().unwrap().len() == 1
    });
    assert_eq!(st["instances"][0]["address"], format!("127.0.0.1:{p2}"));
    assert_eq!(st["stable_version"], "v2");
}

/// A static deploy gives each of its `--target`s one instance, even though their starts
/// wait at the same time, and may name an address an older version still holds (here
/// `v1`'s, warm through the default scale-down delay after `v2`).
#[test]
fn static_runtime_gives_each_target_an_instance_and_may_reuse_an_older_versions_address() {
    let cfg = "[apps.web]\nruntime = \"static\"\nstrategy = \"blue_green\"\n[apps.web.health]\npath = \"/health\"\ninterval = \"100ms\"\n";
    let b = Baton::start(cfg);
    let (p1, p2, p3) = (port(), port(), port());
    let _a = External::start(p1, "v1");
    let _b = External::start(p2, "v1");
    let _c = External::start(p3, "v2");
    let (a1, a2, a3) = (
        format!("127.0.0.1:{p1}"),
        format!("127.0.0.1:{p2}"),
        format!("127.0.0.1:{p3}"),
    );
    b.cli_ok(
        &["deploy", "web", "v1", "--target", &a1, "--target", &a2],
        0,
    );
    let addresses = |st: &serde_json::Value, version: &str| {
        let mut out: Vec<String> = st["instances"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["version"] == version)
            .map(|i| i["address"].as_str().unwrap().to_string())
            .collect();
        out.sort();
        out
    };
    let st = b.status();
    let mut both = vec![a1.clone(), a2.clone()];
    both.sort();
    assert_eq!(addresses(&st, "v1"), both, "{st:#}");
    let rt = rt();
    let load = rt.block_on(async { Load::start(LoadSpec::new(b.proxy)) });
    b.cli_ok(&["deploy", "web", "v2", "--target", &a3], 0);
    let st = b.status();
    assert_eq!(addresses(&st, "v2"), vec![a3.clone()], "{st:#}");
    assert_eq!(addresses(&st, "v1"), both, "v1 stays warm: {st:#}");
    b.cli_ok(&["deploy", "web", "v3", "--target", &a1], 0);
    let st = b.wait_status("v3 at v1's old address, v1 gone", |st| {
        finished(st) && addresses(st, "v1").is_empty()
    });
    std::thread::sleep(Duration::from_millis(200));
    let report = rt.block_on(load.stop());
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(st["stable_version"], "v3");
    assert_eq!(addresses(&st, "v3"), vec![a1.clone()], "{st:#}");
}

#[test]
fn canary_can_be_paused_resumed_and_aborted() {
    let steps = "[apps.web.canary]\nsteps = [{ weight = 30 }, { pause = \"manual\" }, { weight = 60 }, { pause = \"1s\" }]\n";
    let cfg = app_config("canary", 2, "").replace(
        "[apps.web.canary]\nsteps = [{ weight = 20 }, { pause = \"1s\" }, { weight = 60 }, { pause = \"1s\" }]\n",
        steps,
    );
    let b = Baton::start(&cfg);
    b.cli_ok(&["deploy", "web", "v1"], 0);
    b.cli_ok(&["deploy", "web", "v2", "--detach"], 0);
    let st = b.wait_status("waiting at the manual pause", |st| {
        st["weights"]["v2"] == 30 && state(st) == "paused"
    });
    assert_eq!(st["weights"]["v1"], 70);
    // `resume` goes on from a manual pause: the canary moves to 60%.
    b.cli_ok(&["resume", "web"], 0);
    b.wait_status("60%", |st| st["weights"]["v2"] == 60);
    // An operator pause freezes the 1s pause step: well past it, still 60% and paused.
    b.cli_ok(&["pause", "web"], 0);
    std::thread::sleep(Duration::from_millis(1500));
    let st = b.status();
    assert_eq!(state(&st), "paused", "{st:#}");
    assert_eq!(st["weights"]["v2"], 60, "{st:#}");
    let rt = rt();
    let load = rt.block_on(async { Load::start(LoadSpec::new(b.proxy)) });
    std::thread::sleep(Duration::from_millis(300));
    b.cli_ok(&["abort", "web"], 0);
    let st = b.wait_status("aborted", |st| finished(st) && state(st) == "aborted");
    std::thread::sleep(Duration::from_millis(200));
    let report = rt.block_on(load.stop());
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(st["stable_version"], "v1");
    assert!(st["instances"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["version"] == "v1"));
    let h = b.history();
    assert_eq!(h.as_array().unwrap().last().unwrap()["outcome"], "aborted");
}

#[test]
fn blue_green_rollback_is_an_instant_flip_while_blue_is_warm() {
    let cfg = app_config("blue_green", 1, "")
        .replace("scale_down_delay = \"1s\"", "scale_down_delay = \"60s\"");
    let b = Baton::start(&cfg);
    b.cli_ok(&["deploy", "web", "v1"], 0);
    b.cli_ok(&["deploy", "web", "v2"], 0);
    let st = b.status();
    assert_eq!(st["weights"]["v2"], 100);
    let blue: Vec<String> = st["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["version"] == "v1")
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(blue.len(), 1, "blue stays warm: {st:#}");
    b.cli_ok(&["rollback", "web"], 0);
    let st = b.wait_status("rolled back", |st| {
        finished(st) && st["stable_version"] == "v1"
    });
    // The same blue instance serves again: nothing was started.
    assert!(
        st["instances"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == blue[0].as_str()),
        "{st:#}"
    );
    assert_eq!(
        b.history().as_array().unwrap().last().unwrap()["outcome"],
        "rolled_back"
    );
}

#[test]
fn plan_and_logs_describe_the_app() {
    let b = Baton::start(&app_config("blue_green", 2, ""));
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let plan: serde_json::Value =
        serde_json::from_str(&b.cli_ok(&["plan", "web", "v2", "--json"], 0)).unwrap();
    assert_eq!(plan["peak_instances"], 4);
    assert_eq!(plan["extra_instances"], 2);
    assert!(plan["rss_per_instance_bytes"].as_u64().unwrap() > 0);
    assert!(
        plan["extra_memory_bytes"].as_u64().unwrap()
            >= plan["rss_per_instance_bytes"].as_u64().unwrap()
    );
    let human = b.cli_ok(&["plan", "web", "v2", "--strategy", "rolling"], 0);
    assert!(human.contains("peak instances: 3"), "{human}");
    let logs = b.cli_ok(&["logs", "web"], 0);
    assert!(
        logs.contains("==> web-1-1 (v1) <==") && logs.contains("listening on"),
        "{logs}"
    );
}

#[test]
fn admin_socket_is_private_and_serves_metrics_and_openapi() {
    use std::os::unix::fs::PermissionsExt;
    let b = Baton::start(&app_config("rolling", 1, ""));
    let mode = std::fs::metadata(b.dir.path().join("baton.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "admin socket mode {:o}", mode & 0o777);
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let rt = rt();
    let load = rt.block_on(async { Load::start(LoadSpec::new(b.proxy)) });
    std::thread::sleep(Duration::from_millis(300));
    let report = rt.block_on(load.stop());
    let metrics = admin_get(&b, "/metrics");
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("baton_requests_total{")
                && l.contains("version=\"v1\"")
                && l.contains("2xx")
        })
        .unwrap_or_else(|| panic!("no 2xx counter for v1 in:\n{metrics}"));
    let counted: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(counted, report.ok, "{line}");
    let doc = admin_get(&b, "/openapi.json");
    assert!(doc.starts_with("HTTP/1.1 200") && doc.contains("\"openapi\": \"3.1.0\""));
}

#[test]
fn event_stream_reports_a_deployment_as_it_happens() {
    use std::io::{BufRead, BufReader, Write};
    let b = Baton::start(&app_config("rolling", 1, ""));
    let mut s = std::os::unix::net::UnixStream::connect(b.dir.path().join("baton.sock")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET /v1/events?app=web HTTP/1.1\r\nHost: baton\r\n\r\n").unwrap();
    let mut reader = BufReader::new(s);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    b.cli_ok(&["deploy", "web", "v1"], 0);
    // Read event names until the deployment's end arrives (bounded by the read timeout).
    let mut kinds = Vec::new();
    for _ in 0..200 {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(kind) = line.trim().strip_prefix("event: ") {
            kinds.push(kind.to_string());
            if kind == "finished" {
                break;
            }
        }
    }
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("started"),
        "{kinds:?}"
    );
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("finished"),
        "{kinds:?}"
    );
}

/// One request to the admin socket: status code and body. The body is read only when
/// the answer says how long it is (an event stream never ends).
fn admin_request(b: &Baton, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(b.dir.path().join("baton.sock")).unwrap();
    // One write: the server may answer (a 405, say) and close as soon as it has the head.
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: baton\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes())
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let code: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: no status line in {line:?}"));
    let mut length = None;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        if h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse::<usize>().ok();
            }
        }
    }
    let mut out = vec![0; length.unwrap_or(0)];
    r.read_exact(&mut out).unwrap();
    (code, String::from_utf8(out).unwrap())
}

/// Checks `value` against `schema` (resolving `#/components/schemas/…` in `doc`): its
/// type, and for an object with declared properties, that every served field is
/// documented and every required one is there; recursively.
fn check_schema(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.strip_prefix("#/components/schemas/").unwrap();
        let target = &doc["components"]["schemas"][name];
        assert!(!target.is_null(), "{at}: {r} is not in the document");
        return check_schema(doc, target, value, &format!("{at}<{name}>"));
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = schema.get(key).and_then(Value::as_array) {
            let errors: Vec<String> = options
                .iter()
                .filter_map(|s| check_schema(doc, s, value, at).err())
                .collect();
            return if errors.len() < options.len() {
                Ok(())
            } else {
                Err(format!("{at}: matches none of {key}: {errors:?}"))
            };
        }
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        return all.iter().try_for_each(|s| check_schema(doc, s, value, at));
    }
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    if let Some(t) = schema.get("type") {
        let allowed: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let ok = allowed.contains(&kind) || (kind == "integer" && allowed.contains(&"number"));
        if !ok {
            return Err(format!("{at}: served {kind} {value}, documented {t}"));
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        if !e.contains(value) {
            return Err(format!("{at}: {value} is not one of {e:?}"));
        }
    }
    match value {
        Value::Object(obj) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                if let Some(k) = obj.keys().find(|k| !props.contains_key(*k)) {
                    return Err(format!(
                        "{at}: served field {k} is not documented (documented: {:?})",
                        props.keys().collect::<Vec<_>>()
                    ));
                }
                for (k, v) in obj {
                    check_schema(doc, &props[k], v, &format!("{at}.{k}"))?;
                }
            }
            for r in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let r = r.as_str().unwrap();
                if !obj.contains_key(r) {
                    return Err(format!("{at}: required {r} is missing"));
                }
            }
            if let Some(extra) = schema.get("additionalProperties").filter(|s| s.is_object()) {
                for (k, v) in obj {
                    check_schema(doc, extra, v, &format!("{at}.{k}"))?;
                }
            }
        }
        Value::Array(items) => {
            if let Some(prefix) = schema.get("prefixItems").and_then(Value::as_array) {
                for (i, (s, v)) in prefix.iter().zip(items).enumerate() {
                    check_schema(doc, s, v, &format!("{at}[{i}]"))?;
                }
            } else if let Some(s) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    check_schema(doc, s, v, &format!("{at}[{i}]"))?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// The document `GET /openapi.json` serves describes the router that serves it: every
/// documented operation answers (neither 404 nor 405), no other method is routed on a
/// documented path, an undocumented path is a JSON 404, and what the server sends for an
/// app's status, its history, a plan and an error has exactly the fields the document
/// lists.
#[test]
fn served_openapi_document_matches_the_router_and_the_answers() {
    let b = Baton::start(&app_config("rolling", 1, ""));
    // One deployment only: with no previous version, `rollback` below changes nothing.
    b.cli_ok(&["deploy", "web", "v1"], 0);
    // Traffic, so that the status carries per-version figures.
    let rt = rt();
    let load = rt.block_on(async { Load::start(LoadSpec::new(b.proxy)) });
    b.wait_status("traffic figures", |st| !st["traffic"][0].is_null());

    let (code, text) = admin_request(&b, "GET", "/openapi.json", "");
    assert_eq!(code, 200, "{text}");
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    // A TCP admin listener's bearer token is described.
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer",
        "{}",
        doc["components"]["securitySchemes"]
    );
    let paths = doc["paths"].as_object().unwrap();
    // `baton serve` can upgrade itself, so its document has that endpoint too.
    for p in ["/v1/apps/{app}/deployments", "/v1/upgrade", "/openapi.json"] {
        assert!(
            paths.contains_key(p),
            "{p} missing: {:?}",
            paths.keys().collect::<Vec<_>>()
        );
    }
    let methods = ["get", "post", "put", "delete", "patch"];
    for (path, ops) in paths {
        let concrete = path.replace("{app}", "web");
        for m in methods {
            let upper = m.to_uppercase();
            // An unknown field: every body is refused before anything happens (no
            // deploy, no upgrade); endpoints without a body refuse with a state error.
            let (code, body) = admin_request(&b, &upper, &concrete, "{\"no_such_field\":1}");
            if let Some(op) = ops.get(m) {
                assert!(
                    code != 404 && code != 405,
                    "documented {upper} {path} answered {code}: {body}"
                );
                if code >= 400 {
                    let e: Value = serde_json::from_str(&body)
                        .unwrap_or_else(|_| panic!("{upper} {path}: error is not JSON: {body}"));
                    let schema =
                        &op["responses"][code.to_string()]["content"]["application/json"]["schema"];
                    assert!(
                        !schema.is_null(),
                        "{upper} {path}: answer {code} is not documented: {body}"
                    );
                    check_schema(&doc, schema, &e, &format!("{upper} {path} {code}")).unwrap();
                }
            } else {
                assert_eq!(
                    code, 405,
                    "undocumented {upper} {path} answered {code}: {body}"
                );
            }
        }
    }
    let (code, body) = admin_request(&b, "GET", "/v1/no-such-thing", "");
    assert_eq!(code, 404);
    assert!(body.contains("\"error\""), "{body}");

    let schema_of = |path: &str, method: &str, code: &str| {
        doc["paths"][path][method]["responses"][code]["content"]["application/json"]["schema"]
            .clone()
    };
    let served = |path: &str| {
        let (code, body) = admin_request(&b, "GET", path, "");
        assert_eq!(code, 200, "{path}: {body}");
        serde_json::from_str::<Value>(&body).unwrap()
    };
    let status = served("/v1/apps/web");
    let _ = rt.block_on(load.stop());
    // The answer exercises the nested types too.
    assert!(
        !status["deployment"].is_null() && !status["traffic"][0].is_null(),
        "{status}"
    );
    assert!(!status["instances"][0].is_null(), "{status}");
    let documented = schema_of("/v1/apps/{app}", "get", "200");
    check_schema(&doc, &documented, &status, "status").unwrap();
    // And the other way: every field the document lists for a status and its parts is
    // served (they are all always present, null when empty).
    for (name, value) in [
        ("AppStatus", &status),
        ("DeploymentStatus", &status["deployment"]),
        ("InstanceStatus", &status["instances"][0]),
        ("VersionTraffic", &status["traffic"][0]),
    ] {
        let props = doc["components"]["schemas"][name]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{name} has no properties in the document"));
        for p in props.keys() {
            assert!(
                value.get(p).is_some(),
                "{name}.{p} is documented but not served: {value}"
            );
        }
    }
    check_schema(
        &doc,
        &schema_of("/v1/apps", "get", "200"),
        &served("/v1/apps"),
        "apps",
    )
    .unwrap();
    let history = served("/v1/apps/web/history");
    assert_eq!(history.as_array().unwrap().len(), 1, "{history}");
    check_schema(
        &doc,
        &schema_of("/v1/apps/{app}/history", "get", "200"),
        &history,
        "history",
    )
    .unwrap();
    check_schema(
        &doc,
        &schema_of("/v1/apps/{app}/plan", "get", "200"),
        &served("/v1/apps/web/plan?version=v3"),
        "plan",
    )
    .unwrap();
    check_schema(
        &doc,
        &schema_of("/v1/apps/{app}/logs", "get", "200"),
        &served("/v1/apps/web/logs?lines=5"),
        "logs",
    )
    .unwrap();
    // The checker is not vacuous: a renamed field fails it.
    let mut renamed = status.clone();
    let v = renamed
        .as_object_mut()
        .unwrap()
        .remove("stable_version")
        .unwrap();
    renamed["stable"] = v;
    assert!(check_schema(&doc, &documented, &renamed, "renamed").is_err());
}

/// `baton status` ends its output with a newline (one app, all, or none), and `baton history`
/// lines its columns up whatever the widths of ids, versions and strategies.
#[test]
fn status_ends_with_a_newline_and_history_columns_line_up() {
    let b = Baton::start(&app_config("rolling", 1, ""));
    b.cli_ok(&["deploy", "web", "v1"], 0);
    b.cli_ok(
        &[
            "deploy",
            "web",
            "v2-with-a-long-name",
            "--strategy",
            "recreate",
        ],
        0,
    );
    for args in [&["status", "web"][..], &["status"][..]] {
        let out = b.cli_ok(args, 0);
        assert!(out.ends_with('\n'), "baton {args:?}: {out:?}");
        assert!(!out.ends_with("\n\n"), "baton {args:?}: {out:?}");
    }
    // Without apps too, where there is nothing else to print.
    let empty = Baton::start("");
    let out = empty.cli_ok(&["status"], 0);
    assert_eq!(out, "no apps in this config\n");
    drop(empty);

    let out = b.cli_ok(&["history", "web"], 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    // Where each of the first seven words (id, from, →, to, strategy, outcome,
    // duration) starts and ends, in characters.
    let spans = |line: &str| {
        let mut spans = Vec::new();
        let mut start = None;
        for (i, c) in line.chars().chain([' ']).enumerate() {
            match (c == ' ', start) {
                (false, None) => start = Some(i),
                (true, Some(s)) => {
                    spans.push((s, i));
                    start = None;
                }
                _ => {}
            }
        }
        spans.truncate(7);
        spans
    };
    let (a, b2) = (spans(lines[0]), spans(lines[1]));
    assert_eq!(a.len(), 7, "{out}");
    assert_eq!(b2.len(), 7, "{out}");
    for col in 0..6 {
        assert_eq!(a[col].0, b2[col].0, "column {col} starts differ:\n{out}");
    }
    // The duration is right-aligned.
    assert_eq!(
        a[6].1, b2[6].1,
        "durations end in different columns:\n{out}"
    );
}
