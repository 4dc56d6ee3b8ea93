//! External checks over plain HTTP: deployment webhooks (`POST` JSON, 2xx = go) and the
//! Prometheus provider (an instant PromQL query compared with a threshold). Both are
//! bounded by a timeout and never retried: a check that cannot answer is a failed (or,
//! for Prometheus without data, an inconclusive) check, with a reason naming the URL.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Largest answer read from a webhook or Prometheus.
const MAX_BODY: usize = 1 << 20;

/// What a webhook is told about the deployment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GatePayload {
    pub app: String,
    pub deployment: String,
    pub from_version: Option<String>,
    pub to_version: String,
    pub strategy: String,
    /// `pre_rollout`, `step`, `pre_promote`, `post_promote` or `rollback`.
    pub gate: String,
    /// The canary step (1-based) for `step`.
    pub step: Option<usize>,
    /// The canary weight about to apply.
    pub weight: Option<u32>,
    /// How the deployment ended (`post_promote`, `rollback`).
    pub outcome: Option<String>,
    pub reason: Option<String>,
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    Client::builder(TokioExecutor::new()).build(http)
}

/// Checks that `url` is an `http://` URL this client can call (no TLS here).
pub fn check_url(url: &str) -> Result<hyper::Uri, String> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL ({e}); write it as http://host:port/path"))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(format!(
            "{url:?}: only http://host[:port]/path URLs are supported"
        ));
    }
    Ok(uri)
}

/// Sends `req` and reads the answer, all within `timeout`.
async fn send(
    req: hyper::Request<Full<Bytes>>,
    url: &str,
    timeout: Duration,
) -> Result<(u16, Bytes), String> {
    let call = async {
        let resp = client()
            .request(req)
            .await
            .map_err(|e| format!("{url}: request failed: {e}"))?;
        let status = resp.status().as_u16();
        let body = http_body_util::Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("{url}: reading the answer failed: {e}"))?
            .to_bytes();
        Ok((status, body))
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "{url}: no answer within {}s",
            timeout.as_secs_f64()
        )),
    }
}

/// POSTs `payload` to `url`: `Ok` on a 2xx answer, `Err` naming the URL and the status
/// (or the failure) otherwise.
pub async fn call_webhook(
    url: &str,
    payload: &GatePayload,
    timeout: Duration,
) -> Result<(), String> {
    let uri = check_url(url)?;
    let body = serde_json::to_vec(payload).map_err(|e| format!("encoding the payload: {e}"))?;
    let req = hyper::Request::post(uri)
        .header("content-type", "application/json")
        .header("user-agent", "baton")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("{url}: {e}"))?;
    let (status, body) = send(req, url, timeout).await?;
    if (200..300).contains(&status) {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(200)])
        .trim()
        .to_string();
    let detail = if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    };
    Err(format!("{url} answered {status}{detail}"))
}

/// What one Prometheus check found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum PromOutcome {
    Pass {
        value: f64,
    },
    Fail {
        value: f64,
        reason: String,
    },
    /// No sample (or the query could not run): neither pass nor fail.
    NoData {
        reason: String,
    },
}

/// `{placeholder}` substitution in a query.
pub fn render_query(query: &str, vars: &[(&str, &str)]) -> String {
    vars.iter().fold(query.to_string(), |q, (k, v)| {
        q.replace(&format!("{{{k}}}"), v)
    })
}

/// Percent-encodes a query string value (RFC 3986 unreserved characters stay).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Runs the instant query `query` against the Prometheus server at `base` and returns
/// the scalar or the first vector sample; `Ok(None)` when the result is empty.
pub async fn prom_query(base: &str, query: &str, timeout: Duration) -> Result<Option<f64>, String> {
    let url = format!(
        "{}/api/v1/query?query={}",
        base.trim_end_matches('/'),
        encode(query)
    );
    let uri = check_url(&url)?;
    let req = hyper::Request::get(uri)
        .header("user-agent", "baton")
        .body(Full::new(Bytes::new()))
        .map_err(|e| format!("{base}: {e}"))?;
    let (status, body) = send(req, base, timeout).await?;
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| format!("{base} answered {status} with invalid JSON: {e}"))?;
    if v["status"] != "success" {
        let err = v["error"].as_str().unwrap_or("unknown error");
        return Err(format!("{base}: query {query:?} failed ({status}): {err}"));
    }
    let data = &v["data"];
    let sample = match data["resultType"].as_str() {
        Some("scalar") => Some(&data["result"]),
        Some("vector") => data["result"].get(0).map(|s| &s["value"]),
        Some(other) => {
            return Err(format!(
                "{base}: query {query:?} returned a {other}; use a query that returns a scalar or an instant vector"
            ))
        }
        None => return Err(format!("{base}: answer without a result type")),
    };
    let Some(sample) = sample else {
        return Ok(None);
    };
    let value = sample
        .get(1)
        .and_then(|x| x.as_str())
        .ok_or_else(|| format!("{base}: malformed sample {sample}"))?;
    let value: f64 = value
        .parse()
        .map_err(|_| format!("{base}: sample value {value:?} is not a number"))?;
    // NaN (e.g. 0/0 with no traffic) is no data, not a pass.
    Ok((!value.is_nan()).then_some(value))
}

/// Compares a query's value with its bounds.
pub fn judge_value(
    name: &str,
    value: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
) -> PromOutcome {
    let Some(value) = value else {
        return PromOutcome::NoData {
            reason: format!("prometheus check {name}: no data"),
        };
    };
    if let Some(max) = max.filter(|m| value > *m) {
        return PromOutcome::Fail {
            value,
            reason: format!("prometheus check {name}: {value} > max {max}"),
        };
    }
    if let Some(min) = min.filter(|m| value < *m) {
        return PromOutcome::Fail {
            value,
            reason: format!("prometheus check {name}: {value} < min {min}"),
        };
    }
    PromOutcome::Pass { value }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_rendered_and_encoded() {
        let q = render_query(
            "rate(x{app=\"{app}\",version=\"{version}\"}[1m]) / {stable_version}",
            &[("app", "web"), ("version", "v2"), ("stable_version", "v1")],
        );
        assert_eq!(q, "rate(x{app=\"web\",version=\"v2\"}[1m]) / v1");
        assert_eq!(encode("a b{\"}"), "a%20b%7B%22%7D");
    }

    #[test]
    fn values_are_compared_with_their_bounds_and_no_data_is_not_a_pass() {
        assert_eq!(
            judge_value("e", Some(1.0), None, Some(2.0)),
            PromOutcome::Pass { value: 1.0 }
        );
        assert!(matches!(
            judge_value("e", Some(3.0), None, Some(2.0)),
            PromOutcome::Fail { .. }
        ));
        assert!(matches!(
            judge_value("e", Some(0.5), Some(1.0), None),
            PromOutcome::Fail { .. }
        ));
        assert!(matches!(
            judge_value("e", None, Some(1.0), None),
            PromOutcome::NoData { .. }
        ));
    }

    #[test]
    fn only_plain_http_urls_are_accepted() {
        assert!(check_url("http://127.0.0.1:9/hook").is_ok());
        assert!(check_url("https://example.com/").is_err());
        assert!(check_url("not a url").is_err());
    }

    #[tokio::test]
    async fn an_unreachable_webhook_is_a_failure_naming_the_url() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let url = format!("http://{addr}/hook");
        let p = GatePayload {
            app: "web".into(),
            deployment: "web-1".into(),
            from_version: None,
            to_version: "v1".into(),
            strategy: "canary".into(),
            gate: "pre_rollout".into(),
            step: None,
            weight: None,
            outcome: None,
            reason: None,
        };
        let err = call_webhook(&url, &p, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(err.contains(&url), "{err}");
    }
}
