//! HTTP/2 from clients (h2c with prior knowledge, or h2 over TLS by ALPN), served with
//! the `h2` crate directly: every stream's exchange runs inside the connection's own
//! task, as a future among the others (`FuturesUnordered`), not as a task of its own.
//!
//! That is the difference from serving HTTP/2 through hyper, which spawns a task per
//! stream: here no stream costs a spawn, and the responses that become ready in one turn
//! of the connection's task are written together, in one write, by the same task that
//! reads the next requests. What hyper's HTTP/2 server did besides is done here too, and
//! nothing else: the same settings, connection-specific header fields taken out of
//! responses (HTTP/2 forbids them), a `date` when the response has none, the
//! `content-length` of a body whose length is known, a stream the client resets dropped
//! with everything it holds (the upstream exchange too), and response bodies sent as the
//! client's flow-control window allows.
//!
//! A stream's request goes to `Inner::handle` like any other, with its body as
//! `Inbound::H2`; the answer comes back as the `ResponseBody` the HTTP/1 side sends. A
//! connection that ends (or fails) drops the exchanges still in progress on it.
//!
//! An HTTP/1 upstream's header fields (kept by `h1client` as the head's bytes) are
//! encoded into the HPACK block from those bytes (`h2::EncodedFields`, a BATON-PATCH of
//! the vendored h2), not first made into a `HeaderMap` for h2 to encode: that map cost
//! about as much as the rest of the response's HTTP/2 framing.

use crate::body::{prepend_fields, BoxError, H2Body, Inbound, ResponseBody};
use crate::conn::Graceful;
use crate::forward::ClientConn;
use crate::h1client::Fields;
use crate::h1server::date;
use crate::headers;
use crate::Inner;
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use h2::server::{Builder, SendResponse};
use h2::{EncodedFields, Reason, RecvStream, SendStream};
use http::header::{self, HeaderMap, HeaderName};
use http::{Method, Request, Response};
use http_body::Body;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};

/// The connection preface every HTTP/2 connection starts with (RFC 9113 §3.4).
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Most streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
pub(crate) const MAX_CONCURRENT_STREAMS: u32 = 256;
/// Streams a client may open and reset before they are taken, before GOAWAY (the rapid
/// reset attack, CVE-2023-44487).
pub(crate) const MAX_PENDING_ACCEPT_RESETS: usize = 20;
/// Streams the proxy may have to reset for the client's errors, before GOAWAY.
pub(crate) const MAX_LOCAL_ERROR_RESETS: usize = 1024;
/// Flow-control windows the client may fill before the proxy reads: per stream and per
/// connection (1 MiB each, as hyper's server had them).
const WINDOW: u32 = 1024 * 1024;
/// Most response bytes queued per stream beyond what the client's window lets out.
const MAX_SEND_BUFFER: usize = 400 * 1024;
/// The largest frame the client may send.
const MAX_FRAME: u32 = 16 * 1024;

/// The server side's settings: `max_header_list_size` from `max_header_bytes` (it also
/// bounds CONTINUATION frames: h2 allows only as many as that limit needs and answers
/// more with GOAWAY ENHANCE_YOUR_CALM).
fn builder(max_header_bytes: usize) -> Builder {
    let mut b = Builder::new();
    b.initial_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
        .max_header_list_size(u32::try_from(max_header_bytes).unwrap_or(u32::MAX))
        .header_map(request_map);
    b
}

/// Fields a request's map has room for, the forwarding fields the proxy adds among them.
const REQUEST_FIELDS: usize = 16;

/// The map a request's header block is decoded into: an emptied one from a request
/// already sent upstream (`headers::recycle`), as the HTTP/1 side's are, or a new one
/// with room for the proxy's own fields.
fn request_map() -> HeaderMap {
    headers::map_with_capacity(REQUEST_FIELDS)
}

/// Serves one HTTP/2 connection (`io` starts with the client's preface) until it ends.
/// `graceful` (read on every poll: it is cancelled only by the task that polls this)
/// sends GOAWAY; the streams already open finish, then the connection closes.
pub(crate) async fn serve<I>(
    io: I,
    inner: &Inner,
    client: &ClientConn,
    max_header_bytes: usize,
    graceful: &Graceful,
) -> Result<(), BoxError>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let handshake = builder(max_header_bytes).handshake::<_, Bytes>(io);
    let mut conn = tokio::select! {
        conn = handshake => conn?,
        _ = graceful.cancelled() => return Ok(()),
    };
    let mut streams = FuturesUnordered::new();
    let mut closing = false;
    poll_fn(|cx| {
        if !closing && graceful.is_cancelled() {
            closing = true;
            conn.graceful_shutdown();
        }
        // New streams first (this also reads the socket, and writes what the streams
        // queued in the last turn), then every stream that can go on.
        loop {
            match conn.poll_accept(cx) {
                Poll::Ready(Some(Ok((request, respond)))) => {
                    // Boxed: the exchange's future is large, and `push` would move it
                    // three times over into its task.
                    streams.push(crate::boxed_future(|| {
                        exchange(inner, client, request, respond)
                    }));
                }
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Err(error.into())),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => break,
            }
        }
        let mut finished = false;
        while let Poll::Ready(Some(())) = streams.poll_next_unpin(cx) {
            finished = true;
        }
        // What the streams finished is written in this task's next turn, after the
        // other tasks already waiting (the runtime's other connections): their
        // answers are read from the backends together, and the clients' writes go
        // out together, instead of the two alternating, each write waking a reader.
        // (Streams still sending a body queued data; h2 wakes this task for it.)
        if finished {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    })
    .await
}

/// One stream: the request through the proxy, the response back, however it ends.
/// (`map`, not an `async fn` awaiting `run_exchange`: that would move the request into
/// `run_exchange`'s future when first polled; this way both are built at once, in the
/// stream's allocation.)
fn exchange<'a>(
    inner: &'a Inner,
    client: &'a ClientConn,
    request: Request<RecvStream>,
    respond: SendResponse<Bytes>,
) -> impl Future<Output = ()> + 'a {
    run_exchange(inner, client, request, respond).map(|ended| {
        if let Err(error) = ended {
            tracing::debug!(%error, "HTTP/2 stream ended early");
        }
    })
}

async fn run_exchange(
    inner: &Inner,
    client: &ClientConn,
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) -> Result<(), h2::Error> {
    let (parts, recv) = request.into_parts();
    let content_length = request_length(&parts.headers);
    // CONNECT is refused (`Inner::handle` answers 405): what the client sends on the
    // stream is not read.
    let body = if parts.method == Method::CONNECT {
        Inbound::Empty
    } else {
        Inbound::H2(H2Body::new(recv, content_length))
    };
    let handling = inner.handle(Request::from_parts(parts, body), client);
    tokio::pin!(handling);
    // A client that resets the stream has left: the exchange is dropped with
    // everything it holds (hold slot, backend connection), as on HTTP/1 when the
    // client closes.
    // Taken apart where it lands: each move of the response writes all of it again.
    let (head, mut body) = poll_fn(|cx| {
        if let Poll::Ready(response) = handling.as_mut().poll(cx) {
            return Poll::Ready(Ok(response));
        }
        match respond.poll_reset(cx) {
            Poll::Ready(Ok(reason)) => Poll::Ready(Err(h2::Error::from(reason))),
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await?
    .into_parts();
    let upstream = body.take_fields();
    let mut head = Response::from_parts(head, ());
    let mut encoded = None;
    if let Some(fields) = upstream {
        match encode_fields(&fields) {
            Some(fields) => encoded = Some(fields),
            None => prepend_fields(&fields, head.headers_mut()),
        }
    }
    strip_connection_fields(head.headers_mut());
    let (has_date, has_length) = encoded
        .as_ref()
        .map_or((false, false), |e| (e.date, e.length));
    if !has_date && !head.headers().contains_key(header::DATE) {
        head.headers_mut().insert(header::DATE, date::value());
    }
    let end = body.is_end_stream();
    if !end {
        if let Some(len) = body.size_hint().exact() {
            if !has_length && !head.headers().contains_key(header::CONTENT_LENGTH) {
                head.headers_mut()
                    .insert(header::CONTENT_LENGTH, len.into());
            }
        }
    }
    let tx = match encoded {
        Some(e) => respond.send_response_with_fields(head, e.fields, end)?,
        None => respond.send_response(head, end)?,
    };
    if end {
        return Ok(());
    }
    Pipe {
        body: &mut body,
        tx,
        waiting: None,
    }
    .await
}

/// An upstream's HTTP/1 header fields encoded for h2 as they are, without a
/// `HeaderMap`, and whether `date` and `content-length` are among them.
struct Encoded {
    fields: EncodedFields,
    date: bool,
    length: bool,
}

/// HPACK's static table indexes (RFC 7541 Appendix A) of `date` and `content-length`,
/// which `EncodedFields::push` returns for those names.
const DATE_INDEX: usize = 33;
const CONTENT_LENGTH_INDEX: usize = 28;

/// `None` when a field is not one HTTP/2 may carry: those go through the map, whose
/// `strip_connection_fields` takes out what HTTP/2 forbids. (`h1client` has already
/// taken out the hop-by-hop fields, so this is rare.)
fn encode_fields(fields: &Fields) -> Option<Encoded> {
    let mut encoded = Encoded {
        fields: EncodedFields::with_capacity(fields.head_len()),
        date: false,
        length: false,
    };
    for (name, value) in fields.iter() {
        match encoded.fields.push(name, value).ok()? {
            Some(DATE_INDEX) => encoded.date = true,
            Some(CONTENT_LENGTH_INDEX) => encoded.length = true,
            _ => {}
        }
    }
    Some(encoded)
}

/// The request's `Content-Length` when it has exactly one valid value (h2 refuses the
/// stream when the body disagrees with it).
fn request_length(headers: &HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first.to_str().ok()?.parse().ok()
}

/// Fields that belong to one HTTP/1 connection, which HTTP/2 forbids in a message
/// (RFC 9113 §8.2.2); h2 refuses to send a response that has one.
static CONNECTION_FIELDS: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::TE,
];

/// Takes connection-specific fields out of a response, and the fields its `Connection`
/// names. The proxy's own hop-by-hop rules already took an upstream's out: this is for
/// the proxy's own answers (`Connection: close` while draining) and any left over.
fn strip_connection_fields(headers: &mut HeaderMap) {
    if !headers.keys().any(|name| CONNECTION_FIELDS.contains(name)) {
        return;
    }
    if let Some(connection) = headers.remove(header::CONNECTION) {
        if let Ok(names) = connection.to_str() {
            for name in names.split(',') {
                headers.remove(name.trim());
            }
        }
    }
    for name in &CONNECTION_FIELDS {
        headers.remove(name);
    }
}

/// Sends a response body on its stream: each chunk once the client's window has room
/// for some of it (h2 queues the rest), then the trailers or the end of the stream.
/// A client reset ends it with that error; a body that fails resets the stream.
struct Pipe<'a> {
    body: &'a mut ResponseBody,
    tx: SendStream<Bytes>,
    /// A chunk taken from the body, waiting for window.
    waiting: Option<(Bytes, bool)>,
}

impl Future for Pipe<'_> {
    type Output = Result<(), h2::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let me = self.get_mut();
        loop {
            if let Poll::Ready(reason) = me.tx.poll_reset(cx)? {
                return Poll::Ready(Err(h2::Error::from(reason)));
            }
            if me.waiting.is_some() {
                while me.tx.capacity() == 0 {
                    match ready!(me.tx.poll_capacity(cx)) {
                        Some(Ok(_)) => {}
                        Some(Err(error)) => return Poll::Ready(Err(error)),
                        // The stream left the sending state: reset by the client.
                        None => return Poll::Ready(Err(h2::Error::from(Reason::CANCEL))),
                    }
                }
                if let Some((data, end)) = me.waiting.take() {
                    me.tx.send_data(data, end)?;
                    if end {
                        return Poll::Ready(Ok(()));
                    }
                }
                continue;
            }
            // The next frame before any window is claimed: a claim held while a body
            // produces nothing would hold the connection's window from other streams.
            match ready!(Pin::new(&mut *me.body).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let end = me.body.is_end_stream();
                        // The last chunk (often the only one) goes to h2 at once, which
                        // sends it as the windows allow: nothing follows it, so no claim
                        // on the window is needed to keep the body from running ahead.
                        if data.is_empty() || end {
                            me.tx.send_data(data, end)?;
                            if end {
                                return Poll::Ready(Ok(()));
                            }
                            continue;
                        }
                        // One byte claimed: h2 raises the claim to what is queued.
                        me.tx.reserve_capacity(1);
                        me.waiting = Some((data, end));
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            me.tx.reserve_capacity(0);
                            me.tx.send_trailers(trailers)?;
                            return Poll::Ready(Ok(()));
                        }
                    }
                },
                Some(Err(error)) => {
                    tracing::debug!(%error, "response body failed: resetting the stream");
                    me.tx.send_reset(Reason::INTERNAL_ERROR);
                    return Poll::Ready(Ok(()));
                }
                None => {
                    me.tx.send_data(Bytes::new(), true)?;
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn connection_fields_and_the_fields_connection_names_are_taken_out() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("close, x-hop"));
        h.insert("x-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("2"));
        strip_connection_fields(&mut h);
        let names: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-kept"]);
    }

    #[test]
    fn a_response_without_connection_fields_is_left_as_it_is() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("2"));
        let before = h.clone();
        strip_connection_fields(&mut h);
        assert_eq!(h, before);
    }

    fn upstream_fields(head: &[u8]) -> Fields {
        match crate::h1client::parse::parse_head(head, false) {
            Ok(Some((head, _))) => head.fields,
            _ => panic!("not a complete response head"),
        }
    }

    #[test]
    fn encoded_upstream_fields_say_whether_date_and_content_length_are_among_them() {
        let both = upstream_fields(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDATE: Sat, 05 Dec 2026 22:10:33 GMT\r\n\
              x-date: no\r\nContent-Length: 3\r\n\r\n",
        );
        let encoded = encode_fields(&both).expect("valid HTTP/2 fields");
        assert_eq!(
            (encoded.date, encoded.length, encoded.fields.len()),
            (true, true, 4)
        );

        let neither = upstream_fields(
            b"HTTP/1.1 200 OK\r\nx-date: no\r\ncontent-lengths: 3\r\ndates: x\r\n\r\n",
        );
        let encoded = encode_fields(&neither).expect("valid HTTP/2 fields");
        assert_eq!(
            (encoded.date, encoded.length, encoded.fields.len()),
            (false, false, 3)
        );
    }

    #[test]
    fn only_one_valid_content_length_is_a_request_length() {
        let mut h = HeaderMap::new();
        assert_eq!(request_length(&h), None);
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
        assert_eq!(request_length(&h), Some(12));
        h.append(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
        assert_eq!(request_length(&h), None);
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("x"));
        assert_eq!(request_length(&h), None);
    }
}
