//! The controller: owns desired vs observed state. One actor per app drives
//! that app's rollout state machine (`baton-rollout`) against its runtime, the health
//! checks, the proxy's route table and the store. Start-up is recovery: the stored state
//! is applied before the proxy accepts a request.

mod actor;
mod controller;
pub mod delivery;
mod docker;
mod driver;
mod error;
pub mod fleet;
pub mod gates;
pub mod model;
pub mod plan;
mod reconcile;
mod recovery;
mod reload;
mod routes;
pub mod sampler;
mod shared;
mod state;
pub mod status;
mod swarm;

pub use actor::Op;
pub use baton_runtime::SwarmState;
pub use controller::Controller;
pub use driver::check_hooks;
pub use error::ControlError;
pub use plan::PlanReport;
pub use reload::ReloadOutcome;
pub use state::take_swarm_state;
pub use status::AppStatus;
