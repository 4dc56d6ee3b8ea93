//! The small servers of the tests: HTTP-01 and TLS-ALPN-01 challenge answers, the
//! on-demand ask URL, and an HTTPS GET for pebble's management interface.

use baton_acme::{Challenges, ACME_TLS_ALPN};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The challenges answered by the servers (the current `Acme`'s).
pub type Slot = Arc<Mutex<Option<Challenges>>>;

fn current(slot: &Slot) -> Option<Challenges> {
    slot.lock().unwrap().clone()
}

/// Reads a request head (up to its blank line) and returns its target.
async fn read_target(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    head.lines().next()?.split(' ').nth(1).map(str::to_string)
}

async fn respond(stream: &mut TcpStream, status: &str, body: &str) {
    let rsp = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(rsp.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// `GET /.well-known/acme-challenge/{token}` → `Challenges::http01(token)` or 404.
pub async fn http01(listener: TcpListener, slot: Slot) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let slot = slot.clone();
        tokio::spawn(async move {
            let target = read_target(&mut stream).await.unwrap_or_default();
            let answer = target
                .strip_prefix("/.well-known/acme-challenge/")
                .and_then(|token| current(&slot)?.http01(token));
            match answer {
                Some(body) => respond(&mut stream, "200 OK", &body).await,
                None => respond(&mut stream, "404 Not Found", "no such challenge").await,
            }
        });
    }
}

#[derive(Debug)]
struct AlpnResolver(Slot);

impl ResolvesServerCert for AlpnResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello.alpn()?.any(|p| p == ACME_TLS_ALPN);
        if !acme {
            return None;
        }
        current(&self.0)?.tls_alpn01(hello.server_name()?)
    }
}

/// TLS with ALPN `acme-tls/1` → the certificate of `Challenges::tls_alpn01(SNI)`.
pub async fn tls_alpn01(listener: TcpListener, slot: Slot) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(AlpnResolver(slot)));
    config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            // The validation is the handshake; then the CA closes.
            if let Ok(mut tls) = acceptor.accept(stream).await {
                let _ = tls.shutdown().await;
            }
        });
    }
}

/// An ask URL: 200 for `?domain=` one of `yes`, 403 otherwise. Returns its URL.
pub async fn ask_server(yes: Vec<String>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/allow", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let target = read_target(&mut stream).await.unwrap_or_default();
            let domain = target.split("domain=").nth(1).unwrap_or("").to_string();
            if yes.contains(&domain) {
                respond(&mut stream, "200 OK", "yes").await;
            } else {
                respond(&mut stream, "403 Forbidden", "no").await;
            }
        }
    });
    url
}

/// GET over HTTPS trusting only the CA in `ca_pem`; the body as text.
pub async fn https_get(url: &str, ca_pem: &Path) -> String {
    use http_body_util::BodyExt;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, http_body_util::Empty<bytes::Bytes>>(https);
    let rsp = client.get(url.parse().unwrap()).await.unwrap();
    assert_eq!(rsp.status(), 200, "GET {url}");
    let body = rsp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}
