//! Request-target and Host rules, checked on what hyper parsed before anything is
//! routed (see docs/SECURITY.md): an HTTP/1.1 request needs exactly one valid Host
//! (RFC 9112 §3.2); a Host or authority is `host[:port]` per RFC 3986 with no
//! userinfo; HTTP/2's `:authority` and `host` must agree (RFC 9113 §8.3.1); dot-segments
//! in the path are resolved (RFC 3986 §5.2.4, with `%2e` read as `.`) and a path that
//! climbs above the root is refused. Routing and the backend then see the same path.

use crate::error::ProxyError;
use http::header::{self, HeaderMap};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Uri, Version};

/// Check the request's Host, authority and path; resolve dot-segments in place.
pub(crate) fn check(parts: &mut Parts) -> Result<(), ProxyError> {
    check_host(parts.version, &parts.uri, &parts.headers)?;
    if let Some(resolved) = resolve_path(&parts.uri)? {
        let mut p = std::mem::take(&mut parts.uri).into_parts();
        p.path_and_query = Some(resolved);
        parts.uri = Uri::from_parts(p)
            .map_err(|_| ProxyError::BadRequest("the request target is not a valid URI"))?;
    }
    Ok(())
}

fn check_host(version: Version, uri: &Uri, headers: &HeaderMap) -> Result<(), ProxyError> {
    let host = headers.get(header::HOST);
    if version == Version::HTTP_11 && host.is_none() {
        return Err(ProxyError::BadRequest(
            "an HTTP/1.1 request must carry a Host header",
        ));
    }
    if let Some(h) = host {
        if !valid_authority(h.as_bytes(), true) {
            return Err(ProxyError::BadRequest(
                "Host is not a valid host[:port] (RFC 3986)",
            ));
        }
    }
    if let Some(authority) = uri.authority() {
        if authority.as_str().contains('@') {
            return Err(ProxyError::BadRequest(
                "the request target carries userinfo (user@host)",
            ));
        }
        if !valid_authority(authority.as_str().as_bytes(), false) {
            return Err(ProxyError::BadRequest(
                "the request target's authority is not a valid host[:port] (RFC 3986)",
            ));
        }
        if version == Version::HTTP_2 {
            if let Some(h) = host {
                if !h
                    .as_bytes()
                    .eq_ignore_ascii_case(authority.as_str().as_bytes())
                {
                    return Err(ProxyError::BadRequest(
                        ":authority and host name different hosts",
                    ));
                }
            }
        }
    }
    Ok(())
}

/// `host [ ":" port ]` of RFC 3986 §3.2.2–3.2.3: an IP literal in brackets, or a
/// reg-name (unreserved, sub-delims, percent-escapes; this also covers IPv4); the port
/// at most 5 digits. An empty Host is allowed (RFC 9112 §3.2: a target without an
/// authority), an empty authority is not.
pub(crate) fn valid_authority(value: &[u8], empty_ok: bool) -> bool {
    if value.is_empty() {
        return empty_ok;
    }
    let (host, port) = if value.first() == Some(&b'[') {
        let Some(close) = value.iter().position(|b| *b == b']') else {
            return false;
        };
        let inside = &value[1..close];
        let ok = std::str::from_utf8(inside)
            .ok()
            .and_then(|s| s.parse::<std::net::Ipv6Addr>().ok())
            .is_some();
        if !ok {
            return false;
        }
        match &value[close + 1..] {
            [] => return true,
            [b':', port @ ..] => (&[][..], Some(port)),
            _ => return false,
        }
    } else {
        match value.iter().rposition(|b| *b == b':') {
            Some(at) => (&value[..at], Some(&value[at + 1..])),
            None => (value, None),
        }
    };
    if let Some(port) = port {
        if port.len() > 5 || !port.iter().all(u8::is_ascii_digit) {
            return false;
        }
    }
    valid_reg_name(host)
}

fn valid_reg_name(host: &[u8]) -> bool {
    let mut i = 0;
    while i < host.len() {
        match host[i] {
            b'%' => {
                let hex = |j: usize| host.get(j).is_some_and(u8::is_ascii_hexdigit);
                if !(hex(i + 1) && hex(i + 2)) {
                    return false;
                }
                i += 3;
                continue;
            }
            b if REG_NAME[b as usize] => {}
            _ => return false,
        }
        i += 1;
    }
    true
}

/// The bytes a reg-name holds as they are (RFC 3986 §3.2.2): unreserved and
/// sub-delims. One lookup per byte: every request's Host goes through it.
static REG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric();
        b += 1;
    }
    let others = b"-._~!$&'()*+,;=";
    let mut i = 0;
    while i < others.len() {
        table[others[i] as usize] = true;
        i += 1;
    }
    table
};

/// The path with its dot-segments resolved, if it has any; an error if they climb
/// above the root. Only origin-form paths (starting with `/`) are touched.
fn resolve_path(uri: &Uri) -> Result<Option<PathAndQuery>, ProxyError> {
    let path = uri.path();
    if !path.starts_with('/') || !has_dot_segment(path) {
        return Ok(None);
    }
    let resolved = remove_dot_segments(path).ok_or(ProxyError::BadRequest(
        "the path climbs above the root with `..`",
    ))?;
    let text = match uri.query() {
        Some(q) => format!("{resolved}?{q}"),
        None => resolved,
    };
    PathAndQuery::try_from(text)
        .map(Some)
        .map_err(|_| ProxyError::BadRequest("the request target is not a valid URI"))
}

/// Whether a segment is `.` or `..`, also when written `%2e` (RFC 3986 §6.2.2.2: a
/// percent-escaped unreserved character is the character; backends decode it).
fn dot_segment(seg: &str) -> Option<u8> {
    let b = seg.as_bytes();
    let mut dots = 0u8;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'.' {
            i += 1;
        } else if b[i] == b'%'
            && b.get(i + 1) == Some(&b'2')
            && matches!(b.get(i + 2), Some(b'e' | b'E'))
        {
            i += 3;
        } else {
            return None;
        }
        dots += 1;
        if dots > 2 {
            return None;
        }
    }
    (dots > 0).then_some(dots)
}

fn has_dot_segment(path: &str) -> bool {
    // A dot-segment needs a `.` or a `%`: most paths have neither, and one pass over
    // their bytes answers without splitting them.
    path.bytes().any(|b| b == b'.' || b == b'%')
        && path.split('/').any(|s| dot_segment(s).is_some())
}

/// RFC 3986 §5.2.4 on an absolute path, except that `..` at the root is an error
/// (`None`) instead of being dropped.
pub(crate) fn remove_dot_segments(path: &str) -> Option<String> {
    let segments: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    let last = segments.len() - 1;
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, seg) in segments.iter().enumerate() {
        match dot_segment(seg) {
            Some(1) => {}
            Some(_) => {
                out.pop()?;
            }
            None => {
                out.push(seg);
                continue;
            }
        }
        // A trailing dot-segment names the directory: keep its slash.
        if i == last {
            out.push("");
        }
    }
    Some(format!("/{}", out.join("/")))
}

/// Fuzzing entry point, not an API: the Host check and the dot-segment resolution on
/// arbitrary bytes. The resolved path never contains a dot-segment and never climbs.
#[doc(hidden)]
pub fn fuzz_target(data: &[u8]) -> (bool, Option<String>) {
    let valid = valid_authority(data, true);
    let resolved = std::str::from_utf8(data)
        .ok()
        .filter(|s| s.starts_with('/'))
        .and_then(remove_dot_segments);
    if let Some(p) = &resolved {
        assert!(p.starts_with('/'), "{p:?}");
        assert!(!has_dot_segment(p), "{p:?} still has a dot-segment");
    }
    (valid, resolved)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_resolve_or_refuse_above_the_root() {
        for (path, want) in [
            ("/a/b/../c", Some("/a/c")),
            ("/a/./b", Some("/a/b")),
            ("/a/..", Some("/")),
            ("/a/.", Some("/a/")),
            ("/a/%2e%2E/b", Some("/b")),
            ("/a/.%2e/", Some("/")),
            ("/a/..b/...", Some("/a/..b/...")),
            ("//x/../y", Some("//y")),
            ("/..", None),
            ("/a/../../etc/passwd", None),
            ("/%2e%2e/x", None),
        ] {
            assert_eq!(remove_dot_segments(path).as_deref(), want, "{path}");
        }
    }

    /// The shortcut over paths without `.` or `%` answers as the segments do.
    #[test]
    fn paths_without_dots_or_escapes_have_no_dot_segment() {
        for (path, want) in [
            ("/", false),
            ("/api/v1/users", false),
            ("/a/./b", true),
            ("/a/..", true),
            ("/a/%2e/b", true),
            ("/a/%2E%2e", true),
            ("/a/%41/b", false),
            ("/file.txt", false),
            ("/a/..b", false),
        ] {
            assert_eq!(has_dot_segment(path), want, "{path}");
            let by_segments = path.split('/').any(|s| dot_segment(s).is_some());
            assert_eq!(by_segments, want, "{path}");
        }
    }

    #[test]
    fn hosts_follow_rfc_3986() {
        for ok in [
            "example.com",
            "example.com:8080",
            "127.0.0.1:1",
            "[::1]",
            "[::1]:80",
            "a%41b",
            "x:",
        ] {
            assert!(valid_authority(ok.as_bytes(), false), "{ok}");
        }
        for bad in [
            "a b",
            "x/../y",
            "u@evil.test",
            "[::1",
            "[zz]",
            "x:123456",
            "x:8a",
            "a%4",
            "a\\b",
        ] {
            assert!(!valid_authority(bad.as_bytes(), true), "{bad}");
        }
        assert!(valid_authority(b"", true));
        assert!(!valid_authority(b"", false));
    }

    #[test]
    fn a_reg_name_holds_unreserved_and_sub_delims_only() {
        for b in 0..=255u8 {
            let want = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b);
            assert_eq!(valid_reg_name(&[b]), want, "byte {b:#04x}");
        }
    }
}
