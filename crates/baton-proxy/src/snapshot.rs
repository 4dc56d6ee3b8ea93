//! The immutable route snapshot the request path reads, and its compilation from a
//! `RouteTableSpec` with validation. Apps whose spec did not change keep their previous
//! compiled `Arc`, so a publish costs little more than the apps that changed.

use crate::backend::Backend;
use crate::error::RouteError;
use crate::router::Router;
use crate::select::Weights;
use baton_core::{
    AppRouteSpec, BackendSpec, HoldSpec, MatchSpec, RouteSpec, RouteTableSpec, StickySpec,
    ValueMatch,
};
use baton_metrics::{MetricsRegistry, VersionMetrics};
use http::{HeaderName, HeaderValue};
use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock};

/// Everything one request needs to be routed, swapped as a whole.
#[derive(Default)]
pub(crate) struct Snapshot {
    pub routes: Arc<Vec<RouteSpec>>,
    pub router: Arc<Router>,
    /// For each router target, its index in `apps`.
    pub targets: Arc<[usize]>,
    /// Sorted by name (the spec's `BTreeMap` order).
    pub apps: Vec<Arc<CompiledApp>>,
    /// The whole table, rebuilt from the parts on first request (control plane only).
    spec: OnceLock<Arc<RouteTableSpec>>,
}

pub(crate) struct CompiledApp {
    pub name: Arc<str>,
    /// What this was compiled from; an identical spec reuses this compiled app.
    pub spec: AppRouteSpec,
    pub pools: Vec<CompiledPool>,
    pub rules: Vec<CompiledRule>,
    pub sticky: Option<CompiledSticky>,
    /// Pool weights, counting only pools that have backends.
    pub weights: Weights,
    pub hold: Option<HoldSpec>,
    /// State that outlives snapshots (the hold queue's length).
    pub shared: Arc<AppShared>,
}

#[derive(Default)]
pub(crate) struct AppShared {
    pub held: AtomicUsize,
}

pub(crate) struct CompiledPool {
    pub version: Arc<str>,
    pub backends: Vec<Arc<Backend>>,
    pub metrics: Arc<VersionMetrics>,
    /// A sticky cookie naming this version is honoured (weight > 0 or a rule targets it).
    pub sticky_ok: bool,
    /// `Set-Cookie` value in sticky-cookie mode.
    pub set_cookie: Option<HeaderValue>,
}

pub(crate) struct CompiledRule {
    pub matcher: Matcher,
    pub pool: usize,
}

pub(crate) enum Matcher {
    Header(HeaderName, ValueMatcher),
    Cookie(Box<str>, ValueMatcher),
    Query(Box<str>, ValueMatcher),
}

pub(crate) enum ValueMatcher {
    Exact(Box<str>),
    Regex(regex::bytes::Regex),
    Present,
}

pub(crate) enum CompiledSticky {
    Cookie { name: Box<str> },
    Header(HeaderName),
    HashCookie(Box<str>),
}

impl Snapshot {
    /// The app a request's host and path route to.
    pub fn route(&self, host: &str, path: &str) -> Option<&Arc<CompiledApp>> {
        let target = self.router.route(host, path)?;
        self.apps.get(*self.targets.get(target)?)
    }

    /// The table this snapshot serves.
    pub fn spec(&self) -> Arc<RouteTableSpec> {
        self.spec
            .get_or_init(|| {
                Arc::new(RouteTableSpec {
                    routes: (*self.routes).clone(),
                    apps: self
                        .apps
                        .iter()
                        .map(|a| (a.name.to_string(), a.spec.clone()))
                        .collect(),
                })
            })
            .clone()
    }
}

impl CompiledPool {
    pub fn has_backends(&self) -> bool {
        !self.backends.is_empty()
    }
}

/// The result of compiling a spec, applied by the caller only if compilation succeeded.
pub(crate) struct Compiled {
    pub snapshot: Snapshot,
    /// Backend objects that are new and must enter the registry.
    pub created: Vec<Arc<Backend>>,
    /// Existing backends routed again (their removed flag is cleared before the swap).
    pub readded: Vec<Arc<Backend>>,
    /// Backends of changed or deleted apps that the new snapshot no longer routes to.
    pub dropped: Vec<Arc<Backend>>,
}

/// Inputs that compilation reads but does not change.
pub(crate) struct Env<'a> {
    pub prev: &'a Snapshot,
    pub registry: &'a HashMap<Arc<str>, Arc<Backend>>,
    pub metrics: &'a MetricsRegistry,
    pub max_idle: usize,
}

pub(crate) fn compile(spec: &RouteTableSpec, env: &Env<'_>) -> Result<Compiled, RouteError> {
    let mut cx = Cx {
        env,
        created: Vec::new(),
        readded: Vec::new(),
        ids: HashMap::new(),
    };
    let prev = env.prev;
    let mut apps = Vec::with_capacity(spec.apps.len());
    let mut dropped_from: Vec<&Arc<CompiledApp>> = Vec::new();
    let mut changed: Vec<usize> = Vec::new();
    let mut p = 0; // merge walk over the previous (sorted) apps
    let mut same_names = spec.apps.len() == prev.apps.len();
    for (name, app_spec) in &spec.apps {
        while p < prev.apps.len() && *prev.apps[p].name < **name {
            dropped_from.push(&prev.apps[p]);
            p += 1;
        }
        let old = prev.apps.get(p).filter(|a| *a.name == **name);
        same_names &= old.is_some();
        match old {
            Some(old) if old.spec == *app_spec => apps.push(old.clone()),
            _ => {
                changed.push(apps.len());
                apps.push(Arc::new(cx.app(name, app_spec, old)?));
                dropped_from.extend(old);
            }
        }
        p += usize::from(old.is_some());
    }
    dropped_from.extend(&prev.apps[p.min(prev.apps.len())..]);

    let same_routes = *prev.routes == spec.routes;
    let routes = if same_routes {
        prev.routes.clone()
    } else {
        Arc::new(spec.routes.clone())
    };
    let router = if same_routes {
        prev.router.clone()
    } else {
        Arc::new(Router::build(&spec.routes)?)
    };
    let targets = if same_names && same_routes {
        prev.targets.clone()
    } else {
        let names: Vec<&str> = apps.iter().map(|a| &*a.name).collect();
        router
            .resolve(&spec.routes, |n| names.binary_search(&n).ok())?
            .into()
    };

    let dropped = dropped_backends(changed.iter().map(|i| &apps[*i]), dropped_from);
    Ok(Compiled {
        snapshot: Snapshot {
            routes,
            router,
            targets,
            apps,
            spec: OnceLock::new(),
        },
        created: cx.created,
        readded: cx.readded,
        dropped,
    })
}

/// Backends of `replaced` apps that none of the `changed` (newly compiled) apps uses.
fn dropped_backends<'a>(
    changed: impl Iterator<Item = &'a Arc<CompiledApp>>,
    replaced: Vec<&Arc<CompiledApp>>,
) -> Vec<Arc<Backend>> {
    let kept: std::collections::HashSet<*const Backend> = changed
        .flat_map(|a| a.pools.iter().flat_map(|p| p.backends.iter()))
        .map(Arc::as_ptr)
        .collect();
    replaced
        .iter()
        .flat_map(|a| a.pools.iter().flat_map(|p| p.backends.iter()))
        .filter(|b| !kept.contains(&Arc::as_ptr(b)))
        .cloned()
        .collect()
}

/// Compile a change to one app (`None` deletes it) against the previous snapshot, the
/// other apps and the routes kept as they are. Costs the one app plus a copy of the
/// app pointer list; when an app appears or disappears, the route targets past it
/// shift by one (the router itself is kept). `Ok(None)`: the app is already exactly
/// so, nothing to publish.
pub(crate) fn compile_app(
    name: &str,
    spec: Option<&AppRouteSpec>,
    env: &Env<'_>,
) -> Result<Option<Compiled>, RouteError> {
    let prev = env.prev;
    let found = prev.apps.binary_search_by(|a| (*a.name).cmp(name));
    let mut cx = Cx {
        env,
        created: Vec::new(),
        readded: Vec::new(),
        ids: HashMap::new(),
    };
    let old = found.ok().map(|i| &prev.apps[i]);
    let mut apps = prev.apps.clone();
    let mut changed = None;
    // How the app indexes move: an insert at i shifts i.. up, a removal shifts i+1.. down.
    let mut shift: Option<(usize, bool)> = None;
    match (spec, found) {
        (Some(spec), Ok(i)) => {
            if apps[i].spec == *spec {
                return Ok(None);
            }
            let app = Arc::new(cx.app(name, spec, old)?);
            changed = Some(app.clone());
            apps[i] = app;
        }
        (Some(spec), Err(i)) => {
            let app = Arc::new(cx.app(name, spec, None)?);
            changed = Some(app.clone());
            apps.insert(i, app);
            shift = Some((i, true));
        }
        (None, Ok(i)) => {
            apps.remove(i);
            shift = Some((i, false));
        }
        (None, Err(_)) => return Ok(None),
    }
    let targets = match shift {
        None => prev.targets.clone(),
        Some((i, true)) => prev
            .targets
            .iter()
            .map(|&t| t + usize::from(t >= i))
            .collect(),
        Some((i, false)) => {
            if let Some(t) = prev.targets.iter().position(|&t| t == i) {
                // A route still names the removed app: the error a full publish gives.
                return Err(prev.router.unknown_app(&prev.routes, t));
            }
            prev.targets
                .iter()
                .map(|&t| t - usize::from(t > i))
                .collect()
        }
    };
    let dropped = dropped_backends(changed.iter(), old.into_iter().collect());
    Ok(Some(Compiled {
        snapshot: Snapshot {
            routes: prev.routes.clone(),
            router: prev.router.clone(),
            targets,
            apps,
            spec: OnceLock::new(),
        },
        created: cx.created,
        readded: cx.readded,
        dropped,
    }))
}

struct Cx<'a> {
    env: &'a Env<'a>,
    created: Vec<Arc<Backend>>,
    readded: Vec<Arc<Backend>>,
    /// Backend id -> app, over the apps compiled in this publish.
    ids: HashMap<String, String>,
}

impl Cx<'_> {
    fn app(
        &mut self,
        name: &str,
        spec: &AppRouteSpec,
        old: Option<&Arc<CompiledApp>>,
    ) -> Result<CompiledApp, RouteError> {
        baton_core::validate_app_name(name).map_err(|source| RouteError::InvalidName {
            app: name.to_string(),
            source,
        })?;
        if spec.pools.iter().all(|p| p.weight == 0) && spec.rules.is_empty() && spec.hold.is_none()
        {
            return Err(RouteError::NoTraffic { app: name.into() });
        }
        let app: Arc<str> = name.into();
        let mut pools = Vec::with_capacity(spec.pools.len());
        for (i, pool) in spec.pools.iter().enumerate() {
            baton_core::validate_version(&pool.version).map_err(|source| {
                RouteError::InvalidName {
                    app: name.to_string(),
                    source,
                }
            })?;
            if spec.pools[..i].iter().any(|p| p.version == pool.version) {
                return Err(RouteError::DuplicateVersion {
                    app: name.into(),
                    version: pool.version.clone(),
                });
            }
            pools.push(self.pool(&app, spec, i)?);
        }
        let rules = spec
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let pool = pool_index(name, spec, &r.version, &format!("rule {}", i + 1))?;
                let matcher = matcher(name, i + 1, &r.matcher)?;
                Ok(CompiledRule { matcher, pool })
            })
            .collect::<Result<Vec<_>, RouteError>>()?;
        let sticky = spec.sticky.as_ref().map(|s| sticky(name, s)).transpose()?;
        let effective: Vec<u32> = pools
            .iter()
            .zip(&spec.pools)
            .map(|(c, s)| if c.has_backends() { s.weight } else { 0 })
            .collect();
        Ok(CompiledApp {
            name: app,
            spec: spec.clone(),
            pools,
            rules,
            sticky,
            weights: Weights::new(&effective),
            hold: spec.hold,
            shared: old.map(|o| o.shared.clone()).unwrap_or_default(),
        })
    }

    fn pool(
        &mut self,
        app: &Arc<str>,
        spec: &AppRouteSpec,
        i: usize,
    ) -> Result<CompiledPool, RouteError> {
        let pool = &spec.pools[i];
        let version: Arc<str> = pool.version.as_str().into();
        let backends = pool
            .backends
            .iter()
            .map(|b| self.backend(b, app, &version))
            .collect::<Result<Vec<_>, _>>()?;
        let set_cookie = match &spec.sticky {
            Some(StickySpec::Cookie { name, max_age }) => HeaderValue::from_str(&format!(
                "{name}={}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax",
                pool.version,
                max_age.get().as_secs()
            ))
            .ok(),
            _ => None,
        };
        Ok(CompiledPool {
            metrics: self.env.metrics.version(app, &version),
            sticky_ok: pool.weight > 0 || spec.rules.iter().any(|r| r.version == pool.version),
            version,
            backends,
            set_cookie,
        })
    }

    fn backend(
        &mut self,
        spec: &BackendSpec,
        app: &Arc<str>,
        version: &Arc<str>,
    ) -> Result<Arc<Backend>, RouteError> {
        if let Some(first) = self.ids.insert(spec.id.clone(), app.to_string()) {
            return Err(RouteError::DuplicateBackend {
                id: spec.id.clone(),
                first,
                second: app.to_string(),
            });
        }
        if let Some(b) = self.env.registry.get(spec.id.as_str()) {
            if b.same_identity(spec.addr, app, version) {
                if b.is_removed() {
                    self.readded.push(b.clone());
                }
                return Ok(b.clone());
            }
            if !b.is_removed() && *b.app != **app {
                return Err(RouteError::DuplicateBackend {
                    id: spec.id.clone(),
                    first: b.app.to_string(),
                    second: app.to_string(),
                });
            }
        }
        let b = Arc::new(Backend::new(
            spec.id.as_str().into(),
            spec.addr,
            app.clone(),
            version.clone(),
            self.env.max_idle,
        ));
        self.created.push(b.clone());
        Ok(b)
    }
}

fn pool_index(
    app: &str,
    spec: &AppRouteSpec,
    version: &str,
    used_by: &str,
) -> Result<usize, RouteError> {
    spec.pools
        .iter()
        .position(|p| p.version == version)
        .ok_or_else(|| RouteError::UnknownVersion {
            app: app.into(),
            version: version.into(),
            used_by: used_by.into(),
            known: spec
                .pools
                .iter()
                .map(|p| p.version.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

fn matcher(app: &str, rule: usize, spec: &MatchSpec) -> Result<Matcher, RouteError> {
    let value = |v: &ValueMatch| -> Result<ValueMatcher, RouteError> {
        Ok(match v {
            ValueMatch::Exact(s) => ValueMatcher::Exact(s.as_str().into()),
            ValueMatch::Present => ValueMatcher::Present,
            ValueMatch::Regex(p) => {
                ValueMatcher::Regex(regex::bytes::Regex::new(p).map_err(|source| {
                    RouteError::InvalidRegex {
                        app: app.into(),
                        rule,
                        pattern: p.clone(),
                        source,
                    }
                })?)
            }
        })
    };
    Ok(match spec {
        MatchSpec::Header { name, value: v } => {
            Matcher::Header(header_name(app, "rule header", name)?, value(v)?)
        }
        MatchSpec::Cookie { name, value: v } => {
            Matcher::Cookie(cookie_name(app, "rule cookie", name)?, value(v)?)
        }
        MatchSpec::Query { name, value: v } => {
            if name.is_empty() {
                return Err(bad_name(app, "rule query parameter", name));
            }
            Matcher::Query(name.as_str().into(), value(v)?)
        }
    })
}

fn sticky(app: &str, spec: &StickySpec) -> Result<CompiledSticky, RouteError> {
    Ok(match spec {
        StickySpec::Cookie { name, .. } => CompiledSticky::Cookie {
            name: cookie_name(app, "sticky cookie", name)?,
        },
        StickySpec::Header { name } => {
            CompiledSticky::Header(header_name(app, "sticky header", name)?)
        }
        StickySpec::HashCookie { name } => {
            CompiledSticky::HashCookie(cookie_name(app, "sticky cookie", name)?)
        }
    })
}

fn header_name(app: &str, what: &'static str, name: &str) -> Result<HeaderName, RouteError> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad_name(app, what, name))
}

fn cookie_name(app: &str, what: &'static str, name: &str) -> Result<Box<str>, RouteError> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(bad_name(app, what, name));
    }
    Ok(name.into())
}

fn bad_name(app: &str, what: &'static str, name: &str) -> RouteError {
    RouteError::BadName {
        app: app.into(),
        what,
        name: name.into(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn app(version: &str, weight: u32, ids: &[&str]) -> AppRouteSpec {
        let backends = ids
            .iter()
            .map(|id| BackendSpec {
                id: id.to_string(),
                addr: "127.0.0.1:1".parse().unwrap(),
            })
            .collect();
        let mut a = AppRouteSpec::single(version, backends);
        a.pools[0].weight = weight;
        a
    }

    fn spec(apps: &[(&str, AppRouteSpec)]) -> RouteTableSpec {
        let mut t = RouteTableSpec::default();
        for (name, a) in apps {
            t.routes.push(RouteSpec {
                host: Some(format!("{name}.example.com")),
                path_prefix: "/".into(),
                app: name.to_string(),
            });
            t.apps.insert(name.to_string(), a.clone());
        }
        t
    }

    /// Compile `next` after `prev` the way `publish` does, registering new backends.
    fn publish(
        prev: &Snapshot,
        next: &RouteTableSpec,
        registry: &mut HashMap<Arc<str>, Arc<Backend>>,
    ) -> Compiled {
        let metrics = MetricsRegistry::new();
        let env = Env {
            prev,
            registry,
            metrics: &metrics,
            max_idle: 4,
        };
        let compiled = compile(next, &env).unwrap();
        for b in &compiled.created {
            registry.insert(b.id.clone(), b.clone());
        }
        for b in &compiled.dropped {
            b.set_removed(true);
        }
        compiled
    }

    #[test]
    fn unchanged_apps_keep_their_compiled_arc_and_removed_backends_are_reported() {
        let mut registry = HashMap::new();
        let first = spec(&[
            ("a", app("v1", 100, &["a1"])),
            ("b", app("v1", 100, &["b1", "b2"])),
        ]);
        let s1 = publish(&Snapshot::default(), &first, &mut registry).snapshot;
        assert_eq!(s1.apps.len(), 2);
        assert_eq!(*s1.spec(), first);

        let second = spec(&[
            ("a", app("v1", 100, &["a1"])),
            ("b", app("v2", 100, &["b2", "b3"])),
        ]);
        let c2 = publish(&s1, &second, &mut registry);
        assert!(
            Arc::ptr_eq(&s1.apps[0], &c2.snapshot.apps[0]),
            "app a was recompiled"
        );
        assert!(!Arc::ptr_eq(&s1.apps[1], &c2.snapshot.apps[1]));
        assert!(
            Arc::ptr_eq(&s1.router, &c2.snapshot.router),
            "same routes, same router"
        );
        let dropped: Vec<&str> = c2.dropped.iter().map(|b| &*b.id).collect();
        // b2 changed version, so its old object is dropped too and a new one created.
        assert_eq!(dropped, ["b1", "b2"]);
        let created: Vec<&str> = c2.created.iter().map(|b| &*b.id).collect();
        assert_eq!(created, ["b2", "b3"]);

        // Deleting app b drops its backends; putting b1 back re-adds the same object.
        let third = spec(&[("a", app("v1", 100, &["a1"]))]);
        let c3 = publish(&c2.snapshot, &third, &mut registry);
        assert_eq!(c3.dropped.len(), 2);
        let fourth = spec(&[
            ("a", app("v1", 100, &["a1"])),
            ("b", app("v1", 100, &["b1"])),
        ]);
        let c4 = publish(&c3.snapshot, &fourth, &mut registry);
        assert_eq!(c4.readded.len(), 1);
        assert!(Arc::ptr_eq(&c4.readded[0], &registry["b1"]));
    }

    #[test]
    fn weights_only_count_pools_with_backends() {
        let mut a = app("v1", 30, &["a1"]);
        a.pools.push(baton_core::PoolSpec {
            version: "v2".into(),
            weight: 70,
            backends: vec![],
        });
        let s = publish(
            &Snapshot::default(),
            &spec(&[("a", a)]),
            &mut HashMap::new(),
        )
        .snapshot;
        assert_eq!(s.apps[0].weights, Weights::new(&[30, 0]));
    }

    /// A request no backend of its version accepted goes to another version: by the
    /// others' weights, else (all at 0) the first other with backends; never to one
    /// without backends, and nowhere when there is no other.
    #[test]
    fn a_request_its_version_could_not_take_goes_to_another_by_weight() {
        let mut a = app("v1", 10, &["a1"]);
        for (version, weight, ids) in [("v2", 30, &["b1"][..]), ("v3", 60, &["c1"]), ("v4", 0, &[])]
        {
            a.pools.push(baton_core::PoolSpec {
                version: version.into(),
                weight,
                backends: ids
                    .iter()
                    .map(|id| BackendSpec {
                        id: id.to_string(),
                        addr: "127.0.0.1:1".parse().unwrap(),
                    })
                    .collect(),
            });
        }
        let s = publish(
            &Snapshot::default(),
            &spec(&[("a", a)]),
            &mut HashMap::new(),
        )
        .snapshot;
        let compiled = &s.apps[0];
        let mut rng = fastrand::Rng::with_seed(7);
        let mut counts = [0u32; 4];
        for _ in 0..9000 {
            let choice = crate::select::other_pool(compiled, "v1", &mut rng).unwrap();
            assert!(!choice.set_cookie);
            counts[choice.pool] += 1;
        }
        assert_eq!(counts[0], 0, "never the version that failed");
        assert_eq!(counts[3], 0, "never a version without backends");
        // v2 : v3 = 30 : 60.
        assert!((2700..3300).contains(&counts[1]), "{counts:?}");
        assert!((5700..6300).contains(&counts[2]), "{counts:?}");

        // Only weight-0 others (the old version of a switch): the first with backends.
        let mut b = app("v1", 100, &["a1"]);
        for version in ["v0", "old"] {
            b.pools.push(baton_core::PoolSpec {
                version: version.into(),
                weight: 0,
                backends: vec![BackendSpec {
                    id: format!("{version}-1"),
                    addr: "127.0.0.1:1".parse().unwrap(),
                }],
            });
        }
        let s = publish(
            &Snapshot::default(),
            &spec(&[("b", b)]),
            &mut HashMap::new(),
        )
        .snapshot;
        let choice = crate::select::other_pool(&s.apps[0], "v1", &mut rng).unwrap();
        assert_eq!(s.apps[0].pools[choice.pool].version.as_ref(), "v0");

        // A single version: nowhere else to go.
        let s = publish(
            &Snapshot::default(),
            &spec(&[("c", app("v1", 100, &["a1"]))]),
            &mut HashMap::new(),
        )
        .snapshot;
        assert!(crate::select::other_pool(&s.apps[0], "v1", &mut rng).is_none());
    }

    /// `compile_app` the way `publish_app` does.
    fn publish_app(
        prev: &Snapshot,
        name: &str,
        spec: Option<&AppRouteSpec>,
        registry: &mut HashMap<Arc<str>, Arc<Backend>>,
    ) -> Result<Snapshot, RouteError> {
        let metrics = MetricsRegistry::new();
        let env = Env {
            prev,
            registry,
            metrics: &metrics,
            max_idle: 4,
        };
        let compiled = compile_app(name, spec, &env)?.unwrap();
        for b in &compiled.created {
            registry.insert(b.id.clone(), b.clone());
        }
        Ok(compiled.snapshot)
    }

    fn routed<'a>(s: &'a Snapshot, host: &str) -> Option<&'a str> {
        s.route(host, "/").map(|a| &*a.name)
    }

    #[test]
    fn adding_and_removing_apps_keeps_the_router_and_every_route_on_its_app() {
        let mut registry = HashMap::new();
        let first = spec(&[
            ("b", app("v1", 100, &["b1"])),
            ("d", app("v1", 100, &["d1"])),
        ]);
        let s1 = publish(&Snapshot::default(), &first, &mut registry).snapshot;
        // Unrouted apps appear before, between and after the routed ones.
        let mut s = s1;
        let both_routed = |s: &Snapshot, when: &str| {
            assert_eq!(routed(s, "b.example.com"), Some("b"), "{when}");
            assert_eq!(routed(s, "d.example.com"), Some("d"), "{when}");
        };
        for name in ["a", "c", "e"] {
            let id = format!("{name}1");
            let next = publish_app(&s, name, Some(&app("v1", 100, &[&id])), &mut registry).unwrap();
            assert!(
                Arc::ptr_eq(&s.router, &next.router),
                "router rebuilt for {name}"
            );
            s = next;
            both_routed(&s, &format!("after adding {name}"));
        }
        for name in ["a", "e", "c"] {
            s = publish_app(&s, name, None, &mut registry).unwrap();
            both_routed(&s, &format!("after removing {name}"));
        }
        assert_eq!(s.apps.len(), 2);
        // An app a route still names cannot be removed alone.
        let e = publish_app(&s, "b", None, &mut registry).err().unwrap();
        assert!(
            matches!(e, RouteError::UnknownApp { ref app, .. } if app == "b"),
            "{e}"
        );
        assert!(e.to_string().contains("b.example.com"), "{e}");
    }
}
