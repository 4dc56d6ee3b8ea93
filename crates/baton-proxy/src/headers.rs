//! Header hygiene: framing checks against request smuggling, hop-by-hop stripping
//! (including every header a `Connection` header names), and only then the proxy's own
//! `X-Forwarded-*` and `X-Request-Id`. Also the HTTP/2 → HTTP/1.1 request rewrite.

use crate::error::ProxyError;
use baton_core::UnderscoreHeaders;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri, Version};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// Hop-by-hop headers removed in both directions (RFC 9110 §7.6.1 plus the usual
/// non-standard ones, and the h2c upgrade's `HTTP2-Settings`).
fn hop_by_hop() -> [&'static HeaderName; 10] {
    [
        &HTTP2_SETTINGS,
        &header::CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
        &header::PROXY_AUTHORIZATION,
        &header::PROXY_AUTHENTICATE,
    ]
}

/// Headers a `Connection` header may not make us drop: routing and framing need them.
fn protected(name: &HeaderName) -> bool {
    name == header::HOST || name == header::CONTENT_LENGTH
}

/// Refuse framing that two HTTP parsers could read differently. The HTTP/1 framing
/// tracker (`h1guard`) sees the raw head and refuses more; this is the check on what
/// hyper parsed, for HTTP/2 and for connections the tracker stopped following.
pub(crate) fn check_framing(headers: &HeaderMap) -> Result<(), ProxyError> {
    // One walk over the fields: a request has few, and three lookups by name (each a
    // hash and a probe) cost more than comparing every name with three known ones.
    let mut length: Option<&HeaderValue> = None;
    let mut lengths_differ = false;
    let mut codings = 0usize;
    let mut first_coding_chunked = false;
    let mut hosts = 0usize;
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH {
            match length {
                Some(first) => lengths_differ |= first != value,
                None => length = Some(value),
            }
        } else if name == header::TRANSFER_ENCODING {
            for token in value.as_bytes().split(|b| *b == b',') {
                if codings == 0 {
                    first_coding_chunked = token.trim_ascii().eq_ignore_ascii_case(b"chunked");
                }
                codings += 1;
            }
        } else if name == header::HOST {
            hosts += 1;
        }
    }
    if length.is_some() {
        // An empty Transfer-Encoding still counts one (empty) coding.
        if codings > 0 {
            return Err(ProxyError::BadRequest(
                "both Content-Length and Transfer-Encoding are present",
            ));
        }
        if lengths_differ {
            return Err(ProxyError::BadRequest("conflicting Content-Length headers"));
        }
    }
    if codings > 0 && (!first_coding_chunked || codings > 1) {
        return Err(ProxyError::BadRequest(
            "Transfer-Encoding other than a single `chunked`",
        ));
    }
    if hosts > 1 {
        return Err(ProxyError::BadRequest("more than one Host header"));
    }
    Ok(())
}

/// Whether the request asks for a protocol upgrade (WebSocket) that we forward.
pub(crate) fn wants_upgrade(version: Version, method: &Method, headers: &HeaderMap) -> bool {
    version == Version::HTTP_11
        && method == Method::GET
        && headers.contains_key(header::UPGRADE)
        && connection_tokens(headers).any(|t| t.eq_ignore_ascii_case(b"upgrade"))
}

/// The `Upgrade` value to forward to an app: the offered protocols the proxy can
/// carry, in the client's order. `websocket` always, the app's `upgrade_protocols`
/// by name (the part before any `/version`, without case), `h2c` never: a tunnelled
/// HTTP/2 connection would carry requests past routing and the forwarding headers.
/// `None` when nothing offered may be forwarded; the request then goes on as a plain
/// request without the upgrade (as nginx's plain proxy does).
pub(crate) fn allowed_upgrade(
    headers: &HeaderMap,
    app_protocols: &[String],
) -> Option<HeaderValue> {
    let mut kept: Vec<u8> = Vec::new();
    let offered = headers
        .get_all(header::UPGRADE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|p| !p.is_empty());
    for protocol in offered {
        let name = protocol.split(|b| *b == b'/').next().unwrap_or(protocol);
        let allowed = !name.eq_ignore_ascii_case(b"h2c")
            && (name.eq_ignore_ascii_case(b"websocket")
                || app_protocols.iter().any(|p| {
                    let listed = p.split('/').next().unwrap_or(p);
                    listed.as_bytes().eq_ignore_ascii_case(name)
                }));
        if allowed {
            if !kept.is_empty() {
                kept.extend_from_slice(b", ");
            }
            kept.extend_from_slice(protocol);
        }
    }
    if kept.is_empty() {
        return None;
    }
    HeaderValue::from_bytes(&kept).ok()
}

/// Header names that, with `_` read as `-`, must never come from a client under
/// another spelling: the proxy's own headers, framing, and hop-by-hop headers.
const SHADOWED: [&str; 18] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-real-ip",
    "x-request-id",
    "forwarded",
];

/// Request header names with `_`: dropped (`drop`, the default), or kept (`forward`)
/// unless one would read as a header in [`SHADOWED`] to a backend that maps `_` to `-`
/// (CGI, WSGI, Rack and PHP all do).
pub(crate) fn filter_underscores(headers: &mut HeaderMap, policy: UnderscoreHeaders) {
    if !headers.keys().any(|k| k.as_str().contains('_')) {
        return;
    }
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().contains('_'))
        .filter(|k| policy == UnderscoreHeaders::Drop || shadows(k.as_str()))
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(&name);
    }
}

fn shadows(name: &str) -> bool {
    SHADOWED.iter().any(|s| {
        s.len() == name.len()
            && s.bytes().zip(name.bytes()).all(|(a, b)| {
                let b = if b == b'_' { b'-' } else { b };
                a.eq_ignore_ascii_case(&b)
            })
    })
}

/// `Content-Length` in canonical decimal: a backend that reads `010` with base
/// detection (C's `strtol(.., 0)`) would see 8 where the proxy framed 10.
pub(crate) fn canonical_length(headers: &mut HeaderMap) {
    let Some(value) = headers.get(header::CONTENT_LENGTH) else {
        return;
    };
    let bytes = value.as_bytes();
    if bytes.len() > 1 && bytes[0] == b'0' || bytes.iter().any(|b| !b.is_ascii_digit()) {
        let canonical = std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        if let Some(n) = canonical {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
    }
}

/// A GET or HEAD with a body of unknown length (chunked, or HTTP/2 without
/// content-length) must say so upstream: hyper's client sends such a request with
/// no body at all unless `Transfer-Encoding: chunked` is set.
pub(crate) fn frame_unknown_length(method: &Method, headers: &mut HeaderMap, has_body: bool) {
    if has_body
        && matches!(*method, Method::GET | Method::HEAD)
        && !headers.contains_key(header::CONTENT_LENGTH)
    {
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
    }
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Remove hop-by-hop headers and everything `Connection` names. For an upgrade, keep
/// `Upgrade` and send `Connection: upgrade`.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter(|t| !t.eq_ignore_ascii_case(b"close") && !t.eq_ignore_ascii_case(b"keep-alive"))
        .filter_map(|t| HeaderName::from_bytes(t).ok())
        .filter(|n| !protected(n))
        .collect();
    let upgrade_value = if upgrade {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    for name in named {
        headers.remove(name);
    }
    // One pass over the names finds which are there (most messages carry none, or only
    // `Connection: keep-alive` / `close`); only those are removed, each a hashed
    // removal (ten of them were ~5% of the proxy's instructions per request).
    let hop = hop_by_hop();
    let mut present = hop.map(|_| false);
    for key in headers.keys() {
        if let Some(i) = hop.iter().position(|h| *h == key) {
            present[i] = true;
        }
    }
    for (name, here) in hop.into_iter().zip(present) {
        if here {
            headers.remove(name);
        }
    }
    if let Some(value) = upgrade_value {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, value);
    }
}

/// What the client connection tells us about the request.
pub(crate) struct Peer {
    /// The client's IP as a header value, computed once per connection.
    pub ip: HeaderValue,
    /// Whether to extend an incoming `X-Forwarded-For` instead of replacing it.
    pub trusted: bool,
    /// Whether the connection is TLS (`X-Forwarded-Proto: https`).
    pub https: bool,
}

/// The proxy's own fields for a request going upstream: `X-Forwarded-For`,
/// `X-Forwarded-Proto`, `X-Forwarded-Host` (when the request names a host) and
/// `X-Request-Id` (unless the request brought one). `forwarding` takes the fields they
/// replace out of the map; then either `insert_into` puts them in (hyper's client sends
/// the map), or `h1client` writes them after the map's fields (`write_to`): four hashed
/// insertions (the names are not ones `HeaderMap` knows) spared on every request.
pub(crate) struct Forwarding<'a> {
    /// The client's address, or (a trusted peer's) the list it sent with that appended.
    xff: std::borrow::Cow<'a, HeaderValue>,
    https: bool,
    host: Option<&'a HeaderValue>,
    /// `None`: the request's own stays in the map.
    request_id: Option<HeaderValue>,
}

/// Takes out of `headers` what the proxy's own fields replace and says what they are
/// (see `Forwarding`). Must run after `strip_hop_by_hop`, so nothing the client put in
/// `Connection` can remove them.
pub(crate) fn forwarding<'a>(
    headers: &mut HeaderMap,
    peer: &'a Peer,
    host: Option<&'a HeaderValue>,
) -> Forwarding<'a> {
    use std::borrow::Cow;
    // Most requests carry none of these: a look at the names spares hashed lookups.
    let ours = |k: &HeaderName| {
        *k == X_FORWARDED_FOR
            || *k == X_FORWARDED_PROTO
            || *k == X_FORWARDED_HOST
            || *k == X_REQUEST_ID
    };
    let any = headers.keys().any(ours);
    let xff = if any && peer.trusted && headers.contains_key(&X_FORWARDED_FOR) {
        let mut joined = Vec::with_capacity(64);
        for v in headers.get_all(&X_FORWARDED_FOR) {
            joined.extend_from_slice(v.as_bytes());
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(peer.ip.as_bytes());
        HeaderValue::from_bytes(&joined).map_or(Cow::Borrowed(&peer.ip), Cow::Owned)
    } else {
        Cow::Borrowed(&peer.ip)
    };
    if any {
        headers.remove(&X_FORWARDED_FOR);
        headers.remove(&X_FORWARDED_PROTO);
        headers.remove(&X_FORWARDED_HOST);
    }
    let request_id = (!any || !headers.contains_key(&X_REQUEST_ID)).then(request_id);
    Forwarding {
        xff,
        https: peer.https,
        host,
        request_id,
    }
}

impl Forwarding<'_> {
    fn proto(&self) -> &'static str {
        if self.https {
            "https"
        } else {
            "http"
        }
    }

    /// Into the map (which `forwarding` has emptied of them), after its fields.
    pub(crate) fn insert_into(self, headers: &mut HeaderMap) {
        let proto = self.proto();
        headers.insert(X_FORWARDED_FOR.clone(), self.xff.into_owned());
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
        if let Some(host) = self.host {
            headers.insert(X_FORWARDED_HOST.clone(), host.clone());
        }
        if let Some(id) = self.request_id {
            headers.insert(X_REQUEST_ID.clone(), id);
        }
    }

    /// As HTTP/1.1 field lines, in the order `insert_into` puts them in the map.
    pub(crate) fn write_to(&self, head: &mut bytes::BytesMut) {
        let line = |head: &mut bytes::BytesMut, name: &HeaderName, value: &[u8]| {
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value);
            head.extend_from_slice(b"\r\n");
        };
        line(head, &X_FORWARDED_FOR, self.xff.as_bytes());
        line(head, &X_FORWARDED_PROTO, self.proto().as_bytes());
        if let Some(host) = self.host {
            line(head, &X_FORWARDED_HOST, host.as_bytes());
        }
        if let Some(id) = &self.request_id {
            line(head, &X_REQUEST_ID, id.as_bytes());
        }
    }

    /// Bytes `write_to` writes.
    pub(crate) fn len(&self) -> usize {
        let line = |name: &HeaderName, value: usize| name.as_str().len() + value + 4;
        line(&X_FORWARDED_FOR, self.xff.len())
            + line(&X_FORWARDED_PROTO, self.proto().len())
            + self.host.map_or(0, |h| line(&X_FORWARDED_HOST, h.len()))
            + self
                .request_id
                .as_ref()
                .map_or(0, |id| line(&X_REQUEST_ID, id.len()))
    }
}

/// Header fields the proxy may add to a request or response beyond those it read
/// (forwarding headers, request id, `Host`, `Set-Cookie`, `Vary`): maps are made with
/// this much room, so adding them never grows (rehashes) the map.
pub(crate) const ROOM: usize = 8;

/// The largest map kept (in fields): one that a request of 40 fields made, and more
/// than browsers send. A larger one is freed.
const SPARE_FIELDS: usize = 48;
/// Room (in fields) one thread's spare maps hold in all, at most: ~120 bytes a field,
/// so under 500 KiB. That is a few hundred maps, as many as HTTP/2 clients keep
/// requests in flight (32 connections of 10 streams each hold 320 maps, from their
/// header blocks until their response heads come back), so that such a load takes its
/// maps from here too.
const SPARE_ROOM: usize = 4096;

/// One thread's emptied request maps, and the room they hold in all.
struct Spare {
    maps: Vec<HeaderMap>,
    room: usize,
}

thread_local! {
    static SPARE: std::cell::RefCell<Spare> = const {
        std::cell::RefCell::new(Spare { maps: Vec::new(), room: 0 })
    };
}

/// An empty header map with room for `fields`, a spare one where `recycle` kept one.
/// A request's map holds a dozen fields and more, past the size glibc's per-thread cache
/// serves: made new, each is two trips through the allocator's main path; reused, none.
pub(crate) fn map_with_capacity(fields: usize) -> HeaderMap {
    let spare = SPARE.with(|spare| {
        let mut spare = spare.borrow_mut();
        let map = spare.maps.pop()?;
        spare.room -= map.capacity();
        Some(map)
    });
    match spare {
        Some(mut map) => {
            map.reserve(fields);
            map
        }
        None => HeaderMap::with_capacity(fields),
    }
}

/// Keep a request's map for `map_with_capacity`, emptied (the values it held, slices
/// of the client's read buffer, go now), unless it is large or the kept maps hold
/// `SPARE_ROOM` already.
pub(crate) fn recycle(mut map: HeaderMap) {
    let room = map.capacity();
    if room > SPARE_FIELDS {
        return;
    }
    SPARE.with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.room + room <= SPARE_ROOM {
            map.clear();
            spare.room += room;
            spare.maps.push(map);
        }
    });
}

/// Length of a request id: 128 random bits as hex digits.
const ID_LEN: usize = 32;
/// Request ids made at once, in one buffer each thread takes its next id from (a
/// reference to a slice of it): one allocation per this many requests, not one each.
const IDS_AT_ONCE: usize = 64;

thread_local! {
    static IDS: std::cell::RefCell<bytes::Bytes> = const {
        std::cell::RefCell::new(bytes::Bytes::new())
    };
}

/// 128 random bits as 32 hex digits.
pub(crate) fn request_id() -> HeaderValue {
    IDS.with(|ids| {
        let mut ids = ids.borrow_mut();
        if ids.len() < ID_LEN {
            *ids = fresh_ids();
        }
        let id = ids.split_to(ID_LEN);
        HeaderValue::from_maybe_shared(id).unwrap_or_else(|_| HeaderValue::from_static("0"))
    })
}

/// `IDS_AT_ONCE` request ids, one after the other: each random byte becomes two hex
/// digits through a table, written in place.
fn fresh_ids() -> bytes::Bytes {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    const PAIRS: [[u8; 2]; 256] = {
        let mut pairs = [[0u8; 2]; 256];
        let mut i = 0;
        while i < 256 {
            pairs[i] = [HEX[i >> 4], HEX[i & 0xf]];
            i += 1;
        }
        pairs
    };
    let mut buf = vec![0u8; ID_LEN * IDS_AT_ONCE];
    for digits in buf.chunks_exact_mut(16) {
        for (pair, byte) in digits
            .chunks_exact_mut(2)
            .zip(fastrand::u64(..).to_le_bytes())
        {
            pair.copy_from_slice(&PAIRS[usize::from(byte)]);
        }
    }
    bytes::Bytes::from(buf)
}

/// The host the client asked for: `:authority` / absolute-form URI, else `Host`.
pub(crate) fn request_host(uri: &Uri, headers: &HeaderMap) -> Option<HeaderValue> {
    match uri.authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => headers.get(header::HOST).cloned(),
    }
}

/// Make the request an HTTP/1.1 origin-form request with a `Host` header, joining
/// HTTP/2's split `cookie` headers (RFC 9113 §8.2.3).
pub(crate) fn to_http11(
    version: &mut Version,
    uri: &mut Uri,
    headers: &mut HeaderMap,
    host: Option<&HeaderValue>,
) {
    if *version == Version::HTTP_2 {
        join_cookies(headers);
    }
    *version = Version::HTTP_11;
    if uri.scheme().is_some() || uri.authority().is_some() {
        let origin = uri
            .path_and_query()
            .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
        *uri = origin;
    }
    match host {
        Some(h) => {
            if headers.get(header::HOST) != Some(h) {
                headers.insert(header::HOST, h.clone());
            }
        }
        None => {
            headers.remove(header::HOST);
        }
    }
}

fn join_cookies(headers: &mut HeaderMap) {
    if headers.get_all(header::COOKIE).iter().nth(1).is_none() {
        return;
    }
    let mut joined = Vec::new();
    for (i, v) in headers.get_all(header::COOKIE).iter().enumerate() {
        if i > 0 {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(v.as_bytes());
    }
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, v);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    /// The proxy's own headers into the map, as the request path adds them when hyper's
    /// client sends the request.
    fn add_forwarding(headers: &mut HeaderMap, peer: &Peer, host: Option<&HeaderValue>) {
        forwarding(headers, peer, host).insert_into(headers);
    }

    /// What the proxy's own headers are, written as insertions into the map (as the
    /// request path made them before `Forwarding`): the reference it is checked against.
    fn reference(headers: &mut HeaderMap, peer: &Peer, host: Option<&HeaderValue>) {
        let xff = if peer.trusted && headers.contains_key(&X_FORWARDED_FOR) {
            let mut joined = Vec::new();
            for v in headers.get_all(&X_FORWARDED_FOR) {
                joined.extend_from_slice(v.as_bytes());
                joined.extend_from_slice(b", ");
            }
            joined.extend_from_slice(peer.ip.as_bytes());
            HeaderValue::from_bytes(&joined).unwrap()
        } else {
            peer.ip.clone()
        };
        headers.insert(X_FORWARDED_FOR.clone(), xff);
        let proto = if peer.https { "https" } else { "http" };
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
        match host {
            Some(h) => headers.insert(X_FORWARDED_HOST.clone(), h.clone()),
            None => headers.remove(&X_FORWARDED_HOST),
        };
        headers.entry(&X_REQUEST_ID).or_insert_with(request_id);
    }

    fn peer(trusted: bool) -> Peer {
        Peer {
            https: false,
            ip: HeaderValue::from_static("10.0.0.9"),
            trusted,
        }
    }

    #[test]
    fn connection_named_headers_go_but_the_proxy_headers_are_added_after() {
        let mut h = map(&[
            ("connection", "close, X-Forwarded-For"),
            ("Connection", "x-custom"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-custom", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("host", "example.com"),
            ("x-keep", "yes"),
        ]);
        strip_hop_by_hop(&mut h, false);
        let host = h.get("host").cloned();
        add_forwarding(&mut h, &peer(false), host.as_ref());
        assert_eq!(h["x-forwarded-for"], "10.0.0.9");
        assert_eq!(h["x-forwarded-host"], "example.com");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-request-id"].len(), 32);
        assert_eq!(h["x-keep"], "yes");
        for gone in ["connection", "x-custom", "keep-alive", "te"] {
            assert!(!h.contains_key(gone), "{gone} should be stripped");
        }
    }

    #[test]
    fn every_hop_by_hop_name_goes_with_all_its_values_and_nothing_else() {
        let mut pairs: Vec<(&str, &str)> = vec![("host", "a"), ("x-keep", "yes")];
        for name in hop_by_hop() {
            pairs.push((name.as_str(), "1"));
            pairs.push((name.as_str(), "2"));
        }
        let mut h = map(&pairs);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 2, "left: {h:?}");
        assert_eq!(h["host"], "a");
        assert_eq!(h["x-keep"], "yes");
        // One of them alone, the last the list names.
        let mut h = map(&[("proxy-authenticate", "Basic"), ("x-keep", "yes")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.keys().collect::<Vec<_>>(), ["x-keep"]);
    }

    #[test]
    fn a_recycled_map_comes_back_empty_with_its_room_and_large_ones_are_not_kept() {
        // Each test runs on a thread of its own: this thread's spare maps are these.
        let mut h = map_with_capacity(12);
        let room = h.capacity();
        h.insert(header::HOST, HeaderValue::from_static("a"));
        recycle(h);
        let again = map_with_capacity(4);
        assert!(again.is_empty());
        assert_eq!(again.capacity(), room);
        // Asked for more than it has, it grows.
        recycle(again);
        assert!(map_with_capacity(room + 1).capacity() > room);
        // A map past SPARE_FIELDS is freed, and the kept ones hold SPARE_ROOM at most.
        recycle(HeaderMap::with_capacity(SPARE_FIELDS + 1));
        let kept = || SPARE.with(|s| (s.borrow().maps.len(), s.borrow().room));
        assert_eq!(kept(), (0, 0));
        let each = HeaderMap::<HeaderValue>::with_capacity(SPARE_FIELDS).capacity();
        for _ in 0..SPARE_ROOM / each + 3 {
            recycle(HeaderMap::with_capacity(SPARE_FIELDS));
        }
        assert_eq!(kept(), (SPARE_ROOM / each, SPARE_ROOM / each * each));
        // Taking one out gives its room back.
        let _ = map_with_capacity(1);
        assert_eq!(
            kept(),
            (SPARE_ROOM / each - 1, (SPARE_ROOM / each - 1) * each)
        );
    }

    #[test]
    fn request_ids_are_32_hex_digits_and_differ_across_blocks() {
        let ids: Vec<HeaderValue> = (0..3 * IDS_AT_ONCE + 5).map(|_| request_id()).collect();
        for id in &ids {
            assert_eq!(id.len(), ID_LEN);
            assert!(id
                .as_bytes()
                .iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)));
        }
        let distinct: std::collections::HashSet<&[u8]> = ids.iter().map(|v| v.as_bytes()).collect();
        assert_eq!(distinct.len(), ids.len());
    }

    /// `write_to` writes what `insert_into` puts in the map, in the map's order after
    /// the request's own fields, whatever the request brought.
    #[test]
    fn forwarding_written_out_is_what_the_map_would_hold() {
        // (the request's fields, trusted peer, HTTPS, host)
        type Case<'a> = (&'a [(&'a str, &'a str)], bool, bool, Option<&'a str>);
        let cases: [Case; 6] = [
            (&[("host", "a")], false, false, Some("a")),
            (&[("host", "a")], false, true, None),
            (
                &[
                    ("x-forwarded-for", "6.6.6.6"),
                    ("accept", "*/*"),
                    ("x-forwarded-proto", "https"),
                ],
                false,
                false,
                Some("a"),
            ),
            (
                &[
                    ("x-forwarded-for", "1.1.1.1"),
                    ("x-forwarded-for", "2.2.2.2"),
                    ("x-forwarded-host", "evil"),
                ],
                true,
                true,
                None,
            ),
            (
                &[("x-request-id", "abc"), ("host", "a")],
                true,
                false,
                Some("a"),
            ),
            (
                &[("x-forwarded-host", "evil"), ("x-request-id", "abc")],
                false,
                false,
                None,
            ),
        ];
        for (fields, trusted, https, host) in cases {
            let host = host.map(HeaderValue::from_static);
            let mut peer = peer(trusted);
            peer.https = https;
            let mut written = map(fields);
            let fwd = forwarding(&mut written, &peer, host.as_ref());
            let mut bytes = bytes::BytesMut::new();
            fwd.write_to(&mut bytes);
            assert_eq!(bytes.len(), fwd.len());
            let mut both = written.clone();
            fwd.insert_into(&mut both);
            let mut lines = Vec::new();
            for (name, value) in &written {
                lines.push(format!("{}: {}", name, value.to_str().unwrap()));
            }
            let ours = String::from_utf8(bytes.to_vec()).unwrap();
            lines.extend(ours.split_terminator("\r\n").map(str::to_owned));
            let mut want = Vec::new();
            for (name, value) in &both {
                let value = value.to_str().unwrap();
                want.push(format!("{name}: {value}"));
            }
            assert_eq!(lines, want, "{fields:?} trusted={trusted} https={https}");
            // And the same fields as insertions into the map give (the request id is
            // another draw).
            let mut added = map(fields);
            reference(&mut added, &peer, host.as_ref());
            let mut a: Vec<_> = added.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
            let mut b: Vec<_> = both.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
            for list in [&mut a, &mut b] {
                list.retain(|(n, _)| {
                    *n != X_REQUEST_ID || fields.iter().any(|(f, _)| *f == "x-request-id")
                });
                list.sort_by(|x, y| {
                    x.0.as_str()
                        .cmp(y.0.as_str())
                        .then(x.1.as_bytes().cmp(y.1.as_bytes()))
                });
            }
            assert_eq!(a, b);
            assert_eq!(both.get_all(&X_REQUEST_ID).iter().count(), 1);
            assert_eq!(both.get_all(&X_FORWARDED_FOR).iter().count(), 1);
        }
    }

    #[test]
    fn trusted_peers_extend_x_forwarded_for_and_request_ids_are_kept() {
        let mut h = map(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2"),
            ("x-request-id", "abc"),
        ]);
        add_forwarding(&mut h, &peer(true), None);
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 10.0.0.9");
        assert_eq!(h["x-request-id"], "abc");
    }

    #[test]
    fn host_and_content_length_survive_connection_nomination() {
        let mut h = map(&[
            ("connection", "Host, content-length"),
            ("host", "a"),
            ("content-length", "3"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert!(h.contains_key("host") && h.contains_key("content-length"));
    }

    #[test]
    fn upgrade_keeps_upgrade_headers() {
        let mut h = map(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ]);
        assert!(wants_upgrade(Version::HTTP_11, &Method::GET, &h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
    }

    #[test]
    fn upgrade_offers_keep_only_what_the_proxy_can_carry() {
        let offer = |v: &str, app: &[&str]| {
            let app: Vec<String> = app.iter().map(|s| s.to_string()).collect();
            allowed_upgrade(&map(&[("upgrade", v)]), &app).map(|v| v.to_str().unwrap().to_owned())
        };
        assert_eq!(offer("websocket", &[]).as_deref(), Some("websocket"));
        assert_eq!(offer("WebSocket", &[]).as_deref(), Some("WebSocket"));
        assert_eq!(offer("h2c", &["h2c"]), None);
        assert_eq!(offer("h2c/2, websocket", &[]).as_deref(), Some("websocket"));
        assert_eq!(offer("foo/2", &[]), None);
        assert_eq!(offer("foo/2, bar", &["FOO"]).as_deref(), Some("foo/2"));
        assert_eq!(offer(" , ", &[]), None);
    }

    #[test]
    fn underscore_names_never_shadow_and_lengths_become_canonical() {
        let mut h = map(&[
            ("x_forwarded_for", "6.6.6.6"),
            ("X_REQUEST_ID", "x"),
            ("transfer_encoding", "chunked"),
            ("forwarded", "for=1.1.1.1"),
            ("x_app", "1"),
        ]);
        filter_underscores(&mut h, UnderscoreHeaders::Forward);
        let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["forwarded", "x_app"]);
        filter_underscores(&mut h, UnderscoreHeaders::Drop);
        assert!(!h.contains_key("x_app"));
        for (given, want) in [("010", "10"), ("0", "0"), ("000", "0"), ("10", "10")] {
            let mut h = map(&[("content-length", given)]);
            canonical_length(&mut h);
            assert_eq!(h["content-length"], want, "{given}");
        }
    }

    /// The lookup-based check `check_framing` replaced, kept as its reference.
    fn check_framing_by_lookups(headers: &HeaderMap) -> Result<(), ProxyError> {
        let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
        if let Some(first) = lengths.next() {
            if headers.contains_key(header::TRANSFER_ENCODING) {
                return Err(ProxyError::BadRequest(
                    "both Content-Length and Transfer-Encoding are present",
                ));
            }
            if lengths.any(|other| other != first) {
                return Err(ProxyError::BadRequest("conflicting Content-Length headers"));
            }
        }
        let mut codings = headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','));
        if let Some(first) = codings.next() {
            if !first.trim_ascii().eq_ignore_ascii_case(b"chunked") || codings.next().is_some() {
                return Err(ProxyError::BadRequest(
                    "Transfer-Encoding other than a single `chunked`",
                ));
            }
        }
        if headers.get_all(header::HOST).iter().nth(1).is_some() {
            return Err(ProxyError::BadRequest("more than one Host header"));
        }
        Ok(())
    }

    /// Every request of up to three fields drawn from the framing fields (and one
    /// other), with values that conflict, repeat, differ in case or are empty: the
    /// one-pass check gives the same answer and the same reason as the lookups.
    #[test]
    fn one_pass_framing_check_answers_as_the_lookups() {
        let names = ["content-length", "transfer-encoding", "host", "x-a"];
        let values = [
            "3",
            "4",
            "chunked",
            "Chunked",
            "gzip, chunked",
            "",
            "chunked,",
        ];
        let fields: Vec<(&str, &str)> = names
            .iter()
            .flat_map(|n| values.iter().map(move |v| (*n, *v)))
            .collect();
        let mut checked = 0;
        for a in &fields {
            for b in &fields {
                for c in &fields {
                    for len in 1..=3 {
                        let h = map(&[*a, *b, *c][..len]);
                        let one = check_framing(&h).map_err(|e| format!("{e:?}"));
                        let reference = check_framing_by_lookups(&h).map_err(|e| format!("{e:?}"));
                        assert_eq!(one, reference, "{:?}", &[*a, *b, *c][..len]);
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, fields.len().pow(3) * 3);
    }

    #[test]
    fn framing_conflicts_are_refused() {
        let cl_te = map(&[("content-length", "3"), ("transfer-encoding", "chunked")]);
        assert!(check_framing(&cl_te).is_err());
        let two = map(&[("content-length", "3"), ("content-length", "4")]);
        assert!(check_framing(&two).is_err());
        let same = map(&[("content-length", "3"), ("content-length", "3")]);
        assert!(check_framing(&same).is_ok());
        for te in ["gzip, chunked", "chunked, identity", "identity", ""] {
            assert!(
                check_framing(&map(&[("transfer-encoding", te)])).is_err(),
                "{te}"
            );
        }
        let twice = map(&[
            ("transfer-encoding", "chunked"),
            ("transfer-encoding", "chunked"),
        ]);
        assert!(check_framing(&twice).is_err());
        assert!(check_framing(&map(&[("transfer-encoding", "Chunked")])).is_ok());
        let hosts = map(&[("host", "a"), ("host", "b")]);
        assert!(check_framing(&hosts).is_err());
    }

    #[test]
    fn http2_requests_become_origin_form_with_host_and_one_cookie_header() {
        let mut version = Version::HTTP_2;
        let mut uri: Uri = "http://example.com:8080/a?b=1".parse().unwrap();
        let mut h = map(&[("cookie", "a=1"), ("cookie", "b=2")]);
        let host = request_host(&uri, &h);
        to_http11(&mut version, &mut uri, &mut h, host.as_ref());
        assert_eq!(version, Version::HTTP_11);
        assert_eq!(uri, "/a?b=1");
        assert_eq!(h["host"], "example.com:8080");
        assert_eq!(h["cookie"], "a=1; b=2");
    }
}
