//! Response compression over real sockets: a real backend answers with each kind of
//! response, clients send `Accept-Encoding` over HTTP/1.1 and HTTP/2, and gzip and
//! brotli bodies decompress to the backend's exact bytes; what must never be compressed
//! arrives untouched.

use crate::common::*;
use baton_proxy::{Algorithm, Compression, ProxyConfig};
use bytes::Bytes;
use futures_util::stream;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Text that compresses, `n` bytes long, not one pattern repeated (so the encoder's
/// window and several flushes are exercised).
fn text(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 64);
    let mut i = 0u64;
    while out.len() < n {
        out.extend_from_slice(
            format!("<p>line {i} of the page, {}</p>\n", i * 7919 % 1000).as_bytes(),
        );
        i += 1;
    }
    out.truncate(n);
    out
}

type Body = BoxBody<Bytes, Infallible>;

fn full(data: Vec<u8>) -> Body {
    Full::new(Bytes::from(data)).boxed()
}

/// A body of unknown length (HTTP/1.1 chunked): `data` in `chunk`-byte frames.
fn chunked(data: Vec<u8>, chunk: usize) -> Body {
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = data
        .chunks(chunk)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    StreamBody::new(stream::iter(frames)).boxed()
}

fn answer(status: u16, headers: &[(&str, &str)], body: Body) -> Response<Body> {
    let mut res = Response::new(body);
    *res.status_mut() = StatusCode::from_u16(status).unwrap();
    for (k, v) in headers {
        res.headers_mut().append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    res
}

const HTML: (&str, &str) = ("content-type", "text/html; charset=utf-8");

/// What the backend answers on each path.
fn route(req: &Request<Incoming>) -> Response<Body> {
    let page = text(20_000);
    match req.uri().path() {
        "/length" => answer(200, &[HTML], full(page)),
        "/chunked" => answer(200, &[HTML], chunked(page, 3000)),
        "/large" => answer(200, &[HTML], chunked(text(8 << 20), 64 * 1024)),
        "/small" => answer(200, &[HTML], full(text(500))),
        "/small-chunked" => answer(200, &[HTML], chunked(text(500), 100)),
        "/png" => answer(200, &[("content-type", "image/png")], full(page)),
        "/range" => answer(
            206,
            &[HTML, ("content-range", "bytes 0-19999/40000")],
            full(page),
        ),
        "/encoded" => answer(200, &[HTML, ("content-encoding", "gzip")], full(page)),
        "/no-transform" => answer(200, &[HTML, ("cache-control", "no-transform")], full(page)),
        "/etag" => answer(
            200,
            &[HTML, ("etag", "\"v1-abc\""), ("vary", "Origin")],
            full(page),
        ),
        "/json" => answer(404, &[("content-type", "application/json")], full(page)),
        _ => answer(404, &[], full(Vec::new())),
    }
}

async fn backend() -> Counting2 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let service =
                service_fn(
                    |req: Request<Incoming>| async move { Ok::<_, Infallible>(route(&req)) },
                );
            tokio::spawn(
                hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned(),
            );
        }
    });
    Counting2 { addr, task }
}

/// The backend's address; the server stops when this is dropped.
struct Counting2 {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Counting2 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn setup(compression: Compression) -> (TestProxy, Counting2) {
    let b = backend().await;
    let p = start_proxy(ProxyConfig {
        compression: Some(Arc::new(compression)),
        ..ProxyConfig::default()
    })
    .await;
    let spec = baton_core::BackendSpec {
        id: "c1".into(),
        addr: b.addr,
    };
    p.proxy
        .publish(&table(pools(vec![pool("v1", 100, vec![spec])])))
        .unwrap();
    (p, b)
}

async fn fetch(p: &TestProxy, method: &str, path: &str, accept: &str) -> Answer {
    let headers: Vec<(&str, &str)> = if accept.is_empty() {
        vec![]
    } else {
        vec![("accept-encoding", accept)]
    };
    let mut c = h1(p.addr).await;
    try_send(&mut c, request(method, path, &headers, ""))
        .await
        .unwrap()
}

async fn fetch_h2(p: &TestProxy, path: &str, accept: &str) -> Answer {
    let mut c = h2(p.addr).await;
    try_send_h2(
        &mut c,
        request("GET", path, &[("accept-encoding", accept)], ""),
        p.addr,
    )
    .await
    .unwrap()
}

fn decode(headers: &HeaderMap, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match headers.get("content-encoding").map(|v| v.to_str().unwrap()) {
        Some("gzip") => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .unwrap();
        }
        Some("br") => {
            brotli::Decompressor::new(body, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        other => panic!("not compressed: {other:?}"),
    }
    out
}

fn vary(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

#[track_caller]
fn assert_compressed(answer: &Answer, encoding: &str, original: &[u8]) {
    let (status, headers, body) = answer;
    assert_eq!(headers["content-encoding"], encoding, "{headers:?}");
    assert!(headers.get("content-length").is_none(), "{headers:?}");
    assert!(
        vary(headers).iter().any(|v| v == "Accept-Encoding"),
        "{headers:?}"
    );
    assert!(
        body.len() < original.len() / 2,
        "{status}: {} bytes",
        body.len()
    );
    assert_eq!(decode(headers, body), original);
}

#[track_caller]
fn assert_untouched(answer: &Answer, original: &[u8]) {
    let (_, headers, body) = answer;
    assert!(
        headers.get("content-encoding").is_none_or(|v| v == "gzip"),
        "{headers:?}"
    );
    assert_eq!(&body[..], original);
}

#[tokio::test]
async fn gzip_and_brotli_bodies_decompress_to_the_backends_bytes() {
    let (p, _b) = setup(Compression::default()).await;
    let page = text(20_000);
    for path in ["/length", "/chunked"] {
        assert_compressed(&fetch(&p, "GET", path, "gzip").await, "gzip", &page);
        assert_compressed(
            &fetch(&p, "GET", path, "gzip, deflate, br").await,
            "br",
            &page,
        );
        assert_compressed(
            &fetch(&p, "GET", path, "br;q=0.5, gzip").await,
            "gzip",
            &page,
        );
    }
    // Any status with a listed type (the type compared without its parameters).
    let json = fetch(&p, "GET", "/json", "br").await;
    assert_eq!(json.0, StatusCode::NOT_FOUND);
    assert_compressed(&json, "br", &page);
}

#[tokio::test]
async fn a_large_streamed_body_round_trips() {
    let (p, _b) = setup(Compression::default()).await;
    let large = text(8 << 20);
    assert_compressed(&fetch(&p, "GET", "/large", "gzip").await, "gzip", &large);
    assert_compressed(&fetch(&p, "GET", "/large", "br").await, "br", &large);
}

#[tokio::test]
async fn http2_responses_are_compressed_too() {
    let (p, _b) = setup(Compression::default()).await;
    let page = text(20_000);
    assert_compressed(&fetch_h2(&p, "/chunked", "gzip").await, "gzip", &page);
    assert_compressed(&fetch_h2(&p, "/length", "br").await, "br", &page);
    assert_untouched(&fetch_h2(&p, "/png", "br").await, &page);
}

#[tokio::test]
async fn what_must_not_be_compressed_is_untouched() {
    let (p, _b) = setup(Compression::default()).await;
    let page = text(20_000);
    for path in ["/range", "/encoded", "/png", "/no-transform"] {
        let answer = fetch(&p, "GET", path, "gzip, br").await;
        assert_untouched(&answer, &page);
        assert!(vary(&answer.1).is_empty(), "{path}: {:?}", answer.1);
    }
    let range = fetch(&p, "GET", "/range", "gzip").await;
    assert_eq!(range.0, StatusCode::PARTIAL_CONTENT);
    assert_eq!(range.1["content-length"], "20000");
    let encoded = fetch(&p, "GET", "/encoded", "br").await;
    assert_eq!(encoded.1["content-encoding"], "gzip");
    // Below min_size with a Content-Length: as it is.
    let small = fetch(&p, "GET", "/small", "gzip").await;
    assert_untouched(&small, &text(500));
    assert_eq!(small.1["content-length"], "500");
}

#[tokio::test]
async fn a_small_body_of_unknown_length_is_still_compressed() {
    // nginx does the same: without a length the size is not known before it streams.
    let (p, _b) = setup(Compression::default()).await;
    assert_compressed_small(&fetch(&p, "GET", "/small-chunked", "gzip").await);
}

fn assert_compressed_small(answer: &Answer) {
    assert_eq!(answer.1["content-encoding"], "gzip");
    assert_eq!(decode(&answer.1, &answer.2), text(500));
}

#[tokio::test]
async fn a_client_that_accepts_no_encoding_gets_the_body_and_vary() {
    let (p, _b) = setup(Compression::default()).await;
    let page = text(20_000);
    for accept in ["", "identity", "gzip;q=0, br;q=0", "*;q=0", "deflate"] {
        let answer = fetch(&p, "GET", "/length", accept).await;
        assert_untouched(&answer, &page);
        assert!(answer.1.get("content-encoding").is_none());
        assert_eq!(answer.1["content-length"], "20000", "{accept}");
        assert_eq!(vary(&answer.1), ["Accept-Encoding"], "{accept}");
    }
    // q=0 refuses one encoding only.
    let answer = fetch(&p, "GET", "/length", "br;q=0, gzip").await;
    assert_compressed(&answer, "gzip", &page);
}

#[tokio::test]
async fn head_is_answered_uncompressed() {
    let (p, _b) = setup(Compression::default()).await;
    let (status, headers, body) = fetch(&p, "HEAD", "/length", "gzip, br").await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.get("content-encoding").is_none(), "{headers:?}");
    assert_eq!(headers["content-length"], "20000");
    assert_eq!(vary(&headers), ["Accept-Encoding"]);
    assert!(body.is_empty());
}

#[tokio::test]
async fn a_strong_etag_is_weakened_and_vary_extended() {
    let (p, _b) = setup(Compression::default()).await;
    let answer = fetch(&p, "GET", "/etag", "gzip").await;
    assert_compressed(&answer, "gzip", &text(20_000));
    assert_eq!(answer.1["etag"], "W/\"v1-abc\"");
    assert_eq!(vary(&answer.1), ["Origin", "Accept-Encoding"]);
    // Uncompressed, the tag stays strong.
    let plain = fetch(&p, "GET", "/etag", "").await;
    assert_eq!(plain.1["etag"], "\"v1-abc\"");
}

#[tokio::test]
async fn the_configured_order_types_and_min_size_apply() {
    let (p, _b) = setup(Compression {
        algorithms: vec![Algorithm::Gzip],
        min_size: 100,
        types: vec!["image/*".into()],
        level: 1,
    })
    .await;
    let page = text(20_000);
    assert_compressed(&fetch(&p, "GET", "/png", "br, gzip").await, "gzip", &page);
    // text/html is not listed now.
    assert_untouched(&fetch(&p, "GET", "/length", "gzip").await, &page);
    // Only br accepted, only gzip configured.
    let answer = fetch(&p, "GET", "/png", "br").await;
    assert_untouched(&answer, &page);
    assert_eq!(vary(&answer.1), ["Accept-Encoding"]);
}

#[tokio::test]
async fn settings_replaced_at_runtime_apply_to_the_next_request() {
    let (p, _b) = setup(Compression::default()).await;
    let page = text(20_000);
    assert_compressed(&fetch(&p, "GET", "/length", "gzip").await, "gzip", &page);
    p.proxy.set_config(ProxyConfig::default());
    let answer = fetch(&p, "GET", "/length", "gzip").await;
    assert_untouched(&answer, &page);
    assert!(vary(&answer.1).is_empty());
}

#[tokio::test]
async fn metrics_count_the_bytes_before_compression() {
    let (p, _b) = setup(Compression::default()).await;
    let answer = fetch(&p, "GET", "/length", "gzip").await;
    assert_compressed(&answer, "gzip", &text(20_000));
    let v1 = p.metrics.snapshot(APP, "v1").unwrap();
    assert_eq!(v1.bytes_out, 20_000);
}

/// A backend that sends `first`, then waits until the test says go before it sends
/// `rest` and ends the body: what the client gets before then shows the proxy streams.
async fn held_backend(
    content_type: &'static str,
    first: Vec<u8>,
    rest: Vec<u8>,
) -> (Counting2, Arc<tokio::sync::Notify>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let go = Arc::new(tokio::sync::Notify::new());
    let g = go.clone();
    let task = tokio::spawn(async move {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let (g, first, rest) = (g.clone(), first.clone(), rest.clone());
        let service = service_fn(move |_req: Request<Incoming>| {
            let (g, first, rest) = (g.clone(), first.clone(), rest.clone());
            async move {
                let parts = stream::unfold(0, move |step| {
                    let (g, first, rest) = (g.clone(), first.clone(), rest.clone());
                    async move {
                        let data = match step {
                            0 => first,
                            1 => {
                                g.notified().await;
                                rest
                            }
                            _ => return None,
                        };
                        Some((
                            Ok::<_, Infallible>(Frame::data(Bytes::from(data))),
                            step + 1,
                        ))
                    }
                });
                let body = StreamBody::new(parts).boxed();
                Ok::<_, Infallible>(answer(200, &[("content-type", content_type)], body))
            }
        });
        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), service)
            .await;
    });
    (Counting2 { addr, task }, go)
}

/// Through a proxy compressing `content_type` with gzip: the client decodes at least
/// `until` bytes of `first` before the backend has sent the rest, then the whole body.
async fn streams_before_the_body_ends(
    content_type: &'static str,
    first: Vec<u8>,
    rest: Vec<u8>,
    until: usize,
) {
    let (b, go) = held_backend(content_type, first.clone(), rest.clone()).await;
    let p = start_proxy(ProxyConfig {
        compression: Some(Arc::new(Compression {
            algorithms: vec![Algorithm::Gzip],
            types: vec!["text/html".into(), "text/event-stream".into()],
            ..Compression::default()
        })),
        ..ProxyConfig::default()
    })
    .await;
    let spec = baton_core::BackendSpec {
        id: "held".into(),
        addr: b.addr,
    };
    p.proxy
        .publish(&table(pools(vec![pool("v1", 100, vec![spec])])))
        .unwrap();
    let mut c = h1(p.addr).await;
    c.ready().await.unwrap();
    let res = c
        .send_request(request("GET", "/", &[("accept-encoding", "gzip")], ""))
        .await
        .unwrap();
    assert_eq!(res.headers()["content-encoding"], "gzip");
    let mut body = res.into_body();
    let mut decoder = flate2::write::GzDecoder::new(Vec::new());
    // A proxy that waited for the whole body would never let this loop end: the backend
    // holds the rest until it has. (The time-out only turns such a hang into a failure.)
    let early = async {
        while decoder.get_ref().len() < until {
            let frame = body.frame().await.unwrap().unwrap();
            if let Some(data) = frame.data_ref() {
                std::io::Write::write_all(&mut decoder, data).unwrap();
                // The decoder keeps what it decoded until flushed.
                std::io::Write::flush(&mut decoder).unwrap();
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), early)
        .await
        .expect("the proxy held the compressed body back until the upstream's ended");
    let decoded = decoder.get_ref().len();
    assert_eq!(decoder.get_ref()[..], first[..decoded]);
    go.notify_one();
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame.unwrap().data_ref() {
            std::io::Write::write_all(&mut decoder, data).unwrap();
        }
    }
    let all = decoder.finish().unwrap();
    assert_eq!(all, [first, rest].concat());
}

#[tokio::test]
async fn an_event_stream_reaches_the_client_event_by_event() {
    streams_before_the_body_ends(
        "text/event-stream",
        b"data: first event\n\n".to_vec(),
        b"data: second event\n\n".to_vec(),
        19,
    )
    .await;
}

#[tokio::test]
async fn a_body_is_compressed_as_it_streams_not_after_it_ends() {
    // Without flushing, the encoder gives out what it has once its buffers fill.
    streams_before_the_body_ends("text/html", text(1 << 20), text(1 << 20), 1 << 19).await;
}

#[tokio::test]
async fn an_upstream_body_cut_short_ends_the_compressed_response_as_an_error() {
    // A backend that promises 100,000 bytes, sends 5,000 and closes at once: the head, the
    // cut and the end of the connection may reach the proxy in one read, and the client
    // must still get the head and see the cut in the body.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            let mut head = [0u8; 4096];
            let _ = s.read(&mut head).await;
            let mut out =
                b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 100000\r\n\r\n"
                    .to_vec();
            out.extend_from_slice(&text(5000));
            let _ = s.write_all(&out).await;
        }
    });
    let b = Counting2 { addr, task };
    let p = start_proxy(ProxyConfig {
        compression: Some(Arc::new(Compression::default())),
        ..ProxyConfig::default()
    })
    .await;
    let spec = baton_core::BackendSpec {
        id: "cut".into(),
        addr: b.addr,
    };
    p.proxy
        .publish(&table(pools(vec![pool("v1", 100, vec![spec])])))
        .unwrap();
    for (over_h2, accept) in [(false, "gzip"), (true, "br")] {
        let req = request("GET", "/", &[("accept-encoding", accept)], "");
        let got = if over_h2 {
            try_send_h2(&mut h2(p.addr).await, req, p.addr).await
        } else {
            try_send(&mut h1(p.addr).await, req).await
        };
        // Not a complete (and so seemingly valid) compressed body.
        let error = got.expect_err("a cut-off body must not arrive as a complete response");
        assert!(error.starts_with("body"), "{error}");
    }
}
