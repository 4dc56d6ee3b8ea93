//! Access logs over real sockets: every line names the version and the instance that
//! served the request and the request id the instance got; the combined format is
//! nginx's layout, JSON lines parse; a writer that cannot keep up (a pipe nobody reads,
//! standing for a stuck disk) loses lines, never requests.

use crate::common::*;
use baton_metrics::AccessLogDrop;
use baton_proxy::{AccessLogFormat, AccessLogTarget, AccessLogWriter, ProxyConfig};
use http::StatusCode;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

/// Linux's `O_NONBLOCK`, so opening the read end of a FIFO does not wait for a writer.
const O_NONBLOCK: i32 = 0o4000;

/// A proxy over two versions (one instance each, half the traffic each) logging to
/// `path` in `format`.
async fn logged_proxy(
    path: &Path,
    format: AccessLogFormat,
) -> (TestProxy, AccessLogWriter, [Counting; 2]) {
    let backends = [
        counting("a1", "v1", 200).await,
        counting("b1", "v2", 200).await,
    ];
    let p = start_proxy(ProxyConfig::default()).await;
    let spec = |c: &Counting| baton_core::BackendSpec {
        id: c.id.clone(),
        addr: c.addr,
    };
    p.proxy
        .publish(&table(pools(vec![
            pool("v1", 50, vec![spec(&backends[0])]),
            pool("v2", 50, vec![spec(&backends[1])]),
        ])))
        .unwrap();
    let (writer, log) = AccessLogWriter::start(
        AccessLogTarget::File(path.to_path_buf()),
        format,
        1024,
        p.metrics.clone(),
    )
    .unwrap();
    assert!(p.proxy.set_access_log(log));
    (p, writer, backends)
}

/// What each request got: (path, version, instance, the request id the instance saw).
async fn requests(p: &TestProxy, backends: &[Counting; 2], n: usize) -> Vec<[String; 4]> {
    let mut c = h1(p.addr).await;
    let mut sent = Vec::new();
    for i in 0..n {
        let path = format!("/r/{i}?q=%22x%22");
        let answer = try_send(&mut c, request("GET", &path, &[("user-agent", "t/1")], ""))
            .await
            .unwrap();
        assert_eq!(answer.0, StatusCode::OK);
        let version = version_of(&answer);
        let b = &backends[usize::from(version == "v2")];
        let seen = b.last_headers.lock().unwrap().clone().unwrap();
        let id = seen["x-request-id"].to_str().unwrap().to_string();
        sent.push([path, version, b.id.clone(), id]);
    }
    sent
}

#[tokio::test]
async fn combined_lines_follow_nginx_and_name_the_version_that_served() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let (p, writer, backends) = logged_proxy(&path, AccessLogFormat::Combined).await;
    let sent = requests(&p, &backends, 40).await;
    let _ = get_once(p.addr, "/other", &[("x-request-id", "given-1")]).await;
    writer.close(Duration::from_secs(10)).await;
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 41, "{text}");
    // nginx's combined layout, then baton's fields.
    let nginx = regex::Regex::new(
        r#"^127\.0\.0\.1 - - \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000\] "(\S+) (\S+) (\S+)" (\d{3}) (\d+) "([^"]*)" "([^"]*)" rt=\d+\.\d{3} urt=\d+\.\d{3} host=(\S+) app=(\S+) version=(\S+) instance=(\S+) rid=(\S+)$"#,
    )
    .unwrap();
    let mut versions = std::collections::BTreeSet::new();
    for (line, [path, version, instance, id]) in lines.iter().zip(&sent) {
        let c = nginx.captures(line).unwrap_or_else(|| panic!("{line}"));
        assert_eq!(&c[1], "GET");
        assert_eq!(&c[2], path.as_str(), "{line}");
        assert_eq!(&c[3], "HTTP/1.1");
        assert_eq!(&c[4], "200");
        assert_eq!(&c[6], "-");
        assert_eq!(&c[7], "t/1");
        assert_eq!(&c[8], "proxy.test");
        assert_eq!(&c[9], APP);
        assert_eq!(&c[10], version, "{line}");
        assert_eq!(&c[11], instance, "{line}");
        assert_eq!(
            &c[12], id,
            "the log and the instance see one request id: {line}"
        );
        versions.insert(version.clone());
    }
    assert_eq!(versions.len(), 2, "both versions served: {text}");
    assert!(
        lines[40].contains("\"GET /other HTTP/1.1\" 200"),
        "{}",
        lines[40]
    );
    assert!(lines[40].ends_with(" rid=given-1"), "{}", lines[40]);
}

#[tokio::test]
async fn json_lines_parse_and_errors_are_logged_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.json");
    let (p, writer, backends) = logged_proxy(&path, AccessLogFormat::Json).await;
    let sent = requests(&p, &backends, 20).await;
    let mut c = h2(p.addr).await;
    let answer = try_send_h2(&mut c, request("GET", "/h2", &[], ""), p.addr)
        .await
        .unwrap();
    assert_eq!(answer.0, StatusCode::OK);
    // No route for this request: 404 from the proxy itself.
    p.proxy
        .publish(&baton_core::RouteTableSpec::default())
        .unwrap();
    assert_eq!(
        get_once(p.addr, "/gone", &[]).await.0,
        StatusCode::NOT_FOUND
    );
    writer.close(Duration::from_secs(10)).await;
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 22, "{text}");
    for (v, [path, version, instance, id]) in lines.iter().zip(&sent) {
        assert_eq!(v["path"], path.as_str());
        assert_eq!(v["status"], 200);
        assert_eq!(v["method"], "GET");
        assert_eq!(v["client"], "127.0.0.1");
        assert_eq!(v["host"], "proxy.test");
        assert_eq!(v["app"], APP);
        assert_eq!(v["version"], version.as_str());
        assert_eq!(v["instance"], instance.as_str());
        assert_eq!(v["request_id"], id.as_str());
        assert!(v["duration_ms"].as_f64().unwrap() >= v["upstream_ms"].as_f64().unwrap());
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(lines[20]["protocol"], "HTTP/2.0");
    assert_eq!(lines[20]["path"], "/h2");
    assert_eq!(lines[21]["status"], 404);
    assert!(lines[21]["version"].is_null() && lines[21]["upstream_ms"].is_null());
    assert!(lines[21]["bytes"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_cannot_keep_up_loses_lines_not_requests() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("stuck");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // A reader that never reads: the writer's open succeeds, and its writes block once
    // the pipe's buffer is full, as on a disk that stopped answering.
    let _reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let backend = counting("a1", "v1", 200).await;
    let p = start_proxy(ProxyConfig::default()).await;
    p.proxy
        .publish(&table(pools(vec![pool(
            "v1",
            100,
            vec![baton_core::BackendSpec {
                id: backend.id.clone(),
                addr: backend.addr,
            }],
        )])))
        .unwrap();
    let (_writer, log) = AccessLogWriter::start(
        AccessLogTarget::File(fifo.clone()),
        AccessLogFormat::Combined,
        16,
        p.metrics.clone(),
    )
    .unwrap();
    p.proxy.set_access_log(log);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let addr = p.addr;
        tasks.push(tokio::spawn(async move {
            let mut c = h1(addr).await;
            let mut ok = 0;
            for _ in 0..500 {
                let path = format!("/{}", "x".repeat(200));
                if get(&mut c, &path).await.0 == StatusCode::OK {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap();
    }
    assert_eq!(ok, 2000, "every request succeeded");
    let dropped = p.metrics.access_log_drops(AccessLogDrop::QueueFull);
    assert!(
        dropped > 0,
        "the stuck writer's lines were dropped and counted"
    );
}

#[tokio::test]
async fn a_websocket_upgrade_is_logged_with_its_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.json");
    let app = sample("s1", "v3", None).await;
    let p = start_proxy(ProxyConfig::default()).await;
    p.proxy
        .publish(&table(pools(vec![pool("v3", 100, vec![app.spec()])])))
        .unwrap();
    let (writer, log) = AccessLogWriter::start(
        AccessLogTarget::File(path.clone()),
        AccessLogFormat::Json,
        64,
        p.metrics.clone(),
    )
    .unwrap();
    p.proxy.set_access_log(log);
    drop(ws_connect(p.addr).await);
    let text = loop {
        let text = std::fs::read_to_string(&path).unwrap();
        if !text.is_empty() {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    writer.close(Duration::from_secs(10)).await;
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(v["status"], 101, "{v}");
    assert_eq!(v["path"], "/ws");
    assert_eq!(v["version"], "v3", "{v}");
    assert_eq!(v["instance"], "s1", "{v}");
}
