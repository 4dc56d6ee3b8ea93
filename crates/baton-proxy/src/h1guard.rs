//! A shadow tracker of HTTP/1 message framing on the client's read side. hyper resolves
//! `Content-Length` + `Transfer-Encoding` by silently dropping `Content-Length` (and
//! drops an equal duplicate length), so the request handler could never see such
//! conflicts; this tracker sees the raw head first, marks a request with ambiguous
//! framing as bad (the handler answers 400 and closes), and notes when a head started
//! arriving, for the slowloris timeout.
//!
//! Bad (refused with 400, see docs/SECURITY.md): `Content-Length` together with
//! `Transfer-Encoding`; more than one `Content-Length` (even equal ones, or a list);
//! a length that is not plain digits; any `Transfer-Encoding` other than exactly one
//! `chunked`, or any in HTTP/1.0; more than one `Host`; a bare LF line ending in the
//! head; and invalid chunked framing (size not hex or over 15 digits, a chunk
//! extension over 4 KiB, a missing CRLF) when it arrives before the request is sent
//! on. Everything hyper itself refuses (obs-fold, spaces before the colon, bare CR,
//! bad lengths) gets hyper's own 400.
//!
//! A bare LF in a chunked trailer section is the one framing error hyper does not
//! refuse: its trailer reader waits for a CR that never comes, holding a half request
//! open upstream. The tracker marks that request bad (400 when it has not been sent on
//! yet) and *poisons* the connection: the socket wrapper hands hyper nothing after the
//! offending LF and then reports end of input, so hyper fails the body at once and the
//! upstream request is aborted, never completed (nor ended early by a later blank
//! line, with a request behind it the tracker never saw).
//!
//! It also rewrites one thing in place: the minor version of an HTTP/1.x request line
//! above 1 (`HTTP/1.2` .. `HTTP/1.9`) becomes `HTTP/1.1`, which RFC 9110 §2.5 says a
//! recipient must treat it as (hyper's parser refuses any minor version but 0 and 1).
//! The rewrite is one byte, the same length, in a request line the tracker is
//! following, so hyper parses exactly the bytes the tracker judged.
//!
//! It follows heads and body lengths (fixed or chunked) exactly and switches itself off
//! for good at anything it is unsure about (HTTP/2 preface, upgrades, CONNECT, parse
//! errors). Off means "no verdicts", never a wrong verdict: hyper still parses and
//! re-frames every message, so nothing ambiguous ever reaches a backend.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Instant;

/// hyper's default header count limit; the server is configured with the same value.
pub(crate) const MAX_HEADERS: usize = 100;
/// Longest chunk extension accepted on one chunk-size line. Nothing legitimate uses
/// extensions; hyper allows 16 KiB over the whole body.
const MAX_CHUNK_EXT: u16 = 4096;

/// Why a request head was refused; the text is the 400 answer's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bad {
    LengthAndChunked,
    DuplicateLength,
    InvalidLength,
    TransferEncoding,
    Http10TransferEncoding,
    DuplicateHost,
    BareLf,
    Chunked,
    TrailerBareLf,
}

impl Bad {
    const ALL: [Bad; 9] = [
        Bad::LengthAndChunked,
        Bad::DuplicateLength,
        Bad::InvalidLength,
        Bad::TransferEncoding,
        Bad::Http10TransferEncoding,
        Bad::DuplicateHost,
        Bad::BareLf,
        Bad::Chunked,
        Bad::TrailerBareLf,
    ];

    pub(crate) fn reason(self) -> &'static str {
        match self {
            Bad::LengthAndChunked => "both Content-Length and Transfer-Encoding are present",
            Bad::DuplicateLength => "more than one Content-Length",
            Bad::InvalidLength => "Content-Length is not a plain decimal number",
            Bad::TransferEncoding => "Transfer-Encoding other than a single `chunked`",
            Bad::Http10TransferEncoding => "Transfer-Encoding in an HTTP/1.0 request",
            Bad::DuplicateHost => "more than one Host header",
            Bad::BareLf => "a header line ends in LF without CR",
            Bad::Chunked => "invalid chunked body framing",
            Bad::TrailerBareLf => "a chunked trailer line ends in LF without CR",
        }
    }
}

/// Connection facts shared between the read side, the request handler and the watchdog.
pub(crate) struct ConnState {
    /// Index of the first request head with ambiguous framing; `u64::MAX`: none.
    bad_head: AtomicU64,
    /// Why that head is bad: an index into `Bad::ALL`.
    bad_reason: AtomicU8,
    /// Milliseconds after `epoch` (plus one) when the current head's first byte
    /// arrived; 0 while no head is being received.
    head_started: AtomicU64,
    /// Number of reads that returned data, for idle detection.
    reads: AtomicU64,
    /// Requests handed to the handler so far.
    served: AtomicU64,
    /// Requests whose response is not finished yet.
    active: AtomicU64,
    /// The server is shutting down: HTTP/1 responses from now on say `Connection: close`.
    draining: AtomicBool,
    /// A request on this connection was HTTP/2.
    h2: AtomicBool,
    epoch: Instant,
}

/// Marks a request in progress on its connection until dropped (with the response).
pub(crate) struct Active(Arc<ConnState>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Relaxed);
    }
}

impl ConnState {
    pub fn new() -> ConnState {
        ConnState {
            bad_head: AtomicU64::new(u64::MAX),
            bad_reason: AtomicU8::new(0),
            head_started: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            served: AtomicU64::new(0),
            active: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            h2: AtomicBool::new(false),
            epoch: Instant::now(),
        }
    }

    /// Called once per request by the handler: why this request (or one before it
    /// on the connection) has framing that must be refused, if it does.
    pub fn next_request_is_bad(&self) -> Option<&'static str> {
        let index = self.served.fetch_add(1, Relaxed);
        (index >= self.bad_head.load(Relaxed)).then(|| {
            let i = usize::from(self.bad_reason.load(Relaxed));
            Bad::ALL.get(i).map_or("ambiguous framing", |b| b.reason())
        })
    }

    /// Record that head `index` is bad; the earliest bad head wins.
    fn mark_bad(&self, index: u64, why: Bad) {
        if index < self.bad_head.fetch_min(index, Relaxed) {
            let code = Bad::ALL.iter().position(|b| *b == why).unwrap_or(0);
            self.bad_reason.store(code as u8, Relaxed);
        }
    }

    pub fn begin(self: &Arc<Self>) -> Active {
        self.active.fetch_add(1, Relaxed);
        Active(self.clone())
    }

    /// Whether a request on this connection is still being answered.
    pub fn busy(&self) -> bool {
        self.active.load(Relaxed) > 0
    }

    pub fn reads(&self) -> u64 {
        self.reads.load(Relaxed)
    }

    /// From now on, every HTTP/1 response on this connection says `Connection: close`.
    pub fn start_draining(&self) {
        self.draining.store(true, SeqCst);
    }

    pub fn draining(&self) -> bool {
        self.draining.load(SeqCst)
    }

    pub fn note_h2(&self) {
        self.h2.store(true, Relaxed);
    }

    pub fn is_h2(&self) -> bool {
        self.h2.load(Relaxed)
    }

    /// How long the head now arriving has been arriving, if one is.
    pub fn head_age(&self) -> Option<std::time::Duration> {
        match self.head_started.load(Relaxed) {
            0 => None,
            t => Some(
                self.epoch
                    .elapsed()
                    .saturating_sub(std::time::Duration::from_millis(t - 1)),
            ),
        }
    }

    pub fn note_read(&self) {
        self.reads.fetch_add(1, Relaxed);
    }

    /// A head's first byte has arrived (the slow-head clock starts, if it is not running).
    pub(crate) fn head_begins(&self) {
        if self.head_started.load(Relaxed) == 0 {
            let ms = self.epoch.elapsed().as_millis() as u64;
            self.head_started.store(ms + 1, Relaxed);
        }
    }

    /// The head is complete (the slow-head clock stops).
    pub(crate) fn head_ends(&self) {
        self.head_started.store(0, Relaxed);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Head,
    Body(u64),
    ChunkSize {
        size: u64,
        digits: u8,
        ws: bool,
    },
    ChunkExt {
        size: u64,
        len: u16,
    },
    ChunkSizeLf {
        size: u64,
    },
    ChunkData(u64),
    ChunkDataCr,
    ChunkDataLf,
    Trailer {
        line: usize,
        cr: bool,
    },
    Off,
    /// Chunked framing that hyper will refuse too; the body's request is bad.
    BadChunk,
    /// A trailer section hyper would wait on forever; the body's request is bad and
    /// the connection's input ends here.
    Poisoned,
}

/// The framing tracker of one connection.
pub(crate) struct Sniffer {
    phase: Phase,
    /// Bytes of a head that spans reads.
    buf: Vec<u8>,
    /// End-of-head scan state: length of the current line, and whether a non-empty
    /// line was seen (leading empty lines are allowed before a request line).
    line: usize,
    seen_line: bool,
    /// The request line's last bytes so far (big-endian, newest lowest), to find
    /// ` HTTP/1.` followed by a minor version digit.
    tail: u64,
    heads: u64,
    max_head: usize,
}

impl Sniffer {
    pub fn new(max_head: usize) -> Sniffer {
        Sniffer {
            phase: Phase::Head,
            buf: Vec::new(),
            line: 0,
            seen_line: false,
            tail: 0,
            heads: 0,
            max_head,
        }
    }

    /// `n` heads were judged by the reader above while the tracker was paused (see
    /// `conn.rs`); the tracker is at a head boundary after them.
    pub fn skip_heads(&mut self, n: u64) {
        self.heads += n;
    }

    /// Whether the connection's input must end: hyper would hang on what was read.
    pub fn poisoned(&self) -> bool {
        self.phase == Phase::Poisoned
    }

    /// Follow newly read bytes (rewriting an `HTTP/1.2`+ request line's version).
    /// Returns how many of them may be handed on: all, unless they poison the
    /// connection, and then none after the byte that did, so hyper never interprets
    /// what follows (as more trailer lines, or as a request the tracker did not see).
    pub fn feed(&mut self, mut data: &mut [u8], state: &ConnState) -> usize {
        let total = data.len();
        while !data.is_empty() {
            data = match self.phase {
                Phase::Off => return total,
                Phase::Poisoned => return 0,
                Phase::Head => self.head(data, state),
                Phase::Body(n) => {
                    let take = n.min(data.len() as u64);
                    self.phase = if take == n {
                        Phase::Head
                    } else {
                        Phase::Body(n - take)
                    };
                    &mut data[take as usize..]
                }
                Phase::ChunkData(n) => {
                    let take = n.min(data.len() as u64);
                    self.phase = if take == n {
                        Phase::ChunkDataCr
                    } else {
                        Phase::ChunkData(n - take)
                    };
                    &mut data[take as usize..]
                }
                _ => {
                    self.phase = chunk_step(self.phase, data[0]);
                    // The body belongs to the last head parsed.
                    let body_of = self.heads.saturating_sub(1);
                    match self.phase {
                        Phase::BadChunk => {
                            state.mark_bad(body_of, Bad::Chunked);
                            self.off(state);
                            return total;
                        }
                        Phase::Poisoned => {
                            state.mark_bad(body_of, Bad::TrailerBareLf);
                            self.buf = Vec::new();
                            state.head_ends();
                            return total - data.len() + 1;
                        }
                        _ => {}
                    }
                    &mut data[1..]
                }
            };
        }
        total
    }

    /// Scan for the end of the head; returns the bytes after it.
    fn head<'a>(&mut self, data: &'a mut [u8], state: &ConnState) -> &'a mut [u8] {
        let mut end = None;
        for (i, b) in data.iter_mut().enumerate() {
            match *b {
                b'\n' if self.line == 0 && self.seen_line => {
                    end = Some(i + 1);
                    break;
                }
                b'\n' => {
                    self.seen_line |= self.line > 0;
                    self.line = 0;
                }
                b'\r' => self.tail = 0,
                _ => {
                    if !self.seen_line {
                        if self.line == 0 {
                            state.head_begins();
                            self.tail = 0;
                        }
                        self.request_line_byte(b);
                    }
                    self.line += 1;
                }
            }
        }
        let Some(end) = end else {
            self.buf.extend_from_slice(data);
            if self.buf.len() > self.max_head {
                self.off(state);
            }
            return &mut [];
        };
        let (head, rest) = data.split_at_mut(end);
        let head = &*head;
        let phase = if self.buf.is_empty() {
            self.parse(head, state)
        } else {
            let mut buf = std::mem::take(&mut self.buf);
            buf.extend_from_slice(head);
            let phase = self.parse(&buf, state);
            buf.clear();
            self.buf = buf;
            phase
        };
        self.line = 0;
        self.seen_line = false;
        state.head_ends();
        self.phase = phase;
        if phase == Phase::Off {
            self.off(state);
        }
        rest
    }

    /// Decide the framing of one complete head; records a bad head in `state`.
    fn parse(&mut self, head: &[u8], state: &ConnState) -> Phase {
        let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        if !matches!(
            req.parse_with_uninit_headers(head, &mut headers),
            Ok(httparse::Status::Complete(_))
        ) {
            return Phase::Off;
        }
        let index = self.heads;
        self.heads += 1;
        match framing(&req, head) {
            Err(why) => {
                state.mark_bad(index, why);
                Phase::Off
            }
            Ok(_) if req.method == Some("CONNECT") => Phase::Off,
            Ok(Framing::Upgrade) => Phase::Off,
            Ok(Framing::Chunked) => Phase::ChunkSize {
                size: 0,
                digits: 0,
                ws: false,
            },
            Ok(Framing::Length(0)) => Phase::Head,
            Ok(Framing::Length(n)) => Phase::Body(n),
        }
    }

    /// Follow one byte of a request line; a minor version above 1 right after
    /// ` HTTP/1.` becomes `1`. Anything after the digit but the line's end makes the
    /// line invalid for hyper with or without the rewrite.
    fn request_line_byte(&mut self, b: &mut u8) {
        const VERSION_PREFIX: u64 = u64::from_be_bytes(*b" HTTP/1.");
        if self.tail == VERSION_PREFIX && (b'2'..=b'9').contains(b) {
            *b = b'1';
        }
        self.tail = (self.tail << 8) | u64::from(*b);
    }

    fn off(&mut self, state: &ConnState) {
        self.phase = Phase::Off;
        self.buf = Vec::new();
        state.head_ends();
    }
}

/// How a head says its body is framed.
enum Framing {
    Length(u64),
    Chunked,
    /// A protocol switch: the tracker stops following.
    Upgrade,
}

/// The framing of a parsed head, or why it is ambiguous.
fn framing(req: &httparse::Request<'_, '_>, raw: &[u8]) -> Result<Framing, Bad> {
    let mut length: Option<&[u8]> = None;
    let mut te_count = 0usize;
    let mut chunked = false;
    let mut hosts = 0;
    let mut upgrade = false;
    for h in req.headers.iter() {
        let value = h.value.trim_ascii();
        if h.name.eq_ignore_ascii_case("content-length") {
            if length.is_some() {
                return Err(Bad::DuplicateLength);
            }
            if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
                return Err(Bad::InvalidLength);
            }
            length = Some(value);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            for coding in value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                te_count += 1;
                chunked = coding.eq_ignore_ascii_case(b"chunked");
            }
        } else if h.name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        }
    }
    if te_count > 0 && req.version == Some(0) {
        return Err(Bad::Http10TransferEncoding);
    }
    if te_count > 0 && length.is_some() {
        return Err(Bad::LengthAndChunked);
    }
    if te_count > 1 || (te_count == 1 && !chunked) {
        return Err(Bad::TransferEncoding);
    }
    if hosts > 1 {
        return Err(Bad::DuplicateHost);
    }
    if raw
        .iter()
        .enumerate()
        .any(|(i, b)| *b == b'\n' && (i == 0 || raw[i - 1] != b'\r'))
    {
        return Err(Bad::BareLf);
    }
    if upgrade {
        return Ok(Framing::Upgrade);
    }
    if chunked {
        return Ok(Framing::Chunked);
    }
    match length {
        // Digits only, but maybe more than fit: hyper answers that with its own 400.
        Some(len) => std::str::from_utf8(len)
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Framing::Length)
            .ok_or(Bad::InvalidLength),
        None => Ok(Framing::Length(0)),
    }
}

/// One byte of chunked framing outside chunk data.
fn chunk_step(phase: Phase, b: u8) -> Phase {
    match phase {
        Phase::ChunkSize { size, digits, ws } => match b {
            b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' if !ws => {
                let d = u64::from((b as char).to_digit(16).unwrap_or(0));
                if digits >= 15 {
                    return Phase::BadChunk;
                }
                Phase::ChunkSize {
                    size: size * 16 + d,
                    digits: digits + 1,
                    ws,
                }
            }
            b' ' | b'\t' if digits > 0 => Phase::ChunkSize {
                size,
                digits,
                ws: true,
            },
            b';' if digits > 0 => Phase::ChunkExt { size, len: 0 },
            b'\r' if digits > 0 => Phase::ChunkSizeLf { size },
            _ => Phase::BadChunk,
        },
        // A chunk extension runs to the end of the line.
        Phase::ChunkExt { size, len } => match b {
            b'\r' => Phase::ChunkSizeLf { size },
            b'\n' => Phase::BadChunk,
            _ if len >= MAX_CHUNK_EXT => Phase::BadChunk,
            _ => Phase::ChunkExt { size, len: len + 1 },
        },
        Phase::ChunkSizeLf { size } => match b {
            b'\n' if size == 0 => Phase::Trailer { line: 0, cr: false },
            b'\n' => Phase::ChunkData(size),
            _ => Phase::BadChunk,
        },
        Phase::ChunkDataCr if b == b'\r' => Phase::ChunkDataLf,
        Phase::ChunkDataLf if b == b'\n' => Phase::ChunkSize {
            size: 0,
            digits: 0,
            ws: false,
        },
        // hyper reads a trailer line up to CR LF; a LF alone is a line byte to it, so
        // it would wait for the section's end for ever. A CR not followed by LF it
        // refuses itself.
        Phase::Trailer { line, cr } => match b {
            b'\n' if !cr => Phase::Poisoned,
            b'\n' if line == 0 => Phase::Head,
            b'\n' => Phase::Trailer { line: 0, cr: false },
            _ if cr => Phase::BadChunk,
            b'\r' => Phase::Trailer { line, cr: true },
            _ => Phase::Trailer {
                line: line + 1,
                cr: false,
            },
        },
        Phase::ChunkDataCr | Phase::ChunkDataLf => Phase::BadChunk,
        _ => Phase::Off,
    }
}

/// What the tracker concluded about a byte stream, for fuzzing.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SniffVerdict {
    /// Complete heads parsed.
    pub heads: u64,
    /// Index of the first head with conflicting framing.
    pub bad_head: Option<u64>,
    /// Whether the tracker switched itself off.
    pub off: bool,
    /// Whether the connection's input was ended (a trailer hyper would hang on).
    pub poisoned: bool,
    /// Whether a head is still arriving (the slowloris clock runs).
    pub head_pending: bool,
    /// The bytes as hyper would read them: request-line versions rewritten, and
    /// nothing after the byte that poisoned the connection.
    pub passed: Vec<u8>,
}

/// Fuzzing entry point, not an API: feed `chunks` in order, as successive socket reads,
/// the way the socket wrapper does (cut after the poisoning byte, then no more input).
#[doc(hidden)]
pub fn fuzz_sniff<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> SniffVerdict {
    let state = ConnState::new();
    let mut sniffer = Sniffer::new(1 << 20);
    let mut passed = Vec::new();
    for chunk in chunks {
        if sniffer.poisoned() {
            break;
        }
        let at = passed.len();
        passed.extend_from_slice(chunk);
        let kept = sniffer.feed(&mut passed[at..], &state);
        passed.truncate(at + kept);
    }
    SniffVerdict {
        heads: sniffer.heads,
        bad_head: match state.bad_head.load(Relaxed) {
            u64::MAX => None,
            i => Some(i),
        },
        off: sniffer.phase == Phase::Off,
        poisoned: sniffer.poisoned(),
        head_pending: state.head_age().is_some(),
        passed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> (Sniffer, ConnState) {
        let state = ConnState::new();
        let mut s = Sniffer::new(64 * 1024);
        for c in chunks {
            s.feed(&mut c.to_vec(), &state);
        }
        (s, state)
    }

    fn bad_index(state: &ConnState) -> Option<u64> {
        match state.bad_head.load(Relaxed) {
            u64::MAX => None,
            i => Some(i),
        }
    }

    #[test]
    fn follows_fixed_and_chunked_bodies_across_reads_and_pipelining() {
        let stream: &[u8] = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
            POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n\
            GET /c HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        // Byte by byte and all at once must agree.
        let singles: Vec<&[u8]> = stream.chunks(1).collect();
        for chunks in [vec![stream], singles] {
            let (s, state) = run(&chunks);
            assert_eq!(bad_index(&state), Some(2));
            assert_eq!(s.heads, 3);
            assert_eq!(s.phase, Phase::Off);
            assert!(state.head_age().is_none());
        }
    }

    #[test]
    fn body_bytes_that_look_like_heads_are_not_parsed() {
        let body = b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let head = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len());
        let (s, state) = run(&[head.as_bytes(), body, b"GET /next HTTP/1.1\r\n\r\n"]);
        assert_eq!(bad_index(&state), None);
        assert_eq!(s.heads, 2);
        assert_eq!(s.phase, Phase::Head);
    }

    #[test]
    fn any_second_length_or_odd_length_is_bad() {
        for cl in [
            "Content-Length: 1\r\nContent-Length: 2",
            "Content-Length: 1\r\nContent-Length: 1",
            "Content-Length: 1, 1",
            "Content-Length: ",
            "Content-Length: +1",
            "Content-Length: 0x1",
            "Content-Length: 99999999999999999999999",
        ] {
            let head = format!("POST / HTTP/1.1\r\n{cl}\r\n\r\nx");
            let (_, state) = run(&[head.as_bytes()]);
            assert_eq!(bad_index(&state), Some(0), "{cl}");
        }
        let (s, state) = run(&[b"POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx"]);
        assert_eq!(bad_index(&state), None);
        assert_eq!(s.phase, Phase::Head);
    }

    #[test]
    fn transfer_codings_other_than_one_chunked_are_bad() {
        for te in [
            "Transfer-Encoding: chunked, identity",
            "Transfer-Encoding: identity",
            "Transfer-Encoding: gzip, chunked",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
            "Transfer-Encoding: ",
        ] {
            let head = format!("POST / HTTP/1.1\r\n{te}\r\n\r\n");
            let (_, state) = run(&[head.as_bytes()]);
            assert_eq!(bad_index(&state), Some(0), "{te}");
        }
        let (_, state) = run(&[b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"]);
        assert_eq!(
            state.next_request_is_bad(),
            Some(Bad::Http10TransferEncoding.reason())
        );
        let (s, state) = run(&[b"POST / HTTP/1.1\r\nTransfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\n"]);
        assert_eq!(bad_index(&state), None);
        assert_eq!(s.phase, Phase::Head);
    }

    #[test]
    fn bare_lf_and_two_hosts_are_bad() {
        let (_, state) = run(&[b"GET / HTTP/1.1\nHost: x\n\n"]);
        assert_eq!(state.next_request_is_bad(), Some(Bad::BareLf.reason()));
        let (_, state) = run(&[b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"]);
        assert_eq!(
            state.next_request_is_bad(),
            Some(Bad::DuplicateHost.reason())
        );
    }

    #[test]
    fn invalid_chunk_framing_marks_its_request_bad() {
        for body in [
            &b"zz\r\n"[..],
            b"-1\r\n",
            b"1ffffffffffffffff\r\n",
            b"5 5\r\nhello\r\n",
            b"5\nhello\r\n",
            b"5;a\nhello\r\n",
            b"5\r\nhelloX0\r\n\r\n",
        ] {
            let (s, state) = run(&[
                b"GET /ok HTTP/1.1\r\n\r\n",
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                body,
            ]);
            assert_eq!(
                bad_index(&state),
                Some(1),
                "{}",
                String::from_utf8_lossy(body)
            );
            assert_eq!(s.phase, Phase::Off);
        }
        let long_ext = format!("5;{}\r\nhello\r\n", "e".repeat(5000));
        let (_, state) = run(&[
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            long_ext.as_bytes(),
        ]);
        assert_eq!(bad_index(&state), Some(0));
    }

    #[test]
    fn switches_off_for_http2_upgrades_and_garbage() {
        for input in [
            &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..],
            b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        ] {
            let (s, state) = run(&[input]);
            assert_eq!(s.phase, Phase::Off, "{:?}", String::from_utf8_lossy(input));
            assert!(state.head_age().is_none());
        }
    }

    #[test]
    fn a_partial_head_is_timed_until_it_completes() {
        let (mut s, state) = run(&[b"\r\nGET / HTTP/1.1\r\nHost: x\r\n"]);
        assert!(state.head_age().is_some());
        s.feed(&mut b"\r\n".to_vec(), &state);
        assert!(state.head_age().is_none());
        assert_eq!(s.phase, Phase::Head);
    }

    /// Bytes of `trailer` up to and including its first bare LF.
    fn cut(trailer: &[u8]) -> usize {
        (0..trailer.len())
            .find(|&i| trailer[i] == b'\n' && (i == 0 || trailer[i - 1] != b'\r'))
            .map_or(trailer.len(), |i| i + 1)
    }

    #[test]
    fn a_bare_lf_in_the_trailer_section_poisons_the_connection() {
        for trailer in [&b"0\r\nX-T: 1\n\r\n"[..], b"0\r\n\n", b"0\r\nX-T: 1\r\n\n"] {
            let stream = [
                &b"GET /ok HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"[..],
                trailer,
            ]
            .concat();
            let singles: Vec<&[u8]> = stream.chunks(1).collect();
            for chunks in [vec![&stream[..]], singles] {
                let (s, state) = run(&chunks);
                assert!(s.poisoned(), "{:?}", String::from_utf8_lossy(trailer));
                assert_eq!(bad_index(&state), Some(1));
                assert!(state.head_age().is_none());
            }
            // Nothing after the offending LF is handed on, however it was read.
            let smuggled = [&stream[..], b"\r\nGET /smuggled HTTP/1.1\r\n\r\n"].concat();
            for size in [smuggled.len(), 3, 1] {
                let verdict = fuzz_sniff(smuggled.chunks(size));
                assert!(verdict.poisoned);
                assert_eq!(
                    verdict.passed,
                    stream[..stream.len() - trailer.len() + cut(trailer)]
                );
            }
        }
        // A CR without its LF is hyper's own error; a proper trailer is fine.
        let (s, state) =
            run(&[b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\rY\r\n\r\n"]);
        assert_eq!((s.phase, bad_index(&state)), (Phase::Off, Some(0)));
        let (s, state) = run(&[
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\r\nY: 2\r\n\r\n",
        ]);
        assert_eq!((s.phase, bad_index(&state)), (Phase::Head, None));
    }

    #[test]
    fn minor_versions_above_one_become_http_1_1_in_request_lines_only() {
        let stream: &[u8] =
            b"GET / HTTP/1.2\r\nX-A: GET / HTTP/1.3\r\nContent-Length: 14\r\n\r\nGET / HTTP/1.4\
            \r\nGET /b HTTP/1.9\r\n\r\nGET /c HTTP/1.0\r\n\r\nGET /d HTTP/1.23\r\n\r\n";
        let want: &[u8] =
            b"GET / HTTP/1.1\r\nX-A: GET / HTTP/1.3\r\nContent-Length: 14\r\n\r\nGET / HTTP/1.4\
            \r\nGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.0\r\n\r\nGET /d HTTP/1.13\r\n\r\n";
        for size in [stream.len(), 7, 1] {
            let verdict = fuzz_sniff(stream.chunks(size));
            assert_eq!(
                String::from_utf8_lossy(&verdict.passed),
                String::from_utf8_lossy(want),
                "reads of {size}"
            );
            // The last line is invalid with or without the rewrite: hyper refuses it.
            assert_eq!((verdict.heads, verdict.off), (3, true), "reads of {size}");
        }
    }
}
