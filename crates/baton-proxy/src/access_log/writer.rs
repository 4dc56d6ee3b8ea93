//! The writer: a thread of its own (a slow or full disk blocks it, never a runtime
//! worker) that takes records from the queue, formats them into a buffer and writes
//! the buffer whenever the queue is empty or the buffer is full. A failed write drops
//! the buffered lines and counts them; the file is reopened on request (SIGUSR1, for
//! logrotate) before the next write.

use super::{AccessLog, AccessLogFormat, Entry};
use baton_metrics::{AccessLogDrop, MetricsRegistry};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Written in one go once this much is buffered.
const BATCH: usize = 64 * 1024;

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    Stdout,
    /// Appended to; created (mode 0640) when missing.
    File(PathBuf),
}

/// The control end of a running writer.
pub struct AccessLogWriter {
    tx: mpsc::Sender<Entry>,
    flags: Arc<Flags>,
    done: oneshot::Receiver<()>,
}

#[derive(Default)]
struct Flags {
    reopen: AtomicBool,
    stop: AtomicBool,
}

// === impl AccessLogWriter ===

impl AccessLogWriter {
    /// Opens the target (an error here names the file) and starts the writer thread.
    /// `queue` is how many finished requests may wait for the writer before lines are
    /// dropped.
    pub fn start(
        target: AccessLogTarget,
        format: AccessLogFormat,
        queue: usize,
        metrics: Arc<MetricsRegistry>,
    ) -> io::Result<(AccessLogWriter, AccessLog)> {
        let sink = Sink::open(&target)?;
        let (tx, rx) = mpsc::channel(queue.max(1));
        let flags = Arc::new(Flags::default());
        let (done_tx, done) = oneshot::channel();
        let mut writer = Thread {
            rx,
            sink,
            target,
            format,
            flags: flags.clone(),
            metrics: metrics.clone(),
            buf: Vec::with_capacity(BATCH + 4096),
            lines: 0,
            failing: false,
        };
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                writer.run();
                let _ = done_tx.send(());
            })?;
        let log = AccessLog::new(tx.clone(), metrics);
        Ok((AccessLogWriter { tx, flags, done }, log))
    }

    /// Reopen the file before the next write (after logrotate moved it away).
    pub fn reopen(&self) {
        self.reopener().reopen();
    }

    /// A handle that asks for a reopen, for a signal handler.
    pub fn reopener(&self) -> AccessLogReopen {
        AccessLogReopen {
            tx: self.tx.clone(),
            flags: self.flags.clone(),
        }
    }

    /// Write what is queued, then stop; waits at most `timeout` for that.
    pub async fn close(self, timeout: Duration) {
        self.flags.stop.store(true, SeqCst);
        let _ = self.tx.try_send(Entry::Wake);
        drop(self.tx);
        let _ = tokio::time::timeout(timeout, self.done).await;
    }
}

/// Asks the writer to reopen its file (see [`AccessLogWriter::reopener`]).
#[derive(Clone)]
pub struct AccessLogReopen {
    tx: mpsc::Sender<Entry>,
    flags: Arc<Flags>,
}

impl AccessLogReopen {
    pub fn reopen(&self) {
        self.flags.reopen.store(true, SeqCst);
        let _ = self.tx.try_send(Entry::Wake);
    }
}

enum Sink {
    Stdout(io::Stdout),
    File(File),
}

impl Sink {
    fn open(target: &AccessLogTarget) -> io::Result<Sink> {
        match target {
            AccessLogTarget::Stdout => Ok(Sink::Stdout(io::stdout())),
            AccessLogTarget::File(path) => OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o640)
                .open(path)
                .map(Sink::File)
                .map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("cannot open the access log {} ({e})", path.display()),
                    )
                }),
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Sink::Stdout(out) => {
                let mut out = out.lock();
                out.write_all(bytes)?;
                out.flush()
            }
            Sink::File(f) => f.write_all(bytes),
        }
    }
}

struct Thread {
    rx: mpsc::Receiver<Entry>,
    sink: Sink,
    target: AccessLogTarget,
    format: AccessLogFormat,
    flags: Arc<Flags>,
    metrics: Arc<MetricsRegistry>,
    buf: Vec<u8>,
    /// Lines in `buf`.
    lines: u64,
    /// The last write failed (logged once per run of failures).
    failing: bool,
}

impl Thread {
    fn run(&mut self) {
        while let Some(first) = self.rx.blocking_recv() {
            let mut next = Some(first);
            while let Some(entry) = next {
                self.take(entry);
                next = self.rx.try_recv().ok();
            }
            self.flush();
            if self.flags.reopen.swap(false, SeqCst) {
                self.reopen();
            }
            if self.flags.stop.load(SeqCst) {
                // Lines queued while the last batch was written (a slow disk) are
                // written too: the queue takes no more, and what it holds is read out.
                self.rx.close();
                while let Some(entry) = self.rx.blocking_recv() {
                    self.take(entry);
                }
                break;
            }
        }
        self.flush();
    }

    fn take(&mut self, entry: Entry) {
        if let Entry::Line(record) = entry {
            self.format.write(&record, &mut self.buf);
            self.lines += 1;
            if self.buf.len() >= BATCH {
                self.flush();
            }
        }
    }

    fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        match self.sink.write_all(&self.buf) {
            Ok(()) if self.failing => {
                self.failing = false;
                tracing::info!(target = ?self.target, "access log writes work again");
            }
            Ok(()) => {}
            Err(error) => {
                self.metrics
                    .access_log_dropped(AccessLogDrop::WriteFailed, self.lines);
                if !self.failing {
                    self.failing = true;
                    tracing::warn!(target = ?self.target, %error, "access log write failed; lines are dropped (baton_access_log_dropped_total) until writes work again, requests are not affected");
                }
            }
        }
        self.buf.clear();
        self.lines = 0;
    }

    fn reopen(&mut self) {
        match Sink::open(&self.target) {
            Ok(sink) => {
                self.sink = sink;
                tracing::info!(target = ?self.target, "access log reopened");
            }
            Err(error) => {
                tracing::warn!(%error, "access log not reopened; still writing to the file open before")
            }
        }
    }
}
