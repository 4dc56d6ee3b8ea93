//! The instances one `ProcessRuntime` currently watches, and the ports they (or starts in
//! progress) hold. Picking a port and reserving it happen under one lock, so two
//! concurrent starts never get the same port.

use crate::RuntimeError;
use baton_core::PortRange;
use std::collections::HashMap;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;

/// One watched instance.
#[derive(Debug)]
struct Live {
    port: u16,
    /// Set by `stop()` before signalling: the exit that follows is not news.
    stopping: bool,
    /// Becomes `true` once the watcher has seen the exit and reported it (or not).
    exited: watch::Receiver<bool>,
}

#[derive(Debug, Default)]
struct State {
    live: HashMap<String, Live>,
    /// Ports of starts in progress, by instance id.
    starting: HashMap<String, u16>,
    /// Where the next port search begins (an offset into the range), so a port just
    /// released is not handed out again at once.
    next_offset: usize,
}

#[derive(Debug, Default)]
pub(crate) struct Registry {
    state: Mutex<State>,
}

/// A port held for a start in progress; released on drop unless committed.
#[derive(Debug)]
pub(crate) struct Reservation {
    registry: Arc<Registry>,
    id: String,
    pub port: u16,
}

// === impl Registry ===

impl Registry {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain data behind; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Picks a port in `range` that no watched instance holds and that is free right now
    /// (binding 127.0.0.1:port succeeds), and holds it for instance `id`.
    pub fn reserve_port(
        self: &Arc<Self>,
        id: &str,
        app: &str,
        range: PortRange,
    ) -> Result<Reservation, RuntimeError> {
        let mut state = self.lock();
        if state.live.contains_key(id) || state.starting.contains_key(id) {
            return Err(RuntimeError::Duplicate { id: id.to_string() });
        }
        let len = range.len();
        let taken: Vec<u16> = state
            .live
            .values()
            .map(|l| l.port)
            .chain(state.starting.values().copied())
            .collect();
        for i in 0..len {
            let offset = (state.next_offset + i) % len;
            let port = range.first + offset as u16;
            if taken.contains(&port) || !is_free(port) {
                continue;
            }
            state.next_offset = (offset + 1) % len;
            state.starting.insert(id.to_string(), port);
            return Ok(Reservation {
                registry: self.clone(),
                id: id.to_string(),
                port,
            });
        }
        Err(RuntimeError::PortsExhausted {
            range,
            app: app.to_string(),
        })
    }

    /// Starts watching `id` (already running at `port`). Returns the sender the watcher
    /// sets once the exit is handled, or `None` if `id` is already watched.
    pub fn watch(&self, id: &str, port: u16) -> Option<watch::Sender<bool>> {
        let mut state = self.lock();
        if state.live.contains_key(id) {
            return None;
        }
        let (tx, exited) = watch::channel(false);
        let live = Live {
            port,
            stopping: false,
            exited,
        };
        state.live.insert(id.to_string(), live);
        Some(tx)
    }

    pub fn is_watched(&self, id: &str) -> bool {
        self.lock().live.contains_key(id)
    }

    /// Marks `id` as being stopped; returns its exit signal if it is watched.
    pub fn mark_stopping(&self, id: &str) -> Option<watch::Receiver<bool>> {
        let mut state = self.lock();
        let live = state.live.get_mut(id)?;
        live.stopping = true;
        Some(live.exited.clone())
    }

    /// Forgets `id` after its exit; returns whether that exit was asked for by `stop()`.
    pub fn remove(&self, id: &str) -> bool {
        self.lock().live.remove(id).is_some_and(|l| l.stopping)
    }
}

fn is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

// === impl Reservation ===

impl Reservation {
    /// The instance is running: its port now belongs to the watched entry.
    pub fn commit(self) -> Option<watch::Sender<bool>> {
        self.registry.watch(&self.id, self.port)
        // Drop removes the `starting` entry.
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.registry.lock().starting.remove(&self.id);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn free_range(n: u16) -> PortRange {
        // Below the kernel's ephemeral range (32768+), where the many connections other
        // tests open cannot take a port between our check and the reservation; spread by
        // pid so parallel test processes rarely look at the same block.
        let start = 12_000 + (std::process::id() % 800) as u16 * 10;
        (start..20_000)
            .step_by(usize::from(n))
            .map(|first| PortRange {
                first,
                last: first + n - 1,
            })
            .find(|r| (r.first..=r.last).all(is_free))
            .unwrap()
    }

    #[test]
    fn reservations_rotate_and_never_collide() {
        let reg = Arc::new(Registry::default());
        let range = free_range(3);
        let a = reg.reserve_port("a", "web", range).unwrap();
        let b = reg.reserve_port("b", "web", range).unwrap();
        let a_port = a.port;
        assert!(a.commit().is_some());
        let c = reg.reserve_port("c", "web", range).unwrap();
        assert!(a_port != b.port && b.port != c.port && a_port != c.port);
        let err = reg.reserve_port("a", "web", range).unwrap_err();
        assert!(matches!(err, RuntimeError::Duplicate { .. }), "{err:?}");
        let err = reg.reserve_port("d", "web", range).unwrap_err();
        assert!(matches!(err, RuntimeError::PortsExhausted { .. }));
        drop(b);
        assert!(reg.reserve_port("d", "web", range).is_ok());
    }

    #[test]
    fn stopping_is_remembered_until_removed() {
        let reg = Registry::default();
        let _tx = reg.watch("a", 1).unwrap();
        assert!(reg.watch("a", 1).is_none());
        assert!(reg.mark_stopping("a").is_some());
        assert!(reg.remove("a"));
        assert!(!reg.is_watched("a"));
        let _tx = reg.watch("b", 2).unwrap();
        assert!(!reg.remove("b"), "an exit nobody asked for");
    }
}
