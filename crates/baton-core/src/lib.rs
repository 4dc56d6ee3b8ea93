//! Domain types shared by every baton crate. This crate does no I/O and depends on no
//! async runtime: it is the vocabulary the data plane, the rollout strategies, the
//! controller and the interfaces agree on.

pub mod duration;
pub mod health;
pub mod names;
pub mod ports;
pub mod quantity;
pub mod route;
pub mod time;

pub use duration::HumanDuration;
pub use health::{HealthSpec, ProbeKind};
pub use names::{validate_app_name, validate_version, NameError};
pub use ports::PortRange;
pub use quantity::Quantity;
pub use route::{
    AppRouteSpec, BackendSpec, HoldSpec, MatchSpec, PoolSpec, RouteSpec, RouteTableSpec, RuleSpec,
    StickySpec, UnderscoreHeaders, ValueMatch,
};
pub use time::Millis;
