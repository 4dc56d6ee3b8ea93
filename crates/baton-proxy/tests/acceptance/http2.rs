//! HTTP/2 as `h2server` serves it, over real connections: what the proxy adds to and
//! takes out of a response, and a stream the client gives up on.

use crate::common::*;
use baton_core::BackendSpec;
use baton_proxy::ProxyConfig;
use bytes::Bytes;
use http::{Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An HTTP/2 client of the `h2` crate (which, unlike hyper's, can reset a stream).
async fn h2_client(addr: std::net::SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

fn get(path: &str) -> Request<()> {
    Request::get(format!("http://proxy.test{path}"))
        .body(())
        .unwrap()
}

/// A response body, read to its end.
async fn read_body(mut body: h2::RecvStream) -> Vec<u8> {
    let mut got = Vec::new();
    while let Some(chunk) = body.data().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    got
}

/// A backend that answers every request on a connection with `response`, as written.
async fn raw_backend(response: &'static [u8]) -> BackendSpec {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut seen = Vec::new();
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        if stream.write_all(response).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    BackendSpec {
        id: "raw".into(),
        addr,
    }
}

/// A response without `date` gets one, as every HTTP/1.1 response from the proxy does;
/// its body arrives whole, with the length it was sent with.
#[tokio::test]
async fn an_http2_response_without_a_date_gets_one() {
    let backend =
        raw_backend(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-App: raw\r\n\r\nhello").await;
    let p = start_proxy(ProxyConfig::default()).await;
    p.proxy
        .publish(&table(pools(vec![pool("v1", 100, vec![backend])])))
        .unwrap();
    let mut client = h2_client(p.addr).await;
    let (response, _) = client.send_request(get("/"), true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let date = response.headers().get("date").expect("no date header");
    httpdate::parse_http_date(date.to_str().unwrap()).expect("date is not an HTTP date");
    assert_eq!(response.headers()["x-app"], "raw");
    assert_eq!(response.headers()["content-length"], "5");
    assert_eq!(read_body(response.into_body()).await, b"hello");
}

/// An HTTP/1 upstream's fields reach an HTTP/2 client as they were sent, in order and
/// lowercased (`h2server` encodes them from the head's bytes, without a `HeaderMap`):
/// repeated names keep every value in order, the upstream's own `date` and
/// `content-length` are kept and not doubled, and the hop-by-hop fields (those
/// `Connection` names too) are gone.
#[tokio::test]
async fn an_upstreams_fields_reach_an_http2_client_as_sent() {
    let backend = raw_backend(
        b"HTTP/1.1 201 Created\r\n\
          Date: Tue, 01 Dec 2026 10:00:00 GMT\r\n\
          Content-Type: text/plain\r\n\
          Set-Cookie: a=1\r\n\
          X-Custom-Field-With-A-Long-Name: v1\r\n\
          Set-Cookie: b=2\r\n\
          Connection: X-Hop, keep-alive\r\n\
          X-Hop: gone\r\n\
          Keep-Alive: timeout=5\r\n\
          Cache-Control: no-store\r\n\
          Content-Length: 5\r\n\r\nhello",
    )
    .await;
    let p = start_proxy(ProxyConfig::default()).await;
    p.proxy
        .publish(&table(pools(vec![pool("v1", 100, vec![backend])])))
        .unwrap();
    let mut client = h2_client(p.addr).await;
    // twice on one connection: the encoder keeps no state between responses
    for _ in 0..2 {
        let (response, _) = client.send_request(get("/"), true).unwrap();
        let response = response.await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let headers = response.headers();
        let fields: Vec<(&str, &str)> = headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.to_str().unwrap()))
            .collect();
        assert_eq!(
            fields,
            vec![
                ("date", "Tue, 01 Dec 2026 10:00:00 GMT"),
                ("content-type", "text/plain"),
                ("set-cookie", "a=1"),
                ("set-cookie", "b=2"),
                ("x-custom-field-with-a-long-name", "v1"),
                ("cache-control", "no-store"),
                ("content-length", "5"),
            ]
        );
        assert_eq!(read_body(response.into_body()).await, b"hello");
    }
}

/// Response bodies larger than the client's flow-control windows arrive whole: two
/// streams at once, each window (stream and connection) 1 KiB, the client giving the
/// window back only as it reads. The proxy hands the last chunk of a body to h2 at
/// once, and h2 sends it only as the windows allow.
#[tokio::test]
async fn bodies_larger_than_the_clients_window_arrive_whole() {
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut response =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    response.extend_from_slice(&body);
    let backend = raw_backend(Box::leak(response.into_boxed_slice())).await;
    let p = start_proxy(ProxyConfig::default()).await;
    p.proxy
        .publish(&table(pools(vec![pool("v1", 100, vec![backend])])))
        .unwrap();
    let tcp = TcpStream::connect(p.addr).await.unwrap();
    let (client, conn) = h2::client::Builder::new()
        .initial_window_size(1024)
        .initial_connection_window_size(1024)
        .handshake::<_, Bytes>(tcp)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut streams = Vec::new();
    for _ in 0..2 {
        let mut client = client.clone();
        let (response, _) = client.send_request(get("/"), true).unwrap();
        streams.push(tokio::spawn(async move {
            let mut body = response.await.unwrap().into_body();
            let mut got = Vec::new();
            while let Some(chunk) = body.data().await {
                let chunk = chunk.unwrap();
                assert!(chunk.len() <= 1024, "a DATA frame of {} bytes", chunk.len());
                got.extend_from_slice(&chunk);
                body.flow_control().release_capacity(chunk.len()).unwrap();
            }
            got
        }));
    }
    for stream in streams {
        assert!(stream.await.unwrap() == body, "a body arrived changed");
    }
}

/// A stream the client resets while its request waits for the backend takes the
/// exchange with it: the upstream connection is closed at once, not held until the
/// backend answers (30 s later) — as on HTTP/1 when the client closes its connection.
/// The connection to the client stays up and serves the next stream.
#[tokio::test]
async fn a_stream_the_client_resets_drops_its_upstream_exchange() {
    let slow = sample_with_latency("a1", "v1", None, 30_000).await;
    let p = start_proxy(ProxyConfig::default()).await;
    p.proxy
        .publish(&table(pools(vec![pool("v1", 100, vec![slow.spec()])])))
        .unwrap();
    let mut client = h2_client(p.addr).await;
    let (response, send) = client.send_request(get("/"), true).unwrap();
    assert!(
        eventually(1000, || established_to(slow.addr) == 1).await,
        "the request never reached the backend"
    );
    // Dropping every handle of a stream that has not ended resets it (CANCEL).
    drop(response);
    drop(send);
    assert!(
        eventually(1000, || established_to(slow.addr) == 0).await,
        "the upstream connection is still open 10 s after the client reset its stream"
    );
    let fast = sample("b1", "v2", None).await;
    p.proxy
        .publish(&table(pools(vec![pool("v2", 100, vec![fast.spec()])])))
        .unwrap();
    let (response, _) = client.send_request(get("/"), true).unwrap();
    assert_eq!(response.await.unwrap().status(), StatusCode::OK);
}

/// A client that sends the preface's first line (`PRI * HTTP/2.0`, a complete HTTP/1
/// head to the framing guard, which stops following there) and then nothing: the rest
/// of the preface is timed as a request head, so the connection gets the slow head's
/// 408 and is closed, as a partial HTTP/1 head is — not held open for good.
#[tokio::test]
async fn a_preface_that_stops_after_its_first_line_is_cut_off_as_a_slow_head() {
    let p = start_proxy(ProxyConfig {
        client_header_timeout: std::time::Duration::from_millis(300),
        ..ProxyConfig::default()
    })
    .await;
    for sent in [
        &b"PRI * HTTP/2.0\r\n\r\n"[..],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n",
    ] {
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        s.write_all(sent).await.unwrap();
        let mut answer = Vec::new();
        // The bound only keeps a regression from hanging the suite: the idle timeout
        // (60 s) is far beyond it, and only the head timeout (0.3 s) closes.
        tokio::time::timeout(
            std::time::Duration::from_secs(20),
            s.read_to_end(&mut answer),
        )
        .await
        .expect("the connection was still open 20 s after a partial preface")
        .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{sent:?}: {answer}");
    }
}
