//! Host + path-prefix routing to an app. Exact hosts beat `*.suffix` wildcards, which
//! beat routes without a host; inside the first host class that has a matching prefix,
//! the longest prefix (at a segment boundary) wins. Hosts compare case-insensitively
//! without their port.

use crate::error::RouteError;
use baton_core::RouteSpec;
use std::collections::HashMap;

/// Compiled routes. A route's target is an index into `names` (the distinct app names
/// the routes mention), not into the snapshot's app list: the router depends on the
/// routes alone, so adding or removing an app only re-resolves the small `targets`
/// table (see [`Router::resolve`]) instead of rebuilding every host table.
#[derive(Debug, Default)]
pub(crate) struct Router {
    exact: HashMap<Box<str>, PathTable>,
    /// `(".example.com", table)`, longest suffix first.
    wildcard: Vec<(Box<str>, PathTable)>,
    any: PathTable,
    /// App names in order of first mention; route targets index into this.
    names: Vec<Box<str>>,
}

/// Path prefixes of one host class, longest first.
#[derive(Debug, Default)]
struct PathTable {
    entries: Vec<(Box<str>, usize, Box<str>)>,
}

impl Router {
    /// Build from route specs, checking hosts, prefixes and duplicates.
    pub fn build(routes: &[RouteSpec]) -> Result<Router, RouteError> {
        let mut router = Router::default();
        let mut name_index: HashMap<&str, usize> = HashMap::new();
        for r in routes {
            let shown_host = r.host.clone().unwrap_or_else(|| "*".into());
            let next = name_index.len();
            let app = *name_index.entry(r.app.as_str()).or_insert(next);
            if app == next {
                router.names.push(r.app.as_str().into());
            }
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

    /// For each name this router targets, its index in the app list (`app_index`).
    /// `routes` must be what the router was built from; it names the route in the error
    /// when an app does not exist.
    pub fn resolve(
        &self,
        routes: &[RouteSpec],
        app_index: impl Fn(&str) -> Option<usize>,
    ) -> Result<Vec<usize>, RouteError> {
        (0..self.names.len())
            .map(|t| app_index(&self.names[t]).ok_or_else(|| self.unknown_app(routes, t)))
            .collect()
    }

    /// The error for target `t` naming an app that does not exist, at its first route.
    pub fn unknown_app(&self, routes: &[RouteSpec], t: usize) -> RouteError {
        let name = self.names.get(t).map_or("", |n| &**n);
        let route = routes.iter().find(|r| r.app == name);
        RouteError::UnknownApp {
            host: route
                .and_then(|r| r.host.clone())
                .unwrap_or_else(|| "*".into()),
            path: route.map(|r| r.path_prefix.clone()).unwrap_or_default(),
            app: name.to_string(),
        }
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

    /// The target (an index into the names, mapped to an app by the snapshot's
    /// `targets`) for a request's host (as sent, any case, maybe with a port) and path.
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

/// Fuzzing entry point, not an API: publish each table in turn through a fresh
/// [`crate::Proxy`] (the same validation and compilation as production), then route one
/// request against the last table that was accepted. Returns the app and version the
/// request would go to. Panics only if routing breaks its own invariants.
#[doc(hidden)]
pub fn fuzz_route(
    tables: &[baton_core::RouteTableSpec],
    req: &http::request::Parts,
) -> Option<(String, String)> {
    let metrics = std::sync::Arc::new(baton_metrics::MetricsRegistry::new());
    let proxy = crate::Proxy::new(crate::ProxyConfig::default(), metrics);
    for table in tables {
        let _ = proxy.publish(table);
    }
    let snapshot = proxy.inner.snapshot.load();
    let host = crate::headers::request_host(&req.uri, &req.headers);
    let host = host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or("");
    let app = snapshot.route(host, req.uri.path())?;
    let choice = crate::select::choose_pool(app, req)?;
    let pool = &app.pools[choice.pool];
    assert!(pool.has_backends(), "routed to a pool without backends");
    Some((app.name.to_string(), pool.version.to_string()))
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

    /// Routes built and resolved against `index`, answering app indexes.
    #[derive(Debug)]
    struct Resolved(Router, Vec<usize>);

    impl Resolved {
        fn route(&self, host: &str, path: &str) -> Option<usize> {
            self.0.route(host, path).map(|t| self.1[t])
        }
    }

    fn build(routes: &[RouteSpec]) -> Result<Resolved, RouteError> {
        let r = Router::build(routes)?;
        let targets = r.resolve(routes, index)?;
        Ok(Resolved(r, targets))
    }

    #[test]
    fn exact_beats_wildcard_beats_any_and_longest_prefix_wins() {
        let r = build(&[
            route(None, "/", "any"),
            route(None, "/api", "api"),
            route(Some("Example.com"), "/", "exact"),
            route(Some("*.example.com"), "/", "wild"),
            route(Some("*.b.example.com"), "/", "deep"),
        ])
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
        let r = build(&[
            route(Some("example.com"), "/admin", "exact"),
            route(None, "/", "any"),
        ])
        .unwrap();
        assert_eq!(r.route("example.com", "/admin/x"), index("exact"));
        assert_eq!(r.route("example.com", "/"), index("any"));
        let none = build(&[route(Some("example.com"), "/", "exact")]).unwrap();
        assert_eq!(none.route("other.com", "/"), None);
    }

    #[test]
    fn rejects_bad_hosts_unknown_apps_and_duplicates() {
        for host in ["", "a.*.com", "example.com:80", "exa mple.com", "*."] {
            let e = build(&[route(Some(host), "/", "any")]).unwrap_err();
            assert!(matches!(e, RouteError::BadHost { .. }), "{host}: {e}");
        }
        let e = build(&[route(None, "/", "nope")]).unwrap_err();
        assert!(e.to_string().contains("\"nope\""), "{e}");
        let e = build(&[route(None, "api", "api")]).unwrap_err();
        assert!(matches!(e, RouteError::BadPathPrefix { .. }));
        let e = build(&[route(None, "/", "api"), route(None, "/", "any")]).unwrap_err();
        assert!(matches!(e, RouteError::DuplicateRoute { .. }));
    }
}
