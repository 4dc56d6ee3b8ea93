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
