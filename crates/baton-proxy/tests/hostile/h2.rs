//! HTTP/2 abuse with hand-built frames: rapid reset (CVE-2023-44487) and CONTINUATION
//! floods (the connection must end with GOAWAY `ENHANCE_YOUR_CALM`, the work done must
//! stay bounded, and the proxy must keep serving other clients), and malformed requests
//! that are stream errors (RFC 9113 §8.1.1): the bad stream gets RST_STREAM
//! `PROTOCOL_ERROR` and never reaches the backend, while the other streams on the same
//! connection complete and the HPACK table stays in step. Invalid field names and
//! values, pseudo-headers in trailers and the error codes of connection errors rely on
//! the patched h2 in `vendor/h2` (BATON-PATCH.md there).

use crate::common::*;
use crate::setup;
use baton_proxy::ProxyConfig;
use http::StatusCode;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const DATA: u8 = 0x0;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PROTOCOL_ERROR: u32 = 0x1;
const CANCEL: u32 = 0x8;
const ENHANCE_YOUR_CALM: u32 = 0xb;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK: GET http://proxy.test/ from the static table plus one literal authority.
fn get_block() -> Vec<u8> {
    let mut b = vec![0x82, 0x86, 0x84, 0x01, 10];
    b.extend_from_slice(b"proxy.test");
    b
}

fn client_start() -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    out
}

/// Frames read until the server closes (or `limit`): `(type, payload)`.
async fn read_frames(
    mut r: impl AsyncReadExt + Unpin,
    limit: Duration,
) -> (Vec<(u8, Vec<u8>)>, bool) {
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(limit, async {
        let mut chunk = [0u8; 16384];
        loop {
            match r.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .is_ok();
    let mut frames = Vec::new();
    let mut at = 0;
    while buf.len() >= at + 9 {
        let len = u32::from_be_bytes([0, buf[at], buf[at + 1], buf[at + 2]]) as usize;
        let end = (at + 9 + len).min(buf.len());
        frames.push((buf[at + 3], buf[at + 9..end].to_vec()));
        at += 9 + len;
    }
    (frames, closed)
}

fn goaway_code(frames: &[(u8, Vec<u8>)]) -> Option<u32> {
    frames
        .iter()
        .find(|(kind, p)| *kind == GOAWAY && p.len() >= 8)
        .map(|(_, p)| u32::from_be_bytes([p[4], p[5], p[6], p[7]]))
}

async fn still_serves(p: &TestProxy) {
    let mut c = h2(p.addr).await;
    let answer = try_send_h2(&mut c, request("GET", "/", &[], ""), p.addr)
        .await
        .unwrap();
    assert_eq!(answer.0, StatusCode::OK);
}

#[tokio::test]
async fn rapid_reset_gets_goaway_enhance_your_calm_and_bounded_work() {
    let (p, backend) = setup(ProxyConfig::default()).await;
    let attempts: u32 = 2000;
    let mut attack = client_start();
    for i in 0..attempts {
        let id = 2 * i + 1;
        attack.extend(frame(HEADERS, END_STREAM | END_HEADERS, id, &get_block()));
        attack.extend(frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
    }
    let s = TcpStream::connect(p.addr).await.unwrap();
    let (r, mut w) = s.into_split();
    let reader = tokio::spawn(read_frames(r, Duration::from_secs(10)));
    let _ = w.write_all(&attack).await;
    let (frames, closed) = reader.await.unwrap();
    let reached = backend.count();
    println!(
        "rapid reset: {attempts} streams opened and reset, backend saw {reached}, goaway={:?}",
        goaway_code(&frames)
    );
    assert_eq!(
        goaway_code(&frames),
        Some(ENHANCE_YOUR_CALM),
        "frames: {:?}",
        frames.iter().map(|f| f.0).collect::<Vec<_>>()
    );
    assert!(closed, "the connection was not closed");
    // Bounded: far fewer than the streams sent ever became upstream requests.
    assert!(
        reached <= 256,
        "{reached} of {attempts} reset streams reached the backend"
    );
    still_serves(&p).await;
}

#[tokio::test]
async fn continuation_flood_is_cut_off_with_goaway() {
    let (p, backend) = setup(ProxyConfig::default()).await;
    let s = TcpStream::connect(p.addr).await.unwrap();
    let (r, mut w) = s.into_split();
    let reader = tokio::spawn(read_frames(r, Duration::from_secs(20)));
    let mut start = client_start();
    start.extend(frame(HEADERS, END_STREAM, 1, &get_block()));
    w.write_all(&start).await.unwrap();
    // Endless CONTINUATION frames, never END_HEADERS: 16 KiB of valid literal headers
    // each, up to 64 MiB in all.
    let mut field = vec![0x00, 3];
    field.extend_from_slice(b"x-a");
    field.push(100);
    field.extend_from_slice(&[b'a'; 100]);
    let payload: Vec<u8> = field
        .iter()
        .copied()
        .cycle()
        .take(16384 / field.len() * field.len())
        .collect();
    let continuation = frame(CONTINUATION, 0, 1, &payload);
    let mut sent = 0usize;
    while sent < 64 << 20 {
        match tokio::time::timeout(Duration::from_secs(5), w.write_all(&continuation)).await {
            Ok(Ok(())) => sent += continuation.len(),
            Ok(Err(_)) | Err(_) => break,
        }
    }
    let (frames, closed) = reader.await.unwrap();
    println!(
        "continuation flood: wrote {} KiB before the proxy stopped reading, goaway={:?}",
        sent / 1024,
        goaway_code(&frames)
    );
    assert!(
        sent < 16 << 20,
        "the proxy kept reading {sent} bytes of one header block"
    );
    assert_eq!(goaway_code(&frames), Some(ENHANCE_YOUR_CALM));
    assert!(closed);
    assert_eq!(backend.count(), 0);
    still_serves(&p).await;
}

/// `get_block()` plus one literal field (without indexing, new name).
fn get_block_with(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut b = get_block();
    b.push(0x00);
    b.push(u8::try_from(name.len()).unwrap());
    b.extend_from_slice(name);
    b.push(u8::try_from(value.len()).unwrap());
    b.extend_from_slice(value);
    b
}

/// What came back on each stream of a multiplexed connection.
#[derive(Debug, Default)]
struct Streams {
    /// Response body bytes by stream id.
    data: std::collections::BTreeMap<u32, Vec<u8>>,
    /// Streams whose response ended (END_STREAM seen).
    ended: Vec<u32>,
    /// RST_STREAM error codes by stream id.
    reset: std::collections::BTreeMap<u32, u32>,
    goaway: Option<u32>,
    /// The first response HEADERS block by stream id (HPACK-encoded; baton's `:status
    /// 200` is the static entry 8, the byte 0x88).
    headers: std::collections::BTreeMap<u32, Vec<u8>>,
}

impl Streams {
    fn ok(&self, id: u32) -> bool {
        self.headers.get(&id).and_then(|h| h.first()) == Some(&0x88)
            && self.data.get(&id).map(Vec::as_slice) == Some(&b"v1"[..])
            && self.ended.contains(&id)
            && !self.reset.contains_key(&id)
    }
}

/// Read frames from `s` into `seen` until `done(seen)`, the connection closes or
/// `deadline` passes; `buf` keeps a partial frame between calls.
async fn read_into(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    seen: &mut Streams,
    deadline: tokio::time::Instant,
    done: impl Fn(&Streams) -> bool,
) {
    while !done(seen) {
        let mut chunk = [0u8; 16384];
        let n = match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => break,
        };
        buf.extend_from_slice(&chunk[..n]);
        while buf.len() >= 9 {
            let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
            if buf.len() < 9 + len {
                break;
            }
            let (kind, flags) = (buf[3], buf[4]);
            let id = u32::from_be_bytes([buf[5] & 0x7f, buf[6], buf[7], buf[8]]);
            let payload = buf[9..9 + len].to_vec();
            buf.drain(..9 + len);
            match kind {
                DATA => seen.data.entry(id).or_default().extend(payload),
                HEADERS => {
                    seen.headers.entry(id).or_insert(payload);
                }
                RST_STREAM if payload.len() == 4 => {
                    seen.reset.insert(
                        id,
                        u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]),
                    );
                }
                GOAWAY if payload.len() >= 8 => {
                    seen.goaway = Some(u32::from_be_bytes([
                        payload[4], payload[5], payload[6], payload[7],
                    ]));
                }
                _ => {}
            }
            if matches!(kind, DATA | HEADERS) && flags & END_STREAM != 0 {
                seen.ended.push(id);
            }
        }
    }
}

/// Send `good` GET streams and one `bad` header block on one connection, all at once,
/// and read until every stream has ended or been reset (or the connection closes, or
/// 5 s pass).
async fn multiplexed(p: &TestProxy, good: &[u32], bad: (u32, Vec<u8>)) -> Streams {
    let mut out = client_start();
    let mut ids: Vec<u32> = good.to_vec();
    ids.push(bad.0);
    ids.sort_unstable();
    for id in &ids {
        let block = if *id == bad.0 {
            bad.1.clone()
        } else {
            get_block()
        };
        out.extend(frame(HEADERS, END_STREAM | END_HEADERS, *id, &block));
    }
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(&out).await.unwrap();
    let mut seen = Streams::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    read_into(&mut s, &mut Vec::new(), &mut seen, deadline, |seen| {
        seen.goaway.is_some()
            || ids
                .iter()
                .all(|id| seen.ended.contains(id) || seen.reset.contains_key(id))
    })
    .await;
    seen
}

/// The good streams all got the backend's answer, the bad one only RST_STREAM
/// `PROTOCOL_ERROR`, the connection no GOAWAY, and the backend saw only the good ones.
async fn only_the_bad_stream_is_reset(name: &[u8], value: &[u8]) {
    let (p, backend) = setup(ProxyConfig::default()).await;
    let good = [1, 3, 5, 9, 11];
    let seen = multiplexed(&p, &good, (7, get_block_with(name, value))).await;
    let what = String::from_utf8_lossy(name);
    assert_eq!(
        seen.goaway, None,
        "{what}: the whole connection failed: {seen:?}"
    );
    assert_eq!(
        seen.reset.get(&7),
        Some(&PROTOCOL_ERROR),
        "{what}: the bad stream was not reset: {seen:?}"
    );
    for id in good {
        assert_eq!(
            seen.data.get(&id).map(Vec::as_slice),
            Some(&b"v1"[..]),
            "{what}: stream {id} did not get the backend's answer: {seen:?}"
        );
        assert!(seen.ended.contains(&id), "{what}: stream {id} never ended");
        assert!(
            !seen.reset.contains_key(&id),
            "{what}: stream {id} was reset"
        );
    }
    assert_eq!(
        backend.count(),
        good.len() as u64,
        "{what}: the bad stream reached the backend"
    );
}

#[tokio::test]
async fn a_connection_specific_header_resets_only_its_stream() {
    for name in [
        &b"connection"[..],
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"upgrade",
    ] {
        only_the_bad_stream_is_reset(name, b"x").await;
    }
}

#[tokio::test]
async fn te_other_than_trailers_resets_only_its_stream() {
    only_the_bad_stream_is_reset(b"te", b"gzip").await;
}

/// An invalid field name or value (RFC 9113 §8.2.1) or an unknown pseudo-header
/// (§8.3) makes the request malformed: a stream error. `h2` stopped decoding there and
/// failed the whole connection with GOAWAY; the vendored h2 (vendor/h2/BATON-PATCH.md)
/// decodes the whole block and resets only that stream.
#[tokio::test]
async fn an_invalid_field_name_or_value_resets_only_its_stream() {
    for (name, value) in [
        (&b"X-Upper"[..], &b"1"[..]),
        (b"x-crlf", b"a\r\nb"),
        (b"x-cr", b"a\rb"),
        (b"x-lf", b"a\nb"),
        (b"x-nul", b"a\0b"),
        (b"x y", b"1"),
        (b"", b"1"),
        (b":foo", b"1"),
    ] {
        only_the_bad_stream_is_reset(name, value).await;
    }
}

/// POST http://proxy.test/ with the body still to come (no END_STREAM).
fn post_block() -> Vec<u8> {
    let mut b = vec![0x83, 0x86, 0x84, 0x01, 10];
    b.extend_from_slice(b"proxy.test");
    b
}

/// The audit's case on ONE connection: stream 1 is a valid request still in flight
/// (its body not finished), streams 3 and 5 are malformed (an uppercase name, CR/LF in
/// a value). 3 and 5 get RST_STREAM `PROTOCOL_ERROR`; then stream 1 finishes and a new
/// stream 7 is served on the same connection, both 200, and there is no GOAWAY.
#[tokio::test]
async fn malformed_streams_leave_a_request_in_flight_and_the_connection_alive() {
    let (p, backend) = setup(ProxyConfig::default()).await;
    let mut out = client_start();
    out.extend(frame(HEADERS, END_HEADERS, 1, &post_block()));
    out.extend(frame(DATA, 0, 1, b"ab"));
    out.extend(frame(
        HEADERS,
        END_STREAM | END_HEADERS,
        3,
        &get_block_with(b"X-Upper", b"1"),
    ));
    out.extend(frame(
        HEADERS,
        END_STREAM | END_HEADERS,
        5,
        &get_block_with(b"x-crlf", b"a\r\nb"),
    ));
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(&out).await.unwrap();
    let (mut seen, mut buf) = (Streams::default(), Vec::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    read_into(&mut s, &mut buf, &mut seen, deadline, |seen| {
        seen.goaway.is_some() || (seen.reset.contains_key(&3) && seen.reset.contains_key(&5))
    })
    .await;
    assert_eq!(seen.reset.get(&3), Some(&PROTOCOL_ERROR), "{seen:?}");
    assert_eq!(seen.reset.get(&5), Some(&PROTOCOL_ERROR), "{seen:?}");
    assert!(
        !seen.ended.contains(&1) && !seen.reset.contains_key(&1),
        "stream 1 should still be in flight: {seen:?}"
    );
    let mut more = frame(DATA, END_STREAM, 1, b"cd");
    more.extend(frame(HEADERS, END_STREAM | END_HEADERS, 7, &get_block()));
    s.write_all(&more).await.unwrap();
    read_into(&mut s, &mut buf, &mut seen, deadline, |seen| {
        seen.goaway.is_some() || (seen.ended.contains(&1) && seen.ended.contains(&7))
    })
    .await;
    assert_eq!(seen.goaway, None, "the connection failed: {seen:?}");
    assert!(seen.ok(1), "stream 1: {seen:?}");
    assert!(seen.ok(7), "stream 7: {seen:?}");
    assert_eq!(backend.count(), 2, "a malformed stream reached the backend");
    assert_eq!(
        backend.complete.load(std::sync::atomic::Ordering::SeqCst),
        2
    );
}

/// HPACK literal with incremental indexing (RFC 7541 §6.2.1), new name.
fn indexed_literal(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut b = vec![0x40, u8::try_from(name.len()).unwrap()];
    b.extend_from_slice(name);
    b.push(u8::try_from(value.len()).unwrap());
    b.extend_from_slice(value);
    b
}

/// The malformed block still updates the dynamic table, invalid fields included (a
/// table entry is sized by its bytes, RFC 7541 §4.1), so the client's and the server's
/// tables stay in step and later blocks that refer to the entries by index decode as
/// the client meant. A reference to an invalid entry is judged again: by full index it
/// is the invalid field again (malformed); by name with a valid value it is valid.
#[tokio::test]
async fn a_malformed_request_keeps_the_hpack_table_in_step() {
    let (p, backend) = setup(ProxyConfig::default()).await;
    // Stream 1, malformed. After it the dynamic table is
    // 62 x-table: kept, 63 :authority: proxy.test, 64 x-crlf: a\r\nb, 65 X-Upper: bad.
    let mut bad = vec![0x82, 0x86, 0x84];
    bad.extend(indexed_literal(b"X-Upper", b"bad"));
    bad.extend(indexed_literal(b"x-crlf", b"a\r\nb"));
    bad.extend([0x41, 10]); // :authority (static name 1), incremental indexing
    bad.extend_from_slice(b"proxy.test");
    bad.extend(indexed_literal(b"x-table", b"kept"));
    // Stream 3: GET, :authority and x-table by index 63 and 62, then a literal
    // without indexing whose name is entry 64's (`x-crlf`) with a valid value.
    let good = [
        0x82,
        0x86,
        0x84,
        0x80 | 63,
        0x80 | 62,
        0x0f,
        64 - 15,
        2,
        b'o',
        b'k',
    ];
    // Stream 5: entry 65 (`X-Upper: bad`) by full index: malformed again.
    let again = [0x82, 0x86, 0x84, 0x80 | 63, 0x80 | 65];
    // Stream 7: the good block once more.
    let mut out = client_start();
    out.extend(frame(HEADERS, END_STREAM | END_HEADERS, 1, &bad));
    out.extend(frame(HEADERS, END_STREAM | END_HEADERS, 3, &good));
    out.extend(frame(HEADERS, END_STREAM | END_HEADERS, 5, &again));
    out.extend(frame(HEADERS, END_STREAM | END_HEADERS, 7, &good));
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(&out).await.unwrap();
    let mut seen = Streams::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    read_into(&mut s, &mut Vec::new(), &mut seen, deadline, |seen| {
        seen.goaway.is_some()
            || [1, 3, 5, 7]
                .iter()
                .all(|id| seen.ended.contains(id) || seen.reset.contains_key(id))
    })
    .await;
    assert_eq!(seen.goaway, None, "the connection failed: {seen:?}");
    assert_eq!(seen.reset.get(&1), Some(&PROTOCOL_ERROR), "{seen:?}");
    assert_eq!(seen.reset.get(&5), Some(&PROTOCOL_ERROR), "{seen:?}");
    assert!(seen.ok(3), "stream 3: {seen:?}");
    assert!(seen.ok(7), "stream 7: {seen:?}");
    assert_eq!(backend.count(), 2);
    let headers = backend.headers();
    assert_eq!(headers.get("x-table").unwrap(), "kept");
    assert_eq!(headers.get("x-crlf").unwrap(), "ok");
    assert_eq!(headers.get("host").unwrap(), "proxy.test");
}

/// A pseudo-header in trailers makes the request malformed (RFC 9113 §8.1): the stream
/// is reset, the request does not complete upstream, and the connection goes on. h2
/// dropped the pseudo-header and delivered the rest.
#[tokio::test]
async fn a_pseudo_header_in_trailers_resets_its_stream() {
    let (p, backend) = setup(ProxyConfig::default()).await;
    let mut out = client_start();
    out.extend(frame(HEADERS, END_HEADERS, 1, &post_block()));
    out.extend(frame(DATA, 0, 1, b"abc"));
    // Trailers: `:method GET` (static index 2), then `x-t: 1`.
    let mut trailers = vec![0x82, 0x00, 3];
    trailers.extend_from_slice(b"x-t");
    trailers.extend_from_slice(&[1, b'1']);
    out.extend(frame(HEADERS, END_STREAM | END_HEADERS, 1, &trailers));
    out.extend(frame(HEADERS, END_STREAM | END_HEADERS, 3, &get_block()));
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(&out).await.unwrap();
    let mut seen = Streams::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    read_into(&mut s, &mut Vec::new(), &mut seen, deadline, |seen| {
        seen.goaway.is_some() || (seen.reset.contains_key(&1) && seen.ended.contains(&3))
    })
    .await;
    assert_eq!(seen.goaway, None, "{seen:?}");
    assert_eq!(seen.reset.get(&1), Some(&PROTOCOL_ERROR), "{seen:?}");
    assert!(seen.ok(3), "stream 3: {seen:?}");
    // Only stream 3's request completed upstream.
    assert!(
        eventually(20, || backend
            .complete
            .load(std::sync::atomic::Ordering::SeqCst)
            == 1)
        .await
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        backend.complete.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

const PRIORITY: u8 = 0x2;
const PING: u8 = 0x6;
const WINDOW_UPDATE: u8 = 0x8;
const ACK: u8 = 0x1;
const FLOW_CONTROL_ERROR: u32 = 0x3;
const FRAME_SIZE_ERROR: u32 = 0x6;
const COMPRESSION_ERROR: u32 = 0x9;

/// Connection errors with the code RFC 9113 names (h2 answered PROTOCOL_ERROR to all):
/// a frame of the wrong length FRAME_SIZE_ERROR, an initial window size over 2^31-1
/// FLOW_CONTROL_ERROR, an HPACK decoding error COMPRESSION_ERROR.
#[tokio::test]
async fn connection_errors_carry_the_rfc_error_code() {
    let (p, backend) = setup(ProxyConfig::default()).await;
    let window_2_31 = [0x00, 0x04, 0x80, 0x00, 0x00, 0x00];
    let cases: Vec<(&str, Vec<u8>, u32)> = vec![
        (
            "PING of 7 bytes",
            frame(PING, 0, 0, &[0; 7]),
            FRAME_SIZE_ERROR,
        ),
        (
            "WINDOW_UPDATE of 3 bytes",
            frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1]),
            FRAME_SIZE_ERROR,
        ),
        (
            "RST_STREAM of 3 bytes",
            frame(RST_STREAM, 0, 1, &[0, 0, 8]),
            FRAME_SIZE_ERROR,
        ),
        (
            "SETTINGS of 5 bytes",
            frame(SETTINGS, 0, 0, &[0; 5]),
            FRAME_SIZE_ERROR,
        ),
        (
            "SETTINGS ACK with a payload",
            frame(SETTINGS, ACK, 0, &[0, 3, 0, 0, 0, 1]),
            FRAME_SIZE_ERROR,
        ),
        (
            "GOAWAY of 4 bytes",
            frame(GOAWAY, 0, 0, &[0; 4]),
            FRAME_SIZE_ERROR,
        ),
        (
            "SETTINGS_INITIAL_WINDOW_SIZE 2^31",
            frame(SETTINGS, 0, 0, &window_2_31),
            FLOW_CONTROL_ERROR,
        ),
        (
            "HPACK index 0",
            frame(HEADERS, END_STREAM | END_HEADERS, 1, &[0x80]),
            COMPRESSION_ERROR,
        ),
        (
            "HPACK index past the table",
            frame(HEADERS, END_STREAM | END_HEADERS, 1, &[0x82, 0x80 | 70]),
            COMPRESSION_ERROR,
        ),
        (
            "header block cut in the middle of a field",
            frame(HEADERS, END_STREAM | END_HEADERS, 1, &[0x82, 0x00, 5, b'a']),
            COMPRESSION_ERROR,
        ),
    ];
    for (what, bad, code) in cases {
        let mut out = client_start();
        out.extend(bad);
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        s.write_all(&out).await.unwrap();
        let (r, _w) = s.into_split();
        let (frames, closed) = read_frames(r, Duration::from_secs(5)).await;
        assert_eq!(goaway_code(&frames), Some(code), "{what}: {frames:?}");
        assert!(closed, "{what}: the connection stayed open");
    }
    assert_eq!(backend.count(), 0);
    still_serves(&p).await;
}

/// A PRIORITY frame of the wrong length is a stream error (RFC 9113 §6.3): RST_STREAM
/// FRAME_SIZE_ERROR, and the connection serves the next stream.
#[tokio::test]
async fn a_priority_frame_of_the_wrong_length_resets_only_its_stream() {
    let (p, _backend) = setup(ProxyConfig::default()).await;
    let mut out = client_start();
    out.extend(frame(PRIORITY, 0, 3, &[0, 0, 0, 0]));
    out.extend(frame(HEADERS, END_STREAM | END_HEADERS, 5, &get_block()));
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(&out).await.unwrap();
    let mut seen = Streams::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    read_into(&mut s, &mut Vec::new(), &mut seen, deadline, |seen| {
        seen.goaway.is_some() || seen.ended.contains(&5)
    })
    .await;
    assert_eq!(seen.goaway, None, "{seen:?}");
    assert_eq!(seen.reset.get(&3), Some(&FRAME_SIZE_ERROR), "{seen:?}");
    assert!(seen.ok(5), "stream 5: {seen:?}");
}

/// A malformed field in a header block continued in CONTINUATION frames: the whole
/// block is decoded, then only its stream is reset. h2 reset the stream at once and
/// answered the CONTINUATION with GOAWAY; and a malformed field followed by one split
/// across the frames was forgotten (the request went on without it).
#[tokio::test]
async fn a_malformed_block_continued_in_continuation_frames_resets_only_its_stream() {
    let literal = |name: &[u8], value: &[u8]| {
        let mut b = vec![0x00, u8::try_from(name.len()).unwrap()];
        b.extend_from_slice(name);
        b.push(u8::try_from(value.len()).unwrap());
        b.extend_from_slice(value);
        b
    };
    let with = |fields: &[Vec<u8>]| {
        let mut b = get_block();
        for f in fields {
            b.extend_from_slice(f);
        }
        b
    };
    let upper = with(&[literal(b"X-Upper", b"1"), literal(b"x-a", b"1")]);
    let conn = with(&[literal(b"connection", b"x"), literal(b"x-a", b"1")]);
    let base = get_block().len();
    let cases: Vec<(&str, Vec<u8>, usize)> = vec![
        (
            "uppercase name, then a CONTINUATION",
            upper.clone(),
            base + 10,
        ),
        ("uppercase name split across the frames", upper, base + 4),
        (
            "connection header, then a field split across the frames",
            conn.clone(),
            base + 16,
        ),
    ];
    for (what, block, split) in cases {
        let (p, backend) = setup(ProxyConfig::default()).await;
        let mut out = client_start();
        out.extend(frame(HEADERS, END_STREAM | END_HEADERS, 1, &get_block()));
        out.extend(frame(HEADERS, END_STREAM, 3, &block[..split]));
        out.extend(frame(CONTINUATION, END_HEADERS, 3, &block[split..]));
        out.extend(frame(HEADERS, END_STREAM | END_HEADERS, 5, &get_block()));
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        s.write_all(&out).await.unwrap();
        let mut seen = Streams::default();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        read_into(&mut s, &mut Vec::new(), &mut seen, deadline, |seen| {
            seen.goaway.is_some()
                || (seen.ended.contains(&1)
                    && seen.ended.contains(&5)
                    && seen.reset.contains_key(&3))
        })
        .await;
        assert_eq!(seen.goaway, None, "{what}: {seen:?}");
        assert_eq!(
            seen.reset.get(&3),
            Some(&PROTOCOL_ERROR),
            "{what}: {seen:?}"
        );
        assert!(seen.ok(1) && seen.ok(5), "{what}: {seen:?}");
        assert_eq!(
            backend.count(),
            2,
            "{what}: the bad stream reached the backend"
        );
    }
}

/// Invalid fields count against the header list abuse limit like valid ones
/// (4 × `max_header_bytes` decoded): a block that refers again and again to one large
/// invalid table entry (a few bytes of input each) gets GOAWAY `ENHANCE_YOUR_CALM`
/// instead of making the server decode megabytes; the proxy goes on serving.
#[tokio::test]
async fn invalid_fields_count_against_the_header_list_limit() {
    let (p, backend) = setup(ProxyConfig::default()).await;
    // `x-big: <4000 bytes with a CR>`, with incremental indexing: entry 62, 4037 bytes.
    let value: Vec<u8> = std::iter::once(b'\r').chain([b'a'; 3999]).collect();
    let mut block = vec![0x82, 0x86, 0x84, 0x40, 5];
    block.extend_from_slice(b"x-big");
    // String length 4000 with a 7-bit prefix: 127, then 3873 as a varint.
    block.extend([0x7f, 0x80 | (3873 & 0x7f) as u8, (3873 >> 7) as u8]);
    block.extend_from_slice(&value);
    // 100 references by full index: about 400 KB of invalid fields.
    block.extend([0x80 | 62; 100]);
    let mut out = client_start();
    out.extend(frame(HEADERS, END_STREAM | END_HEADERS, 1, &block));
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(&out).await.unwrap();
    let (r, _w) = s.into_split();
    let (frames, closed) = read_frames(r, Duration::from_secs(5)).await;
    assert_eq!(goaway_code(&frames), Some(ENHANCE_YOUR_CALM), "{frames:?}");
    assert!(closed);
    assert_eq!(backend.count(), 0);
    still_serves(&p).await;
}
