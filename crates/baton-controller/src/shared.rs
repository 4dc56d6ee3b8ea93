//! What every app actor shares: the route book, the store, the event stream, metrics.

use crate::model::Event;
use crate::routes::RouteBook;
use crate::sampler::Sampler;
use baton_metrics::MetricsRegistry;
use baton_store::Store;
use std::sync::Arc;
use tokio::sync::broadcast;

pub struct Shared {
    pub routes: RouteBook,
    pub store: Arc<Store>,
    pub events: broadcast::Sender<Event>,
    pub metrics: Arc<MetricsRegistry>,
    pub sampler: Arc<Sampler>,
}
