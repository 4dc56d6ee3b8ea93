//! App names and versions appear in URLs, file names, cookies and labels, so both are
//! restricted to a safe alphabet.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum NameError {
    #[error("{kind} {value:?} is not valid: use 1-{max} characters from a-z A-Z 0-9 . _ - (starting with a letter or digit)")]
    Invalid {
        kind: &'static str,
        value: String,
        max: usize,
    },
}

fn check(kind: &'static str, value: &str, max: usize) -> Result<(), NameError> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(NameError::Invalid {
            kind,
            value: value.to_string(),
            max,
        })
    }
}

/// An app name: `web`, `api-v2`, `my_app`.
pub fn validate_app_name(name: &str) -> Result<(), NameError> {
    check("app name", name, 63)
}

/// A version label: `v1`, `1.4.2`, `2024-06-01_3`, a git sha.
pub fn validate_version(version: &str) -> Result<(), NameError> {
    check("version", version, 128)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_common_names_and_rejects_unsafe_ones() {
        assert!(validate_app_name("web").is_ok());
        assert!(validate_version("1.4.2-rc1").is_ok());
        assert!(validate_version("a1b2c3d").is_ok());
        assert!(validate_app_name("").is_err());
        assert!(validate_app_name("-web").is_err());
        assert!(validate_version("v1;rm -rf").is_err());
        assert!(validate_version("v1/../x").is_err());
    }
}
