//! The route book: the whole route table as the controller wants it, one entry per app.
//! Each app actor updates its own entry; every update publishes the whole table to the
//! proxy (the proxy reuses compiled apps that did not change). A Mutex is fine here:
//! this is the control side, never the request path.

use baton_core::{AppRouteSpec, RouteSpec, RouteTableSpec};
use baton_proxy::{Proxy, RouteError};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Mutex;

pub struct RouteBook {
    proxy: Proxy,
    table: Mutex<RouteTableSpec>,
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
            synced: AtomicBool::new(false),
        }
    }

    /// Replaces one app's routing and publishes. On error the proxy keeps the previous
    /// table and so does the book.
    pub fn set_app(&self, app: &str, spec: AppRouteSpec) -> Result<(), RouteError> {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
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

    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }
}
