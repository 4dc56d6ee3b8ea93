//! `StoreError`: what went wrong with the store file, and what the operator can do about it.
//! Every redb error is classified here, so callers never see redb types.

use std::io;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// An error from the store. Every variant names the store file.
#[derive(Debug, Error)]
pub enum StoreError {
    /// Another process (or another `Store` in this process) has the file open. `holder`
    /// is what the holder wrote in the `<store>.lock-owner` sidecar, when it is a live
    /// process: information for the operator only, the file lock decides.
    #[error("the store at {} is in use by another baton ({}): stop it or set [store] path elsewhere", .path.display(), describe_holder(.holder.as_ref()))]
    Locked {
        path: PathBuf,
        holder: Option<LockHolder>,
    },

    /// The file is not a readable baton store. It is never reset or repaired silently.
    #[error("the store at {} is damaged: {detail}; it was left untouched — move it aside to start empty, or restore a backup", .path.display())]
    Corrupt { path: PathBuf, detail: String },

    /// The file was written by a newer baton with a schema this one does not know.
    #[error("the store at {} has schema version {found}, but this baton understands only up to {supported}: run the newer baton that wrote it, or move the store aside to start empty", .path.display())]
    SchemaTooNew {
        path: PathBuf,
        found: u64,
        supported: u64,
    },

    /// A write refused on purpose: the fault-injection file named by
    /// `BATON_STORE_FAULT_FILE` exists (fault tests of what the controller does when its
    /// store fails). Never set in normal operation.
    #[error("writing the store at {} failed: injected fault ({} exists; remove it to let writes through)", .path.display(), .trigger.display())]
    Injected { path: PathBuf, trigger: PathBuf },

    /// The disk (or the quota, or the file size limit) is full. The write did not happen.
    #[error("no space left to write the store at {} ({source}): free disk space (or raise the quota or file size limit) and retry; nothing was written by the failed operation", .path.display())]
    NoSpace {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The file system is full (or the quota or file size limit is reached) while creating
    /// the store. Nothing is left behind: the partly written temporary file is removed.
    #[error("no space left to create the store at {} ({source}): free space on {} (or raise the quota or file size limit) or set [store] path elsewhere; nothing was left behind", .path.display(), .fs.display())]
    NoSpaceToCreate {
        path: PathBuf,
        /// The mount point of the file system the store would live on.
        fs: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Any other I/O failure reading or writing the file.
    #[error("I/O error on the store at {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A stored value does not decode as the type the caller asked for.
    #[error("the store at {} holds {what} that this baton cannot read ({source}): it was written by an incompatible baton or is damaged", .path.display())]
    Decode {
        path: PathBuf,
        what: String,
        #[source]
        source: serde_json::Error,
    },

    /// A value could not be encoded as JSON (a bug in the caller's type).
    #[error("could not encode {what} for the store at {}: {source}", .path.display())]
    Encode {
        path: PathBuf,
        what: String,
        #[source]
        source: serde_json::Error,
    },

    /// The storage engine failed in a way that needs a restart (e.g. after an earlier
    /// failed write). Restarting baton reopens the store from its last good commit.
    #[error("the store at {} stopped working ({detail}): restart baton; the store keeps everything committed before the failure", .path.display())]
    Failed { path: PathBuf, detail: String },
}

/// The process holding the store, as it recorded itself when it took the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    /// Its process id.
    pub pid: u32,
    /// When it opened the store (RFC 3339, UTC).
    pub started: String,
}

fn describe_holder(holder: Option<&LockHolder>) -> String {
    match holder {
        Some(h) => format!("baton pid {}, started {}", h.pid, h.started),
        None => "is `baton serve` already running?".into(),
    }
}

// === impl StoreError ===

impl StoreError {
    /// Classifies an I/O error: a full disk gets its own message.
    pub(crate) fn io(path: &Path, source: io::Error) -> StoreError {
        let path = path.to_path_buf();
        if is_no_space(&source) {
            StoreError::NoSpace { path, source }
        } else {
            StoreError::Io { path, source }
        }
    }

    /// Classifies any redb error.
    pub(crate) fn redb(path: &Path, err: impl Into<redb::Error>) -> StoreError {
        let err = err.into();
        match err {
            redb::Error::DatabaseAlreadyOpen => StoreError::Locked {
                path: path.to_path_buf(),
                holder: None,
            },
            redb::Error::Io(source) => StoreError::io(path, source),
            redb::Error::Corrupted(detail) => corrupt(path, detail),
            redb::Error::UpgradeRequired(version) => corrupt(
                path,
                format!("it uses storage format {version}, which this baton cannot read"),
            ),
            redb::Error::TableTypeMismatch { .. }
            | redb::Error::TableIsMultimap(_)
            | redb::Error::TableIsNotMultimap(_)
            | redb::Error::TypeDefinitionChanged { .. } => corrupt(
                path,
                format!("its tables have an unexpected layout ({err})"),
            ),
            other => StoreError::Failed {
                path: path.to_path_buf(),
                detail: other.to_string(),
            },
        }
    }
}

pub(crate) fn corrupt(path: &Path, detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

/// ENOSPC, EDQUOT and EFBIG (file size limit) all mean "this write cannot fit".
fn is_no_space(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::FileTooLarge
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_named_as_such() {
        let path = Path::new("/tmp/x/state");
        // ENOSPC as the kernel reports it.
        let err = StoreError::io(path, io::Error::from_raw_os_error(28));
        assert!(matches!(err, StoreError::NoSpace { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("no space left"), "{msg}");
        assert!(msg.contains("/tmp/x/state"), "{msg}");
        let other = StoreError::io(path, io::Error::from_raw_os_error(5));
        assert!(matches!(other, StoreError::Io { .. }), "{other:?}");
    }

    #[test]
    fn redb_lock_errors_become_locked() {
        let err = StoreError::redb(Path::new("s"), redb::DatabaseError::DatabaseAlreadyOpen);
        assert!(matches!(err, StoreError::Locked { holder: None, .. }));
        let msg = err.to_string();
        assert!(msg.contains("in use by another baton"), "{msg}");
        assert!(msg.contains("baton serve"), "{msg}");
        assert!(msg.contains("set [store] path elsewhere"), "{msg}");
    }

    #[test]
    fn a_known_holder_is_named_by_pid() {
        let err = StoreError::Locked {
            path: PathBuf::from("/var/lib/baton/state"),
            holder: Some(LockHolder {
                pid: 1234,
                started: "2026-01-02T03:04:05Z".into(),
            }),
        };
        let msg = err.to_string();
        assert!(
            msg.contains("the store at /var/lib/baton/state is in use by another baton (baton pid 1234, started 2026-01-02T03:04:05Z): stop it or set [store] path elsewhere"),
            "{msg}"
        );
    }
}
