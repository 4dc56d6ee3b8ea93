//! `[proxy.access_log]` in `serve`: starts the writer, hands the proxy its end of the
//! queue, and reopens the file on SIGUSR1 (logrotate's `postrotate`). The handler is
//! installed even without an access log, so a stray SIGUSR1 never ends baton.

use crate::Failure;
use baton_config::{AccessLogFormatKind, Config};
use baton_metrics::MetricsRegistry;
use baton_proxy::{AccessLogFormat, AccessLogReopen, AccessLogTarget, AccessLogWriter, Proxy};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

/// How long stopping waits for queued lines to be written.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// The running access log of a server.
pub struct AccessLogging {
    writer: Option<AccessLogWriter>,
    signals: tokio::task::JoinHandle<()>,
}

/// Starts the access log the config asks for and the SIGUSR1 handler.
pub fn start(
    config: &Config,
    proxy: &Proxy,
    metrics: &Arc<MetricsRegistry>,
) -> Result<AccessLogging, Failure> {
    let writer = match &config.proxy.access_log {
        Some(section) => {
            let target = if section.is_stdout() {
                AccessLogTarget::Stdout
            } else {
                AccessLogTarget::File(section.path.clone())
            };
            let format = match section.format {
                AccessLogFormatKind::Combined => AccessLogFormat::Combined,
                AccessLogFormatKind::Json => AccessLogFormat::Json,
            };
            let (writer, log) =
                AccessLogWriter::start(target, format, section.queue, metrics.clone()).map_err(
                    |e| {
                        Failure::failed(format!(
                            "{e}; create its directory, give baton write access to it, or change \
                             `path` in [proxy.access_log]"
                        ))
                    },
                )?;
            proxy.set_access_log(log);
            Some(writer)
        }
        None => None,
    };
    let mut usr1 = signal(SignalKind::user_defined1())
        .map_err(|e| Failure::failed(format!("cannot install the SIGUSR1 handler ({e})")))?;
    let reopen = writer.as_ref().map(AccessLogWriter::reopener);
    let signals = tokio::spawn(async move {
        while usr1.recv().await.is_some() {
            on_usr1(reopen.as_ref());
        }
    });
    Ok(AccessLogging { writer, signals })
}

fn on_usr1(reopen: Option<&AccessLogReopen>) {
    match reopen {
        Some(r) => {
            tracing::info!("SIGUSR1: reopening the access log");
            r.reopen();
        }
        None => tracing::info!("SIGUSR1 ignored: no access log is configured"),
    }
}

impl AccessLogging {
    /// Writes what is queued (bounded wait) and stops.
    pub async fn close(mut self) {
        self.signals.abort();
        if let Some(w) = self.writer.take() {
            w.close(CLOSE_WAIT).await;
        }
    }
}
