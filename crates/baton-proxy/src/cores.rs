//! Per-core serving: each worker is a thread with a current-thread tokio runtime of
//! its own. Every listener is accepted on by every worker (one duplicate of its socket
//! each; `server::Spread` keeps the workers' shares of connections even), a connection
//! stays on the worker that accepted it for its whole life, and
//! each worker keeps its own idle upstream connections (`pool::IdlePool`), so a
//! request is read, forwarded and answered without waking another thread.
//!
//! One worker is a thread too, not the runtime `main` builds: on a work-stealing
//! runtime a task that wakes another hands it the rest of its turn (tokio's LIFO
//! slot), so an HTTP/2 connection's task ran and wrote after every stream that
//! finished — a `writev` for every two responses where one event loop writes one for
//! every nine, at a quarter more CPU per h2c request (bench/README.md "One worker").
//! Without `start` (tests, `Proxy::start` alone) the proxy serves on the runtime it
//! was started on.
//!
//! The process's other work (controller, admin API, health checks) stays on the
//! runtime `main` builds.

use std::cell::Cell;
use std::sync::OnceLock;
use tokio::runtime::Handle;

/// The worker runtimes, when `start` made them.
static WORKERS: OnceLock<Vec<Handle>> = OnceLock::new();

thread_local! {
    /// This thread's worker number (0 on any thread that is not a worker).
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// Starts `count` worker threads (none when `count` is 0, or when they already run).
/// Each runs its runtime until the process exits.
pub fn start(count: usize) -> std::io::Result<()> {
    if count == 0 || WORKERS.get().is_some() {
        return Ok(());
    }
    let mut handles = Vec::with_capacity(count);
    for index in 0..count {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        handles.push(runtime.handle().clone());
        std::thread::Builder::new()
            .name(format!("baton-worker-{index}"))
            .spawn(move || {
                INDEX.with(|i| i.set(index));
                let batched = match crate::batch::install() {
                    Ok(()) => true,
                    Err(error) => {
                        tracing::info!(%error, "io_uring refused: client writes are not batched");
                        false
                    }
                };
                runtime.block_on(async {
                    if batched {
                        tokio::spawn(crate::batch::flusher());
                    }
                    std::future::pending::<()>().await
                });
            })?;
    }
    // A second caller racing this one keeps its own threads idle; `start` is called
    // once, before serving.
    let _ = WORKERS.set(handles);
    Ok(())
}

/// The worker runtimes; empty when the proxy serves on the caller's runtime.
pub(crate) fn workers() -> &'static [Handle] {
    WORKERS.get().map_or(&[], Vec::as_slice)
}

/// How many workers keep their own idle upstream connections (at least 1).
pub(crate) fn count() -> usize {
    workers().len().max(1)
}

/// The calling thread's worker number, below `count()`.
pub(crate) fn current() -> usize {
    INDEX.with(Cell::get)
}

/// Makes the calling thread act as worker `index` (tests of what workers keep apart).
#[cfg(test)]
pub(crate) fn act_as(index: usize) {
    INDEX.with(|i| i.set(index));
}

#[cfg(test)]
mod tests {
    #[test]
    fn workers_are_named_threads_and_none_are_started_for_zero() {
        super::start(0).unwrap();
        assert!(super::workers().is_empty());
        assert_eq!(super::count(), 1);
        super::start(2).unwrap();
        assert_eq!(super::count(), 2);
        // Each runs tasks on its own thread, and knows its number there.
        let seen: Vec<(usize, Option<String>)> = super::workers()
            .iter()
            .map(|w| {
                let (tx, rx) = std::sync::mpsc::channel();
                w.spawn(async move {
                    let name = std::thread::current().name().map(String::from);
                    tx.send((super::current(), name)).unwrap()
                });
                rx.recv().unwrap()
            })
            .collect();
        assert_eq!(
            seen,
            [
                (0, Some("baton-worker-0".to_string())),
                (1, Some("baton-worker-1".to_string()))
            ]
        );
        // As `ps` and `top` show them (each thread names itself as it starts: it has
        // run by now).
        let names: Vec<String> = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .map(|n| n.trim().to_string())
            .collect();
        for want in ["baton-worker-0", "baton-worker-1"] {
            assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
        }
    }
}
