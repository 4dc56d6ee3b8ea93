//! `[apps.X.analysis]`: what the judge checks, how often, and the external gates.
//!
//! ```toml
//! [apps.web.analysis]
//! interval = "10s"            # how often the judge runs during canary / ab_test
//! min_requests = 100          # per version; fewer gives "inconclusive", never "pass"
//! failure_limit = 1           # consecutive failed verdicts that abort the rollout
//! confidence = 0.95           # of the statistical tests and intervals
//! max_error_rate = 0.01       # absolute: canary errors (5xx + no response) / requests
//! max_error_rate_increase = 0.005   # canary - stable, only when significant
//! max_latency = { p99 = "300ms", p50 = "50ms" }
//! max_latency_increase = "20ms"     # Hodges–Lehmann shift, lower CI bound above it fails
//! progress_deadline = "10m"
//!
//! [apps.web.analysis.webhooks]
//! pre_promote = "https://ci.example.com/gate"
//!
//! [[apps.web.analysis.prometheus]]
//! name = "queue depth"
//! url = "http://127.0.0.1:9090"
//! query = 'max(queue_depth{app="{app}",version="{version}"})'
//! max = 100
//! ```
//!
//! An app without the section has analysis disabled ([`AnalysisSpec::default`]); writing
//! the section enables it unless it says `enabled = false`.

use baton_core::HumanDuration;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// The analysis settings of one app. See the module docs for an example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisSpec {
    /// Whether the controller judges canary and ab_test rollouts of this app. Default
    /// `true` once the section is written; `false` when the app has no section at all
    /// (see [`AnalysisSpec::default`]), so existing apps keep deploying as before.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How often the judge runs. Default `"10s"`.
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    /// The sample judged: requests of the last `window`. Default: every request since the
    /// canary started receiving traffic (`None`).
    #[serde(default)]
    pub window: Option<HumanDuration>,
    /// Requests each version needs before a verdict can be pass. Default 100; at least 1.
    #[serde(default = "default_min_requests")]
    pub min_requests: u64,
    /// Consecutive failed verdicts that abort the rollout. Default 1; at least 1.
    #[serde(default = "default_failure_limit")]
    pub failure_limit: u32,
    /// Confidence of the statistical tests and intervals. Default 0.95; in (0.5, 1).
    #[serde(default = "default_confidence")]
    pub confidence: f64,
    /// Largest acceptable canary error rate (5xx + no response, 0..=1). Default: unchecked.
    #[serde(default)]
    pub max_error_rate: Option<f64>,
    /// Largest acceptable increase of the canary's error rate over stable's (rate units,
    /// 0..=1). Fails only when the increase is both above this and statistically
    /// significant (Fisher's exact test for small counts, else the two-proportion z-test).
    /// Default: unchecked.
    #[serde(default)]
    pub max_error_rate_increase: Option<f64>,
    /// Latency percentile limits of the canary, `{ p99 = "300ms", p50 = "50ms" }`. Keys:
    /// p50, p90, p95, p99, p99.9 (write `"p99.9"` quoted, or `p999`). Default: none.
    #[serde(default)]
    pub max_latency: BTreeMap<Percentile, HumanDuration>,
    /// Largest acceptable latency shift canary − stable (Hodges–Lehmann estimate); fails
    /// when the lower bound of its confidence interval is above this. Default: unchecked.
    #[serde(default)]
    pub max_latency_increase: Option<HumanDuration>,
    /// Compare the canary against a dedicated stable instance receiving the canary's share
    /// instead of the whole stable fleet. Default `false`.
    #[serde(default)]
    pub baseline: bool,
    /// How long a step may stay inconclusive before the rollout stops waiting. Default `"10m"`.
    #[serde(default = "default_progress_deadline")]
    pub progress_deadline: HumanDuration,
    /// External HTTP gates. Default: none.
    #[serde(default)]
    pub webhooks: WebhookSpec,
    /// Prometheus rules: `[[apps.X.analysis.prometheus]]`. Default: none.
    #[serde(default)]
    pub prometheus: Vec<PromCheck>,
    /// A/B experiments: the error-rate difference worth detecting (0.01 = 1 point), for
    /// which `baton status` reports the sample each variant still needs. Default 0.01.
    #[serde(default = "default_mde")]
    pub mde: f64,
}

fn yes() -> bool {
    true
}
fn default_interval() -> HumanDuration {
    HumanDuration::from_secs(10)
}
fn default_min_requests() -> u64 {
    100
}
fn default_failure_limit() -> u32 {
    1
}
fn default_confidence() -> f64 {
    0.95
}
fn default_mde() -> f64 {
    0.01
}
fn default_progress_deadline() -> HumanDuration {
    HumanDuration::from_secs(600)
}
fn default_webhook_timeout() -> HumanDuration {
    HumanDuration::from_secs(5)
}

impl Default for AnalysisSpec {
    /// The settings of an app with no `[apps.X.analysis]` section: every key at its
    /// documented default, except `enabled = false`.
    fn default() -> Self {
        AnalysisSpec {
            enabled: false,
            interval: default_interval(),
            window: None,
            min_requests: default_min_requests(),
            failure_limit: default_failure_limit(),
            confidence: default_confidence(),
            max_error_rate: None,
            max_error_rate_increase: None,
            max_latency: BTreeMap::new(),
            max_latency_increase: None,
            baseline: false,
            progress_deadline: default_progress_deadline(),
            webhooks: WebhookSpec::default(),
            prometheus: Vec::new(),
            mde: default_mde(),
        }
    }
}

/// `[apps.X.analysis.webhooks]`: URLs POSTed a JSON description of the deployment at each
/// gate; a 2xx answer means go, anything else (or no answer within `timeout`) is a failed
/// check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    /// Before the first instance of the new version starts.
    #[serde(default)]
    pub pre_rollout: Option<String>,
    /// After each step, before the next one.
    #[serde(default)]
    pub step: Option<String>,
    /// Before the new version takes all traffic.
    #[serde(default)]
    pub pre_promote: Option<String>,
    /// After the promotion (informational: its answer cannot undo it).
    #[serde(default)]
    pub post_promote: Option<String>,
    /// When the rollout is rolled back (informational).
    #[serde(default)]
    pub rollback: Option<String>,
    /// How long each call may take. Default `"5s"`.
    #[serde(default = "default_webhook_timeout")]
    pub timeout: HumanDuration,
}

impl Default for WebhookSpec {
    fn default() -> Self {
        WebhookSpec {
            pre_rollout: None,
            step: None,
            pre_promote: None,
            post_promote: None,
            rollback: None,
            timeout: default_webhook_timeout(),
        }
    }
}

impl WebhookSpec {
    /// `(key, url)` of every configured gate, in rollout order.
    pub fn configured(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("pre_rollout", &self.pre_rollout),
            ("step", &self.step),
            ("pre_promote", &self.pre_promote),
            ("post_promote", &self.post_promote),
            ("rollback", &self.rollback),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
    }
}

/// `[[apps.X.analysis.prometheus]]`: an instant PromQL query whose value must stay within
/// `min..=max`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromCheck {
    /// Shown in verdicts and events.
    pub name: String,
    /// The Prometheus server, `http://host:port`.
    pub url: String,
    /// PromQL; `{app}`, `{version}` and `{stable_version}` are substituted.
    pub query: String,
    /// The value must be at most this.
    #[serde(default)]
    pub max: Option<f64>,
    /// The value must be at least this.
    #[serde(default)]
    pub min: Option<f64>,
}

/// A latency percentile the judge can limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Percentile {
    P50,
    P90,
    P95,
    P99,
    P999,
}

impl Percentile {
    /// Every percentile, in ascending order.
    pub const ALL: [Percentile; 5] = [
        Percentile::P50,
        Percentile::P90,
        Percentile::P95,
        Percentile::P99,
        Percentile::P999,
    ];

    /// The quantile as a fraction (`p99` → 0.99).
    pub fn q(&self) -> f64 {
        match self {
            Percentile::P50 => 0.5,
            Percentile::P90 => 0.9,
            Percentile::P95 => 0.95,
            Percentile::P99 => 0.99,
            Percentile::P999 => 0.999,
        }
    }

    /// The name used in the config and in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Percentile::P50 => "p50",
            Percentile::P90 => "p90",
            Percentile::P95 => "p95",
            Percentile::P99 => "p99",
            Percentile::P999 => "p99.9",
        }
    }
}

impl fmt::Display for Percentile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Percentile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let found = match s.trim().to_ascii_lowercase().as_str() {
            "p999" => Some(Percentile::P999),
            other => Percentile::ALL.into_iter().find(|p| p.name() == other),
        };
        found.ok_or_else(|| {
            format!("unknown metric {s:?}: expected one of p50, p90, p95, p99, p99.9")
        })
    }
}

impl Serialize for Percentile {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Percentile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One segment of the key an [`AnalysisSpecError`] is about, relative to the
/// `[apps.X.analysis]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    Key(String),
    Index(usize),
}

impl From<&str> for KeyPart {
    fn from(s: &str) -> Self {
        KeyPart::Key(s.to_string())
    }
}

impl From<usize> for KeyPart {
    fn from(i: usize) -> Self {
        KeyPart::Index(i)
    }
}

/// A value of `[apps.X.analysis]` that makes no sense: which key, and how to fix it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct AnalysisSpecError {
    /// The key, relative to the analysis table (`["prometheus", 0, "url"]`).
    pub key: Vec<KeyPart>,
    /// What is wrong and the fix.
    pub message: String,
}

impl AnalysisSpecError {
    fn new(key: Vec<KeyPart>, message: impl Into<String>) -> Self {
        AnalysisSpecError {
            key,
            message: message.into(),
        }
    }

    /// The key as written in TOML below the analysis table (`prometheus[0].url`).
    pub fn key_string(&self) -> String {
        let mut out = String::new();
        for part in &self.key {
            match part {
                KeyPart::Key(k) if out.is_empty() => out.push_str(k),
                KeyPart::Key(k) => {
                    out.push('.');
                    out.push_str(k);
                }
                KeyPart::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }
}

macro_rules! path {
    ($($seg:expr),* $(,)?) => { vec![$(KeyPart::from($seg)),*] };
}

// === impl AnalysisSpec ===

impl AnalysisSpec {
    /// Whether the controller should judge rollouts of this app.
    pub fn is_active(&self) -> bool {
        self.enabled
    }

    /// The first problem found by [`validate_all`](Self::validate_all).
    pub fn validate(&self) -> Result<(), AnalysisSpecError> {
        match self.validate_all().into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Every value that makes no sense, each naming its key and the fix.
    pub fn validate_all(&self) -> Vec<AnalysisSpecError> {
        let mut out = Vec::new();
        for (key, value) in [
            ("interval", self.interval),
            ("progress_deadline", self.progress_deadline),
        ] {
            if value.get().is_zero() {
                out.push(AnalysisSpecError::new(
                    path![key],
                    format!("`{key}` is 0: use a positive duration, e.g. \"10s\""),
                ));
            }
        }
        if self.window.is_some_and(|w| w.get().is_zero()) {
            out.push(AnalysisSpecError::new(
                path!["window"],
                "`window` is 0: use a positive duration such as \"5m\", or remove it to judge every request since the canary started",
            ));
        }
        if self.min_requests == 0 {
            out.push(AnalysisSpecError::new(
                path!["min_requests"],
                "`min_requests` is 0: a verdict needs data, use 1 or more (default 100 per version)",
            ));
        }
        if self.failure_limit == 0 {
            out.push(AnalysisSpecError::new(
                path!["failure_limit"],
                "`failure_limit` is 0: use 1 or more (consecutive failed verdicts that abort the rollout)",
            ));
        }
        if !(self.confidence > 0.5 && self.confidence < 1.0) {
            out.push(AnalysisSpecError::new(
                path!["confidence"],
                format!(
                    "`confidence` is {}: use a fraction between 0.5 and 1 (exclusive), e.g. 0.95",
                    self.confidence
                ),
            ));
        }
        if !(self.mde > 0.0 && self.mde < 1.0) {
            out.push(AnalysisSpecError::new(
                path!["mde"],
                format!(
                    "`mde` is {}: it is an error-rate difference between 0 and 1 (exclusive), e.g. 0.01 for 1 point",
                    self.mde
                ),
            ));
        }
        for (key, value) in [
            ("max_error_rate", self.max_error_rate),
            ("max_error_rate_increase", self.max_error_rate_increase),
        ] {
            if let Some(v) = value {
                if !(0.0..=1.0).contains(&v) {
                    let hint = if v > 1.0 && v <= 100.0 {
                        format!(" (for {v}% write {})", v / 100.0)
                    } else {
                        String::new()
                    };
                    out.push(AnalysisSpecError::new(
                        path![key],
                        format!(
                            "`{key}` is {v}: it is a rate between 0 and 1, e.g. 0.01 for 1%{hint}"
                        ),
                    ));
                }
            }
        }
        for (p, limit) in &self.max_latency {
            if limit.get().is_zero() {
                out.push(AnalysisSpecError::new(
                    path!["max_latency", p.name()],
                    format!("`max_latency.{p}` is 0: no request is that fast; use a duration such as \"300ms\""),
                ));
            }
        }
        self.validate_webhooks(&mut out);
        self.validate_prometheus(&mut out);
        out
    }

    fn validate_webhooks(&self, out: &mut Vec<AnalysisSpecError>) {
        for (key, url) in self.webhooks.configured() {
            if let Err(why) = check_http_url(url) {
                out.push(AnalysisSpecError::new(
                    path!["webhooks", key],
                    format!("webhook `{key}` = {url:?} {why}"),
                ));
            }
        }
        if self.webhooks.timeout.get().is_zero() {
            out.push(AnalysisSpecError::new(
                path!["webhooks", "timeout"],
                "webhook `timeout` is 0: use a positive duration, e.g. \"5s\"",
            ));
        }
    }

    fn validate_prometheus(&self, out: &mut Vec<AnalysisSpecError>) {
        for (i, check) in self.prometheus.iter().enumerate() {
            let label = if check.name.trim().is_empty() {
                format!("prometheus rule {}", i + 1)
            } else {
                format!("prometheus rule {:?}", check.name)
            };
            if check.name.trim().is_empty() {
                out.push(AnalysisSpecError::new(
                    path!["prometheus", i, "name"],
                    format!("{label} has an empty `name`: name it (it appears in verdicts), e.g. name = \"queue depth\""),
                ));
            } else if self.prometheus[..i].iter().any(|c| c.name == check.name) {
                out.push(AnalysisSpecError::new(
                    path!["prometheus", i, "name"],
                    format!("{label} is defined twice: give each rule its own name"),
                ));
            }
            if let Err(why) = check_http_url(&check.url) {
                out.push(AnalysisSpecError::new(
                    path!["prometheus", i, "url"],
                    format!("`url` of {label} {why} (the Prometheus server, e.g. \"http://127.0.0.1:9090\")"),
                ));
            }
            if check.query.trim().is_empty() {
                out.push(AnalysisSpecError::new(
                    path!["prometheus", i, "query"],
                    format!("{label} has an empty `query`: write an instant PromQL query"),
                ));
            }
            match (check.min, check.max) {
                (None, None) => out.push(AnalysisSpecError::new(
                    path!["prometheus", i],
                    format!("{label} has neither `max` nor `min`: add the threshold its value must stay within, e.g. max = 100"),
                )),
                (Some(min), Some(max)) if min > max => out.push(AnalysisSpecError::new(
                    path!["prometheus", i, "min"],
                    format!("{label} has min = {min} above max = {max}: no value can pass; swap them"),
                )),
                _ => {}
            }
            for (key, v) in [("min", check.min), ("max", check.max)] {
                if v.is_some_and(|v| !v.is_finite()) {
                    out.push(AnalysisSpecError::new(
                        path!["prometheus", i, key],
                        format!("`{key}` of {label} is not a finite number"),
                    ));
                }
            }
        }
    }
}

/// `Ok` for `http://` or `https://host[:port][/path]`; otherwise why not (completes
/// "url ... ").
fn check_http_url(url: &str) -> Result<(), String> {
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return Err("is not an http:// or https:// URL: write it like \"https://ci.example.com/hook\" or \"http://127.0.0.1:9000/hook\"".into());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, after)) => (host, after.strip_prefix(':')),
            None => return Err("has an unclosed `[` in its host".into()),
        },
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if let Some(port) = port {
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("has an invalid port {port:?}: use 1-65535"));
        }
    }
    if host.is_empty() || host.contains('@') {
        return Err("has no host: write it like \"http://127.0.0.1:9000/hook\"".into());
    }
    if url.chars().any(char::is_whitespace) {
        return Err("contains whitespace".into());
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AnalysisSpec, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn a_written_section_is_enabled_with_documented_defaults() {
        let spec = parse("").unwrap();
        assert!(spec.enabled);
        assert_eq!(spec.interval, HumanDuration::from_secs(10));
        assert_eq!(spec.min_requests, 100);
        assert_eq!(spec.failure_limit, 1);
        assert_eq!(spec.confidence, 0.95);
        assert_eq!(spec.progress_deadline, HumanDuration::from_secs(600));
        assert_eq!(spec.webhooks.timeout, HumanDuration::from_secs(5));
        assert_eq!(spec.window, None);
        assert!(!AnalysisSpec::default().enabled);
        assert_eq!(
            AnalysisSpec {
                enabled: true,
                ..AnalysisSpec::default()
            },
            spec
        );
        spec.validate().unwrap();
    }

    #[test]
    fn mde_is_a_fraction() {
        assert_eq!(parse("mde = 0.05").unwrap().mde, 0.05);
        for bad in ["mde = 0.0", "mde = 1.5", "mde = -0.01"] {
            let err = parse(bad).unwrap().validate().unwrap_err();
            assert_eq!(err.key_string(), "mde", "{bad}");
            assert!(err.message.contains("between 0 and 1"), "{}", err.message);
        }
    }

    #[test]
    fn percentiles_parse_and_unknown_ones_are_named() {
        let spec =
            parse(r#"max_latency = { p99 = "300ms", p50 = "50ms", "p99.9" = "1s" }"#).unwrap();
        let keys: Vec<_> = spec.max_latency.keys().map(|p| p.to_string()).collect();
        assert_eq!(keys, ["p50", "p99", "p99.9"]);
        assert_eq!(
            parse(r#"max_latency = { p999 = "1s" }"#)
                .unwrap()
                .max_latency
                .len(),
            1
        );
        let e = parse(r#"max_latency = { p97 = "1s" }"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown metric \"p97\": expected one of p50, p90, p95, p99, p99.9"),
            "{e}"
        );
        let json = serde_json::to_string(&spec.max_latency).unwrap();
        assert_eq!(json, r#"{"p50":"50ms","p99":"300ms","p99.9":"1s"}"#);
    }

    #[test]
    fn nonsense_is_rejected_with_the_key_and_the_fix() {
        let cases = [
            ("max_error_rate = -0.1", "max_error_rate", "between 0 and 1"),
            ("max_error_rate = 5.0", "max_error_rate", "write 0.05"),
            ("max_error_rate_increase = 2.0", "max_error_rate_increase", "between 0 and 1"),
            ("min_requests = 0", "min_requests", "use 1 or more"),
            ("failure_limit = 0", "failure_limit", "use 1 or more"),
            ("confidence = 1.0", "confidence", "between 0.5 and 1"),
            ("confidence = 0.3", "confidence", "between 0.5 and 1"),
            ("interval = \"0s\"", "interval", "positive"),
            ("window = \"0s\"", "window", "positive"),
            ("max_latency = { p99 = \"0ms\" }", "max_latency.p99", "is 0"),
            ("webhooks = { step = \"ftp://x\" }", "webhooks.step", "http://"),
            ("webhooks = { step = \"https://:443/\" }", "webhooks.step", "no host"),
            ("webhooks = { step = \"http://:80/\" }", "webhooks.step", "no host"),
            ("webhooks = { step = \"http://h:0/\" }", "webhooks.step", "port"),
            (
                "[[prometheus]]\nname = \"q\"\nurl = \"http://127.0.0.1:9090\"\nquery = \"up\"",
                "prometheus[0]",
                "neither `max` nor `min`",
            ),
            (
                "[[prometheus]]\nname = \"q\"\nurl = \"localhost:9090\"\nquery = \"up\"\nmax = 1",
                "prometheus[0].url",
                "http://",
            ),
            (
                "[[prometheus]]\nname = \"q\"\nurl = \"http://h:9090\"\nquery = \"up\"\nmin = 5\nmax = 1",
                "prometheus[0].min",
                "swap",
            ),
        ];
        for (text, key, needle) in cases {
            let err = parse(text).unwrap().validate().expect_err(text);
            assert_eq!(err.key_string(), key, "{text}");
            assert!(err.message.contains(needle), "{text}: {}", err.message);
        }
    }

    #[test]
    fn good_gates_pass() {
        let spec = parse(
            "webhooks = { pre_promote = \"http://127.0.0.1:9000/gate\", rollback = \"http://[::1]:80\", \
             step = \"https://ci.example.com:8443/hook\" }\n\
             [[prometheus]]\nname = \"q\"\nurl = \"https://prom.example.com\"\nquery = \"up{app='{app}'}\"\nmin = 1",
        )
        .unwrap();
        spec.validate().unwrap();
        assert_eq!(spec.webhooks.configured().count(), 3);
    }
}
