//! The `<store>.lock-owner` sidecar: who holds the store, so that "in use" can name the
//! process. It is information only: redb's file lock decides who has the store, so a
//! sidecar left by a killed process (or one that cannot be written) never blocks anything.

use crate::error::LockHolder;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Serialize, Deserialize)]
struct Record {
    pid: u32,
    started: String,
}

/// The sidecar of the store at `store`.
pub(crate) fn sidecar(store: &Path) -> PathBuf {
    let mut name = store
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "store".into());
    name.push(".lock-owner");
    store.with_file_name(name)
}

/// Records this process as the holder. Called only while holding the lock, so the only
/// file it can replace is a stale one. Failure is logged, not returned: the store works
/// without it.
pub(crate) fn record(store: &Path) {
    let rec = Record {
        pid: std::process::id(),
        started: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
    };
    let path = sidecar(store);
    let written = serde_json::to_vec(&rec)
        .map_err(io::Error::other)
        .and_then(|bytes| fs::write(&path, bytes));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "could not record the store's holder; an \"in use\" error will not name this process");
        // A partial file would only mislead.
        let _ = fs::remove_file(&path);
    }
}

/// Removes the sidecar. Called while still holding the lock, so it cannot remove the
/// record of a later holder.
pub(crate) fn clear(store: &Path) {
    let path = sidecar(store);
    match fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "could not remove the store's holder record")
        }
    }
}

/// The holder recorded for `store`, if the record is readable and its process is alive
/// (a stale record from a killed process names nobody).
pub(crate) fn holder(store: &Path) -> Option<LockHolder> {
    let bytes = fs::read(sidecar(store)).ok()?;
    let rec: Record = serde_json::from_slice(&bytes).ok()?;
    if !alive(rec.pid) {
        return None;
    }
    Some(LockHolder {
        pid: rec.pid,
        started: rec.started,
    })
}

/// Whether process `pid` exists. Where there is no `/proc` this cannot be told, and the
/// record is believed.
fn alive(pid: u32) -> bool {
    if !Path::new("/proc/self").exists() {
        return true;
    }
    Path::new("/proc").join(pid.to_string()).exists()
}
