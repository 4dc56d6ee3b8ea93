//! The SQLite file of the migration tutorial (`docs/migrations.md`): `GET /users` reads
//! it, `sample-app migrate --db FILE` changes its schema the way a release hook would.
//!
//! Schema 1 is `users(id, name)`; schema 2 adds a nullable `email` column (an *expand*
//! step). `/users` names the columns it reads, so a version that knows only schema 1
//! keeps working on a file already at schema 2; it shows `email` only when the column
//! is there.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use rusqlite::Connection;

/// `sample-app migrate`: brings the file to the latest schema, idempotently.
#[derive(Debug, Parser)]
#[command(name = "sample-app migrate")]
pub struct MigrateOptions {
    /// The SQLite file (created if missing).
    #[arg(long, env = "SAMPLE_DB")]
    pub db: PathBuf,
    /// Stop at this schema (1: the table only; 2: with `email`).
    #[arg(long, default_value_t = 2)]
    pub to: u32,
    /// Wait until this file exists before migrating (tests hold a hook with it).
    #[arg(long)]
    pub wait_for: Option<PathBuf>,
    /// Fail with exit 3 when run for this version (`BATON_VERSION`): a failing
    /// migration for tests and the tutorial.
    #[arg(long)]
    pub fail_for_version: Option<String>,
}

/// Runs `migrate` with `args` (the program name first); prints what it did.
pub fn migrate_main(args: Vec<String>) -> ExitCode {
    let opts = match MigrateOptions::try_parse_from(args) {
        Ok(o) => o,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(2);
        }
    };
    if let Some(flag) = &opts.wait_for {
        while !flag.exists() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let version = std::env::var("BATON_VERSION").unwrap_or_default();
    if opts.fail_for_version.as_deref() == Some(version.as_str()) {
        println!("migration failed: --fail-for-version {version} (simulated failure)");
        return ExitCode::from(3);
    }
    match migrate(&opts.db, opts.to) {
        Ok(steps) => {
            for s in &steps {
                println!("{s}");
            }
            println!("schema of {} is at version {}", opts.db.display(), opts.to);
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("migration failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Applies the missing steps up to schema `to`, each in a transaction; returns what
/// was done.
pub fn migrate(path: &Path, to: u32) -> rusqlite::Result<Vec<String>> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let mut done = Vec::new();
    let tx = conn.transaction()?;
    let has_table: bool = tx.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'users'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !has_table {
        tx.execute_batch(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
             INSERT INTO users (name) VALUES ('ada'), ('grace');",
        )?;
        done.push("schema 1: created users(id, name)".to_string());
    }
    if to >= 2 && !has_column(&tx, "email")? {
        tx.execute_batch(
            "ALTER TABLE users ADD COLUMN email TEXT;
             UPDATE users SET email = name || '@example.com';",
        )?;
        done.push("schema 2: added users.email (nullable: the previous version ignores it)".into());
    }
    tx.commit()?;
    if done.is_empty() {
        done.push("nothing to do".into());
    }
    Ok(done)
}

fn has_column(conn: &Connection, column: &str) -> rusqlite::Result<bool> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('users')")?;
    let names = stmt.query_map([], |r| r.get::<_, String>(0))?;
    for name in names {
        if name? == column {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The users as lines `id name [email]`, for `GET /users`.
pub fn users(path: &Path) -> rusqlite::Result<String> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let email = has_column(&conn, "email")?;
    let sql = if email {
        "SELECT id, name, email FROM users ORDER BY id"
    } else {
        "SELECT id, name, NULL FROM users ORDER BY id"
    };
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map([], |r| {
        let id: i64 = r.get(0)?;
        let name: String = r.get(1)?;
        let email: Option<String> = r.get(2)?;
        Ok(match email {
            Some(e) => format!("{id} {name} {e}"),
            None => format!("{id} {name}"),
        })
    })?;
    let mut out = String::new();
    for row in rows {
        out.push_str(&row?);
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn migrate_is_idempotent_and_the_old_schema_reader_keeps_working() {
        let dir = std::env::temp_dir().join(format!("sample-db-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("app.db");
        let _ = std::fs::remove_file(&db);
        migrate(&db, 1).unwrap();
        assert_eq!(users(&db).unwrap(), "1 ada\n2 grace\n");
        let steps = migrate(&db, 2).unwrap();
        assert!(steps[0].contains("email"), "{steps:?}");
        assert_eq!(migrate(&db, 2).unwrap(), vec!["nothing to do".to_string()]);
        assert_eq!(
            users(&db).unwrap(),
            "1 ada ada@example.com\n2 grace grace@example.com\n"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
