//! The dashboard's live data: one task reads every app's status once a second and keeps
//! the last ten minutes of per-version figures for the charts; every open page gets
//! the same frame (a `watch` channel), so N viewers cost one status read per second,
//! not N. A page's stream (`GET /ui/feed`, Server-Sent Events) starts with the chart
//! history and the app's recent events, then carries each new frame and each
//! deployment event as it happens.

use axum::response::sse::Event as SseEvent;
use baton_api::types::{AppStatus, Event};
use baton_controller::Controller;
use baton_core::Millis;
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_stream::wrappers::{BroadcastStream, WatchStream};

/// How often a frame is made.
pub const PERIOD: Duration = Duration::from_secs(1);
/// Chart points kept per app (ten minutes at one a second).
const KEPT: usize = 600;
/// Events sent when a page opens.
const RECENT_EVENTS: usize = 200;

/// One version's figures at one moment (the status's 5-second window).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    pub rps: f64,
    pub error_rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// One chart point: the time and each version's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub at: Millis,
    pub versions: BTreeMap<String, Figures>,
    /// Traffic weights by version at that moment.
    pub weights: BTreeMap<String, u32>,
}

/// What every open page receives each second.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Frame {
    pub at: Millis,
    pub apps: Vec<AppStatus>,
}

pub struct Feed {
    controller: Arc<Controller>,
    /// Set when the server stops: every page's stream ends then, so open pages never
    /// hold a stopping (or upgrading) baton; the browser reconnects to the next one.
    stopped: watch::Sender<bool>,
    frames: watch::Sender<Arc<Frame>>,
    points: Mutex<HashMap<String, VecDeque<Point>>>,
}

fn point_of(status: &AppStatus, at: Millis) -> Point {
    Point {
        at,
        versions: status
            .traffic
            .iter()
            .map(|t| {
                (
                    t.version.clone(),
                    Figures {
                        rps: t.rps,
                        error_rate: t.error_rate,
                        p50_ms: t.p50_ms,
                        p99_ms: t.p99_ms,
                    },
                )
            })
            .collect(),
        weights: status.weights.clone(),
    }
}

impl Feed {
    pub fn new(controller: Arc<Controller>) -> Arc<Feed> {
        Arc::new(Feed {
            controller,
            stopped: watch::Sender::new(false),
            frames: watch::Sender::new(Arc::new(Frame::default())),
            points: Mutex::new(HashMap::new()),
        })
    }

    /// Makes one frame now: reads every app's status, adds a chart point per app (apps
    /// no longer configured are forgotten) and hands the frame to every open page.
    pub fn tick(&self) {
        let at = Millis::now();
        let apps = self.controller.statuses();
        if let Ok(mut points) = self.points.lock() {
            points.retain(|name, _| apps.iter().any(|a| &a.app == name));
            for status in &apps {
                let series = points.entry(status.app.clone()).or_default();
                if series.len() >= KEPT {
                    series.pop_front();
                }
                series.push_back(point_of(status, at));
            }
        }
        self.frames.send_replace(Arc::new(Frame { at, apps }));
    }

    /// Makes a frame every [`PERIOD`] until `stop` resolves.
    pub fn run(self: Arc<Self>, stop: impl Future<Output = ()> + Send + 'static) {
        tokio::spawn(async move {
            let mut every = tokio::time::interval(PERIOD);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = &mut stop => {
                        self.stopped.send_replace(true);
                        return;
                    }
                    _ = every.tick() => self.tick(),
                }
            }
        });
    }

    /// The chart points kept for `app`, oldest first.
    pub fn points(&self, app: &str) -> Vec<Point> {
        self.points
            .lock()
            .ok()
            .and_then(|p| p.get(app).map(|s| s.iter().cloned().collect()))
            .unwrap_or_default()
    }

    /// The stream of one page: the whole overview (`app` = None) or one app's page.
    pub fn stream(
        self: &Arc<Self>,
        app: Option<String>,
    ) -> impl Stream<Item = Result<SseEvent, Infallible>> + Send + 'static {
        let mut first = Vec::new();
        if let Some(app) = &app {
            first.push(sse("history", &self.points(app)));
            let recent = self
                .controller
                .app_events(app, RECENT_EVENTS)
                .unwrap_or_default();
            first.push(sse("events", &recent));
        }
        let only = app.clone();
        let frames = WatchStream::new(self.frames.subscribe()).map(move |frame| {
            let apps: Vec<&AppStatus> = frame
                .apps
                .iter()
                .filter(|a| only.as_deref().is_none_or(|o| o == a.app))
                .collect();
            sse(
                "frame",
                &serde_json::json!({ "at": frame.at, "apps": apps }),
            )
        });
        let only = app;
        let events = BroadcastStream::new(self.controller.subscribe()).filter_map(move |e| {
            let keep = match &e {
                Ok(e) => only.as_deref().is_none_or(|o| o == e.app),
                Err(_) => false,
            };
            std::future::ready(e.ok().filter(|_| keep).map(|e: Event| sse("event", &e)))
        });
        let mut stopped = self.stopped.subscribe();
        let stop = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        futures_util::stream::iter(first)
            .chain(futures_util::stream::select(frames, events))
            .take_until(stop)
            .map(Ok)
    }
}

fn sse<T: Serialize + ?Sized>(name: &str, data: &T) -> SseEvent {
    let json = serde_json::to_string(data).unwrap_or_else(|e| {
        serde_json::json!({ "error": format!("cannot encode {name}: {e}") }).to_string()
    });
    SseEvent::default().event(name).data(json)
}
