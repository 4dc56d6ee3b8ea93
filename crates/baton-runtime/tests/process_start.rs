//! Starting real processes: ports, the command template, environment, cwd, and the
//! errors that must leave nothing behind.

#![allow(clippy::unwrap_used)]

mod support;

use baton_runtime::{Runtime, RuntimeError, RuntimeEvent};
use std::net::TcpListener;
use support::{http_get, process_of, req, wait_listening, Fixture};

#[tokio::test]
async fn python_server_listens_on_the_port_given_in_port_env() {
    let fx = Fixture::with(
        r#"sh -c 'exec python3 -m http.server --bind 127.0.0.1 "$PORT"'"#,
        |s| {
            let site = s.log_dir.parent().unwrap().join("site");
            std::fs::create_dir_all(&site).unwrap();
            std::fs::write(site.join("marker-from-cwd.txt"), "x").unwrap();
            s.cwd = Some(site);
        },
    );
    let a = fx.start("web-v1-1", "v1").await;
    let b = fx.start("web-v1-2", "v1").await;
    assert_ne!(a.addr, b.addr, "two live instances never share a port");
    for h in [&a, &b] {
        assert!(fx.spec.ports.contains(h.addr.port()));
        assert!(h.addr.ip().is_loopback());
        wait_listening(h.addr).await;
        let page = http_get(h.addr, "/").await;
        assert!(page.starts_with("HTTP/1.0 200"), "{page}");
        assert!(
            page.contains("marker-from-cwd.txt"),
            "cwd not applied: {page}"
        );
    }
}

#[tokio::test]
async fn template_and_environment_reach_the_process() {
    let mut fx = Fixture::with(
        r#"sh -c 'echo "args={app} {version} {instance} {port}"; echo "env=$BATON_APP $BATON_VERSION $BATON_INSTANCE $PORT $GREETING"'"#,
        |s| {
            s.env.insert("GREETING".into(), "hello-{version}".into());
        },
    );
    let h = fx.start("web-v7-1", "v7").await;
    let port = h.addr.port();
    let RuntimeEvent::Exited {
        id,
        status,
        last_logs,
    } = fx.next_event().await;
    assert_eq!(id, "web-v7-1");
    assert_eq!(
        status, "exited with status 0",
        "an exit nobody asked for, even 0"
    );
    let n = last_logs.len();
    assert!(n >= 2, "{last_logs:?}");
    assert_eq!(last_logs[n - 2], format!("args=web v7 web-v7-1 {port}"));
    assert_eq!(
        last_logs[n - 1],
        format!("env=web v7 web-v7-1 {port} hello-v7")
    );
    assert!(
        last_logs[0].starts_with("[baton] starting web v7"),
        "{last_logs:?}"
    );
}

#[tokio::test]
async fn exhausted_port_range_starts_nothing() {
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let fx = Fixture::with("sleep 60", |s| {
        s.ports = baton_core::PortRange {
            first: port,
            last: port,
        }
    });
    let err = fx.rt.start(req("web-v1-1", "v1")).await.unwrap_err();
    assert!(
        matches!(err, RuntimeError::PortsExhausted { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("no free port in {port}-{port} for app web: widen `ports` in [apps.web] or free some of those ports")
    );
    assert!(
        !fx.spec.log_dir.exists(),
        "nothing was started, not even a log"
    );
}

#[tokio::test]
async fn a_missing_program_is_reported_and_frees_its_port() {
    let fx = Fixture::with("/nonexistent/baton-test-program --port {port}", |s| {
        s.ports = support::free_range(1);
    });
    let err = fx.rt.start(req("web-v1-1", "v1")).await.unwrap_err();
    assert!(matches!(err, RuntimeError::Spawn { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("could not start `/nonexistent/baton-test-program --port {port}`"),
        "{msg}"
    );
    assert!(msg.contains("No such file"), "{msg}");
    // The single port of the range was released: a good command can use it.
    let ok = Fixture::with("sleep 60", |s| s.ports = fx.spec.ports);
    let h = ok.start("web-v1-2", "v1").await;
    assert_eq!(h.addr.port(), fx.spec.ports.first);
    let (pid, _, _) = process_of(&h);
    assert!(pid > 1);
}

#[tokio::test]
async fn bad_cwd_and_bad_names_are_refused_before_spawning() {
    let fx = Fixture::with("sleep 60", |s| {
        s.cwd = Some("/nonexistent/baton-dir".into())
    });
    let err = fx.rt.start(req("web-v1-1", "v1")).await.unwrap_err();
    assert!(matches!(err, RuntimeError::BadCwd { .. }), "{err:?}");
    assert!(err.to_string().contains("fix `cwd` in [apps.web]"), "{err}");

    let fx = Fixture::new("sleep 60");
    let err = fx.rt.start(req("../../etc/x", "v1")).await.unwrap_err();
    assert!(matches!(err, RuntimeError::Name(_)), "{err:?}");
    let err = fx.rt.start(req("web-1", "v1;rm")).await.unwrap_err();
    assert!(matches!(err, RuntimeError::Name(_)), "{err:?}");
    assert!(!fx.spec.log_dir.exists());
}

#[tokio::test]
async fn the_wrong_kind_of_handle_is_refused() {
    let fx = Fixture::new("sleep 60");
    let stat = baton_runtime::StaticRuntime::new();
    let mut r = req("web-v1-1", "v1");
    r.target = Some("127.0.0.1:1".parse().unwrap());
    let h = stat.start(r).await.unwrap();
    let err = fx.rt.stop(&h).await.unwrap_err();
    assert!(matches!(err, RuntimeError::WrongKind { .. }), "{err:?}");
    assert!(fx.rt.adopt(&h).await.is_err());
}
