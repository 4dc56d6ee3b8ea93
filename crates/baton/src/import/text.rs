//! The small text formats a compose file carries: `${VAR}` interpolation with `.env`,
//! Go-style durations (`1m30s`), Docker memory sizes (`512m`) and TOML string quoting.

use std::collections::BTreeMap;

/// Variables for interpolation, looked up as compose does: the shell environment first,
/// then the `.env` file beside the compose file.
pub struct Vars {
    dotenv: BTreeMap<String, String>,
    use_process_env: bool,
    /// Variables referenced but set nowhere (compose substitutes an empty string).
    pub missing: Vec<String>,
}

impl Vars {
    pub fn new(dotenv: BTreeMap<String, String>, use_process_env: bool) -> Vars {
        Vars {
            dotenv,
            use_process_env,
            missing: Vec::new(),
        }
    }

    /// The value of `name` and where it came from.
    pub fn lookup(&self, name: &str) -> Option<(String, &'static str)> {
        if self.use_process_env {
            if let Ok(v) = std::env::var(name) {
                return Some((v, "the environment"));
            }
        }
        self.dotenv.get(name).map(|v| (v.clone(), ".env"))
    }

    /// Substitutes `$$`, `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
    /// `${VAR:?err}`, `${VAR?err}`, `${VAR:+alt}` and `${VAR+alt}` like compose does.
    pub fn interpolate(&mut self, s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            if let Some(r) = after.strip_prefix('$') {
                out.push('$');
                rest = r;
            } else if let Some(body_and_rest) = after.strip_prefix('{') {
                let Some(end) = matching_brace(body_and_rest) else {
                    // Unbalanced: keep the text as written.
                    out.push_str(&rest[i..]);
                    return out;
                };
                let body = &body_and_rest[..end];
                let value = self.expand(body);
                out.push_str(&value);
                rest = &body_and_rest[end + 1..];
            } else {
                let len = after
                    .char_indices()
                    .take_while(|(j, c)| {
                        c.is_ascii_alphanumeric() && !(*j == 0 && c.is_ascii_digit()) || *c == '_'
                    })
                    .count();
                if len == 0 {
                    out.push('$');
                    rest = after;
                } else {
                    let name = &after[..len];
                    let value = self.get_or_missing(name);
                    out.push_str(&value);
                    rest = &after[len..];
                }
            }
        }
        out.push_str(rest);
        out
    }

    fn get_or_missing(&mut self, name: &str) -> String {
        match self.lookup(name) {
            Some((v, _)) => v,
            None => {
                if !self.missing.iter().any(|m| m == name) {
                    self.missing.push(name.to_string());
                }
                String::new()
            }
        }
    }

    /// One `${...}` body: a name and an optional modifier.
    fn expand(&mut self, body: &str) -> String {
        let name_len = body
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(body.len());
        let (name, modifier) = body.split_at(name_len);
        let value = self.lookup(name).map(|(v, _)| v);
        let (op, arg) = match modifier {
            "" => ("", ""),
            m if m.len() >= 2 && m.starts_with(':') => m.split_at(2),
            m => m.split_at(1),
        };
        match op {
            ":-" => match value.filter(|v| !v.is_empty()) {
                Some(v) => v,
                None => self.interpolate(arg),
            },
            "-" => match value {
                Some(v) => v,
                None => self.interpolate(arg),
            },
            ":+" => match value.filter(|v| !v.is_empty()) {
                Some(_) => self.interpolate(arg),
                None => String::new(),
            },
            "+" => match value {
                Some(_) => self.interpolate(arg),
                None => String::new(),
            },
            _ => self.get_or_missing(name),
        }
    }
}

/// The index of the `}` closing a `${`, counting nested `${...}`.
fn matching_brace(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = s.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'{' if i > 0 && bytes[i - 1] == b'$' => depth += 1,
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// A `.env` file: `KEY=VALUE` lines, `#` comments, optional `export ` and quotes.
pub fn parse_dotenv(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = if v.len() >= 2
            && ((v.starts_with('"') && v.ends_with('"'))
                || (v.starts_with('\'') && v.ends_with('\'')))
        {
            &v[1..v.len() - 1]
        } else {
            // An unquoted value ends at ` #`.
            v.split(" #").next().unwrap_or(v).trim_end()
        };
        out.insert(k.trim().to_string(), v.to_string());
    }
    out
}

/// A compose duration (`"30s"`, `"1m30s"`, `"1.5s"`, `"500ms"`) in milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("{s:?} is not a duration like \"30s\" or \"1m30s\""))?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let ms_per = match unit {
            "ns" => 1e-6,
            "us" | "µs" => 1e-3,
            "ms" => 1.0,
            "s" => 1_000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            _ => {
                return Err(format!(
                    "{s:?} has unit {unit:?}; compose durations use ms, s, m or h"
                ))
            }
        };
        total += n * ms_per;
        rest = next;
    }
    Ok(total.round() as u64)
}

/// Milliseconds as a baton duration: `"90s"`, or `"1500ms"` when not whole seconds.
pub fn format_ms(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// A Docker memory size (`512m`, `1g`, `1.5GB`, `268435456`): every unit is binary, as
/// in Docker. Returns bytes.
pub fn parse_docker_memory(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let num_len = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(num_len);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a memory size like \"512m\" or \"1g\""))?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit.trim_end_matches('b').trim_end_matches('i');
    let factor: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("{s:?} has an unknown unit; Docker uses b, k, m, g")),
    };
    Ok((n * factor) as u64)
}

/// Bytes as a baton memory size, in the largest binary unit that divides them exactly.
pub fn format_memory(bytes: u64) -> String {
    for (unit, factor) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= factor && bytes.is_multiple_of(factor) {
            return format!("{}{unit}", bytes / factor);
        }
    }
    bytes.to_string()
}

/// A TOML basic string. JSON's escapes are a subset of TOML's, so serde_json quotes it.
pub fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// A TOML key: bare when it can be, quoted otherwise.
pub fn key(s: &str) -> String {
    let bare = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        s.to_string()
    } else {
        quote(s)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        let m = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Vars::new(m, false)
    }

    #[test]
    fn interpolation_follows_compose() {
        let mut v = vars(&[("A", "1"), ("EMPTY", "")]);
        assert_eq!(v.interpolate("x${A}y$A"), "x1y1");
        assert_eq!(v.interpolate("${B:-8080}:80"), "8080:80");
        assert_eq!(v.interpolate("${EMPTY:-d}|${EMPTY-d}"), "d|");
        assert_eq!(v.interpolate("${A:+set}${B:+set}"), "set");
        assert_eq!(v.interpolate("$$HOME ${B:-${A}}"), "$HOME 1");
        assert!(v.missing.is_empty());
        assert_eq!(v.interpolate("a${NOPE}b"), "ab");
        assert_eq!(v.missing, vec!["NOPE".to_string()]);
        assert_eq!(v.interpolate("cost $5"), "cost $5");
    }

    #[test]
    fn dotenv_lines() {
        let m = parse_dotenv("# c\nexport A=1\nB=\"two words\"\nC=x # note\n\nbad line\n");
        assert_eq!(m.get("A").unwrap(), "1");
        assert_eq!(m.get("B").unwrap(), "two words");
        assert_eq!(m.get("C").unwrap(), "x");
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn durations_and_memory() {
        assert_eq!(parse_duration_ms("1m30s").unwrap(), 90_000);
        assert_eq!(parse_duration_ms("1.5s").unwrap(), 1_500);
        assert_eq!(parse_duration_ms("500ms").unwrap(), 500);
        assert!(parse_duration_ms("soon").is_err());
        assert_eq!(format_ms(90_000), "90s");
        assert_eq!(format_ms(1_500), "1500ms");
        assert_eq!(parse_docker_memory("512m").unwrap(), 512 << 20);
        assert_eq!(parse_docker_memory("1GB").unwrap(), 1 << 30);
        assert_eq!(parse_docker_memory("1.5g").unwrap(), 1536 << 20);
        assert_eq!(format_memory(1536 << 20), "1536MiB");
        assert_eq!(format_memory(2 << 30), "2GiB");
        assert!(parse_docker_memory("lots").is_err());
    }

    #[test]
    fn toml_quoting() {
        assert_eq!(quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
        assert_eq!(key("TZ"), "TZ");
        assert_eq!(key("a.b"), "\"a.b\"");
    }
}
