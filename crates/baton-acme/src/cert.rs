//! A certificate as stored (chain PEM, key PEM, names) and as served (`CertifiedKey`),
//! and the validity period read from the leaf's DER.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// One certificate in the store: one per name set.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct StoredCert {
    /// The names, normalized and sorted (the store key is them joined with ',').
    pub names: Vec<String>,
    /// Leaf first, then the intermediates, as the CA sent them.
    pub chain_pem: String,
    /// The private key (PKCS#8 PEM).
    pub key_pem: String,
    /// Issued for a host not in the config (on-demand).
    #[serde(default)]
    pub on_demand: bool,
}

/// A certificate ready to serve, with its validity.
#[derive(Clone, Debug)]
pub(crate) struct Loaded {
    pub key: Arc<CertifiedKey>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

// === impl StoredCert ===

impl StoredCert {
    /// Parses the PEM into something rustls can serve; the error says what is wrong.
    pub fn load(&self) -> Result<Loaded, String> {
        let certs = CertificateDer::pem_slice_iter(self.chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("the certificate chain is not PEM: {e}"))?;
        let leaf = certs.first().ok_or("the certificate chain is empty")?;
        let (not_before, not_after) = validity(leaf)?;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| format!("the private key is not PEM: {e}"))?;
        let signer = rustls::crypto::ring::sign::any_supported_type(&key)
            .map_err(|e| format!("the private key cannot sign: {e}"))?;
        Ok(Loaded {
            key: Arc::new(CertifiedKey::new(certs, signer)),
            not_before,
            not_after,
        })
    }
}

/// `notBefore` and `notAfter` of a DER certificate.
pub(crate) fn validity(der: &[u8]) -> Result<(SystemTime, SystemTime), String> {
    let bad = |what: &str| format!("the certificate is not valid DER X.509 ({what})");
    let (cert, _) = tlv(der, 0x30).ok_or_else(|| bad("outer sequence"))?;
    let (mut tbs, _) = tlv(cert, 0x30).ok_or_else(|| bad("tbsCertificate"))?;
    if tbs.first() == Some(&0xa0) {
        tbs = tlv(tbs, 0xa0).ok_or_else(|| bad("version"))?.1;
    }
    for what in ["serial", "signature algorithm", "issuer"] {
        let tag = *tbs.first().ok_or_else(|| bad(what))?;
        tbs = tlv(tbs, tag).ok_or_else(|| bad(what))?.1;
    }
    let (validity, _) = tlv(tbs, 0x30).ok_or_else(|| bad("validity"))?;
    let (not_before, rest) = time(validity).ok_or_else(|| bad("notBefore"))?;
    let (not_after, _) = time(rest).ok_or_else(|| bad("notAfter"))?;
    Ok((not_before, not_after))
}

/// One DER element with the expected `tag`: its content and what follows it.
fn tlv(buf: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = buf.split_first()?;
    if t != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| acc << 8 | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// A UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn time(buf: &[u8]) -> Option<(SystemTime, &[u8])> {
    let tag = *buf.first()?;
    let (text, rest) = tlv(buf, tag)?;
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let (year, text) = match tag {
        0x17 => {
            let yy: i64 = text.get(..2)?.parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, text.get(2..)?)
        }
        0x18 => (text.get(..4)?.parse().ok()?, text.get(4..)?),
        _ => return None,
    };
    let field = |i: usize| -> Option<i64> { text.get(i..i + 2)?.parse().ok() };
    if text.len() != 10 {
        return None;
    }
    let days = days_from_civil(year, field(0)?, field(2)?);
    let secs = days * 86_400 + field(4)? * 3600 + field(6)? * 60 + field(8)?;
    let secs = u64::try_from(secs).ok()?;
    Some((SystemTime::UNIX_EPOCH + Duration::from_secs(secs), rest))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> (rcgen::CertifiedKey, Vec<u8>) {
        let mut params =
            rcgen::CertificateParams::new(vec!["a.example.com".into()]).expect("params");
        params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        let der = cert.der().to_vec();
        (
            rcgen::CertifiedKey {
                cert,
                key_pair: key,
            },
            der,
        )
    }

    fn ymd(y: i64, m: i64, d: i64) -> SystemTime {
        let secs = u64::try_from(days_from_civil(y, m, d) * 86_400).expect("after 1970");
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn reads_utc_time_and_generalized_time() {
        // rcgen writes years before 2050 as UTCTime and later ones as GeneralizedTime.
        let (_, der) = cert((2024, 2, 29), (2051, 12, 31));
        let (nb, na) = validity(&der).expect("validity");
        assert_eq!(nb, ymd(2024, 2, 29));
        assert_eq!(na, ymd(2051, 12, 31));
    }

    #[test]
    fn civil_days_match_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2026, 12, 2), 20_789);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x02, 0x01, 0x00],
        ] {
            assert!(validity(bad).is_err());
        }
    }

    #[test]
    fn stored_cert_loads_into_a_certified_key() {
        let (ck, _) = cert((2024, 1, 1), (2030, 1, 1));
        let stored = StoredCert {
            names: vec!["a.example.com".into()],
            chain_pem: ck.cert.pem(),
            key_pem: ck.key_pair.serialize_pem(),
            on_demand: false,
        };
        let loaded = stored.load().expect("loads");
        assert_eq!(loaded.not_after, ymd(2030, 1, 1));
        assert_eq!(loaded.key.cert.len(), 1);
        let broken = StoredCert {
            key_pem: "nope".into(),
            ..stored
        };
        assert!(broken.load().expect_err("bad key").contains("private key"));
    }
}
