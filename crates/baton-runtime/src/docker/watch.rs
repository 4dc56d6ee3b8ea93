//! What one `DockerRuntime` knows about its live containers: the host ports they hold
//! and which are being stopped; and the watcher that reports a container ending on its
//! own.

use super::error::{describe, is_not_found};
use super::DockerRuntime;
use crate::{RuntimeError, RuntimeEvent};
use baton_core::PortRange;
use futures_util::StreamExt;
use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

#[derive(Debug, Default)]
struct Inner {
    /// Host ports held by instances (running or starting).
    ports: HashMap<String, u16>,
    /// Instances whose exit is being watched.
    watched: HashSet<String>,
    /// Instances `stop()` was called for: their exit is not news.
    stopping: HashSet<String>,
    /// Where the next port search begins, so a port just released or found taken is not
    /// handed out again at once.
    next_offset: usize,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    inner: Mutex<Inner>,
}

// === impl State ===

impl State {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Plain data behind the lock: a panic elsewhere leaves it usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Picks a port in `range` that no instance holds and that is free now (binding
    /// 127.0.0.1:port succeeds) and holds it for `id`.
    pub fn reserve_port(&self, id: &str, app: &str, range: PortRange) -> Result<u16, RuntimeError> {
        let mut s = self.lock();
        s.ports.remove(id);
        let len = range.len();
        let taken: HashSet<u16> = s.ports.values().copied().collect();
        for i in 0..len {
            let offset = (s.next_offset + i) % len;
            let port = range.first + offset as u16;
            if taken.contains(&port) || !is_free(port) {
                continue;
            }
            s.next_offset = (offset + 1) % len;
            s.ports.insert(id.to_string(), port);
            return Ok(port);
        }
        Err(RuntimeError::PortsExhausted {
            range,
            app: app.to_string(),
        })
    }

    /// Whether a start could find a port now (checked before a deployment begins).
    pub fn any_port_free(&self, range: PortRange) -> bool {
        let s = self.lock();
        let taken: HashSet<u16> = s.ports.values().copied().collect();
        (0..range.len())
            .map(|i| range.first + i as u16)
            .any(|p| !taken.contains(&p) && is_free(p))
    }

    pub fn release_port(&self, id: &str) {
        self.lock().ports.remove(id);
    }

    /// The port `id` got was taken meanwhile: drop it; the search moves on past it.
    pub fn avoid_port(&self, id: &str) {
        self.release_port(id);
    }

    pub fn mark_stopping(&self, id: &str) {
        self.lock().stopping.insert(id.to_string());
    }

    pub fn is_watched(&self, id: &str) -> bool {
        self.lock().watched.contains(id)
    }

    /// Starts watching `id`; false if it already is.
    fn watch(&self, id: &str, port: Option<u16>) -> bool {
        let mut s = self.lock();
        if let Some(p) = port {
            s.ports.insert(id.to_string(), p);
        }
        s.stopping.remove(id);
        s.watched.insert(id.to_string())
    }

    /// Whether an exit of `id` is news (watched and not being stopped).
    fn exit_is_news(&self, id: &str) -> bool {
        let s = self.lock();
        s.watched.contains(id) && !s.stopping.contains(id)
    }

    pub fn forget(&self, id: &str) {
        let mut s = self.lock();
        s.ports.remove(id);
        s.watched.remove(id);
        s.stopping.remove(id);
    }
}

fn is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

// === impl DockerRuntime ===

impl DockerRuntime {
    /// Watches container `container` of instance `id` until it ends; an end that `stop()`
    /// did not cause is reported as [`RuntimeEvent::Exited`] and the container removed.
    pub(super) fn watch(&self, id: &str, container: &str, port: Option<u16>) {
        if !self.state.watch(id, port) {
            return;
        }
        let rt = self.clone();
        let (id, container) = (id.to_string(), container.to_string());
        tokio::spawn(async move {
            rt.wait_exit(&container).await;
            if !rt.state.exit_is_news(&id) {
                return;
            }
            let (status, last_logs) = rt.post_mortem(&container).await;
            tracing::warn!(instance = %id, %container, %status, "container ended on its own");
            rt.remove_quietly(&container).await;
            rt.state.forget(&id);
            let _ = rt.events.send(RuntimeEvent::Exited {
                id,
                status,
                last_logs,
            });
        });
    }

    /// Returns once the container no longer runs (or is gone). The engine's wait call is
    /// a long poll the client may time out; then, or if the engine is briefly away, the
    /// state is checked and the wait starts again.
    async fn wait_exit(&self, container: &str) {
        loop {
            let mut wait = self.docker.wait_container(container, None);
            match wait.next().await {
                Some(Ok(_)) => return,
                Some(Err(bollard::errors::Error::DockerContainerWaitError { .. })) => return,
                Some(Err(e)) if is_not_found(&e) => return,
                Some(Err(e)) => {
                    tracing::debug!(%container, error = %describe(&e), "waiting on container interrupted; checking its state");
                }
                None => {}
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            match self.inspect(container).await {
                Ok(None) => return,
                Ok(Some(c)) if c.state.as_ref().and_then(|s| s.running) != Some(true) => return,
                _ => {}
            }
        }
    }
}
