//! Opening the store file: first-time creation that cannot leave a half-made file behind,
//! the schema check, and turning every way a file can be unreadable into `Corrupt`.

use crate::error::{corrupt, StoreError};
use crate::tables::{APPS, EVENTS, HISTORY, META, META_LAST_EVENT, META_SCHEMA, SCHEMA_VERSION};
use redb::Database;
use std::any::Any;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::panic::{catch_unwind, set_hook, take_hook, AssertUnwindSafe, PanicHookInfo};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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
/// so an existing file at `path` is always a store that was once complete. A failed
/// creation removes its temporary `.NAME.init-PID` file (best effort; only a crash can
/// leave one behind) and its error names `path`, the file the operator configured, not the
/// temporary file they never asked for.
fn create_new(path: &Path) -> Result<(), StoreError> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(
        ".{}.init-{}",
        name.unwrap_or_else(|| "store".into()),
        std::process::id()
    ));
    remove_if_present(&tmp).map_err(|e| creation_error(path, e))?;
    if let Err(e) = build_and_link(path, &tmp) {
        if let Err(cleanup) = remove_if_present(&tmp) {
            tracing::warn!(tmp = %tmp.display(), error = %cleanup, "could not remove the temporary store file of a failed creation");
        }
        return Err(creation_error(path, e));
    }
    remove_if_present(&tmp)?;
    sync_dir(path)?;
    tracing::info!(path = %path.display(), schema = SCHEMA_VERSION, "created a new store");
    Ok(())
}

/// Writes a whole store into `tmp` (closed again on return, also on error) and links it at
/// `path`. Errors name `path`.
fn build_and_link(path: &Path, tmp: &Path) -> Result<(), StoreError> {
    let db = Database::create(tmp).map_err(|e| StoreError::redb(path, e))?;
    initialize(path, &db)?;
    drop(db);
    // `hard_link` refuses to replace: if another process created the store meanwhile, its
    // file wins and ours is discarded.
    match fs::hard_link(tmp, path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

/// A full disk while creating gets its own error naming the file system to free space on,
/// since the usual "retry" advice cannot help a store that does not exist yet.
fn creation_error(path: &Path, err: StoreError) -> StoreError {
    match err {
        StoreError::NoSpace { source, .. } => StoreError::NoSpaceToCreate {
            path: path.to_path_buf(),
            fs: mount_point(path),
            source,
        },
        other => other,
    }
}

/// The mount point of the file system `path` would live on: the highest ancestor of its
/// directory on the same device. Falls back to the directory itself.
fn mount_point(path: &Path) -> PathBuf {
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => dir.to_path_buf(),
        None => PathBuf::from("."),
    };
    let Ok(dir) = fs::canonicalize(&dir) else {
        return dir;
    };
    let Ok(dev) = fs::metadata(&dir).map(|m| m.dev()) else {
        return dir;
    };
    let mut top = dir.clone();
    for ancestor in dir.ancestors().skip(1) {
        match fs::metadata(ancestor) {
            Ok(m) if m.dev() == dev => top = ancestor.to_path_buf(),
            _ => break,
        }
    }
    top
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
/// some truncations with a panic (an internal assertion), which is caught here, quietly:
/// the caller reports it as `Corrupt`.
fn open_existing(path: &Path) -> Result<Database, StoreError> {
    let outcome = quietly(|| Database::open(path));
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

/// Runs `f`, catching a panic without the panic hook printing it.
///
/// redb 2 has no non-panicking check for a file shorter than its header records (it
/// asserts), and the default hook would print redb's internal message to stderr before
/// our clear `Corrupt` error. The hook is process-global, so: only panics of this thread
/// are silenced (others go to the previous hook), the previous hook is put back right
/// after, and a lock keeps two opens from interleaving their swaps.
fn quietly<R>(f: impl FnOnce() -> R) -> std::thread::Result<R> {
    static SWAP: Mutex<()> = Mutex::new(());
    // A panicking thread must not touch the hook (`take_hook` would panic); it is not
    // opening stores either, but be safe.
    if std::thread::panicking() {
        return catch_unwind(AssertUnwindSafe(f));
    }
    let _swap = SWAP.lock().unwrap_or_else(|p| p.into_inner());
    let previous = Arc::new(take_hook());
    let guarded = std::thread::current().id();
    let others = Arc::clone(&previous);
    set_hook(Box::new(move |info| {
        if std::thread::current().id() != guarded {
            others(info);
        }
    }));
    let outcome = catch_unwind(AssertUnwindSafe(f));
    // Dropping our hook leaves `previous` with one owner: put the very same hook back
    // (not a wrapper, which would nest one level deeper on every open).
    drop(take_hook());
    match Arc::try_unwrap(previous) {
        Ok(hook) => set_hook(hook),
        Err(shared) => set_hook(Box::new(move |info: &PanicHookInfo<'_>| shared(info))),
    }
    outcome
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
