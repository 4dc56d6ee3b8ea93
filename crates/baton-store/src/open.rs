//! Opening the store file: first-time creation that cannot leave a half-made file behind,
//! the schema check, and turning every way a file can be unreadable into `Corrupt`.

use crate::error::{corrupt, StoreError};
use crate::tables::{APPS, EVENTS, HISTORY, META, META_LAST_EVENT, META_SCHEMA, SCHEMA_VERSION};
use redb::Database;
use std::any::Any;
use std::fs;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

/// Opens the store at `path`, creating it (and its parent directory) if it does not exist.
pub(crate) fn open_database(path: &Path) -> Result<Database, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    }
    if !exists(path)? {
        create_new(path)?;
    }
    let db = open_existing(path)?;
    check_schema(path, &db)?;
    Ok(db)
}

fn exists(path: &Path) -> Result<bool, StoreError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

/// Builds a complete store beside `path` and links it into place only when it is whole,
/// so an existing file at `path` is always a store that was once complete. A crash during
/// creation leaves at most a stray `.NAME.init-PID` file, never a half-made store.
fn create_new(path: &Path) -> Result<(), StoreError> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(
        ".{}.init-{}",
        name.unwrap_or_else(|| "store".into()),
        std::process::id()
    ));
    remove_if_present(&tmp)?;
    let db = Database::create(&tmp).map_err(|e| StoreError::redb(&tmp, e))?;
    initialize(&tmp, &db)?;
    drop(db);
    // `hard_link` refuses to replace: if another process created the store meanwhile, its
    // file wins and ours is discarded.
    match fs::hard_link(&tmp, path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(StoreError::io(path, e)),
    }
    remove_if_present(&tmp)?;
    sync_dir(path)?;
    tracing::info!(path = %path.display(), schema = SCHEMA_VERSION, "created a new store");
    Ok(())
}

fn initialize(path: &Path, db: &Database) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(|e| StoreError::redb(path, e))?;
    {
        let mut meta = txn
            .open_table(META)
            .map_err(|e| StoreError::redb(path, e))?;
        meta.insert(META_SCHEMA, SCHEMA_VERSION)
            .map_err(|e| StoreError::redb(path, e))?;
        meta.insert(META_LAST_EVENT, 0)
            .map_err(|e| StoreError::redb(path, e))?;
        txn.open_table(APPS)
            .map_err(|e| StoreError::redb(path, e))?;
        txn.open_table(HISTORY)
            .map_err(|e| StoreError::redb(path, e))?;
        txn.open_table(EVENTS)
            .map_err(|e| StoreError::redb(path, e))?;
    }
    txn.commit().map_err(|e| StoreError::redb(path, e))
}

fn remove_if_present(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

/// Makes the new directory entry durable.
fn sync_dir(path: &Path) -> Result<(), StoreError> {
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => dir,
        None => Path::new("."),
    };
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, e))
}

/// Opens a file that must already be a store. redb never initializes an existing file in
/// this mode; a file it cannot read (bad header, truncated) becomes `Corrupt`. redb answers
/// some truncations with a panic (an internal assertion), which is caught here.
fn open_existing(path: &Path) -> Result<Database, StoreError> {
    let outcome = catch_unwind(AssertUnwindSafe(|| Database::open(path)));
    match outcome {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Io(e))))
            if e.kind() == io::ErrorKind::InvalidData =>
        {
            Err(corrupt(path, describe_bad_header(path)))
        }
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Io(e))))
            if e.kind() == io::ErrorKind::UnexpectedEof =>
        {
            Err(corrupt(path, format!("the file is truncated ({e})")))
        }
        Ok(Err(e)) => Err(StoreError::redb(path, e)),
        Err(panic) => Err(corrupt(path, describe_panic(&panic))),
    }
}

fn describe_bad_header(path: &Path) -> String {
    match fs::metadata(path) {
        Ok(m) if m.len() == 0 => "the file is empty (0 bytes)".into(),
        Ok(m) => format!(
            "it is not a baton store file (unrecognized header, {} bytes)",
            m.len()
        ),
        Err(_) => "it is not a baton store file (unrecognized header)".into(),
    }
}

fn describe_panic(panic: &Box<dyn Any + Send>) -> String {
    let message = if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "an internal consistency check failed".into()
    };
    if message.contains("raw_file_len") {
        "the file is truncated (shorter than its header records)".into()
    } else {
        format!("the file is inconsistent ({message})")
    }
}

fn check_schema(path: &Path, db: &Database) -> Result<(), StoreError> {
    let txn = db.begin_read().map_err(|e| StoreError::redb(path, e))?;
    let meta = match txn.open_table(META) {
        Ok(meta) => meta,
        Err(redb::TableError::TableDoesNotExist(_)) => {
            return Err(corrupt(
                path,
                "it is a database but not a baton store (no schema version)",
            ))
        }
        Err(e) => return Err(StoreError::redb(path, e)),
    };
    let found = meta
        .get(META_SCHEMA)
        .map_err(|e| StoreError::redb(path, e))?
        .map(|v| v.value());
    match found {
        None => Err(corrupt(path, "its schema version is missing")),
        Some(found) if found > SCHEMA_VERSION => Err(StoreError::SchemaTooNew {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        }),
        Some(_) => Ok(()),
    }
}
