//! The store's API against real files: records, history, events, atomicity, locking.

#![allow(clippy::unwrap_used)]

mod common;

use baton_store::{Store, StoreError};
use common::TestDir;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Record {
    version: String,
    replicas: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Entry {
    n: u64,
}

fn rec(version: &str) -> Record {
    Record {
        version: version.into(),
        replicas: 2,
    }
}

const NO_EVENTS: &[Entry] = &[];

#[test]
fn records_round_trip_and_survive_reopen() {
    let dir = TestDir::new("roundtrip");
    let path = dir.join("nested/dir/state");
    {
        let store = Store::open(&path).unwrap();
        assert_eq!(store.path(), path);
        assert_eq!(store.get_app::<Record>("web").unwrap(), None);
        store
            .commit("web", Some(&rec("v1")), None::<&Entry>, NO_EVENTS)
            .unwrap();
        store
            .commit("api", Some(&rec("v7")), None::<&Entry>, NO_EVENTS)
            .unwrap();
        store
            .commit("web", Some(&rec("v2")), None::<&Entry>, NO_EVENTS)
            .unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.get_app::<Record>("web").unwrap(), Some(rec("v2")));
    let all: Vec<(String, Record)> = store.apps().unwrap();
    assert_eq!(
        all,
        vec![
            ("api".to_string(), rec("v7")),
            ("web".to_string(), rec("v2"))
        ]
    );
}

#[test]
fn commit_without_record_keeps_the_record_and_appends_history_and_events() {
    let dir = TestDir::new("commit");
    let store = Store::open(&dir.join("state")).unwrap();
    store
        .commit(
            "web",
            Some(&rec("v1")),
            Some(&Entry { n: 1 }),
            &[Entry { n: 10 }],
        )
        .unwrap();
    store
        .commit(
            "web",
            None::<&Record>,
            Some(&Entry { n: 2 }),
            &[Entry { n: 11 }, Entry { n: 12 }],
        )
        .unwrap();
    assert_eq!(store.get_app::<Record>("web").unwrap(), Some(rec("v1")));
    let history: Vec<Entry> = store.history("web", 10).unwrap();
    assert_eq!(history, vec![Entry { n: 1 }, Entry { n: 2 }]);
    let events: Vec<(u64, Entry)> = store.events_since(0, 10).unwrap();
    assert_eq!(
        events,
        vec![
            (1, Entry { n: 10 }),
            (2, Entry { n: 11 }),
            (3, Entry { n: 12 })
        ]
    );
}

#[test]
fn recent_events_are_the_newest_accepted_ones_oldest_first() {
    let dir = TestDir::new("recent-events");
    let store = Store::open(&dir.join("state")).unwrap();
    let events: Vec<Entry> = (1..=10).map(|n| Entry { n }).collect();
    store.append_events(&events).unwrap();
    let even: Vec<(u64, Entry)> = store
        .recent_events(3, |e: &Entry| e.n.is_multiple_of(2))
        .unwrap();
    assert_eq!(
        even,
        vec![
            (6, Entry { n: 6 }),
            (8, Entry { n: 8 }),
            (10, Entry { n: 10 })
        ]
    );
    let all: Vec<(u64, Entry)> = store.recent_events(100, |_: &Entry| true).unwrap();
    assert_eq!(all.len(), 10);
    let none: Vec<(u64, Entry)> = store.recent_events(5, |_: &Entry| false).unwrap();
    assert!(none.is_empty());
}

#[test]
fn history_is_per_app_newest_last_and_limited() {
    let dir = TestDir::new("history");
    let store = Store::open(&dir.join("state")).unwrap();
    for n in 1..=5 {
        store
            .commit("web", None::<&Record>, Some(&Entry { n }), NO_EVENTS)
            .unwrap();
        // A name that shares a prefix must not bleed into "web"'s range.
        store
            .commit(
                "web2",
                None::<&Record>,
                Some(&Entry { n: 100 + n }),
                NO_EVENTS,
            )
            .unwrap();
    }
    let last3: Vec<Entry> = store.history("web", 3).unwrap();
    assert_eq!(last3, vec![Entry { n: 3 }, Entry { n: 4 }, Entry { n: 5 }]);
    let all: Vec<Entry> = store.history("web", 100).unwrap();
    assert_eq!(all.len(), 5);
    assert_eq!(store.history::<Entry>("nobody", 10).unwrap(), vec![]);
    assert_eq!(store.history::<Entry>("web", 0).unwrap(), vec![]);
}

#[test]
fn delete_app_removes_record_and_history_but_not_events_or_other_apps() {
    let dir = TestDir::new("delete");
    let store = Store::open(&dir.join("state")).unwrap();
    store
        .commit(
            "web",
            Some(&rec("v1")),
            Some(&Entry { n: 1 }),
            &[Entry { n: 1 }],
        )
        .unwrap();
    store
        .commit("api", Some(&rec("v1")), Some(&Entry { n: 2 }), NO_EVENTS)
        .unwrap();
    store.delete_app("web").unwrap();
    store.delete_app("never-existed").unwrap();
    assert_eq!(store.get_app::<Record>("web").unwrap(), None);
    assert_eq!(store.history::<Entry>("web", 10).unwrap(), vec![]);
    assert_eq!(
        store.history::<Entry>("api", 10).unwrap(),
        vec![Entry { n: 2 }]
    );
    assert_eq!(store.events_since::<Entry>(0, 10).unwrap().len(), 1);
    // History numbering restarts cleanly for a re-created app.
    store
        .commit("web", None::<&Record>, Some(&Entry { n: 9 }), NO_EVENTS)
        .unwrap();
    assert_eq!(
        store.history::<Entry>("web", 10).unwrap(),
        vec![Entry { n: 9 }]
    );
}

#[test]
fn events_are_numbered_from_one_and_never_reused_after_trimming() {
    let dir = TestDir::new("events");
    let path = dir.join("state");
    let store = Store::open(&path).unwrap();
    assert_eq!(store.append_events(NO_EVENTS).unwrap(), 0);
    let batch: Vec<Entry> = (1..=10).map(|n| Entry { n }).collect();
    assert_eq!(store.append_events(&batch).unwrap(), 10);
    let page: Vec<(u64, Entry)> = store.events_since(3, 4).unwrap();
    assert_eq!(
        page.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        vec![4, 5, 6, 7]
    );
    assert_eq!(page[0].1, Entry { n: 4 });
    assert!(store.events_since::<Entry>(10, 5).unwrap().is_empty());
    assert!(store.events_since::<Entry>(u64::MAX, 5).unwrap().is_empty());

    store.trim_events(3).unwrap();
    let left: Vec<(u64, Entry)> = store.events_since(0, 100).unwrap();
    assert_eq!(
        left.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        vec![8, 9, 10]
    );

    store.trim_events(0).unwrap();
    assert!(store.events_since::<Entry>(0, 100).unwrap().is_empty());
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.append_events(&[Entry { n: 11 }]).unwrap(), 11);
    assert_eq!(store.append_events(NO_EVENTS).unwrap(), 11);
    // Keeping more than exist is a no-op.
    store.trim_events(1000).unwrap();
    assert_eq!(store.events_since::<Entry>(0, 100).unwrap().len(), 1);
}

/// Serializes to a JSON error: maps with non-string keys are not representable.
#[derive(Serialize)]
struct Unencodable(BTreeMap<(u8, u8), u8>);

#[test]
fn a_commit_that_fails_part_way_writes_nothing() {
    let dir = TestDir::new("atomic");
    let store = Store::open(&dir.join("state")).unwrap();
    let bad = Unencodable(BTreeMap::from([((1, 2), 3)]));
    let err = store
        .commit("web", Some(&rec("v1")), Some(&Entry { n: 1 }), &[bad])
        .unwrap_err();
    assert!(matches!(err, StoreError::Encode { .. }), "{err:?}");
    assert!(
        err.to_string().contains("could not encode an event"),
        "{err}"
    );
    assert_eq!(store.get_app::<Record>("web").unwrap(), None);
    assert_eq!(store.history::<Entry>("web", 10).unwrap(), vec![]);
    assert_eq!(store.append_events(NO_EVENTS).unwrap(), 0);
}

#[test]
fn reading_a_record_as_the_wrong_type_names_the_record() {
    let dir = TestDir::new("decode");
    let store = Store::open(&dir.join("state")).unwrap();
    store
        .commit("web", Some(&Entry { n: 1 }), None::<&Entry>, NO_EVENTS)
        .unwrap();
    let err = store.get_app::<Record>("web").unwrap_err();
    assert!(matches!(err, StoreError::Decode { .. }), "{err:?}");
    assert!(
        err.to_string().contains("the record of app \"web\""),
        "{err}"
    );
}

#[test]
fn a_second_open_in_the_same_process_is_locked_until_the_first_closes() {
    let dir = TestDir::new("lock-inproc");
    let path = dir.join("state");
    let first = Store::open(&path).unwrap();
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    // The holder recorded itself: here, this very process.
    let pid = std::process::id();
    assert!(
        matches!(&err, StoreError::Locked { holder: Some(h), .. } if h.pid == pid),
        "{err:?}"
    );
    assert!(
        msg.contains(&format!(
            "in use by another baton (baton pid {pid}, started "
        )),
        "{msg}"
    );
    assert!(
        msg.contains("stop it or set [store] path elsewhere"),
        "{msg}"
    );
    let sidecar = dir.join("state.lock-owner");
    assert!(sidecar.exists(), "no holder record while open");
    drop(first);
    assert!(
        !sidecar.exists(),
        "a clean close left its holder record behind"
    );
    Store::open(&path).unwrap();
}

/// The holder record is only information: one left by a process that is gone (killed
/// before it could remove it) neither blocks an open nor is named in an error.
#[test]
fn a_stale_holder_record_blocks_nothing_and_is_not_named() {
    let dir = TestDir::new("stale-owner");
    let path = dir.join("state");
    drop(Store::open(&path).unwrap());
    let sidecar = dir.join("state.lock-owner");
    // A pid above the kernel's maximum (4194304) is never a live process.
    let stale = r#"{"pid":4294967295,"started":"2000-01-01T00:00:00Z"}"#;
    std::fs::write(&sidecar, stale).unwrap();
    let store = Store::open(&path).unwrap();
    // The new holder replaced the stale record with its own.
    let now = std::fs::read_to_string(&sidecar).unwrap();
    assert!(
        now.contains(&format!("\"pid\":{}", std::process::id())),
        "{now}"
    );
    drop(store);

    // Garbage in the record: still no obstacle, and not repeated to the operator.
    std::fs::write(&sidecar, b"\0\0not json").unwrap();
    let store = Store::open(&path).unwrap();
    std::fs::write(&sidecar, stale).unwrap();
    let err = Store::open(&path).unwrap_err();
    assert!(
        matches!(err, StoreError::Locked { holder: None, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(!msg.contains("4294967295"), "{msg}");
    assert!(msg.contains("is `baton serve` already running?"), "{msg}");
    drop(store);
}

#[test]
fn a_store_written_by_a_newer_schema_is_refused() {
    let dir = TestDir::new("schema");
    let path = dir.join("state");
    drop(Store::open(&path).unwrap());
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
            let mut meta = txn.open_table(def).unwrap();
            meta.insert("schema_version", 99).unwrap();
        }
        txn.commit().unwrap();
    }
    let err = Store::open(&path).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::SchemaTooNew {
                found: 99,
                supported: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("schema version 99"), "{err}");
}

#[test]
fn a_database_that_is_not_a_baton_store_is_refused() {
    let dir = TestDir::new("foreign");
    let path = dir.join("state");
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("other");
            txn.open_table(def).unwrap().insert(1, 2).unwrap();
        }
        txn.commit().unwrap();
    }
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("not a baton store"), "{err}");
}

#[test]
fn an_unwritable_location_is_an_io_error_naming_the_path() {
    let dir = TestDir::new("io");
    let blocker = dir.join("file");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let path = blocker.join("state");
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&blocker.display().to_string()),
        "{err}"
    );
}

#[test]
fn blobs_are_kept_by_kind_and_key_across_reopen() {
    let dir = TestDir::new("blobs");
    let path = dir.join("state");
    {
        let store = Store::open(&path).unwrap();
        // A store that never had a blob answers reads as empty.
        assert_eq!(store.get_blob("acme-cert", "a.com").unwrap(), None);
        assert!(store.blobs("acme-cert").unwrap().is_empty());
        store.put_blob("acme-cert", "b.com", b"B").unwrap();
        store.put_blob("acme-cert", "a.com", b"A1").unwrap();
        store.put_blob("acme-cert", "a.com", b"A2").unwrap();
        store
            .put_blob("acme-account", "https://ca/dir", b"acct")
            .unwrap();
        store.put_blob("acme-certz", "x", b"other kind").unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.get_blob("acme-cert", "a.com").unwrap().as_deref(),
        Some(&b"A2"[..])
    );
    assert_eq!(
        store.blobs("acme-cert").unwrap(),
        vec![
            ("a.com".to_string(), b"A2".to_vec()),
            ("b.com".to_string(), b"B".to_vec())
        ]
    );
    assert_eq!(store.blobs("acme-account").unwrap().len(), 1);
    store.delete_blob("acme-cert", "a.com").unwrap();
    store.delete_blob("acme-cert", "never-there").unwrap();
    assert_eq!(store.get_blob("acme-cert", "a.com").unwrap(), None);
    assert_eq!(store.blobs("acme-cert").unwrap().len(), 1);
}
