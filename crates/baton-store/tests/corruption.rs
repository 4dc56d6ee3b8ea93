//! Damaged files are reported as `Corrupt` and left byte-for-byte untouched: a store is
//! never silently reset.

#![allow(clippy::unwrap_used)]

mod common;

use baton_store::{Store, StoreError};
use common::TestDir;
use std::io::Read;
use std::path::Path;

/// Writes a store with some content and closes it; returns its bytes.
fn make_store(path: &Path) -> Vec<u8> {
    let store = Store::open(path).unwrap();
    for i in 0..50u64 {
        let app = format!("app{}", i % 5);
        let record = serde_json::json!({ "i": i, "pad": "x".repeat(200) });
        store
            .commit(&app, Some(&record), Some(&i), &[i, i + 1])
            .unwrap();
    }
    drop(store);
    std::fs::read(path).unwrap()
}

/// Opens `path`, expects `Corrupt`, and checks the file was not modified.
fn assert_corrupt_and_untouched(path: &Path) -> String {
    let before = std::fs::read(path).unwrap();
    let err = Store::open(path).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("is damaged"), "{msg}");
    assert!(msg.contains("move it aside"), "{msg}");
    assert_eq!(
        std::fs::read(path).unwrap(),
        before,
        "the file was modified"
    );
    msg
}

#[test]
fn a_file_of_random_bytes_is_corrupt() {
    let dir = TestDir::new("random");
    let path = dir.join("state");
    let mut bytes = vec![0u8; 256 * 1024];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut bytes)
        .unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let msg = assert_corrupt_and_untouched(&path);
    assert!(msg.contains("not a baton store file"), "{msg}");
}

#[test]
fn an_empty_file_is_corrupt_not_a_fresh_store() {
    let dir = TestDir::new("empty");
    let path = dir.join("state");
    std::fs::write(&path, b"").unwrap();
    let msg = assert_corrupt_and_untouched(&path);
    assert!(msg.contains("empty"), "{msg}");
}

#[test]
fn truncated_copies_of_a_real_store_are_corrupt() {
    let dir = TestDir::new("truncated");
    let original = make_store(&dir.join("state"));
    assert!(
        original.len() > 8192,
        "store unexpectedly small: {}",
        original.len()
    );
    let cuts = [
        original.len() - 1,
        original.len() / 2,
        original.len() / 10,
        4096,
        100,
        7,
    ];
    for (i, cut) in cuts.into_iter().enumerate() {
        let copy = dir.join(&format!("copy-{i}"));
        std::fs::write(&copy, &original[..cut]).unwrap();
        let msg = assert_corrupt_and_untouched(&copy);
        if cut >= 100 {
            assert!(msg.contains("truncated"), "cut at {cut}: {msg}");
        }
    }
    // The intact original still opens with its data.
    let store = Store::open(&dir.join("state")).unwrap();
    assert_eq!(store.history::<u64>("app0", 100).unwrap().len(), 10);
}

#[test]
fn an_intact_copy_opens_with_all_its_data() {
    // Guards the test above: copying itself does not damage a store.
    let dir = TestDir::new("copy");
    let original = make_store(&dir.join("state"));
    let copy = dir.join("copy");
    std::fs::write(&copy, &original).unwrap();
    let store = Store::open(&copy).unwrap();
    assert_eq!(store.events_since::<u64>(0, 1000).unwrap().len(), 100);
    assert_eq!(
        store.get_app::<serde_json::Value>("app4").unwrap().unwrap()["i"],
        49
    );
}
