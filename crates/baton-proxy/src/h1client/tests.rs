//! The response reader on whole responses, fed in every read size.

use super::fuzz_decode;
use super::parse::{lower_case, parse_head, Framing};

/// Decodes `raw` in reads of 1, 3, 7 and all bytes; they must agree.
fn decode(raw: &str, head: bool) -> Result<super::DecodedResponse, String> {
    let whole = fuzz_decode(raw.as_bytes(), head, raw.len());
    for read in [1, 3, 7] {
        assert_eq!(
            fuzz_decode(raw.as_bytes(), head, read),
            whole,
            "read size {read}"
        );
    }
    whole
}

fn framing(raw: &str, head: bool) -> (Framing, bool) {
    let (h, _) = parse_head(raw.as_bytes(), head).unwrap().unwrap();
    (h.framing, h.keep_alive)
}

#[test]
fn content_length_chunked_and_until_close_bodies_are_read_whole() {
    let r = decode("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", false).unwrap();
    assert_eq!((r.status, &r.body[..]), (200, &b"hello"[..]));
    let r = decode(
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n1\r\n!\r\n0\r\n\r\n",
        false,
    )
    .unwrap();
    assert_eq!(&r.body[..], b"hello!");
    assert_eq!(r.trailers, None);
    let r = decode("HTTP/1.1 200 OK\r\n\r\nuntil close", false).unwrap();
    assert_eq!(&r.body[..], b"until close");
}

#[test]
fn trailers_are_kept_and_a_section_ended_by_a_bare_lf_is_never_complete() {
    let r = decode(
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nx-sum: 1\r\n\r\n",
        false,
    )
    .unwrap();
    assert_eq!(r.trailers, Some(vec![("x-sum".into(), b"1".to_vec())]));
    // Only CRLF ends a trailer line (as in hyper's client): "\n\r\n" ends one line, and
    // the body waits for the empty line that would end the section.
    let bare = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\nx-sum: 1\n\r\n";
    assert!(decode(bare, false).unwrap_err().contains("closed before"));
}

#[test]
fn malformed_framing_is_refused() {
    for raw in [
        // Two different lengths, a signed or non-numeric one.
        "HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nx",
        "HTTP/1.1 200 OK\r\ncontent-length: 1, 2\r\n\r\nx",
        "HTTP/1.1 200 OK\r\ncontent-length: +1\r\n\r\nx",
        // Chunk sizes: missing, not hex, too long; a bare LF; data not ended by CRLF.
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\r\n",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nz\r\n",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n11111111111111111\r\n",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\nx\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\nxy0\r\n\r\n",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1;a\nb\r\nx\r\n0\r\n\r\n",
        // Not HTTP; a head that never ends.
        "SSH-2.0-OpenSSH\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 1\r\n",
    ] {
        assert!(decode(raw, false).is_err(), "{raw:?}");
    }
}

#[test]
fn a_body_cut_short_is_an_error_but_an_until_close_body_is_not() {
    assert!(
        decode("HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nshort", false)
            .unwrap_err()
            .contains("closed")
    );
    assert!(decode(
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel",
        false
    )
    .is_err());
}

#[test]
fn bodiless_answers_and_informational_heads() {
    // HEAD, 204 and 304 have no body whatever their headers say.
    let r = decode("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", true).unwrap();
    assert!(r.body.is_empty());
    for status in ["204 No Content", "304 Not Modified"] {
        let raw = format!("HTTP/1.1 {status}\r\ncontent-length: 5\r\n\r\n");
        assert!(decode(&raw, false).unwrap().body.is_empty());
    }
    // 100 and 103 come before the answer and are not it; 101 unasked is refused.
    let r = decode(
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n",
        false,
    )
    .unwrap();
    assert_eq!(r.status, 201);
    assert!(decode("HTTP/1.1 101 Switching Protocols\r\n\r\n", false).is_err());
}

#[test]
fn only_a_cleanly_framed_keep_alive_response_leaves_the_connection_reusable() {
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n", false),
        (Framing::Length(1), true)
    );
    assert_eq!(
        framing(
            "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\n",
            false
        ),
        (Framing::Length(1), false)
    );
    assert_eq!(
        framing("HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n", false),
        (Framing::Length(1), false)
    );
    assert_eq!(
        framing(
            "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 1\r\n\r\n",
            false
        ),
        (Framing::Length(1), true)
    );
    // Transfer-Encoding wins over Content-Length, and such a response ends the connection.
    assert_eq!(
        framing(
            "HTTP/1.1 200 OK\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n",
            false
        ),
        (Framing::Chunked, false)
    );
    // A coding other than chunked last: read until close.
    assert_eq!(
        framing(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n",
            false
        ),
        (Framing::Eof, false)
    );
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\n\r\n", false),
        (Framing::Eof, false)
    );
}

#[test]
fn a_non_canonical_reason_phrase_is_kept() {
    let (h, _) = parse_head(b"HTTP/1.1 200 Fine\r\ncontent-length: 0\r\n\r\n", false)
        .unwrap()
        .unwrap();
    assert_eq!(h.reason.as_deref(), Some(&b"Fine"[..]));
    let (h, _) = parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", false)
        .unwrap()
        .unwrap();
    assert_eq!(h.reason, None);
}

#[test]
fn lower_case_names_are_told_apart_a_word_at_a_time_as_byte_by_byte() {
    let reference = |name: &[u8]| name.iter().all(|b| *b < 0x80 && !b.is_ascii_uppercase());
    // Every byte value at every place of names from 0 to 17 bytes long (whole words,
    // the tail, both), among lower-case letters and among letters just past `Z`.
    for len in 0..=17 {
        for fill in [b'a', b'z', b'[', b'@', b'-'] {
            for at in 0..len {
                for byte in 0..=255u8 {
                    let mut name = vec![fill; len];
                    name[at] = byte;
                    assert_eq!(
                        lower_case(&name),
                        reference(&name),
                        "{name:?} (byte {byte:#04x} at {at} of {len})"
                    );
                }
            }
        }
    }
    assert!(lower_case(b""));
    assert!(lower_case(b"content-length"));
    assert!(!lower_case(b"Content-Length"));
    assert!(!lower_case(b"x-forwarded-fOr"));
}

/// A request head batched (on a worker) onto a pooled connection its upstream has reset:
/// the exchange fails before anything of the head reached the kernel, and says so
/// (`Unsent`, which `forward.rs` retries without counting against the backend), as the
/// head's own write failing did before writes were batched.
#[tokio::test]
async fn a_batched_head_on_a_reset_pooled_connection_is_unsent() {
    use crate::backend::Backend;
    use std::sync::Arc;
    use std::time::Duration;
    crate::batch::install().expect("io_uring: the worker's batch needs it");
    tokio::spawn(crate::batch::flusher());
    tokio::task::yield_now().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let backend = Arc::new(Backend::new(
        "b1".into(),
        addr,
        "app".into(),
        "v1".into(),
        8,
    ));
    let conn = super::Conn::connect(&backend, Duration::from_secs(5))
        .await
        .unwrap();
    let (upstream, _) = listener.accept().unwrap();
    socket2::SockRef::from(&upstream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(upstream);
    let (parts, ()) = http::Request::get("/").body(()).unwrap().into_parts();
    let peer = crate::headers::Peer {
        ip: http::HeaderValue::from_static("127.0.0.1"),
        trusted: false,
        https: false,
    };
    let mut map = http::HeaderMap::new();
    let forwarding = crate::headers::forwarding(&mut map, &peer, None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let sent = super::send(conn, true, &parts, &forwarding, backend.clone(), deadline).await;
    match sent {
        Err(super::SendError::Unsent(_)) => {}
        Err(other) => panic!("expected the head to be known unsent, got {other}"),
        Ok(_) => panic!("a reset connection answered"),
    }
}
