//! `[apps.X.analysis]` through the config parser: defaults, and nonsense refused at
//! `file:line:column` with the key and the fix (what `baton validate` prints).

#![allow(clippy::unwrap_used)]

use baton_analysis::Percentile;
use baton_config::parse;
use baton_core::HumanDuration;
use std::path::Path;

const WEB: &str = "[apps.web]\ncommand = \"./web\"\nstrategy = \"canary\"\n";

fn web(extra: &str) -> String {
    format!("{WEB}{extra}")
}

/// Asserts that the only problem is at `line:column` and its message contains every needle.
#[track_caller]
fn assert_error(text: &str, line_col: &str, needles: &[&str]) {
    let message = match parse(text, Path::new("baton.toml")) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    };
    let prefix = format!("baton.toml:{line_col}: ");
    assert!(
        message.starts_with(&prefix),
        "expected {prefix:?} in:\n{message}"
    );
    assert_eq!(
        message.lines().count(),
        1,
        "one problem expected:\n{message}"
    );
    for needle in needles {
        assert!(
            message.contains(needle),
            "expected {needle:?} in:\n{message}"
        );
    }
}

#[test]
fn without_the_section_analysis_is_off() {
    let cfg = parse(WEB, Path::new("baton.toml")).unwrap();
    let analysis = &cfg.apps["web"].analysis;
    assert!(!analysis.enabled);
    assert_eq!(analysis.min_requests, 100);
}

#[test]
fn a_section_is_read_with_its_defaults() {
    let cfg = parse(
        &web(
            "[apps.web.analysis]\nmax_error_rate = 0.01\nmax_latency = { p99 = \"300ms\", \"p99.9\" = \"1s\" }\n\
             [apps.web.analysis.webhooks]\npre_promote = \"http://127.0.0.1:9000/gate\"\n\
             [[apps.web.analysis.prometheus]]\nname = \"queue\"\nurl = \"http://127.0.0.1:9090\"\nquery = \"up\"\nmin = 1\n",
        ),
        Path::new("baton.toml"),
    )
    .unwrap();
    let a = &cfg.apps["web"].analysis;
    assert!(a.enabled);
    assert_eq!(a.interval, HumanDuration::from_secs(10));
    assert_eq!(a.failure_limit, 1);
    assert_eq!(a.confidence, 0.95);
    assert_eq!(a.max_error_rate, Some(0.01));
    assert_eq!(
        a.max_latency.get(&Percentile::P99),
        Some(&HumanDuration::from_millis(300))
    );
    assert_eq!(a.max_latency.len(), 2);
    assert_eq!(a.webhooks.timeout, HumanDuration::from_secs(5));
    assert_eq!(a.prometheus[0].name, "queue");
}

#[test]
fn a_negative_rate_is_refused() {
    assert_error(
        &web("[apps.web.analysis]\nmax_error_rate = -0.1\n"),
        "5:1",
        &[
            "[apps.web.analysis]",
            "`max_error_rate` is -0.1",
            "between 0 and 1",
        ],
    );
    assert_error(
        &web("[apps.web.analysis]\nmin_requests = 50\nmax_error_rate_increase = 5\n"),
        "6:1",
        &["`max_error_rate_increase` is 5", "write 0.05"],
    );
}

#[test]
fn min_requests_zero_is_refused() {
    assert_error(
        &web("[apps.web.analysis]\nmin_requests = 0\n"),
        "5:1",
        &["`min_requests` is 0", "use 1 or more"],
    );
    assert_error(
        &web("[apps.web.analysis]\nmin_requests = -5\n"),
        "5:16",
        &["invalid `min_requests` in [apps.web.analysis]"],
    );
}

#[test]
fn an_unknown_metric_is_refused() {
    assert_error(
        &web("[apps.web.analysis]\nmax_latency = { p97 = \"300ms\" }\n"),
        "5:17",
        &[
            "invalid `p97` in [apps.web.analysis.max_latency]",
            "unknown metric \"p97\": expected one of p50, p90, p95, p99, p99.9",
        ],
    );
}

#[test]
fn unknown_keys_and_bad_gates_are_refused() {
    assert_error(
        &web("[apps.web.analysis]\nmax_eror_rate = 0.1\n"),
        "5:1",
        &["unknown key `max_eror_rate` in [apps.web.analysis]; did you mean `max_error_rate`?"],
    );
    assert_error(
        &web("[apps.web.analysis]\nconfidence = 95\n"),
        "5:1",
        &["`confidence` is 95", "e.g. 0.95"],
    );
    assert_error(
        &web("[apps.web.analysis.webhooks]\nstep = \"ci.example.com/hook\"\n"),
        "5:1",
        &["webhook `step`", "https://"],
    );
    assert_error(
        &web(
            "[apps.web.analysis]\nmax_error_rate = 0.01\n\n[[apps.web.analysis.prometheus]]\n\
             name = \"q\"\nurl = \"http://127.0.0.1:9090\"\nquery = \"up\"\n",
        ),
        "7:1",
        &["prometheus rule \"q\" has neither `max` nor `min`"],
    );
}

#[test]
fn the_commented_example_section_is_valid() {
    let example = baton_config::example();
    assert!(example.contains("# [apps.web.analysis]"));
    let uncommented: String = example
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if rest.starts_with("[apps.web.analysis]") || rest.contains(" = ") => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let cfg = parse(&uncommented, Path::new("baton.toml")).unwrap();
    let a = &cfg.apps["web"].analysis;
    assert!(a.enabled);
    assert_eq!(a.max_error_rate, Some(0.01));
    assert_eq!(a.max_latency_increase, Some(HumanDuration::from_millis(20)));
}
