//! Differential: an upstream's response read by baton's `h1client` and by hyper's
//! HTTP/1 client, from the same bytes. Both must refuse it, or both must read the same
//! status, headers, body and trailers. The first byte picks `HEAD` (low bit) and the
//! read size `h1client` is fed in; hyper gets the bytes over an in-memory pipe, after
//! its request, followed by the end of the connection.
//!
//! One difference is by design: `h1client` only sends requests that ask for no upgrade,
//! so it refuses a `101 Switching Protocols`, which hyper's client hands back as an
//! upgrade.
#![no_main]

use baton_proxy::fuzzing::{fuzz_decode, DecodedResponse};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, bytes)) = data.split_first() else {
        return;
    };
    let head = flags & 1 == 1;
    let read = usize::from(flags >> 1).max(1);
    let ours = fuzz_decode(bytes, head, read);
    let theirs = hyper_reads(bytes, head);
    match (&ours, &theirs) {
        (Err(_), Ok(b)) if b.status == 101 => {}
        (Ok(a), Ok(b)) => assert_eq!(a, b, "both accepted, read differently"),
        (Err(_), Err(_)) => {}
        _ => panic!("one accepted, one refused:\n  h1client: {ours:?}\n  hyper: {theirs:?}"),
    }
});

fn plain(map: &http::HeaderMap) -> Vec<(String, Vec<u8>)> {
    map.iter()
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
        .collect()
}

fn hyper_reads(bytes: &[u8], head: bool) -> Result<DecodedResponse, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let bytes = bytes.to_vec();
    rt.block_on(async move {
        let (client_io, mut server_io) = tokio::io::duplex(1 << 20);
        let server = tokio::spawn(async move {
            let mut request = [0u8; 1024];
            let _ = server_io.read(&mut request).await;
            let _ = server_io.write_all(&bytes).await;
            let _ = server_io.shutdown().await;
        });
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(client_io))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let method = if head { http::Method::HEAD } else { http::Method::GET };
        let req = http::Request::builder()
            .method(method)
            .uri("/")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = res.status().as_u16();
        let headers = plain(res.headers());
        let mut body = res.into_body();
        let mut data = Vec::new();
        let mut trailers = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| e.to_string())?;
            match frame.into_data() {
                Ok(d) => data.extend_from_slice(&d),
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        trailers = Some(plain(&t));
                    }
                }
            }
        }
        let _ = server.await;
        Ok(DecodedResponse {
            status,
            headers,
            body: data,
            trailers,
        })
    })
}
