//! A shadow tracker of HTTP/1 message framing on the client's read side. hyper resolves
//! `Content-Length` + `Transfer-Encoding` by silently dropping `Content-Length`, so
//! the request handler could never see the conflict; this tracker sees the raw head
//! first, marks such a request as bad (the handler answers 400 and closes), and notes
//! when a head started arriving, for the slowloris timeout.
//!
//! It follows heads and body lengths (fixed or chunked) exactly and switches itself off
//! for good at anything it is unsure about (HTTP/2 preface, upgrades, CONNECT, parse
//! errors). Off means "no verdicts", never a wrong verdict: hyper still parses and
//! re-frames every message, so nothing ambiguous ever reaches a backend.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

/// hyper's default header count limit; the server is configured with the same value.
pub(crate) const MAX_HEADERS: usize = 100;

/// Connection facts shared between the read side, the request handler and the watchdog.
pub(crate) struct ConnState {
    /// Index of the first request head with conflicting framing; `u64::MAX`: none.
    bad_head: AtomicU64,
    /// Milliseconds after `epoch` (plus one) when the current head's first byte
    /// arrived; 0 while no head is being received.
    head_started: AtomicU64,
    /// Number of reads that returned data, for idle detection.
    reads: AtomicU64,
    /// Requests handed to the handler so far.
    served: AtomicU64,
    /// Requests whose response is not finished yet.
    active: AtomicU64,
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
            head_started: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            served: AtomicU64::new(0),
            active: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Called once per request by the handler: whether this request's head had
    /// conflicting framing.
    pub fn next_request_is_bad(&self) -> bool {
        let index = self.served.fetch_add(1, Relaxed);
        index >= self.bad_head.load(Relaxed)
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

    fn head_begins(&self) {
        if self.head_started.load(Relaxed) == 0 {
            let ms = self.epoch.elapsed().as_millis() as u64;
            self.head_started.store(ms + 1, Relaxed);
        }
    }

    fn head_ends(&self) {
        self.head_started.store(0, Relaxed);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Head,
    Body(u64),
    ChunkSize { size: u64, digits: u8, ws: bool },
    ChunkExt { size: u64 },
    ChunkSizeLf { size: u64 },
    ChunkData(u64),
    ChunkDataCr,
    ChunkDataLf,
    Trailer { line: usize },
    Off,
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
            heads: 0,
            max_head,
        }
    }

    /// Follow newly read bytes.
    pub fn feed(&mut self, mut data: &[u8], state: &ConnState) {
        while !data.is_empty() {
            data = match self.phase {
                Phase::Off => return,
                Phase::Head => self.head(data, state),
                Phase::Body(n) => {
                    let take = n.min(data.len() as u64);
                    self.phase = if take == n {
                        Phase::Head
                    } else {
                        Phase::Body(n - take)
                    };
                    &data[take as usize..]
                }
                Phase::ChunkData(n) => {
                    let take = n.min(data.len() as u64);
                    self.phase = if take == n {
                        Phase::ChunkDataCr
                    } else {
                        Phase::ChunkData(n - take)
                    };
                    &data[take as usize..]
                }
                _ => {
                    self.phase = chunk_step(self.phase, data[0]);
                    &data[1..]
                }
            };
        }
    }

    /// Scan for the end of the head; returns the bytes after it.
    fn head<'a>(&mut self, data: &'a [u8], state: &ConnState) -> &'a [u8] {
        let mut end = None;
        for (i, b) in data.iter().enumerate() {
            match b {
                b'\n' if self.line == 0 && self.seen_line => {
                    end = Some(i + 1);
                    break;
                }
                b'\n' => {
                    self.seen_line |= self.line > 0;
                    self.line = 0;
                }
                b'\r' => {}
                _ => {
                    if !self.seen_line && self.line == 0 {
                        state.head_begins();
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
            return &[];
        };
        let (head, rest) = data.split_at(end);
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
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        if !matches!(req.parse(head), Ok(httparse::Status::Complete(_))) {
            return Phase::Off;
        }
        let index = self.heads;
        self.heads += 1;
        let mut length: Option<&[u8]> = None;
        let mut conflict = false;
        let mut te: Option<&[u8]> = None;
        let mut upgrade = req.method == Some("CONNECT");
        for h in req.headers.iter() {
            let value = h.value.trim_ascii();
            if h.name.eq_ignore_ascii_case("content-length") {
                conflict |= length.is_some_and(|l| l != value);
                length = Some(value);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                te = Some(value);
            } else if h.name.eq_ignore_ascii_case("upgrade") {
                upgrade = true;
            }
        }
        if conflict || (length.is_some() && te.is_some()) {
            state.bad_head.fetch_min(index, Relaxed);
            return Phase::Off;
        }
        if upgrade {
            return Phase::Off;
        }
        match (te, length) {
            (Some(te), _) => {
                let last = te.rsplit(|b| *b == b',').next().unwrap_or(te).trim_ascii();
                if last.eq_ignore_ascii_case(b"chunked") {
                    Phase::ChunkSize {
                        size: 0,
                        digits: 0,
                        ws: false,
                    }
                } else {
                    Phase::Off
                }
            }
            (None, Some(len)) => match std::str::from_utf8(len).ok().and_then(|s| s.parse().ok()) {
                Some(0) => Phase::Head,
                Some(n) => Phase::Body(n),
                None => Phase::Off,
            },
            (None, None) => Phase::Head,
        }
    }

    fn off(&mut self, state: &ConnState) {
        self.phase = Phase::Off;
        self.buf = Vec::new();
        state.head_ends();
    }
}

/// One byte of chunked framing outside chunk data.
fn chunk_step(phase: Phase, b: u8) -> Phase {
    match phase {
        Phase::ChunkSize { size, digits, ws } => match b {
            b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' if !ws => {
                let d = u64::from((b as char).to_digit(16).unwrap_or(0));
                if digits >= 15 {
                    return Phase::Off;
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
            b';' if digits > 0 => Phase::ChunkExt { size },
            b'\r' if digits > 0 => Phase::ChunkSizeLf { size },
            _ => Phase::Off,
        },
        // A chunk extension runs to the end of the line.
        Phase::ChunkExt { size } => match b {
            b'\r' => Phase::ChunkSizeLf { size },
            b'\n' => Phase::Off,
            _ => Phase::ChunkExt { size },
        },
        Phase::ChunkSizeLf { size } => match b {
            b'\n' if size == 0 => Phase::Trailer { line: 0 },
            b'\n' => Phase::ChunkData(size),
            _ => Phase::Off,
        },
        Phase::ChunkDataCr if b == b'\r' => Phase::ChunkDataLf,
        Phase::ChunkDataLf if b == b'\n' => Phase::ChunkSize {
            size: 0,
            digits: 0,
            ws: false,
        },
        Phase::Trailer { line } => match b {
            b'\r' => Phase::Trailer { line },
            b'\n' if line == 0 => Phase::Head,
            b'\n' => Phase::Trailer { line: 0 },
            _ => Phase::Trailer { line: line + 1 },
        },
        _ => Phase::Off,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> (Sniffer, ConnState) {
        let state = ConnState::new();
        let mut s = Sniffer::new(64 * 1024);
        for c in chunks {
            s.feed(c, &state);
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
    fn duplicate_differing_lengths_are_bad_and_equal_ones_are_not() {
        let (_, state) =
            run(&[b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"]);
        assert_eq!(bad_index(&state), Some(0));
        let (s, state) =
            run(&[b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx"]);
        assert_eq!(bad_index(&state), None);
        assert_eq!(s.phase, Phase::Head);
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
        s.feed(b"\r\n", &state);
        assert!(state.head_age().is_none());
        assert_eq!(s.phase, Phase::Head);
    }
}
