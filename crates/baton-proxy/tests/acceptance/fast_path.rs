//! The HTTP/1.1 fast path (`h1server`) on real connections: plain `GET`/`HEAD` heads
//! are answered by it, the first head it does not take hands the connection — with
//! what was already read — to hyper, and a client that leaves while its request waits
//! takes the request with it.

use crate::common::*;
use baton_core::{HoldSpec, HumanDuration};
use baton_proxy::ProxyConfig;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Requests in one write: two plain GETs and a HEAD (fast path), a POST with a body
/// (hyper from here on), then a GET that asks to close. All five are answered, in
/// order, with their own bodies.
#[tokio::test]
async fn a_connection_moves_from_the_fast_path_to_hyper_with_nothing_lost() {
    let a = sample("a1", "v1", None).await;
    let p = start_proxy(ProxyConfig::default()).await;
    p.proxy
        .publish(&table(pools(vec![pool("v1", 100, vec![a.spec()])])))
        .unwrap();
    let answer = raw_exchange(
        p.addr,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /bytes?n=3000 HTTP/1.1\r\nHost: x\r\n\r\n\
          HEAD / HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world\
          GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let starts: Vec<usize> = answer
        .match_indices("HTTP/1.1 200 OK")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(starts.len(), 5, "{answer}");
    let parts: Vec<&str> = starts
        .iter()
        .zip(starts.iter().skip(1).chain([&answer.len()]))
        .map(|(a, b)| &answer[*a..*b])
        .collect();
    assert!(parts[0].ends_with("v1\n"), "{}", parts[0]);
    assert!(
        parts[1].contains("content-length: 3000\r\n"),
        "{}",
        parts[1]
    );
    assert!(
        parts[2].ends_with("\r\n\r\n"),
        "HEAD has no body: {}",
        parts[2]
    );
    assert!(parts[3].ends_with("hello world"), "{}", parts[3]);
    assert!(parts[4].contains("connection: close\r\n"), "{}", parts[4]);
    assert!(parts[4].ends_with("v1\n"), "{}", parts[4]);
}

/// A client that closes its connection while its request is held (its app has no ready
/// backend) gives its place in the hold queue back: with a queue of one, a later request
/// is held instead of refused with `hold_full`, and completes once a backend is there.
#[tokio::test]
async fn a_client_that_leaves_gives_back_its_hold_slot() {
    let p = start_proxy(ProxyConfig::default()).await;
    let held = |backends| {
        let mut app = pools(vec![pool("v1", 100, backends)]);
        app.hold = Some(HoldSpec {
            timeout: HumanDuration::from_millis(30_000),
            max_requests: 1,
        });
        table(app)
    };
    p.proxy.publish(&held(vec![])).unwrap();
    let mut first = TcpStream::connect(p.addr).await.unwrap();
    first
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The queue is full once the first request is in it.
    let mut full = false;
    for _ in 0..200 {
        let answer = get_once(p.addr, "/", &[]).await;
        if answer.0 == StatusCode::SERVICE_UNAVAILABLE && answer.1["x-baton-error"] == "hold_full" {
            full = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(full, "the first request was never held");
    drop(first);
    // Its slot comes back: a new request is held (still waiting after half a second,
    // where a refusal comes at once) rather than refused. A slot that never comes back
    // fails after 40 refusals.
    let addr = p.addr;
    let mut waiting = None;
    for _ in 0..40 {
        let attempt = tokio::spawn(async move { get_once(addr, "/", &[]).await });
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        if !attempt.is_finished() {
            waiting = Some(attempt);
            break;
        }
        let answer = attempt.await.unwrap();
        assert_eq!(answer.1["x-baton-error"], "hold_full", "{answer:?}");
    }
    let waiting = waiting.expect("the slot of the client that left never came back");
    let a = sample("a1", "v1", None).await;
    p.proxy.publish(&held(vec![a.spec()])).unwrap();
    let answer = waiting.await.unwrap();
    assert_eq!(answer.0, StatusCode::OK);
    assert_eq!(version_of(&answer), "v1");
}

/// Bytes of a head that arrive while a response is still being written are kept: a
/// client that sends its next request in two pieces, the first before the answer to
/// the slow one before it, gets both answers.
#[tokio::test]
async fn a_head_that_arrives_during_a_response_is_kept() {
    let a = sample("a1", "v1", None).await;
    let p = start_proxy(ProxyConfig::default()).await;
    p.proxy
        .publish(&table(pools(vec![pool("v1", 100, vec![a.spec()])])))
        .unwrap();
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET /slow?ms=300 HTTP/1.1\r\nHost: x\r\n\r\nGET / HT")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    s.write_all(b"TP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
    assert!(text.ends_with("v1\n"), "{text}");
}

/// `streams` GETs at once on one HTTP/2 connection; each must answer 200.
async fn h2_wave(client: &H2, addr: std::net::SocketAddr, streams: usize) {
    let streams: Vec<_> = (0..streams)
        .map(|_| {
            let mut c = client.clone();
            tokio::spawn(
                async move { try_send_h2(&mut c, request("GET", "/", &[], ""), addr).await },
            )
        })
        .collect();
    for s in streams {
        let (status, ..) = s.await.unwrap().unwrap();
        assert_eq!(status, StatusCode::OK);
    }
}

/// An HTTP/2 client with 100 streams in flight needs 100 upstream connections at once
/// (the backend answers each after a second). They are all kept when the responses
/// end, and the next 100 streams are carried by the same connections: none is closed
/// and none opened, where a pool of fewer would close the surplus after every wave and
/// connect again for the next.
#[tokio::test]
async fn an_http2_client_s_concurrent_streams_keep_their_upstream_connections() {
    const STREAMS: usize = 100;
    let a = sample_with_latency("a1", "v1", None, 1000).await;
    let p = start_proxy(ProxyConfig::default()).await;
    p.proxy
        .publish(&table(pools(vec![pool("v1", 100, vec![a.spec()])])))
        .unwrap();
    let client = h2(p.addr).await;
    h2_wave(&client, p.addr, STREAMS).await;
    assert!(
        eventually(500, || established_to(a.addr) == STREAMS).await,
        "after the first wave {} connections to the backend are open, not {STREAMS}",
        established_to(a.addr)
    );
    assert_eq!(
        not_established_to(a.addr),
        0,
        "the proxy closed upstream connections the first wave opened"
    );
    h2_wave(&client, p.addr, STREAMS).await;
    assert_eq!(
        established_to(a.addr),
        STREAMS,
        "the second wave opened more"
    );
    assert_eq!(
        not_established_to(a.addr),
        0,
        "the second wave did not reuse the first wave's connections"
    );
}

/// Idle upstream connections are closed once idle for `upstream_idle_timeout`, also
/// when no request comes to the backend again to find them so.
#[tokio::test]
async fn idle_upstream_connections_close_after_the_idle_timeout_with_no_more_requests() {
    const STREAMS: usize = 10;
    let a = sample_with_latency("a1", "v1", None, 300).await;
    let p = start_proxy(ProxyConfig {
        upstream_idle_timeout: std::time::Duration::from_secs(3),
        ..ProxyConfig::default()
    })
    .await;
    p.proxy
        .publish(&table(pools(vec![pool("v1", 100, vec![a.spec()])])))
        .unwrap();
    let client = h2(p.addr).await;
    h2_wave(&client, p.addr, STREAMS).await;
    let opened = established_to(a.addr);
    assert!(opened > 0, "no upstream connection was kept after the wave");
    assert!(
        eventually(1000, || established_to(a.addr) == 0).await,
        "{} idle upstream connections still open 10 s after the idle timeout",
        established_to(a.addr)
    );
}

/// Connections one after another, each a request with `Connection: close`, on one
/// proxy worker: the worker's runtime goes to sleep between them with nothing open.
/// A new connection's watchdog timer joins a deadline the worker keeps in its timer
/// wheel instead of waking the runtime's driver to re-arm — a write to the runtime's
/// eventfd, the only `write(2)` a worker makes (sockets are written with `send`,
/// which the kernel's `syscw` count leaves out). The count is the process's own: the
/// suite's runner (nextest) runs every test in a process of its own.
#[tokio::test]
async fn connections_one_after_another_do_not_wake_the_workers_timer_driver() {
    baton_proxy::start_workers(1).unwrap();
    let a = sample("a1", "v1", None).await;
    let p = start_proxy(ProxyConfig::default()).await;
    p.proxy
        .publish(&table(pools(vec![pool("v1", 100, vec![a.spec()])])))
        .unwrap();
    let request = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    // The first also opens the upstream connection the others reuse.
    assert!(raw_exchange(p.addr, request).await.ends_with("v1\n"));
    let before = worker_writes();
    let connections = 40;
    for _ in 0..connections {
        let answer = raw_exchange(p.addr, request).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.ends_with("v1\n"), "{answer}");
    }
    let writes = worker_writes() - before;
    // One a connection before; the keeper's own re-arming, once a period (2.5 s with
    // the default timeouts), is what may remain.
    assert!(
        writes < connections / 4,
        "{writes} write(2) calls by the worker for {connections} connections"
    );
}

/// The `write(2)`-family calls the proxy's worker thread has made (`syscw` in
/// `/proc/self/task/<tid>/io`).
fn worker_writes() -> u64 {
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let task = task.unwrap().path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap();
        if comm.trim() == "baton-worker-0" {
            let io = std::fs::read_to_string(task.join("io")).unwrap();
            let line = io.lines().find(|l| l.starts_with("syscw:")).unwrap();
            return line["syscw:".len()..].trim().parse().unwrap();
        }
    }
    panic!("no thread named baton-worker-0 in this process");
}
