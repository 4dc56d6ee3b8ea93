//! Where things are in the file: byte offsets to line:column, and key paths to the place
//! they are written, from a span-preserving parse (`toml_edit`). serde errors carry a byte
//! span; semantic checks carry a key path; both end up as `file:line:column`.

use crate::error::Problem;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use toml_edit::{ImDocument, Item, TableLike, Value};

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

impl From<&str> for Seg {
    fn from(k: &str) -> Self {
        Seg::Key(k.to_string())
    }
}

impl From<&String> for Seg {
    fn from(k: &String) -> Self {
        Seg::Key(k.clone())
    }
}

impl From<usize> for Seg {
    fn from(i: usize) -> Self {
        Seg::Index(i)
    }
}

/// A key path, shown the way TOML writes it: `apps.web.canary.steps[1].weight`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct KeyPath(pub Vec<Seg>);

/// `key!["apps", name, "replicas"]`
macro_rules! key {
    ($($seg:expr),* $(,)?) => {
        $crate::locate::KeyPath(vec![$($crate::locate::Seg::from($seg)),*])
    };
}
pub(crate) use key;

// === impl KeyPath ===

impl KeyPath {
    pub fn parent(&self) -> KeyPath {
        let mut segs = self.0.clone();
        segs.pop();
        KeyPath(segs)
    }

    /// The last key (the name the user typed), if the path ends in a key.
    pub fn leaf(&self) -> Option<&str> {
        match self.0.last() {
            Some(Seg::Key(k)) => Some(k),
            _ => None,
        }
    }

    /// The name to show for the value at this path and the table holding it:
    /// `proxy.listen[0]` → (`[proxy]`, "listen[0]").
    pub fn split_name(&self) -> (KeyPath, String) {
        let key_at = self.0.iter().rposition(|s| matches!(s, Seg::Key(_)));
        let Some(i) = key_at else {
            return (KeyPath::default(), self.to_string());
        };
        let name = KeyPath(self.0[i..].to_vec()).to_string();
        (KeyPath(self.0[..i].to_vec()), name)
    }

    /// "in [apps.web]", "in `apps.web.canary.steps[1]`" or "at the top level".
    pub fn describe_as_container(&self) -> String {
        if self.0.is_empty() {
            "at the top level".into()
        } else if self.0.iter().any(|s| matches!(s, Seg::Index(_))) {
            format!("in `{self}`")
        } else {
            format!("in [{self}]")
        }
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Index(n) => write!(f, "[{n}]")?,
                Seg::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if bare {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{k:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Every key of the document with the span of the key and of its value.
pub(crate) struct Locator {
    entries: Vec<Entry>,
}

struct Entry {
    path: KeyPath,
    key: Option<Range<usize>>,
    value: Option<Range<usize>>,
}

// === impl Locator ===

impl Locator {
    /// Parses `text`; a syntax error comes back as toml_edit reports it.
    pub fn new(text: &str) -> Result<Locator, toml_edit::TomlError> {
        let doc = ImDocument::parse(text)?;
        let mut entries = Vec::new();
        walk_table(doc.as_table(), &KeyPath::default(), &mut entries);
        Ok(Locator { entries })
    }

    /// The deepest key whose name (as written) contains `offset`.
    pub fn key_at(&self, offset: usize) -> Option<&KeyPath> {
        self.entries
            .iter()
            .filter(|e| e.key.as_ref().is_some_and(|r| r.contains(&offset)))
            .max_by_key(|e| e.path.0.len())
            .map(|e| &e.path)
    }

    /// The deepest key whose name or value contains `offset`.
    pub fn path_at(&self, offset: usize) -> Option<&KeyPath> {
        let contains = |r: &Option<Range<usize>>| r.as_ref().is_some_and(|r| r.contains(&offset));
        self.entries
            .iter()
            .filter(|e| contains(&e.key) || contains(&e.value))
            .max_by_key(|e| e.path.0.len())
            .map(|e| &e.path)
    }

    /// Where `path` is written: its key, or else the nearest written ancestor (a key
    /// left to its default is reported at the table that should hold it).
    pub fn offset_of(&self, path: &KeyPath) -> Option<usize> {
        let mut segs = path.0.as_slice();
        loop {
            let found = self.entries.iter().find(|e| e.path.0 == segs);
            if let Some(span) = found.and_then(|e| e.key.clone().or_else(|| e.value.clone())) {
                return Some(span.start);
            }
            segs = segs.split_last()?.1;
        }
    }
}

/// Where each key of a loaded file is written (its line and column), for problems that
/// only a later step finds (a certificate file that cannot be used is found when the
/// proxy reads it): [`Places::problem`] gives them the same `file:line:column` as the
/// file's own problems.
#[derive(Clone, Default)]
pub struct Places {
    file: PathBuf,
    /// Every key as `Display` of its path writes it, with its line and column.
    keys: Arc<Vec<(String, (usize, usize))>>,
}

impl Places {
    pub(crate) fn new(file: &Path, text: &str, locator: &Locator) -> Places {
        let keys = locator
            .entries
            .iter()
            .filter_map(|e| {
                let span = e.key.as_ref().or(e.value.as_ref())?;
                Some((e.path.to_string(), line_col(text, span.start)))
            })
            .collect();
        Places {
            file: file.to_path_buf(),
            keys: Arc::new(keys),
        }
    }

    /// The line and column of `key` (`proxy.tls.certificates[1].key`), or of the
    /// nearest enclosing key that is written.
    pub fn line_col(&self, key: &str) -> Option<(usize, usize)> {
        let mut at = key;
        loop {
            if let Some((_, place)) = self.keys.iter().find(|(k, _)| k == at) {
                return Some(*place);
            }
            at = &at[..at.rfind(['.', '['])?];
        }
    }

    /// A problem about `key`, shown as `file:line:column: message`.
    pub fn problem(&self, key: &str, message: impl Into<String>) -> Problem {
        let place = self.line_col(key);
        Problem {
            file: self.file.clone(),
            line: place.map(|p| p.0),
            column: place.map(|p| p.1),
            key: Some(key.to_string()),
            message: message.into(),
        }
    }
}

/// Where keys are written is not part of what the configuration says: two configs that
/// differ only in layout are equal.
impl PartialEq for Places {
    fn eq(&self, _: &Places) -> bool {
        true
    }
}

impl fmt::Debug for Places {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Places({} keys)", self.keys.len())
    }
}

fn walk_table(table: &dyn TableLike, at: &KeyPath, out: &mut Vec<Entry>) {
    for (name, item) in table.iter() {
        let mut path = at.clone();
        path.0.push(Seg::Key(name.to_string()));
        out.push(Entry {
            path: path.clone(),
            key: table.key(name).and_then(|k| k.span()),
            value: item.span(),
        });
        walk_item(item, &path, out);
    }
}

fn walk_item(item: &Item, at: &KeyPath, out: &mut Vec<Entry>) {
    match item {
        Item::Table(t) => walk_table(t, at, out),
        Item::Value(v) => walk_value(v, at, out),
        Item::ArrayOfTables(tables) => {
            for (i, t) in tables.iter().enumerate() {
                let mut path = at.clone();
                path.0.push(Seg::Index(i));
                out.push(Entry {
                    path: path.clone(),
                    key: None,
                    value: t.span(),
                });
                walk_table(t, &path, out);
            }
        }
        Item::None => {}
    }
}

fn walk_value(value: &Value, at: &KeyPath, out: &mut Vec<Entry>) {
    match value {
        Value::InlineTable(t) => walk_table(t, at, out),
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let mut path = at.clone();
                path.0.push(Seg::Index(i));
                out.push(Entry {
                    path: path.clone(),
                    key: None,
                    value: v.span(),
                });
                walk_value(v, &path, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const TEXT: &str = "[apps.web]\nreplicas = 2\n\n[apps.web.canary]\nsteps = [{ weight = 1 }, { pause = \"1m\" }]\n";

    #[test]
    fn finds_keys_by_path_and_falls_back_to_the_enclosing_table() {
        let loc = Locator::new(TEXT).unwrap();
        let at = |p: KeyPath| line_col(TEXT, loc.offset_of(&p).unwrap());
        assert_eq!(at(key!["apps", "web", "replicas"]), (2, 1));
        assert_eq!(
            at(key!["apps", "web", "canary", "steps", 1usize, "pause"]),
            (5, 28)
        );
        // `command` is not written: reported at the [apps.web] header.
        assert_eq!(at(key!["apps", "web", "command"]), (1, 7));
        assert!(loc.offset_of(&key!["proxy", "listen"]).is_none());
    }

    #[test]
    fn finds_the_path_at_an_offset() {
        let loc = Locator::new(TEXT).unwrap();
        let offset = TEXT.find("weight").unwrap();
        let p = loc.path_at(offset).unwrap();
        assert_eq!(p.to_string(), "apps.web.canary.steps[0].weight");
        assert_eq!(
            p.parent().describe_as_container(),
            "in `apps.web.canary.steps[0]`"
        );
        assert_eq!(
            key!["apps", "my.app"].describe_as_container(),
            "in [apps.\"my.app\"]"
        );
    }

    #[test]
    fn places_give_a_key_or_its_nearest_written_parent_a_line() {
        let text = "[proxy]\ntls_listen = []\n\n[[proxy.tls.certificates]]\ncert = \"a.pem\"\nkey = \"a.key\"\n\n[[proxy.tls.certificates]]\ncert = \"b.pem\"\nkey = \"b.key\"\n";
        let places = Places::new(
            Path::new("/x/baton.toml"),
            text,
            &Locator::new(text).unwrap(),
        );
        assert_eq!(
            places.line_col("proxy.tls.certificates[1].key"),
            Some((10, 1))
        );
        assert_eq!(
            places.line_col("proxy.tls.certificates[0].cert"),
            Some((5, 1))
        );
        // `hosts` is not written: the entry's table.
        assert_eq!(
            places.line_col("proxy.tls.certificates[1].hosts"),
            Some((8, 1))
        );
        let p = places.problem("proxy.tls.certificates[1].key", "bad key");
        assert_eq!(p.to_string(), "/x/baton.toml:10:1: bad key");
        assert_eq!(places.line_col("store.path"), None);
        assert_eq!(
            places.problem("store.path", "x").to_string(),
            "/x/baton.toml: x"
        );
    }

    #[test]
    fn line_and_column_count_characters() {
        assert_eq!(line_col("a\nbé = 1", 0), (1, 1));
        assert_eq!(line_col("a\nbé = 1", 2), (2, 1));
        assert_eq!(line_col("a\nbé = 1", 5), (2, 3));
    }
}
