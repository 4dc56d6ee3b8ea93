//! The answers to pending challenges, shared with the proxy: HTTP-01 key authorizations by
//! token, TLS-ALPN-01 certificates by host. Written by an order while it runs, read by the
//! proxy's listeners; entries are removed when the order ends.

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

/// The ALPN protocol of TLS-ALPN-01 (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Pending challenge answers. Cheap to clone; every clone sees the same answers.
#[derive(Clone, Default)]
pub struct Challenges {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// HTTP-01: token → key authorization.
    http: RwLock<HashMap<String, String>>,
    /// TLS-ALPN-01: host → the self-signed certificate carrying the acmeIdentifier.
    alpn: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

// === impl Challenges ===

impl Challenges {
    /// The body for `GET /.well-known/acme-challenge/{token}`, if an order waits on it.
    pub fn http01(&self, token: &str) -> Option<String> {
        let map = self
            .inner
            .http
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(token).cloned()
    }

    /// The certificate to present to a TLS client that offers only ALPN `acme-tls/1`
    /// with SNI `host`, if an order waits on it.
    pub fn tls_alpn01(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        let map = self
            .inner
            .alpn
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(&host.trim_end_matches('.').to_ascii_lowercase())
            .cloned()
    }

    pub(crate) fn put_http01(&self, token: &str, key_authorization: &str) -> Pending {
        let mut map = self
            .inner
            .http
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        map.insert(token.to_string(), key_authorization.to_string());
        Pending {
            challenges: self.clone(),
            key: Key::Http(token.to_string()),
        }
    }

    /// Makes the TLS-ALPN-01 certificate for `host` (RFC 8737: SAN = host, the critical
    /// acmeIdentifier extension = SHA-256 of the key authorization).
    pub(crate) fn put_tls_alpn01(&self, host: &str, digest: &[u8]) -> Result<Pending, String> {
        let key = alpn_certificate(host, digest)?;
        let mut map = self
            .inner
            .alpn
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        map.insert(host.to_string(), Arc::new(key));
        Ok(Pending {
            challenges: self.clone(),
            key: Key::Alpn(host.to_string()),
        })
    }
}

/// Shows how many answers are pending (rustls wants resolvers to be `Debug`).
impl std::fmt::Debug for Challenges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let http = self.inner.http.read().map_or(0, |m| m.len());
        let alpn = self.inner.alpn.read().map_or(0, |m| m.len());
        f.debug_struct("Challenges")
            .field("http01_pending", &http)
            .field("tls_alpn01_pending", &alpn)
            .finish()
    }
}

fn alpn_certificate(host: &str, digest: &[u8]) -> Result<CertifiedKey, String> {
    let mut params = rcgen::CertificateParams::new(vec![host.to_string()])
        .map_err(|e| format!("cannot make the TLS-ALPN-01 certificate for {host}: {e}"))?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate().map_err(|e| format!("cannot make a key: {e}"))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("cannot sign the TLS-ALPN-01 certificate for {host}: {e}"))?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signer = rustls::crypto::ring::sign::any_supported_type(&der)
        .map_err(|e| format!("cannot use the TLS-ALPN-01 key: {e}"))?;
    Ok(CertifiedKey::new(
        vec![CertificateDer::from(cert.der().to_vec())],
        signer,
    ))
}

enum Key {
    Http(String),
    Alpn(String),
}

/// A published answer; dropping it withdraws the answer (when the order ends, however it
/// ends).
pub(crate) struct Pending {
    challenges: Challenges,
    key: Key,
}

impl Drop for Pending {
    fn drop(&mut self) {
        let inner = &self.challenges.inner;
        match &self.key {
            Key::Http(token) => {
                let mut map = inner.http.write().unwrap_or_else(PoisonError::into_inner);
                map.remove(token);
            }
            Key::Alpn(host) => {
                let mut map = inner.alpn.write().unwrap_or_else(PoisonError::into_inner);
                map.remove(host);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_live_as_long_as_the_pending_guard() {
        let c = Challenges::default();
        let pending = c.put_http01("tok", "tok.thumb");
        assert_eq!(c.http01("tok").as_deref(), Some("tok.thumb"));
        assert_eq!(c.http01("other"), None);
        drop(pending);
        assert_eq!(c.http01("tok"), None);

        let pending = c.put_tls_alpn01("a.example.com", &[7; 32]).expect("cert");
        assert!(c.tls_alpn01("A.example.com.").is_some());
        drop(pending);
        assert!(c.tls_alpn01("a.example.com").is_none());
    }
}
