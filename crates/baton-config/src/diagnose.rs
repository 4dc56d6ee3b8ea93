//! Turns toml's syntax and serde errors into problems people can act on: the key path,
//! the enclosing table, and for a misspelt key or value the closest valid one.

use crate::locate::{KeyPath, Locator};

/// A problem before it is placed in the file: a byte offset (or a key path to look up)
/// and a message.
pub(crate) struct Found {
    pub offset: Option<usize>,
    pub key: Option<KeyPath>,
    pub message: String,
}

/// A TOML syntax error (the file does not parse at all).
pub(crate) fn syntax(err: &toml_edit::TomlError) -> Found {
    Found {
        offset: err.span().map(|s| s.start),
        key: None,
        message: format!("invalid TOML: {}", one_line(err.message())),
    }
}

/// A serde error: unknown key, unknown value, missing key, wrong type or invalid value.
pub(crate) fn schema(err: &toml::de::Error, locator: &Locator) -> Found {
    let offset = err.span().map(|s| s.start);
    let message = one_line(err.message());
    let unknown_field = names_after(&message, "unknown field ");
    // An unknown field's span is the key itself; anything else points at a value.
    let at = offset.and_then(|o| match unknown_field {
        Some(_) => locator.key_at(o).or_else(|| locator.path_at(o)),
        None => locator.path_at(o),
    });
    let at = at.cloned();
    let (key, message) = match (unknown_field, at) {
        (Some((word, expected)), Some(at)) => {
            // The span is the unknown key itself; its table is the parent.
            let table = if at.leaf() == Some(word.as_str()) {
                at.parent()
            } else {
                at.clone()
            };
            let msg = unknown(&format!("key `{word}`"), &word, &expected, &table);
            (Some(at), msg)
        }
        (Some((word, expected)), None) => {
            let msg = unknown(
                &format!("key `{word}`"),
                &word,
                &expected,
                &KeyPath::default(),
            );
            (None, msg)
        }
        (None, at) => (at.clone(), other(&message, at.as_ref())),
    };
    Found {
        offset,
        key,
        message,
    }
}

fn other(message: &str, at: Option<&KeyPath>) -> String {
    if let Some((word, expected)) = names_after(message, "unknown variant ") {
        let what = match at.and_then(|p| p.leaf()) {
            Some(leaf) => format!("value \"{word}\" for `{leaf}`"),
            None => format!("value \"{word}\""),
        };
        let table = at.map(KeyPath::parent).unwrap_or_default();
        return unknown(&what, &word, &expected, &table);
    }
    let message = friendlier(message);
    if let Some(field) = quoted(message.strip_prefix("missing field ").unwrap_or("")) {
        let table = at.cloned().unwrap_or_default();
        return format!("missing key `{field}` {}", table.describe_as_container());
    }
    match at {
        Some(at) => {
            let (table, name) = at.split_name();
            format!(
                "invalid `{name}` {}: {message}",
                table.describe_as_container()
            )
        }
        None => message,
    }
}

/// "unknown key `replica` in [apps.web]; did you mean `replicas`?"
fn unknown(what: &str, word: &str, expected: &[String], table: &KeyPath) -> String {
    let mut msg = format!("unknown {what} {}", table.describe_as_container());
    match closest(word, expected) {
        Some(best) => msg.push_str(&format!("; did you mean `{best}`?")),
        None if expected.is_empty() => msg.push_str("; this table takes no keys"),
        None if expected.len() == 1 => {
            msg.push_str(&format!("; the only valid key here is `{}`", expected[0]));
        }
        None => {
            let all: Vec<String> = expected.iter().map(|e| format!("`{e}`")).collect();
            msg.push_str(&format!("; expected one of {}", all.join(", ")));
        }
    }
    msg
}

/// The candidate most similar to `word`, if it is similar enough to be a likely typo.
pub(crate) fn closest<'a>(word: &str, candidates: &'a [String]) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (c, strsim::jaro_winkler(&word, &c.to_ascii_lowercase())))
        .filter(|(_, score)| *score >= 0.8)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(c, _)| c.as_str())
}

/// For serde's "unknown field `x`, expected one of `a`, `b`": `x` and `[a, b]`.
fn names_after(message: &str, prefix: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix(prefix)?;
    let word = quoted(rest)?;
    let after = rest.split_once(", ").map_or("", |(_, e)| e);
    let expected = after
        .split('`')
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect();
    Some((word, expected))
}

/// The first `backtick-quoted` word.
fn quoted(s: &str) -> Option<String> {
    let mut parts = s.split('`');
    parts.next()?;
    parts.next().map(String::from)
}

/// serde speaks Rust; the config is TOML.
fn friendlier(message: &str) -> String {
    let mut out = message.to_string();
    for (rust, toml) in [
        ("expected u16", "expected a whole number from 0 to 65535"),
        ("expected u32", "expected a whole number of 0 or more"),
        ("expected u64", "expected a whole number of 0 or more"),
        ("expected usize", "expected a whole number of 0 or more"),
        ("expected a boolean", "expected true or false"),
        ("expected a borrowed string", "expected a string"),
        ("expected a sequence", "expected an array [...]"),
        (
            "invalid socket address syntax",
            "invalid address: write IP:PORT, e.g. \"127.0.0.1:8080\"",
        ),
        (
            "invalid IP address syntax",
            "invalid IP address, e.g. \"10.0.0.1\"",
        ),
    ] {
        out = out.replace(rust, toml);
    }
    if let Some(i) = out.find("expected struct ") {
        out.replace_range(i.., "expected a table");
    }
    out
}

fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let keys: Vec<String> = ["runtime", "replicas", "strategy", "ports"]
            .map(String::from)
            .to_vec();
        assert_eq!(closest("replica", &keys), Some("replicas"));
        assert_eq!(closest("stratgy", &keys), Some("strategy"));
        assert_eq!(closest("Runtime", &keys), Some("runtime"));
        assert_eq!(closest("xyzzy", &keys), None);
    }

    #[test]
    fn reads_serde_expected_lists() {
        let (w, e) = names_after(
            "unknown field `replica`, expected one of `a`, `b`",
            "unknown field ",
        )
        .unwrap_or_default();
        assert_eq!(
            (w.as_str(), e),
            ("replica", vec!["a".to_string(), "b".to_string()])
        );
        let (w, e) = names_after("unknown field `x`, expected `a` or `b`", "unknown field ")
            .unwrap_or_default();
        assert_eq!((w.as_str(), e.len()), ("x", 2));
        let (_, e) = names_after("unknown field `x`, there are no fields", "unknown field ")
            .unwrap_or_default();
        assert!(e.is_empty());
    }
}
