//! The route book: the whole route table as the controller wants it, one entry per app.
//! Each app actor updates its own entry; every update publishes the whole table to the
//! proxy (the proxy reuses compiled apps that did not change). A Mutex is fine here:
//! this is the control side, never the request path.
//!
//! `baton reload` replaces the host/path routes as a whole, and retires apps removed
//! from the config: their routes and routing go in one publish, and whatever their
//! actor publishes afterwards (while it drains and stops the instances) is ignored.

use baton_core::{AppRouteSpec, RouteSpec, RouteTableSpec};
use baton_proxy::{Proxy, RouteError};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Mutex;

pub struct RouteBook {
    proxy: Proxy,
    table: Mutex<RouteTableSpec>,
    /// Apps removed by a reload whose actors may still publish (ignored).
    retired: Mutex<BTreeSet<String>>,
    /// The proxy serves exactly `table` (set by the first full publish); from then on
    /// one app's change publishes only that app.
    synced: AtomicBool,
}

impl RouteBook {
    pub fn new(proxy: Proxy, routes: Vec<RouteSpec>) -> Self {
        RouteBook {
            proxy,
            table: Mutex::new(RouteTableSpec {
                routes,
                apps: Default::default(),
            }),
            retired: Mutex::default(),
            synced: AtomicBool::new(false),
        }
    }

    /// Replaces one app's routing and publishes. On error the proxy keeps the previous
    /// table and so does the book.
    pub fn set_app(&self, app: &str, spec: AppRouteSpec) -> Result<(), RouteError> {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if self.retired_now(app) {
            return Ok(());
        }
        if self.synced.load(Relaxed) {
            // `publish_app` costs this one app, not the whole table (10,000 apps).
            self.proxy.publish_app(app, Some(&spec))?;
            table.apps.insert(app.to_string(), spec);
            return Ok(());
        }
        let previous = table.apps.insert(app.to_string(), spec);
        // At start-up the apps set their routing one by one: the first full publish waits
        // until every app the routes name has its routing (a route to an app missing from
        // the table is refused).
        if table
            .routes
            .iter()
            .any(|r| !table.apps.contains_key(&r.app))
        {
            return Ok(());
        }
        if let Err(e) = self.proxy.publish(&table) {
            match previous {
                Some(p) => table.apps.insert(app.to_string(), p),
                None => table.apps.remove(app),
            };
            return Err(e);
        }
        self.synced.store(true, Relaxed);
        Ok(())
    }

    /// Replaces the host/path routes (every app they name must have its routing set
    /// already). On error the proxy keeps the previous table and so does the book.
    pub fn set_routes(&self, routes: Vec<RouteSpec>) -> Result<(), RouteError> {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let previous = std::mem::replace(&mut table.routes, routes);
        if let Err(e) = self.proxy.publish(&table) {
            table.routes = previous;
            return Err(e);
        }
        self.synced.store(true, Relaxed);
        Ok(())
    }

    /// Takes `apps` out of the table — their routes and their routing, in one publish —
    /// and ignores what their actors publish from now on. Requests for them then get
    /// the answer for a host/path no app serves.
    pub fn retire(&self, apps: &[String]) -> Result<(), RouteError> {
        if apps.is_empty() {
            return Ok(());
        }
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = table.clone();
        next.routes.retain(|r| !apps.contains(&r.app));
        next.apps.retain(|name, _| !apps.contains(name));
        self.proxy.publish(&next)?;
        *table = next;
        self.synced.store(true, Relaxed);
        self.retired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(apps.iter().cloned());
        Ok(())
    }

    /// An app added (back) by a reload: its actor's publishes count again.
    pub fn unretire(&self, app: &str) {
        self.retired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(app);
    }

    fn retired_now(&self, app: &str) -> bool {
        self.retired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(app)
    }

    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use baton_core::{BackendSpec, PoolSpec};
    use std::sync::Arc;

    fn route(host: &str, app: &str) -> RouteSpec {
        RouteSpec {
            host: Some(host.into()),
            path_prefix: "/".into(),
            app: app.into(),
        }
    }

    fn spec(id: &str, port: u16) -> AppRouteSpec {
        AppRouteSpec {
            pools: vec![PoolSpec {
                version: "v1".into(),
                weight: 1,
                backends: vec![BackendSpec {
                    id: id.into(),
                    addr: ([127, 0, 0, 1], port).into(),
                }],
            }],
            ..AppRouteSpec::default()
        }
    }

    fn book(routes: Vec<RouteSpec>) -> RouteBook {
        let metrics = Arc::new(baton_metrics::MetricsRegistry::new());
        RouteBook::new(Proxy::new(Default::default(), metrics), routes)
    }

    #[test]
    fn several_apps_are_published_once_each_has_its_routing() {
        let b = book(vec![route("a.test", "a"), route("b.test", "b")]);
        b.set_app("a", spec("a-1", 1)).unwrap();
        assert!(
            b.proxy().current_spec().apps.is_empty(),
            "b has no routing yet"
        );
        b.set_app("b", spec("b-1", 2)).unwrap();
        let served = b.proxy().current_spec();
        assert_eq!(served.apps.len(), 2);
        assert_eq!(served.routes.len(), 2);
        // From then on one app at a time.
        b.set_app("a", spec("a-2", 3)).unwrap();
        assert_eq!(
            b.proxy().current_spec().apps["a"].pools[0].backends[0].id,
            "a-2"
        );
    }

    #[test]
    fn a_retired_app_goes_with_its_routes_and_its_later_publishes_are_ignored() {
        let b = book(vec![route("a.test", "a"), route("b.test", "b")]);
        b.set_app("a", spec("a-1", 1)).unwrap();
        b.set_app("b", spec("b-1", 2)).unwrap();
        b.retire(&["b".to_string()]).unwrap();
        let served = b.proxy().current_spec();
        assert_eq!(served.apps.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(served.routes, vec![route("a.test", "a")]);
        b.set_app("b", spec("b-2", 4)).unwrap();
        assert!(!b.proxy().current_spec().apps.contains_key("b"));
        // Added back: its routing, then the routes naming it.
        b.unretire("b");
        b.set_app("b", spec("b-3", 5)).unwrap();
        b.set_routes(vec![route("a.test", "a"), route("b.test", "b")])
            .unwrap();
        assert_eq!(b.proxy().current_spec().routes.len(), 2);
    }
}
