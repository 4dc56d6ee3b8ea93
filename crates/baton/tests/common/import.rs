//! What the `baton import` tests share: the real binary run without the variables the
//! fixtures interpolate, and `baton validate` on the text it wrote.
#![allow(dead_code, clippy::unwrap_used)]

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BATON: &str = env!("CARGO_BIN_EXE_baton");

/// Runs baton with `unset` removed from its environment, so the shell running the tests
/// cannot change the result.
pub fn baton(args: &[&str], unset: &[&str]) -> Output {
    let mut c = Command::new(BATON);
    c.args(args);
    for v in unset {
        c.env_remove(v);
    }
    c.output().unwrap()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A fixture under tests/fixtures/`kind`/.
pub fn fixture(kind: &str, rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(kind)
        .join(rel)
        .display()
        .to_string()
}

/// Writes `toml` and checks it with `baton validate -c`.
pub fn assert_validates(dir: &Path, toml: &str) -> PathBuf {
    let p = dir.join("baton.toml");
    std::fs::write(&p, toml).unwrap();
    let out = baton(&["validate", "-c", p.to_str().unwrap()], &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "validate failed: {}\n{toml}",
        text(&out.stderr)
    );
    p
}

/// The `key` of each entry of a JSON `untranslated` list.
pub fn keys(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|u| u["key"].as_str().unwrap().to_string())
        .collect()
}

/// Fails unless each of `lines` is in `text`.
pub fn assert_has(text: &str, lines: &[&str]) {
    for line in lines {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}

/// Runs `baton import KIND ARGS -o OUT` and checks it was refused as a usage error naming
/// `expect`, with nothing written.
pub fn assert_refused(kind: &str, args: &[String], expect: &str, out: &Path, unset: &[&str]) {
    let mut all = vec!["import", kind];
    all.extend(args.iter().map(String::as_str));
    all.extend(["-o", out.to_str().unwrap()]);
    let result = baton(&all, unset);
    let err = text(&result.stderr);
    assert_eq!(result.status.code(), Some(2), "{args:?}: {err}");
    assert!(err.contains(expect), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert!(!out.exists(), "{args:?} wrote a file");
}

/// `baton --json import KIND ARGS`, which must succeed, as JSON.
pub fn import_json(kind: &str, args: &[&str], unset: &[&str]) -> Value {
    let mut all = vec!["--json", "import", kind];
    all.extend_from_slice(args);
    let out = baton(&all, unset);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}
