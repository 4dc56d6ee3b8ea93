//! The route book: the whole route table as the controller wants it, one entry per app.
//! Each app actor updates its own entry; every update publishes the whole table to the
//! proxy (the proxy reuses compiled apps that did not change). A Mutex is fine here:
//! this is the control side, never the request path.

use baton_core::{AppRouteSpec, RouteSpec, RouteTableSpec};
use baton_proxy::{Proxy, RouteError};
use std::sync::Mutex;

pub struct RouteBook {
    proxy: Proxy,
    table: Mutex<RouteTableSpec>,
}

impl RouteBook {
    pub fn new(proxy: Proxy, routes: Vec<RouteSpec>) -> Self {
        RouteBook {
            proxy,
            table: Mutex::new(RouteTableSpec {
                routes,
                apps: Default::default(),
            }),
        }
    }

    /// Replaces one app's routing and publishes. On error the proxy keeps the previous
    /// table and so does the book.
    pub fn set_app(&self, app: &str, spec: AppRouteSpec) -> Result<(), RouteError> {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let previous = table.apps.insert(app.to_string(), spec);
        if let Err(e) = self.proxy.publish(&table) {
            match previous {
                Some(p) => table.apps.insert(app.to_string(), p),
                None => table.apps.remove(app),
            };
            return Err(e);
        }
        Ok(())
    }

    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }
}
