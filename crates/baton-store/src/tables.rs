//! The store's tables and schema version. Values are JSON documents owned by the caller.

use redb::TableDefinition;

/// Bumped when the layout below changes incompatibly; a store with a newer version is
/// refused rather than misread.
pub(crate) const SCHEMA_VERSION: u64 = 1;

/// app name → JSON record.
pub(crate) const APPS: TableDefinition<&str, &[u8]> = TableDefinition::new("apps");
/// (app name, per-app sequence number) → JSON history entry.
pub(crate) const HISTORY: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("history");
/// global event sequence number (from 1) → JSON event.
pub(crate) const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// Bookkeeping: schema version and the last event sequence number handed out (kept here
/// so trimming never causes a number to be reused).
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

pub(crate) const META_SCHEMA: &str = "schema_version";
pub(crate) const META_LAST_EVENT: &str = "last_event_seq";

/// (kind, key) → bytes owned by the caller (ACME accounts and certificates). Created on
/// the first write, so a store made by an older baton gains it without a schema change;
/// reads treat it missing as empty.
pub(crate) const BLOBS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("blobs");
