//! What the operator configures: the directory, contacts, challenge, renewal and back-off
//! margins, on-demand rules; and the checks that turn bad input into clear errors.

use crate::error::AcmeError;
use std::path::PathBuf;
use std::time::Duration;

/// How the CA checks that we control a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChallengeKind {
    /// A file under `http://NAME/.well-known/acme-challenge/` (port 80).
    Http01,
    /// A self-signed certificate on port 443 for the ALPN protocol `acme-tls/1`.
    TlsAlpn01,
}

/// Everything the ACME client is told.
#[derive(Debug, Clone)]
pub struct AcmeSettings {
    /// The ACME directory URL (`https://`).
    pub directory: String,
    /// Account contacts, each `mailto:...`.
    pub contact: Vec<String>,
    /// The challenge every order uses.
    pub challenge: ChallengeKind,
    /// Extra PEM roots trusted for the directory's TLS certificate (a test CA such as
    /// pebble); the public web roots are always trusted.
    pub ca_roots: Option<PathBuf>,
    /// Renew when less than this remains; see `plan::renew_at` for short-lived
    /// certificates.
    pub renew_before: Duration,
    /// Back-off after a failed order: the first wait.
    pub retry_min: Duration,
    /// Back-off after a failed order: the longest wait.
    pub retry_max: Duration,
    /// Issuance for hosts not in the config; `None` = never.
    pub on_demand: Option<OnDemand>,
}

/// The allow rule for on-demand issuance: a host is issued for only when the list or the
/// ask URL says yes. Never open-ended: one of the two must be given.
#[derive(Debug, Clone, Default)]
pub struct OnDemand {
    /// Exact names, or `*.example.com` (one label in place of the star).
    pub allow: Vec<String>,
    /// A URL asked `GET URL?domain=NAME`; 200 means yes, anything else no.
    pub ask: Option<String>,
}

// === impl AcmeSettings ===

impl AcmeSettings {
    /// Settings with the defaults: HTTP-01, renew 30 days before expiry, back-off from
    /// one minute to six hours, no on-demand issuance.
    pub fn new(directory: impl Into<String>) -> AcmeSettings {
        AcmeSettings {
            directory: directory.into(),
            contact: Vec::new(),
            challenge: ChallengeKind::Http01,
            ca_roots: None,
            renew_before: Duration::from_secs(30 * 24 * 3600),
            retry_min: Duration::from_secs(60),
            retry_max: Duration::from_secs(6 * 3600),
            on_demand: None,
        }
    }

    /// Checks every field; the first problem is returned with its fix.
    pub(crate) fn validate(&self) -> Result<(), AcmeError> {
        validate_directory(&self.directory)?;
        for c in &self.contact {
            validate_contact(c)?;
        }
        if self.retry_min.is_zero() || self.retry_min > self.retry_max {
            return Err(AcmeError::settings(
                format!(
                    "retry_min ({}) must be above zero and at most retry_max ({})",
                    humantime::format_duration(self.retry_min),
                    humantime::format_duration(self.retry_max)
                ),
                "set retry_min <= retry_max, e.g. 1m and 6h",
            ));
        }
        if self.renew_before.is_zero() {
            return Err(AcmeError::settings(
                "renew_before is zero, so certificates would only be renewed after they expire",
                "set renew_before to e.g. 30d",
            ));
        }
        if let Some(od) = &self.on_demand {
            od.validate()?;
        }
        Ok(())
    }
}

fn validate_directory(url: &str) -> Result<(), AcmeError> {
    let fix = "give the https:// URL of the CA's directory, e.g. \
               https://acme-v02.api.letsencrypt.org/directory";
    let uri: http::Uri = url.parse().map_err(|e| {
        AcmeError::settings(format!("the directory {url:?} is not a URL ({e})"), fix)
    })?;
    if uri.scheme_str() != Some("https") || uri.host().is_none() {
        return Err(AcmeError::settings(
            format!("the directory {url:?} is not an https:// URL (ACME requires TLS)"),
            fix,
        ));
    }
    Ok(())
}

fn validate_contact(contact: &str) -> Result<(), AcmeError> {
    let ok = contact.strip_prefix("mailto:").is_some_and(|addr| {
        addr.split_once('@')
            .is_some_and(|(u, d)| !u.is_empty() && d.contains('.'))
    });
    if ok {
        return Ok(());
    }
    Err(AcmeError::settings(
        format!("the contact {contact:?} is not a mailto: address"),
        "write contacts as \"mailto:ops@example.com\"",
    ))
}

// === impl OnDemand ===

impl OnDemand {
    fn validate(&self) -> Result<(), AcmeError> {
        if self.allow.is_empty() && self.ask.is_none() {
            return Err(AcmeError::settings(
                "on-demand issuance has neither an allow list nor an ask URL, which would \
                 issue for any name a client sends",
                "list the allowed names (exact or \"*.example.com\") or give an ask URL that \
                 answers 200 for allowed names",
            ));
        }
        for pattern in &self.allow {
            let name = pattern.strip_prefix("*.").unwrap_or(pattern);
            normalize_name(name).map_err(|e| {
                AcmeError::settings(
                    format!("the on-demand allow entry {pattern:?} is not a name: {e}"),
                    "write exact names or \"*.example.com\"",
                )
            })?;
        }
        if let Some(ask) = &self.ask {
            let uri: Result<http::Uri, _> = ask.parse();
            let ok = uri.is_ok_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
            });
            if !ok {
                return Err(AcmeError::settings(
                    format!("the on-demand ask URL {ask:?} is not an http(s):// URL"),
                    "give a URL such as http://127.0.0.1:9000/allow; it is asked \
                     GET URL?domain=NAME and 200 means yes",
                ));
            }
        }
        Ok(())
    }
}

/// A host name as it goes into a certificate: lower case, no trailing dot, LDH labels of
/// 1-63 characters, at most 253 characters, not an IP address. Errors say why not.
pub fn normalize_name(name: &str) -> Result<String, AcmeError> {
    let invalid = |reason: &str| AcmeError::InvalidName {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    let lower = name.trim_end_matches('.').to_ascii_lowercase();
    if lower.is_empty() {
        return Err(invalid("it is empty"));
    }
    if lower.len() > 253 {
        return Err(invalid("it is longer than 253 characters"));
    }
    if lower.parse::<std::net::IpAddr>().is_ok() {
        return Err(invalid(
            "it is an IP address; certificates here are for DNS names",
        ));
    }
    for label in lower.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(invalid(
                "each dot-separated label must have 1 to 63 characters",
            ));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(invalid(
                "only letters, digits, '-' and '.' are allowed (wildcards are not issued)",
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(invalid("a label cannot start or end with '-'"));
        }
    }
    Ok(lower)
}

/// A name set as one certificate: normalized, sorted, without duplicates; its store key
/// is the names joined with ','.
pub(crate) fn normalize_set(names: &[String]) -> Result<Vec<String>, AcmeError> {
    if names.is_empty() {
        return Err(AcmeError::settings(
            "a certificate's name set is empty",
            "give each certificate at least one host name",
        ));
    }
    let mut out = names
        .iter()
        .map(|n| normalize_name(n))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort();
    out.dedup();
    Ok(out)
}

pub(crate) fn set_key(names: &[String]) -> String {
    names.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AcmeSettings {
        AcmeSettings::new("https://acme.example.com/dir")
    }

    #[test]
    fn good_settings_pass() {
        let mut s = settings();
        s.contact = vec!["mailto:ops@example.com".into()];
        s.on_demand = Some(OnDemand {
            allow: vec!["*.example.com".into()],
            ask: None,
        });
        assert!(s.validate().is_ok());
    }

    #[test]
    fn bad_settings_name_the_field_and_the_fix() {
        type Change = Box<dyn Fn(&mut AcmeSettings)>;
        let cases: Vec<(Change, &str)> = vec![
            (
                Box::new(|s| s.directory = "http://acme.example.com/dir".into()),
                "not an https://",
            ),
            (Box::new(|s| s.directory = "not a url".into()), "directory"),
            (
                Box::new(|s| s.contact = vec!["ops@example.com".into()]),
                "mailto:",
            ),
            (Box::new(|s| s.retry_min = s.retry_max * 2), "retry_min"),
            (
                Box::new(|s| s.renew_before = Duration::ZERO),
                "renew_before",
            ),
            (
                Box::new(|s| s.on_demand = Some(OnDemand::default())),
                "neither an allow list",
            ),
            (
                Box::new(|s| {
                    s.on_demand = Some(OnDemand {
                        allow: vec!["a b".into()],
                        ask: None,
                    })
                }),
                "allow entry",
            ),
            (
                Box::new(|s| {
                    s.on_demand = Some(OnDemand {
                        allow: vec![],
                        ask: Some("ftp://x".into()),
                    })
                }),
                "ask URL",
            ),
        ];
        for (change, expect) in cases {
            let mut s = settings();
            change(&mut s);
            let err = s.validate().expect_err(expect).to_string();
            assert!(err.contains(expect), "{err:?} should contain {expect:?}");
        }
    }

    #[test]
    fn names_are_normalized_or_refused() {
        assert_eq!(
            normalize_name("App.Example.COM.").ok(),
            Some("app.example.com".into())
        );
        for bad in [
            "",
            "a..b",
            "-a.com",
            "a_b.com",
            "*.a.com",
            "127.0.0.1",
            &"a".repeat(64),
        ] {
            assert!(normalize_name(bad).is_err(), "{bad:?} should be refused");
        }
        let set = normalize_set(&["b.com".into(), "A.com".into(), "a.com".into()]);
        assert_eq!(
            set.ok(),
            Some(vec!["a.com".to_string(), "b.com".to_string()])
        );
        assert!(normalize_set(&[]).is_err());
    }
}
