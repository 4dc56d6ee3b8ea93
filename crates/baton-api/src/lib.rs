//! The admin interface: JSON over HTTP on the admin listener (a Unix socket by
//! default, TCP only with a bearer token), a Server-Sent Events stream of deployment
//! events, Prometheus metrics and the OpenAPI document describing it all. The CLI talks
//! to it through [`client::AdminClient`].

pub mod auth;
pub mod client;
pub mod cluster;
mod router;
mod serve;
pub mod types;

pub use auth::Access;
#[doc(hidden)]
pub use router::fuzz_body;
pub use router::{router, Hooks, ReloadFailed, ReloadHook, UpgradeFailed, UpgradeHook};
pub use serve::{bind_admin, guarded, serve_admin, serve_admin_on, AdminError, AdminListener};
pub use types::{ReloadReport, ReloadRequest, UpgradeDone, UpgradeRequest};
