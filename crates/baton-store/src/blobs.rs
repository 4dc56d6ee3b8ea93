//! A small generic keyed-blob table: `(kind, key) → bytes`, for data whose format belongs
//! to another crate (ACME account credentials and certificates). One transaction per
//! write, fsync'd like every other write.

use crate::tables::BLOBS;
use crate::{Store, StoreError};
use redb::ReadOnlyTable;

/// The blob table as read.
type BlobTable = ReadOnlyTable<(&'static str, &'static str), &'static [u8]>;

// === impl Store ===

impl Store {
    /// Stores `value` under (`kind`, `key`), replacing what was there. When this returns
    /// `Ok` it is on disk; on `Err` the old value is intact.
    pub fn put_blob(&self, kind: &str, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.write(|txn| {
            let mut table = txn.open_table(BLOBS).map_err(|e| self.fail(e))?;
            table.insert((kind, key), value).map_err(|e| self.fail(e))?;
            Ok(())
        })
    }

    /// The bytes under (`kind`, `key`), if any.
    pub fn get_blob(&self, kind: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(table) = self.blob_table()? else {
            return Ok(None);
        };
        let value = table.get((kind, key)).map_err(|e| self.fail(e))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// Every (key, bytes) of `kind`, ordered by key.
    pub fn blobs(&self, kind: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let Some(table) = self.blob_table()? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        // Keys of one kind are contiguous: (kind, "") is the first, and the range ends
        // before the next kind.
        for row in table.range((kind, "")..).map_err(|e| self.fail(e))? {
            let (k, v) = row.map_err(|e| self.fail(e))?;
            let (row_kind, key) = k.value();
            if row_kind != kind {
                break;
            }
            out.push((key.to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Removes (`kind`, `key`); removing what is not there is not an error.
    pub fn delete_blob(&self, kind: &str, key: &str) -> Result<(), StoreError> {
        self.write(|txn| {
            let mut table = txn.open_table(BLOBS).map_err(|e| self.fail(e))?;
            table.remove((kind, key)).map_err(|e| self.fail(e))?;
            Ok(())
        })
    }

    /// The blob table, or `None` when no blob was ever written.
    fn blob_table(&self) -> Result<Option<BlobTable>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.fail(e))?;
        match txn.open_table(BLOBS) {
            Ok(table) => Ok(Some(table)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(self.fail(e)),
        }
    }
}
