//! The two line formats: nginx's `combined` layout followed by baton's fields, and one
//! JSON object per line.

use super::AccessRecord;
use http::{HeaderValue, Version};
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How a line looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessLogFormat {
    /// nginx's `combined` (`$remote_addr - $remote_user [$time_local] "$request" $status
    /// $body_bytes_sent "$http_referer" "$http_user_agent"`, time in UTC), then
    /// `rt= urt= host= app= version= instance= rid=`: a parser of nginx's combined lines
    /// reads the first nine fields unchanged.
    #[default]
    Combined,
    /// One JSON object per line.
    Json,
}

impl AccessLogFormat {
    /// Append `record` as one line (with its `\n`) to `out`.
    pub(crate) fn write(self, record: &AccessRecord, out: &mut Vec<u8>) {
        match self {
            AccessLogFormat::Combined => combined(record, out),
            AccessLogFormat::Json => json(record, out),
        }
    }
}

fn combined(r: &AccessRecord, out: &mut Vec<u8>) {
    escaped(out, r.client.as_bytes());
    let _ = write!(out, " - - [{}] \"", clf_time(r.time));
    escaped(out, r.method.as_str().as_bytes());
    out.push(b' ');
    escaped(out, r.target.as_bytes());
    let _ = write!(
        out,
        " {}\" {} {} \"",
        protocol(r.protocol),
        r.status,
        r.bytes
    );
    header_or_dash(out, r.referer.as_ref());
    out.extend_from_slice(b"\" \"");
    header_or_dash(out, r.user_agent.as_ref());
    let _ = write!(out, "\" rt={:.3} urt=", r.duration.as_secs_f64());
    match r.upstream {
        Some(u) => {
            let _ = write!(out, "{:.3}", u.as_secs_f64());
        }
        None => out.push(b'-'),
    }
    let fields = [
        (" host=", r.host.as_ref().map(HeaderValue::as_bytes)),
        (" app=", r.app.as_deref().map(str::as_bytes)),
        (" version=", r.version.as_deref().map(str::as_bytes)),
        (" instance=", r.instance.as_deref().map(str::as_bytes)),
        (" rid=", r.request_id.as_ref().map(HeaderValue::as_bytes)),
    ];
    for (key, value) in fields {
        out.extend_from_slice(key.as_bytes());
        match value {
            Some(v) if !v.is_empty() => escaped_word(out, v),
            _ => out.push(b'-'),
        }
    }
    out.push(b'\n');
}

fn json(r: &AccessRecord, out: &mut Vec<u8>) {
    let line = serde_json::json!({
        "time": rfc3339(r.time),
        "client": String::from_utf8_lossy(r.client.as_bytes()),
        "host": text(r.host.as_ref()),
        "method": r.method.as_str(),
        "path": r.target,
        "protocol": protocol(r.protocol),
        "status": r.status,
        "bytes": r.bytes,
        "duration_ms": millis(r.duration),
        "upstream_ms": r.upstream.map(millis),
        "app": r.app.as_deref(),
        "version": r.version.as_deref(),
        "instance": r.instance.as_deref(),
        "request_id": text(r.request_id.as_ref()),
        "referer": text(r.referer.as_ref()),
        "user_agent": text(r.user_agent.as_ref()),
    });
    let _ = serde_json::to_writer(&mut *out, &line);
    out.push(b'\n');
}

fn text(v: Option<&HeaderValue>) -> Option<std::borrow::Cow<'_, str>> {
    v.map(|v| String::from_utf8_lossy(v.as_bytes()))
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn protocol(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

fn header_or_dash(out: &mut Vec<u8>, v: Option<&HeaderValue>) {
    match v {
        Some(v) => escaped(out, v.as_bytes()),
        None => out.push(b'-'),
    }
}

/// nginx's escaping: `"`, `\`, control bytes and bytes above 0x7e as `\xHH`.
fn escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(b);
        }
    }
}

/// As [`escaped`], and spaces too, so a `key=value` field stays one word.
fn escaped_word(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        if b == b' ' {
            out.extend_from_slice(b"\\x20");
        } else {
            escaped(out, &[b]);
        }
    }
}

/// UTC civil time from seconds since the epoch: (year, month 1-12, day, h, m, s).
fn civil(t: SystemTime) -> (i64, u32, u32, u64, u64, u64, u32) {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's days_from_civil inverse.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    let millis = since.subsec_millis();
    (
        year,
        month,
        day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        millis,
    )
}

/// nginx's `$time_local` layout, in UTC: `02/Dec/2026:18:25:00 +0000`.
fn clf_time(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s, _) = civil(t);
    let month = MONTHS[(mo as usize).saturating_sub(1) % 12];
    format!("{d:02}/{month}/{y}:{h:02}:{mi:02}:{s:02} +0000")
}

/// `2026-12-02T18:25:00.123Z`.
fn rfc3339(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, ms) = civil(t);
    format!("{y}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http::Method;
    use std::sync::Arc;

    fn record() -> AccessRecord {
        AccessRecord {
            // 2026-12-02T18:25:07.250Z
            time: UNIX_EPOCH + Duration::from_millis(1_796_235_907_250),
            client: HeaderValue::from_static("127.0.0.1"),
            host: Some(HeaderValue::from_static("shop.example")),
            method: Method::GET,
            target: "/cart?id=\"1\"".into(),
            protocol: Version::HTTP_11,
            status: 200,
            bytes: 512,
            duration: Duration::from_micros(12_345),
            upstream: Some(Duration::from_micros(10_000)),
            app: Some(Arc::from("web")),
            version: Some(Arc::from("v2")),
            instance: Some(Arc::from("web-v2-1")),
            request_id: Some(HeaderValue::from_static("abc 1")),
            referer: None,
            user_agent: Some(HeaderValue::from_static("curl/8.0")),
        }
    }

    #[test]
    fn combined_is_nginx_layout_then_baton_fields() {
        let mut out = Vec::new();
        AccessLogFormat::Combined.write(&record(), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "127.0.0.1 - - [02/Dec/2026:18:25:07 +0000] \"GET /cart?id=\\x221\\x22 HTTP/1.1\" \
             200 512 \"-\" \"curl/8.0\" rt=0.012 urt=0.010 host=shop.example app=web \
             version=v2 instance=web-v2-1 rid=abc\\x201\n"
        );
    }

    #[test]
    fn json_is_one_object_per_line() {
        let mut r = record();
        r.upstream = None;
        r.app = None;
        let mut out = Vec::new();
        AccessLogFormat::Json.write(&r, &mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["time"], "2026-12-02T18:25:07.250Z");
        assert_eq!(v["path"], "/cart?id=\"1\"");
        assert_eq!(v["duration_ms"], 12.345);
        assert!(v["upstream_ms"].is_null() && v["app"].is_null());
        assert_eq!(v["version"], "v2");
        assert_eq!(v["request_id"], "abc 1");
    }

    #[test]
    fn civil_dates_are_right_across_leap_years() {
        let day = |d: u64| UNIX_EPOCH + Duration::from_secs(d * 86_400);
        assert_eq!(rfc3339(day(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(day(11_016)), "2000-02-29T00:00:00.000Z");
        assert_eq!(clf_time(day(19_782)), "29/Feb/2024:00:00:00 +0000");
    }
}
