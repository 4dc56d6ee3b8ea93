//! The client side's HTTP/1.1 fast path: a plain `GET` or `HEAD` head is parsed with
//! httparse straight from the connection's buffer, handed to the request handler
//! (`Inner::handle`, the same as every other request) and its response written back
//! here — no hyper dispatcher, no per-connection channel, one write for a small answer.
//!
//! What it serves: HTTP/1.1 `GET` and `HEAD` whose head has no `Content-Length`,
//! `Transfer-Encoding`, `Expect`, `Upgrade` or `TE`, at most one `Host`, a head no longer
//! than `max_header_bytes`, and names and values the `http` types take. Everything else —
//! the first head it does not take, an h2c preface, anything httparse refuses — goes to
//! hyper together with every byte read so far (`Handoff`), and hyper serves the rest of
//! the connection exactly as it serves a connection from its start; so hyper's parser
//! still answers every malformed head (400, 431), and every body, upgrade and h2 stream
//! is hyper's. The framing guard (`h1guard`) sits below both on the socket; every head
//! the fast path takes is one it passes without a verdict (which includes CRLF line
//! ends), so it is paused while the fast path reads and judges, at the handoff, what
//! the fast path read and did not serve (`conn.rs`). Its verdicts reach the handler in
//! request order either way.
//!
//! The response is encoded as hyper's server encodes it (`encode_head`): the same status
//! line and reason, the same header order, `content-length` from the body's exact size,
//! else `transfer-encoding: chunked`, else (an HTTP/1.0 answer) until close; `date`
//! added when missing; `connection: close` added when the client asked to close; no body
//! for `HEAD`, 204 and 304. The tests check it byte for byte against hyper.

use crate::body::{BoxError, Inbound};
use crate::conn::{Graceful, TrackedIo};
use crate::forward::ClientConn;
use crate::h1client::Fields;
use crate::h1guard::MAX_HEADERS;
use crate::headers::{self, ROOM};
use crate::Inner;
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame};
use std::future::{poll_fn, Future};
use std::io::Write as _;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::Poll;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes reserved for a connection's first read (most heads fit); a longer head grows
/// the buffer by doubling.
const READ_CHUNK: usize = 1024;
/// Data frames up to this size are copied into the write buffer (one write for head and
/// body); larger ones are written as they are.
const COPY_LIMIT: usize = 16 * 1024;
/// Bytes reserved for a connection's first answer (a head and a small body).
const WRITE_CHUNK: usize = 1024;
/// A write buffer grown past this by a larger answer is given back after it, so an idle
/// connection holds at most this much of it.
const KEEP_WRITE_BUFFER: usize = 4 * 1024;
/// hyper refuses a request target longer than this (414).
const MAX_URI_LEN: usize = (u16::MAX - 1) as usize;

/// How the fast path left the connection.
pub(crate) enum Outcome {
    /// Closed (by either side, or after a response that ends the connection).
    Closed,
    /// A head the fast path does not serve: hyper takes the connection, starting with
    /// these bytes (already read, the head first).
    Handoff(BytesMut),
}

/// A request head the fast path serves, parsed.
pub(crate) struct Head {
    pub request: Request<Inbound>,
    /// The client asked for the connection to stay open (HTTP/1.1 without `close`).
    pub keep_alive: bool,
}

/// Parses one request head from the start of `buf`: `Ok(Some)` when the fast path
/// serves it — the head's bytes are then split off `buf`, and the request's target and
/// header values are slices of them (no copy) — `Ok(None)` when more bytes are needed,
/// `Err(())` when it is hyper's to answer (not a simple `GET`/`HEAD`, or not valid at
/// all). Unless it is `Ok(Some)`, `buf` holds the same bytes as before.
pub(crate) fn parse(buf: &mut BytesMut, max_head: usize) -> Result<Option<Head>, ()> {
    // Filled in place: returned through `Result<Option<_>>`, its 300 bytes were copied
    // three times a request.
    let mut seen = Scanned::empty();
    if !scan(buf, max_head, &mut seen)? {
        return Ok(None);
    }
    let head = buf.split_to(seen.len).freeze();
    match build(&head, &seen) {
        Some(request) => Ok(Some(Head {
            request,
            keep_alive: seen.keep_alive,
        })),
        None => {
            // A target or name the `http` types refuse: hyper's to answer, with every
            // byte where it was.
            let mut whole = BytesMut::with_capacity(head.len() + buf.len());
            whole.extend_from_slice(&head);
            whole.extend_from_slice(buf);
            *buf = whole;
            Err(())
        }
    }
}

/// Where a part of a head is: (offset from its start, length).
type Span = (u32, u32);

/// Fields whose places `scan` keeps without allocating (most heads have fewer).
const INLINE_FIELDS: usize = 16;

/// What `scan` found in a head the fast path takes.
struct Scanned {
    len: usize,
    method: Method,
    path: Span,
    /// (name, value) of the first fields, `count` in all …
    fields: [(Span, Span); INLINE_FIELDS],
    /// … and of those past `INLINE_FIELDS`.
    more: Vec<(Span, Span)>,
    count: usize,
    keep_alive: bool,
}

impl Scanned {
    fn empty() -> Scanned {
        Scanned {
            len: 0,
            method: Method::GET,
            path: (0, 0),
            fields: [((0, 0), (0, 0)); INLINE_FIELDS],
            more: Vec::new(),
            count: 0,
            keep_alive: true,
        }
    }

    /// (name, value) of every field, in order.
    fn fields(&self) -> impl Iterator<Item = &(Span, Span)> {
        self.fields[..self.count.min(INLINE_FIELDS)]
            .iter()
            .chain(&self.more)
    }
}

/// Decides on the bytes as read (nothing copied, nothing split) whether the fast path
/// takes the head at the start of `buf` (`Ok(true)`, its parts' places in `seen`, which
/// must be `Scanned::empty()`), needs more bytes (`Ok(false)`) or is hyper's (`Err`).
fn scan(buf: &[u8], max_head: usize, seen: &mut Scanned) -> Result<bool, ()> {
    // Left uninitialized: httparse writes the fields it finds, and writing 100 empty
    // ones first costs more than parsing a short head.
    let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() <= max_head => return Ok(false),
        _ => return Err(()),
    };
    if len > max_head || req.version != Some(1) || has_bare_lf(&buf[..len]) {
        return Err(());
    }
    let method = match req.method {
        Some("GET") => Method::GET,
        Some("HEAD") => Method::HEAD,
        _ => return Err(()),
    };
    let path = req.path.ok_or(())?;
    if path.len() > MAX_URI_LEN {
        return Err(());
    }
    let span = |part: &[u8]| -> Span {
        // An empty value's slice need not point into the buffer.
        if part.is_empty() {
            return (0, 0);
        }
        let at = (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
        (at as u32, part.len() as u32)
    };
    seen.len = len;
    seen.method = method;
    seen.path = span(path.as_bytes());
    seen.count = req.headers.len();
    let mut hosts = 0;
    for (i, h) in req.headers.iter().enumerate() {
        let name = h.name.as_bytes();
        let is = |known: &str| name.eq_ignore_ascii_case(known.as_bytes());
        if is("content-length")
            || is("transfer-encoding")
            || is("expect")
            || is("upgrade")
            || is("te")
        {
            return Err(());
        }
        if is("host") {
            hosts += 1;
        } else if is("connection") && has_token(h.value, "close") {
            seen.keep_alive = false;
        }
        let place = (span(name), span(h.value));
        match seen.fields.get_mut(i) {
            Some(slot) => *slot = place,
            None => seen.more.push(place),
        }
    }
    if hosts > 1 {
        return Err(());
    }
    Ok(true)
}

/// The request of a head `scan` took, its parts slices of `head`; `None` when the
/// `http` types refuse its target or a name.
fn build(head: &bytes::Bytes, seen: &Scanned) -> Option<Request<Inbound>> {
    let part = |(at, len): Span| head.slice(at as usize..(at + len) as usize);
    let uri = Uri::from_maybe_shared(part(seen.path)).ok()?;
    let mut map = headers::map_with_capacity(seen.count + ROOM);
    for &(name, value) in seen.fields() {
        let (at, len) = name;
        let name = HeaderName::from_bytes(&head[at as usize..(at + len) as usize]).ok()?;
        let value = HeaderValue::from_maybe_shared(part(value)).ok()?;
        map.append(name, value);
    }
    let mut request = Request::new(Inbound::Empty);
    *request.method_mut() = seen.method.clone();
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = map;
    Some(request)
}

/// Whether a line of `head` ends in LF alone: the framing guard refuses that head, so
/// the fast path leaves it to the guard and hyper.
fn has_bare_lf(head: &[u8]) -> bool {
    memchr::memchr_iter(b'\n', head).any(|i| i == 0 || head[i - 1] != b'\r')
}

/// Whether `buf` holds more than the blank lines allowed before a request line: a head
/// has begun arriving (the slow-head clock runs, as the framing guard runs it).
fn head_begun(buf: &[u8]) -> bool {
    buf.iter().any(|&b| b != b'\r' && b != b'\n')
}

/// Whether a comma-separated header value lists `token` (any case), as hyper reads
/// `Connection` (a value with bytes outside visible ASCII, space and tab lists none).
fn has_token(value: &[u8], token: &str) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (b' '..0x7f).contains(&b))
        && value
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Serves requests on `io` until the connection ends or a head the fast path does not
/// take arrives. `graceful`: finish the response in progress, then close (an idle
/// connection closes at once).
///
/// The framing guard below is paused meanwhile (every head taken here is one it would
/// pass, see `conn.rs`); this keeps the slow-head clock and hands the guard what it
/// read at the handoff.
pub(crate) async fn serve<S>(
    io: &mut TrackedIo<S>,
    inner: &Inner,
    client: &ClientConn,
    max_head: usize,
    graceful: &Graceful,
) -> Outcome
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // The buffers of a connection this thread served before, when one is spare: a
    // connection's first answer then allocates nothing for them (see `Spare`).
    let mut bufs = Spare::take();
    let Spare {
        read: buf,
        write: wbuf,
    } = &mut bufs;
    let mut heads = 0u64;
    let mut request_box = None;
    io.pause_guard();
    let handoff = |io: &mut TrackedIo<S>, heads: u64, buf: &mut BytesMut| {
        let mut buf = std::mem::take(buf);
        io.resume_guard(heads, &mut buf);
        Outcome::Handoff(buf)
    };
    loop {
        let head = loop {
            match parse(buf, max_head) {
                Ok(Some(head)) => break head,
                Ok(None) => {}
                Err(()) => return handoff(io, heads, buf),
            }
            if head_begun(buf) {
                io.state().head_begins();
            }
            reserve(buf);
            let read = if buf.is_empty() {
                // Between requests a graceful close ends the wait. `graceful` is cancelled
                // only by this connection's own task (`server.rs`' watchdog loop), which
                // polls this future again right after: a look at the token on each poll
                // does what a wake-up registration (one per request) would.
                let next = poll_fn(|cx| {
                    if graceful.is_cancelled() {
                        return Poll::Ready(None);
                    }
                    tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, buf).map(Some)
                });
                match next.await {
                    None => return Outcome::Closed,
                    Some(read) => read,
                }
            } else {
                io.read_buf(buf).await
            };
            match read {
                Ok(0) | Err(_) if buf.is_empty() => return Outcome::Closed,
                // The client ended in the middle of a head: hyper answers it as it would.
                Ok(0) | Err(_) => return handoff(io, heads, buf),
                Ok(_) => {}
            }
        };
        heads += 1;
        io.state().head_ends();
        if head_begun(buf) {
            io.state().head_begins();
        }
        let head_request = head.request.method() == Method::HEAD;
        // While the answer is awaited, the socket is still read (a pipelined head is
        // kept for later): a client that closes its side has left, and the request is
        // dropped with everything it holds (hold slot, upstream exchange), as hyper's
        // server drops it. Boxed, in the box the connection's previous request used:
        // the connection's own future holds no room for it.
        //
        // Not at the wait's first poll, though: most answers come at the next wake-up,
        // and that read would only find nothing (a poll of the socket's readiness, and
        // for a socket not yet registered, its registration with the reactor: two
        // `epoll_ctl` for a connection that never has to wait, see `socket.rs`). A
        // client that leaves is noticed at the wait's next wake-up, at the latest the
        // connection watchdog's next check (a quarter of the shortest client timeout, at
        // most 2.5 s).
        let mut handling =
            crate::reboxed_future(&mut request_box, || inner.handle(head.request, client));
        let mut reading = true;
        let mut first_poll = true;
        let mut response = loop {
            if reading {
                reserve(buf);
            }
            let read = poll_fn(|cx| {
                if std::mem::take(&mut first_poll) {
                    return Poll::Pending;
                }
                tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, buf)
            });
            tokio::select! {
                biased;
                response = handling.as_mut() => break response,
                read = read, if reading => match read {
                    Ok(0) | Err(_) => return Outcome::Closed,
                    Ok(_) => {
                        reading = buf.len() < max_head;
                        if head_begun(buf) {
                            io.state().head_begins();
                        }
                    }
                },
            }
        };
        let fields = response.body_mut().take_fields();
        let written = write_response(
            io,
            wbuf,
            &mut response,
            fields.as_deref(),
            head_request,
            head.keep_alive,
        )
        .await;
        drop(response);
        match written {
            Ok(true) if !graceful.is_cancelled() => {}
            Ok(_) => {
                // Over TLS the close is a record (close_notify) to write; over plain TCP
                // closing the socket, which follows at once, sends the FIN itself.
                if client.peer.https {
                    let _ = io.shutdown().await;
                }
                return Outcome::Closed;
            }
            Err(_) => return Outcome::Closed,
        }
        if wbuf.capacity() > KEEP_WRITE_BUFFER {
            *wbuf = Vec::new();
        }
        if buf.is_empty() && buf.capacity() > 4 * READ_CHUNK {
            *buf = BytesMut::new();
        }
    }
}

/// Room for the next read: `READ_CHUNK` at first, then as much again as the buffer holds.
fn reserve(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(buf.capacity().max(READ_CHUNK));
    }
}

/// How many connections' buffers a thread keeps for its next connections.
const KEEP_SPARE: usize = 64;

thread_local! {
    static SPARE: std::cell::RefCell<Vec<(BytesMut, Vec<u8>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// A connection's read and write buffers, given to the next connection the thread
/// serves when this one ends (at most `KEEP_SPARE` wait, each at most
/// `KEEP_WRITE_BUFFER` + `4 * READ_CHUNK` bytes). Connections come and go in batches (an
/// event loop's turn ends several, then accepts several), more than the allocator's
/// per-thread cache holds of one size: without this, a one-request connection's two
/// buffers cost ~950 instructions in `malloc` and `free`.
struct Spare {
    read: BytesMut,
    write: Vec<u8>,
}

impl Spare {
    fn take() -> Spare {
        let spare = SPARE.try_with(|spare| spare.borrow_mut().pop());
        let (read, write) = spare.ok().flatten().unwrap_or_default();
        Spare { read, write }
    }
}

impl Drop for Spare {
    fn drop(&mut self) {
        // A buffer handed over to hyper or HTTP/2 leaves none behind; one that holds
        // bytes (a client's next head, left unread at a close) or grew past the limits
        // is not kept.
        let kept = self.read.capacity() > 0
            && self.read.is_empty()
            && self.read.capacity() <= 4 * READ_CHUNK
            && self.write.capacity() <= KEEP_WRITE_BUFFER;
        if !kept {
            return;
        }
        self.write.clear();
        let spare = (
            std::mem::take(&mut self.read),
            std::mem::take(&mut self.write),
        );
        let _ = SPARE.try_with(|pool| {
            let mut pool = pool.borrow_mut();
            if pool.len() < KEEP_SPARE {
                pool.push(spare);
            }
        });
    }
}

/// How a response body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Exactly this many bytes (0: none).
    Length(u64),
    Chunked,
    /// Until the connection closes.
    Close,
}

/// What the encoded head says about the body and the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Encoded {
    pub framing: Framing,
    /// The connection ends after this response.
    pub last: bool,
}

/// The body's length as hyper's dispatcher tells its encoder: `None` for a body that
/// has already ended, else the exact size when known.
pub(crate) fn body_length<B: Body>(body: &B) -> Option<Option<u64>> {
    if body.is_end_stream() {
        None
    } else {
        Some(body.size_hint().exact())
    }
}

fn can_have_body(head_request: bool, status: StatusCode) -> bool {
    !head_request
        && !status.is_informational()
        && !matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED)
}

fn can_have_content_length(status: StatusCode) -> bool {
    !status.is_informational()
        && !matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED)
}

/// Appends the response head to `dst` as hyper's HTTP/1 server writes it for a request
/// that is HTTP/1.1 (`head_request`: it was `HEAD`; `keep_alive`: it did not ask to
/// close). `body`: see `body_length`. `fields`: an upstream's fields as received (no
/// hop-by-hop field among them, no name twice: see `FastBody::strip_hop_by_hop`),
/// written first, as if they led the response's `HeaderMap`.
pub(crate) fn encode_head<B>(
    res: &mut Response<B>,
    mut fields: Option<&Fields>,
    head_request: bool,
    keep_alive: bool,
    body: Option<Option<u64>>,
    dst: &mut Vec<u8>,
) -> Encoded {
    if !keep_alive {
        match res.headers_mut().entry(header::CONNECTION) {
            header::Entry::Occupied(mut e) => {
                if !e.iter().any(|v| has_token(v.as_bytes(), "close")) {
                    e.append(HeaderValue::from_static("close"));
                }
            }
            header::Entry::Vacant(e) => {
                e.insert(HeaderValue::from_static("close"));
            }
        }
    }
    let status = res.status();
    let http10 = res.version() == Version::HTTP_10;
    let reason = res.extensions().get::<hyper::ext::ReasonPhrase>();
    if !http10 && status == StatusCode::OK && reason.is_none() {
        dst.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        dst.extend_from_slice(if http10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
        dst.extend_from_slice(status.as_str().as_bytes());
        dst.push(b' ');
        match reason {
            Some(r) => dst.extend_from_slice(r.as_bytes()),
            None => dst.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes()),
        }
        dst.extend_from_slice(b"\r\n");
    }
    let chunked_ok = !http10 && can_have_body(head_request, status);
    let mut last = !keep_alive;
    let mut lengths = Lengths {
        body,
        head_request,
        written: false,
        first: None,
        framing: Framing::Length(0),
    };
    let mut wrote_date = false;
    // `HeaderMap` yields every value of a name together, under the same key. Connection,
    // Transfer-Encoding and Trailer values are joined into one line each, as hyper joins
    // them; every other repeated name gets a line per value.
    let mut joining: Option<Joined> = None;
    let mut te_needs_chunked = false;
    if let Some(written) = fields.and_then(Fields::as_written) {
        // The upstream wrote its fields as the loop below would: its lines go out at
        // once, unless its `content-length` is one the loop would leave out.
        let keep = written.length.is_none_or(|value| lengths.keep(value));
        if keep {
            dst.extend_from_slice(written.lines);
            wrote_date = written.date;
            fields = None;
        }
    }
    for (name, value) in fields.iter().flat_map(|f| f.iter()) {
        if name.eq_ignore_ascii_case(b"content-length") {
            let keep = lengths.keep(value);
            if !keep {
                continue;
            }
        } else if name.eq_ignore_ascii_case(b"date") {
            wrote_date = true;
        }
        // `HeaderMap` holds names lower-case. Copied, then lowered in place: one copy
        // rather than a capacity check per byte.
        let at = dst.len();
        dst.extend_from_slice(name);
        dst[at..].make_ascii_lowercase();
        dst.extend_from_slice(b": ");
        dst.extend_from_slice(value);
        dst.extend_from_slice(b"\r\n");
    }
    let mut prev: *const HeaderName = std::ptr::null();
    for (name, value) in res.headers().iter() {
        if !std::ptr::eq(prev, name) {
            end_joined(dst, &mut joining, te_needs_chunked);
            prev = name;
        }
        match *name {
            header::CONTENT_LENGTH => {
                let keep = lengths.keep(value.as_bytes());
                if keep {
                    line(dst, name, value);
                }
            }
            header::TRANSFER_ENCODING if chunked_ok => {
                lengths.written = true;
                lengths.framing = Framing::Chunked;
                // A last coding other than `chunked` gets it added, as hyper does.
                te_needs_chunked = !value.to_str().is_ok_and(|s| {
                    s.rsplit(',')
                        .next()
                        .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"))
                });
                join(dst, &mut joining, Joined::TransferEncoding, name, value);
            }
            header::TRANSFER_ENCODING | header::TRAILER if !chunked_ok => {}
            header::TRAILER => join(dst, &mut joining, Joined::Other, name, value),
            header::CONNECTION => {
                if has_token(value.as_bytes(), "close") {
                    last = true;
                }
                join(dst, &mut joining, Joined::Other, name, value);
            }
            _ => {
                if *name == header::DATE {
                    wrote_date = true;
                }
                line(dst, name, value);
            }
        }
    }
    end_joined(dst, &mut joining, te_needs_chunked);
    if !lengths.written {
        lengths.framing = match body {
            Some(None) if chunked_ok => {
                dst.extend_from_slice(b"transfer-encoding: chunked\r\n");
                Framing::Chunked
            }
            Some(None) => Framing::Close,
            None | Some(Some(0)) => {
                if can_have_content_length(status) && !head_request {
                    dst.extend_from_slice(b"content-length: 0\r\n");
                }
                Framing::Length(0)
            }
            Some(Some(len)) if can_have_content_length(status) => {
                let _ = write!(dst, "content-length: {len}\r\n");
                Framing::Length(len)
            }
            Some(Some(_)) => Framing::Length(0),
        };
    }
    if !can_have_body(head_request, status) {
        lengths.framing = Framing::Length(0);
    }
    if !wrote_date {
        dst.extend_from_slice(b"date: ");
        date::extend(dst);
        dst.extend_from_slice(b"\r\n");
    }
    dst.extend_from_slice(b"\r\n");
    if lengths.framing == Framing::Close {
        last = true;
    }
    Encoded {
        framing: lengths.framing,
        last,
    }
}

/// How the response's `Content-Length` fields frame its body, as hyper's encoder
/// decides it: `body` and `head_request` as `encode_head` has them.
struct Lengths {
    body: Option<Option<u64>>,
    head_request: bool,
    /// A `Content-Length` (or `Transfer-Encoding`) line is written.
    written: bool,
    /// The first length read from a field, when the body's own size is not known.
    first: Option<u64>,
    framing: Framing,
}

impl Lengths {
    /// Whether a `Content-Length` field of the response is written; a written one sets
    /// the framing.
    fn keep(&mut self, value: &[u8]) -> bool {
        match self.body {
            Some(Some(known)) => {
                if self.written {
                    return false;
                }
                self.framing = Framing::Length(known);
            }
            Some(None) => {
                let Some(len) = parse_length(value) else {
                    return false;
                };
                if self.first.replace(len).is_some() {
                    return false;
                }
                self.framing = Framing::Length(len);
            }
            None if self.head_request => {}
            None => return false,
        }
        self.written = true;
        true
    }
}

/// A header line whose values are being joined into it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Joined {
    TransferEncoding,
    Other,
}

/// Writes `value` of `name`: the start of its line, or `, value` on the line still open.
fn join(
    dst: &mut Vec<u8>,
    joining: &mut Option<Joined>,
    kind: Joined,
    name: &HeaderName,
    value: &HeaderValue,
) {
    if joining.is_some() {
        dst.extend_from_slice(b", ");
    } else {
        dst.extend_from_slice(name.as_str().as_bytes());
        dst.extend_from_slice(b": ");
        *joining = Some(kind);
    }
    dst.extend_from_slice(value.as_bytes());
}

/// Ends the joined line still open, if any.
fn end_joined(dst: &mut Vec<u8>, joining: &mut Option<Joined>, te_needs_chunked: bool) {
    if let Some(kind) = joining.take() {
        if kind == Joined::TransferEncoding && te_needs_chunked {
            dst.extend_from_slice(b", chunked");
        }
        dst.extend_from_slice(b"\r\n");
    }
}

fn line(dst: &mut Vec<u8>, name: &HeaderName, value: &HeaderValue) {
    dst.extend_from_slice(name.as_str().as_bytes());
    dst.extend_from_slice(b": ");
    dst.extend_from_slice(value.as_bytes());
    dst.extend_from_slice(b"\r\n");
}

/// A `Content-Length` value as hyper reads one: digits, or a list of equal ones.
fn parse_length(value: &[u8]) -> Option<u64> {
    let mut found: Option<u64> = None;
    for part in value.split(|b| *b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n: u64 = std::str::from_utf8(part).ok()?.parse().ok()?;
        match found {
            Some(f) if f != n => return None,
            _ => found = Some(n),
        }
    }
    found
}

/// Writes a response: head, body framed as encoded, then the end. `Ok(true)` when the
/// connection may carry another request; an error (the client left, the body failed)
/// ends the connection without finishing the body, as hyper does.
pub(crate) fn write_response<'a, S, B>(
    io: &'a mut S,
    wbuf: &'a mut Vec<u8>,
    response: &'a mut Response<B>,
    fields: Option<&Fields>,
    head_request: bool,
    keep_alive: bool,
) -> impl Future<Output = Result<bool, BoxError>> + 'a
where
    S: AsyncWrite + Unpin,
    B: Body<Data = Bytes> + Unpin + 'a,
    B::Error: Into<BoxError>,
{
    // The head is encoded before the future is made, and the response stays where the
    // caller has it: the future holds a reference to its body (it is part of every
    // connection's task, and a response moved into it would be written over again).
    let length = body_length(response.body());
    wbuf.clear();
    // Room for a head and a small body at once: grown a few bytes at a time, a new
    // connection's buffer would be reallocated five times over its first answer.
    wbuf.reserve(WRITE_CHUNK);
    let encoded = encode_head(response, fields, head_request, keep_alive, length, wbuf);
    let body = response.body_mut();
    async move {
        let chunked = encoded.framing == Framing::Chunked;
        let mut left = match encoded.framing {
            Framing::Length(0) => {
                io.write_all(wbuf).await?;
                return Ok(!encoded.last);
            }
            Framing::Length(n) => n,
            Framing::Chunked | Framing::Close => u64::MAX,
        };
        enum Step<E> {
            Frame(Option<Result<Frame<Bytes>, E>>),
            Flush,
        }
        loop {
            let step = poll_fn(|cx| match Pin::new(&mut *body).poll_frame(cx) {
                Poll::Ready(frame) => Poll::Ready(Step::Frame(frame)),
                Poll::Pending if !wbuf.is_empty() => Poll::Ready(Step::Flush),
                Poll::Pending => Poll::Pending,
            })
            .await;
            let data = match step {
                Step::Flush => {
                    io.write_all(wbuf).await?;
                    wbuf.clear();
                    continue;
                }
                Step::Frame(None) => break,
                Step::Frame(Some(frame)) => match frame.map_err(Into::into)?.into_data() {
                    Ok(data) => data,
                    // Trailers: hyper sends none to a request that did not offer `TE`.
                    Err(_) => continue,
                },
            };
            if data.is_empty() {
                continue;
            }
            let n = data.len() as u64;
            if chunked {
                let _ = write!(wbuf, "{:X}\r\n", data.len());
            } else {
                if n > left {
                    return Err("the response body is longer than its content-length".into());
                }
                left -= n;
            }
            if data.len() <= COPY_LIMIT {
                wbuf.extend_from_slice(&data);
            } else {
                io.write_all(wbuf).await?;
                wbuf.clear();
                io.write_all(&data).await?;
            }
            if chunked {
                wbuf.extend_from_slice(b"\r\n");
            }
            if body.is_end_stream() {
                break;
            }
        }
        match encoded.framing {
            Framing::Chunked => wbuf.extend_from_slice(b"0\r\n\r\n"),
            Framing::Length(_) if left != 0 => {
                io.write_all(wbuf).await?;
                return Err("the response body ended before its content-length".into());
            }
            _ => {}
        }
        io.write_all(wbuf).await?;
        wbuf.clear();
        Ok(!encoded.last)
    }
}

/// The `date` header's value, formatted once a second per thread (as hyper caches it).
pub(crate) mod date {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};

    thread_local! {
        static CACHED: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }

    pub fn extend(dst: &mut Vec<u8>) {
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        CACHED.with(|c| {
            let mut c = c.borrow_mut();
            if c.0 != secs || c.1.is_empty() {
                *c = (secs, httpdate::fmt_http_date(now));
            }
            dst.extend_from_slice(c.1.as_bytes());
        });
    }

    /// The value as a header value (HTTP/2 responses without one of their own).
    pub fn value() -> http::HeaderValue {
        let mut buf = Vec::with_capacity(29);
        extend(&mut buf);
        http::HeaderValue::from_maybe_shared(bytes::Bytes::from(buf))
            .unwrap_or_else(|_| http::HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"))
    }
}

#[cfg(test)]
mod tests;

/// A request head as the fast path hands it to the handler, in plain types (for the
/// differential fuzzer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedRequest {
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub keep_alive: bool,
}

/// Reads `bytes` as the fast path reads a connection's input: head after head while it
/// takes them. Returns the heads taken and how many bytes they used; the rest (from the
/// first head it leaves to hyper, or an incomplete one) is hyper's.
pub fn fuzz_parse_heads(bytes: &[u8], max_head: usize) -> (Vec<ParsedRequest>, usize) {
    let mut buf = BytesMut::from(bytes);
    let mut heads = Vec::new();
    while let Ok(Some(head)) = parse(&mut buf, max_head) {
        heads.push(ParsedRequest {
            method: head.request.method().to_string(),
            uri: head.request.uri().to_string(),
            headers: head
                .request
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
                .collect(),
            keep_alive: head.keep_alive,
        });
    }
    (heads, bytes.len() - buf.len())
}
