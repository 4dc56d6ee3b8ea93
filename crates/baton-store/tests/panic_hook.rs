//! The store silences redb's panic on a truncated file by swapping the process-global
//! panic hook for the duration of the open; the hook in place before must be back after.
//! (Its own test binary: the hook is process-global.)

#![allow(clippy::unwrap_used)]

mod common;

use baton_store::{Store, StoreError};
use common::TestDir;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[test]
fn the_previous_panic_hook_is_restored_after_a_guarded_open() {
    let dir = TestDir::new("hook");
    let path = dir.join("state");
    {
        let store = Store::open(&path).unwrap();
        for n in 0..50u64 {
            let record = serde_json::json!({ "n": n, "pad": "x".repeat(500) });
            store
                .commit(&format!("app{n}"), Some(&record), None::<&u64>, &[n])
                .unwrap();
        }
    }
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();

    let seen = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    std::panic::set_hook(Box::new(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    }));
    for _ in 0..3 {
        let err = Store::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    }
    // redb's panics went to nobody, not to our hook...
    let after_opens = seen.load(Ordering::SeqCst);
    // ...and our hook is the one in place again.
    let caught = std::panic::catch_unwind(|| panic!("deliberate"));
    let _ = std::panic::take_hook();
    assert!(caught.is_err());
    assert_eq!(after_opens, 0, "the guarded open's panic reached the hook");
    assert_eq!(seen.load(Ordering::SeqCst), 1, "our hook was not restored");
}
