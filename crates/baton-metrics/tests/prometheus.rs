//! Checks `MetricsRegistry::render_prometheus` against the text exposition format 0.0.4
//! with a small independent parser: line grammar, HELP/TYPE before samples, cumulative
//! histogram buckets, and label escaping that round-trips.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use baton_metrics::MetricsRegistry;

/// One parsed sample line.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parses `{k="v",...}` (starting after `{`); returns labels and the rest after `}`.
fn parse_labels(mut s: &str) -> (BTreeMap<String, String>, &str) {
    let mut labels = BTreeMap::new();
    loop {
        if let Some(rest) = s.strip_prefix('}') {
            return (labels, rest);
        }
        s = s.strip_prefix(',').unwrap_or(s);
        let (key, rest) = s.split_once("=\"").expect("label needs =\"");
        assert!(
            is_metric_name(key) && !key.contains(':'),
            "bad label name {key:?}"
        );
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().expect("unterminated label value") {
                (i, '"') => break i,
                (_, '\\') => match chars.next().expect("dangling escape").1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    other => panic!("invalid escape \\{other}"),
                },
                (_, c) => value.push(c),
            }
        };
        assert!(
            labels.insert(key.to_owned(), value).is_none(),
            "duplicate label {key}"
        );
        s = &rest[end + 1..];
    }
}

fn parse_sample(line: &str) -> Sample {
    let name_end = line.find(['{', ' ']).expect("sample without value");
    let name = &line[..name_end];
    assert!(is_metric_name(name), "bad metric name {name:?}");
    let (labels, rest) = match line[name_end..].strip_prefix('{') {
        Some(after) => parse_labels(after),
        None => (BTreeMap::new(), &line[name_end..]),
    };
    let value = rest.strip_prefix(' ').expect("space before value");
    let value = match value {
        "+Inf" => f64::INFINITY,
        v => v
            .parse()
            .unwrap_or_else(|_| panic!("bad value {v:?} in {line:?}")),
    };
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

/// Parses the whole exposition, checking HELP/TYPE precede each family's samples.
fn parse(text: &str) -> Vec<Sample> {
    assert!(text.ends_with('\n'), "exposition must end with a newline");
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helped = Vec::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.push(rest.split_once(' ').unwrap().0.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "TYPE twice: {name}"
            );
        } else {
            assert!(
                !line.starts_with('#') && !line.is_empty(),
                "unexpected line {line:?}"
            );
            let sample = parse_sample(line);
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| sample.name.strip_suffix(suffix))
                .filter(|base| types.get(*base).is_some_and(|k| k == "histogram"))
                .unwrap_or(&sample.name)
                .to_owned();
            assert!(types.contains_key(&family), "sample before TYPE: {line}");
            assert!(helped.contains(&family), "sample before HELP: {line}");
            samples.push(sample);
        }
    }
    samples
}

fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> &'a Sample {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v))
        })
        .unwrap_or_else(|| panic!("no {name} {labels:?}"))
}

fn populated_registry() -> MetricsRegistry {
    let registry = MetricsRegistry::new();
    let web = registry.version("web", "v1");
    for ms in [0, 1, 3, 7, 20, 90, 400, 2_000, 70_000] {
        web.request_started();
        web.request_finished(200, Duration::from_millis(ms), 10, 100);
    }
    web.request_started();
    web.request_finished(502, Duration::from_millis(5), 0, 0);
    web.request_started();
    registry.version("web", "v2");
    registry
}

#[test]
fn exposition_parses_and_has_every_family() {
    let mut text = String::new();
    populated_registry().render_prometheus(&mut text);
    let samples = parse(&text);
    let ok = find(
        &samples,
        "baton_requests_total",
        &[("app", "web"), ("version", "v1"), ("class", "2xx")],
    );
    assert_eq!(ok.value, 9.0);
    let bad = find(
        &samples,
        "baton_requests_total",
        &[("version", "v1"), ("class", "5xx")],
    );
    assert_eq!(bad.value, 1.0);
    assert_eq!(
        find(&samples, "baton_in_flight_requests", &[("version", "v1")]).value,
        1.0
    );
    assert_eq!(
        find(&samples, "baton_request_bytes_total", &[("version", "v1")]).value,
        90.0
    );
    assert_eq!(
        find(&samples, "baton_response_bytes_total", &[("version", "v1")]).value,
        900.0
    );
    assert_eq!(
        find(
            &samples,
            "baton_request_duration_seconds_count",
            &[("version", "v1")]
        )
        .value,
        10.0
    );
    let sum = find(
        &samples,
        "baton_request_duration_seconds_sum",
        &[("version", "v1")],
    )
    .value;
    assert!((sum - 72.526).abs() < 1e-9, "sum {sum}");
    assert_eq!(
        find(
            &samples,
            "baton_requests_total",
            &[("version", "v2"), ("class", "none")]
        )
        .value,
        0.0
    );
}

#[test]
fn histogram_buckets_are_cumulative_and_end_at_count() {
    let mut text = String::new();
    populated_registry().render_prometheus(&mut text);
    let samples = parse(&text);
    for version in ["v1", "v2"] {
        let buckets: Vec<(f64, f64)> = samples
            .iter()
            .filter(|s| {
                s.name == "baton_request_duration_seconds_bucket" && s.labels["version"] == version
            })
            .map(|s| {
                let le = &s.labels["le"];
                (
                    if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().unwrap()
                    },
                    s.value,
                )
            })
            .collect();
        assert!(buckets.len() > 5);
        assert!(
            buckets.windows(2).all(|w| w[0].0 < w[1].0),
            "le not ascending: {buckets:?}"
        );
        assert!(
            buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "not cumulative: {buckets:?}"
        );
        let (last_le, last_count) = *buckets.last().unwrap();
        assert_eq!(last_le, f64::INFINITY);
        let count = find(
            &samples,
            "baton_request_duration_seconds_count",
            &[("version", version)],
        )
        .value;
        assert_eq!(last_count, count);
    }
    // 0,1,3 ms land at or below le=0.005; 70 s is only in +Inf.
    let le5ms = find(
        &samples,
        "baton_request_duration_seconds_bucket",
        &[("version", "v1"), ("le", "0.005")],
    );
    assert_eq!(le5ms.value, 3.0);
    let le60 = find(
        &samples,
        "baton_request_duration_seconds_bucket",
        &[("version", "v1"), ("le", "60")],
    );
    assert_eq!(le60.value, 9.0);
}

#[test]
fn label_values_are_escaped_and_round_trip() {
    let registry = MetricsRegistry::new();
    let nasty = "we\"ird\\app\nname";
    registry.version(nasty, "v\"1");
    let mut text = String::new();
    registry.render_prometheus(&mut text);
    let samples: Vec<_> = parse(&text)
        .into_iter()
        .filter(|s| {
            s.name != "baton_request_body_timeouts_total"
                && s.name != "baton_access_log_dropped_total"
        })
        .collect();
    assert!(!samples.is_empty());
    assert!(samples
        .iter()
        .all(|s| s.labels["app"] == nasty && s.labels["version"] == "v\"1"));
}

#[test]
fn empty_registry_renders_only_metadata_and_proxy_counters() {
    let mut text = String::new();
    MetricsRegistry::new().render_prometheus(&mut text);
    let samples = parse(&text);
    // The proxy-wide counters have no app or version, so they are there from the start.
    assert_eq!(samples.len(), 3, "{text}");
    assert_eq!(samples[0].name, "baton_request_body_timeouts_total");
    assert!(samples[0].labels.is_empty());
    assert_eq!(samples[0].value, 0.0);
    for (s, reason) in samples[1..].iter().zip(["queue_full", "write_failed"]) {
        assert_eq!(s.name, "baton_access_log_dropped_total");
        assert_eq!(s.labels["reason"], reason);
        assert_eq!(s.value, 0.0);
    }
    assert_eq!(text.lines().filter(|l| l.starts_with("# TYPE")).count(), 7);
}
