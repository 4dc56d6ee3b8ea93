//! HTTPS: the certificate table chosen by SNI, the rustls server configuration (ring;
//! TLS 1.2 and 1.3 only; ALPN `h2` and `http/1.1`), and one connection's handshake.
//!
//! Certificates come from two places: PEM files named in the configuration (a
//! [`CertTable`], replaced whole on `reload` or when a file changes) and certificates
//! installed at run time by ACME ([`Proxy::install_certificate`](crate::Proxy)). A name
//! is looked up exactly, then as a one-label wildcard (`*.example.com` covers
//! `a.example.com`, not `a.b.example.com`, as browsers do), then the default
//! certificate; with none the handshake fails with a fatal `unrecognized_name` alert
//! (112, as nginx's `ssl_reject_handshake`; not rustls' own `access_denied`) and nothing
//! is served.
//!
//! The handshake reads the ClientHello first (`LazyConfigAcceptor`), so a connection
//! can be answered with what only an async step knows: an ACME TLS-ALPN-01 challenge
//! (ALPN `acme-tls/1`, a connection that carries no HTTP), or a certificate issued on
//! demand for a name the ACME side allows.

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

/// ALPN of the ACME TLS-ALPN-01 challenge (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";
/// The path prefix of ACME HTTP-01 challenges (RFC 8555 §8.3).
pub const ACME_HTTP_PREFIX: &str = "/.well-known/acme-challenge/";

/// One `cert` + `key` pair of PEM files, and the host names it serves. Empty `hosts`:
/// every DNS name the certificate lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub hosts: Vec<String>,
}

/// What went wrong loading certificates. Each names the file or host and the fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "cannot read {what} file {path} ({source}); check the path and that baton may read it"
    )]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate (`-----BEGIN CERTIFICATE-----`): `cert` must name the certificate chain, leaf first")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key ({why}): `key` must name the certificate's private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: PathBuf, why: String },
    #[error(
        "the key in {path} cannot be used ({why}): use an RSA, ECDSA (P-256/P-384) or Ed25519 key"
    )]
    BadKey { path: PathBuf, why: String },
    #[error("the key in {key} does not match the certificate in {cert}: give the key the certificate was issued for")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("the certificate in {path} cannot be read ({why})")]
    Parse { path: PathBuf, why: String },
    #[error("the certificate in {path} does not cover host {host:?} (it names {names}): list only hosts the certificate names, or get one that names {host:?}")]
    HostNotCovered {
        host: String,
        path: PathBuf,
        names: String,
    },
    #[error("the certificate in {path} names no DNS host: list the hosts it serves in `hosts`")]
    NoHosts { path: PathBuf },
    #[error("host {host:?} has two certificates ({first} and {second}): keep one")]
    Duplicate {
        host: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("default certificate host {host:?} is not served by any certificate: name one of the hosts of [[proxy.tls.certificates]]")]
    UnknownDefault { host: String },
}

/// A loaded certificate with what the table needs to know about it.
#[derive(Debug, Clone)]
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    /// DNS names in the certificate (lower case; wildcards as `*.example.com`).
    pub names: Vec<String>,
    pub not_after: SystemTime,
    pub path: PathBuf,
}

/// Reads a PEM certificate chain and its key, and checks they belong together.
pub fn load_pem(cert: &Path, key: &Path) -> Result<LoadedCert, TlsError> {
    let cert_pem = read(cert, "cert")?;
    let key_pem = read(key, "key")?;
    load_pem_bytes(&cert_pem, cert, &key_pem, key)
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// [`load_pem`] on bytes already read (`cert_path`/`key_path` name them in errors).
pub fn load_pem_bytes(
    cert_pem: &[u8],
    cert_path: &Path,
    key_pem: &[u8],
    key_path: &Path,
) -> Result<LoadedCert, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Parse {
            path: cert_path.to_path_buf(),
            why: e.to_string(),
        })?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_path_buf(),
        });
    };
    let (names, not_after) = leaf_facts(leaf, cert_path)?;
    let der = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::NoKey {
        path: key_path.to_path_buf(),
        why: e.to_string(),
    })?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| TlsError::BadKey {
            path: key_path.to_path_buf(),
            why: e.to_string(),
        })?;
    let key = CertifiedKey::new(chain, signing);
    key.keys_match().map_err(|_| TlsError::KeyMismatch {
        cert: cert_path.to_path_buf(),
        key: key_path.to_path_buf(),
    })?;
    Ok(LoadedCert {
        key: Arc::new(key),
        names,
        not_after,
        path: cert_path.to_path_buf(),
    })
}

/// The DNS names (subject alternative names, else the common name) and the end of
/// validity of a leaf certificate.
fn leaf_facts(
    leaf: &CertificateDer<'_>,
    path: &Path,
) -> Result<(Vec<String>, SystemTime), TlsError> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let parse = |why: String| TlsError::Parse {
        path: path.to_path_buf(),
        why,
    };
    let (_, cert) = X509Certificate::from_der(leaf.as_ref()).map_err(|e| parse(e.to_string()))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        for cn in cert.subject().iter_common_name() {
            if let Ok(s) = cn.as_str() {
                names.push(s.to_ascii_lowercase());
            }
        }
    }
    let secs = cert.validity().not_after.timestamp();
    let not_after = u64::try_from(secs)
        .ok()
        .map_or(SystemTime::UNIX_EPOCH, |s| {
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s)
        });
    Ok((names, not_after))
}

/// Whether a certificate name (`a.example.com` or `*.example.com`) covers `host`.
pub fn covers(name: &str, host: &str) -> bool {
    match name.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => name == host,
    }
}

/// Certificates by host name. Built whole, then swapped in.
#[derive(Default, Clone)]
pub struct CertTable {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` under `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
    /// Each loaded certificate, for status and expiry warnings.
    loaded: Vec<LoadedCert>,
}

impl std::fmt::Debug for CertTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertTable")
            .field("hosts", &self.hosts())
            .field("default", &self.default.is_some())
            .finish()
    }
}

/// A [`TlsError`] with the entry of the files it is about, so that the caller can say
/// where that entry is written.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct EntryError {
    /// The index in `files` of [`CertTable::load_entries`]; `None`: the default host.
    pub entry: Option<usize>,
    pub error: TlsError,
}

impl CertTable {
    /// Loads every pair of files; `default`: the host whose certificate answers a
    /// ClientHello without SNI or with an unknown name (absent: such handshakes fail).
    pub fn load(files: &[CertificateFiles], default: Option<&str>) -> Result<CertTable, TlsError> {
        Self::load_entries(files, default).map_err(|e| e.error)
    }

    /// [`CertTable::load`], saying which entry of `files` an error is about.
    pub fn load_entries(
        files: &[CertificateFiles],
        default: Option<&str>,
    ) -> Result<CertTable, EntryError> {
        let mut table = CertTable::default();
        let mut owner: HashMap<String, PathBuf> = HashMap::new();
        for (i, f) in files.iter().enumerate() {
            let at = |error| EntryError {
                entry: Some(i),
                error,
            };
            let loaded = load_pem(&f.cert, &f.key).map_err(at)?;
            let hosts: Vec<String> = if f.hosts.is_empty() {
                loaded.names.clone()
            } else {
                f.hosts.iter().map(|h| h.to_ascii_lowercase()).collect()
            };
            if hosts.is_empty() {
                return Err(at(TlsError::NoHosts {
                    path: f.cert.clone(),
                }));
            }
            for host in &hosts {
                let covered = loaded
                    .names
                    .iter()
                    .any(|n| n == host || (!host.starts_with("*.") && covers(n, host)));
                if !covered {
                    return Err(at(TlsError::HostNotCovered {
                        host: host.clone(),
                        path: f.cert.clone(),
                        names: loaded.names.join(", "),
                    }));
                }
                if let Some(first) = owner.insert(host.clone(), f.cert.clone()) {
                    return Err(at(TlsError::Duplicate {
                        host: host.clone(),
                        first,
                        second: f.cert.clone(),
                    }));
                }
                table.insert(host, loaded.key.clone());
            }
            table.loaded.push(loaded);
        }
        if let Some(host) = default {
            let host = host.to_ascii_lowercase();
            table.default = Some(table.lookup(&host).ok_or(EntryError {
                entry: None,
                error: TlsError::UnknownDefault { host },
            })?);
        }
        Ok(table)
    }

    fn insert(&mut self, host: &str, key: Arc<CertifiedKey>) {
        match host.strip_prefix("*.") {
            Some(suffix) => self.wildcard.insert(suffix.to_string(), key),
            None => self.exact.insert(host.to_string(), key),
        };
    }

    /// The certificate for `host` (lower case), without the default.
    fn lookup(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        if let Some(k) = self.exact.get(host) {
            return Some(k.clone());
        }
        let (_, parent) = host.split_once('.')?;
        self.wildcard.get(parent).cloned()
    }

    /// Every host served (wildcards as `*.example.com`), sorted.
    pub fn hosts(&self) -> Vec<String> {
        let mut out: Vec<String> = self.exact.keys().cloned().collect();
        out.extend(self.wildcard.keys().map(|s| format!("*.{s}")));
        out.sort();
        out
    }

    /// The certificates loaded, with their names and validity.
    pub fn certificates(&self) -> &[LoadedCert] {
        &self.loaded
    }

    /// Whether there is a certificate for no SNI / unknown names.
    pub fn has_default(&self) -> bool {
        self.default.is_some()
    }
}

/// The ACME side, as the proxy sees it: it answers challenges and may issue a
/// certificate for a name on demand.
pub trait AcmeResponder: Send + Sync + 'static {
    /// The key authorization for an HTTP-01 `token`, while its challenge is pending.
    fn http01(&self, token: &str) -> Option<String>;
    /// The challenge certificate for `host` while its TLS-ALPN-01 challenge is pending.
    fn tls_alpn01(&self, host: &str) -> Option<Arc<CertifiedKey>>;
    /// A certificate for `host`, not served yet, if the on-demand rule allows it
    /// (issued and installed first). `None`: refused or failed (the handshake fails).
    fn on_demand<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = Option<Arc<CertifiedKey>>> + Send + 'a>>;
}

/// The proxy's TLS state: shared by every TLS listener and the resolver.
pub(crate) struct Tls {
    files: ArcSwap<CertTable>,
    /// Installed by ACME, by exact name.
    issued: ArcSwap<HashMap<String, Arc<CertifiedKey>>>,
    acme: OnceLock<Arc<dyn AcmeResponder>>,
    /// Serves HTTP (h2, http/1.1) with the table above.
    server: OnceLock<Arc<ServerConfig>>,
    /// Answers `acme-tls/1` handshakes with challenge certificates only.
    challenge: OnceLock<Arc<ServerConfig>>,
}

impl Tls {
    pub(crate) fn new() -> Arc<Tls> {
        Arc::new(Tls {
            files: ArcSwap::from_pointee(CertTable::default()),
            issued: ArcSwap::from_pointee(HashMap::new()),
            acme: OnceLock::new(),
            server: OnceLock::new(),
            challenge: OnceLock::new(),
        })
    }

    pub(crate) fn set_files(&self, table: CertTable) {
        self.files.store(Arc::new(table));
    }

    pub(crate) fn files(&self) -> Arc<CertTable> {
        self.files.load_full()
    }

    pub(crate) fn install(&self, names: &[String], key: Arc<CertifiedKey>) {
        self.issued.rcu(|old| {
            let mut map = HashMap::clone(old);
            for n in names {
                map.insert(n.to_ascii_lowercase(), key.clone());
            }
            map
        });
    }

    pub(crate) fn set_acme(&self, acme: Arc<dyn AcmeResponder>) -> bool {
        self.acme.set(acme).is_ok()
    }

    pub(crate) fn acme(&self) -> Option<&Arc<dyn AcmeResponder>> {
        self.acme.get()
    }

    /// A certificate for `host`, or the default one.
    fn resolve(&self, host: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let files = self.files.load();
        if let Some(host) = host {
            if let Some(k) = self.issued.load().get(host) {
                return Some(k.clone());
            }
            if let Some(k) = files.lookup(host) {
                return Some(k);
            }
        }
        files.default.clone()
    }

    /// Whether `host` has a certificate of its own (not the default).
    fn knows(&self, host: &str) -> bool {
        self.issued.load().contains_key(host) || self.files.load().lookup(host).is_some()
    }

    fn server_config(self: &Arc<Self>) -> Arc<ServerConfig> {
        self.server
            .get_or_init(|| {
                let mut c = base_config(Arc::new(Resolver(self.clone())));
                c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
                if let Ok(t) = rustls::crypto::ring::Ticketer::new() {
                    c.ticketer = t;
                }
                Arc::new(c)
            })
            .clone()
    }

    fn challenge_config(self: &Arc<Self>) -> Arc<ServerConfig> {
        self.challenge
            .get_or_init(|| {
                let mut c = base_config(Arc::new(ChallengeResolver(self.clone())));
                c.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
                Arc::new(c)
            })
            .clone()
    }
}

fn base_config(resolver: Arc<dyn ResolvesServerCert>) -> ServerConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        // ring's provider supports both versions; this cannot fail.
        .unwrap_or_else(|_| ServerConfig::builder())
        .with_no_client_auth()
        .with_cert_resolver(resolver)
}

#[derive(Debug)]
struct Resolver(Arc<Tls>);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("files", &self.files.load())
            .finish()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let host = hello.server_name().map(str::to_ascii_lowercase);
        self.0.resolve(host.as_deref())
    }
}

#[derive(Debug)]
struct ChallengeResolver(Arc<Tls>);

impl ResolvesServerCert for ChallengeResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let host = hello.server_name()?.to_ascii_lowercase();
        self.0.acme()?.tls_alpn01(&host)
    }
}

/// A TLS alert record: fatal (2), `unrecognized_name` (112), record version TLS 1.2 (as
/// TLS 1.3 writes it too).
const UNRECOGNIZED_NAME: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112];

/// The result of one TLS handshake.
pub(crate) enum Handshake<S> {
    /// HTTP over TLS from here on.
    Http(Box<tokio_rustls::server::TlsStream<S>>),
    /// An ACME TLS-ALPN-01 validation: done once the handshake is.
    Challenge,
}

/// Runs the server side of a handshake on `stream`: the ClientHello and the rest of
/// the handshake must each arrive within `timeout`; waiting for an on-demand
/// certificate is bounded by the ACME side.
pub(crate) async fn accept<S>(
    tls: &Arc<Tls>,
    stream: S,
    timeout: std::time::Duration,
) -> std::io::Result<Handshake<S>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let slow = || std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake too slow");
    let hello = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream);
    let start = tokio::time::timeout(timeout, hello)
        .await
        .map_err(|_| slow())??;
    let hello = start.client_hello();
    let challenge = hello
        .alpn()
        .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
    let host = hello.server_name().map(str::to_ascii_lowercase);
    if challenge {
        let handshake = start.into_stream(tls.challenge_config());
        let mut s = tokio::time::timeout(timeout, handshake)
            .await
            .map_err(|_| slow())??;
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut s).await;
        return Ok(Handshake::Challenge);
    }
    if let (Some(host), Some(acme)) = (host.as_deref(), tls.acme()) {
        if !tls.knows(host) && acme.on_demand(host).await.is_none() {
            tracing::debug!(
                host,
                "no certificate for this name, and none issued on demand"
            );
        }
    }
    if tls.resolve(host.as_deref()).is_none() {
        // No certificate for this name (or no name) and no default: refused with a fatal
        // `unrecognized_name` alert (RFC 6066 §3; what nginx's `ssl_reject_handshake`
        // sends) rather than the `access_denied` rustls would send, in the clear since
        // nothing was negotiated yet; nothing else is sent.
        let mut io = start.io;
        let _ = tokio::time::timeout(timeout, async {
            tokio::io::AsyncWriteExt::write_all(&mut io, &UNRECOGNIZED_NAME).await?;
            tokio::io::AsyncWriteExt::shutdown(&mut io).await
        })
        .await;
        return Err(std::io::Error::other(format!(
            "no certificate for {}: refused with unrecognized_name",
            host.as_deref().unwrap_or("a client without SNI")
        )));
    }
    let handshake = start.into_stream(tls.server_config());
    let stream = tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| slow())??;
    Ok(Handshake::Http(Box::new(stream)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label() {
        assert!(covers("*.example.com", "a.example.com"));
        assert!(!covers("*.example.com", "a.b.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(covers("example.com", "example.com"));
        assert!(!covers("example.com", "www.example.com"));
    }
}
