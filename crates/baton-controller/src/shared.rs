//! What every app actor shares: the route book, the store, the event stream. (Metrics and
//! the sampler live in the controller, which outlives a suspend/resume.)

use crate::fleet::Fleet;
use crate::model::Event;
use crate::routes::RouteBook;
use baton_runtime::SwarmState;
use baton_store::Store;
use std::sync::Arc;
use tokio::sync::broadcast;

pub struct Shared {
    pub routes: RouteBook,
    pub store: Arc<Store>,
    pub events: broadcast::Sender<Event>,
    /// The proxies on other nodes: a drain waits for them too.
    pub fleet: Arc<Fleet>,
    /// `[cluster] state = "swarm"`: every record is written there first.
    pub state: Option<Arc<SwarmState>>,
}
