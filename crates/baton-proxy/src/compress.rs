//! Response compression (`[proxy.compression]`, nginx's `gzip on;`): negotiates gzip or
//! brotli from `Accept-Encoding`, decides per response whether to compress, rewrites the
//! response head, and compresses the body frame by frame as it streams.
//!
//! Off unless configured. A response is compressed only when all of these hold: it came
//! from an upstream (not a proxy error, not a 101), the request was not `HEAD`, the status
//! is not 1xx, 204, 206 or 304, there is no `Content-Range`, no `Content-Encoding` and no
//! `Cache-Control: no-transform`, its media type is listed in `types` (without
//! parameters, case-insensitive; `text/*` covers every `text/` type except
//! `text/event-stream`, which must be listed by name and is then flushed after every
//! chunk), a `Content-Length` if any is at least `min_size`, and the client accepts one
//! of `algorithms`. A compressed response loses `Content-Length` and `Accept-Ranges`,
//! gets `Content-Encoding` and `Vary: Accept-Encoding`, and a strong `ETag` becomes weak
//! (as nginx does). A response of a listed type that is not compressed only because the
//! client did not accept an encoding gets `Vary: Accept-Encoding` too, so caches keep the
//! variants apart.
//!
//! Memory per compressed response is the encoder's state (gzip: about 300 KiB; brotli: a
//! 512 KiB window plus its tables), whatever the body's length: each upstream data frame
//! is compressed when it arrives and what the encoder gives out is sent at once.
//!
//! Per-version metrics and the access log count the response body bytes *before*
//! compression (what the upstream sent), as they do without it; nginx's
//! `$body_bytes_sent` counts after.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body::Frame;
use std::io::Write;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use crate::body::ResponseBody;

/// An encoding the proxy can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `br` (RFC 7932).
    Brotli,
    /// `gzip` (RFC 1952).
    Gzip,
}

/// `[proxy.compression]` as the proxy uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compression {
    /// Preference order: the first the client accepts with its highest weight wins.
    pub algorithms: Vec<Algorithm>,
    /// Responses with a smaller `Content-Length` are sent as they are (a body of unknown
    /// length is compressed).
    pub min_size: u64,
    /// Media types to compress, lowercase, without parameters; `text/*` style allowed.
    pub types: Vec<String>,
    /// 1 (fastest) to 9 (smallest): gzip's level and brotli's quality.
    pub level: u32,
}

/// The default of [`Compression::types`]: text formats that compress well.
pub const DEFAULT_TYPES: &[&str] = &[
    "text/html",
    "text/css",
    "text/plain",
    "text/xml",
    "text/javascript",
    "text/markdown",
    "text/csv",
    "application/javascript",
    "application/json",
    "application/ld+json",
    "application/manifest+json",
    "application/xml",
    "application/rss+xml",
    "application/atom+xml",
    "application/xhtml+xml",
    "application/wasm",
    "image/svg+xml",
    "font/ttf",
    "font/otf",
];

/// brotli's window: 2^19 bytes, so a response holds at most 512 KiB of it.
const BROTLI_WINDOW_BITS: u32 = 19;
/// The brotli encoder's input buffer.
const BROTLI_BUFFER: usize = 16 * 1024;

// === impl Algorithm ===

impl Algorithm {
    /// The name in `Accept-Encoding`, `Content-Encoding` and the config file.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Brotli => "br",
            Algorithm::Gzip => "gzip",
        }
    }

    /// `br` or `gzip` (case-insensitive); `None` for anything else.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        if name.eq_ignore_ascii_case("br") {
            Some(Algorithm::Brotli)
        } else if name.eq_ignore_ascii_case("gzip") {
            Some(Algorithm::Gzip)
        } else {
            None
        }
    }

    /// Whether `coding` (from `Accept-Encoding`) names this algorithm; `x-gzip` is gzip
    /// (RFC 9110).
    fn is_named(self, coding: &str) -> bool {
        coding.eq_ignore_ascii_case(self.name())
            || (self == Algorithm::Gzip && coding.eq_ignore_ascii_case("x-gzip"))
    }
}

// === impl Compression ===

impl Default for Compression {
    fn default() -> Self {
        Compression {
            algorithms: vec![Algorithm::Brotli, Algorithm::Gzip],
            min_size: 1024,
            types: DEFAULT_TYPES.iter().map(|t| t.to_string()).collect(),
            level: 5,
        }
    }
}

impl Compression {
    /// Whether a response of this `Content-Type` may be compressed.
    fn compresses(&self, content_type: &str) -> bool {
        let media = content_type.split(';').next().unwrap_or("").trim();
        if media.is_empty() {
            return false;
        }
        self.types.iter().any(|t| {
            if t.eq_ignore_ascii_case(media) {
                return true;
            }
            // `text/*`: any subtype, except an event stream, which is named explicitly.
            let Some(prefix) = t.strip_suffix('*') else {
                return false;
            };
            media.len() > prefix.len()
                && media[..prefix.len()].eq_ignore_ascii_case(prefix)
                && !media.eq_ignore_ascii_case("text/event-stream")
        })
    }
}

/// What a request allows, captured before it is forwarded.
pub(crate) struct Offer {
    settings: Arc<Compression>,
    /// The encoding to use, if the client accepts one of `algorithms`.
    chosen: Option<Algorithm>,
    head: bool,
}

/// What to do with one response.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    /// Leave it as it is.
    Keep,
    /// Leave the body, but say it varies with `Accept-Encoding`.
    Vary,
    Compress(Algorithm),
}

// === impl Offer ===

impl Offer {
    /// `None` when compression is off.
    pub(crate) fn new(
        settings: Option<&Arc<Compression>>,
        method: &Method,
        headers: &HeaderMap,
    ) -> Option<Offer> {
        let settings = settings?.clone();
        let chosen = negotiate(headers, &settings.algorithms);
        Some(Offer {
            settings,
            chosen,
            head: method == Method::HEAD,
        })
    }

    fn decide(&self, status: StatusCode, headers: &HeaderMap) -> Decision {
        let s = status.as_u16();
        if status.is_informational() || matches!(s, 204 | 206 | 304) {
            return Decision::Keep;
        }
        if headers.contains_key(header::CONTENT_RANGE)
            || headers.contains_key(header::CONTENT_ENCODING)
            || no_transform(headers)
        {
            return Decision::Keep;
        }
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !self.settings.compresses(content_type) {
            return Decision::Keep;
        }
        if content_length(headers).is_some_and(|n| n < self.settings.min_size) {
            return Decision::Keep;
        }
        match self.chosen {
            Some(algorithm) if !self.head => Decision::Compress(algorithm),
            _ => Decision::Vary,
        }
    }
}

/// Decide for `res` and, when it is to be compressed, rewrite its head and wrap its
/// body. Only upstream bodies are touched (not proxy errors, not a 101).
///
/// Not inlined: an encoder is built on the stack before it is boxed, and inlined, that
/// room would be part of the stack frame of every request's future (see the text of
/// `forward.rs`).
#[inline(never)]
pub(crate) fn apply(offer: Offer, res: &mut Response<ResponseBody>) {
    if !res.body().is_upstream() {
        return;
    }
    match offer.decide(res.status(), res.headers()) {
        Decision::Keep => {}
        Decision::Vary => add_vary(res.headers_mut()),
        Decision::Compress(algorithm) => {
            let headers = res.headers_mut();
            let flush = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(is_event_stream);
            compressed_head(headers, algorithm);
            let encoder = Encoder::new(algorithm, offer.settings.level, flush);
            res.body_mut().encode(encoder);
        }
    }
}

/// The head of a compressed response.
fn compressed_head(headers: &mut HeaderMap, algorithm: Algorithm) {
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::ACCEPT_RANGES);
    headers.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(algorithm.name()),
    );
    add_vary(headers);
    weaken_etag(headers);
}

/// The first of `algorithms` with the highest weight the client gives it; `None` when
/// the client accepts none of them, prefers `identity`, or sent no `Accept-Encoding`.
fn negotiate(headers: &HeaderMap, algorithms: &[Algorithm]) -> Option<Algorithm> {
    let codings: Vec<(&str, u16)> = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(parse_coding)
        .collect();
    let weight =
        |matches: &dyn Fn(&str) -> bool| codings.iter().find(|(c, _)| matches(c)).map(|&(_, q)| q);
    let star = weight(&|c| c == "*");
    let mut best: Option<(Algorithm, u16)> = None;
    for &algorithm in algorithms {
        let q = weight(&|c| algorithm.is_named(c)).or(star).unwrap_or(0);
        if q > 0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((algorithm, q));
        }
    }
    let (algorithm, q) = best?;
    // Only an explicit, higher weight for `identity` beats an encoding.
    let identity = weight(&|c| c.eq_ignore_ascii_case("identity")).unwrap_or(0);
    (identity <= q).then_some(algorithm)
}

/// `gzip;q=0.8` → ("gzip", 800). A weight that does not parse drops the element.
fn parse_coding(element: &str) -> Option<(&str, u16)> {
    let mut parts = element.split(';');
    let coding = parts.next()?.trim();
    if coding.is_empty() {
        return None;
    }
    let mut q = 1000;
    for param in parts {
        let (name, value) = param.split_once('=')?;
        if name.trim().eq_ignore_ascii_case("q") {
            q = parse_qvalue(value.trim())?;
        }
    }
    Some((coding, q))
}

/// RFC 9110 `qvalue` in thousandths: `0`, `0.5`, `1.000`.
fn parse_qvalue(text: &str) -> Option<u16> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{frac:0<3}").parse::<u16>().ok()?;
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

fn no_transform(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| d.trim().eq_ignore_ascii_case("no-transform"))
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn is_event_stream(content_type: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or("").trim();
    media.eq_ignore_ascii_case("text/event-stream")
}

/// Add `Accept-Encoding` to `Vary` unless it is there (or `Vary: *`).
fn add_vary(headers: &mut HeaderMap) {
    let present = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|f| {
            let f = f.trim();
            f == "*" || f.eq_ignore_ascii_case("accept-encoding")
        });
    if !present {
        headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// `"abc"` → `W/"abc"`: the compressed bytes are not the ones the tag was made for.
fn weaken_etag(headers: &mut HeaderMap) {
    let Some(tag) = headers.get(header::ETAG) else {
        return;
    };
    if tag.as_bytes().starts_with(b"\"") {
        let mut weak = b"W/".to_vec();
        weak.extend_from_slice(tag.as_bytes());
        if let Ok(v) = HeaderValue::from_bytes(&weak) {
            headers.insert(header::ETAG, v);
        }
    }
}

/// Compresses a response body as it streams.
pub(crate) struct Encoder {
    /// `None` once the compressed stream is complete (or failed).
    codec: Option<Codec>,
    /// Flush after every data frame (event streams), so each event reaches the client.
    flush: bool,
    /// Upstream trailers, sent after the last compressed bytes.
    trailers: Option<HeaderMap>,
}

enum Codec {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
}

// === impl Encoder ===

impl Encoder {
    pub(crate) fn new(algorithm: Algorithm, level: u32, flush: bool) -> Encoder {
        let level = level.clamp(1, 9);
        let codec = match algorithm {
            Algorithm::Gzip => Codec::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(level),
            )),
            Algorithm::Brotli => Codec::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                BROTLI_BUFFER,
                level,
                BROTLI_WINDOW_BITS,
            ))),
        };
        Encoder {
            codec: Some(codec),
            flush,
            trailers: None,
        }
    }

    /// The next frame for the client: compressed data, then the upstream's trailers.
    /// `source` gives the upstream's frames; its error ends the body as it would
    /// without compression.
    pub(crate) fn poll_frame<E>(
        &mut self,
        cx: &mut Context<'_>,
        mut source: impl FnMut(&mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, E>>>,
    ) -> Poll<Option<Result<Frame<Bytes>, E>>> {
        loop {
            let Some(codec) = self.codec.as_mut() else {
                return Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))));
            };
            let out = match ready!(source(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => codec.write(&data, self.flush),
                    Err(frame) => {
                        self.trailers = frame.into_trailers().ok();
                        self.finish()
                    }
                },
                None => self.finish(),
                Some(Err(e)) => {
                    self.codec = None;
                    self.trailers = None;
                    return Poll::Ready(Some(Err(e)));
                }
            };
            match out {
                Ok(out) if out.is_empty() => continue,
                Ok(out) => return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out))))),
                Err(error) => {
                    // Writing into memory does not fail; if it ever did, the client
                    // gets a cut-off body rather than corrupt data.
                    tracing::warn!(%error, "response compression failed; ending the body");
                    self.codec = None;
                    self.trailers = None;
                    return Poll::Ready(None);
                }
            }
        }
    }

    /// The compressed stream is complete (and any trailers sent).
    pub(crate) fn is_end_stream(&self) -> bool {
        self.codec.is_none() && self.trailers.is_none()
    }

    fn finish(&mut self) -> std::io::Result<Vec<u8>> {
        match self.codec.take() {
            Some(codec) => codec.finish(),
            None => Ok(Vec::new()),
        }
    }
}

// === impl Codec ===

impl Codec {
    /// Compress `data`; what the encoder has given out so far.
    fn write(&mut self, data: &[u8], flush: bool) -> std::io::Result<Vec<u8>> {
        match self {
            Codec::Gzip(e) => {
                e.write_all(data)?;
                if flush {
                    e.flush()?;
                }
                Ok(std::mem::take(e.get_mut()))
            }
            Codec::Brotli(e) => {
                e.write_all(data)?;
                if flush {
                    e.flush()?;
                }
                Ok(std::mem::take(e.get_mut()))
            }
        }
    }

    /// End the stream; the last bytes.
    fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            Codec::Gzip(e) => e.finish(),
            Codec::Brotli(e) => Ok(e.into_inner()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn pick(accept: &str) -> Option<Algorithm> {
        negotiate(
            &headers(&[("accept-encoding", accept)]),
            &[Algorithm::Brotli, Algorithm::Gzip],
        )
    }

    #[test]
    fn the_first_configured_algorithm_wins_a_tie() {
        assert_eq!(pick("gzip, deflate, br"), Some(Algorithm::Brotli));
        assert_eq!(pick("gzip, deflate"), Some(Algorithm::Gzip));
        assert_eq!(pick("GZIP"), Some(Algorithm::Gzip));
        assert_eq!(pick("x-gzip"), Some(Algorithm::Gzip));
        let gzip_first = [Algorithm::Gzip, Algorithm::Brotli];
        let h = headers(&[("accept-encoding", "br, gzip")]);
        assert_eq!(negotiate(&h, &gzip_first), Some(Algorithm::Gzip));
    }

    #[test]
    fn a_higher_weight_beats_the_preference_order() {
        assert_eq!(pick("br;q=0.5, gzip;q=0.9"), Some(Algorithm::Gzip));
        assert_eq!(pick("br; q=1.0, gzip;q=0.999"), Some(Algorithm::Brotli));
    }

    #[test]
    fn q_zero_refuses_an_encoding() {
        assert_eq!(pick("br;q=0, gzip"), Some(Algorithm::Gzip));
        assert_eq!(pick("br;q=0, gzip;q=0.000"), None);
        assert_eq!(pick("*;q=0"), None);
        assert_eq!(pick("gzip;q=0, *"), Some(Algorithm::Brotli));
    }

    #[test]
    fn star_covers_what_is_not_named() {
        assert_eq!(pick("*"), Some(Algorithm::Brotli));
        assert_eq!(pick("br;q=0.2, *;q=0.5"), Some(Algorithm::Gzip));
    }

    #[test]
    fn identity_wins_only_with_an_explicit_higher_weight() {
        assert_eq!(pick("identity"), None);
        assert_eq!(pick("gzip;q=0.5, identity"), None);
        assert_eq!(pick("gzip, identity;q=0.5"), Some(Algorithm::Gzip));
        assert_eq!(pick("gzip, identity;q=0"), Some(Algorithm::Gzip));
    }

    #[test]
    fn no_or_unusable_accept_encoding_means_no_compression() {
        assert_eq!(negotiate(&HeaderMap::new(), &[Algorithm::Gzip]), None);
        assert_eq!(pick(""), None);
        assert_eq!(pick("deflate, zstd"), None);
        assert_eq!(pick("gzip;q=2"), None);
        assert_eq!(pick("gzip;q=abc"), None);
        assert_eq!(pick("gzip;q=0.1234"), None);
    }

    #[test]
    fn several_accept_encoding_headers_are_one_list() {
        let h = headers(&[("accept-encoding", "br;q=0"), ("accept-encoding", "gzip")]);
        assert_eq!(
            negotiate(&h, &[Algorithm::Brotli, Algorithm::Gzip]),
            Some(Algorithm::Gzip)
        );
    }

    #[test]
    fn qvalues_parse_as_rfc_9110_writes_them() {
        assert_eq!(parse_qvalue("1"), Some(1000));
        assert_eq!(parse_qvalue("1.000"), Some(1000));
        assert_eq!(parse_qvalue("0.5"), Some(500));
        assert_eq!(parse_qvalue("0.05"), Some(50));
        assert_eq!(parse_qvalue("0"), Some(0));
        assert_eq!(parse_qvalue("1.5"), None);
        assert_eq!(parse_qvalue("-0"), None);
    }

    fn offer(accept: &str, method: Method) -> Offer {
        let settings = Arc::new(Compression::default());
        Offer::new(
            Some(&settings),
            &method,
            &headers(&[("accept-encoding", accept)]),
        )
        .unwrap()
    }

    fn decide(status: u16, pairs: &[(&str, &str)]) -> Decision {
        offer("gzip", Method::GET).decide(StatusCode::from_u16(status).unwrap(), &headers(pairs))
    }

    const HTML: (&str, &str) = ("content-type", "text/html; charset=utf-8");

    #[test]
    fn text_is_compressed() {
        assert_eq!(decide(200, &[HTML]), Decision::Compress(Algorithm::Gzip));
        assert_eq!(
            decide(404, &[("content-type", "Application/JSON")]),
            Decision::Compress(Algorithm::Gzip)
        );
        assert_eq!(
            decide(200, &[HTML, ("content-length", "1024")]),
            Decision::Compress(Algorithm::Gzip)
        );
    }

    #[test]
    fn never_compressed() {
        for status in [101, 204, 206, 304] {
            assert_eq!(decide(status, &[HTML]), Decision::Keep, "{status}");
        }
        let cases: &[&[(&str, &str)]] = &[
            &[HTML, ("content-range", "bytes 0-9/100")],
            &[HTML, ("content-encoding", "gzip")],
            &[HTML, ("content-encoding", "identity")],
            &[HTML, ("cache-control", "public, No-Transform")],
            &[HTML, ("content-length", "1023")],
            &[("content-type", "image/png")],
            &[("content-type", "text/html-not")],
            &[("content-type", "text/event-stream")],
            &[],
        ];
        for h in cases {
            assert_eq!(decide(200, h), Decision::Keep, "{h:?}");
        }
    }

    #[test]
    fn a_listed_type_the_client_cannot_take_still_varies() {
        let o = offer("identity", Method::GET);
        assert_eq!(o.decide(StatusCode::OK, &headers(&[HTML])), Decision::Vary);
        let head = offer("gzip", Method::HEAD);
        assert_eq!(
            head.decide(StatusCode::OK, &headers(&[HTML])),
            Decision::Vary
        );
    }

    #[test]
    fn the_default_types_are_the_ones_documented() {
        let doc = include_str!("../../../docs/compression.md");
        let listed = doc
            .split("The default `types`:")
            .nth(1)
            .and_then(|rest| rest.split("\n\n").next())
            .unwrap();
        let documented: Vec<&str> = listed.split('`').skip(1).step_by(2).collect();
        assert_eq!(documented, DEFAULT_TYPES);
    }

    #[test]
    fn wildcard_types_and_event_streams() {
        let mut settings = Compression {
            types: vec!["text/*".into()],
            ..Compression::default()
        };
        assert!(settings.compresses("text/x-anything"));
        assert!(settings.compresses("TEXT/HTML"));
        assert!(!settings.compresses("text/event-stream"));
        assert!(!settings.compresses("application/json"));
        settings.types.push("text/event-stream".into());
        assert!(settings.compresses("text/event-stream; charset=utf-8"));
    }

    #[test]
    fn the_compressed_head() {
        let mut h = headers(&[
            HTML,
            ("content-length", "5000"),
            ("accept-ranges", "bytes"),
            ("etag", "\"v1\""),
            ("vary", "Origin"),
        ]);
        compressed_head(&mut h, Algorithm::Brotli);
        assert!(h.get("content-length").is_none());
        assert!(h.get("accept-ranges").is_none());
        assert_eq!(h["content-encoding"], "br");
        assert_eq!(h["etag"], "W/\"v1\"");
        let vary: Vec<_> = h.get_all("vary").iter().collect();
        assert_eq!(vary, ["Origin", "Accept-Encoding"]);
        // Already weak, already varying: unchanged.
        let mut h = headers(&[("etag", "W/\"v1\""), ("vary", "accept-encoding")]);
        compressed_head(&mut h, Algorithm::Gzip);
        assert_eq!(h["etag"], "W/\"v1\"");
        assert_eq!(h.get_all("vary").iter().count(), 1);
    }

    fn run(algorithm: Algorithm, chunks: &[&[u8]], flush: bool) -> (Vec<Vec<u8>>, usize) {
        let mut e = Encoder::new(algorithm, 5, flush);
        let mut frames: Vec<Frame<Bytes>> = chunks
            .iter()
            .map(|c| Frame::data(Bytes::copy_from_slice(c)))
            .collect();
        frames.reverse();
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut out = Vec::new();
        let mut polls = 0;
        loop {
            polls += 1;
            let frame = e.poll_frame(&mut cx, |_| {
                Poll::Ready(frames.pop().map(Ok::<_, std::io::Error>))
            });
            match frame {
                Poll::Ready(Some(Ok(f))) => out.push(f.into_data().unwrap().to_vec()),
                Poll::Ready(None) => break,
                other => panic!("{other:?}"),
            }
        }
        assert!(e.is_end_stream());
        (out, polls)
    }

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(data), &mut out).unwrap();
        out
    }

    fn unbrotli(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        brotli::BrotliDecompress(&mut &data[..], &mut out).unwrap();
        out
    }

    #[test]
    fn the_encoders_round_trip() {
        let text = "hello, compressed world! ".repeat(2000);
        let chunks: Vec<&[u8]> = text.as_bytes().chunks(1000).collect();
        let (gz, _) = run(Algorithm::Gzip, &chunks, false);
        assert_eq!(gunzip(&gz.concat()), text.as_bytes());
        let (br, _) = run(Algorithm::Brotli, &chunks, false);
        assert_eq!(unbrotli(&br.concat()), text.as_bytes());
        assert!(br.concat().len() < text.len() / 10);
    }

    #[test]
    fn an_event_stream_is_flushed_after_every_chunk() {
        for algorithm in [Algorithm::Gzip, Algorithm::Brotli] {
            let chunks: [&[u8]; 3] = [b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\n"];
            let (out, _) = run(algorithm, &chunks, true);
            // One frame per chunk, then the end of the stream.
            assert_eq!(out.len(), 4, "{algorithm:?}");
        }
    }

    #[test]
    fn an_upstream_error_passes_through() {
        let mut e = Encoder::new(Algorithm::Gzip, 5, false);
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let got = e.poll_frame(&mut cx, |_| {
            Poll::Ready(Some(Err::<Frame<Bytes>, _>("cut")))
        });
        assert!(matches!(got, Poll::Ready(Some(Err("cut")))));
        assert!(e.is_end_stream());
    }

    #[test]
    fn trailers_follow_the_compressed_body() {
        let mut e = Encoder::new(Algorithm::Gzip, 5, false);
        let mut frames = vec![
            Frame::trailers(headers(&[("x-checksum", "1")])),
            Frame::data(Bytes::from_static(b"abc")),
        ];
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut data = Vec::new();
        let mut trailers = None;
        while let Poll::Ready(Some(Ok(f))) =
            e.poll_frame(&mut cx, |_| Poll::Ready(frames.pop().map(Ok::<_, ()>)))
        {
            match f.into_data() {
                Ok(d) => data.extend_from_slice(&d),
                Err(f) => trailers = f.into_trailers().ok(),
            }
        }
        assert_eq!(gunzip(&data), b"abc");
        assert_eq!(trailers.unwrap()["x-checksum"], "1");
    }
}
