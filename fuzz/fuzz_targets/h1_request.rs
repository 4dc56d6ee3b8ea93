//! Differential: request heads read by the proxy's HTTP/1 fast path (`h1server`) and
//! by hyper's HTTP/1 server, from the same bytes. The fast path takes heads one after
//! another while it can and leaves the rest to hyper; over the bytes it took, hyper must
//! see exactly the same requests — method, target, every header in order — and keep
//! the connection open after exactly the same ones (it stops after the first that asks
//! to close, so the comparison does too). The first byte picks the head size limit.
//!
//! And the framing guard, which the fast path pauses while it reads: over the bytes the
//! fast path took, the guard must find exactly as many heads, pass every one (no
//! verdict, not switched off, nothing rewritten or cut) and end at a head boundary.
#![no_main]

use baton_proxy::fuzzing::{fuzz_parse_heads, fuzz_sniff, ParsedRequest};
use bytes::Bytes;
use http_body_util::Empty;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use libfuzzer_sys::fuzz_target;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fuzz_target!(|data: &[u8]| {
    let Some((&limit, bytes)) = data.split_first() else {
        return;
    };
    let max_head = 64 + usize::from(limit) * 32;
    let (mut ours, used) = fuzz_parse_heads(bytes, max_head);
    if ours.is_empty() {
        return;
    }
    let guard = fuzz_sniff([&bytes[..used]]);
    assert_eq!(guard.heads, ours.len() as u64, "heads the guard saw: {guard:?}");
    assert_eq!(guard.bad_head, None, "a head the guard refuses: {guard:?}");
    assert!(!guard.off && !guard.poisoned && !guard.head_pending, "{guard:?}");
    assert_eq!(guard.passed, &bytes[..used], "the guard rewrote a head");
    if let Some(close) = ours.iter().position(|h| !h.keep_alive) {
        ours.truncate(close + 1);
    }
    let theirs = hyper_reads(&bytes[..used], max_head);
    assert_eq!(ours.len(), theirs.len(), "heads taken\n  fast path: {ours:?}\n  hyper: {theirs:?}");
    for (a, b) in ours.iter().zip(&theirs) {
        assert_eq!(a.method, b.method);
        assert_eq!(a.uri, b.uri);
        assert_eq!(a.headers, b.headers);
    }
});

fn hyper_reads(bytes: &[u8], max_head: usize) -> Vec<ParsedRequest> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let bytes = bytes.to_vec();
    rt.block_on(async move {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let got = seen.clone();
        let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
            got.lock().expect("not poisoned").push(ParsedRequest {
                method: req.method().to_string(),
                uri: req.uri().to_string(),
                headers: req
                    .headers()
                    .iter()
                    .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
                    .collect(),
                keep_alive: true,
            });
            async { Ok::<_, Infallible>(http::Response::new(Empty::<Bytes>::new())) }
        });
        let conn = tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .half_close(true)
                .max_buf_size(max_head.max(8192))
                .serve_connection(TokioIo::new(server), service)
                .await;
        });
        let _ = client.write_all(&bytes).await;
        let _ = client.shutdown().await;
        let mut out = Vec::new();
        let _ = client.read_to_end(&mut out).await;
        let _ = conn.await;
        let seen = std::mem::take(&mut *seen.lock().expect("not poisoned"));
        seen
    })
}
