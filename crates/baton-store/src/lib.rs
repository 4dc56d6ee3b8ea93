//! baton's embedded, transactional, crash-safe store (redb).
//!
//! The store is generic: it keeps JSON documents whose types belong to the controller.
//! - `apps`: one record per app (its desired state and in-flight deployment),
//! - `history`: an append-only list of entries per app,
//! - `events`: a global, numbered event log that readers follow with `events_since`,
//! - `blobs`: bytes by (kind, key) whose format belongs to the caller (`put_blob`,
//!   `get_blob`, `blobs`, `delete_blob`; ACME accounts and certificates).
//!
//! Every write is one redb transaction with `Durability::Immediate` (fsync'd before the
//! call returns), so a write either happened entirely or not at all, even across `kill -9`
//! or power loss. The file is locked while open: a second `Store::open` of the same file, in
//! this process or another, fails with [`StoreError::Locked`], which names the holder's pid
//! from the `<store>.lock-owner` sidecar the holder writes (information only). A file that cannot be read
//! is reported as [`StoreError::Corrupt`] and never reset.
//!
//! All methods block on disk I/O; call them from a blocking thread, not an async task.

mod blobs;
mod error;
mod open;
mod owner;
mod tables;

pub use error::{LockHolder, StoreError};

use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::{Path, PathBuf};
use tables::{APPS, EVENTS, HISTORY, META, META_LAST_EVENT};

/// An open store. Cheap to share behind an `Arc`; all methods take `&self` and writes are
/// serialized by the store.
pub struct Store {
    db: Database,
    path: PathBuf,
    /// Fault injection for tests: while this file exists, every write fails with
    /// [`StoreError::Injected`]. Taken from `BATON_STORE_FAULT_FILE` at open; unset in
    /// normal operation.
    fault_file: Option<PathBuf>,
}

/// The environment variable that names the fault-injection file (see [`Store`]).
pub const FAULT_FILE_ENV: &str = "BATON_STORE_FAULT_FILE";

// === impl Store ===

impl Store {
    /// Opens the store at `path`, creating the parent directory and the file if missing.
    ///
    /// Errors: [`StoreError::Locked`] if another process (or another `Store` here) has it
    /// open, [`StoreError::Corrupt`] if the file is not a readable store (it is left
    /// untouched), [`StoreError::SchemaTooNew`], or an I/O error naming the path.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = match open::open_database(path) {
            Ok(db) => db,
            Err(StoreError::Locked { path, .. }) => {
                let holder = owner::holder(&path);
                return Err(StoreError::Locked { path, holder });
            }
            Err(e) => return Err(e),
        };
        owner::record(path);
        tracing::debug!(path = %path.display(), "store opened");
        Ok(Store {
            db,
            path: path.to_path_buf(),
            fault_file: std::env::var_os(FAULT_FILE_ENV).map(PathBuf::from),
        })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The record of `app`, if there is one.
    pub fn get_app<T: DeserializeOwned>(&self, app: &str) -> Result<Option<T>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.fail(e))?;
        let table = txn.open_table(APPS).map_err(|e| self.fail(e))?;
        let Some(bytes) = table.get(app).map_err(|e| self.fail(e))? else {
            return Ok(None);
        };
        self.decode(bytes.value(), || format!("the record of app {app:?}"))
            .map(Some)
    }

    /// Every app record, ordered by app name.
    pub fn apps<T: DeserializeOwned>(&self) -> Result<Vec<(String, T)>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.fail(e))?;
        let table = txn.open_table(APPS).map_err(|e| self.fail(e))?;
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| self.fail(e))? {
            let (key, value) = row.map_err(|e| self.fail(e))?;
            let app = key.value().to_string();
            let record = self.decode(value.value(), || format!("the record of app {app:?}"))?;
            out.push((app, record));
        }
        Ok(out)
    }

    /// In one transaction: replaces the record of `app` (left as is when `record` is
    /// `None`), appends `history` to the app's history, and appends `events` to the event
    /// log. When this returns `Ok` all of it is on disk; on `Err` none of it is.
    pub fn commit<T: Serialize, H: Serialize, E: Serialize>(
        &self,
        app: &str,
        record: Option<&T>,
        history: Option<&H>,
        events: &[E],
    ) -> Result<(), StoreError> {
        let record = record
            .map(|r| self.encode(r, || format!("the record of app {app:?}")))
            .transpose()?;
        let history = history
            .map(|h| self.encode(h, || format!("a history entry of app {app:?}")))
            .transpose()?;
        let events = self.encode_events(events)?;
        self.write(|txn| {
            if let Some(record) = &record {
                let mut apps = txn.open_table(APPS).map_err(|e| self.fail(e))?;
                apps.insert(app, record.as_slice())
                    .map_err(|e| self.fail(e))?;
            }
            if let Some(entry) = &history {
                self.push_history(txn, app, entry)?;
            }
            self.push_events(txn, &events).map(drop)
        })
    }

    /// Removes the record and the history of `app`. Events stay. Removing an app that is
    /// not stored is not an error.
    pub fn delete_app(&self, app: &str) -> Result<(), StoreError> {
        self.write(|txn| {
            let mut apps = txn.open_table(APPS).map_err(|e| self.fail(e))?;
            apps.remove(app).map_err(|e| self.fail(e))?;
            let mut history = txn.open_table(HISTORY).map_err(|e| self.fail(e))?;
            history
                .retain_in((app, 0u64)..=(app, u64::MAX), |_, _| false)
                .map_err(|e| self.fail(e))
        })
    }

    /// The newest `limit` history entries of `app`, oldest first (newest last).
    pub fn history<H: DeserializeOwned>(
        &self,
        app: &str,
        limit: usize,
    ) -> Result<Vec<H>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.fail(e))?;
        let table = txn.open_table(HISTORY).map_err(|e| self.fail(e))?;
        let range = table
            .range((app, 0u64)..=(app, u64::MAX))
            .map_err(|e| self.fail(e))?;
        let mut out = Vec::new();
        for row in range.rev().take(limit) {
            let (key, value) = row.map_err(|e| self.fail(e))?;
            let seq = key.value().1;
            out.push(self.decode(value.value(), || {
                format!("history entry {seq} of app {app:?}")
            })?);
        }
        out.reverse();
        Ok(out)
    }

    /// Appends events in one transaction; returns the sequence number of the last event
    /// (the current last number if `events` is empty). Numbers start at 1, increase by one
    /// per event and are never reused, even after `trim_events`.
    pub fn append_events<E: Serialize>(&self, events: &[E]) -> Result<u64, StoreError> {
        let events = self.encode_events(events)?;
        self.write(|txn| self.push_events(txn, &events))
    }

    /// Up to `limit` events with a sequence number greater than `after_seq`, in order.
    pub fn events_since<E: DeserializeOwned>(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<(u64, E)>, StoreError> {
        let Some(first) = after_seq.checked_add(1) else {
            return Ok(Vec::new());
        };
        let txn = self.db.begin_read().map_err(|e| self.fail(e))?;
        let table = txn.open_table(EVENTS).map_err(|e| self.fail(e))?;
        let mut out = Vec::new();
        for row in table.range(first..).map_err(|e| self.fail(e))?.take(limit) {
            let (key, value) = row.map_err(|e| self.fail(e))?;
            let seq = key.value();
            out.push((seq, self.decode(value.value(), || format!("event {seq}"))?));
        }
        Ok(out)
    }

    /// The newest `limit` events that `keep` accepts, oldest first, with their sequence
    /// numbers (a scan from the newest event back).
    pub fn recent_events<E: DeserializeOwned>(
        &self,
        limit: usize,
        keep: impl Fn(&E) -> bool,
    ) -> Result<Vec<(u64, E)>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.fail(e))?;
        let table = txn.open_table(EVENTS).map_err(|e| self.fail(e))?;
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| self.fail(e))?.rev() {
            if out.len() >= limit {
                break;
            }
            let (key, value) = row.map_err(|e| self.fail(e))?;
            let seq = key.value();
            let event: E = self.decode(value.value(), || format!("event {seq}"))?;
            if keep(&event) {
                out.push((seq, event));
            }
        }
        out.reverse();
        Ok(out)
    }

    /// Keeps only the newest `keep` events. Sequence numbers are not reused afterwards.
    pub fn trim_events(&self, keep: u64) -> Result<(), StoreError> {
        self.write(|txn| {
            let last = self.last_event_seq(txn)?;
            let Some(cutoff) = last.checked_sub(keep).filter(|c| *c > 0) else {
                return Ok(());
            };
            let mut table = txn.open_table(EVENTS).map_err(|e| self.fail(e))?;
            let before = table.len().map_err(|e| self.fail(e))?;
            table
                .retain_in(..=cutoff, |_, _| false)
                .map_err(|e| self.fail(e))?;
            let after = table.len().map_err(|e| self.fail(e))?;
            tracing::debug!(
                removed = before - after,
                kept = after,
                "trimmed store events"
            );
            Ok(())
        })
    }
}

// --- private helpers ---

impl Store {
    /// Runs `f` in a write transaction and commits it durably; on error nothing is written.
    fn write<R>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        if let Some(trigger) = self.fault_file.as_ref().filter(|t| t.exists()) {
            return Err(StoreError::Injected {
                path: self.path.clone(),
                trigger: trigger.clone(),
            });
        }
        let mut txn = self.db.begin_write().map_err(|e| self.fail(e))?;
        txn.set_durability(Durability::Immediate);
        let out = f(&txn)?;
        txn.commit().map_err(|e| self.fail(e))?;
        Ok(out)
    }

    fn push_history(
        &self,
        txn: &WriteTransaction,
        app: &str,
        entry: &[u8],
    ) -> Result<(), StoreError> {
        let mut table = txn.open_table(HISTORY).map_err(|e| self.fail(e))?;
        let last = table
            .range((app, 0u64)..=(app, u64::MAX))
            .map_err(|e| self.fail(e))?
            .next_back()
            .transpose()
            .map_err(|e| self.fail(e))?
            .map(|(k, _)| k.value().1);
        let seq = last.map_or(1, |s| s + 1);
        table.insert((app, seq), entry).map_err(|e| self.fail(e))?;
        Ok(())
    }

    fn push_events(&self, txn: &WriteTransaction, events: &[Vec<u8>]) -> Result<u64, StoreError> {
        let mut seq = self.last_event_seq(txn)?;
        if events.is_empty() {
            return Ok(seq);
        }
        let mut table = txn.open_table(EVENTS).map_err(|e| self.fail(e))?;
        for event in events {
            seq += 1;
            table
                .insert(seq, event.as_slice())
                .map_err(|e| self.fail(e))?;
        }
        let mut meta = txn.open_table(META).map_err(|e| self.fail(e))?;
        meta.insert(META_LAST_EVENT, seq)
            .map_err(|e| self.fail(e))?;
        Ok(seq)
    }

    fn last_event_seq(&self, txn: &WriteTransaction) -> Result<u64, StoreError> {
        let meta = txn.open_table(META).map_err(|e| self.fail(e))?;
        let last = meta.get(META_LAST_EVENT).map_err(|e| self.fail(e))?;
        Ok(last.map_or(0, |v| v.value()))
    }

    fn encode_events<E: Serialize>(&self, events: &[E]) -> Result<Vec<Vec<u8>>, StoreError> {
        events
            .iter()
            .map(|e| self.encode(e, || "an event".to_string()))
            .collect()
    }

    fn encode<V: Serialize>(
        &self,
        value: &V,
        what: impl FnOnce() -> String,
    ) -> Result<Vec<u8>, StoreError> {
        serde_json::to_vec(value).map_err(|source| StoreError::Encode {
            path: self.path.clone(),
            what: what(),
            source,
        })
    }

    fn decode<V: DeserializeOwned>(
        &self,
        bytes: &[u8],
        what: impl FnOnce() -> String,
    ) -> Result<V, StoreError> {
        serde_json::from_slice(bytes).map_err(|source| StoreError::Decode {
            path: self.path.clone(),
            what: what(),
            source,
        })
    }

    fn fail(&self, err: impl Into<redb::Error>) -> StoreError {
        StoreError::redb(&self.path, err)
    }
}

/// Removes the holder record while the lock is still held (the fields, and with them the
/// lock, are dropped after this runs), so it can never remove a later holder's record.
impl Drop for Store {
    fn drop(&mut self) {
        owner::clear(&self.path);
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}
