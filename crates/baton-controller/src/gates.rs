//! External checks over HTTP or HTTPS: deployment webhooks (`POST` JSON, 2xx = go) and
//! the Prometheus provider (an instant PromQL query compared with a threshold). Both are
//! bounded by a timeout and never retried: a check that cannot answer is a failed (or,
//! for Prometheus without data, an inconclusive) check, with a reason naming the URL.
//!
//! HTTPS servers are verified against the system's CA certificates (`SSL_CERT_FILE` /
//! `SSL_CERT_DIR` override where they are read from); where there are none, as in
//! baton's `FROM scratch` image, against the bundled Mozilla roots.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
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

/// A client for one check. Built per call: checks run seconds apart, and the CA
/// certificates are read fresh, so an updated system bundle is used without a restart.
fn client() -> Result<Client<HttpsConnector<HttpConnector>, Full<Bytes>>, String> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    http.enforce_http(false);
    let provider = || Arc::new(rustls::crypto::ring::default_provider());
    let tls = match HttpsConnectorBuilder::new().with_provider_and_native_roots(provider()) {
        Ok(builder) => builder,
        Err(error) => {
            tracing::debug!(%error, "no system CA certificates; using the bundled Mozilla roots");
            HttpsConnectorBuilder::new()
                .with_provider_and_webpki_roots(provider())
                .map_err(|e| format!("cannot set up TLS: {e}"))?
        }
    };
    let https = tls.https_or_http().enable_http1().wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// Checks that `url` is an `http://` or `https://` URL with a host.
pub fn check_url(url: &str) -> Result<hyper::Uri, String> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL ({e}); write it as https://host[:port]/path"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(format!(
            "{url:?}: only http:// and https://host[:port]/path URLs are supported"
        ));
    }
    Ok(uri)
}

/// An error with its chain of causes: the client's own message ("client error
/// (Connect)") does not say that a certificate was refused or a name did not resolve.
fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Sends `req` and reads the answer, all within `timeout`.
async fn send(
    req: hyper::Request<Full<Bytes>>,
    url: &str,
    timeout: Duration,
) -> Result<(u16, Bytes), String> {
    let call = async {
        let resp = client()?
            .request(req)
            .await
            .map_err(|e| format!("{url}: request failed: {}", with_causes(&e)))?;
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
    fn http_and_https_urls_are_accepted() {
        assert!(check_url("http://127.0.0.1:9/hook").is_ok());
        assert!(check_url("https://example.com/").is_ok());
        assert!(check_url("ftp://example.com/").is_err());
        assert!(check_url("/hook").is_err());
        assert!(check_url("not a url").is_err());
    }

    fn payload() -> GatePayload {
        GatePayload {
            app: "web".into(),
            deployment: "web-1".into(),
            from_version: Some("v1".into()),
            to_version: "v2".into(),
            strategy: "canary".into(),
            gate: "step".into(),
            step: Some(1),
            weight: Some(10),
            outcome: None,
            reason: None,
        }
    }

    /// A CA named `ca_name` and a certificate it signed for 127.0.0.1: (CA PEM, cert
    /// chain, key).
    fn issue(
        ca_name: &str,
    ) -> (
        String,
        Vec<rustls::pki_types::CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, ca_name);
        let ca = ca.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        leaf.subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        let leaf = leaf.signed_by(&key, &ca, &ca_key).unwrap();
        let key = rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der());
        (ca.pem(), vec![leaf.der().clone()], key.into())
    }

    /// An HTTPS server on loopback answering `/ok` with 200 and anything else with 500;
    /// counts the requests it answered.
    async fn https_server(
        chain: Vec<rustls::pki_types::CertificateDer<'static>>,
        key: rustls::pki_types::PrivateKeyDer<'static>,
    ) -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicU64>) {
        use hyper::service::service_fn;
        use hyper_util::rt::TokioIo;
        use std::sync::atomic::{AtomicU64, Ordering};
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answered = Arc::new(AtomicU64::new(0));
        let counter = answered.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, counter) = (acceptor.clone(), counter.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let counter = counter.clone();
                        async move {
                            counter.fetch_add(1, Ordering::SeqCst);
                            let status = if req.uri().path() == "/ok" { 200 } else { 500 };
                            let mut res =
                                hyper::Response::new(Full::new(Bytes::from("hook says so")));
                            *res.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(res)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        (addr, answered)
    }

    /// Real TLS end to end: the client trusts the CA named by `SSL_CERT_FILE` (how an
    /// operator adds a private CA), verifies the server, and refuses a server whose
    /// certificate another CA issued. One test, so the variable is set once per process.
    #[tokio::test]
    async fn https_webhooks_are_verified_against_the_trusted_cas() {
        use std::sync::atomic::Ordering;
        let (ca_pem, chain, key) = issue("baton test CA");
        let dir = std::env::temp_dir().join(format!("baton-gates-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca_pem).unwrap();
        std::env::set_var("SSL_CERT_FILE", &ca_file);

        let (addr, answered) = https_server(chain, key).await;
        let timeout = Duration::from_secs(10);
        call_webhook(&format!("https://{addr}/ok"), &payload(), timeout)
            .await
            .unwrap();
        let err = call_webhook(&format!("https://{addr}/no"), &payload(), timeout)
            .await
            .unwrap_err();
        assert!(err.contains("answered 500: hook says so"), "{err}");
        assert_eq!(answered.load(Ordering::SeqCst), 2);

        // Same name, certificate from a CA nobody trusts: refused before any request.
        let (_, other_chain, other_key) = issue("someone else's CA");
        let (other, other_answered) = https_server(other_chain, other_key).await;
        let url = format!("https://{other}/ok");
        let err = call_webhook(&url, &payload(), timeout).await.unwrap_err();
        assert!(err.contains(&url), "{err}");
        assert!(err.contains("UnknownIssuer"), "{err}");
        assert_eq!(other_answered.load(Ordering::SeqCst), 0);
        let _ = std::fs::remove_dir_all(&dir);
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
