//! The HTTP client for the ACME directory and the on-demand ask URL: the public web roots
//! plus the operator's extra roots (a test CA), ring, connect timeout.

use crate::error::{chain, AcmeError};
use bytes::Bytes;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use instant_acme::BodyWrapper;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The client type instant-acme accepts as its `HttpClient`.
pub(crate) type Http = Client<HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>;

/// How long a TCP connect to the CA or the ask URL may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the ask URL may take to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds the client; `ca_roots` adds the PEM certificates of that file to the trusted
/// roots.
pub(crate) fn build(ca_roots: Option<&Path>) -> Result<Http, AcmeError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_roots {
        add_roots(&mut roots, path)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| AcmeError::settings(format!("no TLS versions: {e}"), "report this"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let https = HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

fn add_roots(roots: &mut RootCertStore, path: &Path) -> Result<(), AcmeError> {
    let fail = |reason: String| AcmeError::CaRoots {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(fail("it holds no CERTIFICATE block".into()));
    }
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| fail(format!("a certificate cannot be a root: {e}")))?;
    }
    Ok(())
}

/// Asks `url?domain=host` (or `&domain=` when the URL has a query): `Ok(true)` on 200,
/// `Ok(false)` on any other status, `Err` when it cannot be asked.
pub(crate) async fn ask(http: &Http, url: &str, host: &str) -> Result<bool, String> {
    let sep = if url.contains('?') { '&' } else { '?' };
    // `host` is a normalized LDH name: nothing in it needs escaping.
    let uri = format!("{url}{sep}domain={host}");
    let req = http::Request::get(&uri)
        .body(BodyWrapper::from(Vec::new()))
        .map_err(|e| format!("cannot build GET {uri}: {e}"))?;
    match tokio::time::timeout(ASK_TIMEOUT, http.request(req)).await {
        Ok(Ok(rsp)) => Ok(rsp.status() == http::StatusCode::OK),
        Ok(Err(e)) => Err(format!("GET {uri} failed: {}", chain(&e))),
        Err(_) => Err(format!(
            "GET {uri} gave no answer in {}s",
            ASK_TIMEOUT.as_secs()
        )),
    }
}
