//! The fast path against hyper's HTTP/1 server, as the reference: every head the fast
//! path takes must reach the handler exactly as hyper would hand it over, and every
//! response must leave as the same bytes hyper writes (the `date` value aside).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type TestBody = BoxBody<Bytes, Infallible>;

/// What a request head reached the handler as.
#[derive(Debug, PartialEq)]
struct Seen {
    method: String,
    uri: String,
    version: Version,
    headers: Vec<(String, Vec<u8>)>,
}

fn seen<B>(req: &Request<B>) -> Seen {
    Seen {
        method: req.method().to_string(),
        uri: req.uri().to_string(),
        version: req.version(),
        headers: req
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
            .collect(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// hyper's HTTP/1 server on an in-memory pipe: `input`, then the end of the client's
/// side; returns every byte it wrote and the requests its service got. `respond` makes
/// each answer.
fn hyper_serves(
    input: &[u8],
    respond: impl Fn() -> Response<TestBody> + Send + Sync + 'static,
) -> (Vec<u8>, Vec<Seen>) {
    let input = input.to_vec();
    runtime().block_on(async move {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let got = requests.clone();
        let respond = Arc::new(respond);
        let service = service_fn(move |req: Request<hyper::body::Incoming>| {
            got.lock().unwrap().push(seen(&req));
            let respond = respond.clone();
            async move { Ok::<_, Infallible>(respond()) }
        });
        let conn = tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .half_close(true)
                .max_buf_size(8192)
                .serve_connection(TokioIo::new(server), service)
                .await;
        });
        client.write_all(&input).await.unwrap();
        client.shutdown().await.unwrap();
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        let _ = conn.await;
        let requests = std::mem::take(&mut *requests.lock().unwrap());
        (out, requests)
    })
}

/// The fast path's writer: each answer from `respond` in turn, as long as the previous
/// one leaves the connection open (`count` at most).
fn fast_writes(
    count: usize,
    head_request: bool,
    keep_alive: bool,
    respond: impl Fn() -> Response<TestBody>,
) -> Vec<u8> {
    runtime().block_on(async move {
        let mut out: Vec<u8> = Vec::new();
        let mut wbuf = Vec::new();
        for _ in 0..count {
            let open = write_response(
                &mut out,
                &mut wbuf,
                &mut respond(),
                None,
                head_request,
                keep_alive,
            )
            .await
            .unwrap();
            if !open {
                break;
            }
        }
        out
    })
}

/// Replaces every `date:` value (the clock's, not the encoder's choice) and says how
/// many there were.
fn without_dates(bytes: &[u8]) -> (String, usize) {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let mut n = 0;
    let lines: Vec<String> = text
        .split("\r\n")
        .map(|l| {
            if l.starts_with("date: ") {
                n += 1;
                "date: <now>".to_string()
            } else {
                l.to_string()
            }
        })
        .collect();
    (lines.join("\r\n"), n)
}

#[derive(Clone, Copy, Debug)]
enum BodyKind {
    Empty,
    Full,
    Stream,
}

fn body(kind: BodyKind) -> TestBody {
    match kind {
        BodyKind::Empty => Empty::new().boxed(),
        BodyKind::Full => Full::new(Bytes::from_static(b"hello")).boxed(),
        BodyKind::Stream => {
            let frames = [&b"ab"[..], b"", b"cd"]
                .into_iter()
                .map(|d| Ok::<_, Infallible>(Frame::data(Bytes::from_static(d))));
            StreamBody::new(futures_util::stream::iter(frames)).boxed()
        }
    }
}

fn length_of(kind: BodyKind) -> &'static str {
    match kind {
        BodyKind::Empty => "0",
        BodyKind::Full => "5",
        BodyKind::Stream => "4",
    }
}

/// `super::parse` on a buffer holding `input`: the head and the bytes it used. Unless
/// it takes a head, the buffer must hold exactly what it held.
fn parse(input: &[u8], max_head: usize) -> Result<Option<(Head, usize)>, ()> {
    let mut buf = BytesMut::from(input);
    let parsed = super::parse(&mut buf, max_head);
    match parsed {
        Ok(Some(head)) => Ok(Some((head, input.len() - buf.len()))),
        other => {
            assert_eq!(&buf[..], input, "the bytes of a head not taken changed");
            other.map(|_| None)
        }
    }
}

#[test]
fn responses_are_the_bytes_hyper_writes() {
    let statuses = [200u16, 201, 204, 304, 404, 599];
    let header_sets: [&[(&str, &str)]; 8] = [
        &[("date", "Thu, 01 Jan 2026 00:00:00 GMT")],
        &[
            ("date", "Thu, 01 Jan 2026 00:00:00 GMT"),
            ("content-length", ""),
        ],
        &[
            ("date", "Thu, 01 Jan 2026 00:00:00 GMT"),
            ("connection", "close"),
        ],
        &[
            ("x-a", "1"),
            ("connection", "keep-alive"),
            ("date", "Thu, 01 Jan 2026 00:00:00 GMT"),
            ("x-a", "2"),
            ("connection", "x-hop"),
        ],
        &[
            ("date", "Thu, 01 Jan 2026 00:00:00 GMT"),
            ("transfer-encoding", "gzip"),
        ],
        &[
            ("date", "Thu, 01 Jan 2026 00:00:00 GMT"),
            ("trailer", "x-t"),
            ("trailer", "x-u"),
        ],
        &[("server", "app"), ("content-type", "text/plain")],
        &[],
    ];
    let mut cases = 0;
    for status in statuses {
        for version in [Version::HTTP_11, Version::HTTP_10] {
            for reason in [None, Some("Fine Thanks")] {
                for headers in header_sets {
                    for kind in [BodyKind::Empty, BodyKind::Full, BodyKind::Stream] {
                        for head_request in [false, true] {
                            for keep_alive in [true, false] {
                                // hyper 1.12 does not reset its "add `, chunked`" flag after
                                // a Transfer-Encoding line that needed it, so the next
                                // joined line (its own `connection: close`) gets
                                // `, chunked` too. The proxy never answers with a
                                // Transfer-Encoding of its own (it is hop-by-hop), so
                                // that bug is left out rather than copied.
                                let gzip = headers.iter().any(|(n, _)| *n == "transfer-encoding");
                                if gzip && !keep_alive {
                                    cases += 1;
                                    continue;
                                }
                                let respond = move || {
                                    let mut res = Response::new(body(kind));
                                    *res.status_mut() = StatusCode::from_u16(status).unwrap();
                                    *res.version_mut() = version;
                                    for (n, v) in headers {
                                        let v = if *n == "content-length" {
                                            length_of(kind)
                                        } else {
                                            v
                                        };
                                        res.headers_mut().append(
                                            HeaderName::from_static(n),
                                            HeaderValue::from_static(v),
                                        );
                                    }
                                    if let Some(r) = reason {
                                        res.extensions_mut().insert(
                                            hyper::ext::ReasonPhrase::from_static(r.as_bytes()),
                                        );
                                    }
                                    res
                                };
                                let method = if head_request { "HEAD" } else { "GET" };
                                let connection = if keep_alive {
                                    ""
                                } else {
                                    "Connection: close\r\n"
                                };
                                let request =
                                    format!("{method} / HTTP/1.1\r\nHost: a\r\n{connection}\r\n");
                                let twice = request.repeat(2);
                                let (theirs, _) = hyper_serves(twice.as_bytes(), respond);
                                let ours = fast_writes(2, head_request, keep_alive, respond);
                                let (theirs, their_dates) = without_dates(&theirs);
                                let (ours, our_dates) = without_dates(&ours);
                                assert_eq!(
                                    ours, theirs,
                                    "status {status} {version:?} reason {reason:?} headers {headers:?} body {kind:?} HEAD {head_request} keep-alive {keep_alive}"
                                );
                                assert_eq!(our_dates, their_dates);
                                cases += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    assert_eq!(cases, 6 * 2 * 2 * 8 * 3 * 2 * 2);
}

/// Request heads: what the fast path takes reaches the handler as hyper hands it over.
#[test]
fn heads_the_fast_path_takes_are_read_as_hyper_reads_them() {
    let mut many = String::from("GET /many HTTP/1.1\r\n");
    for i in 0..99 {
        many.push_str(&format!("x-h{i}: {i}\r\n"));
    }
    many.push_str("\r\n");
    let taken: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
        b"HEAD /x?y=1&z HTTP/1.1\r\nhost: a\r\nX-A: 1\r\nx-a: 2\r\n\r\n".to_vec(),
        b"GET http://example.com:8080/p?q HTTP/1.1\r\nHost: example.com\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n".to_vec(),
        b"\r\n\r\nGET /after-blank-lines HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nX: \x80\xff obs\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nX:\t v \t\r\nEmpty:\r\n\r\n".to_vec(),
        b"GET /a%20b//c/../d HTTP/1.1\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n".to_vec(),
        many.into_bytes(),
    ];
    let refused: Vec<&[u8]> = vec![
        b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        b"GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
        b"GET / HTTP/1.1\r\nTE: trailers\r\n\r\n",
        // httparse takes this target, `http::Uri` does not: the head was split off the
        // buffer before that was known, and must be put back with what follows it.
        b"GET http://[::1/ HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
        b"get / HTTP/1.1\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\n\r\n",
        // Line ends the framing guard refuses (hyper would take them).
        b"GET / HTTP/1.1\nHost: a\n\n",
        b"GET / HTTP/1.1\r\nHost: x\nX-A: 1\r\n\r\n",
        b"\nGET / HTTP/1.1\r\n\r\n",
        // A minor version the guard rewrites to 1.
        b"GET / HTTP/1.2\r\n\r\n",
    ];
    for input in &taken {
        let (head, len) = parse(input, 8192)
            .unwrap_or_else(|()| panic!("refused {:?}", String::from_utf8_lossy(input)))
            .unwrap_or_else(|| panic!("incomplete {:?}", String::from_utf8_lossy(input)));
        assert_eq!(len, input.len());
        let (_, theirs) = hyper_serves(input, || Response::new(body(BodyKind::Empty)));
        assert_eq!(theirs.len(), 1, "{:?}", String::from_utf8_lossy(input));
        assert_eq!(seen(&head.request), theirs[0]);
        let close = String::from_utf8_lossy(input)
            .to_ascii_lowercase()
            .contains("close");
        assert_eq!(head.keep_alive, !close);
        // The framing guard, paused while the fast path reads, would pass it as it is.
        let guard = crate::h1guard::fuzz_sniff([input.as_slice()]);
        assert_eq!((guard.heads, guard.bad_head, guard.off), (1, None, false));
        assert_eq!(&guard.passed, input);
    }
    for input in refused {
        assert!(
            matches!(parse(input, 8192), Err(())),
            "took {:?}",
            String::from_utf8_lossy(input)
        );
    }
    // Incomplete heads wait for more, up to the size limit; past it they are hyper's.
    assert!(matches!(
        parse(b"GET / HTTP/1.1\r\nHost: a\r\n", 8192),
        Ok(None)
    ));
    let long = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(200));
    assert!(matches!(parse(long.as_bytes(), 100), Err(())));
    let complete = format!("{long}\r\n");
    assert!(matches!(parse(complete.as_bytes(), 100), Err(())));
}

/// A body that fails half-way ends the connection without its last chunk, and one
/// shorter than its `content-length` ends it too: the client sees a cut body, never a
/// complete-looking one.
#[test]
fn a_failing_or_short_body_is_cut_not_completed() {
    let failing = || {
        let frames = vec![
            Ok(Frame::data(Bytes::from_static(b"part"))),
            Err::<Frame<Bytes>, BoxError>("upstream reset".into()),
        ];
        Response::new(StreamBody::new(futures_util::stream::iter(frames)))
    };
    let (open, out) = runtime().block_on(async {
        let mut out: Vec<u8> = Vec::new();
        let open =
            write_response(&mut out, &mut Vec::new(), &mut failing(), None, false, true).await;
        (open.is_ok(), out)
    });
    assert!(!open);
    assert!(!String::from_utf8_lossy(&out).contains("0\r\n\r\n"));
    let short = || {
        let mut res = Response::new(
            StreamBody::new(futures_util::stream::iter(vec![Ok::<_, Infallible>(
                Frame::data(Bytes::from_static(b"abc")),
            )]))
            .boxed(),
        );
        res.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
        res
    };
    let result = runtime().block_on(async {
        let mut out: Vec<u8> = Vec::new();
        write_response(&mut out, &mut Vec::new(), &mut short(), None, false, true).await
    });
    assert!(result.is_err());
}

/// The head an upstream's response gets on its way to the client, written the way it
/// was before `h1client` kept fields as received: parsed into a `HeaderMap`, stripped
/// of hop-by-hop fields there, encoded from the map.
fn through_a_map(
    upstream: &str,
    head_request: bool,
    keep_alive: bool,
    body: Option<Option<u64>>,
) -> Vec<u8> {
    let (head, _) = crate::h1client::parse::parse_head(upstream.as_bytes(), head_request)
        .unwrap()
        .unwrap();
    let mut map = head.fields.to_map();
    crate::headers::strip_hop_by_hop(&mut map, false);
    let mut res = Response::new(());
    *res.status_mut() = head.status;
    *res.headers_mut() = map;
    let mut out = Vec::new();
    encode_head(&mut res, None, head_request, keep_alive, body, &mut out);
    out
}

/// The same head kept as received: stripped as fields, written from them (or from the
/// map `FastBody::strip_hop_by_hop` falls back to), and also the map `materialize`
/// makes of what is left.
fn as_fields(
    upstream: &str,
    head_request: bool,
    keep_alive: bool,
    body: Option<Option<u64>>,
) -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
    let (head, _) = crate::h1client::parse::parse_head(upstream.as_bytes(), head_request)
        .unwrap()
        .unwrap();
    let mut fields = head.fields;
    let mut res = Response::new(());
    *res.status_mut() = head.status;
    let kept = if fields.strip_hop_by_hop() {
        Some(fields)
    } else {
        let mut map = fields.to_map();
        crate::headers::strip_hop_by_hop(&mut map, false);
        *res.headers_mut() = map;
        None
    };
    let map = match &kept {
        Some(f) => f.to_map(),
        None => res.headers().clone(),
    };
    let plain = map
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
        .collect();
    let mut out = Vec::new();
    encode_head(
        &mut res,
        kept.as_ref(),
        head_request,
        keep_alive,
        body,
        &mut out,
    );
    (out, plain)
}

#[test]
fn an_upstream_head_kept_as_received_leaves_as_the_same_bytes_as_through_a_map() {
    let heads = [
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-type: text/plain\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nDate: Thu, 01 Jan 2026 00:00:00 GMT\r\nX-Mixed-Case: A\r\n\r\n",
        // `Connection` first: removing it moves the last field into its place.
        "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Type: a\r\nContent-Length: 5\r\nServer: s\r\n\r\n",
        "HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nconnection: Keep-Alive, X-Gone , x-also\r\nx-gone: 1\r\nvia: v\r\nX-ALSO: 2\r\nx-last: 3\r\n\r\n",
        // `Connection` may not remove Host or Content-Length; it may name itself.
        "HTTP/1.1 200 OK\r\nconnection: host, content-length, connection, ,close\r\nhost: h\r\ncontent-length: 5\r\nz: z\r\n\r\n",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-t\r\nproxy-connection: k\r\nupgrade: u\r\nte: t\r\nproxy-authenticate: p\r\nproxy-authorization: p\r\nhttp2-settings: h\r\nx-keep: 1\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: gzip, chunked\r\na: 1\r\n\r\n",
        // A repeated name: only the map gives the order.
        "HTTP/1.1 200 OK\r\nset-cookie: a=1\r\nx: 1\r\nSet-Cookie: b=2\r\ncontent-length: 5\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: x-a\r\nContent-Length: 5\r\nx-a: 1\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 007\r\n\r\n",
        "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        "HTTP/1.1 204 No Content\r\ncontent-length: 5\r\nx: \t\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\netag: \"e\"\r\n\r\n",
        "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 5\r\n\r\n",
        "HTTP/1.1 599 Whatever\r\nx-obs: café\r\n\r\n",
        "HTTP/1.1 200 OK\r\n\r\n",
        // Lines the encoder would write as they are (copied at once), and near misses.
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-version: v1\r\ncontent-length: 3\r\ndate: Sun, 06 Dec 2026 08:18:36 GMT\r\n\r\n",
        "HTTP/1.1 200 OK\r\ndate: x\r\ncontent-length: 12\r\nx: y\r\n\r\n",
        "HTTP/1.1 200 OK\r\nx-a:1\r\nx-b:  2\r\nx-c:\t3\r\ncontent-length: 5\r\n\r\n",
        "HTTP/1.1 200 OK\r\nx-a: 1 \r\ncontent-length: 5\r\nx-empty: \r\n\r\n",
        "HTTP/1.1 200 OK\r\nx-a: 1\ncontent-length: 5\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\n",
        "HTTP/1.1 200 OK\r\nx-a: 1\r\nconnection: keep-alive\r\nx-b: 2\r\n\r\n",
    ];
    let bodies = [None, Some(None), Some(Some(0)), Some(Some(5))];
    let mut cases = 0;
    for upstream in heads {
        for head_request in [false, true] {
            for keep_alive in [true, false] {
                for body in bodies {
                    let expected = through_a_map(upstream, head_request, keep_alive, body);
                    let (got, map) = as_fields(upstream, head_request, keep_alive, body);
                    assert_eq!(
                        without_dates(&got),
                        without_dates(&expected),
                        "{upstream:?} head_request {head_request} keep_alive {keep_alive} body {body:?}"
                    );
                    let (head, _) =
                        crate::h1client::parse::parse_head(upstream.as_bytes(), head_request)
                            .unwrap()
                            .unwrap();
                    let mut stripped = head.fields.to_map();
                    crate::headers::strip_hop_by_hop(&mut stripped, false);
                    let stripped: Vec<(String, Vec<u8>)> = stripped
                        .iter()
                        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
                        .collect();
                    assert_eq!(map, stripped, "{upstream:?}: the map materialize makes");
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, heads.len() * 16);
}

/// Which upstream heads have their field lines copied as they are.
#[test]
fn field_lines_are_copied_at_once_only_when_written_as_the_encoder_writes_them() {
    let written = |upstream: &str| {
        let (head, _) = crate::h1client::parse::parse_head(upstream.as_bytes(), false)
            .unwrap()
            .unwrap();
        head.fields.as_written().map(|w| {
            (
                String::from_utf8(w.lines.to_vec()).unwrap(),
                w.length.map(|v| String::from_utf8(v.to_vec()).unwrap()),
                w.date,
            )
        })
    };
    let lines = "content-type: text/plain\r\ncontent-length: 3\r\ndate: d\r\n";
    assert_eq!(
        written(&format!("HTTP/1.1 200 OK\r\n{lines}\r\n")),
        Some((lines.to_string(), Some("3".to_string()), true))
    );
    assert_eq!(
        written("HTTP/1.1 200 OK\r\nx: 1\r\n\r\n"),
        Some(("x: 1\r\n".to_string(), None, false))
    );
    for other in [
        "HTTP/1.1 200 OK\r\nContent-Type: a\r\n\r\n",
        "HTTP/1.1 200 OK\r\nx:1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nx:\t1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nx: 1 \r\n\r\n",
        "HTTP/1.1 200 OK\r\nx: \r\n\r\n",
        "HTTP/1.1 200 OK\r\nx: 1\ny: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 1\r\n\r\n",
        "HTTP/1.1 200 OK\r\n\r\n",
    ] {
        assert_eq!(written(other), None, "{other:?}");
    }
}

#[test]
fn a_closed_connections_buffers_go_to_the_next_one_on_its_thread() {
    std::thread::spawn(|| {
        let first = Spare::take();
        assert_eq!(
            first.read.capacity(),
            0,
            "a new thread has no spare buffers"
        );
        let mut first = first;
        first.read.reserve(READ_CHUNK);
        first.write.reserve(WRITE_CHUNK);
        first.write.extend_from_slice(b"HTTP/1.1 200 OK\r\n\r\n");
        let (read_cap, write_cap) = (first.read.capacity(), first.write.capacity());
        drop(first);
        let second = Spare::take();
        assert_eq!(second.read.capacity(), read_cap);
        assert_eq!(second.write.capacity(), write_cap);
        assert!(second.write.is_empty(), "a kept write buffer is emptied");
        drop(second);

        // Bytes of a next head left unread, or a buffer grown past the limits: not kept.
        let mut unread = Spare::take();
        unread.read.extend_from_slice(b"GET / HTTP/1.1\r\n");
        drop(unread);
        assert_eq!(Spare::take().read.capacity(), 0);
        let mut grown = Spare::take();
        grown.read.reserve(READ_CHUNK);
        grown.write.reserve(KEEP_WRITE_BUFFER + 1);
        drop(grown);
        assert_eq!(Spare::take().read.capacity(), 0);

        // At most `KEEP_SPARE` wait.
        let many: Vec<Spare> = (0..KEEP_SPARE + 3)
            .map(|_| {
                let mut s = Spare::take();
                s.read.reserve(READ_CHUNK);
                s
            })
            .collect();
        drop(many);
        let kept: Vec<Spare> = (0..KEEP_SPARE + 3).map(|_| Spare::take()).collect();
        let with_room = kept.iter().filter(|s| s.read.capacity() > 0).count();
        assert_eq!(with_room, KEEP_SPARE);
    })
    .join()
    .unwrap();
}
