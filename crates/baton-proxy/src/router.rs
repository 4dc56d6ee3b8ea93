//! Host + path-prefix routing to an app. Exact hosts beat `*.suffix` wildcards, which
//! beat routes without a host; inside the first host class that has a matching prefix,
//! the longest prefix (at a segment boundary) wins. Hosts compare case-insensitively
//! without their port.

use crate::error::RouteError;
use baton_core::RouteSpec;
use std::collections::HashMap;

/// Compiled routes; app targets are indexes into the snapshot's app list.
#[derive(Debug, Default)]
pub(crate) struct Router {
    exact: HashMap<Box<str>, PathTable>,
    /// `(".example.com", table)`, longest suffix first.
    wildcard: Vec<(Box<str>, PathTable)>,
    any: PathTable,
}

/// Path prefixes of one host class, longest first.
#[derive(Debug, Default)]
struct PathTable {
    entries: Vec<(Box<str>, usize, Box<str>)>,
}

impl Router {
    /// Build from route specs; `app_index` resolves an app name to its index.
    pub fn build(
        routes: &[RouteSpec],
        app_index: impl Fn(&str) -> Option<usize>,
    ) -> Result<Router, RouteError> {
        let mut router = Router::default();
        for r in routes {
            let shown_host = r.host.clone().unwrap_or_else(|| "*".into());
            let app = app_index(&r.app).ok_or_else(|| RouteError::UnknownApp {
                host: shown_host.clone(),
                path: r.path_prefix.clone(),
                app: r.app.clone(),
            })?;
            if !r.path_prefix.starts_with('/') {
                return Err(RouteError::BadPathPrefix {
                    app: r.app.clone(),
                    path: r.path_prefix.clone(),
                });
            }
            let table = match &r.host {
                None => &mut router.any,
                Some(h) => match check_host(h)? {
                    HostPattern::Exact(h) => router.exact.entry(h.into()).or_default(),
                    HostPattern::Suffix(s) => router.wildcard_table(s),
                },
            };
            table.add(&r.path_prefix, app, &r.app, &shown_host)?;
        }
        router
            .wildcard
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        Ok(router)
    }

    fn wildcard_table(&mut self, suffix: String) -> &mut PathTable {
        let i = match self.wildcard.iter().position(|(s, _)| **s == *suffix) {
            Some(i) => i,
            None => {
                self.wildcard.push((suffix.into(), PathTable::default()));
                self.wildcard.len() - 1
            }
        };
        &mut self.wildcard[i].1
    }

    /// The app index for a request's host (as sent, any case, maybe with a port) and path.
    pub fn route(&self, host: &str, path: &str) -> Option<usize> {
        let host = strip_port(host);
        let host = host.strip_suffix('.').unwrap_or(host);
        if host.bytes().any(|b| b.is_ascii_uppercase()) {
            self.route_lower(&host.to_ascii_lowercase(), path)
        } else {
            self.route_lower(host, path)
        }
    }

    fn route_lower(&self, host: &str, path: &str) -> Option<usize> {
        if let Some(app) = self.exact.get(host).and_then(|t| t.find(path)) {
            return Some(app);
        }
        for (suffix, table) in &self.wildcard {
            if host.len() > suffix.len() && host.ends_with(&**suffix) {
                if let Some(app) = table.find(path) {
                    return Some(app);
                }
            }
        }
        self.any.find(path)
    }
}

impl PathTable {
    fn add(&mut self, prefix: &str, app: usize, name: &str, host: &str) -> Result<(), RouteError> {
        if let Some((_, _, first)) = self.entries.iter().find(|(p, _, _)| **p == *prefix) {
            return Err(RouteError::DuplicateRoute {
                host: host.to_string(),
                path: prefix.to_string(),
                first: first.to_string(),
                second: name.to_string(),
            });
        }
        self.entries.push((prefix.into(), app, name.into()));
        self.entries.sort_by_key(|e| std::cmp::Reverse(e.0.len()));
        Ok(())
    }

    fn find(&self, path: &str) -> Option<usize> {
        self.entries
            .iter()
            .find(|(prefix, _, _)| prefix_matches(prefix, path))
            .map(|(_, app, _)| *app)
    }
}

/// `/api` matches `/api` and `/api/x` but not `/apix`; `/` and `/api/` match by plain
/// prefix.
pub(crate) fn prefix_matches(prefix: &str, path: &str) -> bool {
    let Some(rest) = path.strip_prefix(prefix) else {
        return false;
    };
    rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/')
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // IPv6 literal: keep up to the closing bracket.
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

enum HostPattern {
    Exact(String),
    /// Includes the leading dot: `.example.com`.
    Suffix(String),
}

fn check_host(host: &str) -> Result<HostPattern, RouteError> {
    let bad = |reason| RouteError::BadHost {
        host: host.to_string(),
        reason,
    };
    let lower = host.to_ascii_lowercase();
    let (pattern, name) = match lower.strip_prefix("*.") {
        Some(rest) => (HostPattern::Suffix(format!(".{rest}")), rest.to_string()),
        None => (HostPattern::Exact(lower.clone()), lower.clone()),
    };
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if name.contains('*') {
        return Err(bad(
            "'*' is only allowed as the first label (\"*.example.com\")",
        ));
    }
    if name.contains(':') && !name.starts_with('[') {
        return Err(bad(
            "it has a port; the port is ignored when matching, remove it",
        ));
    }
    let allowed =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '[' | ']' | ':');
    if !name.chars().all(allowed) || name.starts_with('.') || name.ends_with('.') {
        return Err(bad("it has characters not allowed in a host name"));
    }
    Ok(pattern)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn route(host: Option<&str>, path: &str, app: &str) -> RouteSpec {
        RouteSpec {
            host: host.map(str::to_string),
            path_prefix: path.to_string(),
            app: app.to_string(),
        }
    }

    fn index(name: &str) -> Option<usize> {
        ["any", "api", "exact", "wild", "deep"]
            .iter()
            .position(|n| *n == name)
    }

    #[test]
    fn exact_beats_wildcard_beats_any_and_longest_prefix_wins() {
        let r = Router::build(
            &[
                route(None, "/", "any"),
                route(None, "/api", "api"),
                route(Some("Example.com"), "/", "exact"),
                route(Some("*.example.com"), "/", "wild"),
                route(Some("*.b.example.com"), "/", "deep"),
            ],
            index,
        )
        .unwrap();
        assert_eq!(r.route("example.com:8080", "/x"), index("exact"));
        assert_eq!(r.route("EXAMPLE.COM", "/"), index("exact"));
        assert_eq!(r.route("a.example.com", "/api"), index("wild"));
        assert_eq!(r.route("a.b.example.com", "/"), index("deep"));
        assert_eq!(r.route("other.org", "/api/v1"), index("api"));
        assert_eq!(r.route("other.org", "/apix"), index("any"));
        assert_eq!(r.route("[::1]:80", "/api"), index("api"));
    }

    #[test]
    fn falls_through_host_classes_when_no_prefix_matches() {
        let r = Router::build(
            &[
                route(Some("example.com"), "/admin", "exact"),
                route(None, "/", "any"),
            ],
            index,
        )
        .unwrap();
        assert_eq!(r.route("example.com", "/admin/x"), index("exact"));
        assert_eq!(r.route("example.com", "/"), index("any"));
        let none = Router::build(&[route(Some("example.com"), "/", "exact")], index).unwrap();
        assert_eq!(none.route("other.com", "/"), None);
    }

    #[test]
    fn rejects_bad_hosts_unknown_apps_and_duplicates() {
        for host in ["", "a.*.com", "example.com:80", "exa mple.com", "*."] {
            let e = Router::build(&[route(Some(host), "/", "any")], index).unwrap_err();
            assert!(matches!(e, RouteError::BadHost { .. }), "{host}: {e}");
        }
        let e = Router::build(&[route(None, "/", "nope")], index).unwrap_err();
        assert!(e.to_string().contains("\"nope\""), "{e}");
        let e = Router::build(&[route(None, "api", "api")], index).unwrap_err();
        assert!(matches!(e, RouteError::BadPathPrefix { .. }));
        let e =
            Router::build(&[route(None, "/", "api"), route(None, "/", "any")], index).unwrap_err();
        assert!(matches!(e, RouteError::DuplicateRoute { .. }));
    }
}
