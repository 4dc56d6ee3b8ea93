//! HTTPS listeners with real TLS clients (rustls): ALPN, SNI, the default certificate,
//! X-Forwarded-Proto, HSTS, the redirect from HTTP, ACME challenge answers, and
//! certificates swapped under open connections.

use crate::common::*;
use baton_proxy::{
    load_pem_bytes, AcmeResponder, CertTable, CertificateFiles, CertifiedKey, ProxyConfig, Scheme,
};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

/// A test CA that signs leaf certificates written as PEM files.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    pub dir: tempfile::TempDir,
}

impl Ca {
    pub fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "baton test CA");
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            cert,
            key,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Signs a leaf for `names`; writes `<file>.pem` and `<file>.key`.
    pub fn leaf(&self, file: &str, names: &[&str]) -> CertificateFiles {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let params = CertificateParams::new(names).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let (cert_path, key_path) = self.paths(file);
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        CertificateFiles {
            cert: cert_path,
            key: key_path,
            hosts: Vec::new(),
        }
    }

    fn paths(&self, file: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.path().join(format!("{file}.pem")),
            self.dir.path().join(format!("{file}.key")),
        )
    }

    pub fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.der().clone()).unwrap();
        roots
    }
}

/// A proxy with one HTTP and one HTTPS listener in front of a counting backend.
struct Front {
    proxy: TestProxy,
    tls_addr: SocketAddr,
    backend: Counting,
    stop: CancellationToken,
}

impl Drop for Front {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn front(config: ProxyConfig, table: CertTable) -> Front {
    let proxy = start_proxy(config).await;
    proxy.proxy.set_certificates(table);
    let backend = counting("b1", "v1", 200).await;
    proxy
        .proxy
        .publish(&table_for(pools(vec![pool(
            "v1",
            100,
            vec![backend.spec()],
        )])))
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls_addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let (p, s) = (proxy.proxy.clone(), stop.clone());
    tokio::spawn(async move {
        p.serve_scheme(listener, Scheme::Https, s.cancelled_owned())
            .await
    });
    Front {
        proxy,
        tls_addr,
        backend,
        stop,
    }
}

fn table_for(app: baton_core::AppRouteSpec) -> baton_core::RouteTableSpec {
    table(app)
}

fn client_config(ca: &Ca, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut c = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(ca.roots())
        .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(c)
}

async fn connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    sni: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_string()).unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// The DNS names of the certificate the server presented.
fn presented_names(s: &TlsStream<TcpStream>) -> Vec<String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let leaf: &CertificateDer = &s.get_ref().1.peer_certificates().unwrap()[0];
    let (_, cert) = X509Certificate::from_der(leaf.as_ref()).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect()
}

async fn h1_over(s: TlsStream<TcpStream>) -> http1::SendRequest<Full<Bytes>> {
    let (sender, conn) = http1::handshake(TokioIo::new(s)).await.unwrap();
    tokio::spawn(conn);
    sender
}

async fn h2_over(s: TlsStream<TcpStream>) -> http2::SendRequest<Full<Bytes>> {
    let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

fn get_req(uri: &str, host: Option<&str>) -> Request<Full<Bytes>> {
    let mut b = Request::builder().uri(uri);
    if let Some(h) = host {
        b = b.header("host", h);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

fn load(files: &[CertificateFiles], default: Option<&str>) -> CertTable {
    CertTable::load(files, default).unwrap()
}

#[tokio::test]
async fn alpn_gives_h2_or_http11_and_the_app_hears_https() {
    let ca = Ca::new();
    let f = front(
        ProxyConfig::default(),
        load(&[ca.leaf("a", &["a.test"])], None),
    )
    .await;

    let s = connect(
        f.tls_addr,
        client_config(&ca, &[b"h2", b"http/1.1"]),
        "a.test",
    )
    .await
    .unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut c = h2_over(s).await;
    let res = c
        .send_request(get_req("https://a.test/x", None))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.version(), http::Version::HTTP_2);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"v1");
    assert_eq!(f.backend.headers()["x-forwarded-proto"], "https");
    assert_eq!(f.backend.headers()["host"], "a.test");

    let s = connect(f.tls_addr, client_config(&ca, &[b"http/1.1"]), "a.test")
        .await
        .unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut c = h1_over(s).await;
    for _ in 0..3 {
        let res = c.send_request(get_req("/y", Some("a.test"))).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.version(), http::Version::HTTP_11);
        res.into_body().collect().await.unwrap();
    }
    assert_eq!(f.backend.headers()["x-forwarded-proto"], "https");
    assert_eq!(f.backend.count(), 4);

    // A client that offers no ALPN at all speaks HTTP/1.1.
    let s = connect(f.tls_addr, client_config(&ca, &[]), "a.test")
        .await
        .unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), None);
    let mut c = h1_over(s).await;
    let res = c.send_request(get_req("/z", Some("a.test"))).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn sni_picks_the_certificate_and_unknown_names_fail_cleanly_unless_there_is_a_default() {
    let ca = Ca::new();
    let files = [
        ca.leaf("a", &["a.test"]),
        ca.leaf("w", &["*.w.test"]),
        ca.leaf("b", &["b.test", "www.b.test"]),
    ];
    let f = front(ProxyConfig::default(), load(&files, None)).await;
    let cfg = client_config(&ca, &[b"http/1.1"]);
    for (sni, expect) in [
        ("a.test", "a.test"),
        ("x.w.test", "*.w.test"),
        ("www.b.test", "www.b.test"),
        ("B.TEST", "b.test"),
    ] {
        let s = connect(f.tls_addr, cfg.clone(), sni)
            .await
            .unwrap_or_else(|e| panic!("{sni}: {e}"));
        assert!(
            presented_names(&s).iter().any(|n| n == expect),
            "{sni} got {:?}",
            presented_names(&s)
        );
    }
    // Two labels under a one-label wildcard, and names nobody serves: the handshake
    // fails with an `unrecognized_name` alert, nothing is served.
    for sni in ["x.y.w.test", "unknown.test"] {
        let Err(err) = connect(f.tls_addr, cfg.clone(), sni).await else {
            panic!("{sni} must not be served");
        };
        assert!(err.to_string().contains("UnrecognisedName"), "{sni}: {err}");
    }
    assert_eq!(f.backend.count(), 0);

    // With a default certificate, an unknown name gets it (and the client, checking
    // the name, refuses it — the proxy's part is to answer).
    f.proxy.proxy.set_certificates(load(&files, Some("a.test")));
    let Err(err) = connect(f.tls_addr, cfg.clone(), "unknown.test").await else {
        panic!("the client must refuse a certificate for another name");
    };
    assert!(
        err.to_string().contains("certificate") || err.to_string().contains("NotValidForName"),
        "{err}"
    );
}

#[tokio::test]
async fn http_redirects_to_https_with_host_path_and_port_and_https_answers_carry_hsts() {
    let ca = Ca::new();
    let table = load(&[ca.leaf("a", &["a.test"])], None);
    // The TLS listener's port is known only once bound; 8443 stands for it.
    let config = ProxyConfig {
        https_redirect: Some(8443),
        hsts: Some("max-age=31536000".parse().unwrap()),
        ..ProxyConfig::default()
    };
    let f = front(config, table).await;
    let (status, headers, _) =
        get_once(f.proxy.addr, "/path/x?q=1", &[("host", "a.test:8080")]).await;
    assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(headers["location"], "https://a.test:8443/path/x?q=1");
    assert!(headers.get("strict-transport-security").is_none());
    assert_eq!(f.backend.count(), 0, "a redirect reaches no app");

    let s = connect(f.tls_addr, client_config(&ca, &[b"http/1.1"]), "a.test")
        .await
        .unwrap();
    let mut c = h1_over(s).await;
    let res = c.send_request(get_req("/", Some("a.test"))).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["strict-transport-security"],
        "max-age=31536000"
    );
}

/// Answers one HTTP-01 token and one TLS-ALPN-01 host.
struct Challenges {
    alpn_cert: Arc<CertifiedKey>,
}

impl AcmeResponder for Challenges {
    fn http01(&self, token: &str) -> Option<String> {
        (token == "tok123").then(|| "tok123.thumbprint".to_string())
    }
    fn tls_alpn01(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        (host == "acme.test").then(|| self.alpn_cert.clone())
    }
    fn on_demand<'a>(
        &'a self,
        _host: &'a str,
    ) -> Pin<Box<dyn Future<Output = Option<Arc<CertifiedKey>>> + Send + 'a>> {
        Box::pin(async { None })
    }
}

#[tokio::test]
async fn acme_challenges_are_answered_on_both_listeners_and_unknown_tokens_reach_the_app() {
    let ca = Ca::new();
    let alpn_files = ca.leaf("alpn", &["acme.test"]);
    let alpn = read_pair(&alpn_files.cert, &alpn_files.key);
    let config = ProxyConfig {
        https_redirect: Some(443),
        ..ProxyConfig::default()
    };
    let f = front(config, load(&[ca.leaf("a", &["a.test"])], None)).await;
    assert!(f
        .proxy
        .proxy
        .set_acme(Arc::new(Challenges { alpn_cert: alpn })));

    let (status, _, body) = get_once(
        f.proxy.addr,
        "/.well-known/acme-challenge/tok123",
        &[("host", "a.test")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"tok123.thumbprint");
    // Not a pending token: the app may answer it itself (certbot's webroot), so it is
    // neither answered nor redirected.
    let (status, _, _) = get_once(
        f.proxy.addr,
        "/.well-known/acme-challenge/other",
        &[("host", "a.test")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(f.backend.count(), 1);

    // TLS-ALPN-01: the validation handshake offers only acme-tls/1 and gets the
    // challenge certificate; the connection carries no HTTP.
    let s = connect(
        f.tls_addr,
        client_config(&ca, &[b"acme-tls/1"]),
        "acme.test",
    )
    .await
    .unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"acme-tls/1"[..]));
    assert_eq!(presented_names(&s), ["acme.test"]);
    // Without a pending challenge for the name, the validation handshake fails.
    assert!(
        connect(f.tls_addr, client_config(&ca, &[b"acme-tls/1"]), "a.test")
            .await
            .is_err()
    );
}

fn read_pair(cert: &Path, key: &Path) -> Arc<CertifiedKey> {
    let c = std::fs::read(cert).unwrap();
    let k = std::fs::read(key).unwrap();
    load_pem_bytes(&c, cert, &k, key).unwrap().key
}

#[tokio::test]
async fn new_certificates_serve_new_handshakes_while_open_connections_go_on() {
    let ca = Ca::new();
    let f = front(
        ProxyConfig::default(),
        load(&[ca.leaf("a", &["a.test"])], None),
    )
    .await;
    let cfg = client_config(&ca, &[b"http/1.1"]);
    let mut open = h1_over(connect(f.tls_addr, cfg.clone(), "a.test").await.unwrap()).await;
    let res = open
        .send_request(get_req("/", Some("a.test")))
        .await
        .unwrap();
    res.into_body().collect().await.unwrap();

    // Replaced by a certificate that also names b.test.
    f.proxy
        .proxy
        .set_certificates(load(&[ca.leaf("a2", &["a.test", "b.test"])], None));
    for _ in 0..3 {
        let res = open
            .send_request(get_req("/", Some("a.test")))
            .await
            .expect("the open connection keeps working");
        assert_eq!(res.status(), StatusCode::OK);
        res.into_body().collect().await.unwrap();
    }
    let s = connect(f.tls_addr, cfg, "b.test").await.unwrap();
    assert_eq!(presented_names(&s), ["a.test", "b.test"]);
}

#[test]
fn bad_files_are_refused_naming_the_file_and_the_fix() {
    let ca = Ca::new();
    let a = ca.leaf("a", &["a.test"]);
    let b = ca.leaf("b", &["b.test"]);
    let mismatched = CertificateFiles {
        cert: a.cert.clone(),
        key: b.key.clone(),
        hosts: vec![],
    };
    let err = CertTable::load(&[mismatched], None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("does not match") && err.contains("a.pem") && err.contains("b.key"),
        "{err}"
    );

    let missing = CertificateFiles {
        cert: ca.dir.path().join("nope.pem"),
        key: a.key.clone(),
        hosts: vec![],
    };
    let err = CertTable::load(&[missing], None).unwrap_err().to_string();
    assert!(
        err.contains("cannot read cert file") && err.contains("nope.pem"),
        "{err}"
    );

    let not_pem = ca.dir.path().join("junk.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let junk = CertificateFiles {
        cert: not_pem,
        key: a.key.clone(),
        hosts: vec![],
    };
    let err = CertTable::load(&[junk], None).unwrap_err().to_string();
    assert!(err.contains("no PEM certificate"), "{err}");

    let uncovered = CertificateFiles {
        hosts: vec!["other.test".into()],
        ..a.clone()
    };
    let err = CertTable::load(&[uncovered], None).unwrap_err().to_string();
    assert!(err.contains("does not cover host \"other.test\""), "{err}");

    let twice = [a.clone(), ca.leaf("a-again", &["a.test"])];
    let err = CertTable::load(&twice, None).unwrap_err().to_string();
    assert!(err.contains("two certificates"), "{err}");

    let err = CertTable::load(&[a], Some("zzz.test"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("default certificate host \"zzz.test\""),
        "{err}"
    );
}
