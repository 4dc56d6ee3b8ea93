//! Upstream failures: backends closing idle connections, dead backends, slow and
//! failing backends. Only provably unprocessed requests are retried; errors are
//! 502/503/504 with a reason; failing backends are ejected and restored.

use crate::common::*;
use baton_proxy::{PassiveEvent, ProxyConfig};
use http::StatusCode;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_closing_idle_connections_early_causes_no_client_error() {
    a_backend_closing_idle_connections_early_causes_no_client_error_scenario().await;
}

/// The same with two proxy workers, whose request heads to upstreams are batched
/// (`batch.rs`): a head sent on a connection the backend had closed fails after the
/// write returned, and is still known never to have reached the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_closing_idle_connections_early_causes_no_client_error_with_two_workers() {
    baton_proxy::start_workers(2).unwrap();
    a_backend_closing_idle_connections_early_causes_no_client_error_scenario().await;
}

async fn a_backend_closing_idle_connections_early_causes_no_client_error_scenario() {
    // The backend drops keep-alive connections after 100 ms; the proxy's pool would
    // keep them for 15 s. Four clients send one request each per round, GETs and POSTs
    // mixed; between rounds the test waits until the backend has closed every upstream
    // connection, so each round's requests find only closed connections in the pool.
    // (Requests racing the close itself are the next test's subject: there a POST may
    // rightly fail.)
    let backend = sample("a1", "v1", Some(100)).await;
    let p = start_proxy(ProxyConfig::default()).await;
    p.proxy
        .publish(&table(pools(vec![pool("v1", 100, vec![backend.spec()])])))
        .unwrap();
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(h1(p.addr).await);
    }
    let mut posts = 0;
    for n in 0..12 {
        let mut round = tokio::task::JoinSet::new();
        for (i, mut c) in clients.drain(..).enumerate() {
            round.spawn(async move {
                let post = (i + n) % 2 == 0;
                let req = if post {
                    request("POST", "/write", &[], "x")
                } else {
                    request("GET", "/", &[], "")
                };
                let answer = try_send(&mut c, req).await.unwrap();
                assert_eq!(
                    answer.0,
                    StatusCode::OK,
                    "client {i} request {n}: {:?}",
                    answer.2
                );
                (c, post)
            });
        }
        while let Some(done) = round.join_next().await {
            let (c, post) = done.unwrap();
            clients.push(c);
            posts += u64::from(post);
        }
        backend_closed_every_connection(backend.addr).await;
    }
    assert_eq!(backend.writes().await, posts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_racing_idle_closes_are_retried_only_when_safe() {
    requests_racing_idle_closes_are_retried_only_when_safe_scenario().await;
}

/// The same with two proxy workers (batched writes, `batch.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_racing_idle_closes_are_retried_only_when_safe_with_two_workers() {
    baton_proxy::start_workers(2).unwrap();
    requests_racing_idle_closes_are_retried_only_when_safe_scenario().await;
}

async fn requests_racing_idle_closes_are_retried_only_when_safe_scenario() {
    // Pauses straddle the backend's idle timeout, so requests race its close. A GET
    // may always be retried and must never fail; a POST is retried only if it was
    // provably not written, so it may fail with 502 but is never processed twice.
    let backend = sample("a1", "v1", Some(40)).await;
    let p = start_proxy(ProxyConfig::default()).await;
    p.proxy
        .publish(&table(pools(vec![pool("v1", 100, vec![backend.spec()])])))
        .unwrap();
    let mut clients = Vec::new();
    for i in 0..4 {
        let addr = p.addr;
        clients.push(tokio::spawn(async move {
            let mut c = h1(addr).await;
            let mut ok_posts = 0u64;
            for n in 0..60 {
                tokio::time::sleep(Duration::from_millis(fastrand::u64(30..50))).await;
                if (i + n) % 2 == 0 {
                    let answer = try_send(&mut c, request("GET", "/", &[], ""))
                        .await
                        .unwrap();
                    assert_eq!(answer.0, StatusCode::OK, "GET failed: {:?}", answer.2);
                    continue;
                }
                let answer = try_send(&mut c, request("POST", "/write", &[], "x"))
                    .await
                    .unwrap();
                if answer.0.is_success() {
                    ok_posts += 1;
                } else {
                    assert_eq!(answer.0, StatusCode::BAD_GATEWAY, "{:?}", answer.2);
                }
            }
            ok_posts
        }));
    }
    let mut ok = 0;
    for c in clients {
        ok += c.await.unwrap();
    }
    assert_eq!(
        backend.writes().await,
        ok,
        "a POST was delivered twice (or lost after a 2xx)"
    );
}

#[tokio::test]
async fn a_dead_backend_is_retried_on_the_live_one() {
    for eject_after in [0, 5] {
        let live = sample("live", "v1", None).await;
        let dead = baton_core::BackendSpec {
            id: "dead".into(),
            addr: dead_addr().await,
        };
        let p = start_proxy(ProxyConfig {
            eject_after,
            ..ProxyConfig::default()
        })
        .await;
        p.proxy
            .publish(&table(pools(vec![pool(
                "v1",
                100,
                vec![dead, live.spec()],
            )])))
            .unwrap();
        let mut c = h1(p.addr).await;
        for n in 0..40 {
            let req = if n % 2 == 0 {
                request("GET", "/", &[], "")
            } else {
                request("POST", "/write", &[], "x")
            };
            let answer = try_send(&mut c, req).await.unwrap();
            assert_eq!(answer.0, StatusCode::OK, "request {n}: {:?}", answer.2);
        }
        assert_eq!(live.writes().await, 20);
    }
}

#[tokio::test]
async fn failures_are_502_503_504_with_a_reason() {
    let p = start_proxy(ProxyConfig {
        upstream_header_timeout: Duration::from_millis(300),
        ..ProxyConfig::default()
    })
    .await;
    let dead = baton_core::BackendSpec {
        id: "dead".into(),
        addr: dead_addr().await,
    };
    p.proxy
        .publish(&table(pools(vec![pool("v1", 100, vec![dead])])))
        .unwrap();
    let answer = get_once(p.addr, "/", &[]).await;
    assert_eq!(answer.0, StatusCode::BAD_GATEWAY);
    assert_eq!(answer.1["x-baton-error"], "connect");
    assert_eq!(answer.2, "baton: cannot connect to app web version v1\n");

    let slow = sample("slow", "v1", None).await;
    p.proxy
        .publish(&table(pools(vec![pool("v1", 100, vec![slow.spec()])])))
        .unwrap();
    let answer = get_once(p.addr, "/slow?ms=3000", &[]).await;
    assert_eq!(answer.0, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(answer.1["x-baton-error"], "upstream_timeout");

    let mut zero = table(pools(vec![pool("v1", 0, vec![slow.spec()])]));
    zero.apps
        .get_mut(APP)
        .unwrap()
        .rules
        .push(baton_core::RuleSpec {
            matcher: baton_core::MatchSpec::Header {
                name: "x-beta".into(),
                value: baton_core::ValueMatch::Present,
            },
            version: "v1".into(),
        });
    p.proxy.publish(&zero).unwrap();
    let answer = get_once(p.addr, "/", &[]).await;
    assert_eq!(answer.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.1["x-baton-error"], "no_version");
    assert_eq!(
        get_once(p.addr, "/", &[("x-beta", "1")]).await.0,
        StatusCode::OK
    );

    let v1 = p.metrics.snapshot(APP, "v1").unwrap();
    assert_eq!(v1.by_class[5], 2, "{v1:?}");
}

#[tokio::test]
async fn each_request_on_a_pooled_connection_gets_the_whole_header_timeout() {
    // The response-head timer stays with the upstream connection from one request to
    // the next: an earlier request's deadline passing must neither cut a later request
    // short nor let it wait beyond its own.
    let p = start_proxy(ProxyConfig {
        upstream_header_timeout: Duration::from_millis(1000),
        ..ProxyConfig::default()
    })
    .await;
    let slow = sample("slow", "v1", None).await;
    p.proxy
        .publish(&table(pools(vec![pool("v1", 100, vec![slow.spec()])])))
        .unwrap();
    let mut c = h1(p.addr).await;
    let first = try_send(&mut c, request("GET", "/", &[], ""))
        .await
        .unwrap();
    assert_eq!(first.0, StatusCode::OK);
    // The first request's deadline passes while its connection waits in the pool.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = try_send(&mut c, request("GET", "/slow?ms=300", &[], ""))
        .await
        .unwrap();
    assert_eq!(second.0, StatusCode::OK, "{:?}", second.2);
    // Both went over one upstream connection: the second one met the first's timer.
    assert_eq!(established_to(slow.addr), 1);
    let third = try_send(&mut c, request("GET", "/slow?ms=3000", &[], ""))
        .await
        .unwrap();
    assert_eq!(third.0, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(third.1["x-baton-error"], "upstream_timeout");
}

#[tokio::test]
async fn failing_backends_are_ejected_and_restored_but_never_the_last_one() {
    let bad = counting("bad", "v1", 500).await;
    let good = counting("good", "v1", 200).await;
    let lonely = counting("lonely", "v2", 500).await;
    let p = start_proxy(ProxyConfig {
        eject_after: 3,
        eject_time: Duration::from_millis(300),
        ..ProxyConfig::default()
    })
    .await;
    let mut events = p.proxy.subscribe_events();
    let mut spec = table(pools(vec![
        pool("v1", 100, vec![bad.spec(), good.spec()]),
        pool("v2", 0, vec![lonely.spec()]),
    ]));
    spec.apps
        .get_mut(APP)
        .unwrap()
        .rules
        .push(baton_core::RuleSpec {
            matcher: baton_core::MatchSpec::Header {
                name: "x-v2".into(),
                value: baton_core::ValueMatch::Present,
            },
            version: "v2".into(),
        });
    p.proxy.publish(&spec).unwrap();
    let mut c = h1(p.addr).await;
    for _ in 0..10 {
        let answer = try_send(&mut c, request("GET", "/", &[("x-v2", "1")], ""))
            .await
            .unwrap();
        assert_eq!(answer.0, StatusCode::INTERNAL_SERVER_ERROR);
    }
    assert_eq!(
        lonely.count(),
        10,
        "the last backend of v2 must keep serving"
    );

    let mut ejected = false;
    for _ in 0..100 {
        try_send(&mut c, request("GET", "/", &[], ""))
            .await
            .unwrap();
        if let Ok(PassiveEvent::Ejected {
            backend_id, reason, ..
        }) = events.try_recv()
        {
            assert_eq!(backend_id, "bad");
            assert!(reason.contains("3 consecutive"), "{reason}");
            ejected = true;
            break;
        }
    }
    assert!(ejected, "the failing backend was never ejected");
    let before = bad.count();
    for _ in 0..20 {
        let answer = try_send(&mut c, request("GET", "/", &[], ""))
            .await
            .unwrap();
        if bad.count() == before {
            assert_eq!(answer.0, StatusCode::OK);
        }
    }
    let restored = tokio::time::timeout(Duration::from_secs(10), events.recv()).await;
    match restored.unwrap().unwrap() {
        PassiveEvent::Restored { backend_id, .. } => assert_eq!(backend_id, "bad"),
        other => panic!("unexpected event {other:?}"),
    }
}

#[tokio::test]
async fn connect_timeouts_are_retried_then_answered_502() {
    // A listener that never accepts, with its backlog full: new SYNs are dropped, so
    // connecting to it hangs until the proxy's connect timeout. With a backlog of 0 the
    // accept queue holds one connection; once `held` is in it, Linux drops every SYN
    // (the only kernel baton runs on), so the probe below cannot complete however long
    // it waits: its bound only ends the wait.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let _held = tokio::net::TcpStream::connect(addr).await.unwrap();
    let probe = tokio::time::timeout(
        Duration::from_millis(300),
        tokio::net::TcpStream::connect(addr),
    );
    match probe.await {
        Err(_elapsed) => {}
        Ok(outcome) => panic!(
            "connecting to a listener with a full backlog did not hang ({outcome:?}): this \
             test needs a kernel that drops SYNs to a full accept queue, as Linux does"
        ),
    }
    let live = sample("live", "v1", None).await;
    let hung = baton_core::BackendSpec {
        id: "hung".into(),
        addr,
    };
    let p = start_proxy(ProxyConfig {
        connect_timeout: Duration::from_millis(200),
        eject_after: 0,
        ..ProxyConfig::default()
    })
    .await;
    p.proxy
        .publish(&table(pools(vec![pool(
            "v1",
            100,
            vec![hung.clone(), live.spec()],
        )])))
        .unwrap();
    for n in 0..6 {
        let answer = get_once(p.addr, "/", &[]).await;
        assert_eq!(answer.0, StatusCode::OK, "request {n}: {:?}", answer.2);
    }
    p.proxy
        .publish(&table(pools(vec![pool("v1", 100, vec![hung])])))
        .unwrap();
    let answer = get_once(p.addr, "/", &[]).await;
    assert_eq!(answer.0, StatusCode::BAD_GATEWAY);
    assert_eq!(answer.1["x-baton-error"], "connect");
    drop(listener);
}

/// A blocking HTTP/1.1 backend on its own threads that answers every request with
/// `200 ok`, counts requests by method, and on command closes all its connections
/// (FIN). A request to `/die` is read, counted and answered by closing the
/// connection, as a crashing app would.
struct Closer {
    addr: std::net::SocketAddr,
    posts: std::sync::Arc<std::sync::atomic::AtomicU64>,
    gets: std::sync::Arc<std::sync::atomic::AtomicU64>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Closer {
    fn start() -> Closer {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let posts = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let gets = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (p, g, c) = (posts.clone(), gets.clone(), conns.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                c.lock().unwrap().push(stream.try_clone().unwrap());
                let (p, g) = (p.clone(), g.clone());
                std::thread::spawn(move || {
                    let mut out = stream.try_clone().unwrap();
                    let mut reader = BufReader::new(stream);
                    loop {
                        let (mut first, mut length) = (String::new(), 0usize);
                        if reader.read_line(&mut first).unwrap_or(0) == 0 {
                            return;
                        }
                        loop {
                            let mut line = String::new();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                            let lower = line.to_ascii_lowercase();
                            if let Some(v) = lower.strip_prefix("content-length:") {
                                length = v.trim().parse().unwrap();
                            }
                        }
                        let mut body = vec![0u8; length];
                        reader.read_exact(&mut body).unwrap();
                        let counter = if first.starts_with("POST") { &p } else { &g };
                        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        if first.contains(" /die ") {
                            let _ = out.shutdown(std::net::Shutdown::Both);
                            return;
                        }
                        let ok = out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                        if ok.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Closer {
            addr,
            posts,
            gets,
            conns,
        }
    }

    /// Close every open connection with a FIN and wait until that is done.
    fn close_all(&self) {
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// The RFC 9112 §9.3.1 race made deterministic: the request reaches the proxy, then
/// the backend closes the pooled connection, and only then does the proxy's (single)
/// runtime thread run. The proxy finds the connection closed before it could write
/// the POST, gets the request back from hyper and sends it on a fresh connection.
#[tokio::test(flavor = "current_thread")]
async fn a_post_on_a_pooled_connection_closed_before_the_write_is_sent_once_elsewhere() {
    use std::io::Write;
    let backend = Closer::start();
    let p = start_proxy(ProxyConfig::default()).await;
    let spec = baton_core::BackendSpec {
        id: "b".into(),
        addr: backend.addr,
    };
    p.proxy
        .publish(&table(pools(vec![pool("v1", 100, vec![spec])])))
        .unwrap();
    let post = b"POST /write HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx";

    let mut client = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    for round in 0..3 {
        tokio::io::AsyncWriteExt::write_all(&mut client, post)
            .await
            .unwrap();
        let mut head = vec![0u8; 256];
        let n = tokio::io::AsyncReadExt::read(&mut client, &mut head)
            .await
            .unwrap();
        let answer = String::from_utf8_lossy(&head[..n]).into_owned();
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "round {round}: {answer}"
        );
        assert_eq!(
            backend.posts.load(std::sync::atomic::Ordering::SeqCst),
            2 * round + 1
        );
        // Let the proxy return its upstream connection to the pool.
        tokio::time::sleep(Duration::from_millis(50)).await;

        // Without yielding to the runtime: the next POST arrives at the proxy, then the
        // backend closes the idle pooled connection.
        let mut std_client = client.into_std().unwrap();
        std_client.set_nonblocking(false).unwrap();
        std_client.write_all(post).unwrap();
        backend.close_all();
        std::thread::sleep(Duration::from_millis(50));
        std_client.set_nonblocking(true).unwrap();
        client = tokio::net::TcpStream::from_std(std_client).unwrap();

        let mut head = vec![0u8; 256];
        let n = tokio::io::AsyncReadExt::read(&mut client, &mut head)
            .await
            .unwrap();
        let answer = String::from_utf8_lossy(&head[..n]).into_owned();
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "round {round}: {answer}"
        );
        assert_eq!(
            backend.posts.load(std::sync::atomic::Ordering::SeqCst),
            2 * round + 2
        );
    }
}

#[tokio::test]
async fn a_request_the_backend_may_have_processed_is_never_sent_twice() {
    let backend = Closer::start();
    let p = start_proxy(ProxyConfig {
        eject_after: 0,
        ..ProxyConfig::default()
    })
    .await;
    let spec = baton_core::BackendSpec {
        id: "b".into(),
        addr: backend.addr,
    };
    p.proxy
        .publish(&table(pools(vec![pool("v1", 100, vec![spec])])))
        .unwrap();
    let mut c = h1(p.addr).await;

    // The backend reads the POST and dies without answering: 502, never resent.
    let answer = try_send(&mut c, request("POST", "/die", &[], "x"))
        .await
        .unwrap();
    assert_eq!(answer.0, StatusCode::BAD_GATEWAY);
    assert_eq!(answer.1["x-baton-error"], "upstream");
    assert_eq!(backend.posts.load(std::sync::atomic::Ordering::SeqCst), 1);

    // A GET without a body may be resent once: the backend sees it twice and the
    // client gets the (second) failure only because the backend died both times.
    let answer = try_send(&mut c, request("GET", "/die", &[], ""))
        .await
        .unwrap();
    assert_eq!(answer.0, StatusCode::BAD_GATEWAY);
    assert_eq!(backend.gets.load(std::sync::atomic::Ordering::SeqCst), 2);
    let answer = try_send(&mut c, request("GET", "/", &[], ""))
        .await
        .unwrap();
    assert_eq!(answer.0, StatusCode::OK);
}

/// A backend that takes connections and requests and never answers: a node that died
/// with its packets black-holed looks the same from the proxy. Each request head it
/// reads is reported on the channel.
async fn silent_backend() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let _ = tx.send(head.lines().next().unwrap_or_default().to_string());
                }
            });
        }
    });
    (addr, rx)
}

/// Sends `method` requests (each on a connection of its own) until one waits on the
/// silent backend; the others are answered by the good one. Returns the waiting one.
async fn waiting_on_silent(
    addr: std::net::SocketAddr,
    received: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    method: &'static str,
    body: &'static str,
) -> tokio::task::JoinHandle<Answer> {
    for _ in 0..100 {
        let mut task = tokio::spawn(async move {
            let mut c = h1(addr).await;
            try_send(&mut c, request(method, "/", &[], body))
                .await
                .unwrap()
        });
        let answered = tokio::select! {
            line = received.recv() => {
                assert!(line.unwrap().starts_with(&format!("{method} ")));
                None
            }
            answered = &mut task => Some(answered.unwrap()),
        };
        if answered.is_none() {
            return task;
        }
    }
    panic!("no {method} reached the silent backend in 100 tries");
}

/// A proxy with this response-head timeout routing `v1` to a silent backend ("dead")
/// and a good one; the dead one's spec, and what reaches the silent backend.
async fn silent_and_good(
    head_timeout: Duration,
) -> (
    TestProxy,
    Sample,
    baton_core::BackendSpec,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let good = sample("good", "v1", None).await;
    let (silent, received) = silent_backend().await;
    let p = start_proxy(ProxyConfig {
        upstream_header_timeout: head_timeout,
        ..ProxyConfig::default()
    })
    .await;
    let dead = baton_core::BackendSpec {
        id: "dead".into(),
        addr: silent,
    };
    p.proxy
        .publish(&table(pools(vec![pool(
            "v1",
            1,
            vec![dead.clone(), good.spec()],
        )])))
        .unwrap();
    (p, good, dead, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_waiting_on_a_backend_found_dead_go_to_another_when_they_can() {
    let (p, good, dead_again, mut received) = silent_and_good(Duration::from_secs(3)).await;
    // One at a time (the balancer prefers the backend with fewer requests in flight),
    // a request waits on the silent backend, which is then found dead (its health
    // checks failed). A GET (the fast path) and a DELETE (hyper's client: idempotent, no
    // body) can be sent again, and are.
    let addr = p.addr;
    for method in ["GET", "DELETE"] {
        // Routed again (out of the table and back) after the last one found it dead:
        // until then no request would start to wait on it (the next test).
        p.proxy
            .publish(&table(pools(vec![pool("v1", 1, vec![good.spec()])])))
            .unwrap();
        p.proxy
            .publish(&table(pools(vec![pool(
                "v1",
                1,
                vec![dead_again.clone(), good.spec()],
            )])))
            .unwrap();
        let task = waiting_on_silent(addr, &mut received, method, "").await;
        p.proxy.abandon("dead");
        let answer = task.await.unwrap();
        // What the good backend answers that method with (the sample app: 405 for
        // a DELETE), not the proxy's 502 or 504.
        let mut direct = h1(good.spec().addr).await;
        let expected = try_send(&mut direct, request(method, "/", &[], ""))
            .await
            .unwrap();
        assert_eq!(answer.0, expected.0, "{method}");
        assert_eq!(version_of(&answer), "v1", "{method}");
    }
    // A POST with a body is not sent twice: it keeps waiting (the backend may only be
    // slow) until the response-head timeout.
    let post = waiting_on_silent(addr, &mut received, "POST", "an order").await;
    p.proxy.abandon("dead");
    let answer = post.await.unwrap();
    assert_eq!(answer.0, StatusCode::GATEWAY_TIMEOUT);
    // Proxies on other nodes learn it from the controller's list, until it is routed
    // again.
    assert_eq!(p.proxy.abandoned(), ["dead"]);
    p.proxy
        .publish(&table(pools(vec![pool("v1", 1, vec![good.spec()])])))
        .unwrap();
    assert_eq!(p.proxy.abandoned(), ["dead"]);
    p.proxy
        .publish(&table(pools(vec![pool(
            "v1",
            1,
            vec![dead_again, good.spec()],
        )])))
        .unwrap();
    assert!(p.proxy.abandoned().is_empty());
}

/// A canary's only instance found dead (its health checks failed; it may well still be
/// up) while requests wait on it: its version has no other backend, so a request that
/// can be sent again is routed again — by the table the controller publishes without the
/// dead instance — and the stable version answers it, not the proxy's 502 from a retry
/// on the same instance. Both orders: the table published after the request gave up
/// (it waits for it: the table it was routed by sends every request to the canary), and
/// before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_waiting_on_a_canary_found_dead_go_to_the_stable_version() {
    let good = sample("good", "v1", None).await;
    let (silent, mut received) = silent_backend().await;
    let p = start_proxy(ProxyConfig {
        upstream_header_timeout: Duration::from_secs(30),
        ..ProxyConfig::default()
    })
    .await;
    let dead = baton_core::BackendSpec {
        id: "dead".into(),
        addr: silent,
    };
    let with_canary = table(pools(vec![
        pool("v1", 0, vec![good.spec()]),
        pool("v2", 1, vec![dead]),
    ]));
    let without = table(pools(vec![
        pool("v1", 1, vec![good.spec()]),
        pool("v2", 0, vec![]),
    ]));
    for method in ["GET", "DELETE"] {
        let mut direct = h1(good.spec().addr).await;
        let expected = try_send(&mut direct, request(method, "/", &[], ""))
            .await
            .unwrap();
        for publish_first in [false, true] {
            // Routed again (out of the table and back) after the last round found it
            // dead.
            p.proxy.publish(&without).unwrap();
            p.proxy.publish(&with_canary).unwrap();
            let task = waiting_on_silent(p.addr, &mut received, method, "").await;
            if publish_first {
                p.proxy.publish(&without).unwrap();
                p.proxy.abandon("dead");
            } else {
                p.proxy.abandon("dead");
                tokio::time::sleep(Duration::from_millis(50)).await;
                p.proxy.publish(&without).unwrap();
            }
            let answer = task.await.unwrap();
            assert_eq!(
                answer.0, expected.0,
                "{method} published first: {publish_first}"
            );
            assert_eq!(version_of(&answer), "v1", "{method} {publish_first}");
        }
    }
}

/// Between a backend found dead and the route table published without it, requests are
/// still routed to it. One that can be sent again gives up at once instead of starting
/// to wait (which nothing would end: the backend was already abandoned), and goes to
/// another backend: the silent one never gets it, and the client gets the good one's
/// answer, not a 504 after the response-head timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_routed_to_a_backend_already_found_dead_go_to_another_at_once() {
    let (p, good, _, mut received) = silent_and_good(Duration::from_secs(30)).await;
    // Found dead while still in the route table, before any request used it.
    p.proxy.abandon("dead");
    for method in ["GET", "DELETE"] {
        let mut direct = h1(good.spec().addr).await;
        let expected = try_send(&mut direct, request(method, "/", &[], ""))
            .await
            .unwrap();
        for i in 0..20 {
            let mut c = h1(p.addr).await;
            let answer = try_send(&mut c, request(method, "/", &[], ""))
                .await
                .unwrap();
            assert_eq!(answer.0, expected.0, "{method} {i}");
            assert_eq!(version_of(&answer), "v1", "{method} {i}");
        }
    }
    assert!(
        received.try_recv().is_err(),
        "a request reached the backend found dead"
    );
}

/// A canary of one instance that is gone (its process exited: connections are refused)
/// while the table still sends it every request: each one, whatever its method and
/// body, is answered by the stable version instead of a 502 — the refused connects
/// show nothing reached the canary. The canary's count keeps each as unanswered (its
/// analysis sees the failures); v1 counts the answers. With no other version, the
/// request still gets the 502 at once (`failures_are_502_503_504_with_a_reason`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_a_gone_canary_cannot_take_go_to_the_stable_version() {
    let good = sample("good", "v1", None).await;
    let p = start_proxy(ProxyConfig::default()).await;
    let gone = baton_core::BackendSpec {
        id: "gone".into(),
        addr: dead_addr().await,
    };
    p.proxy
        .publish(&table(pools(vec![
            pool("v1", 0, vec![good.spec()]),
            pool("v2", 1, vec![gone]),
        ])))
        .unwrap();
    let mut c = h1(p.addr).await;
    let requests = [
        ("GET", "/", ""),
        ("POST", "/write", "x"),
        ("DELETE", "/", ""),
    ];
    for (method, path, body) in requests {
        let mut direct = h1(good.spec().addr).await;
        let expected = try_send(&mut direct, request(method, path, &[], body))
            .await
            .unwrap();
        let answer = try_send(&mut c, request(method, path, &[], body))
            .await
            .unwrap();
        assert_eq!(answer.0, expected.0, "{method} {path}: {:?}", answer.2);
        assert_eq!(version_of(&answer), "v1", "{method} {path}");
    }
    // The POST reached v1 once through the proxy (and once directly).
    assert_eq!(good.writes().await, 2);
    let v2 = p.metrics.snapshot(APP, "v2").unwrap();
    assert_eq!(v2.by_class[0], 3, "{v2:?}");
    assert_eq!(v2.by_class[5], 0, "{v2:?}");
    let v1 = p.metrics.snapshot(APP, "v1").unwrap();
    assert_eq!(v1.by_class.iter().sum::<u64>(), 3, "{v1:?}");
    assert_eq!(v1.by_class[0] + v1.by_class[5], 0, "{v1:?}");
}
