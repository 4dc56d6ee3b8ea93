//! Every profile against the real sample app over loopback: what counts as success, what
//! counts as a failure (wrong echo, a WebSocket cut without a close frame), and the time
//! slicing of the report.
#![allow(clippy::unwrap_used)]

use baton_loadgen::{Load, LoadSpec, Profile};
use sample_app::SampleOptions;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

struct App {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn app() -> App {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let opts = SampleOptions {
        app_version: "v7".into(),
        ..SampleOptions::default()
    };
    let task = tokio::spawn(sample_app::run(opts, listener, async {
        let _ = rx.await;
    }));
    App {
        addr,
        stop: Some(tx),
        task,
    }
}

fn spec(addr: SocketAddr, profile: Profile) -> LoadSpec {
    LoadSpec {
        clients: 2,
        gap: Duration::from_millis(20),
        ..LoadSpec::with_profile(addr, profile)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_profile_at_once_succeeds_against_a_healthy_app() {
    let app = app().await;
    let mut specs: Vec<LoadSpec> = Profile::ALL.iter().map(|p| spec(app.addr, *p)).collect();
    for s in &mut specs {
        if s.profile == Profile::Slow {
            s.path = "/slow?ms=300".into();
        }
    }
    let load = Load::start_mixed(specs);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = load.stop().await;
    assert_eq!(r.failed, 0, "{r:#?}");
    for p in Profile::ALL {
        let s = &r.by_profile[p.name()];
        assert!(s.ok > 0 && s.failed == 0, "{}: {s:?}", p.name());
    }
    assert_eq!(r.by_version.keys().collect::<Vec<_>>(), ["v7"], "{r:?}");
    assert!(r.ws.opened >= 2 && r.ws.echoed > 0, "{:?}", r.ws);
    assert_eq!(r.ws.client_closed, r.ws.opened, "{:?}", r.ws);
    assert!(r.by_profile["slow"].p50_ms >= 300.0, "{r:?}");
    assert_eq!(r.samples.len() as u64, r.sent);
    let _ = app.stop;
}

#[tokio::test]
async fn a_post_answered_with_another_body_is_a_failure() {
    let app = app().await;
    // `/write` answers a counter, not the body.
    let load = Load::start(LoadSpec {
        path: "/write".into(),
        ..spec(app.addr, Profile::Post)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = load.stop().await;
    assert_eq!(r.ok, 0, "{r:?}");
    assert!(r.failed > 0);
    assert!(
        r.failures.keys().all(|k| k.starts_with("echo mismatch")),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_frame_from_the_server_is_a_reconnect_not_a_failure() {
    let mut app = app().await;
    let load = Load::start(LoadSpec {
        gap: Duration::from_millis(50),
        ..spec(app.addr, Profile::WebSocket)
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Graceful shutdown: the app sends every WebSocket 1001 "going away".
    app.stop.take().unwrap().send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), &mut app.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = load.stop().await;
    assert_eq!(r.ws.server_closed, 2, "{r:?}");
    assert!(r.ws.echoed > 0, "{r:?}");
    // Reconnecting to a stopped app is refused, and that is a failure; nothing else is.
    assert!(
        r.failures
            .keys()
            .all(|k| k.starts_with("connect: connection refused")),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_websocket_cut_without_a_close_frame_is_a_failure() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accepts the handshake, then closes the TCP connection without a close frame.
    let server = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let ws = tokio_tungstenite::accept_async(stream).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(ws);
        }
    });
    let load = Load::start(LoadSpec {
        clients: 1,
        gap: Duration::from_millis(500),
        ..LoadSpec::with_profile(addr, Profile::WebSocket)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = load.stop().await;
    server.abort();
    assert!(
        r.failures
            .get("ws closed at rest: no close frame (1006)")
            .is_some_and(|n| *n >= 1),
        "{r:?}"
    );
    assert_eq!(r.ws.server_closed, 0, "{r:?}");
}

#[tokio::test]
async fn window_stats_split_requests_during_and_outside_windows() {
    let app = app().await;
    let load = Load::start(LoadSpec {
        path: "/slow?ms=20".into(),
        ..spec(app.addr, Profile::KeepAlive)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let a = Instant::now();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let b = Instant::now();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = load.stop().await;
    let (during, rest) = r.window_stats(&[(a, b)], &[Profile::KeepAlive]);
    assert!(during.sent > 0 && rest.sent > 0, "{during:?} {rest:?}");
    assert_eq!(during.sent + rest.sent, r.sent);
    let (none, _) = r.window_stats(&[(a, b)], &[Profile::Post]);
    assert_eq!(none.sent, 0);
}

/// A server that answers every request `200`, with `Connection: close` when `say_close`
/// (and closes), else keeping the connection until it has been idle `idle_close`; counts
/// the requests it answered.
async fn keep_alive_server(
    say_close: bool,
    idle_close: Duration,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answered = std::sync::Arc::new(AtomicU64::new(0));
    let count = answered.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 1024];
                    let n = match tokio::time::timeout(idle_close, s.read(&mut chunk)).await {
                        Ok(Ok(n)) if n > 0 => n,
                        _ => return, // idle too long (or the client left): close
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..i + 4);
                        let conn = if say_close { "close" } else { "keep-alive" };
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\nX-Version: v9\r\nConnection: {conn}\r\nContent-Length: 3\r\n\r\nok\n"
                        );
                        s.write_all(resp.as_bytes()).await.unwrap();
                        count.fetch_add(1, Ordering::Relaxed);
                        if say_close {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, answered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_client_fails_a_request_sent_on_a_connection_closed_while_idle() {
    // The server closes connections idle for 100 ms; the client pauses 300 ms.
    let (addr, _) = keep_alive_server(false, Duration::from_millis(100)).await;
    let plain = Load::start(LoadSpec {
        clients: 1,
        gap: Duration::from_millis(300),
        ..LoadSpec::with_profile(addr, Profile::Plain)
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let r = plain.stop().await;
    assert!(r.ok >= 1, "{r:?}");
    assert!(r.failed >= 1, "{r:?}");
    assert!(
        r.failures
            .keys()
            .all(|k| k.starts_with("closed without answer")),
        "{r:?}"
    );
    // hyper's client (the keep-alive profile) sees the close first and reconnects.
    let hyper_client = Load::start(LoadSpec {
        clients: 1,
        gap: Duration::from_millis(300),
        ..LoadSpec::with_profile(addr, Profile::KeepAlive)
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let r = hyper_client.stop().await;
    assert!(r.ok >= 2 && r.failed == 0, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_client_reconnects_after_connection_close_and_varies_its_gaps() {
    use std::sync::atomic::Ordering;
    let (addr, answered) = keep_alive_server(true, Duration::from_secs(10)).await;
    let load = Load::start(LoadSpec {
        clients: 2,
        gap: Duration::from_millis(1),
        gap_max: Some(Duration::from_millis(30)),
        ..LoadSpec::with_profile(addr, Profile::Plain)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = load.stop().await;
    assert_eq!(r.failed, 0, "{r:?}");
    assert!(r.ok >= 4, "{r:?}");
    assert_eq!(r.ok, answered.load(Ordering::Relaxed));
    assert_eq!(r.by_version.keys().collect::<Vec<_>>(), ["v9"], "{r:?}");
}
