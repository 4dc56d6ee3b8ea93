//! Prometheus text exposition format 0.0.4 for a set of version snapshots.

use std::fmt::Write;

use crate::{MetricsSnapshot, CLASS_LABELS};

/// Upper bounds (µs) of the exported `le` buckets: 0.5 ms .. 60 s, plus `+Inf`.
///
/// A subset of the internal buckets keeps scrapes small; the full resolution stays
/// available to the controller through snapshots.
const LE_MICROS: [u64; 16] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000,
];

/// `(app, version, snapshot)` rows as produced by `MetricsRegistry::snapshot_all`.
type Row = (String, String, MetricsSnapshot);

/// Appends every metric family for `rows` to `out`.
pub(crate) fn render(rows: &[Row], out: &mut String) {
    family(
        out,
        "baton_requests_total",
        "counter",
        "Requests finished, by response status class (none = no response sent).",
    );
    for (app, version, snap) in rows {
        for (class, n) in CLASS_LABELS.iter().zip(snap.by_class) {
            sample(
                out,
                "baton_requests_total",
                &labels(app, version, &[("class", class)]),
                n,
            );
        }
    }
    family(
        out,
        "baton_request_duration_seconds",
        "histogram",
        "Time from request received to response finished.",
    );
    rows.iter()
        .for_each(|(app, version, snap)| duration_histogram(out, app, version, snap));
    family(
        out,
        "baton_in_flight_requests",
        "gauge",
        "Requests currently in progress.",
    );
    for (app, version, snap) in rows {
        sample(
            out,
            "baton_in_flight_requests",
            &labels(app, version, &[]),
            snap.in_flight,
        );
    }
    family(
        out,
        "baton_request_bytes_total",
        "counter",
        "Request body bytes received from clients.",
    );
    for (app, version, snap) in rows {
        sample(
            out,
            "baton_request_bytes_total",
            &labels(app, version, &[]),
            snap.bytes_in,
        );
    }
    family(
        out,
        "baton_response_bytes_total",
        "counter",
        "Response body bytes sent to clients.",
    );
    for (app, version, snap) in rows {
        sample(
            out,
            "baton_response_bytes_total",
            &labels(app, version, &[]),
            snap.bytes_out,
        );
    }
}

/// Counters of the proxy as a whole (no app or version labels).
pub(crate) fn render_proxy(body_timeouts: u64, out: &mut String) {
    let name = "baton_request_body_timeouts_total";
    family(
        out,
        name,
        "counter",
        "Request bodies cut because the client sent nothing for body_read_timeout.",
    );
    let _ = writeln!(out, "{name} {body_timeouts}");
}

/// Access log lines lost, by reason (`queue_full`, `write_failed`).
pub(crate) fn render_access_log(queue_full: u64, write_failed: u64, out: &mut String) {
    let name = "baton_access_log_dropped_total";
    family(
        out,
        name,
        "counter",
        "Access log lines lost (never a request): the writer's queue was full, or the write failed.",
    );
    let _ = writeln!(out, "{name}{{reason=\"queue_full\"}} {queue_full}");
    let _ = writeln!(out, "{name}{{reason=\"write_failed\"}} {write_failed}");
}

/// The `_bucket`, `_sum` and `_count` series of one version's latency histogram.
fn duration_histogram(out: &mut String, app: &str, version: &str, snap: &MetricsSnapshot) {
    let name = "baton_request_duration_seconds";
    let h = &snap.latency;
    for le in LE_MICROS {
        let le_label = (le as f64 / 1e6).to_string();
        let count = h.count_at_or_below(le);
        sample(
            out,
            &format!("{name}_bucket"),
            &labels(app, version, &[("le", &le_label)]),
            count,
        );
    }
    let count = h.count();
    sample(
        out,
        &format!("{name}_bucket"),
        &labels(app, version, &[("le", "+Inf")]),
        count,
    );
    let sum = h.sum_micros() as f64 / 1e6;
    sample(out, &format!("{name}_sum"), &labels(app, version, &[]), sum);
    sample(
        out,
        &format!("{name}_count"),
        &labels(app, version, &[]),
        count,
    );
}

/// `# HELP` and `# TYPE` lines of a metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One sample line: `name{labels} value`.
fn sample(out: &mut String, name: &str, labels: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "{name}{{{labels}}} {value}");
}

/// `app="..",version=".."` plus extra pairs, values escaped.
fn labels(app: &str, version: &str, extra: &[(&str, &str)]) -> String {
    let mut s = String::new();
    let pairs = [("app", app), ("version", version)];
    for (i, (key, value)) in pairs.iter().chain(extra).enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{key}=\"{}\"", escape_label_value(value));
    }
    s
}

/// Escapes a label value: backslash, double quote and newline, per the text format.
fn escape_label_value(value: &str) -> String {
    let mut s = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_label_values() {
        assert_eq!(escape_label_value(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label_value("line\nbreak"), "line\\nbreak");
        assert_eq!(escape_label_value("plain-v1.2"), "plain-v1.2");
    }
}
