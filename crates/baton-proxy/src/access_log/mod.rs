//! Access logs, off the request path's critical section: a request pushes one small
//! record into a bounded queue (`try_send`, never waiting) when its response is done; a
//! writer thread formats the records (nginx's combined layout or JSON) and writes them
//! in batches. A full queue or a failed write (a full disk) loses the line and counts it
//! in `baton_access_log_dropped_total`; the request is never slowed or failed for it.

mod format;
mod writer;

pub use format::AccessLogFormat;
pub use writer::{AccessLogReopen, AccessLogTarget, AccessLogWriter};

use baton_metrics::{AccessLogDrop, MetricsRegistry};
use http::{HeaderValue, Method, Version};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;

/// What the writer receives: a line to write, or a nudge to look at its flags.
pub(crate) enum Entry {
    Line(Box<AccessRecord>),
    Wake,
}

/// The request path's end of the queue. Cheap to clone.
#[derive(Clone)]
pub struct AccessLog(Arc<Queue>);

struct Queue {
    tx: mpsc::Sender<Entry>,
    metrics: Arc<MetricsRegistry>,
}

impl AccessLog {
    fn new(tx: mpsc::Sender<Entry>, metrics: Arc<MetricsRegistry>) -> AccessLog {
        AccessLog(Arc::new(Queue { tx, metrics }))
    }

    /// Queue a finished request's record; when the queue is full the line is dropped
    /// and counted.
    pub(crate) fn push(&self, record: Box<AccessRecord>) {
        if self.0.tx.try_send(Entry::Line(record)).is_err() {
            self.0
                .metrics
                .access_log_dropped(AccessLogDrop::QueueFull, 1);
        }
    }
}

/// One request as the access log shows it.
pub(crate) struct AccessRecord {
    /// When the request arrived.
    pub time: SystemTime,
    /// The client's IP address.
    pub client: HeaderValue,
    pub host: Option<HeaderValue>,
    pub method: Method,
    /// The request target as received (path and query).
    pub target: String,
    pub protocol: Version,
    pub status: u16,
    /// Response body bytes sent to the client.
    pub bytes: u64,
    /// From the request's arrival to the end of its response.
    pub duration: Duration,
    /// From sending upstream to the instance's response head; `None` when no instance
    /// answered.
    pub upstream: Option<Duration>,
    pub app: Option<Arc<str>>,
    /// The version that served the request.
    pub version: Option<Arc<str>>,
    /// The instance (backend id) that served the request.
    pub instance: Option<Arc<str>>,
    pub request_id: Option<HeaderValue>,
    pub referer: Option<HeaderValue>,
    pub user_agent: Option<HeaderValue>,
}

/// A request whose record is being filled in; pushed once, when its response body is
/// dropped (done, or the client left).
pub(crate) struct Pending {
    pub record: Box<AccessRecord>,
    pub started: Instant,
    pub log: AccessLog,
}

impl Pending {
    pub fn finish(mut self, bytes: u64) {
        self.record.bytes = bytes;
        self.record.duration = self.started.elapsed();
        self.log.push(self.record);
    }
}
