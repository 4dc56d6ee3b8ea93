//! Reading an upstream's HTTP/1 response: the head (httparse, then the framing of the
//! body as RFC 9112 §6.3 decides it) and the body decoder (Content-Length, chunked with
//! trailers, until close). Pure functions over buffers, so the differential fuzzer
//! drives them with no socket; `mod.rs` and `body.rs` feed them from the connection.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Version};
use std::mem::MaybeUninit;

/// Header fields one response head (or trailer section) may have.
pub(crate) const MAX_HEADERS: usize = 100;
/// The longest response head accepted (the same bound as hyper's client read buffer).
pub(crate) const MAX_HEAD_BYTES: usize = 8192 + 4096 * 100;
/// The longest chunk-extension text of one chunk, and of a trailer section.
const MAX_EXTENSION_BYTES: usize = 16 * 1024;
const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// How the body after the head ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body: a `HEAD` request, 1xx, 204, 304.
    Empty,
    Length(u64),
    Chunked,
    /// Until the upstream closes the connection.
    Eof,
}

/// A parsed response head.
#[derive(Debug)]
pub(crate) struct Head {
    pub status: StatusCode,
    pub version: Version,
    pub reason: Option<Bytes>,
    /// The header fields as received; a `HeaderMap` is built only where one is needed.
    pub fields: Fields,
    pub framing: Framing,
    /// Whether the connection may carry another request after this response.
    pub keep_alive: bool,
}

/// Where one header field's name and value are in a head's bytes.
#[derive(Debug, Clone, Copy)]
struct Span {
    name: u32,
    name_len: u32,
    value: u32,
    value_len: u32,
}

/// A response head's header fields as the upstream sent them: a copy of the head's
/// bytes and where each field is in it, in order. Names keep the upstream's case;
/// `HeaderMap` would hold them lower-case (the encoder writes them so). Every name and
/// value was checked as `HeaderName` and `HeaderValue` check them, so `to_map` keeps
/// every field.
#[derive(Debug, Clone)]
pub(crate) struct Fields {
    bytes: Bytes,
    spans: Vec<Span>,
}

/// Fields as the client side's HTTP/1.1 encoder would write them one by one, already
/// so in the upstream's head (see `Fields::as_written`).
pub(crate) struct Written<'a> {
    /// Every field line, `name: value` CRLF each.
    pub lines: &'a [u8],
    /// The value of the one `content-length` field, if there is one.
    pub length: Option<&'a [u8]>,
    /// Whether there is a `date` field.
    pub date: bool,
}

/// Whether a field name has no upper-case letter and no byte of 0x80 or above, eight
/// bytes at a time. A byte `b` below 0x80 is in `A..=Z` when `b + 0x3F` reaches 0x80 and
/// `b + 0x25` does not; neither sum carries into the next byte, and a byte of 0x80 or
/// above (which no token has) answers `false` by its own high bit.
pub(super) fn lower_case(name: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let flags = |w: u64| w | (w.wrapping_add(0x3F * ONES) & !w.wrapping_add(0x25 * ONES));
    let (words, rest) = name.as_chunks::<8>();
    let mut seen = words
        .iter()
        .fold(0, |seen, word| seen | flags(u64::from_le_bytes(*word)));
    seen |= flags(rest.iter().rev().fold(0, |w, &b| w << 8 | u64::from(b)));
    seen & HIGH == 0
}

/// A head's fields where they were read: what `framing` reads before the head's bytes
/// are taken from the connection's buffer.
#[derive(Clone, Copy)]
struct FieldsRef<'a> {
    bytes: &'a [u8],
    spans: &'a [Span],
}

impl<'a> FieldsRef<'a> {
    fn name(self, span: &Span) -> &'a [u8] {
        &self.bytes[span.name as usize..(span.name + span.name_len) as usize]
    }

    fn value(self, span: &Span) -> &'a [u8] {
        &self.bytes[span.value as usize..(span.value + span.value_len) as usize]
    }

    fn iter(self) -> impl DoubleEndedIterator<Item = (&'a [u8], &'a [u8])> {
        self.spans
            .iter()
            .map(move |s| (self.name(s), self.value(s)))
    }

    /// The values of the fields named `name` (lower-case), in order.
    fn get_all(self, name: &'a str) -> impl DoubleEndedIterator<Item = &'a [u8]> {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }
}

impl Fields {
    fn view(&self) -> FieldsRef<'_> {
        FieldsRef {
            bytes: &self.bytes,
            spans: &self.spans,
        }
    }

    fn name(&self, span: &Span) -> &[u8] {
        self.view().name(span)
    }

    fn value(&self, span: &Span) -> &[u8] {
        self.view().value(span)
    }

    /// Every field as (name as received, value), in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&[u8], &[u8])> + '_ {
        self.view().iter()
    }

    /// How many bytes the fields take as received (names, values and what separates
    /// them): room enough for them encoded as HTTP/2 literals.
    pub fn head_len(&self) -> usize {
        self.bytes.len()
    }

    /// The field lines as they are in the head, when that is how the client side's
    /// HTTP/1.1 encoder writes them: names lower-case, each line `name: value` CRLF,
    /// one after the other in the fields' order (none removed from between them), at
    /// most one `content-length`. Most upstreams write their heads so; the encoder then
    /// copies the lines at once.
    pub fn as_written(&self) -> Option<Written<'_>> {
        let start = self.spans.first()?.name as usize;
        let mut at = start;
        let mut length = None;
        let mut date = false;
        for s in &self.spans {
            let name_end = (s.name + s.name_len) as usize;
            let value_end = (s.value + s.value_len) as usize;
            if s.name as usize != at
                || s.value as usize != name_end + 2
                || self.bytes.get(name_end..name_end + 2) != Some(b": ")
                || self.bytes.get(value_end..value_end + 2) != Some(b"\r\n")
            {
                return None;
            }
            let name = self.name(s);
            if !lower_case(name) {
                return None;
            }
            if name == b"content-length" && length.replace(self.value(s)).is_some() {
                return None;
            }
            date |= name == b"date";
            at = value_end + 2;
        }
        Some(Written {
            lines: &self.bytes[start..at],
            length,
            date,
        })
    }

    /// The fields as the `HeaderMap` that appending them one by one makes.
    pub fn to_map(&self) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.spans.len() + crate::headers::ROOM);
        for s in &self.spans {
            let name = HeaderName::from_bytes(self.name(s));
            let start = s.value as usize;
            let value = HeaderValue::from_maybe_shared(
                self.bytes.slice(start..start + s.value_len as usize),
            );
            // Both were checked when the head was parsed.
            if let (Ok(name), Ok(value)) = (name, value) {
                map.append(name, value);
            }
        }
        map
    }

    /// Removes what `headers::strip_hop_by_hop(.., false)` removes from `to_map()`'s
    /// map, leaving the rest in the order that map then iterates in: `HeaderMap`
    /// removes an entry by moving its last one into its place, and so does this.
    /// `false` (nothing changed) when a name repeats: the map groups repeated names, so
    /// only the map gives that order.
    pub fn strip_hop_by_hop(&mut self) -> bool {
        let repeats = self.spans.iter().enumerate().any(|(i, a)| {
            self.spans[..i].iter().any(|b| {
                a.name_len == b.name_len && self.name(a).eq_ignore_ascii_case(self.name(b))
            })
        });
        if repeats {
            return false;
        }
        let mut named: Vec<(u32, u32)> = Vec::new();
        for s in &self.spans {
            if self.name(s).eq_ignore_ascii_case(b"connection") {
                let base = s.value as usize;
                let value = self.value(s);
                let mut at = 0;
                for token in value.split(|b| *b == b',') {
                    let start = at + (token.len() - token.trim_ascii_start().len());
                    at += token.len() + 1;
                    let token = token.trim_ascii();
                    if token.is_empty()
                        || token.eq_ignore_ascii_case(b"close")
                        || token.eq_ignore_ascii_case(b"keep-alive")
                        || token.eq_ignore_ascii_case(b"host")
                        || token.eq_ignore_ascii_case(b"content-length")
                    {
                        continue;
                    }
                    named.push(((base + start) as u32, token.len() as u32));
                }
            }
        }
        for (at, len) in named {
            let token = &self.bytes[at as usize..(at + len) as usize];
            swap_remove(&self.bytes, &mut self.spans, token);
        }
        const HOP_BY_HOP: [&[u8]; 10] = [
            b"http2-settings",
            b"connection",
            b"keep-alive",
            b"proxy-connection",
            b"te",
            b"trailer",
            b"transfer-encoding",
            b"upgrade",
            b"proxy-authorization",
            b"proxy-authenticate",
        ];
        let any = self.spans.iter().any(|s| {
            HOP_BY_HOP
                .iter()
                .any(|h| self.name(s).eq_ignore_ascii_case(h))
        });
        if any {
            for name in HOP_BY_HOP {
                swap_remove(&self.bytes, &mut self.spans, name);
            }
        }
        true
    }
}

/// Removes the field named `name` (any case) from `spans` (into `bytes`) as
/// `HeaderMap::remove` removes an entry: the last field takes its place.
fn swap_remove(bytes: &[u8], spans: &mut Vec<Span>, name: &[u8]) {
    let found = spans.iter().position(|s| {
        let at = s.name as usize;
        s.name_len as usize == name.len() && bytes[at..at + name.len()].eq_ignore_ascii_case(name)
    });
    if let Some(i) = found {
        spans.swap_remove(i);
    }
}

/// Whether `name` is a header name `HeaderName::from_bytes` takes: 1 to 65,535 token
/// characters (RFC 9110 §5.6.2).
fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= 65_535
        && name.iter().all(|&b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// Whether `value` is a header value `HeaderValue` takes: no control byte but tab.
fn valid_value(value: &[u8]) -> bool {
    let mut bad = false;
    for &b in value {
        bad |= !(b >= 32 && b != 127 || b == b'\t');
    }
    !bad
}

/// Why a response (head or body) cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Invalid {
    #[error("malformed response head: {0}")]
    Head(&'static str),
    #[error("response head larger than {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    #[error("invalid Content-Length in the response")]
    ContentLength,
    #[error("malformed chunked body: {0}")]
    Chunked(&'static str),
    #[error("connection closed before the response body ended")]
    Cut,
}

/// Parses one response head at the start of `buf`: `Ok(None)` while it is incomplete,
/// else the head and how many bytes it took. `head_request`: the request was `HEAD`, so
/// the response has no body whatever its headers say.
#[cfg(test)]
pub(crate) fn parse_head(buf: &[u8], head_request: bool) -> Result<Option<(Head, usize)>, Invalid> {
    let Some(scanned) = scan_head(buf, head_request)? else {
        return Ok(None);
    };
    let len = scanned.len;
    Ok(Some((
        scanned.into_head(Bytes::copy_from_slice(&buf[..len])),
        len,
    )))
}

/// `parse_head` on a connection's buffer: the head's bytes are split off `buf` (not
/// copied) and the fields are slices of them; `buf` keeps what follows (the body).
/// Unless it is `Ok(Some)`, `buf` is as it was.
///
/// Not inlined: its 3.2 KB of httparse field slots would become part of the stack
/// frame of the request's future (see the text of `forward.rs`).
#[inline(never)]
pub(crate) fn take_head(buf: &mut BytesMut, head_request: bool) -> Result<Option<Head>, Invalid> {
    let Some(scanned) = scan_head(buf, head_request)? else {
        return Ok(None);
    };
    let bytes = buf.split_to(scanned.len).freeze();
    Ok(Some(scanned.into_head(bytes)))
}

/// A response head read where it arrived: everything but its bytes.
struct Scanned {
    len: usize,
    status: StatusCode,
    version: Version,
    /// Where a reason phrase other than the status's own is.
    reason: Option<(usize, usize)>,
    spans: Vec<Span>,
    framing: Framing,
    keep_alive: bool,
}

impl Scanned {
    /// The head, with `bytes` (the head's own, from its first byte) holding its fields.
    fn into_head(self, bytes: Bytes) -> Head {
        Head {
            status: self.status,
            version: self.version,
            reason: self.reason.map(|(at, len)| bytes.slice(at..at + len)),
            fields: Fields {
                bytes,
                spans: self.spans,
            },
            framing: self.framing,
            keep_alive: self.keep_alive,
        }
    }
}

fn scan_head(buf: &[u8], head_request: bool) -> Result<Option<Scanned>, Invalid> {
    // Left uninitialized: httparse writes the fields it finds (see `h1server::scan`).
    let mut fields = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut res,
        buf,
        &mut fields,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
            return Err(Invalid::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Invalid::Head("too many header fields"))
        }
        Err(_) => return Err(Invalid::Head("not an HTTP/1 response")),
    };
    if len > MAX_HEAD_BYTES {
        return Err(Invalid::HeadTooLarge);
    }
    let code = res.code.ok_or(Invalid::Head("no status"))?;
    let status = StatusCode::from_u16(code).map_err(|_| Invalid::Head("status out of range"))?;
    let version = if res.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let offset = |part: &[u8]| (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize) as u32;
    let reason = res
        .reason
        .filter(|r| Some(*r) != status.canonical_reason() && !r.is_empty())
        .map(|r| (offset(r.as_bytes()) as usize, r.len()));
    let mut spans = Vec::with_capacity(res.headers.len());
    let mut close = false;
    let mut keep_alive_token = false;
    let mut framers = Framers::default();
    for field in res.headers.iter() {
        let name = field.name.as_bytes();
        // httparse takes exactly these: its name bytes are RFC 9110's token characters
        // and its value bytes tab, visible ASCII, space and obs-text, the sets
        // `HeaderName` and `HeaderValue` take (the fuzzers run with these assertions).
        if name.len() > 65_535 {
            return Err(Invalid::Head("header name longer than 65,535 bytes"));
        }
        debug_assert!(valid_name(name), "httparse took a name HeaderName refuses");
        debug_assert!(
            valid_value(field.value),
            "httparse took a value HeaderValue refuses"
        );
        // The three names that frame the body or the connection, told apart by length
        // before any comparison.
        match name.len() {
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for token in field.value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    close |= token.eq_ignore_ascii_case(b"close");
                    keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                framers.lengths += 1;
                framers.first_length.get_or_insert(field.value);
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                framers.last_coding = Some(field.value);
            }
            _ => {}
        }
        spans.push(Span {
            name: offset(name),
            name_len: name.len() as u32,
            // An empty value's slice need not point into the buffer.
            value: if field.value.is_empty() {
                0
            } else {
                offset(field.value)
            },
            value_len: field.value.len() as u32,
        });
    }
    let fields = FieldsRef {
        bytes: &buf[..len],
        spans: &spans,
    };
    let mut keep_alive = !close && (version == Version::HTTP_11 || keep_alive_token);
    let (framing, reuse) = framing(status, version, fields, &framers, head_request)?;
    keep_alive &= reuse;
    Ok(Some(Scanned {
        len,
        status,
        version,
        reason,
        spans,
        framing,
        keep_alive,
    }))
}

/// How the body is framed (RFC 9112 §6.3, in the order hyper's client decides it, so
/// the two read every response alike), and whether the connection may be reused after
/// it. Content-Length is read only where it frames the body: a `HEAD`, 1xx, 204 or 304
/// response, or one with Transfer-Encoding, may carry any value.
fn framing(
    status: StatusCode,
    version: Version,
    fields: FieldsRef<'_>,
    framers: &Framers<'_>,
    head_request: bool,
) -> Result<(Framing, bool), Invalid> {
    if head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok((Framing::Empty, true));
    }
    if let Some(last) = framers.last_coding {
        if version == Version::HTTP_10 {
            return Err(Invalid::Head("Transfer-Encoding in an HTTP/1.0 response"));
        }
        // A response with both may have been meant to desync: its connection is not
        // reused. The last coding of the last field decides.
        let reuse = framers.lengths == 0;
        // As `HeaderValue::to_str` reads it: visible ASCII only.
        let visible = last.iter().all(|&b| b == b'\t' || (32..127).contains(&b));
        let chunked = std::str::from_utf8(last)
            .ok()
            .filter(|_| visible)
            .and_then(|v| v.rsplit(',').next())
            .is_some_and(|coding| coding.trim().eq_ignore_ascii_case("chunked"));
        return Ok(if chunked {
            (Framing::Chunked, reuse)
        } else {
            (Framing::Eof, false)
        });
    }
    if framers.lengths == 1 {
        if let Some(value) = framers.first_length {
            return Ok((Framing::Length(parse_content_length(value)?), true));
        }
    }
    let mut length: Option<u64> = None;
    for value in fields.get_all("content-length") {
        let n = parse_content_length(value)?;
        if length.is_some_and(|l| l != n) {
            return Err(Invalid::ContentLength);
        }
        length = Some(n);
    }
    Ok(match length {
        Some(n) => (Framing::Length(n), true),
        None => (Framing::Eof, false),
    })
}

/// What a head's fields say about its body's framing, gathered in the one pass over
/// them.
#[derive(Default)]
struct Framers<'a> {
    /// The value of the last `Transfer-Encoding` field.
    last_coding: Option<&'a [u8]>,
    /// How many `Content-Length` fields, and the first one's value.
    lengths: usize,
    first_length: Option<&'a [u8]>,
}

/// The largest body length accepted (hyper's bound: two values below are its markers).
const MAX_LENGTH: u64 = u64::MAX - 2;

/// `Content-Length`: digits only; a list must repeat one value.
fn parse_content_length(value: &[u8]) -> Result<u64, Invalid> {
    let mut found: Option<u64> = None;
    for part in value.split(|&b| b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() {
            return Err(Invalid::ContentLength);
        }
        let mut n = 0u64;
        for &d in part {
            if !d.is_ascii_digit() {
                return Err(Invalid::ContentLength);
            }
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(d - b'0')))
                .ok_or(Invalid::ContentLength)?;
        }
        if n > MAX_LENGTH || found.is_some_and(|f| f != n) {
            return Err(Invalid::ContentLength);
        }
        found = Some(n);
    }
    found.ok_or(Invalid::ContentLength)
}

/// One step of the body decoder.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    Data(Bytes),
    Trailers(HeaderMap),
    /// Nothing more until more bytes arrive.
    NeedMore,
    /// The body is complete.
    Done,
}

/// Decodes a response body from a buffer the connection fills. The chunked framing is
/// read byte by byte by the rules hyper's client applies (same limits, same errors), so
/// the two accept and refuse the same bodies.
#[derive(Debug)]
pub(crate) struct Decoder {
    state: State,
    /// Chunk-extension bytes over the whole body.
    extension_bytes: usize,
    /// The trailer section as read so far, and its CRLF-ended lines.
    trailers: Option<BytesMut>,
    trailer_lines: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    Eof,
    /// Before the first digit of a chunk size.
    Start,
    /// Chunk size digits read so far.
    Size(u64),
    /// Whitespace after the size: only more of it, `;` or CR may follow.
    SizeLws(u64),
    /// Inside a chunk extension.
    Extension(u64),
    SizeLf(u64),
    Chunk(u64),
    ChunkCr,
    ChunkLf,
    /// After the last chunk's size line, or a trailer line: CR ends the body.
    EndCr,
    EndLf,
    /// Inside a trailer line.
    Trailer,
    TrailerLf,
    Done,
}

impl Decoder {
    pub fn new(framing: Framing) -> Decoder {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Start,
            Framing::Eof => State::Eof,
        };
        Decoder {
            state,
            extension_bytes: 0,
            trailers: None,
            trailer_lines: 0,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done && self.trailers.is_none()
    }

    /// Bytes still expected, when the framing says.
    pub fn remaining(&self) -> Option<u64> {
        match self.state {
            State::Length(n) => Some(n),
            State::Done if self.trailers.is_none() => Some(0),
            _ => None,
        }
    }

    /// The next piece of the body from `buf` (consumed as decoded).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, Invalid> {
        loop {
            match self.state {
                State::Done => {
                    return match self.trailers.take() {
                        Some(section) => {
                            parse_trailers(&section, self.trailer_lines).map(Decoded::Trailers)
                        }
                        None => Ok(Decoded::Done),
                    }
                }
                State::Length(n) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = usize::try_from(n).unwrap_or(usize::MAX).min(buf.len());
                    let left = n - take as u64;
                    self.state = if left == 0 {
                        State::Done
                    } else {
                        State::Length(left)
                    };
                    return Ok(Decoded::Data(buf.split_to(take).freeze()));
                }
                State::Eof => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    return Ok(Decoded::Data(buf.split().freeze()));
                }
                State::Chunk(n) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = usize::try_from(n).unwrap_or(usize::MAX).min(buf.len());
                    let left = n - take as u64;
                    self.state = if left == 0 {
                        State::ChunkCr
                    } else {
                        State::Chunk(left)
                    };
                    return Ok(Decoded::Data(buf.split_to(take).freeze()));
                }
                _ => {
                    let Some(&b) = buf.first() else {
                        return Ok(Decoded::NeedMore);
                    };
                    buf.advance(1);
                    self.state = self.control(b)?;
                }
            }
        }
    }

    /// The framing bytes around chunk data, one at a time.
    fn control(&mut self, b: u8) -> Result<State, Invalid> {
        Ok(match self.state {
            State::Start => match hex(b) {
                Some(d) => State::Size(d),
                None => return Err(Invalid::Chunked("chunk size missing")),
            },
            State::Size(n) => match b {
                b'\t' | b' ' => State::SizeLws(n),
                b';' => State::Extension(n),
                b'\r' => State::SizeLf(n),
                _ => {
                    let d = hex(b).ok_or(Invalid::Chunked("invalid chunk size"))?;
                    n.checked_mul(16)
                        .and_then(|n| n.checked_add(d))
                        .map(State::Size)
                        .ok_or(Invalid::Chunked("chunk size too large"))?
                }
            },
            State::SizeLws(n) => match b {
                b'\t' | b' ' => State::SizeLws(n),
                b';' => State::Extension(n),
                b'\r' => State::SizeLf(n),
                _ => return Err(Invalid::Chunked("invalid chunk size")),
            },
            State::Extension(n) => match b {
                b'\r' => State::SizeLf(n),
                b'\n' => return Err(Invalid::Chunked("bare LF in a chunk extension")),
                _ => {
                    self.extension_bytes += 1;
                    if self.extension_bytes >= MAX_EXTENSION_BYTES {
                        return Err(Invalid::Chunked("chunk extensions too long"));
                    }
                    State::Extension(n)
                }
            },
            State::SizeLf(n) => match b {
                b'\n' if n == 0 => State::EndCr,
                b'\n' => State::Chunk(n),
                _ => return Err(Invalid::Chunked("chunk size line not ended by CRLF")),
            },
            State::ChunkCr => match b {
                b'\r' => State::ChunkLf,
                _ => return Err(Invalid::Chunked("chunk data not followed by CRLF")),
            },
            State::ChunkLf => match b {
                b'\n' => State::Start,
                _ => return Err(Invalid::Chunked("chunk data not followed by CRLF")),
            },
            State::EndCr => {
                if b == b'\r' {
                    if self.trailers.is_some() {
                        self.push_trailer(b)?;
                    }
                    State::EndLf
                } else {
                    self.trailers
                        .get_or_insert_with(|| BytesMut::with_capacity(64));
                    self.push_trailer(b)?;
                    State::Trailer
                }
            }
            State::Trailer => {
                self.push_trailer(b)?;
                if b == b'\r' {
                    State::TrailerLf
                } else {
                    State::Trailer
                }
            }
            State::TrailerLf => match b {
                b'\n' => {
                    if self.trailer_lines >= MAX_HEADERS {
                        return Err(Invalid::Chunked("too many trailer fields"));
                    }
                    self.trailer_lines += 1;
                    self.push_trailer(b)?;
                    State::EndCr
                }
                _ => return Err(Invalid::Chunked("trailer line not ended by CRLF")),
            },
            State::EndLf => match b {
                b'\n' => {
                    if self.trailers.is_some() {
                        self.push_trailer(b)?;
                    }
                    State::Done
                }
                _ => return Err(Invalid::Chunked("chunked body not ended by CRLF")),
            },
            state => state,
        })
    }

    fn push_trailer(&mut self, b: u8) -> Result<(), Invalid> {
        let section = self.trailers.get_or_insert_with(BytesMut::new);
        section.extend_from_slice(&[b]);
        if section.len() >= MAX_TRAILER_BYTES {
            return Err(Invalid::Chunked("trailer section too large"));
        }
        Ok(())
    }

    /// The connection ended: fine for a body read until close, else the body was cut.
    pub fn eof(&mut self) -> Result<(), Invalid> {
        match self.state {
            State::Eof | State::Done => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(Invalid::Cut),
        }
    }
}

fn hex(b: u8) -> Option<u64> {
    (b as char).to_digit(16).map(u64::from)
}

/// The trailer section, `lines` CRLF-ended lines (httparse also ends a line at a bare LF,
/// so more fields than that is refused, as hyper does).
fn parse_trailers(section: &[u8], lines: usize) -> Result<HeaderMap, Invalid> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let fields = &mut fields[..lines.min(MAX_HEADERS)];
    match httparse::parse_headers(section, fields) {
        Ok(httparse::Status::Complete((_, fields))) => {
            let mut map = HeaderMap::with_capacity(fields.len());
            for f in fields {
                let name = HeaderName::from_bytes(f.name.as_bytes())
                    .map_err(|_| Invalid::Chunked("invalid trailer name"))?;
                let value = HeaderValue::from_bytes(f.value)
                    .map_err(|_| Invalid::Chunked("invalid trailer value"))?;
                map.append(name, value);
            }
            Ok(map)
        }
        _ => Err(Invalid::Chunked("malformed trailer section")),
    }
}

/// Runs the head parser and the decoder over a whole response held in memory, the way
/// the connection does over reads of `read` bytes: the status, the headers, the body and
/// the trailers, or why the response is refused. For the differential fuzzer.
pub(crate) fn decode_whole(
    bytes: &[u8],
    head_request: bool,
    read: usize,
) -> Result<(Head, Vec<u8>, Option<HeaderMap>), Invalid> {
    let read = read.max(1);
    let mut input = bytes.chunks(read);
    let mut buf = BytesMut::new();
    let head = loop {
        // As the exchange reads it: the head split off the buffer the body follows in.
        match take_head(&mut buf, head_request)? {
            Some(head) => {
                if head.status.is_informational() && head.status != StatusCode::SWITCHING_PROTOCOLS
                {
                    continue;
                }
                break head;
            }
            None => match input.next() {
                Some(more) => buf.extend_from_slice(more),
                None => return Err(Invalid::Head("connection closed in the head")),
            },
        }
    };
    if head.status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(Invalid::Head("101 to a request that asked no upgrade"));
    }
    let mut decoder = Decoder::new(head.framing);
    let mut body = Vec::new();
    let mut trailers = None;
    loop {
        match decoder.decode(&mut buf)? {
            Decoded::Data(d) => body.extend_from_slice(&d),
            Decoded::Trailers(t) => trailers = Some(t),
            Decoded::Done => break,
            Decoded::NeedMore => match input.next() {
                Some(more) => buf.extend_from_slice(more),
                None => {
                    decoder.eof()?;
                    break;
                }
            },
        }
    }
    Ok((head, body, trailers))
}
